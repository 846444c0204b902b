"""An `Experiment` of a token-model config without its files: zero batches of the right shapes
and, for VAR, a multi-scale tokenizer whose quantizer parameters are zeros. What the memory
plan and the training-throughput benchmark need to build (and lower) a train step of the
ImageNet configs on a machine that has neither the token file nor the tokenizer run.

Token maps are ImageNet-256's by default: LlamaGen 16x16 maps of 16,384 codes, VAR the scales
1..16 of 4,096 codes, 1,000 classes. Other data kinds use the config's own data builder.
"""
from __future__ import annotations

import importlib.util

import numpy as np

from argen_jax import registry
from argen_jax.data.batch import LABEL, MASK, TOKENS
from argen_jax.data.pipeline import DataSpec
from argen_jax.train.experiment import Experiment

IMAGENET_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


def load_config(spec: str):
    """'path/to/config.py:arg' -> its get_config(arg)."""
    path, _, arg = spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("_shape_only_config", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.get_config(arg or None)


class ZeroTokens:
    """`DataBuilder` of all-zero token batches of `spec` (nothing read from disk)."""

    def __init__(self, spec: DataSpec, batch_size: int):
        self.spec, self.batch_size, self.eval_batch_size = spec, batch_size, batch_size

    def train_batch(self, step: int) -> dict:
        b = self.batch_size
        return {TOKENS: np.zeros((b, *self.spec.shape), np.int32),
                LABEL: np.zeros((b,), np.int32), MASK: np.ones((b,), np.float32)}

    def eval_batches(self):
        yield self.train_batch(0)


def override_model(config, remat=None, attention_impl=None, dtype=None, scan=False,
                   batch=0):
    """The benchmarks' model / batch flags on a config (None / False / 0: as configured); the
    eval batch follows the training batch."""
    for key, value in (("remat", remat), ("attention_impl", attention_impl),
                       ("dtype", dtype)):
        if value is not None:
            config.model[key] = value
    if scan:
        config.model.scan_layers = True
    if batch:
        config.data.batch_size = batch
    config.data.eval_batch_size = config.data.batch_size
    return config


def zero_var_tokenizer(scales, vocab: int):
    """VAR's released VQVAE settings with a `vocab`-code quantizer whose params are zeros:
    enough for VAR's teacher-forcing inputs (only the quantizer runs)."""
    import jax
    import jax.numpy as jnp

    from argen_jax.layers.quantizer import MultiScaleResidualQuantizer
    from argen_jax.models.tokenizer import Tokenizer
    from argen_jax.models.vqgan import STATE, VQGANSettings

    settings = VQGANSettings.released("var_vqvae")
    settings = VQGANSettings(**{**settings.__dict__, "codebook_size": vocab,
                                "scales": tuple(scales)})
    qk = dict(settings.quantizer_kwargs(), impl=settings.impl)
    side = scales[-1]
    z = jnp.zeros((1, side, side, settings.code_dim))
    shapes = jax.eval_shape(MultiScaleResidualQuantizer(**qk).init, jax.random.PRNGKey(0), z)
    zeros = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)
    params = {"generator": {"quantizer": zeros["params"]}}
    if STATE in zeros:
        params["vq_state"] = {"quantizer": zeros[STATE]}
    f = 2 ** (len(settings.ch_mult) - 1)
    image = DataSpec((side * f, side * f, 3), 256, 0, "image")
    return Tokenizer(settings, image, params)


def experiment(config, grid: int = 16, vocab: int = 0, classes: int = 1000,
               scales=IMAGENET_SCALES) -> Experiment:
    """The config's `Experiment`; token models get zero batches of `grid` x `grid` maps (VAR:
    `scales`) of `vocab` codes (0: LlamaGen 16384, VAR 4096) and a zero VAR tokenizer."""
    if config.data.get("kind") != "tokens":
        return Experiment(config)
    name = config.model.name
    batch = int(config.data.batch_size)
    if name == "var":
        vocab = vocab or 4096
        spec = DataSpec((sum(p * p for p in scales),), vocab, classes, "tokens",
                        grid=(scales[-1], scales[-1]), scales=tuple(scales))
        family = registry.FAMILIES[name](config, spec,
                                         tokenizer=zero_var_tokenizer(scales, vocab))
    else:
        spec = DataSpec((grid * grid,), vocab or 16384, classes, "tokens", grid=(grid, grid))
        family = registry.FAMILIES[name](config, spec)
    return Experiment(config, data=ZeroTokens(spec, batch), family=family)
