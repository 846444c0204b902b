"""Orbax checkpoints of the whole TrainState plus JSON metadata (data position, config).

Restoring takes the *target* shardings, so a checkpoint saved on one mesh restores onto any
other (different device count, different data/model split). Saves are atomic (Orbax writes to
a temporary directory and renames), and nothing here ever deletes a finished checkpoint other
than Orbax's `max_to_keep` rotation.
"""
from __future__ import annotations

import json
import math
import os
import sys
import time

import jax
import orbax.checkpoint as ocp
from absl import logging

from argen_jax.errors import CheckpointError
from argen_jax.log_filters import quiet_known_noise


def _quiet_closed_loop() -> None:
    """When reading damaged array files fails, Orbax closes its asyncio loop while
    TensorStore's other reads are still finishing; each of their callbacks then reports
    "RuntimeError: Event loop is closed" as an unraisable exception, hundreds of tracebacks
    on stderr, some after the restore has returned. They are the echo of the error reported
    in one line: from the first Checkpointer / restore_params on, the unraisable hook drops
    just those."""
    previous = sys.unraisablehook
    if getattr(previous, "_argen_quiet_loop", False):
        return

    def hook(unraisable):
        exc = unraisable.exc_value
        if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
            return
        previous(unraisable)

    hook._argen_quiet_loop = True
    sys.unraisablehook = hook


class OtherModelError(CheckpointError):
    """The checkpoint's arrays are not this config's model / optimizer (another model's)."""


class DamagedCheckpointError(CheckpointError):
    """A checkpoint whose files cannot be read (truncated, garbled, missing pieces)."""


BEST_FILE = "best.json"  # in the checkpoints folder: {"metric", "step", "value"}
AUTO_BEST = ("eval/bpd", "eval/nll", "eval/mse")  # keep_best='auto': the first one evaluated


class Checkpointer:
    """Saves and restores TrainStates under WORKDIR/checkpoints.

    Rotation keeps the newest `max_to_keep` checkpoints plus the best one: the step whose
    evaluation gave the lowest `keep_best` metric so far (recorded by `record_eval` in
    checkpoints/best.json), so a run that goes bad after a good evaluation can always go back
    to it, however many later checkpoints are written."""

    def __init__(self, workdir: str, max_to_keep: int = 3, keep_best: str = "auto"):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.max_to_keep, self.keep_best = max_to_keep, keep_best
        _quiet_closed_loop()
        quiet_known_noise()
        self.manager = ocp.CheckpointManager(  # rotation is ours (`_rotate`), not Orbax's
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True),
        )
        self._best = self._read_best()

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    meta=ocp.args.JsonSave(meta)),
            force=True,
        )
        self._rotate(step)

    # ------------------------------------------------------------------ rotation
    def _read_best(self) -> dict | None:
        try:
            with open(os.path.join(self.directory, BEST_FILE)) as f:
                best = json.load(f)
            return best if {"metric", "step", "value"} <= set(best) else None
        except (OSError, ValueError):
            return None  # none yet, or damaged: nothing is protected beyond the newest

    def best(self) -> dict | None:
        """{'metric', 'step', 'value'} of the best evaluated checkpoint, or None."""
        return self._best

    def record_eval(self, step: int, metrics: dict) -> None:
        """After evaluating the state saved at `step`: protect it if it is the best so far.
        Every process calls it with the same metrics (deletion is collective in Orbax)."""
        if self.keep_best in ("", "none"):
            return
        names = AUTO_BEST if self.keep_best == "auto" else (self.keep_best,)
        name = next((n for n in names if n in metrics), None)
        if name is None or step not in self._steps(step):
            return
        value, best = float(metrics[name]), self._best
        if not math.isfinite(value) or (
                best is not None and best["metric"] == name
                and best["step"] in self._steps(step) and best["value"] <= value):
            return
        self._best = {"metric": name, "step": int(step), "value": value}
        if jax.process_index() == 0:
            tmp = os.path.join(self.directory, BEST_FILE + ".tmp")
            with open(tmp, "w") as f:
                json.dump(self._best, f)
            os.replace(tmp, os.path.join(self.directory, BEST_FILE))
        self._rotate(step)

    def _steps(self, pending: int | None = None) -> list[int]:
        steps = set(self.manager.all_steps())
        if pending is not None:
            steps.add(pending)  # a save still being written
        return sorted(steps)

    def _rotate(self, pending: int | None = None) -> None:
        """Delete all but the newest `max_to_keep` and the best checkpoint."""
        steps = self._steps(pending)
        keep = set(steps[-self.max_to_keep:])
        if self._best is not None:
            keep.add(int(self._best["step"]))
        for step in steps:
            if step not in keep and step != pending:
                self.manager.delete(step)

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def _saved_shapes(self, step: int) -> list[tuple] | None:
        """Sorted shapes of the saved state's arrays from its metadata; None if unreadable."""
        try:
            tree = ocp.PyTreeCheckpointer().metadata(
                os.path.join(self.directory, str(step), "state")).item_metadata
            shapes = sorted(tuple(m.shape) for m in jax.tree.leaves(tree))
            return shapes or None  # metadata Orbax cannot find comes back empty
        except Exception:  # noqa: BLE001 - damaged metadata surfaces as many error types
            return None

    def restore(self, abstract_state, step: int | None = None):
        """abstract_state: a tree of jax.ShapeDtypeStruct carrying the target shardings.
        A checkpoint of another model raises CheckpointError; one that cannot be read
        (damaged, incomplete) DamagedCheckpointError."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        path = os.path.join(self.directory, str(step))
        want = sorted(tuple(a.shape) for a in jax.tree.leaves(abstract_state))
        saved = self._saved_shapes(step)
        if saved is not None and saved != want:
            raise OtherModelError(
                f"checkpoint {path} does not match this config's model/optimizer (was it "
                f"written by a different config?): {len(saved)} saved arrays vs {len(want)}, "
                f"or other shapes")
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        meta=ocp.args.JsonRestore()),
            )
        except Exception as e:  # noqa: BLE001 - damaged files surface as many error types
            raise DamagedCheckpointError(
                f"checkpoint {path} could not be read (damaged or incomplete): "
                f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
            ) from e
        state = out["state"]
        shapes_ok = jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape,
                                              state, abstract_state))
        if not shapes_ok:
            raise CheckpointError(f"checkpoint {path} has parameter shapes unlike this config's")
        return state, dict(out["meta"])

    def restore_newest_good(self, abstract_state, set_aside: bool):
        """(state, meta, step) of the newest checkpoint that can be read. Damaged newer ones
        are skipped with a warning (and, with `set_aside`, moved to
        WORKDIR/damaged_checkpoints/ so that training can save those steps again); if no
        checkpoint can be read, the newest one's error is raised and nothing is moved."""
        steps = self.all_steps()[::-1]
        damaged = []
        for step in steps:
            try:
                state, meta = self.restore(abstract_state, step)
            except DamagedCheckpointError as e:
                damaged.append((step, e))
                continue
            for bad, err in damaged:
                where = self._set_aside(bad) if set_aside else "left in place"
                logging.warning("%s; using step %d instead (step %d %s)", err, step, bad,
                                where)
            if damaged and set_aside:
                self.manager.reload()
            return state, meta, step
        raise damaged[0][1]

    def _set_aside(self, step: int) -> str:
        dest_dir = os.path.join(os.path.dirname(self.directory), "damaged_checkpoints")
        os.makedirs(dest_dir, exist_ok=True)
        dest = os.path.join(dest_dir, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        os.replace(os.path.join(self.directory, str(step)), dest)
        return f"moved to {dest}"

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore_params(workdir: str, key: str = "params", step: int | None = None, target=None):
    """(the `key` subtree of the saved TrainState ('params' or 'ema_params'), its step) from
    the newest (or `step`'s) checkpoint of `workdir`, without the rest of the state (no
    optimizer): only that subtree is read. `target`: a tree of `jax.ShapeDtypeStruct`s with
    the shardings to restore onto (the saved shapes must match it); None: the saved shapes,
    on this process's first device. One-line CheckpointErrors."""
    directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint in {directory}: train first (mode=train)")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        create=False, read_only=True))
    step = manager.latest_step() if step is None else step
    manager.close()
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}: train first (mode=train)")
    path = os.path.join(directory, str(step), "state")
    _quiet_closed_loop()
    quiet_known_noise()
    try:
        ckptr = ocp.PyTreeCheckpointer()
        tree = ckptr.metadata(path).item_metadata
        if key not in tree:
            raise KeyError(f"no {key!r} in the saved state")
        saved = tree[key]
    except Exception as e:  # noqa: BLE001 - corrupt files surface as many error types
        raise _unreadable(path, e) from e
    if target is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                              saved)
    else:
        same = jax.tree.structure(saved) == jax.tree.structure(target) and all(
            tuple(a.shape) == tuple(b.shape)
            for a, b in zip(jax.tree.leaves(saved), jax.tree.leaves(target), strict=True))
        if not same:
            raise CheckpointError(
                f"checkpoint {path} does not match this config's model (was it written by a "
                f"different config?): {len(jax.tree.leaves(saved))} saved arrays vs "
                f"{len(jax.tree.leaves(target))}, or other shapes")
    try:
        args = jax.tree.map(lambda t: ocp.ArrayRestoreArgs(sharding=t.sharding), target)
        out = ckptr.restore(path, args=ocp.args.PyTreeRestore(
            item={key: target}, restore_args={key: args}, partial_restore=True))
    except Exception as e:  # noqa: BLE001 - corrupt files surface as many error types
        raise _unreadable(path, e) from e
    return out[key], int(step)


def _unreadable(path: str, e: Exception) -> CheckpointError:
    msg = str(e).splitlines()[0][:300] if str(e) else ""
    return CheckpointError(f"checkpoint {path} could not be read (corrupt or incomplete?): "
                           f"{type(e).__name__}: {msg}")


def restore_eval_params(workdir: str, config, use_ema: bool = True, target=None):
    """(params, step) of the newest checkpoint as evaluation and sampling use them: the
    Polyak average when the run kept one (`train.ema_decay` > 0) and `use_ema`. `target`:
    as `restore_params`."""
    train = config.get("train")
    ema = use_ema and train is not None and float(train.get("ema_decay") or 0.0) > 0
    return restore_params(workdir, "ema_params" if ema else "params", target=target)
