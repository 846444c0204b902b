"""An LPIPS-style perceptual loss whose feature weights are read from a local .npz file
(`load_perceptual_weights`; nothing is downloaded). The tokenizer's losses live in
`argen_jax/losses/`: this module (perceptual) and `gan.py` (PatchGAN hinge losses)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.layers.quantizer import l2_normalize


def load_perceptual_weights(path: str) -> dict:
    """Feature-net weights for the perceptual loss from a local .npz file.

    Layout (a VGG-like net: stages of 3x3 conv + ReLU, 2x2 max-pool between stages, features
    tapped at the end of every stage, as LPIPS taps VGG16's relu1_2 ... relu5_3):
        stage{s}/conv{k}/kernel  [3, 3, Cin, Cout]  (HWIO)
        stage{s}/conv{k}/bias    [Cout]
        stage{s}/lin             [Cout_last] optional non-negative LPIPS channel weights
        shift, scale             [Cin] optional input normalisation (x - shift) / scale
    Convert VGG16 + LPIPS 'lin' weights into this layout once; nothing is downloaded.
    """
    if not path or not os.path.exists(os.path.expanduser(path)):
        raise ConfigError(f"loss.perceptual_path {path!r} does not exist: the perceptual loss "
                          f"needs a local .npz of feature weights (see load_perceptual_weights)")
    with np.load(os.path.expanduser(path)) as f:
        w = {k: np.asarray(f[k], np.float32) for k in f.files}
    if "stage0/conv0/kernel" not in w:
        raise ConfigError(f"{path}: no 'stage0/conv0/kernel' array: not a perceptual-weights file")
    return w


def make_perceptual_weights(path: str, stages: Sequence[int] = (16, 32, 64),
                            convs_per_stage: int = 2, in_channels: int = 3,
                            seed: int = 0) -> str:
    """Writes random (He-initialised) feature weights in the `load_perceptual_weights`
    layout: for tests and CPU smoke runs (random conv features are a weak perceptual loss)."""
    rng = np.random.default_rng(seed)
    out, cin = {}, in_channels
    for s, c in enumerate(stages):
        for k in range(convs_per_stage):
            out[f"stage{s}/conv{k}/kernel"] = (rng.standard_normal((3, 3, cin, c))
                                               * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
            out[f"stage{s}/conv{k}/bias"] = np.zeros((c,), np.float32)
            cin = c
        out[f"stage{s}/lin"] = np.full((c,), 1.0 / c, np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **out)
    return path


def _conv3x3(x, kernel, bias):
    """'same' 3x3 conv as 9 shifted slices + one matmul (fast on CPU)."""
    _, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    return jnp.concatenate(cols, -1) @ kernel.reshape(9 * c, -1) + bias


def perceptual_features(weights: dict, x: jax.Array) -> list[jax.Array]:
    """x [B, H, W, C] in [-1, 1] -> the feature map at the end of every stage."""
    first = weights["stage0/conv0/kernel"]
    if x.shape[-1] != first.shape[2]:
        if x.shape[-1] != 1:
            raise ConfigError(f"perceptual net takes {first.shape[2]} channels, images have "
                              f"{x.shape[-1]}")
        x = jnp.repeat(x, first.shape[2], axis=-1)
    if "shift" in weights:
        x = (x - weights["shift"]) / weights["scale"]
    feats, s = [], 0
    while f"stage{s}/conv0/kernel" in weights:
        if s:
            b, h, w, c = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))
        k = 0
        while f"stage{s}/conv{k}/kernel" in weights:
            x = nn.relu(_conv3x3(x, weights[f"stage{s}/conv{k}/kernel"],
                                 weights[f"stage{s}/conv{k}/bias"]))
            k += 1
        feats.append(x)
        s += 1
    return feats


def perceptual_distance(weights: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS-style distance [B]: per stage, channel-normalised features, squared difference
    weighted by the stage's `lin` weights (uniform if absent), mean over positions; summed."""
    fx = perceptual_features(weights, jnp.concatenate([x, y], 0))
    b, total = x.shape[0], 0.0
    for s, f in enumerate(fx):
        f = l2_normalize(f, eps=1e-10)
        d = jnp.square(f[:b] - f[b:])
        lin = weights.get(f"stage{s}/lin")
        d = d @ lin if lin is not None else jnp.mean(d, -1)
        total = total + jnp.mean(d, axis=(1, 2))
    return total
