"""mu-law companding (ITU-T G.711 style, continuous form) and 8-bit quantisation.

    compress(x) = sign(x) * ln(1 + mu |x|) / ln(1 + mu),   x in [-1, 1]
    expand(y)   = sign(y) * ((1 + mu)^|y| - 1) / mu          (exact inverse of compress)

WaveNet models audio as `levels` = mu + 1 = 256 mu-law codes: `quantize` maps amplitudes in
[-1, 1] to integer codes in [0, levels) (rounding the companded value to the nearest of
`levels` evenly spaced points), `dequantize` maps a code back to the amplitude of its point.
Both work on numpy arrays and jax arrays alike (the array module is taken from the input).
"""
from __future__ import annotations

import jax.numpy as jnp
import numpy as np

MU = 255


def _xp(x):
    return np if isinstance(x, np.ndarray | np.generic | float | int) else jnp


def compress(x, mu: int = MU):
    """Amplitude in [-1, 1] -> companded value in [-1, 1]."""
    xp = _xp(x)
    x = xp.clip(x, -1.0, 1.0)
    return xp.sign(x) * xp.log1p(mu * xp.abs(x)) / np.log1p(mu)


def expand(y, mu: int = MU):
    """Companded value in [-1, 1] -> amplitude in [-1, 1] (inverse of `compress`)."""
    xp = _xp(y)
    return xp.sign(y) * xp.expm1(xp.abs(y) * np.log1p(mu)) / mu


def quantize(x, mu: int = MU):
    """Amplitude in [-1, 1] -> integer code in [0, mu] (int32)."""
    xp = _xp(x)
    y = compress(x, mu)
    return xp.clip(xp.round((y + 1.0) * (mu / 2.0)), 0, mu).astype(xp.int32)


def dequantize(code, mu: int = MU):
    """Integer code in [0, mu] -> amplitude in [-1, 1] at the code's companded grid point."""
    xp = _xp(code)
    y = xp.asarray(code).astype(xp.float32) * (2.0 / mu) - 1.0
    return expand(y, mu)


def silence_code(mu: int = MU) -> int:
    """The code of amplitude 0 (the padding value of audio)."""
    return int(quantize(np.zeros((), np.float32), mu))
