"""Fast (queue) vs naive (re-run the receptive field) WaveNet generation, one run.

    python -m experiments.benchmarks.speed.wavenet_generation [--out=/tmp/wavenet/bench.jsonl]

Same randomly initialised model and the same keys for both samplers (their codes are checked
equal on the steps both ran); the CPU config's widths (residual 32, gate 2x32, skip 128)
with dilation stacks giving receptive fields of ~256, ~1024 and ~4096 samples. Every timing
is after compilation, with block_until_ready, side by side in this one process. The naive
sampler's cost per step does not depend on t (it always runs a full window), so it is
timed over fewer steps than the fast one. Prints one JSON line (each receptive field's row on
stderr as it is measured).
"""
from __future__ import annotations

import json
import sys

import jax
import numpy as np
from absl import flags

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.wavenet import WaveNetFamily
from experiments.benchmarks import common
from experiments.wavenet import cpu

_FAST_STEPS = flags.DEFINE_integer("fast_steps", 2000, "Steps of the fast sampler.")
_NAIVE_STEPS = flags.DEFINE_integer("naive_steps", 48, "Steps of the naive sampler.")
_BATCH = flags.DEFINE_integer("batch", 1, "Utterances sampled at once.")

STACKS = {"~256": (128, 1), "~1024": (512, 1), "~4096": (512, 4)}  # (max dilation, repeats)


def measure(max_d: int, repeats: int) -> dict:
    c = cpu.get_config("nolocal,noglobal")
    c.model.max_dilation, c.model.repeats = max_d, repeats
    fam = WaveNetFamily(c, DataSpec((c.data.crop_length,), 256, 0, "audio"))
    x = np.zeros((1, 64), np.int32)
    params = jax.jit(lambda r: fam.model.init(r, x)["params"])(jax.random.PRNGKey(0))
    b, n_fast, n_naive = _BATCH.value, _FAST_STEPS.value, _NAIVE_STEPS.value
    keys = jax.random.split(jax.random.PRNGKey(1), b)
    fast = jax.jit(lambda p, k: fam.generate(p, k, n_fast, method="fast"))
    naive = jax.jit(lambda p, k: fam.generate(p, k, n_naive, method="naive"))
    t_fast = common.best_time(fast, params, keys, repeats=3, warmup=1)
    t_naive = common.best_time(naive, params, keys, repeats=1, warmup=1)
    same = bool(np.array_equal(np.asarray(fast(params, keys))[:, :n_naive],
                               np.asarray(naive(params, keys))))
    per_fast, per_naive = t_fast / n_fast, t_naive / n_naive
    return {"receptive_field": fam.receptive_field, "layers": len(fam.model.dilations),
            "batch": b, "fast_ms_per_step": 1e3 * per_fast,
            "naive_ms_per_step": 1e3 * per_naive, "speedup": per_naive / per_fast,
            "fast_samples_per_s": b / per_fast, "same_codes": same}


def main(argv):
    del argv
    rows = []
    for label, (max_d, repeats) in STACKS.items():
        rows.append({"target": label, **measure(max_d, repeats)})
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress
    common.emit({"benchmark": "wavenet_generation", "device": str(jax.devices()[0]),
                 "fast_steps": _FAST_STEPS.value, "naive_steps": _NAIVE_STEPS.value,
                 "rows": rows})


if __name__ == "__main__":
    common.run(main)
