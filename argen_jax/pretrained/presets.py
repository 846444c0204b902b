"""The sampling settings the papers report their FID with, by name.

LlamaGen (GETTING_STARTED.md's FID commands, c2i ImageNet 256): classifier-free guidance with
a constant scale per model (B and L 2.0, XL and XXL 1.75, 3B 1.65), no top-k / top-p,
temperature 1; the 384-pixel models are sampled at 384 and scored at 256 (`--image-size-eval
256`: PyTorch bicubic, then clamp and round), which `EVAL_SIZE` records. VAR (README,
FID-50k): cfg 1.5, top-p 0.96, top-k 900, `more_smooth` off; VAR ramps its guidance
linearly over the scales with (1 + cfg * s / (S - 1)), which is our 'linear' schedule from 1
to cfg_scale = 1 + cfg = 2.5.
'run' keeps the run's own `config.sample`.
"""
from __future__ import annotations

from argen_jax.errors import ConfigError

_LLAMAGEN = dict(top_k=0, top_p=1.0, temperature=1.0, cfg_schedule="constant", cfg_interval=-1)
PRESETS: dict[str, dict] = {
    "llamagen_B": dict(_LLAMAGEN, cfg_scale=2.0),
    "llamagen_L": dict(_LLAMAGEN, cfg_scale=2.0),
    "llamagen_XL": dict(_LLAMAGEN, cfg_scale=1.75),
    "llamagen_XXL": dict(_LLAMAGEN, cfg_scale=1.75),
    "llamagen_3B": dict(_LLAMAGEN, cfg_scale=1.65),
    "var": dict(cfg_scale=2.5, cfg_schedule="linear", top_k=900, top_p=0.96, temperature=1.0,
                cfg_interval=-1),
    "run": {},
}


# The image side a preset's figures are scored at (0: the run's own); see the docstring.
EVAL_SIZE: dict[str, int] = {name: 256 for name in PRESETS if name.startswith("llamagen")}


def preset(name: str) -> dict:
    """The SamplingSettings fields of preset `name`."""
    if name not in PRESETS:
        raise ConfigError(f"unknown sampling preset {name!r}; known: {sorted(PRESETS)}")
    return dict(PRESETS[name])


def eval_size(name: str) -> int:
    """The image side preset `name` is scored at (0: the run's own)."""
    preset(name)
    return EVAL_SIZE.get(name, 0)
