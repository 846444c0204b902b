"""Launch an experiment.

    python launch/main.py --config=experiments/pixelcnn/mnist.py --workdir=/tmp/run
    python launch/main.py --config=experiments/pixelcnn/mnist.py:tiny --workdir=W \
        --config.train.num_steps=100 --mode=eval

Modes: train (resumes from WORKDIR if it has checkpoints), eval, sample.
"""
import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

from argen_jax import xla_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
xla_env.apply()  # CPU XLA flags, before JAX starts (argen_jax/xla_env.py; opt out with
# ARGEN_XLA_CPU_FLAGS=0)

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally `path.py:arg` (e.g. :tiny).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Start jax.distributed (multi-host / multi-process); see argen_jax/parallel/distributed.py.")
flags.mark_flags_as_required(["config", "workdir"])


def parse_flags(argv):
    """absl parsing, but a bad --config (missing file, unknown key, wrong type) is one clear
    line instead of a traceback from inside ml_collections."""
    try:
        argv = flags.FLAGS(argv)
        _ = "model" in _CONFIG.value  # config_flags reports a missing file only on access
        return argv
    except flags.Error as e:
        print(f"error: {_one_line(e)}\nPass --help for usage.", file=sys.stderr)
    except (AttributeError, KeyError, ValueError, TypeError, OSError, ImportError) as e:
        print(f"error: bad --config: {_one_line(e)}", file=sys.stderr)
    sys.exit(2)


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


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _DISTRIBUTED.value:
        from argen_jax.parallel.distributed import initialize

        initialize()  # env vars from launch/*.sh, or SLURM / TPU auto-detection
    from argen_jax.errors import UserError
    from argen_jax.run import run

    logging.set_verbosity(logging.INFO)
    # Orbax logs every checkpoint step at INFO; keep its warnings, drop the chatter.
    logging.get_absl_handler().addFilter(
        lambda r: r.levelno >= logging.converter.STANDARD_WARNING
        or "/orbax/" not in r.pathname)
    try:
        run(_CONFIG.value, os.path.expanduser(_WORKDIR.value), _MODE.value)
    except UserError as e:
        logging.error("%s: %s", type(e).__name__, e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=parse_flags)
