"""An `Experiment` of a token-model config without its files: zero batches of the right shapes
and, for VAR, a multi-scale tokenizer whose quantizer parameters are zeros. What the memory
plan and the training-throughput benchmark need to build (and lower) a train step of the
ImageNet configs on a machine that has neither the token file nor the tokenizer run.

Token maps are ImageNet-256's by default: LlamaGen 16x16 maps of 16,384 codes, VAR the scales
1..16 of 4,096 codes, 1,000 classes. Other data kinds use the config's own data builder.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax import registry
from argen_jax.data.batch import LABEL, MASK, TOKENS
from argen_jax.data.pipeline import DataSpec
from argen_jax.train.experiment import Experiment
from experiments.benchmarks.common import Stopwatch

IMAGENET_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
GB = 1e9


def model_flags() -> None:
    """The flags of `override_model` and `experiment` (--remat, --scan, --attention_impl,
    --dtype, --batch; --grid, --vocab, --classes), shared by the memory plan and the
    throughput benchmarks."""
    flags.DEFINE_string("remat", None, "model.remat: none | full | a policy name.")
    flags.DEFINE_bool("scan", False, "model.scan_layers=True.")
    flags.DEFINE_string("attention_impl", None, "model.attention_impl (einsum | xla | cudnn).")
    flags.DEFINE_string("dtype", None, "model.dtype override.")
    flags.DEFINE_integer("batch", 0, "Global batch (0: the config's).")
    flags.DEFINE_integer("grid", 16, "Token map side (LlamaGen).")
    flags.DEFINE_integer("vocab", 0, "Codebook size (0: the paper's).")
    flags.DEFINE_integer("classes", 1000, "Classes of the token model.")


def model_overrides(**replace) -> dict:
    """`override_model`'s keyword arguments from the --remat/--attention_impl/--dtype/--scan/
    --batch flags (`replace`: some of them set otherwise)."""
    f = flags.FLAGS
    return {"remat": f.remat, "attention_impl": f.attention_impl, "dtype": f.dtype,
            "scan": f.scan, "batch": f.batch, **replace}


def shape_overrides() -> dict:
    """`experiment`'s keyword arguments from the --grid/--vocab/--classes flags."""
    f = flags.FLAGS
    return {"grid": f.grid, "vocab": f.vocab, "classes": f.classes}


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


def mesh_overrides(spec: str) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if key not in ("data", "fsdp", "model") or not value.lstrip("-").isdigit():
            raise SystemExit(f"--mesh: expected axis=int for data / fsdp / model, got {part!r}")
        out[key] = int(value)
    return out


def plan_memory(config, spec: str, devices: int, mesh: str = "", grid: int = 16, vocab: int = 0,
         classes: int = 1000, **model) -> dict:
    """The memory plan's row (memory/memory_plan.py): builds, lowers and compiles the train
    step of `config` (named `spec` in the row) on a `mesh` of `devices`; `model`:
    `override_model`'s arguments. Assumes JAX already has `devices` devices."""
    axes = mesh_overrides(mesh)
    for key, value in axes.items():
        config.mesh[key] = value
    if "data" not in axes:
        config.mesh.data = -1
    override_model(config, **model)
    if len(jax.devices()) < devices:
        raise SystemExit(f"JAX has {len(jax.devices())} devices, --devices={devices}")
    config.mesh.num_devices = devices
    with Stopwatch() as building:
        exp = experiment(config, grid=grid, vocab=vocab, classes=classes)
    with Stopwatch() as lowering:
        lowered = exp.lower_train_step()
    with Stopwatch() as compiling:
        compiled = lowered.compile()
    m = compiled.memory_analysis()
    arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
    temp, alias = m.temp_size_in_bytes, m.alias_size_in_bytes
    return {
        "config": spec, "devices": devices, "mesh": dict(exp.mesh.shape),
        "batch": int(config.data.batch_size), "remat": config.model.get("remat", "none"),
        "scan_layers": bool(config.model.get("scan_layers", False)),
        "attention_impl": config.model.get("attention_impl", "einsum"),
        "dtype": config.model.get("dtype", "float32"), "params": exp.num_params(),
        "argument_gb": arg / GB, "output_gb": out / GB, "temp_gb": temp / GB,
        "alias_gb": alias / GB, "total_gb": (arg + out + temp - alias) / GB,
        "build_s": round(building.seconds, 2), "lower_s": round(lowering.seconds, 2),
        "compile_s": round(compiling.seconds, 2), "backend": jax.default_backend(),
    }
