"""Rotary position embeddings (RoPE) over 1-D positions or N-D coordinates.

A position is a vector of P integer coordinates (P=1: token index; P=2: (row, col) of an image
token grid). The head_dim/2 rotation frequencies are split evenly between the coordinates,
each coordinate using the geometric ladder theta^(-2i / (head_dim / P)), so 2-D RoPE rotates
one half of the frequency slots by the row and the other half by the column.

Rotation pairs are (x[i], x[i + D/2]) ("rotate half" layout). Angles are computed in float32.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.errors import ConfigError


def rotary_angles(coords: jax.Array, head_dim: int, theta: float = 10000.0) -> jax.Array:
    """coords [..., P] ints -> angles [..., head_dim // 2] (float32)."""
    num_coords = coords.shape[-1]
    half = head_dim // 2
    if head_dim % 2 or half % num_coords:
        raise ConfigError(f"rotary embeddings need an even head_dim whose half divides by the "
                          f"{num_coords} position coordinate(s); head_dim is {head_dim} "
                          "(model.head_dim, or model.width / model.num_heads)")
    per = half // num_coords
    inv_freq = 1.0 / theta ** (np.arange(per, dtype=np.float32) * 2.0 / (2 * per))  # [per]
    ang = coords.astype(jnp.float32)[..., :, None] * inv_freq  # [..., P, per]
    return ang.reshape(*coords.shape[:-1], half)


def apply_rotary(x: jax.Array, angles) -> jax.Array:
    """x [B, T, H, D], angles [B, T, D/2] (or [T, D/2]) -> x rotated, same dtype as x.
    `angles` may also be the factors (cos, sin) themselves, each [B, T, D/2] or [T, D/2]:
    LlamaGen's class tokens use cos = sin = 0, which zeroes their queries and keys."""
    cos, sin = angles if isinstance(angles, tuple) else (jnp.cos(angles), jnp.sin(angles))
    if cos.ndim == 2:
        cos, sin = cos[None], sin[None]
    sin = sin[:, :, None, :]  # [B, T, 1, D/2]
    cos = cos[:, :, None, :]
    xf = x.astype(jnp.float32)
    x1, x2 = jnp.split(xf, 2, axis=-1)
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x.dtype)


def coords_1d(length: int) -> np.ndarray:
    """[T, 1]: token index."""
    return np.arange(length, dtype=np.int32)[:, None]


def coords_2d(height: int, width: int, num_prefix: int = 0) -> np.ndarray:
    """[num_prefix + H*W, 2]: (row, col) of raster-ordered grid tokens, after `num_prefix`
    conditioning tokens (class tokens) that get coordinate (0, 0), i.e. no rotation."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int32), width)
    grid = np.stack([rows, cols], axis=-1)
    return np.concatenate([np.zeros((num_prefix, 2), np.int32), grid], axis=0)
