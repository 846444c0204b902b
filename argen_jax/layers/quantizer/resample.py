"""Resampling of latents between scales: area (average) downsampling, separable upsampling
(jax.image.resize kernels or PyTorch's bicubic, as VAR), as [dst, src] matrices."""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.errors import ConfigError


@functools.cache
def area_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] averaging matrix of adaptive average pooling (PyTorch 'area' resize)."""
    m = np.zeros((dst, src), np.float32)
    for i in range(dst):
        a, b = (i * src) // dst, -(-((i + 1) * src) // dst)
        m[i, a:b] = 1.0 / (b - a)
    return m


def torch_bicubic_matrix(src: int, dst: int, a: float = -0.75) -> np.ndarray:
    """[dst, src] matrix of PyTorch's `F.interpolate(mode='bicubic', align_corners=False)`
    (VAR's upsampling): Keys kernel with a = -0.75 (jax.image.resize's 'cubic' uses -0.5),
    source coordinate (i + 0.5) * src / dst - 0.5 unclamped, taps clamped to the border."""
    def k1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def k2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    m = np.zeros((dst, src), np.float64)
    for i in range(dst):
        x = (i + 0.5) * src / dst - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        for off, w in zip((-1, 0, 1, 2), (k2(t + 1), k1(t), k1(1 - t), k2(2 - t)), strict=True):
            m[i, min(max(x0 + off, 0), src - 1)] += w
    return m.astype(np.float32)


UPSAMPLE_METHODS = ("nearest", "linear", "bilinear", "trilinear", "cubic", "bicubic", "tricubic",
                    "lanczos3", "lanczos5", "torch_bicubic")


@functools.cache
def upsample_matrix(src: int, dst: int, method: str) -> np.ndarray:
    """[dst, src] matrix of `jax.image.resize(method)` from src to dst samples, or of
    PyTorch's bicubic for method='torch_bicubic'."""
    if method not in UPSAMPLE_METHODS:
        raise ConfigError(f"upsample method must be one of {UPSAMPLE_METHODS}, got {method!r}")
    if src == dst:
        return np.eye(src, dtype=np.float32)
    if method == "torch_bicubic":
        return torch_bicubic_matrix(src, dst)
    with jax.ensure_compile_time_eval():
        m = jax.image.resize(jnp.eye(src, dtype=jnp.float32), (src, dst), method)
    return np.asarray(m).T.copy()


def resize2d(x: jax.Array, matrix_h: np.ndarray, matrix_w: np.ndarray) -> jax.Array:
    """[B, h, w, D] -> [B, h', w', D] with separable [h', h] and [w', w] matrices."""
    return jnp.einsum("ph,bhwd,qw->bpqd", jnp.asarray(matrix_h), x, jnp.asarray(matrix_w))


def downsample(x: jax.Array, size: int) -> jax.Array:
    """Area (average) downsampling of [B, H, W, D] to [B, size, size, D]."""
    _, h, w, _ = x.shape
    return resize2d(x, area_matrix(h, size), area_matrix(w, size))


def upsample(x: jax.Array, size: int, method: str = "cubic") -> jax.Array:
    """[B, s, s, D] -> [B, size, size, D] (identity when s == size)."""
    _, h, w, _ = x.shape
    return resize2d(x, upsample_matrix(h, size, method), upsample_matrix(w, size, method))
