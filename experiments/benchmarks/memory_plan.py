"""A memory plan without the hardware: the train step of a config compiled ahead of time for
N fake CPU devices (nothing allocated) and its per-device bytes from XLA's
`compiled.memory_analysis()`, as one JSON line.

    python experiments/benchmarks/memory_plan.py --config=experiments/llamagen/imagenet.py:3B \
        --devices=8 --mesh=fsdp=8 [--remat=full] [--batch=256] [--scan] [--attention_impl=xla]

`--devices` sets `--xla_force_host_platform_device_count` before JAX starts; `--mesh` sets
`config.mesh` (axes data / fsdp / model; data=-1 takes the rest). The state is
`jax.eval_shape`d and the step lowered with `jax.ShapeDtypeStruct` inputs carrying the
experiment's shardings (`Experiment.lower_train_step`), so a 3B model plans on a laptop.
Token configs need no token file or tokenizer (`shape_only.py`: zero batches of ImageNet-256
shapes). Reported per device, in GB (1e9 bytes): arguments (state + batch), outputs, temporaries
(activations kept for the backward pass, gradients, optimizer temporaries), aliased (outputs
written in place of the donated state) and total = arguments + outputs + temporaries - aliased;
plus `lower_s` / `compile_s` (seconds), e.g. to compare scanned and unrolled layers. CPU
compilation makes its own fusion and scheduling choices: an accelerator's figures differ
somewhat (usually less temporary memory), so read these as a plan, not a measurement.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

GB = 1e9


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", required=True, help="config file:arg, e.g. "
                   "experiments/llamagen/imagenet.py:XXL")
    p.add_argument("--devices", type=int, default=8, help="fake CPU devices")
    p.add_argument("--mesh", default="", help="e.g. fsdp=8 or data=2,fsdp=4,model=1")
    p.add_argument("--remat", default=None, help="model.remat: none | full | a policy name")
    p.add_argument("--scan", action="store_true", help="model.scan_layers=True")
    p.add_argument("--attention_impl", default=None, help="model.attention_impl")
    p.add_argument("--batch", type=int, default=0, help="global batch (0: the config's)")
    p.add_argument("--dtype", default=None, help="model.dtype override")
    p.add_argument("--grid", type=int, default=16, help="token map side (LlamaGen)")
    p.add_argument("--vocab", type=int, default=0, help="codebook size (0: the paper's)")
    p.add_argument("--classes", type=int, default=1000)
    return p.parse_args(argv)


def mesh_overrides(spec: str) -> dict:
    out = {}
    for part in filter(None, spec.split(",")):
        key, _, value = part.partition("=")
        if key not in ("data", "fsdp", "model") or not value.lstrip("-").isdigit():
            raise SystemExit(f"--mesh: expected axis=int for data / fsdp / model, got {part!r}")
        out[key] = int(value)
    return out


def plan(args) -> dict:
    """Builds, lowers and compiles the train step; the JSON row (assumes JAX already has
    `args.devices` devices)."""
    import jax

    from experiments.benchmarks import shape_only

    config = shape_only.load_config(args.config)
    mesh = mesh_overrides(args.mesh)
    for key, value in mesh.items():
        config.mesh[key] = value
    if "data" not in mesh:
        config.mesh.data = -1
    shape_only.override_model(config, args.remat, args.attention_impl, args.dtype, args.scan,
                              args.batch)
    if len(jax.devices()) < args.devices:
        raise SystemExit(f"JAX has {len(jax.devices())} devices, --devices={args.devices}")
    config.mesh.num_devices = args.devices
    t0 = time.perf_counter()
    exp = shape_only.experiment(config, grid=args.grid, vocab=args.vocab, classes=args.classes)
    t1 = time.perf_counter()
    lowered = exp.lower_train_step()
    t2 = time.perf_counter()
    compiled = lowered.compile()
    t3 = time.perf_counter()
    m = compiled.memory_analysis()
    arg, out = m.argument_size_in_bytes, m.output_size_in_bytes
    temp, alias = m.temp_size_in_bytes, m.alias_size_in_bytes
    return {
        "config": args.config, "devices": args.devices, "mesh": dict(exp.mesh.shape),
        "batch": int(config.data.batch_size), "remat": config.model.get("remat", "none"),
        "scan_layers": bool(config.model.get("scan_layers", False)),
        "attention_impl": config.model.get("attention_impl", "einsum"),
        "dtype": config.model.get("dtype", "float32"), "params": exp.num_params(),
        "argument_gb": arg / GB, "output_gb": out / GB, "temp_gb": temp / GB,
        "alias_gb": alias / GB, "total_gb": (arg + out + temp - alias) / GB,
        "build_s": round(t1 - t0, 2), "lower_s": round(t2 - t1, 2),
        "compile_s": round(t3 - t2, 2), "backend": jax.default_backend(),
    }


def main(argv=None):
    args = parse_args(argv)
    flags = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = (f"{flags} --xla_force_host_platform_device_count="
                               f"{args.devices}").strip()
    os.environ["JAX_PLATFORMS"] = "cpu"  # the plan compiles for fake CPU devices
    from argen_jax import xla_env

    xla_env.apply()
    print(json.dumps(plan(args)))


if __name__ == "__main__":
    main()
