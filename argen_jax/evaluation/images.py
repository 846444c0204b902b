"""Image grids as PNG."""
from __future__ import annotations

import math

import numpy as np
from PIL import Image


def to_uint8(images, levels: int) -> np.ndarray:
    """Images of ints in [0, levels) -> uint8 [0, 255] (the one conversion: grids, evaluation
    shards, served PNGs)."""
    x = np.asarray(images).astype(np.float64) * (255.0 / max(levels - 1, 1))
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def make_grid(images: np.ndarray, levels: int = 256, ncol: int | None = None,
              pad: int = 1) -> np.ndarray:
    """[N, H, W, C] ints in [0, levels) -> one uint8 [H', W', C] grid (C in {1, 3})."""
    x = np.asarray(images)
    if x.ndim == 3:
        x = x[..., None]
    x = to_uint8(x, levels)
    n, h, w, c = x.shape
    ncol = ncol or int(math.ceil(math.sqrt(n)))
    nrow = int(math.ceil(n / ncol))
    grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 128, np.uint8)
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[pad + r * (h + pad) : pad + r * (h + pad) + h,
             pad + q * (w + pad) : pad + q * (w + pad) + w] = x[i]
    return grid


def save_image_grid(images, path: str, levels: int = 256, ncol: int | None = None) -> None:
    grid = make_grid(images, levels, ncol)
    if grid.shape[-1] == 1:
        grid = grid[..., 0]
    Image.fromarray(grid).save(path)
