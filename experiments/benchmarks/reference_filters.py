"""The logit filters as they were before issue #22 (`lax.top_k` for the k-th value, a full
argsort for the nucleus): the reference the new filters (`sampling/processors.py`) must equal
bit for bit (tests/test_logit_filters.py) and are timed against (speed/topk_filter.py). The
one copy, shared by both.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from argen_jax.sampling.processors import NEG_INF, apply_temperature


def reference_top_k_filter(logits, k):
    """top_k_filter before #22."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)


def reference_top_p_filter(logits, p):
    """top_p_filter before #22."""
    if p >= 1.0:
        return logits
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = before < p
    keep = jnp.zeros_like(keep_sorted).at[
        tuple(jnp.indices(order.shape)[:-1]) + (order,)
    ].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


def reference_process_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """process_logits before #22."""
    logits = apply_temperature(logits.astype(jnp.float32), temperature)
    return reference_top_p_filter(reference_top_k_filter(logits, top_k), top_p)


def reference_draw(top_k, top_p):
    def draw(keys, logits, t):
        del t
        logits = reference_process_logits(logits, 1.0, top_k, top_p)
        return jax.vmap(lambda k, lg: jax.random.categorical(k, lg, axis=-1))(keys, logits)

    return draw
