"""Launch an experiment.

    python launch/main.py --config=experiments/pixelcnn/mnist.py --workdir=/tmp/run
    python launch/main.py --config=experiments/pixelcnn/mnist.py:tiny --workdir=W \
        --config.train.num_steps=100 --mode=eval

Modes: train (resumes from WORKDIR if it has checkpoints), eval, sample.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file, optionally `path.py:arg` (e.g. :tiny).",
    lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
_MODE = flags.DEFINE_enum("mode", "train", ["train", "eval", "sample"], "What to run.")
_DISTRIBUTED = flags.DEFINE_bool(
    "distributed", False,
    "Start jax.distributed (multi-host / multi-process); see argen_jax/parallel/distributed.py.")
flags.mark_flags_as_required(["config", "workdir"])


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
    app.run(main)
