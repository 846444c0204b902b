"""Tokenizer speed ratios, measured side by side in one run after compilation.

    python -m experiments.benchmarks.speed.tokenizer_speed [--batch=32] [--repeats=5]

Prints one JSON line (times: best of `--repeats` after a compiling call):
  * train-step time (loss + gradient) of the small CPU tokenizer with convs as 'taps'
    (shifted slices + one matmul) vs 'conv' (lax.conv_general_dilated), single-scale;
  * the multi-scale (VAR) quantizer's train step relative to the single-scale one ('conv');
  * encode (images -> tokens) throughput in images/s ('taps', 'conv', multi-scale 'conv').

The benchmarks package sets argen_jax/xla_env.py's CPU flags; run with ARGEN_XLA_CPU_FLAGS=0
to time XLA's defaults.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.tokenizer import Tokenizer
from argen_jax.models.vqgan import VQGANFamily
from experiments.benchmarks import common
from experiments.tokenizer import small

_BATCH = flags.DEFINE_integer("batch", 32, "Images per step.")
common.timing_flags(repeats=5)


def main(argv):
    del argv
    b = _BATCH.value
    spec = DataSpec((28, 28, 1), 256, 10, "image")
    images = np.random.default_rng(0).integers(0, 256, (b, 28, 28, 1)).astype(np.uint8)
    batch = {"image": jnp.asarray(images), "mask": jnp.ones((b,), jnp.float32)}
    rng = jax.random.PRNGKey(0)
    res = {"batch": b, "device": jax.devices()[0].device_kind}
    step_t, enc_t = {}, {}
    for name, arg, impl in [("taps", "", "taps"), ("conv", "", "conv"),
                            ("multiscale", "multiscale", "conv")]:
        c = small.get_config(arg)
        c.model.impl = impl
        fam = VQGANFamily(c, spec)
        params = fam.init(rng, batch)["params"]
        grad = jax.jit(jax.grad(lambda p, b, f=fam: f.loss(p, b, rng, True, jnp.int32(0))[0]))
        step_t[name] = common.best_time(grad, params, batch)
        enc_t[name] = common.best_time(Tokenizer.of(fam, params).encode, batch["image"])
    res["train_step_s"] = {k: round(v, 4) for k, v in step_t.items()}
    res["conv_over_taps_step_time"] = round(step_t["conv"] / step_t["taps"], 3)
    res["multiscale_over_single_step_time"] = round(step_t["multiscale"] / step_t["conv"], 3)
    res["encode_images_per_s"] = {k: round(b / v, 1) for k, v in enc_t.items()}
    common.emit(res)


if __name__ == "__main__":
    common.run(main)
