"""The one library entry point behind `launch/main.py` and the notebooks."""
from __future__ import annotations

from argen_jax.errors import ConfigError
from argen_jax.train import loop

MODES = ("train", "eval", "sample")


def run(config, workdir: str, mode: str = "train"):
    if mode == "train":
        return loop.train(config, workdir)
    if mode == "eval":
        return loop.eval_only(config, workdir)
    if mode == "sample":
        return loop.sample_only(config, workdir)
    raise ConfigError(f"unknown mode {mode!r}; one of {MODES}")
