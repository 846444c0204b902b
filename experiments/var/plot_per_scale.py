"""Per-scale loss and accuracy curves of a VAR run, from its metrics.jsonl.

    python experiments/var/plot_per_scale.py --workdir=/tmp/var/cpu \
        --out=/work/notes/figs/var_per_scale.png

Train curves are the logged steps' batch metrics (`train/loss_scale{s}`, `train/acc_scale{s}`:
mean nats and top-1 accuracy per token of scale s); eval points (`eval/...`) are drawn as
markers. Also prints the last eval values as one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os


def read(workdir: str) -> list[dict]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--out", default="/work/notes/figs/var_per_scale.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read(args.workdir)
    scales = sorted({int(k.split("scale")[1]) for r in rows for k in r
                     if k.startswith("train/loss_scale")})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    last_eval = {}
    for s in scales:
        for ax, name in zip(axes, ("loss", "acc"), strict=True):
            tr = [(r["step"], r[f"train/{name}_scale{s}"]) for r in rows
                  if f"train/{name}_scale{s}" in r]
            ev = [(r["step"], r[f"eval/{name}_scale{s}"]) for r in rows
                  if f"eval/{name}_scale{s}" in r]
            (line,) = ax.plot(*zip(*tr, strict=True), label=f"scale {s}", lw=1.2)
            if ev:
                ax.plot(*zip(*ev, strict=True), "o", color=line.get_color())
                last_eval[f"{name}_scale{s}"] = round(ev[-1][1], 4)
    axes[0].set_ylabel("nats / token")
    axes[1].set_ylabel("top-1 accuracy")
    for ax, t in zip(axes, ("train loss per scale (eval: dots)", "accuracy per scale"),
                     strict=True):
        ax.set_xlabel("step")
        ax.set_title(t, fontsize=10)
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(json.dumps({"out": args.out, "last_eval": last_eval}))


if __name__ == "__main__":
    main()
