"""Scaling-law sweeps (and other run grids such as the generation-order table): described
once, run locally one after another (resumable), or emitted as a job array; collected from
the runs' metrics.jsonl and fitted (argen_jax/evaluation/scaling.py).

    python -m experiments.scaling.sweep --sweep=llamagen_fm --action=run   # finished skipped
    python -m experiments.scaling.sweep --sweep=llamagen_fm --action=slurm # array script
    python -m experiments.scaling.sweep --sweep=llamagen_fm --action=tpu   # tpu_vm.sh lines
    python -m experiments.scaling.sweep --sweep=llamagen_fm --action=fit   # fits + PNGs
    python -m experiments.scaling.sweep --sweep=orders_fm --action=table   # variants table

A sweep (`SWEEPS`) names a config, overrides shared by its runs, sizes (name -> model
overrides: width / depth pairs or a named size such as LlamaGen's 'B'), steps per size (or a
token budget: steps = tokens / (batch * tokens per example)), seeds and, for grids that are not
sizes, variants (name -> overrides). Run k's workdir is ROOT/SWEEP/<size>[_<variant>]_s<seed>;
a run is finished when its metrics.jsonl has the final step's evaluation. A killed run resumes
from its checkpoint (the launcher's own resume).

Collected per run: non-embedding parameters N (the family's parameters without any tree
whose name contains 'embed', and without a VAR's frozen tokenizer copy), training FLOPs C
(`CountsFlops.train_flops_per_example` x batch x steps, models/flops.py), the final test loss
(`eval/bpd`: bits per token) and every evaluation on the way (the compute frontier).
"""
from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys

from absl import app, flags

TOKENS_SINGLE = "runs/tokens_single.npz"  # experiments/tokenizer/small.py:tiny, Fashion-MNIST
TOKENS_MULTI = "runs/tokens_multiscale.npz"  # the same with :multiscale (VAR)


def _cpu_common(path: str) -> dict:
    return {"data.path": path, "data.batch_size": 32, "data.eval_batch_size": 500,
            "data.test_limit": 2000, "train.sample_at_end": False, "train.save_every": 100,
            "train.log_every": 50, "train.tensorboard": False, "train.quiet": True}


def _depth_sizes(depths, per_head=8, heads=True) -> dict:
    """VAR's rule of one knob (depth d -> width per_head * d, d heads of per_head)."""
    return {f"d{d}": {"model.depth": d, "model.width": per_head * d,
                      **({"model.num_heads": d} if heads else {})} for d in depths}


SWEEPS = {
    # LlamaGen c2i on the 8x8 Fashion-MNIST token maps (64 codes): depths 2 .. 8 at width
    # 8 x depth (VAR's one-knob rule at 1/8 of its width): 64x in non-embedding parameters
    "llamagen_fm": dict(
        config="experiments/llamagen/fashion_mnist.py:tiny",
        common={**_cpu_common(TOKENS_SINGLE), "train.lr": 2e-3, "train.warmup_steps": 20,
                "train.eval_every": 100, "train.ema_decay": 0.0},
        sizes=_depth_sizes((2, 3, 4, 6, 8)), steps=300, seeds=(0,)),
    # VAR on the multi-scale maps (scales 1, 2, 4, 8: 85 tokens, 64 codes)
    "var_fm": dict(
        config="experiments/var/fashion_mnist.py:tiny",
        common={**_cpu_common(TOKENS_MULTI), "train.lr": 2e-3, "train.warmup_steps": 20,
                "train.eval_every": 100},
        sizes=_depth_sizes((2, 3, 4, 6, 8)), steps=300, seeds=(0,)),
    # the generation-order table: one LlamaGen shape, every order, same budget, two seeds
    "orders_fm": dict(
        config="experiments/llamagen/fashion_mnist.py:tiny",
        common={**_cpu_common(TOKENS_SINGLE), "train.lr": 2e-3, "train.warmup_steps": 20,
                "train.eval_every": 0, "train.ema_decay": 0.0, "model.position_embed": True},
        sizes={"d2": {"model.depth": 2, "model.width": 32, "model.num_heads": 2}},
        steps=300, seeds=(0, 1),
        variants={"raster": {}, "snake": {"model.order": "snake"},
                  "diagonal": {"model.order": "diagonal"},
                  "hilbert": {"model.order": "hilbert"},
                  "random": {"model.order": "random"},
                  "rar": {"model.order": "random", "model.anneal_start": 0.0,
                          "model.anneal_end": 0.6}}),
}

flags.DEFINE_string("sweep", "llamagen_fm", f"one of {sorted(SWEEPS)}")
flags.DEFINE_enum("action", "run", ["run", "list", "slurm", "tpu", "collect", "fit", "table"],
                  "what to do")
flags.DEFINE_string("root", "runs/sweeps", "the sweeps' parent directory")
flags.DEFINE_integer("bootstrap", 1000, "bootstrap refits for the intervals")
flags.DEFINE_string("only", "", "comma-separated run names to run (default: all)")
FLAGS = flags.FLAGS


def runs_of(name: str, root: str) -> list[dict]:
    """The runs of sweep `name`: [{'name', 'size', 'variant', 'seed', 'workdir', 'config',
    'overrides' (dict), 'steps'}]."""
    s = SWEEPS[name]
    out = []
    for size, size_over in s["sizes"].items():
        steps = s.get("steps_per_size", {}).get(size, s["steps"])
        for variant, var_over in (s.get("variants") or {"": {}}).items():
            for seed in s["seeds"]:
                run = f"{size}{'_' + variant if variant else ''}_s{seed}"
                over = {**s["common"], **size_over, **var_over, "seed": seed,
                        "train.num_steps": steps}
                out.append(dict(name=run, size=size, variant=variant, seed=seed, steps=steps,
                                workdir=os.path.join(root, name, run), config=s["config"],
                                overrides=over))
    return out


def command(run: dict, distributed: bool = False) -> list[str]:
    cmd = [sys.executable, "launch/main.py", f"--config={run['config']}",
           f"--workdir={run['workdir']}"] + [f"--config.{k}={v}" for k, v in
                                              run["overrides"].items()]
    return cmd + (["--distributed"] if distributed else [])


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def finished(run: dict) -> bool:
    return any(r.get("step") == run["steps"] and "eval/bpd" in r
               for r in read_metrics(run["workdir"]))


def run_all(runs: list[dict]) -> None:
    for run in runs:
        if finished(run):
            print(f"skip {run['name']} (finished)", flush=True)
            continue
        print(f"run {run['name']}: {shlex.join(command(run))}", flush=True)
        subprocess.run(command(run), check=True)


def emit_slurm(name: str, runs: list[dict], root: str) -> str:
    """A job-array script: task k runs line k of jobs.txt through launch/slurm.sbatch (its
    requeue-on-preemption included). Submit: sbatch --nodes=1 ROOT/NAME/array.sbatch."""
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "jobs.txt"), "w") as f:
        for run in runs:
            f.write(shlex.join([run["config"], run["workdir"]] + [
                f"--config.{k}={v}" for k, v in run["overrides"].items()]) + "\n")
    path = os.path.join(d, "array.sbatch")
    with open(path, "w") as f:
        f.write(f"""#!/bin/bash
#SBATCH --job-name=sweep_{name}
#SBATCH --array=0-{len(runs) - 1}
#SBATCH --nodes=1
#SBATCH --output=%x-%A_%a.out
# one sweep run per array task (jobs.txt line SLURM_ARRAY_TASK_ID + 1); finished runs are
# skipped by the launcher's resume (they load the last checkpoint and evaluate only)
set -euo pipefail
cd "${{SLURM_SUBMIT_DIR:-.}}"
LINE=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" {os.path.join(d, 'jobs.txt')})
eval "set -- $LINE"
exec bash launch/slurm.sbatch "$@"
""")
    return path


def emit_tpu(name: str, runs: list[dict], root: str) -> str:
    """One launch/tpu_vm.sh line per run (TPU and ZONE from the environment)."""
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "tpu_vm.sh")
    with open(path, "w") as f:
        f.write("#!/usr/bin/env bash\n# TPU=name ZONE=zone bash this_file; one run after "
                "another on the slice (finished runs resume, evaluate and stop)\nset -euo "
                "pipefail\n")
        for run in runs:
            f.write(shlex.join(["launch/tpu_vm.sh"]) + ' "$TPU" "$ZONE" ' + shlex.join(
                [run["config"], run["workdir"]] + [f"--config.{k}={v}"
                                                   for k, v in run["overrides"].items()]) + "\n")
    return path


def measure(run: dict) -> dict:
    """N (non-embedding parameters), FLOPs per training step, final and all evaluations."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from argen_jax import registry
    from argen_jax.io import run_dir

    config = run_dir.load_run_config(run["workdir"])
    spec = run_dir.load_spec(run["workdir"])
    family = registry.build_family(config, spec)
    b = 2
    batch = {"tokens": jnp.zeros((b, *spec.shape), jnp.int32),
             "label": jnp.zeros((b,), jnp.int32), "mask": jnp.ones((b,))}
    params = jax.eval_shape(family.init, jax.random.PRNGKey(0), batch)["params"]
    total = non_emb = 0
    for path, leaf in jax.tree_util.tree_leaves_with_path(params):
        n = int(np.prod(leaf.shape))
        total += n
        top = str(getattr(path[0], "key", path[0]))
        if "embed" not in top and top != "tokenizer":
            non_emb += n
    flops_step = family.train_flops_per_example() * config.data.batch_size
    rows = read_metrics(run["workdir"])
    evals = [(r["step"], r["eval/bpd"]) for r in rows if "eval/bpd" in r]
    final = [v for s, v in evals if s == run["steps"]]
    return dict(name=run["name"], size=run["size"], variant=run["variant"], seed=run["seed"],
                params=total, non_embedding_params=non_emb, flops_per_step=flops_step,
                flops=flops_step * run["steps"], final_bpd=final[-1] if final else None,
                evals=[dict(step=s, flops=flops_step * s, bpd=v) for s, v in evals])


def collect(name: str, root: str) -> list[dict]:
    out = [measure(r) for r in runs_of(name, root) if finished(r)]
    with open(os.path.join(root, name, "results.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def fit(name: str, root: str, bootstrap: int) -> dict:
    import numpy as np

    from argen_jax.evaluation import scaling

    res = [r for r in collect(name, root) if r["final_bpd"] is not None]
    by_size = {}
    for r in res:  # mean over seeds
        by_size.setdefault(r["size"], []).append(r)
    n = np.array([v[0]["non_embedding_params"] for v in by_size.values()], float)
    loss = np.array([np.mean([r["final_bpd"] for r in v]) for v in by_size.values()])
    out = {"sweep": name, "points": [dict(size=k, N=int(v[0]["non_embedding_params"]),
                                          bpd=float(np.mean([r["final_bpd"] for r in v])))
                                     for k, v in by_size.items()]}
    d = os.path.join(root, name)
    fn, sn = scaling.fit_power_law(n, loss, bootstrap=bootstrap)
    hold = scaling.holdout_prediction(n, loss, bootstrap=bootstrap)
    out["L(N)"] = fn.as_dict()
    out["holdout"] = hold
    out["span_N"] = float(n.max() / n.min())
    scaling.plot_fit(os.path.join(d, "loss_vs_params.png"), n, loss, fn, sn,
                     heldout=(hold["x"], hold["predicted"]),
                     xlabel="non-embedding parameters N", ylabel="test bits per token",
                     title=f"{name}: alpha_N = {fn.alpha:.3f}, R^2 = {fn.r2:.3f}")
    c = np.array([e["flops"] for r in res for e in r["evals"] if e["step"] > 0], float)
    lc = np.array([e["bpd"] for r in res for e in r["evals"] if e["step"] > 0], float)
    fc_x, fc_y = scaling.compute_frontier(c, lc)
    if len(fc_x) >= 3:
        fcf, scf = scaling.fit_power_law(fc_x, fc_y, bootstrap=bootstrap)
        out["L(C)"] = dict(fcf.as_dict(), frontier=[[float(a), float(b)] for a, b in
                                                    zip(fc_x, fc_y, strict=True)])
        scaling.plot_fit(os.path.join(d, "loss_vs_compute.png"), fc_x, fc_y, fcf, scf,
                         xlabel="training FLOPs C", ylabel="test bits per token",
                         title=f"{name}: frontier alpha_C = {fcf.alpha:.3f}",
                         other=(c, lc, "all evaluations"), points_label="frontier")
    with open(os.path.join(d, "fit.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def table(name: str, root: str) -> dict:
    import numpy as np

    res = collect(name, root)
    rows = {}
    for r in res:
        rows.setdefault(r["variant"], []).append(r["final_bpd"])
    out = {v: dict(seeds=b, mean=float(np.mean(b)), spread=float(np.max(b) - np.min(b)))
           for v, b in rows.items()}
    with open(os.path.join(root, name, "table.json"), "w") as f:
        json.dump(out, f, indent=1)
    return out


def main(argv):
    del argv
    runs = runs_of(FLAGS.sweep, FLAGS.root)
    if FLAGS.only:
        keep = set(FLAGS.only.split(","))
        runs = [r for r in runs if r["name"] in keep]
    if FLAGS.action == "list":
        for r in runs:
            print(r["name"], "finished" if finished(r) else "todo", shlex.join(command(r)))
    elif FLAGS.action == "run":
        run_all(runs)
    elif FLAGS.action == "slurm":
        print(emit_slurm(FLAGS.sweep, runs, FLAGS.root))
    elif FLAGS.action == "tpu":
        print(emit_tpu(FLAGS.sweep, runs, FLAGS.root))
    elif FLAGS.action == "collect":
        print(json.dumps(collect(FLAGS.sweep, FLAGS.root)))
    elif FLAGS.action == "fit":
        print(json.dumps(fit(FLAGS.sweep, FLAGS.root, FLAGS.bootstrap)))
    elif FLAGS.action == "table":
        print(json.dumps(table(FLAGS.sweep, FLAGS.root)))


if __name__ == "__main__":
    app.run(main)
