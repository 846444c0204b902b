"""Sampling throughput of a token-model config (VAR scale by scale, LlamaGen token by token,
both through the KV cache; classifier-free guidance doubles the batch): images/s of token maps
(decoding to pixels is left out), random weights, after compilation, best of `--repeats`.

    python -m experiments.benchmarks.speed.sample_throughput \
        --config=experiments/var/imagenet.py:d16 [--batch=64] [--cfg_scale=3.0] [--repeats=2]

The config's `sample` section gives top-k / top-p and the guidance schedule. Token shapes are
ImageNet-256's (`shape_only.py`: no token file or tokenizer needed). For LlamaGen against a
cache-less sampler see llamagen_sampling.py. Prints one JSON line.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
from absl import flags
from flax import linen as nn

from argen_jax.sampling.loop import sample_keys
from experiments.benchmarks import common, shape_only

_CONFIG = common.config_flag("experiments/var/imagenet.py:d16")
_BATCH = flags.DEFINE_integer("batch", 64, "Images sampled at once.")
_CFG_SCALE = flags.DEFINE_float("cfg_scale", None, "Guidance scale (None: the config's).")
_DTYPE = flags.DEFINE_string("dtype", None, "model.dtype override.")
_GRID = flags.DEFINE_integer("grid", 16, "Token map side (LlamaGen).")
_VOCAB = flags.DEFINE_integer("vocab", 0, "Codebook size (0: the paper's).")
common.timing_flags(repeats=2)


def main(argv):
    del argv
    config = _CONFIG.value
    if _CFG_SCALE.value is not None:
        config.sample.cfg_scale = _CFG_SCALE.value
    if _DTYPE.value is not None:
        config.model.dtype = _DTYPE.value
    config.data.batch_size = config.data.eval_batch_size = 1
    config.mesh.data, config.mesh.num_devices = 1, 1
    exp = shape_only.experiment(config, grid=_GRID.value, vocab=_VOCAB.value)
    fam = exp.family
    example = jax.tree.map(jnp.asarray, exp.data.train_batch(0))
    params = jax.jit(lambda r: nn.unbox(fam.init(r, example))["params"])(
        jax.random.PRNGKey(0))
    b = _BATCH.value
    labels = jnp.arange(b, dtype=jnp.int32) % fam.num_classes
    keys = sample_keys(jax.random.PRNGKey(1), 0, b)
    sample = jax.jit(fam.sample)
    seconds = common.best_time(sample, params, keys, labels)
    common.emit({
        "benchmark": "sample_throughput", "config": common.config_spec(_CONFIG),
        "device": str(jax.devices()[0]),
        "params": int(sum(x.size for x in jax.tree.leaves(params))), "batch": b,
        "tokens_per_image": exp.data.spec.shape[0], "cfg_scale": float(config.sample.cfg_scale),
        "dtype": config.model.get("dtype", "float32"), "seconds": round(seconds, 4),
        "images_per_sec": round(b / seconds, 2)})


if __name__ == "__main__":
    common.run(main)
