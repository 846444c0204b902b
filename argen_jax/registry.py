"""Name -> model family / data builder, read from the config.

Plain imports, so tools (and readers) can follow them: adding a family is an import and one
line in FAMILIES; a data source, one line in `data/builders.py`. The loop only ever talks to
what these return.
"""
from __future__ import annotations

from argen_jax.data import builders as data_builders
from argen_jax.errors import ConfigError
from argen_jax.models import igpt, llamagen, pixelcnn, pixelcnnpp, var, vqgan, wavenet
from argen_jax.models.tokenizer import Tokenizer

# config.model.name -> a subclass of argen_jax.models.base.Family
FAMILIES = {
    "pixelcnn": pixelcnn.PixelCNNFamily,
    "gated_pixelcnn": pixelcnn.PixelCNNFamily,
    "wavenet": wavenet.WaveNetFamily,
    "igpt": igpt.IGPTFamily,
    "llamagen": llamagen.LlamaGenFamily,
    "pixelcnnpp": pixelcnnpp.PixelCNNPPFamily,
    "vqgan": vqgan.VQGANFamily,
    "var": var.VARFamily,
}

def build_data(config):
    return data_builders.build_data(config.data, config.seed)


def build_family(config, spec):
    name = config.model.name
    if name not in FAMILIES:
        raise ConfigError(f"unknown model.name {name!r}; known: {sorted(FAMILIES)}")
    if spec.kind == "tokens" and spec.tokenizer:  # loaded before anything is traced
        return FAMILIES[name](config, spec, tokenizer=Tokenizer.load(spec.tokenizer))
    return FAMILIES[name](config, spec)
