"""Sampling throughput of a token-model config (VAR scale by scale, LlamaGen token by token,
both through the KV cache; classifier-free guidance doubles the batch): images/s of token maps
(decoding to pixels is left out), random weights, after compilation, best of `--repeats`.

    python experiments/benchmarks/sample_throughput.py --config=experiments/var/imagenet.py:d16 \
        [--batch=64] [--cfg_scale=3.0] [--repeats=2]

The config's `sample` section gives top-k / top-p and the guidance schedule. Token shapes are
ImageNet-256's (`shape_only.py`: no token file or tokenizer needed). For LlamaGen against a
cache-less sampler see llamagen_sampling.py. Prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen as nn  # noqa: E402

from argen_jax.sampling.loop import sample_keys  # noqa: E402
from experiments.benchmarks import shape_only  # noqa: E402
from experiments.benchmarks.timing import best_time  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="experiments/var/imagenet.py:d16")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--cfg_scale", type=float, default=None, help="None: the config's")
    p.add_argument("--dtype", default=None)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--vocab", type=int, default=0)
    a = p.parse_args(argv)
    config = shape_only.load_config(a.config)
    if a.cfg_scale is not None:
        config.sample.cfg_scale = a.cfg_scale
    if a.dtype is not None:
        config.model.dtype = a.dtype
    config.data.batch_size = config.data.eval_batch_size = 1
    config.mesh.data, config.mesh.num_devices = 1, 1
    exp = shape_only.experiment(config, grid=a.grid, vocab=a.vocab)
    fam = exp.family
    example = jax.tree.map(jnp.asarray, exp.data.train_batch(0))
    params = jax.jit(lambda r: nn.unbox(fam.init(r, example))["params"])(
        jax.random.PRNGKey(0))
    labels = jnp.arange(a.batch, dtype=jnp.int32) % fam.num_classes
    keys = sample_keys(jax.random.PRNGKey(1), 0, a.batch)
    sample = jax.jit(fam.sample)
    seconds = best_time(sample, params, keys, labels, repeats=a.repeats)
    print(json.dumps({
        "benchmark": "sample_throughput", "config": a.config, "device": str(jax.devices()[0]),
        "params": int(sum(x.size for x in jax.tree.leaves(params))), "batch": a.batch,
        "tokens_per_image": exp.data.spec.shape[0], "cfg_scale": float(config.sample.cfg_scale),
        "dtype": config.model.get("dtype", "float32"), "seconds": round(seconds, 4),
        "images_per_sec": round(a.batch / seconds, 2)}))


if __name__ == "__main__":
    main()
