"""A run directory's files: `train()` writes workdir/config.json and data_spec.json, every tool
that reopens a run (`inference.open_run`, tokenizer loading, token datasets,
tokenize_dataset.py) reads them here; the workdir lock. Pure file I/O: what the files mean
(a `DataSpec`, a family) is built by the layers above."""
from __future__ import annotations

import dataclasses
import fcntl
import json
import os

import jax
import ml_collections

from argen_jax.errors import ConfigError, WorkdirBusyError

CONFIG_FILE = "config.json"
SPEC_FILE = "data_spec.json"  # the DataSpec the run was trained on


def save_config(config: ml_collections.ConfigDict, workdir: str) -> None:
    """Writes workdir/config.json (process 0 only)."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, CONFIG_FILE), "w") as f:
            f.write(config.to_json_best_effort(indent=2))


def load_config(workdir: str, error: type[Exception] = ConfigError,
                what: str = "a run directory") -> ml_collections.ConfigDict:
    """The config a run was trained with. A missing or unreadable file raises `error` naming
    the path and asking whether `workdir` is `what`."""
    path = os.path.join(workdir or "", CONFIG_FILE)
    if not workdir or not os.path.isfile(path):
        raise error(f"{path!r} not found: is {workdir!r} {what}?")
    try:
        with open(path) as f:
            return ml_collections.ConfigDict(json.load(f))
    except (OSError, ValueError) as e:  # json.JSONDecodeError is a ValueError
        raise error(f"{path!r} is not a readable run config ({e})") from e


def save_spec(spec, workdir: str) -> None:
    """Writes workdir/data_spec.json (a `DataSpec` as JSON; process 0 only), so a run can be
    reopened (a tokenizer, a token model) without building its data source."""
    if jax.process_index() == 0:
        os.makedirs(workdir, exist_ok=True)
        with open(os.path.join(workdir, SPEC_FILE), "w") as f:
            json.dump(dataclasses.asdict(spec), f, indent=2)


def load_spec_fields(workdir: str) -> dict | None:
    """The fields of workdir/data_spec.json (lists as tuples), or None for a run written
    before data_spec.json existed (`data.builders.run_spec` makes the `DataSpec`)."""
    path = os.path.join(workdir, SPEC_FILE)
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            d = json.load(f)
        return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path!r} is not a readable data spec ({e})") from e


LOCK_FILE = ".lock"


class WorkdirLock:
    """An exclusive advisory lock on workdir/.lock (fcntl; released when the process exits,
    also on kill -9). Process 0 holds it for a multi-process run."""

    def __init__(self, workdir: str):
        self._file = None
        if jax.process_index() != 0:
            return
        if os.path.exists(workdir) and not os.path.isdir(workdir):
            raise ConfigError(f"workdir {workdir!r} exists and is not a directory")
        try:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(os.path.join(workdir, LOCK_FILE), "a")  # noqa: SIM115
        except OSError as e:
            raise ConfigError(f"cannot write to workdir {workdir!r}: {e.strerror}") from None
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._file.close()
            self._file = None
            raise WorkdirBusyError(f"another training run is using {workdir!r} (it holds "
                                   f"{LOCK_FILE}); wait for it or use another workdir") from None

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


def lock_workdir(workdir: str) -> WorkdirLock:
    return WorkdirLock(workdir)


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
    """The config of the run in `workdir`, as `--mode=eval|sample` use it without `--config`.
    A converted checkpoint's tokenizer is the sub-run `workdir/tokenizer`
    (`argen_jax.pretrained`): it is found there even after the run directory was moved."""
    config = load_config(workdir)
    data = config.get("data")
    if data is not None and data.get("kind") == "token_spec":
        sub = os.path.join(workdir, "tokenizer")
        if os.path.isfile(os.path.join(sub, CONFIG_FILE)):
            data.tokenizer = os.path.abspath(sub)
    return config
