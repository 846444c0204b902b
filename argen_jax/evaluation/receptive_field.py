"""Receptive fields measured with `jax.grad`: which inputs can one output see?

For an autoregressive model the answer must be "only earlier positions". The gradient of one
output with respect to the whole input is an exact dependency map of that output (up to
accidental zeros, which random weights make vanishingly unlikely): a non-zero entry at or after
the output's position is a causality leak, a zero entry before it is a blind spot (PixelCNN's
stack of masked 3x3 convs misses pixels up and to the right; Gated PixelCNN misses none).

    g = input_gradient(lambda x: model.apply(params, x)[0, i, j, ch], x)   # |d out / d x|
    leaks = g[~raster_allowed(g.shape, (i, j, ch))]                       # must all be 0
    blind = blind_spot(g, (i, j, ch))                                     # earlier, unseen
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np


def input_gradient(fn: Callable[[jax.Array], jax.Array], x: jax.Array,
                   batch_index: int = 0) -> np.ndarray:
    """|d sum(fn(x)) / d x| of one example: x float [B, ...] -> float64 [...] (example
    `batch_index`). `fn` picks the output(s) to explain, e.g. one pixel's logits. Jitted:
    one compilation instead of op-by-op dispatch of the whole backward pass."""
    g = jax.jit(jax.grad(lambda v: jnp.sum(fn(v))))(jnp.asarray(x, jnp.float32))
    return np.abs(np.asarray(g, np.float64))[batch_index]


def raster_allowed(shape: tuple[int, ...], index: tuple[int, ...]) -> np.ndarray:
    """Boolean array of `shape` ([H, W, C], [T, C] or [T]): True where the input comes
    strictly before `index` in raster order (row-major over every axis, so inside a pixel R
    comes before G before B). Output `index` may depend on these inputs and no others."""
    # a shorter index names a whole position (all its channels count as 'at' it)
    flat = np.ravel_multi_index(tuple(index) + (0,) * (len(shape) - len(index)), shape)
    return (np.arange(int(np.prod(shape))) < flat).reshape(shape)


def leaks(grad: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Boolean map of inputs at or after `index` that the output depends on (must be none)."""
    return (grad != 0) & ~raster_allowed(grad.shape, index)


def blind_spot(grad: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    """Boolean map of earlier inputs the output does not see."""
    return (grad == 0) & raster_allowed(grad.shape, index)


def random_variables(module, *args, seed: int = 0, scale: float = 0.3) -> dict:
    """Variables of `module` with N(0, scale^2) entries, without compiling `init` (its
    shapes are traced abstractly, the values drawn with numpy). The architecture alone decides
    which inputs an output can see, so random weights suffice for receptive-field maps."""
    from flax import linen as nn

    abstract = nn.unbox(jax.eval_shape(module.init, jax.random.PRNGKey(0), *args))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.normal(size=s.shape) * scale).astype(s.dtype), abstract)
