"""Errors that name a user's mistake (bad config, bad shape, missing file, bad checkpoint).

The launcher prints these as one clear line instead of a traceback.
"""


class UserError(Exception):
    """A problem the user can fix: the message says what and where."""


class ConfigError(UserError):
    """A config key or value that does not fit."""


class DataError(UserError):
    """Missing or malformed data."""


class CheckpointError(UserError):
    """A checkpoint that cannot be read or does not match the model."""


class DivergenceError(UserError):
    """Training produced a non-finite loss; no checkpoint was written from that state."""


class WorkdirBusyError(UserError):
    """Another training run holds the workdir's lock."""


class CodecError(UserError):
    """A compressed file that cannot be decoded here (damaged, or another model's)."""


PREEMPTED_EXIT_CODE = 75  # EX_TEMPFAIL: launch/main.py's exit status after a SIGTERM stop


class Preempted(Exception):
    """Training stopped on SIGTERM or SIGINT (Ctrl-C) after saving a checkpoint: not an error,
    but not done either. launch/main.py exits with PREEMPTED_EXIT_CODE so a scheduler can
    requeue the job (launch/slurm.sbatch does); the same command resumes."""

    def __init__(self, step: int, workdir: str, signal_name: str = "SIGTERM"):
        super().__init__(f"stopped by {signal_name} at step {step} after saving a checkpoint in "
                         f"{workdir}; run the same command to resume")
        self.step = step
