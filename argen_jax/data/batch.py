"""The keys of a batch (one name per array a data source may put in a batch dict), and the
batching fields every data settings class shares.

A batch is a dict of numpy arrays with a leading global-batch axis (see `data/pipeline.py`).
Data sources write, and families read, these constants rather than string literals, so the
contract between the two is declared in one place.
"""
from __future__ import annotations

import numpy as np

from argen_jax.errors import ConfigError

MASK = "mask"  # float32 [B]: 1 for real examples, 0 for the padding of the last eval batch
LABEL = "label"  # int32 [B]: class id (images, tokens) or speaker id (audio)
IMAGE = "image"  # uint8 [B, H, W, C]: pixel levels in [0, spec.levels)
TOKENS = "tokens"  # int32 [B, L]: token ids of a tokenizer's maps (data/tokens.py)
AUDIO = "audio"  # uint8 [B, T]: mu-law codes (data/audio.py)
VALID = "valid"  # float32 [B, T]: 1 where an audio sample counts in the likelihood
MEL = "mel"  # float32 [B, T / hop, n_mels]: log-mel frames, WaveNet's local conditioning

ALL = (MASK, LABEL, IMAGE, TOKENS, AUDIO, VALID, MEL)


def check_batching(s) -> None:
    """Validates the batching fields of a data settings class (`batch_size`,
    `eval_batch_size`, `train_limit`, `test_limit`): a positive batch, the others >= 0."""
    if s.batch_size <= 0:
        raise ConfigError(f"data.batch_size={s.batch_size} must be positive")
    for name in ("eval_batch_size", "train_limit", "test_limit"):
        if getattr(s, name) < 0:
            raise ConfigError(f"data.{name}={getattr(s, name)} must be >= 0")


def example_batch(spec, rows: int = 1) -> dict:
    """A batch of zeros with the keys and shapes a source of `spec` (a `DataSpec`) produces:
    enough for `Family.init` to fix the parameter shapes (under `jax.eval_shape`) without
    building the data source (`inference.open_run`)."""
    out = {MASK: np.ones((rows,), np.float32), LABEL: np.zeros((rows,), np.int32)}
    if spec.kind == "tokens":
        out[TOKENS] = np.zeros((rows, *spec.shape), np.int32)
    elif spec.kind == "audio":
        out[AUDIO] = np.zeros((rows, *spec.shape), np.uint8)
        out[VALID] = np.ones((rows, *spec.shape), np.float32)
        if spec.n_mels:
            out[MEL] = np.zeros((rows, spec.shape[0] // spec.hop, spec.n_mels), np.float32)
    else:
        out[IMAGE] = np.zeros((rows, *spec.shape), np.uint8 if spec.levels <= 256 else np.int32)
    return out
