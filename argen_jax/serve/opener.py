"""Opening a run for serving: its family and evaluation parameters, nothing of training.

(A lean stand-in until the project's `argen_jax.inference.open_run` lands; the engine only
needs (family, params).)
"""
from __future__ import annotations

from argen_jax import registry
from argen_jax.config_lib import typed
from argen_jax.io.checkpoint import restore_params
from argen_jax.io.run_dir import load_run_config, run_spec
from argen_jax.train.settings import TrainSettings


def open_run(workdir: str, **sample_overrides):
    """(family, params) of the run in `workdir` (trained or converted): the family built
    from config.json / data_spec.json (`config.sample` with `sample_overrides` on top), the
    EMA parameters when the run keeps them, else the parameters."""
    config = load_run_config(workdir)
    for k, v in sample_overrides.items():
        config.sample[k] = v
    family = registry.build_family(config, run_spec(workdir, config))
    ema = typed(TrainSettings, config.get("train"), "train").ema_decay > 0
    params, _ = restore_params(workdir, "ema_params" if ema else "params")
    return family, params
