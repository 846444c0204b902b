"""Natural-image RGB patches cut from the real photographs that ship with scikit-image.

An offline stand-in for CIFAR-10-sized natural images: square patches (32x32 by default) cut
on a grid from photos in `skimage.data`. The train / test split is by *source photo* (no photo
contributes to both), so the test bits/dim measure generalisation to unseen images. Training
patches may overlap (`train_stride` < size); test patches never do.

Real users train on CIFAR-10 through the TFDS path instead (`data.kind='image'`,
`data.name='tfds'`, `data.tfds_name='cifar10'`; see experiments/pixelcnnpp/cifar10.py).
"""
from __future__ import annotations

import numpy as np

from argen_jax.data.images import ImageSet
from argen_jax.data.pipeline import ImageData
from argen_jax.errors import DataError

# Real colour photographs in skimage.data that need no download (synthetic images such as
# colorwheel / logo and the duplicate `cat` (= chelsea) are left out).
TRAIN_PHOTOS = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "stereo_motorcycle")
TEST_PHOTOS = ("astronaut", "coffee")


def load_photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3] photo from skimage.data (stereo pairs: the left view)."""
    import skimage.data

    fn = getattr(skimage.data, name, None)
    if fn is None:
        raise DataError(f"skimage.data has no photo {name!r}")
    try:
        img = fn()
    except Exception as e:  # noqa: BLE001 - skimage raises several types for missing files
        raise DataError(f"skimage.data.{name}() could not be loaded offline: {e}") from e
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise DataError(f"skimage.data.{name} is not an RGB photo: shape {img.shape}")
    return img[..., :3].astype(np.uint8)


def cut_patches(img: np.ndarray, size: int, stride: int) -> np.ndarray:
    """[H, W, 3] -> [N, size, size, 3]: every grid position (top-left corners step `stride`)."""
    h, w, _ = img.shape
    rows = range(0, h - size + 1, stride)
    cols = range(0, w - size + 1, stride)
    return np.stack([img[i : i + size, j : j + size] for i in rows for j in cols])


def load_patches(photos, size: int = 32, stride: int = 32) -> ImageSet:
    """Patches of the given photos; label = index of the source photo in `photos`."""
    xs, ys = [], []
    for k, name in enumerate(photos):
        p = cut_patches(load_photo(name), size, stride)
        xs.append(p)
        ys.append(np.full(len(p), k, np.int32))
    if not xs:
        raise DataError("no photos given for the patch dataset")
    return ImageSet(np.concatenate(xs), np.concatenate(ys), 0)


def spread_subset(s: ImageSet, n: int) -> ImageSet:
    """n patches evenly spread over the set (every photo represented), or all if n is 0."""
    if not n or n >= len(s):
        return s
    idx = np.linspace(0, len(s) - 1, n).round().astype(int)
    return ImageSet(s.images[idx], s.labels[idx], s.num_classes)


def build_patch_data(cfg, seed: int) -> ImageData:
    """registry.DATA['photo_patches']: train patches from `cfg.train_photos` (stride
    `cfg.train_stride`), test patches (non-overlapping) from `cfg.test_photos`."""
    size = cfg.get("patch_size", 32)
    train_photos = tuple(cfg.get("train_photos", TRAIN_PHOTOS))
    test_photos = tuple(cfg.get("test_photos", TEST_PHOTOS))
    if set(train_photos) & set(test_photos):
        raise DataError(f"photos in both splits: {sorted(set(train_photos) & set(test_photos))}")
    train = load_patches(train_photos, size, cfg.get("train_stride", size // 2))
    test = load_patches(test_photos, size, size)
    train = spread_subset(train, cfg.get("train_limit", 0))
    test = spread_subset(test, cfg.get("test_limit", 0))
    return ImageData(train, test, batch_size=cfg.batch_size,
                     eval_batch_size=cfg.get("eval_batch_size", cfg.batch_size), seed=seed)
