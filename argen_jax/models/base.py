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
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.data.pipeline import DataSpec

# Parameter-group labels with a fixed meaning for the optimizer (`ParamGroups`); any other
# label is a trained group with its own AdamW (its own moments and gradient clipping).
FROZEN = "frozen"  # never updated (feature nets, a tokenizer's codebook copied in)
ASSIGNED = "assign"  # updated by assignment through `assign_surrogate` (EMA codebooks, counters)


class Family(abc.ABC):
    def __init__(self, config, spec: DataSpec):
        self.config = config
        self.spec = spec

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
class DecodesImages(Protocol):
    """A family whose samples are not images (token maps): how to turn them into images."""

    image_levels: int  # levels of the images `to_images` returns

    def to_images(self, samples: np.ndarray) -> np.ndarray:
        """Samples -> ints [B, H, W, C] for sample-quality metrics."""


@runtime_checkable
class WritesSamples(Protocol):
    """A family with its own sample files (audio, decoded token grids); the loop's default
    is an image grid PNG."""

    def save_samples(self, samples: np.ndarray, path_stem: str) -> list[str]:
        """Writes files next to `path_stem`; returns the paths written."""


def images_of(family: Family, samples: np.ndarray) -> tuple[np.ndarray, int]:
    """(images ints [B, H, W, C], their number of levels) of a family's samples."""
    if isinstance(family, DecodesImages):
        return np.asarray(family.to_images(samples)), family.image_levels
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
