"""Training throughput of a config: the experiment's own jitted train step (the one
launch/main.py runs), compiled ahead of time once (`Experiment.lower_train_step`) and timed
over `--repeats` steps after `--warmup` steps, on the default backend.

    python -m experiments.benchmarks.speed.train_throughput \
        --config=experiments/llamagen/imagenet.py --size=B [--batch=64] [--remat=full] \
        [--scan] [--attention_impl=cudnn] [--dtype=bfloat16] [--repeats=10] [--peak_tflops=989]

`--attention_impl=einsum,xla` (a comma list) times each kernel in this run and adds the
step-time ratios to the first.

Token configs run on zero batches of ImageNet-256 shapes (`shape_only.py`: no token file or
tokenizer needed). Prints one JSON line: seconds per step (median of `--repeats`, each waited
for), and the training log's own throughput fields (`train/mfu.Throughput`: examples/s,
tokens/s for token models, model TFLOP/s from the family's analytic count, `mfu` against
`--peak_tflops` or the device table), plus `hardware_tflops_per_sec` from XLA's count of the
compiled step (`cost_analysis()`: what runs, so rematerialised recomputation is included;
with `--scan` XLA counts the loop body once, so it is omitted there).
"""
from __future__ import annotations

import jax
from absl import flags

from argen_jax.train.mfu import Throughput, xla_flops
from experiments.benchmarks import common, shape_only

_CONFIG = common.config_flag("experiments/llamagen/imagenet.py")
_SIZE = flags.DEFINE_string("size", "", "The config's argument (B, L, d16, tiny, ...); "
                            "replaces --config's own `:arg`.")
common.timing_flags(repeats=10)
shape_only.model_flags()
_PEAK = flags.DEFINE_float("peak_tflops", 0.0, "Per-device bf16 peak for MFU (default: "
                           "train/mfu.py's table).")


def main(argv):
    del argv
    impls = (flags.FLAGS.attention_impl or "").split(",")
    rows = [measure(impl or None) for impl in impls]
    if len(rows) == 1:
        common.emit(rows[0])
        return
    first = rows[0]["step_s"]  # several kernels in one run: step-time ratios to the first
    common.emit({"benchmark": "train_throughput", "rows": rows,
                 "step_s_over_first": [round(r["step_s"] / first, 3) for r in rows]})


def measure(attention_impl: str | None) -> dict:
    """Builds, compiles and times the train step of the config with that attention kernel."""
    config = common.config_with_arg(_CONFIG, _SIZE.value)
    spec = common.config_spec(_CONFIG, _SIZE.value)
    shape_only.override_model(config, **shape_only.model_overrides(attention_impl=attention_impl))
    exp = shape_only.experiment(config, **shape_only.shape_overrides())
    state = exp.init_state()
    batch = exp.train_batch(0)
    with common.Stopwatch() as compiling:
        compiled = exp.lower_train_step().compile()
    flops = xla_flops(compiled)
    metrics = None

    def step():  # the step donates its state: carry it from call to call
        nonlocal state, metrics
        state, metrics = compiled(state, batch)
        return metrics

    step_s = common.median_time(step)
    b = int(config.data.batch_size)
    row = {"benchmark": "train_throughput", "config": spec, "device": str(jax.devices()[0]),
           "devices": jax.device_count(), "params": exp.num_params(), "batch": b,
           "remat": config.model.get("remat", "none"),
           "scan_layers": bool(config.model.get("scan_layers", False)),
           "attention_impl": config.model.get("attention_impl", "einsum"),
           "dtype": config.model.get("dtype", "float32"), "step_s": round(step_s, 5),
           "compile_s": round(compiling.seconds, 2), "loss": float(metrics["loss"])}
    log = Throughput.of(exp, _PEAK.value).metrics(1.0 / step_s)  # the training log's fields
    row.update({k.split("/")[1]: round(v, 4) for k, v in log.items()})
    if flops and not row["scan_layers"]:
        row["hardware_tflops_per_sec"] = round(flops * jax.device_count() / step_s / 1e12, 4)
    return row


if __name__ == "__main__":
    common.run(main)
