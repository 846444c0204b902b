"""Attention masks from ONE construction: block ids plus key validity.

Every position carries a *block id*, a non-decreasing integer along the sequence. A query may
attend to a key iff the key's block id is <= the query's block id and the key is valid:

    allowed[b, i, j] = k_ids[b, j] <= q_ids[b, i]  and  k_valid[b, j]  (and q_valid[b, i])

- causal (token by token): block id = position (`causal_ids`);
- block-causal (VAR scales): block id = index of the block the position falls in
  (`block_ids_from_sizes((1, 4, 9, ...))`): a token sees its whole block and every earlier one;
- padding: `k_valid` False for padded keys (and `q_valid` for padded queries, whose rows
  would otherwise be all-masked only when every key is padding).

The same rule works for decoding with a preallocated KV cache: key slots that are not yet
written hold future positions, whose ids are larger than every current query id, and
`k_valid = slot < filled` excludes unwritten slots of the current block.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def causal_ids(length: int) -> np.ndarray:
    """[T] block ids of a token-by-token causal sequence: 0, 1, ..., T-1."""
    return np.arange(length, dtype=np.int32)


def block_ids_from_sizes(sizes: Sequence[int]) -> np.ndarray:
    """[sum(sizes)] block ids: block s repeated sizes[s] times (e.g. VAR: 1, 4, 9, ... tokens)."""
    sizes = [int(s) for s in sizes]
    if not sizes or min(sizes) <= 0:
        raise ValueError(f"block sizes must be positive, got {sizes}")
    return np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)


def attention_mask(q_ids: jax.Array, k_ids: jax.Array, k_valid: jax.Array | None = None,
                   q_valid: jax.Array | None = None) -> jax.Array:
    """Boolean mask [B, 1, Tq, Tk] (broadcast over heads) from block ids.

    q_ids [B, Tq] or [Tq]; k_ids [B, Tk] or [Tk]; k_valid [B, Tk] / q_valid [B, Tq] booleans.
    """
    q_ids, k_ids = jnp.atleast_2d(q_ids), jnp.atleast_2d(k_ids)
    mask = k_ids[:, None, :] <= q_ids[:, :, None]  # [B, Tq, Tk]
    if k_valid is not None:
        mask = mask & jnp.atleast_2d(k_valid)[:, None, :]
    if q_valid is not None:
        mask = mask & jnp.atleast_2d(q_valid)[:, :, None]
    return mask[:, None]


def causal_mask(length: int) -> jax.Array:
    """[1, 1, T, T]: lower-triangular (diagonal included)."""
    ids = causal_ids(length)
    return attention_mask(ids, ids)


def block_causal_mask(sizes: Sequence[int]) -> jax.Array:
    """[1, 1, T, T] with T = sum(sizes): each token sees its own block and earlier blocks."""
    ids = block_ids_from_sizes(sizes)
    return attention_mask(ids, ids)


def padding_mask(valid: jax.Array) -> jax.Array:
    """[B, 1, 1, T]: keys marked False in `valid` [B, T] are hidden from every query."""
    return jnp.asarray(valid, bool)[:, None, None, :]
