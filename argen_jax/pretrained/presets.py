"""The sampling settings the papers report their FID with, by name.

LlamaGen (README / paper, c2i ImageNet 256): classifier-free guidance with a constant scale
per model, no top-k / top-p, temperature 1. VAR (README, FID-50k): cfg 1.5, top-p 0.96,
top-k 900, `more_smooth` off; VAR ramps its guidance linearly over the scales with
(1 + cfg * s / (S - 1)), which is our 'linear' schedule from 1 to cfg_scale = 1 + cfg = 2.5.
'run' keeps the run's own `config.sample`.
"""
from __future__ import annotations

from argen_jax.errors import ConfigError

_LLAMAGEN = dict(top_k=0, top_p=1.0, temperature=1.0, cfg_schedule="constant", cfg_interval=-1)
PRESETS: dict[str, dict] = {
    "llamagen_B": dict(_LLAMAGEN, cfg_scale=2.0),
    "llamagen_L": dict(_LLAMAGEN, cfg_scale=1.75),
    "llamagen_XL": dict(_LLAMAGEN, cfg_scale=1.75),
    "llamagen_XXL": dict(_LLAMAGEN, cfg_scale=1.75),
    "llamagen_3B": dict(_LLAMAGEN, cfg_scale=1.65),
    "var": dict(cfg_scale=2.5, cfg_schedule="linear", top_k=900, top_p=0.96, temperature=1.0,
                cfg_interval=-1),
    "run": {},
}


def preset(name: str) -> dict:
    """The SamplingSettings fields of preset `name`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown sampling preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])
