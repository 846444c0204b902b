"""Tokenizer speed ratios, measured side by side in one run after compilation.

    python experiments/benchmarks/tokenizer_speed.py [--batch=32] [--reps=5]

Prints one JSON line:
  * train-step time (loss + gradient) of the small CPU tokenizer with convs as 'taps'
    (shifted slices + one matmul) vs 'conv' (lax.conv_general_dilated), single-scale;
  * the multi-scale (VAR) quantizer's train step relative to the single-scale one ('conv');
  * encode (images -> tokens) throughput in images/s ('taps', 'conv', multi-scale 'conv').

`import argen_jax` (through the imports below) sets argen_jax/xla_env.py's CPU flags; run
with ARGEN_XLA_CPU_FLAGS=0 to time XLA's defaults.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

from argen_jax.data.pipeline import DataSpec  # noqa: E402
from argen_jax.models.tokenizer import Tokenizer  # noqa: E402
from argen_jax.models.vqgan import VQGANFamily  # noqa: E402
from experiments.tokenizer import small  # noqa: E402


def timeit(f, *args, reps):
    jax.block_until_ready(f(*args))  # compile + warm up
    t0 = time.perf_counter()
    for _ in range(reps):
        out = f(*args)
    jax.block_until_ready(out)
    return (time.perf_counter() - t0) / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    spec = DataSpec((28, 28, 1), 256, 10, "image")
    images = np.random.default_rng(0).integers(0, 256, (a.batch, 28, 28, 1)).astype(np.uint8)
    batch = {"image": jnp.asarray(images), "mask": jnp.ones((a.batch,), jnp.float32)}
    rng = jax.random.PRNGKey(0)
    res = {"batch": a.batch, "device": jax.devices()[0].device_kind}
    step_t, enc_t = {}, {}
    for name, arg, impl in [("taps", "", "taps"), ("conv", "", "conv"),
                            ("multiscale", "multiscale", "conv")]:
        c = small.get_config(arg)
        c.model.impl = impl
        fam = VQGANFamily(c, spec)
        params = fam.init(rng, batch)["params"]
        grad = jax.jit(jax.grad(lambda p, b, f=fam: f.loss(p, b, rng, True, jnp.int32(0))[0]))
        step_t[name] = timeit(grad, params, batch, reps=a.reps)
        enc_t[name] = timeit(Tokenizer.of(fam, params).encode, batch["image"], reps=a.reps)
    res["train_step_s"] = {k: round(v, 4) for k, v in step_t.items()}
    res["conv_over_taps_step_time"] = round(step_t["conv"] / step_t["taps"], 3)
    res["multiscale_over_single_step_time"] = round(step_t["multiscale"] / step_t["conv"], 3)
    res["encode_images_per_s"] = {k: round(a.batch / v, 1) for k, v in enc_t.items()}
    print(json.dumps(res))


if __name__ == "__main__":
    main()
