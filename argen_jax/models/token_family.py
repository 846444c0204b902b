"""What every token-level image model shares (LlamaGen's raster of tokens, VAR's scales).

A `TokenImageFamily` trains on `data.kind='tokens'` (`data/tokens.py`: batches of token maps
[B, L] and labels) and turns its samples back into images with the tokenizer that made the
tokens (a `models.tokenizer.Tokenizer`, passed to the constructor: `registry.build_family`
loads it from `config.data.tokenizer` or the workdir stored in the token file before anything
is traced). It owns:

    conditioning   `labels(batch, rng, train)` (`models.labels.ClassLabels`): class labels,
                   dropped to the null class (= num_classes) at rate `model.label_dropout` in
                   training (CFG); the null class everywhere for unconditional models
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

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.evaluation.images import save_image_grid
from argen_jax.layers import quantizer as qlib
from argen_jax.models.base import Family
from argen_jax.models.labels import ClassLabels, LabelSettings


class TokenImageFamily(Family):
    Settings: type = LabelSettings  # the family's `config.model` dataclass (a subclass)

    def __init__(self, config, spec, tokenizer=None):
        super().__init__(config, spec)
        if spec.kind != "tokens":
            raise ConfigError(f"model {config.model.name!r} trains on token maps "
                              f"(data.kind='tokens'), got data.kind={spec.kind!r}")
        self.settings = config_lib.typed(self.Settings, config.model, "model",
                                         ignore=("name",))
        self.classes = ClassLabels.of(self.settings, spec.num_classes)
        self.conditional = self.classes.conditional
        self.num_classes = self.classes.num_classes
        self.null_class = self.classes.null_class  # the unconditional / start class
        self.codebook_size = spec.levels
        if tokenizer is not None and tokenizer.codebook_size != self.codebook_size:
            raise ConfigError(f"tokenizer {spec.tokenizer!r} has {tokenizer.codebook_size} "
                              f"codes but the token file has {self.codebook_size}")
        self._tokenizer = tokenizer

    # ---------------------------------------------------------------- conditioning
    def labels(self, batch, rng: jax.Array | None = None, train: bool = False) -> jax.Array:
        """int32 [B] class ids in [0, num_classes]; num_classes is the null class."""
        labels = batch["label"] if self.conditional else None
        return self.classes.train(labels, batch["tokens"].shape[0], rng, train)

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

    def to_images(self, samples, batch_size: int = 500, size: int = 0) -> np.ndarray:
        """Token maps [N, L] -> decoded images, ints [N, H, W, C] (`size` > 0: resized to
        [N, size, size, C], see `Tokenizer.decode`)."""
        samples = np.asarray(samples)
        out = [np.asarray(jax.device_get(self.tokenizer.decode(
            self.token_maps(jnp.asarray(samples[i:i + batch_size])), size)))
            for i in range(0, len(samples), batch_size)]
        return np.concatenate(out)

    def save_samples(self, samples: np.ndarray, path_stem: str,
                     columns: int | None = None) -> list[str]:
        """A grid of decoded samples, `columns` columns (one per class shown; default one per
        class, sample k having label k % classes), and the raw token maps next to it (.npy)."""
        path = path_stem + ".png"
        os.makedirs(os.path.dirname(path), exist_ok=True)
        np.save(path_stem + "_tokens.npy", np.asarray(samples))
        ncol = columns or (self.num_classes if self.num_classes > 1 else None)
        save_image_grid(self.to_images(samples), path, levels=self.image_levels, ncol=ncol)
        return [path, path_stem + "_tokens.npy"]
