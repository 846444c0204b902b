"""What every benchmark shares: the standard flags, the config, the timer and the JSON row.

A benchmark is one file `experiments/benchmarks/<kind>/<name>.py` (kinds: speed, memory,
quality, checks), run from the repo root as `python -m experiments.benchmarks.<kind>.<name>`:

    from absl import flags

    from experiments.benchmarks import common

    _BATCH = flags.DEFINE_integer("batch", 8, "Global batch.")
    _CONFIG = common.config_flag("experiments/llamagen/imagenet.py:tiny")
    common.timing_flags(repeats=3)

    def main(argv):
        config = _CONFIG.value            # --config=FILE.py:ARG, --config.model.x=... overrides
        step = ...                        # a jitted function of the config
        seconds = common.best_time(step, *inputs)    # after --warmup calls, best of --repeats
        common.emit({"benchmark": "name", "seconds": seconds})  # ONE JSON line (+ --out FILE)

    if __name__ == "__main__":
        common.run(main)

The CPU XLA flags (`argen_jax.xla_env.apply()`) are applied by this package's `__init__`,
which Python runs before the script's own imports: nothing to call.
"""
from __future__ import annotations

import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable

import jax
import ml_collections
from absl import app, flags
from ml_collections import config_flags

_OUT, _REPEATS, _WARMUP = "out", "repeats", "warmup"


def run(main: Callable) -> None:
    """The entry point of every benchmark: defines --out, absl parses the flags, then
    `main(argv)`. (Flags are defined by the script, never on importing a shared module, so
    a test can import the shared modules side by side.) The shared modules' flags are listed
    by the script's --help as its own."""
    flags.DEFINE_string(_OUT, None, "Also append the JSON row to this file (JSON lines).")
    fv = flags.FLAGS
    for module, module_flags in fv.flags_by_module_dict().items():
        if module.startswith("experiments.benchmarks."):
            for flag in module_flags:
                fv.register_key_flag_for_module(sys.argv[0], flag)
    app.run(main)


# -- flags ------------------------------------------------------------------------------------

def config_flag(default: str | None, help: str = "") -> flags.FlagHolder:
    """--config: an experiment config file, `path.py[:arg]`, with `--config.<key>=` overrides
    (ml_collections' config file flag, as launch/main.py's). The config is not locked, so a
    benchmark can set its own knobs on it."""
    return config_flags.DEFINE_config_file(
        "config", default, help or "Experiment config file, `path.py[:arg]`; override keys "
        "with --config.<section>.<key>=VALUE.", lock_config=False)


def timing_flags(repeats: int = 3, warmup: int = 1) -> None:
    """--repeats (timed calls) and --warmup (untimed calls first: compilation, caches), the
    defaults of `times` / `best_time` / `median_time`."""
    flags.DEFINE_integer(_REPEATS, repeats, "Timed calls; the figure is their best (or median).")
    flags.DEFINE_integer(_WARMUP, warmup, "Untimed calls before timing (compilation).")


# -- config -----------------------------------------------------------------------------------

def load_config(spec: str) -> ml_collections.ConfigDict:
    """'path/to/config.py[:arg]' -> its get_config(arg) (get_config() without an arg)."""
    path, _, arg = spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("_benchmark_config", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.get_config(arg) if arg else module.get_config()


def config_with_arg(holder: flags.FlagHolder, arg: str = "") -> ml_collections.ConfigDict:
    """The --config flag's config; with `arg` (a benchmark's --size=B, say) the same file's
    get_config(arg) instead of the flag's own `:arg`, its --config.* overrides applied again."""
    if not arg:
        return holder.value
    flag = flags.FLAGS[holder.name]
    config = load_config(f"{config_flags.get_config_filename(flag).partition(':')[0]}:{arg}")
    for dotted, value in config_flags.get_override_values(flag).items():
        *parents, key = dotted.split(".")
        node = config
        for p in parents:
            node = node[p]
        node[key] = value
    return config


def config_spec(holder: flags.FlagHolder, arg: str = "") -> str:
    """The `path.py[:arg]` string of --config (with `arg`, as `config_with_arg`), for a row."""
    path = config_flags.get_config_filename(flags.FLAGS[holder.name])
    return f"{path.partition(':')[0]}:{arg}" if arg else path


# -- timing -----------------------------------------------------------------------------------

def _flag(name: str, value: int | None) -> int:
    if value is not None:
        return value
    if name not in flags.FLAGS:
        raise ValueError(f"pass {name}= or define the flag with common.timing_flags()")
    return flags.FLAGS[name].value


def times(fn: Callable, *args, repeats: int | None = None,
          warmup: int | None = None) -> list[float]:
    """Seconds of each of `repeats` calls of fn(*args), after `warmup` untimed calls; every
    call is waited for with `jax.block_until_ready` (a no-op on host values: NumPy, torch
    on CPU). None: the --repeats / --warmup flags. For a step that carries state (a donated
    train state), pass a closure that updates it."""
    repeats, warmup = _flag(_REPEATS, repeats), _flag(_WARMUP, warmup)
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        out.append(time.perf_counter() - t0)
    return out


def best_time(fn: Callable, *args, repeats: int | None = None,
              warmup: int | None = None) -> float:
    """The fastest of `times(fn, *args, ...)`: the figure for ratios on a noisy machine."""
    return min(times(fn, *args, repeats=repeats, warmup=warmup))


def median_time(fn: Callable, *args, repeats: int | None = None,
                warmup: int | None = None) -> float:
    """The median of `times(fn, *args, ...)`: the figure for a throughput (steps/s)."""
    return statistics.median(times(fn, *args, repeats=repeats, warmup=warmup))


class Stopwatch:
    """Seconds of a block that is not one call (a loop over a data loader, a compile):
    `with Stopwatch() as sw: ...` then `sw.seconds`."""

    def __enter__(self) -> Stopwatch:
        self.seconds, self._t0 = 0.0, time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self.seconds = time.perf_counter() - self._t0


# -- the row ----------------------------------------------------------------------------------

def emit(row: dict) -> dict:
    """Prints the benchmark's result as ONE JSON line on stdout and, with --out FILE, appends
    the same line to FILE. Returns the row."""
    line = json.dumps(row)
    print(line, flush=True)
    out = flags.FLAGS[_OUT].value if _OUT in flags.FLAGS and flags.FLAGS.is_parsed() else None
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")
    return row
