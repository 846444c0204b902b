"""config.data.kind -> the builder of a data source.

A builder is called as `builder(config.data, seed)` and returns a `DataBuilder`
(`data/pipeline.py`): `.spec`, `.train_batch(step)`, `.eval_batches()`. Adding a source is a
module in `data/` and one line here.
"""
from __future__ import annotations

from argen_jax.data import audio, image_folder, patches, pipeline, tokens
from argen_jax.errors import ConfigError
from argen_jax.io.run_dir import SPEC_FILE, load_spec_fields

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


def load_spec(workdir: str) -> pipeline.DataSpec | None:
    """The `DataSpec` of workdir/data_spec.json, or None for a run written before it existed."""
    fields = load_spec_fields(workdir)
    if fields is None:
        return None
    try:
        return pipeline.DataSpec(**fields)
    except TypeError as e:
        raise ConfigError(f"{workdir}/{SPEC_FILE} is not a readable data spec ({e})") from e


def run_spec(workdir: str, config) -> pipeline.DataSpec:
    """The run's `DataSpec`: data_spec.json, or (a run written before it existed) the spec of
    the data its config builds."""
    spec = load_spec(workdir)
    return build_data(config.data, config.seed).spec if spec is None else spec
