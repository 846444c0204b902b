"""Name -> model family / data builder, read from the config.

Plain imports, so tools (and readers) can follow them: adding a family is an import and one
line in FAMILIES; a data source, one line in DATA. The loop only ever talks to what these
return.
"""
from __future__ import annotations

from argen_jax.data import audio, patches, pipeline, tokens
from argen_jax.errors import ConfigError
from argen_jax.models import llamagen, pixelcnn, pixelcnnpp, transformer, var, vqgan, wavenet

# config.model.name -> a subclass of argen_jax.models.base.Family
FAMILIES = {
    "pixelcnn": pixelcnn.PixelCNNFamily,
    "gated_pixelcnn": pixelcnn.PixelCNNFamily,
    "wavenet": wavenet.WaveNetFamily,
    "igpt": transformer.IGPTFamily,
    "llamagen": llamagen.LlamaGenFamily,
    "pixelcnnpp": pixelcnnpp.PixelCNNPPFamily,
    "vqgan": vqgan.VQGANFamily,
    "var": var.VARFamily,
}

# config.data.kind -> builder(data_config, seed) returning a `data.pipeline.DataBuilder`
DATA = {
    "image": pipeline.build_image_data,
    "audio": audio.build_audio_data,
    "photo_patches": patches.build_patch_data,
    "tokens": tokens.build_token_data,
}


def build_data(config):
    kind = config.data.get("kind", "image")
    if kind not in DATA:
        raise ConfigError(f"unknown data.kind {kind!r}; known: {sorted(DATA)}")
    return DATA[kind](config.data, config.seed)


def build_family(config, spec):
    name = config.model.name
    if name not in FAMILIES:
        raise ConfigError(f"unknown model.name {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name](config, spec)
