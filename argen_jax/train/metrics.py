"""Metric writers: `DIR/metrics.jsonl` (one JSON object per line) and TensorBoard events.

TensorBoard files are written with tensorboardX (flax.metrics.tensorboard and
clu.metric_writers import TensorFlow, which stays off the training path).
"""
from __future__ import annotations

import json
import math
import os

import jax


class MetricWriter:
    def __init__(self, workdir: str, tensorboard: bool = True):
        self.active = jax.process_index() == 0
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        if self.active:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tb"))

    def truncate_after(self, step: int) -> None:
        """On resume from `step`: drop rows logged after it by the interrupted run (the
        resumed run recomputes them identically), so every step appears once."""
        if not self.active or not os.path.exists(self.path):
            return
        rows = read_metrics(os.path.dirname(self.path))
        keep = [r for r in rows if r.get("step", 0) <= step]
        if len(keep) != len(rows):
            tmp = self.path + ".tmp"
            with open(tmp, "w") as f:
                f.writelines(json.dumps(r) + "\n" for r in keep)
            os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict) -> None:
        if not self.active or not metrics:
            return
        clean = {k: _to_py(v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, float) and math.isfinite(v):
                    self._tb.add_scalar(k, v, int(step))
            self._tb.flush()

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _to_py(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def read_metrics(workdir: str) -> list[dict]:
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
