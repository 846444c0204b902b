"""config.data.kind -> the builder of a data source.

A builder is called as `builder(config.data, seed)` and returns a `DataBuilder`
(`data/pipeline.py`): `.spec`, `.train_batch(step)`, `.eval_batches()`. Adding a source is a
module in `data/` and one line here.
"""
from __future__ import annotations

from argen_jax.data import audio, image_folder, patches, pipeline, tokens
from argen_jax.errors import ConfigError

BUILDERS = {
    "image": pipeline.build_image_data,
    "image_folder": image_folder.build_image_folder_data,
    "audio": audio.build_audio_data,
    "photo_patches": patches.build_patch_data,
    "tokens": tokens.build_token_data,
    "token_spec": tokens.build_token_spec_data,  # converted checkpoints: the spec only
}


def build_data(data_cfg, seed: int):
    kind = data_cfg.get("kind", "image")
    if kind not in BUILDERS:
        raise ConfigError(f"unknown data.kind {kind!r}; known: {sorted(BUILDERS)}")
    return BUILDERS[kind](data_cfg, seed)
