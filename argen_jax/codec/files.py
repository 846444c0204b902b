"""What the command line reads and writes: PNG and idx images, WAV audio, .npy token maps.

Inputs become arrays of the model's levels; decoded arrays become files again:

    image   PNG (8-bit grey or RGB) or an idx file (MNIST layout, .gz too: every image of it)
            -> PNG
    audio   WAV at the model's sample rate -> its mu-law codes (the model's alphabet) -> a
            16-bit WAV of those codes. The codec is lossless on the mu-law codes: a WAV with
            more resolution (16-bit PCM) loses what mu-law drops, once, when it is read (the
            decoded WAV reads back to the same codes).
    tokens  .npy of one token map [L] or several [N, L] -> .npy [L]
"""
from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from argen_jax.errors import DataError
from argen_jax.heads import mulaw

SUFFIX = ".ajc"


def stem(path: str) -> str:
    name = os.path.basename(path)
    for ext in (".gz", ".png", ".wav", ".npy", SUFFIX):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
    return name


def _read_png(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "RGB"):
                raise DataError(f"{path}: PNG mode {im.mode!r}; the codec reads 8-bit grey (L) "
                                "or RGB")
            x = np.asarray(im)
    except OSError as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    return x[..., None] if x.ndim == 2 else x


def _read_idx(path: str) -> np.ndarray:
    from argen_jax.data.images import read_idx

    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            x = read_idx(f)
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: could not be read as an idx file ({e})") from None
    if x.ndim != 3:
        raise DataError(f"{path}: an idx file of images is [N, H, W], this one is {x.shape}")
    return x[..., None]


def read_inputs(paths: list[str], kind: str, sample_rate: int = 0) -> list[tuple[str, np.ndarray]]:
    """[(name, array)] of the inputs of a model of data `kind` (one entry per image of an idx
    file, named STEM_00000, ...)."""
    out = []
    for path in paths:
        if not os.path.isfile(path):
            raise DataError(f"input {path!r} not found")
        low = path.lower()
        if kind == "image" and low.endswith(".png"):
            out.append((stem(path), _read_png(path)))
        elif kind == "image":
            out += [(f"{stem(path)}_{k:05d}", x) for k, x in enumerate(_read_idx(path))]
        elif kind == "audio" and low.endswith(".wav"):
            from argen_jax.data.audio import read_wav

            x, rate = read_wav(path)
            if rate != sample_rate:
                raise DataError(f"{path}: {rate} Hz, the model codes {sample_rate} Hz audio "
                                "(resample it first: resampling is not lossless)")
            out.append((stem(path), mulaw.quantize(x).astype(np.uint8)))
        elif kind == "tokens" and low.endswith(".npy"):
            x = np.load(path)
            rows = x[None] if x.ndim == 1 else x
            out += ([(stem(path), rows[0])] if x.ndim == 1 else
                    [(f"{stem(path)}_{k:05d}", r) for k, r in enumerate(rows)])
        else:
            raise DataError(f"{path}: a {kind} model reads "
                            f"{ {'image': 'PNG or idx', 'audio': 'WAV', 'tokens': '.npy'}[kind]}"
                            " files")
    return out


def write_output(out_dir: str, name: str, kind: str, data: np.ndarray,
                 sample_rate: int = 0) -> str:
    """Writes decoded data as OUT/NAME.{png,wav,npy}; returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    stem = os.path.join(out_dir, name)
    if kind == "image":
        from PIL import Image

        x = np.asarray(data, np.uint8)
        Image.fromarray(x[..., 0] if x.shape[-1] == 1 else x).save(stem + ".png")
        return stem + ".png"
    if kind == "audio":
        from argen_jax.data.audio import write_wav

        return write_wav(stem + ".wav", mulaw.dequantize(np.asarray(data, np.int32)),
                         sample_rate)
    np.save(stem + ".npy", np.asarray(data))
    return stem + ".npy"
