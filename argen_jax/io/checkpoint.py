"""Orbax checkpoints of the whole TrainState plus JSON metadata (data position, config).

Restoring takes the *target* shardings, so a checkpoint saved on one mesh restores onto any
other (different device count, different data/model split). Saves are atomic (Orbax writes to
a temporary directory and renames), and nothing here ever deletes a finished checkpoint other
than Orbax's `max_to_keep` rotation.
"""
from __future__ import annotations

import os

import jax
import orbax.checkpoint as ocp

from argen_jax.errors import CheckpointError


class Checkpointer:
    def __init__(self, workdir: str, max_to_keep: int = 3):
        self.directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state, meta: dict) -> None:
        self.manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                    meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def restore(self, abstract_state, step: int | None = None):
        """abstract_state: a tree of jax.ShapeDtypeStruct carrying the target shardings."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        path = os.path.join(self.directory, str(step))
        try:
            out = self.manager.restore(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state),
                                        meta=ocp.args.JsonRestore()),
            )
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {path} does not match this config's model/optimizer "
                f"(was it written by a different config?): {str(e).splitlines()[0][:300]}"
            ) from e
        except Exception as e:  # noqa: BLE001 - corrupt files surface as many error types
            raise CheckpointError(
                f"checkpoint {path} could not be read (corrupt or incomplete?): "
                f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}. "
                f"It was left in place; move it aside to resume from an earlier one."
            ) from e
        state = out["state"]
        shapes_ok = jax.tree.all(jax.tree.map(lambda a, b: a.shape == b.shape,
                                              state, abstract_state))
        if not shapes_ok:
            raise CheckpointError(f"checkpoint {path} has parameter shapes unlike this config's")
        return state, dict(out["meta"])

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def restore_params(workdir: str, key: str = "params", step: int | None = None):
    """(the `key` subtree of the saved TrainState ('params' or 'ema_params'), its step) from
    the newest (or `step`'s) checkpoint of `workdir`, on the default device, without a target
    state, a mesh or an optimizer: only that subtree is read. One-line CheckpointErrors."""
    directory = os.path.abspath(os.path.join(workdir, "checkpoints"))
    if not os.path.isdir(directory):
        raise CheckpointError(f"no checkpoint in {directory}")
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        create=False, read_only=True))
    step = manager.latest_step() if step is None else step
    manager.close()
    if step is None:
        raise CheckpointError(f"no checkpoint in {directory}")
    path = os.path.join(directory, str(step), "state")
    try:
        ckptr = ocp.PyTreeCheckpointer()
        tree = ckptr.metadata(path).item_metadata
        if key not in tree:
            raise KeyError(f"no {key!r} in the saved state")
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding),
                              tree[key])
        args = jax.tree.map(lambda _: ocp.ArrayRestoreArgs(sharding=sharding), tree[key])
        out = ckptr.restore(path, args=ocp.args.PyTreeRestore(
            item={key: target}, restore_args={key: args}, partial_restore=True))
    except Exception as e:  # noqa: BLE001 - corrupt files surface as many error types
        msg = str(e).splitlines()[0][:300] if str(e) else ""
        raise CheckpointError(f"checkpoint {path} could not be read (corrupt or incomplete?): "
                              f"{type(e).__name__}: {msg}") from e
    return out[key], int(step)
