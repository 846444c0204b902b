"""Model probabilities -> the integer frequency tables the entropy coder uses.

A table has every symbol's frequency >= 1 and the frequencies sum to exactly 2^PRECISION, so
every symbol stays codable and the coder needs no floating point. `frequencies` runs inside
the codec's jitted step (the same compiled function on the encoder and the decoder side), so
both sides get the same integers whenever they get the same float probabilities.

`constriction` turns float weights into a table with its own quantizer; given the weights
f - 1 (ints, exact in float32 / float64) its fast quantizer (`perfect=False`) reproduces f
exactly: it gives symbol i the left edge floor(sum_{j<i} (f_j - 1) * scale) + i with
scale = (2^24 - V) / sum(f - 1) = 1. `coder_weights` makes those weights.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

PRECISION = 24  # constriction's default range coder: 24-bit probabilities


def frequencies(log_probs: jax.Array, precision: int = PRECISION) -> jax.Array:
    """log P [..., V] (need not be normalised) -> int32 frequencies [..., V], each >= 1,
    summing to 2^precision: 1 + floor(p * (2^precision - V)) per symbol, the remainder
    (a few counts, either sign) added to the most probable symbol."""
    v = log_probs.shape[-1]
    free = (1 << precision) - v
    p = jnp.exp(jax.nn.log_softmax(log_probs.astype(jnp.float32), axis=-1))
    f = 1 + jnp.clip(jnp.floor(p * free), 0, free).astype(jnp.int32)
    rest = (1 << precision) - jnp.sum(f, axis=-1, keepdims=True)  # [..., 1]
    top = jax.nn.one_hot(jnp.argmax(f, axis=-1), v, dtype=jnp.int32)
    return f + rest * top


def coder_weights(freqs: np.ndarray) -> np.ndarray:
    """int frequencies [..., V] -> the float64 weights constriction's `Categorical(
    perfect=False)` quantizes back to exactly these frequencies (see the module docstring)."""
    return np.asarray(freqs, np.float64) - 1.0


def code_length_bits(freqs: np.ndarray, symbols: np.ndarray,
                     precision: int = PRECISION) -> float:
    """-sum log2(f[symbol] / 2^precision): what the tables cost the symbols (an ideal coder)."""
    f = np.take_along_axis(np.asarray(freqs), np.asarray(symbols)[..., None], axis=-1)
    return float(np.sum(precision - np.log2(f.astype(np.float64))))
