"""Name -> model family / data builder, read from the config.

Entries are import paths, so adding a family is one line here and nothing is imported until
a config asks for it. The training loop only ever talks to what these return.
"""
from __future__ import annotations

import importlib

from argen_jax.errors import ConfigError

# config.model.name -> "module:FamilyClass" (a subclass of argen_jax.models.base.Family)
FAMILIES = {
    "pixelcnn": "argen_jax.models.pixelcnn:PixelCNNFamily",
    "gated_pixelcnn": "argen_jax.models.pixelcnn:PixelCNNFamily",
    "wavenet": "argen_jax.models.wavenet:WaveNetFamily",
    "igpt": "argen_jax.models.transformer:IGPTFamily",
    "llamagen": "argen_jax.models.llamagen:LlamaGenFamily",
    "pixelcnnpp": "argen_jax.models.pixelcnnpp:PixelCNNPPFamily",
    "vqgan": "argen_jax.models.vqgan:VQGANFamily",
    "var": "argen_jax.models.var:VARFamily",
}

# config.data.kind -> "module:builder(data_config, seed)" returning an object with
# `.spec` (DataSpec), `.train_batch(step) -> dict` and `.eval_batches() -> iterator of dicts`.
DATA = {
    "image": "argen_jax.data.pipeline:build_image_data",
    "audio": "argen_jax.data.audio:build_audio_data",
    "photo_patches": "argen_jax.data.patches:build_patch_data",
    "tokens": "argen_jax.data.tokens:build_token_data",
}


def _load(path: str):
    module, attr = path.split(":")
    return getattr(importlib.import_module(module), attr)


def build_data(config):
    kind = config.data.get("kind", "image")
    if kind not in DATA:
        raise ConfigError(f"unknown data.kind {kind!r}; known: {sorted(DATA)}")
    return _load(DATA[kind])(config.data, config.seed)


def build_family(config, spec):
    name = config.model.name
    if name not in FAMILIES:
        raise ConfigError(f"unknown model.name {name!r}; known: {sorted(FAMILIES)}")
    return _load(FAMILIES[name])(config, spec)
