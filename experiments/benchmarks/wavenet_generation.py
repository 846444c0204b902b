"""Fast (queue) vs naive (re-run the receptive field) WaveNet generation, one run.

    python experiments/benchmarks/wavenet_generation.py [--out=/tmp/wavenet/bench_generation.json]

Same randomly initialised model and the same keys for both samplers (their codes are checked
equal on the steps both ran); the CPU config's widths (residual 32, gate 2x32, skip 128)
with dilation stacks giving receptive fields of ~256, ~1024 and ~4096 samples. Every timing
is after compilation, with block_until_ready, side by side in this one process. The naive
sampler's cost per step does not depend on t (it always runs a full window), so it is
timed over fewer steps than the fast one.
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
import numpy as np  # noqa: E402

from argen_jax.data.pipeline import DataSpec  # noqa: E402
from argen_jax.models.wavenet import WaveNetFamily  # noqa: E402
from experiments.benchmarks.timing import best_time  # noqa: E402
from experiments.wavenet import cpu  # noqa: E402

STACKS = {"~256": (128, 1), "~1024": (512, 1), "~4096": (512, 4)}  # (max dilation, repeats)


def measure(max_d: int, repeats: int, args) -> dict:
    c = cpu.get_config("nolocal,noglobal")
    c.model.max_dilation, c.model.repeats = max_d, repeats
    fam = WaveNetFamily(c, DataSpec((c.data.crop_length,), 256, 0, "audio"))
    x = np.zeros((1, 64), np.int32)
    params = jax.jit(lambda r: fam.model.init(r, x)["params"])(jax.random.PRNGKey(0))
    keys = jax.random.split(jax.random.PRNGKey(1), args.batch)
    fast = jax.jit(lambda p, k: fam.generate(p, k, args.fast_steps, method="fast"))
    naive = jax.jit(lambda p, k: fam.generate(p, k, args.naive_steps, method="naive"))
    t_fast = best_time(fast, params, keys, repeats=3)
    t_naive = best_time(naive, params, keys, repeats=1)
    same = bool(np.array_equal(np.asarray(fast(params, keys))[:, : args.naive_steps],
                               np.asarray(naive(params, keys))))
    per_fast, per_naive = t_fast / args.fast_steps, t_naive / args.naive_steps
    return {"receptive_field": fam.receptive_field, "layers": len(fam.model.dilations),
            "batch": args.batch, "fast_ms_per_step": 1e3 * per_fast,
            "naive_ms_per_step": 1e3 * per_naive, "speedup": per_naive / per_fast,
            "fast_samples_per_s": args.batch / per_fast, "same_codes": same}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="/tmp/wavenet/bench_generation.json")
    p.add_argument("--fast_steps", type=int, default=2000)
    p.add_argument("--naive_steps", type=int, default=48)
    p.add_argument("--batch", type=int, default=1)
    args = p.parse_args()
    rows = []
    for label, (max_d, repeats) in STACKS.items():
        rows.append({"target": label, **measure(max_d, repeats, args)})
        print(json.dumps(rows[-1]), flush=True)
    out = {"device": str(jax.devices()[0]), "fast_steps": args.fast_steps,
           "naive_steps": args.naive_steps, "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
