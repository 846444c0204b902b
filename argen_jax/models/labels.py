"""Class conditioning of the class-conditional token models (IGPT, LlamaGen, VAR), in one place.

Class ids are 0 .. num_classes - 1; `num_classes` itself is the null class: the start token of
unconditional models, the label dropped to in training (classifier-free guidance) and the
unconditional branch of CFG at sampling time.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from argen_jax.errors import ConfigError
from argen_jax.models.base import drop_labels


@dataclasses.dataclass(frozen=True)
class LabelSettings:
    """The `config.model` fields of class conditioning, subclassed by the settings of every
    class-conditional family (IGPT, LlamaGen, VAR), which may change the defaults."""

    conditional: bool = True  # class-conditional (False: the null class only)
    label_dropout: float = 0.1  # training: label -> null class with this probability (CFG)

    def __post_init__(self):
        if not 0.0 <= self.label_dropout <= 1.0:
            raise ConfigError(f"model.label_dropout must be in [0, 1], got "
                              f"{self.label_dropout}")


@dataclasses.dataclass(frozen=True)
class ClassLabels:
    num_classes: int  # real classes; 0: unconditional (every row gets the null class)
    label_dropout: float = 0.0  # training: label -> null class with this probability

    @classmethod
    def of(cls, settings: LabelSettings, data_classes: int) -> ClassLabels:
        """Conditional only when the settings ask for it and the data has classes."""
        return cls(data_classes if settings.conditional and data_classes > 0 else 0,
                   settings.label_dropout)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    @property
    def null_class(self) -> int:
        return self.num_classes

    def null(self, batch: int) -> jax.Array:
        """The null class for `batch` rows, int32 [batch]."""
        return jnp.full((batch,), self.null_class, jnp.int32)

    def train(self, labels, batch: int, rng: jax.Array | None = None,
              train: bool = False) -> jax.Array:
        """int32 [B] class ids in [0, num_classes] for the loss: the batch's labels (dropped
        to the null class at rate label_dropout when training with an rng), the null class
        everywhere for unconditional models."""
        if not self.conditional:
            return self.null(batch)
        labels = jnp.asarray(labels).astype(jnp.int32)
        if train and rng is not None:
            labels = drop_labels(rng, labels, self.label_dropout, self.null_class)
        return labels

    def for_sampling(self, labels, batch: int, guided: bool) -> tuple[jax.Array, jax.Array | None]:
        """(labels int32 [B], the null labels [B] of CFG's unconditional branch or None):
        the null class for unconditional models or no labels; guidance only for
        conditional models."""
        if not self.conditional or labels is None:
            labels = self.null(batch)
        else:
            labels = jnp.asarray(labels).astype(jnp.int32)
        return labels, (self.null(batch) if guided and self.conditional else None)
