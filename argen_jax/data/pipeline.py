"""Deterministic, restartable batching over any random-access source.

The batch of training step k is a pure function of (seed, k): the epoch's permutation is
`default_rng([seed, epoch])`, and any per-step randomness (dynamic binarization) draws from
`default_rng([seed, 1, k])`. The iterator's position is therefore just the step, which the
checkpoint stores; resuming replays exactly the batches an uninterrupted run would see, on any
number of devices or processes.

A batch is a dict of numpy arrays with a leading global-batch axis, keyed by the names in
`data/batch.py`. Every batch carries `mask` [B] float32 (1 for real examples, 0 for padding in
the last eval batch); losses weight their sums by it.

A data source is a `DataBuilder`: `spec`, `train_batch(step)`, `eval_batches()`, and
optionally `test_images()` (`HasTestImages`). `data/builders.py` maps `config.data.kind` to
the function that builds one from its typed `config.data` settings.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from argen_jax.config_lib import typed
from argen_jax.data import batch as keys
from argen_jax.data.images import BINARIZE, ImageDataSettings, ImageSet, load_image_set
from argen_jax.errors import ConfigError, DataError


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """What a model family needs to know about its data."""

    shape: tuple[int, ...]  # one example, e.g. (28, 28, 1) or (T,)
    levels: int  # number of discrete values per dimension (256, 2, codebook size, ...)
    num_classes: int = 0  # 0: unconditional data
    kind: str = "image"  # 'image', 'audio', 'tokens', ...
    grid: tuple[int, int] | None = None  # tokens: the (finest) h x w token map
    scales: tuple[int, ...] | None = None  # tokens: VAR's side lengths p_s, coarse to fine
    tokenizer: str = ""  # tokens: the tokenizer run's workdir ('' = unknown)
    sample_rate: int = 0  # audio: samples per second
    hop: int = 0  # audio: samples per feature frame (local conditioning)
    n_fft: int = 0  # audio: analysis window of the features
    n_mels: int = 0  # audio: features per frame
    source: str = ""  # audio: the data folder (its test utterances condition samples)


@runtime_checkable
class DataBuilder(Protocol):
    """What the loop needs of a data source (`data/builders.py` builds one per kind). Batches
    are dicts keyed by `data/batch.py`, a pure function of (seed, step) in training."""

    spec: DataSpec
    eval_batch_size: int  # the global batch of `eval_batches`

    def train_batch(self, step: int) -> dict:
        """The global training batch of `step` (always full: mask is all ones)."""

    def eval_batches(self) -> Iterator[dict]:
        """Every test example once, in a fixed order; the last batch padded (mask 0)."""


@runtime_checkable
class ProcessLocalData(Protocol):
    """A source that builds only this process's rows of each batch (an image folder: no process
    decodes images another one trains on). The loop asks for the loaders of its process and
    assembles global arrays with `jax.make_array_from_process_local_data`; process p of P reads
    rows [p * B / P, (p + 1) * B / P) of the global batch of B."""

    def train_loader(self, process_index: int, process_count: int) -> Callable[[int], dict]:
        """step -> this process's rows of the global training batch of `step`."""

    def eval_loader(self, process_index: int, process_count: int) -> Iterable[dict]:
        """This process's rows of each evaluation batch, in order (as `eval_batches`)."""


@runtime_checkable
class HasTestImages(Protocol):
    """A data source whose test examples are not images (token maps) but come from images:
    the reference set of sample-quality metrics."""

    def test_images(self) -> np.ndarray:
        """uint8 [N, H, W, C], in the order of the test examples."""


class RandomAccessBatcher:
    """Shuffled batches (drop remainder within an epoch) by step index."""

    def __init__(self, size: int, batch_size: int, seed: int,
                 fetch: Callable[[np.ndarray, int], dict]):
        if batch_size > size:
            raise DataError(f"batch_size {batch_size} exceeds the {size} training examples")
        self.size, self.batch_size, self.seed, self.fetch = size, batch_size, seed, fetch
        self.steps_per_epoch = size // batch_size
        self._perm_epoch, self._perm = -1, None

    def indices(self, step: int) -> np.ndarray:
        epoch, k = divmod(int(step), self.steps_per_epoch)
        if epoch != self._perm_epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.size)
            self._perm_epoch = epoch
        return self._perm[k * self.batch_size : (k + 1) * self.batch_size]

    def __call__(self, step: int) -> dict:
        batch = self.fetch(self.indices(step), step)
        batch["mask"] = np.ones((self.batch_size,), np.float32)
        return batch


def sequential_batches(size: int, batch_size: int,
                       fetch: Callable[[np.ndarray], dict]) -> Iterator[dict]:
    """Every example once, in order; the last batch is padded (mask 0) to full size."""
    for start in range(0, size, batch_size):
        idx = np.arange(start, min(start + batch_size, size))
        n = len(idx)
        batch = fetch(np.concatenate([idx, np.full(batch_size - n, idx[-1])]))
        mask = np.zeros((batch_size,), np.float32)
        mask[:n] = 1.0
        batch["mask"] = mask
        yield batch


# --------------------------------------------------------------------------- image data
def binarize_fixed(images: np.ndarray, seed: int) -> np.ndarray:
    """Bernoulli(x / 255) with a fixed seed: the standard evaluation set for binarized MNIST."""
    u = np.random.default_rng(seed).random(images.shape, dtype=np.float32)
    return (u < images.astype(np.float32) / 255.0).astype(np.uint8)


class ImageData:
    """Train / eval batches of {'image': uint8 [B, H, W, C], 'label': int32 [B], 'mask'}.

    binarize: 'none' (8-bit, 256 levels), 'dynamic' (train: a fresh Bernoulli(x/255) draw
    every step; eval: fixed seed), 'fixed' (fixed-seed draw for both), 'threshold' (x > 127).
    """

    def __init__(self, train: ImageSet, test: ImageSet, batch_size: int, eval_batch_size: int,
                 seed: int = 0,                 binarize: str = "none", binarize_seed: int = 1234):
        if binarize not in BINARIZE:
            raise ConfigError(f"data.binarize must be one of {BINARIZE}, got {binarize!r}")
        self.binarize, self.seed = binarize, seed
        self.train_set, self.test_set = train, test
        if binarize == "none":
            self._train_x, self._test_x, levels = train.images, test.images, 256
        elif binarize == "threshold":
            self._train_x = (train.images > 127).astype(np.uint8)
            self._test_x = (test.images > 127).astype(np.uint8)
            levels = 2
        else:
            levels = 2
            self._test_x = binarize_fixed(test.images, binarize_seed)
            self._train_x = (train.images if binarize == "dynamic"
                             else binarize_fixed(train.images, binarize_seed + 1))
        self.spec = DataSpec(tuple(train.images.shape[1:]), levels, train.num_classes, "image")
        self.eval_batch_size = eval_batch_size
        self.train_batch = RandomAccessBatcher(len(train), batch_size, seed, self._fetch_train)

    def _fetch_train(self, idx, step):
        x = self._train_x[idx]
        if self.binarize == "dynamic":
            u = np.random.default_rng([self.seed, 1, int(step)]).random(x.shape, np.float32)
            x = (u < x.astype(np.float32) / 255.0).astype(np.uint8)
        return {keys.IMAGE: x, keys.LABEL: self.train_set.labels[idx]}

    def eval_batches(self) -> Iterator[dict]:
        return sequential_batches(
            len(self.test_set), self.eval_batch_size,
            lambda idx: {keys.IMAGE: self._test_x[idx], keys.LABEL: self.test_set.labels[idx]},
        )


def build_image_data(cfg, seed: int) -> ImageData:
    """data.kind='image': `cfg` is `config.data` (or its `ImageDataSettings`)."""
    s = cfg if isinstance(cfg, ImageDataSettings) else typed(ImageDataSettings, cfg, "data")
    return ImageData(
        load_image_set(s, "train"),
        load_image_set(s, "test"),
        batch_size=s.batch_size,
        eval_batch_size=s.eval_batch_size or s.batch_size,
        seed=seed,
        binarize=s.binarize,
        binarize_seed=s.binarize_seed,
    )
