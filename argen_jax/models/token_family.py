"""What every token-level image model shares (LlamaGen's raster of tokens, VAR's scales).

A `TokenImageFamily` trains on `data.kind='tokens'` (`data/tokens.py`: batches of token maps
[B, L] and labels) and turns its samples back into images with the tokenizer that made the
tokens (a `models.tokenizer.Tokenizer`, passed to the constructor: `registry.build_family`
loads it from `config.data.tokenizer` or the workdir stored in the token file before anything
is traced). It owns:

    conditioning   `labels(batch, rng, train)`: class labels, dropped to the null class
                   (= num_classes) at rate `model.label_dropout` in training (CFG); the null
                   class everywhere for unconditional models
    token maps     `token_maps(tokens)`: [B, L] -> the tokenizer's index structure
                   ([B, h, w] or one [B, p_s, p_s] per scale)
    images         `to_images` (decode, for sample-quality metrics) and `save_samples` (a grid
                   with one column per class, since sample k has label k % num_classes)
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.errors import ConfigError
from argen_jax.layers import quantizer as qlib
from argen_jax.models.base import Family, drop_labels


class TokenImageFamily(Family):
    def __init__(self, config, spec, tokenizer=None):
        super().__init__(config, spec)
        if spec.kind != "tokens":
            raise ConfigError(f"model {config.model.name!r} trains on token maps "
                              f"(data.kind='tokens'), got data.kind={spec.kind!r}")
        m = config.model
        self.conditional = bool(m.get("conditional", True)) and spec.num_classes > 0
        self.num_classes = spec.num_classes if self.conditional else 0
        self.null_class = self.num_classes  # the unconditional / start class
        self.label_dropout = float(m.get("label_dropout", 0.1))
        self.codebook_size = spec.levels
        if tokenizer is not None and tokenizer.codebook_size != self.codebook_size:
            raise ConfigError(f"tokenizer {spec.tokenizer!r} has {tokenizer.codebook_size} "
                              f"codes but the token file has {self.codebook_size}")
        self._tokenizer = tokenizer

    # ---------------------------------------------------------------- conditioning
    def labels(self, batch, rng: jax.Array | None = None, train: bool = False) -> jax.Array:
        """int32 [B] class ids in [0, num_classes]; num_classes is the null class."""
        n = batch["tokens"].shape[0]
        if not self.conditional:
            return jnp.full((n,), self.null_class, jnp.int32)
        labels = batch["label"].astype(jnp.int32)
        if train and rng is not None:
            labels = drop_labels(rng, labels, self.label_dropout, self.null_class)
        return labels

    def sample_labels(self, labels, batch: int) -> jax.Array:
        """The labels `sample` conditions on (the null class for unconditional models)."""
        if not self.conditional or labels is None:
            return jnp.full((batch,), self.null_class, jnp.int32)
        return labels.astype(jnp.int32)

    # ---------------------------------------------------------------- tokens <-> images
    def token_maps(self, tokens):
        """[B, L] -> [B, h, w] (one map) or a list of [B, p_s, p_s] (multi-scale)."""
        if self.spec.scales:
            return qlib.split_scales(tokens, self.spec.scales)
        return tokens.reshape(tokens.shape[0], *self.spec.grid)

    @property
    def tokenizer(self):
        """The trained tokenizer (`models.tokenizer.Tokenizer`) given to the constructor."""
        if self._tokenizer is None:
            raise ConfigError(f"{type(self).__name__} needs the tokenizer of its tokens (to "
                              "decode samples, for VAR's inputs): set data.tokenizer to the "
                              "tokenizer's workdir")
        return self._tokenizer

    @property
    def image_levels(self) -> int:
        return self.tokenizer.image_levels

    def to_images(self, samples, batch_size: int = 500) -> np.ndarray:
        """Token maps [N, L] -> decoded images, ints [N, H, W, C]."""
        samples = np.asarray(samples)
        out = [np.asarray(jax.device_get(self.tokenizer.decode(
            self.token_maps(jnp.asarray(samples[i:i + batch_size])))))
            for i in range(0, len(samples), batch_size)]
        return np.concatenate(out)

    def save_samples(self, samples: np.ndarray, path_stem: str) -> list[str]:
        """A grid of decoded samples, one column per class (sample k has label k % classes),
        and the raw token maps next to it (.npy)."""
        from argen_jax.evaluation.images import save_image_grid

        path = path_stem + ".png"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path_stem + "_tokens.npy", np.asarray(samples))
        ncol = self.num_classes if self.num_classes > 1 else None
        save_image_grid(self.to_images(samples), path, levels=self.image_levels, ncol=ncol)
        return [path, path_stem + "_tokens.npy"]
