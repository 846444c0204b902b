"""The contract between a model family and the shared training loop / launcher.

A family owns its linen module(s), its likelihood and its sampler; the loop owns optimisation,
sharding, checkpoints, evaluation bookkeeping and writing outputs. A family never names a mesh
axis and the loop never looks inside a model.

Metrics convention: `loss` returns a scalar to minimise and a dict of *sums* over the batch
(weighted by `batch['mask']`), always including
    nll_sum      total negative log-likelihood in nats
    num_dims     number of modelled dimensions (pixels x channels, samples, tokens)
    num_examples number of (unpadded) examples
so the loop can report exact nats per example and bits per dimension over a whole test set.
"""
from __future__ import annotations

import abc
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.data.pipeline import DataSpec


class Family(abc.ABC):
    def __init__(self, config, spec: DataSpec):
        self.config = config
        self.spec = spec

    @abc.abstractmethod
    def init(self, rng: jax.Array, batch: dict) -> dict:
        """Variables of the model ({'params': ...}), with logical-axis boxes."""

    @abc.abstractmethod
    def loss(self, params, batch: dict, rng: jax.Array, train: bool) -> tuple[jax.Array, dict]:
        """(scalar loss, metric sums). Pure and jittable."""

    def loss_at_step(self, params, batch: dict, rng: jax.Array,
                     step: jax.Array) -> tuple[jax.Array, dict]:
        """The training loss at optimizer step `step` (traced int32 scalar). Override when the
        objective depends on training progress (e.g. a GAN term that starts at a given step);
        the default is `loss(..., train=True)`."""
        return self.loss(params, batch, rng, True)

    def make_optimizer(self, train_cfg):
        """(optax transformation over `params`, lr schedule). Default: AdamW + clipping from
        `config.train` (train/optim.py). Override for parameter groups (a GAN's two players,
        frozen feature nets, state updated by assignment)."""
        from argen_jax.train.optim import make_optimizer

        return make_optimizer(train_cfg)

    def sample(self, params, keys: jax.Array, labels: jax.Array | None) -> jax.Array:
        """keys [B, 2]: one key per sample (see sampling.loop.sample_keys); labels [B] or
        None. Returns the samples [B, ...] in the data's integer format. Jittable."""
        raise NotImplementedError(f"{type(self).__name__} has no sampler")

    @property
    def image_levels(self) -> int:
        """Levels of the images `to_images` returns (sample-quality metrics rescale by it)."""
        return self.spec.levels

    def to_images(self, samples: np.ndarray) -> np.ndarray:
        """Samples -> ints [B, H, W, C] for sample-quality metrics. Identity for pixel models;
        token models decode with their tokenizer."""
        return samples

    def save_samples(self, samples: np.ndarray, path_stem: str) -> list[str]:
        """Writes samples (a grid PNG for images); returns the paths written."""
        from argen_jax.evaluation.images import save_image_grid

        path = path_stem + ".png"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        save_image_grid(samples, path, levels=self.spec.levels)
        return [path]

    def extra_state(self) -> dict[str, Any]:
        return {}


def drop_labels(rng: jax.Array, labels: jax.Array, rate: float, null_class: int) -> jax.Array:
    """Classifier-free guidance training: each label becomes `null_class` with prob. `rate`."""
    if rate <= 0:
        return labels
    drop = jax.random.bernoulli(rng, rate, labels.shape)
    return jnp.where(drop, null_class, labels)
