"""Launch an experiment.

    python launch/main.py --config=experiments/pixelcnn/mnist.py --workdir=/tmp/run
    python launch/main.py --config=experiments/pixelcnn/mnist.py:tiny --workdir=W \
        --config.train.num_steps=100 --mode=eval

Modes: train (resumes from WORKDIR if it has checkpoints), eval, sample. Without --config,
eval and sample use WORKDIR/config.json (e.g. a run converted from released weights:
`python -m argen_jax.pretrained convert`).
Exit status: 0 done, 2 a user error (one line on stderr), 75 stopped by SIGTERM or Ctrl-C
(SIGINT) after saving a checkpoint (preemption: run the same command again to resume;
launch/slurm.sbatch requeues); a second SIGTERM / Ctrl-C stops at once, without saving.
"""
import contextlib
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from argen_jax import xla_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
xla_env.apply()  # CPU XLA flags, before JAX starts (argen_jax/xla_env.py; opt out with
# ARGEN_XLA_CPU_FLAGS=0)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally `path.py:arg` (e.g. :tiny); eval and "
    "sample without it: WORKDIR/config.json.",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Start jax.distributed (multi-host / multi-process); see argen_jax/parallel/distributed.py.")
flags.mark_flags_as_required(["workdir"])


_RUN_OVERRIDES: list[str] = []  # --config.x.y=v without --config: for WORKDIR/config.json


def parse_flags(argv):
    """absl parsing, but a bad --config (missing file, unknown key, wrong type) is one clear
    line instead of a traceback from inside ml_collections. Without --config, `--config.x.y=`
    overrides are kept for the run's own config.json (applied in `main`)."""
    spec = next((a.split("=", 1)[1] for a in argv[1:] if a.startswith("--config=")), None)
    if spec is not None and not os.path.isfile(spec.partition(":")[0]):
        print(f"error: no such config file: {spec.partition(':')[0]}", file=sys.stderr)
        sys.exit(2)
    if spec is None and "--config" not in argv[1:]:
        _RUN_OVERRIDES[:] = [a for a in argv[1:] if a.startswith("--config.")]
        argv = [a for a in argv if a not in _RUN_OVERRIDES]
    try:
        argv = flags.FLAGS(argv)
        if _CONFIG.value is not None:  # config_flags reports a missing file only on access
            _ = "model" in _CONFIG.value
        return argv
    except flags.Error as e:
        print(f"error: {_one_line(e)}\nPass --help for usage.", file=sys.stderr)
    except (AttributeError, KeyError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"error: bad --config: {_unknown_key(e, argv) or _one_line(e)}", file=sys.stderr)
    sys.exit(2)


def _unknown_key(e: Exception, argv) -> str:
    """For an override of a key the config lacks (ml_collections says only "'key'"): which
    flag, and the keys that section does have."""
    if not isinstance(e, (KeyError, AttributeError)) or not e.args:
        return ""
    inner = e.args[0]  # AttributeError wraps ml_collections' KeyError
    text = str(inner.args[0] if isinstance(inner, BaseException) and inner.args else inner)
    # text: "'key'", or "'key'\nDid you mean "other" instead of "key"?"
    key = text.split()[0].strip("'\"") if text.split() else ""
    hint = text[text.index("Did you mean"):] if "Did you mean" in text else ""
    for arg in argv[1:]:
        flag = arg.split("=", 1)[0]
        path = flag.removeprefix("--").split(".")
        if path[0] != "config" or path[-1] != key:
            continue
        where = ".".join(path[:-1])
        known = _section_keys(argv, path[1:-1])
        return f"{flag}: {where} has no key {key!r}" + (f". {hint}" if hint else "") + (
            f" (its keys: {', '.join(known)})" if known else "")
    return ""


def _section_keys(argv, section) -> list[str]:
    """The keys of `section` in the config file named by --config (no overrides applied)."""
    import importlib.util

    spec = next((a.split("=", 1)[1] for a in argv if a.startswith("--config=")), "")
    path, _, arg = spec.partition(":")
    try:
        mod_spec = importlib.util.spec_from_file_location("_argen_config", path)
        module = importlib.util.module_from_spec(mod_spec)
        mod_spec.loader.exec_module(module)
        node = module.get_config(arg) if arg else module.get_config()
        for name in section:
            node = node[name]
        return sorted(node.keys())
    except Exception:  # noqa: BLE001 - only a hint: without it the message still names the key
        return []


def _one_line(e: Exception) -> str:
    """The informative part of a config error (drop embedded tracebacks and quoting)."""
    msg = str(e).replace("\\n", "\n").replace("\\'", "'")
    if "Traceback" in msg:  # config_flags embeds the get_config traceback: keep its last line
        head = msg.split("\n")[0].rstrip(": ")
        tail = [ln for ln in msg.split("\n") if ln.strip()][-1].strip()
        return f"{head}: {tail}"
    if "Attempted" in msg:  # missing config file
        return " ".join(ln.strip() for ln in msg.split("\n") if ln.strip())
    msg = " ".join(msg.split())
    if len(msg) > 1 and msg[0] == msg[-1] == "'":
        msg = msg[1:-1]
    return msg.replace("\\'", "'").replace("'\\n", " ")


def apply_overrides(config, overrides) -> None:
    """`--config.a.b=v` flags onto a config read from config.json (no --config): v is parsed
    as the type of the value it replaces (bool, int, float, str, tuple); a key the config
    lacks is a ConfigError naming the section's keys."""
    import ast

    from argen_jax.errors import ConfigError

    for arg in overrides:
        flag, eq, text = arg.partition("=")
        *path, key = flag.removeprefix("--config.").split(".")
        node = config
        for name in path:
            if name not in node:
                raise ConfigError(f"{flag}: the run's config has no section {name!r}")
            node = node[name]
        if key not in node:
            raise ConfigError(f"{flag}: config{''.join('.' + p for p in path)} has no key "
                              f"{key!r} (its keys: {', '.join(sorted(node.keys()))})")
        old = node[key]
        try:
            if isinstance(old, bool) or not eq:
                if text.lower() not in ("true", "false", "1", "0", "") or (eq and not text):
                    raise ValueError(text)
                value = text.lower() in ("true", "1", "")
            elif isinstance(old, (int, float)) and not isinstance(old, bool):
                value = type(old)(float(text) if isinstance(old, float) else int(text))
            elif isinstance(old, str):
                value = text
            else:  # tuples, lists, None: a Python literal
                value = ast.literal_eval(text)
                value = tuple(value) if isinstance(old, (tuple, list)) else value
        except (ValueError, SyntaxError):
            raise ConfigError(f"{flag}={text!r}: not of the type ({type(old).__name__}) of "
                              f"the run's {old!r}") from None
        with config.unlocked() if hasattr(config, "unlocked") else contextlib.nullcontext():
            node[key] = value


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _DISTRIBUTED.value:
        from argen_jax.parallel.distributed import initialize

        initialize()  # env vars from launch/*.sh, or SLURM / TPU auto-detection
    from argen_jax.errors import PREEMPTED_EXIT_CODE, Preempted, UserError
    from argen_jax.log_filters import quiet_known_noise
    from argen_jax.run import run

    quiet_known_noise()  # Orbax's read-only / metadata warnings, JAX's "no TPU" INFO line
    logging.set_verbosity(logging.INFO)
    # Orbax logs every checkpoint step at INFO; keep its warnings, drop the chatter.
    logging.get_absl_handler().addFilter(
        lambda r: r.levelno >= logging.converter.STANDARD_WARNING
        or "/orbax/" not in r.pathname)
    workdir = os.path.expanduser(_WORKDIR.value)
    try:
        config = _CONFIG.value
        if config is None:
            if _MODE.value == "train":
                raise UserError("--config is required for --mode=train")
            from argen_jax.io.run_dir import load_run_config

            config = load_run_config(workdir)
            apply_overrides(config, _RUN_OVERRIDES)
        run(config, workdir, _MODE.value)
    except UserError as e:  # one line, once (no log line repeating it)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except Preempted as e:  # saved and stopped: a scheduler should run it again
        logging.warning("%s (exit status %d)", e, PREEMPTED_EXIT_CODE)
        sys.exit(PREEMPTED_EXIT_CODE)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
