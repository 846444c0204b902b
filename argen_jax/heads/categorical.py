"""Categorical likelihood over discrete levels (256-way for 8-bit, 2-way for binarized)."""
from __future__ import annotations

import jax
import jax.numpy as jnp


def categorical_nll(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """logits [..., V], integer targets [...] -> nats [...] (float32)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None].astype(jnp.int32), axis=-1)[..., 0]


def to_unit_range(x: jax.Array, levels: int) -> jax.Array:
    """Integer levels [0, levels) -> floats in [-1, 1], the network input scale."""
    return x.astype(jnp.float32) * (2.0 / (levels - 1)) - 1.0
