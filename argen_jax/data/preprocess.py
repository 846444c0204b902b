"""Image preprocessing as the ADM / LlamaGen / VAR papers' code does it (numpy + PIL only).

Every function takes a PIL image (or, for the crops of an already square array, a uint8
[H, W, C] array) and returns uint8 numpy arrays. Randomness comes only from an explicit
`rng` (a `numpy.random.Generator`, or anything `numpy.random.default_rng` accepts: an int, a
list of ints), so an example's preprocessing is a pure function of its seed; the loader
derives that seed from (seed, step, example index) (`data/grain_loader.py`).

- `center_crop_arr` (ADM, used by LlamaGen and VAR for evaluation and reference statistics):
  while the short side is at least twice the target, halve the image with a BOX filter; then
  resize with BICUBIC so the short side is the target (other side rounded); centre crop with
  floor offsets.
- `random_crop_arr` (LlamaGen's training crop): the short side is resized (same BOX-then-
  BICUBIC rule) to an integer drawn uniformly from [ceil(size / max_crop_frac),
  ceil(size / min_crop_frac)], then a uniformly placed size x size crop; LlamaGen follows it
  with a horizontal flip with probability 0.5 (`random_flip`).
- `ten_crop_flip_arr` (LlamaGen's code extraction with --ten-crop): `center_crop_arr` to
  int(size * crop_range) (crop_range 1.1), then torchvision's TenCrop(size): the four corner
  crops and the centre crop (offsets round((S - size) / 2), Python rounding), then the same
  five of the horizontally flipped image: 10 crops in the order tl, tr, bl, br, centre,
  flipped tl, tr, bl, br, centre. Without --ten-crop LlamaGen stores the centre crop and its
  flip (`center_flip_arr`).
"""
from __future__ import annotations

import math

import numpy as np
from PIL import Image

from argen_jax.errors import DataError


def to_rgb(pil_image: Image.Image) -> Image.Image:
    """The image in RGB mode (grey, palette, CMYK, RGBA are converted as PIL does)."""
    return pil_image if pil_image.mode == "RGB" else pil_image.convert("RGB")


def resize_short_side(pil_image: Image.Image, short: int) -> Image.Image:
    """ADM's resize: BOX-halve while min(w, h) >= 2 * short, then BICUBIC to a short side of
    `short` (the long side scaled by the same factor and rounded)."""
    if short < 1:
        raise DataError(f"resize target must be positive, got {short}")
    im = pil_image
    while min(*im.size) >= 2 * short:
        im = im.resize(tuple(s // 2 for s in im.size), resample=Image.BOX)
    scale = short / min(*im.size)
    return im.resize(tuple(round(s * scale) for s in im.size), resample=Image.BICUBIC)


def center_crop(pil_image: Image.Image, size: int) -> Image.Image:
    """ADM / LlamaGen centre crop as a PIL image (`center_crop_arr` is its array)."""
    im = resize_short_side(pil_image, size)
    top = (im.size[1] - size) // 2
    left = (im.size[0] - size) // 2
    return im.crop((left, top, left + size, top + size))


def center_crop_arr(pil_image: Image.Image, size: int) -> np.ndarray:
    """ADM / LlamaGen centre crop: uint8 [size, size, C]."""
    return np.asarray(center_crop(pil_image, size))


def crop_short_side_range(size: int, min_crop_frac: float = 0.8,
                          max_crop_frac: float = 1.0) -> tuple[int, int]:
    """The inclusive range of short sides `random_crop_arr` draws from."""
    if not 0 < min_crop_frac <= max_crop_frac <= 1:
        raise DataError(f"crop fractions must satisfy 0 < min_crop_frac <= max_crop_frac <= 1, "
                        f"got {min_crop_frac}, {max_crop_frac}")
    return math.ceil(size / max_crop_frac), math.ceil(size / min_crop_frac)


def random_crop(pil_image: Image.Image, size: int, rng=None, min_crop_frac: float = 0.8,
                max_crop_frac: float = 1.0) -> Image.Image:
    """LlamaGen's random crop as a PIL image (`random_crop_arr` is its array)."""
    rng = np.random.default_rng(rng)
    lo, hi = crop_short_side_range(size, min_crop_frac, max_crop_frac)
    short = int(rng.integers(lo, hi + 1))
    im = resize_short_side(pil_image, short)
    top = int(rng.integers(im.size[1] - size + 1))
    left = int(rng.integers(im.size[0] - size + 1))
    return im.crop((left, top, left + size, top + size))


def random_crop_arr(pil_image: Image.Image, size: int, rng=None, min_crop_frac: float = 0.8,
                    max_crop_frac: float = 1.0) -> np.ndarray:
    """LlamaGen's random crop: uint8 [size, size, C]. `rng`: Generator or seed."""
    return np.asarray(random_crop(pil_image, size, rng, min_crop_frac, max_crop_frac))


def hflip(arr: np.ndarray) -> np.ndarray:
    """Horizontal flip of [..., H, W, C] (mirror left-right)."""
    return np.ascontiguousarray(arr[..., ::-1, :])


def draw_flip(rng=None, p: float = 0.5) -> bool:
    """Whether to flip (torchvision's RandomHorizontalFlip: flip iff u < p)."""
    return bool(np.random.default_rng(rng).random() < p)


def random_flip(arr: np.ndarray, rng=None, p: float = 0.5) -> np.ndarray:
    """`hflip` with probability p (`draw_flip`)."""
    return hflip(arr) if draw_flip(rng, p) else arr


def five_crop_offsets(height: int, width: int, size: int) -> list[tuple[int, int]]:
    """(top, left) of torchvision's FiveCrop: tl, tr, bl, br, centre."""
    if size > min(height, width):
        raise DataError(f"crop size {size} exceeds the image size {height}x{width}")
    dh, dw = height - size, width - size
    # torchvision's centre crop rounds the half margin with Python's round (half to even)
    return [(0, 0), (0, dw), (dh, 0), (dh, dw), (int(round(dh / 2.0)), int(round(dw / 2.0)))]


def five_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """[H, W, C] -> [5, size, size, C]: torchvision's FiveCrop (tl, tr, bl, br, centre)."""
    return np.stack([arr[t:t + size, left:left + size]
                     for t, left in five_crop_offsets(arr.shape[0], arr.shape[1], size)])


def ten_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """[H, W, C] -> [10, size, size, C]: torchvision's TenCrop (five crops, then the five of
    the horizontally flipped image)."""
    return np.concatenate([five_crop(arr, size), five_crop(hflip(arr), size)])


def ten_crop_flip_arr(pil_image: Image.Image, size: int, crop_range: float = 1.1) -> np.ndarray:
    """LlamaGen's --ten-crop code extraction: uint8 [10, size, size, C]."""
    if crop_range < 1:
        raise DataError(f"crop_range must be >= 1, got {crop_range}")
    return ten_crop(center_crop_arr(pil_image, int(size * crop_range)), size)


def center_flip_arr(pil_image: Image.Image, size: int) -> np.ndarray:
    """LlamaGen's code extraction without ten-crop: the centre crop and its flip, [2, ...]."""
    c = center_crop_arr(pil_image, size)
    return np.stack([c, hflip(c)])
