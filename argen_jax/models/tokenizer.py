"""A trained image tokenizer: the `VQModel` of a VQGAN run with its parameters bound.

    tok = Tokenizer.load('/tmp/tok')   # config.json + data_spec.json + the newest checkpoint
    idx = tok.encode(images)           # [B, h, w] or a list of [B, p_s, p_s] (multi-scale)
    images = tok.decode(idx)

`load` restores only the parameters (no `Experiment`, mesh, data pipeline or optimizer).
Every operation is one jitted `VQModel.apply`. VAR keeps a copy of the quantizer's params in
its own params (`var.tokenizer_subtree`) and calls `teacher_forcing_inputs`, `embed_scale`
and `next_scale_input` with that subtree as `params=` inside its own jitted functions: those
three are pure functions of the params they are given.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from argen_jax import config_lib
from argen_jax.data.builders import run_spec
from argen_jax.errors import CheckpointError
from argen_jax.io.checkpoint import restore_eval_params
from argen_jax.io.run_dir import load_config
from argen_jax.layers.vq_nets import ImageSpace, VQModel
from argen_jax.models.vqgan import VQGANSettings, variables


class Tokenizer:
    def __init__(self, settings: VQGANSettings, spec, params, step: int = 0, config=None):
        """settings: the run's `VQGANSettings`; spec: the `DataSpec` of its images; params:
        the family's params ({'generator', 'vq_state'?, ...})."""
        self.settings, self.spec, self.params = settings, spec, params
        self.step, self.config = step, config
        self.space = ImageSpace.of(spec, settings.ch_mult, settings.pad_to,
                                   settings.scales if settings.multiscale else None)
        self.model = settings.module(spec.shape[-1])
        model, space = self.model, self.space

        def apply(params, *args, method):
            return model.apply(variables(params), *args, method=method)

        self._encode = jax.jit(lambda p, x: apply(p, space.to_model(x), method=VQModel.encode))
        self._decode = jax.jit(lambda p, i, size: space.to_images(
            apply(p, i, method=VQModel.decode), size), static_argnums=2)
        self._reconstruct = jax.jit(lambda p, x: space.to_images(apply(
            p, apply(p, space.to_model(x), method=VQModel.encode), method=VQModel.decode)))
        self._decode_latent = jax.jit(
            lambda p, z: space.to_images(apply(p, z, method=VQModel.decode_latent)))
        self._latent = jax.jit(functools.partial(apply, method=VQModel.latent_from_indices))
        self._tf = jax.jit(functools.partial(apply, method=VQModel.teacher_forcing_inputs))
        self._embed = jax.jit(functools.partial(apply, method=VQModel.embed_scale),
                              static_argnums=1)
        self._next = jax.jit(functools.partial(apply, method=VQModel.next_scale_input),
                             static_argnums=2)

    @classmethod
    def of(cls, family, params, step: int = 0) -> Tokenizer:
        """The tokenizer of a `VQGANFamily` with these params (tests, converted weights)."""
        return cls(family.settings, family.spec, params, step, family.config)

    @classmethod
    def load(cls, workdir: str, use_ema: bool = True) -> Tokenizer:
        """The newest checkpoint of the tokenizer run in `workdir` (its Polyak-averaged params
        when the run kept them and `use_ema`). One-line CheckpointError when `workdir` is not
        a tokenizer run, has no checkpoint or a damaged one."""
        config = load_config(workdir, CheckpointError, "a tokenizer workdir")
        model = config.get("model")
        name = model.get("name") if model is not None else None
        if name != "vqgan":
            raise CheckpointError(f"{workdir!r} holds a {name!r} run, not a tokenizer")
        settings = config_lib.typed(VQGANSettings, config.model, "model", ignore=("name",))
        spec = run_spec(workdir, config)
        params, step = restore_eval_params(workdir, config, use_ema)
        return cls(settings, spec, params, step, config)

    # ---------------------------------------------------------------- what it is
    multiscale = property(lambda self: self.settings.multiscale)
    scales = property(lambda self: tuple(self.settings.scales) if self.multiscale else None)
    codebook_size = property(lambda self: int(self.settings.codebook_size))
    code_dim = property(lambda self: int(self.settings.code_dim))
    size = property(lambda self: self.space.size)  # model-space image size (after padding)
    image_levels = property(lambda self: self.spec.levels)

    @property
    def token_shapes(self) -> list[tuple[int, int]]:
        if self.multiscale:
            return [(s, s) for s in self.scales]
        f = 2 ** (len(self.settings.ch_mult) - 1)
        return [(self.size[0] // f, self.size[1] // f)]

    # ---------------------------------------------------------------- images <-> tokens
    def encode(self, images):
        """ints [B, H, W, C] -> token map [B, h, w] or list of [B, p_s, p_s] (multi-scale)."""
        return self._encode(self.params, jnp.asarray(images))

    def decode(self, indices, size: int = 0):
        """Token map(s) -> ints [B, H, W, C] in [0, levels); `size` > 0: resized to
        size x size (PyTorch bicubic) before rounding."""
        return self._decode(self.params, indices, int(size))

    def reconstruct(self, images):
        return self._reconstruct(self.params, jnp.asarray(images))

    def decode_latent(self, latent):
        """Latent [B, h, w, D] (e.g. VAR's f_hat) -> ints [B, H, W, C]."""
        return self._decode_latent(self.params, latent)

    def latent_from_indices(self, indices):
        """Quantized latent [B, h, w, D] from a token map, or from any prefix of scales."""
        return self._latent(self.params, indices)

    # ---------------------------------------------------------------- VAR (pure in params)
    def teacher_forcing_inputs(self, indices, params=None):
        """VAR: [B, sum_{s>=1} p_s^2, D], the input of scale s = accumulated latent of scales
        < s, area-downsampled to scale s. params: a (sub)tree holding the quantizer's params
        (default: this tokenizer's)."""
        return self._tf(self.params if params is None else params, list(indices))

    def embed_scale(self, s: int, indices, params=None):
        """VAR sampling: scale s's tokens [B, p_s, p_s] -> their latent contribution."""
        return self._embed(self.params if params is None else params, s, indices)

    def next_scale_input(self, f_hat, s: int, params=None):
        """VAR sampling: accumulated latent -> input of scale s [B, p_s, p_s, D]."""
        return self._next(self.params if params is None else params, f_hat, s)
