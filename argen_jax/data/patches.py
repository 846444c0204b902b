"""Natural-image RGB patches cut from real photographs that ship with installed packages.

An offline stand-in for CIFAR-10-sized natural images: square patches (32x32 by default) cut
on a grid from photos in `skimage.data`, plus the sample photos of scikit-learn and matplotlib
(both already dependencies). The train / test split is by *source photo* (no photo
contributes to both), so the test bits/dim measure generalisation to unseen images. Training
patches may overlap (`train_stride` < size); test patches never do.

Photo names: `chelsea` (a `skimage.data` function), `sklearn:china` (scikit-learn's
`load_sample_image('china.jpg')`), `matplotlib:grace_hopper` (matplotlib's sample data).

Real users train on CIFAR-10 through the TFDS path instead (`data.kind='image'`,
`data.name='tfds'`, `data.tfds_name='cifar10'`; see experiments/pixelcnnpp/cifar10.py).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from argen_jax.config_lib import typed
from argen_jax.data.batch import check_batching
from argen_jax.data.images import ImageSet
from argen_jax.data.pipeline import ImageData
from argen_jax.errors import ConfigError, DataError

# Real colour photographs that need no download (synthetic images such as skimage's colorwheel
# / logo and the duplicate `cat` (= chelsea) are left out). Before 2026-11-23 the training
# split was the first six only: ~75% of their patches come from retina and hubble_deep_field
# (mostly black), so three everyday scenes were added.
TRAIN_PHOTOS = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina",
                "stereo_motorcycle", "sklearn:china", "sklearn:flower", "matplotlib:grace_hopper")
TEST_PHOTOS = ("astronaut", "coffee")
SOURCES = ("skimage", "sklearn", "matplotlib")


@dataclasses.dataclass(frozen=True)
class PatchDataSettings:
    """`config.data` of data.kind='photo_patches' (`sections.photo_patches_data` is the
    split every model of these patches shares)."""

    kind: str = "photo_patches"  # registry: which data builder (data/builders.py)
    patch_size: int = 32  # patch side
    train_stride: int = 0  # step between train patches (0: patch_size // 2, half overlap);
    # test patches never overlap
    train_per_photo: int = 0  # at most N train patches per photo, spread (0 = all)
    train_photos: tuple[str, ...] = TRAIN_PHOTOS  # photo names (see the module docstring)
    test_photos: tuple[str, ...] = TEST_PHOTOS  # held-out photos, none of train_photos
    batch_size: int = 64  # global batch (split over the data mesh axis)
    eval_batch_size: int = 0  # global eval batch (0: batch_size)
    train_limit: int = 0  # spread subset of N train patches (0 = all)
    test_limit: int = 0  # spread subset of N test patches (0 = all)

    def __post_init__(self):
        if self.kind != "photo_patches":
            raise ConfigError(f"data.kind={self.kind!r}: these are the settings of "
                              "'photo_patches'")
        if self.patch_size <= 0 or self.train_stride < 0 or self.train_per_photo < 0:
            raise ConfigError("data.patch_size must be positive, data.train_stride and "
                              "data.train_per_photo >= 0")
        for key in ("train_photos", "test_photos"):
            names = getattr(self, key)
            if not names or not all(isinstance(n, str) and n for n in names):
                raise ConfigError(f"data.{key}={names!r}: one or more photo names (e.g. "
                                  f"{TRAIN_PHOTOS[:2]})")
        check_batching(self)


def _read(source: str, key: str):
    if source == "skimage":
        import skimage.data

        fn = getattr(skimage.data, key, None)
        if fn is None:
            raise DataError(f"skimage.data has no photo {key!r}")
        return fn()
    if source == "sklearn":
        from sklearn.datasets import load_sample_image

        return load_sample_image(f"{key}.jpg")
    if source == "matplotlib":
        from matplotlib import cbook
        from PIL import Image

        with Image.open(cbook.get_sample_data(f"{key}.jpg", asfileobj=False)) as im:
            return np.asarray(im.convert("RGB"))
    raise DataError(f"unknown photo source {source!r} (known: {', '.join(SOURCES)})")


def load_photo(name: str) -> np.ndarray:
    """uint8 [H, W, 3] photo `name` or `source:name` (stereo pairs: the left view)."""
    source, _, key = name.rpartition(":")
    try:
        img = _read(source or "skimage", key)
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - the packages raise several types for missing files
        raise DataError(f"photo {name!r} could not be loaded offline: {e}") from e
    if isinstance(img, tuple):
        img = img[0]
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[-1] < 3:
        raise DataError(f"photo {name!r} is not an RGB photo: shape {img.shape}")
    return img[..., :3].astype(np.uint8)


def cut_patches(img: np.ndarray, size: int, stride: int) -> np.ndarray:
    """[H, W, 3] -> [N, size, size, 3]: every grid position (top-left corners step `stride`)."""
    h, w, _ = img.shape
    rows = range(0, h - size + 1, stride)
    cols = range(0, w - size + 1, stride)
    return np.stack([img[i : i + size, j : j + size] for i in rows for j in cols])


def load_patches(photos, size: int = 32, stride: int = 32, per_photo: int = 0) -> ImageSet:
    """Patches of the given photos; label = index of the source photo in `photos`.
    `per_photo` > 0 keeps at most that many per photo, spread over the photo (large photos
    such as retina would otherwise outweigh the others many times over)."""
    xs, ys = [], []
    for k, name in enumerate(photos):
        p = cut_patches(load_photo(name), size, stride)
        p = p[spread_index(len(p), per_photo)]
        xs.append(p)
        ys.append(np.full(len(p), k, np.int32))
    if not xs:
        raise DataError("no photos given for the patch dataset")
    return ImageSet(np.concatenate(xs), np.concatenate(ys), 0)


def spread_index(total: int, n: int) -> np.ndarray:
    """Indices of n items evenly spread over `total` (first and last included), or of all
    `total` if n is 0 or not smaller."""
    if not n or n >= total:
        return np.arange(total)
    return np.linspace(0, total - 1, n).round().astype(int)


def spread_subset(s: ImageSet, n: int) -> ImageSet:
    """n patches evenly spread over the set (every photo represented), or all if n is 0."""
    idx = spread_index(len(s), n)
    return s if len(idx) == len(s) else ImageSet(s.images[idx], s.labels[idx], s.num_classes)


def load_patch_split(s: PatchDataSettings, split: str) -> ImageSet:
    """The train patches of `s.train_photos` (stride `s.train_stride`, at most
    `s.train_per_photo` per photo) or the test patches (non-overlapping, all of them) of
    `s.test_photos`, cut to their spread subset of `{split}_limit`."""
    if set(s.train_photos) & set(s.test_photos):
        raise DataError(f"photos in both splits: "
                        f"{sorted(set(s.train_photos) & set(s.test_photos))}")
    size = s.patch_size
    if split == "train":
        out = load_patches(s.train_photos, size, s.train_stride or size // 2,
                           s.train_per_photo)
        return spread_subset(out, s.train_limit)
    return spread_subset(load_patches(s.test_photos, size, size), s.test_limit)


def build_patch_data(cfg, seed: int) -> ImageData:
    """data.kind='photo_patches': `cfg` is `config.data` (or its `PatchDataSettings`)."""
    s = cfg if isinstance(cfg, PatchDataSettings) else typed(PatchDataSettings, cfg, "data")
    train, test = load_patch_split(s, "train"), load_patch_split(s, "test")
    return ImageData(train, test, batch_size=s.batch_size,
                     eval_batch_size=s.eval_batch_size or s.batch_size, seed=seed)
