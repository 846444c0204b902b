"""Opening a run for serving: its family and evaluation parameters, nothing of training.

(A lean stand-in until the project's `argen_jax.inference.open_run` lands; the engine only
needs (family, params).)
"""
from __future__ import annotations

from argen_jax import registry
from argen_jax.config_lib import typed
from argen_jax.io.checkpoint import restore_params
from argen_jax.io.run_dir import load_run_config, run_spec
from argen_jax.pretrained.evaluate import apply_preset
from argen_jax.train.settings import TrainSettings


def open_run(workdir: str, **sample_overrides):
    """(family, params) of the run in `workdir` (trained or converted): the family built
    from config.json / data_spec.json (`config.sample`: a converted run's preset, with
    `sample_overrides` on top, as `python -m argen_jax.pretrained sample` samples), the
    EMA parameters when the run keeps them, else the parameters."""
    config = load_run_config(workdir)
    apply_preset(config, "", **sample_overrides)
    family = registry.build_family(config, run_spec(workdir, config))
    ema = typed(TrainSettings, config.get("train"), "train").ema_decay > 0
    params, _ = restore_params(workdir, "ema_params" if ema else "params")
    return family, params
