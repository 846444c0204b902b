"""The contract between a model family and the shared training loop.

A family is a model, its likelihood and its sampler:

    init(rng, batch) -> variables        {'params': ...}, with logical-axis boxes
    loss(params, batch, rng, train, step=None) -> (scalar, metric sums)
    sample(params, keys, labels) -> samples

Everything else is an optional capability the loop looks for (`isinstance` on the protocols
below): parameter groups for the optimizer, decoding samples to images, writing samples. The
loop (`train/`) owns optimisation, sharding, checkpoints, evaluation bookkeeping and
output; a family never names a mesh axis and never imports the loop.

Metrics convention: `loss` returns a scalar to minimise and a dict of *sums* over the batch
(weighted by `batch['mask']`), always including
    nll_sum      total negative log-likelihood in nats
    num_dims     number of modelled dimensions (pixels x channels, samples, tokens)
    num_examples number of (unpadded) examples
so the loop can report exact nats per example and bits per dimension over a whole test set.
"""
from __future__ import annotations

import abc
import dataclasses
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import ConfigError, DataError
from argen_jax.sampling.loop import Steps
from argen_jax.sampling.settings import SamplingSettings

# Parameter-group labels with a fixed meaning for the optimizer (`ParamGroups`); any other
# label is a trained group with its own AdamW (its own moments and gradient clipping).
FROZEN = "frozen"  # never updated (feature nets, a tokenizer's codebook copied in)
ASSIGNED = "assign"  # updated by assignment through `assign_surrogate` (EMA codebooks, counters)


class Family(abc.ABC):
    # the family's own defaults of config.sample (under the config's keys), e.g. VAR's
    # cfg_schedule='linear'
    sampling_defaults: dict = {}

    def __init__(self, config, spec: DataSpec):
        self.config = config
        self.spec = spec
        # config.sample typed once per run: the Experiment, inference.Run and the sampler
        # all read this one
        self.sampling = SamplingSettings.from_config(config, **self.sampling_defaults)

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: dict) -> dict:
        """Variables of the model ({'params': ...}), with logical-axis boxes."""

    @abc.abstractmethod
    def loss(self, params, batch: dict, rng: jax.Array, train: bool,
             step: jax.Array | None = None) -> tuple[jax.Array, dict]:
        """(scalar loss, metric sums). Pure and jittable. `step` is the optimizer step
        (traced int32 scalar) in training, None in evaluation: objectives that depend on
        training progress (a GAN term that starts at a given step) read it."""

    def sample(self, params, keys: jax.Array, labels: jax.Array | None) -> jax.Array:
        """keys [B, 2]: one key per sample (see sampling.loop.sample_keys); labels [B] or
        None. Returns the samples [B, ...] in the data's integer format. Jittable."""
        raise NotImplementedError(f"{type(self).__name__} has no sampler")


def has_sampler(family: Family) -> bool:
    """Whether the family draws samples (a tokenizer, for one, does not)."""
    return type(family).sample is not Family.sample


@runtime_checkable
class ParamGroups(Protocol):
    """A family whose parameters are not all trained alike."""

    # every label `param_groups` can return: the optimizer state holds one entry per name
    # (whether or not this config has parameters in that group), so its layout is fixed
    group_names: tuple[str, ...]

    def param_groups(self, params: dict) -> dict:
        """A prefix tree of `params` whose leaves are group labels: FROZEN, ASSIGNED, or
        the name of a trained group (each trained group gets its own AdamW + clipping)."""


@runtime_checkable
class CountsFlops(Protocol):
    """A family that knows its model FLOPs (`models/flops.py`): the loop reports throughput
    and MFU from them (other families: XLA's count of the compiled step)."""

    def train_flops_per_example(self) -> float:
        """Model FLOPs of one example's training step (forward + backward)."""

    def tokens_per_example(self) -> int:
        """Tokens one example trains on (`train/tokens_per_sec`)."""


@runtime_checkable
class DecodesImages(Protocol):
    """A family whose samples are not images (token maps): how to turn them into images."""

    image_levels: int  # levels of the images `to_images` returns

    def to_images(self, samples: np.ndarray, size: int = 0) -> np.ndarray:
        """Samples -> ints [B, H, W, C] for sample-quality metrics; `size` > 0: resized to
        [B, size, size, C] before rounding (an evaluation protocol's image size)."""


@runtime_checkable
class WritesSamples(Protocol):
    """A family with its own sample files (audio, decoded token grids); the loop's default
    is an image grid PNG."""

    def save_samples(self, samples: np.ndarray, path_stem: str,
                     columns: int | None = None) -> list[str]:
        """Writes files next to `path_stem`; returns the paths written. `columns`: the grid's
        columns (one per class shown) where the files are a grid."""


@dataclasses.dataclass(frozen=True)
class CodingSymbols:
    """What one step of a family's `Steps` decides, for the lossless codec (`argen_jax.codec`).

    A step fixes `per_step` symbols (M) that are coded in parallel (their distributions do not
    depend on each other), each made of `stages` symbols (S) coded one after the other (an RGB
    pixel of a mixture: R, then G given R, then B given R and G). The codec holds a step's
    symbols as ints x [B, M, S]."""

    levels: int  # V: the alphabet of every symbol
    log_probs: Callable  # (step output, x [B, M, S] so far, stage) -> log P [B, M, V] (f32)
    to_draw: Callable  # x [B, M, S] -> what the sampler's draw returns (`write_fn`'s input)
    targets: Callable  # data [B, ...] -> x of every step, ints [num_steps, B, M, S]
    per_step: int = 1  # M
    stages: int = 1  # S


@runtime_checkable
class CodesLosslessly(Protocol):
    """A family whose exact likelihood drives the lossless codec: the sampler's order (its
    `seq` after the last step is the data) and the distributions of every step."""

    def coding_steps(self, params, shape: tuple[int, ...], labels) -> Steps:
        """The sampler's `Steps` for data of `shape` per example (the batch is labels' rows:
        labels int32 [B], ignored by unconditional models)."""

    def coding_symbols(self) -> CodingSymbols:
        """How a step's output becomes distributions and the data becomes symbols."""

    def coding_labels(self) -> tuple[int, int | None]:
        """(n, default): labels are ids in [0, n) (n = 0: the model takes none) and `default`
        is the label of data given without one (None: the label is required)."""


def categorical_symbols(levels: int, step_targets: Callable, per_step: int = 1) -> CodingSymbols:
    """`CodingSymbols` of a softmax head: step outputs are logits [B, levels] (per_step = 1)
    or [B, M, levels]; step_targets(data) -> ints [num_steps, B] or [num_steps, B, M]."""

    def log_probs(out, x, stage):
        del x, stage
        return jax.nn.log_softmax(out.astype(jnp.float32), axis=-1).reshape(
            out.shape[0], per_step, levels)

    def targets(data):
        t = jnp.asarray(step_targets(data))
        return t.reshape(t.shape[0], t.shape[1], per_step, 1)

    to_draw = (lambda x: x[:, 0, 0]) if per_step == 1 else (lambda x: x[:, :, 0])
    return CodingSymbols(levels, log_probs, to_draw, targets, per_step)


def check_coding_shape(spec: DataSpec, shape) -> None:
    """A DataError unless examples of `shape` are what the family was trained on."""
    if tuple(shape) != tuple(spec.shape):
        raise DataError(f"the data has shape {tuple(shape)} per example, the model was "
                        f"trained on {tuple(spec.shape)}")


class RasterCoding:
    """`coding_steps` / `coding_labels` of the image families whose sampler is
    `raster_steps(params, batch, labels)` (PixelCNN, Gated PixelCNN, PixelCNN++): the labels
    are the data's classes when the family is class-conditional."""

    def coding_steps(self, params, shape, labels) -> Steps:
        check_coding_shape(self.spec, shape)
        return self.raster_steps(params, labels.shape[0], labels if self.conditional else None)

    def coding_labels(self) -> tuple[int, int | None]:
        return (self.spec.num_classes if self.conditional else 0), None


def images_of(family: Family, samples: np.ndarray, size: int = 0) -> tuple[np.ndarray, int]:
    """(images ints [B, H, W, C], their number of levels) of a family's samples; `size` > 0:
    decoded at size x size (families that decode images only)."""
    if isinstance(family, DecodesImages):
        return np.asarray(family.to_images(samples, size=size)), family.image_levels
    if size:
        raise ConfigError(f"{type(family).__name__} samples are not decoded: they cannot be "
                          f"resized to {size}")
    return np.asarray(samples), family.spec.levels


def drop_labels(rng: jax.Array, labels: jax.Array, rate: float, null_class: int) -> jax.Array:
    """Classifier-free guidance training: each label becomes `null_class` with prob. `rate`."""
    if rate <= 0:
        return labels
    drop = jax.random.bernoulli(rng, rate, labels.shape)
    return jnp.where(drop, null_class, labels)


def assign_surrogate(old, new) -> jax.Array:
    """A zero-valued loss term whose gradient w.r.t. `old` is (old - new): under an ASSIGNED
    group's update (`optax.scale(-1)`) the update is (new - old), i.e. the leaf becomes `new`."""
    terms = jax.tree.map(
        lambda o, n: jnp.sum(jax.lax.stop_gradient(o - n) * (o - jax.lax.stop_gradient(o))),
        old, new)
    return sum(jax.tree.leaves(terms), jnp.zeros(()))
