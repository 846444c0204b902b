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
