"""Training throughput of a config: the experiment's own jitted train step (the one
launch/main.py runs), compiled ahead of time once (`Experiment.lower_train_step`) and timed
over `--steps` steps after a warm-up step, on the default backend.

    python experiments/benchmarks/train_throughput.py --config=experiments/llamagen/imagenet.py \
        --size=B [--batch=64] [--remat=full] [--scan] [--attention_impl=cudnn] \
        [--dtype=bfloat16] [--steps=10] [--peak_tflops=989]

Token configs run on zero batches of ImageNet-256 shapes (`shape_only.py`: no token file or
tokenizer needed). Prints one JSON line: seconds per step (median of `--steps`, each waited
for), and the training log's own throughput fields (`train/mfu.Throughput`: examples/s,
tokens/s for token models, model TFLOP/s from the family's analytic count, `mfu` against
`--peak_tflops` or the device table), plus `hardware_tflops_per_sec` from XLA's count of the
compiled step (`cost_analysis()`: what runs, so rematerialised recomputation is included;
with `--scan` XLA counts the loop body once, so it is omitted there).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

import jax  # noqa: E402

from argen_jax.train.mfu import Throughput, xla_flops  # noqa: E402
from experiments.benchmarks import shape_only  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default="experiments/llamagen/imagenet.py")
    p.add_argument("--size", default="", help="the config's argument (B, L, d16, tiny, ...)")
    p.add_argument("--batch", type=int, default=0, help="global batch (0: the config's)")
    p.add_argument("--remat", default=None)
    p.add_argument("--scan", action="store_true")
    p.add_argument("--attention_impl", default=None, help="model.attention_impl; a comma "
                   "list (einsum,xla) times each in this run and prints their ratio")
    p.add_argument("--dtype", default=None)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--peak_tflops", type=float, default=0.0,
                   help="per-device bf16 peak for MFU (default: train/mfu.py's table)")
    p.add_argument("--grid", type=int, default=16)
    p.add_argument("--vocab", type=int, default=0)
    a = p.parse_args(argv)

    impls = (a.attention_impl or "").split(",")
    rows = [measure(a, impl or None) for impl in impls]
    if len(rows) == 1:
        print(json.dumps(rows[0]))
        return
    first = rows[0]["step_s"]  # several kernels in one run: step-time ratios to the first
    print(json.dumps({"benchmark": "train_throughput", "rows": rows,
                      "step_s_over_first": [round(r["step_s"] / first, 3) for r in rows]}))


def measure(a, attention_impl: str | None) -> dict:
    """Builds, compiles and times the train step of `a`'s config with that attention kernel."""
    spec = a.config if ":" in a.config or not a.size else f"{a.config}:{a.size}"
    config = shape_only.load_config(spec)
    shape_only.override_model(config, a.remat, attention_impl, a.dtype, a.scan, a.batch)
    exp = shape_only.experiment(config, grid=a.grid, vocab=a.vocab)
    state = exp.init_state()
    batch = exp.train_batch(0)
    t0 = time.perf_counter()
    compiled = exp.lower_train_step().compile()
    compile_s = time.perf_counter() - t0
    flops = xla_flops(compiled)
    state, metrics = compiled(state, batch)  # warm-up (the step donates its state)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(a.steps):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t0)
    step_s = statistics.median(times)
    b = int(config.data.batch_size)
    row = {"benchmark": "train_throughput", "config": spec, "device": str(jax.devices()[0]),
           "devices": jax.device_count(), "params": exp.num_params(), "batch": b,
           "remat": config.model.get("remat", "none"),
           "scan_layers": bool(config.model.get("scan_layers", False)),
           "attention_impl": config.model.get("attention_impl", "einsum"),
           "dtype": config.model.get("dtype", "float32"), "step_s": round(step_s, 5),
           "compile_s": round(compile_s, 2), "loss": float(metrics["loss"])}
    log = Throughput.of(exp, a.peak_tflops).metrics(1.0 / step_s)  # the training log's fields
    row.update({k.split("/")[1]: round(v, 4) for k, v in log.items()})
    if flops and not row["scan_layers"]:
        row["hardware_tflops_per_sec"] = round(flops * jax.device_count() / step_s / 1e12, 4)
    return row


if __name__ == "__main__":
    main()
