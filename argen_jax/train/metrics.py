"""Metric writers: `DIR/metrics.jsonl` (one JSON object per line) and TensorBoard events.

TensorBoard files are written with tensorboardX (flax.metrics.tensorboard and
clu.metric_writers import TensorFlow, which stays off the training path).
"""
from __future__ import annotations

import json
import math
import os

import jax
from absl import logging

from argen_jax.errors import DataError


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
        keep = [r for r in rows if r["step"] <= step]
        with open(self.path) as f:
            written = sum(1 for ln in f if ln.strip())  # a dropped partial line counts too
        if len(keep) != written:
            self._rewrite(keep)

    def _rewrite(self, rows: list[dict]) -> None:
        """Replace the file's rows atomically (a crash leaves the old file or the new one)."""
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
        os.replace(tmp, self.path)

    def write(self, step: int, metrics: dict, mode: str = "") -> None:
        """Appends a row. mode ('eval' for `--mode=eval`): the row carries it and replaces an
        earlier row of that mode at the same step (evaluating a checkpoint again updates its
        row instead of adding a duplicate); training rows have no mode."""
        if not self.active or not metrics:
            return
        clean = {k: _to_py(v) for k, v in metrics.items()}
        row = {"step": int(step), **({"mode": mode} if mode else {}), **clean}
        if mode and os.path.exists(self.path):
            rows = read_metrics(os.path.dirname(self.path))
            keep = [r for r in rows if (r["step"], r.get("mode")) != (int(step), mode)]
            if len(keep) != len(rows):
                self._rewrite(keep + [row])
                self._tensorboard(step, clean)
                return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        self._tensorboard(step, clean)

    def _tensorboard(self, step: int, clean: dict) -> None:
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
    """The rows of workdir/metrics.jsonl. A partial last line (a run killed while writing it)
    is dropped; a damaged line elsewhere is a DataError naming the file and line."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        lines = [ln for ln in f.read().split("\n") if ln.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or "step" not in row:
                raise ValueError("not a metrics row")
        except ValueError as e:
            if i == len(lines) - 1:
                logging.warning("%s: dropping a partial last line (%s)", path, e)
                break
            raise DataError(f"{path} line {i + 1} is not a metrics row ({e}): move the file "
                            f"aside or fix that line") from None
        rows.append(row)
    return rows
