"""Log lines a user cannot act on, dropped by exact message (never by level or module).

Orbax warns on every restore of a checkpoint we wrote ("Metadata file does not exist" for the
optional _CHECKPOINT_METADATA, "Given directory is read only" and "read_only=True, setting
save_interval_steps=0" / "max_to_keep=None" for our read-only managers), and JAX logs
"Unable to initialize backend 'tpu'" at INFO on every start of a machine without one (the
launcher shows INFO). Every other message of those libraries, warnings and errors included,
still goes through.
"""
from __future__ import annotations

import logging

_ORBAX_NOISE = ("Metadata file does not exist", "Given directory is read only",
                "CheckpointManagerOptions.read_only=True, setting")
_BACKEND_NOISE = "Unable to initialize backend '"


def _keep(record: logging.LogRecord) -> bool:
    msg = str(record.msg)
    if "/orbax/" in record.pathname and msg.startswith(_ORBAX_NOISE):
        return False
    return not (record.levelno <= logging.INFO and msg.startswith(_BACKEND_NOISE))


def quiet_known_noise() -> None:
    """Install the filter on the loggers these lines come from (idempotent)."""
    for name in ("absl", "jax._src.xla_bridge"):  # orbax logs through absl.logging
        logger = logging.getLogger(name)
        if _keep not in logger.filters:
            logger.addFilter(_keep)
