"""Lossless file sizes of classical codecs on one image or one utterance, best-effort
settings, shared by the codec benchmarks (pixelcnnpp_codecs.py, codec_vs_classic.py).

Images (uint8 [H, W, C], C in {1, 3}): PNG (Pillow, optimize, compress_level=9), WebP
lossless (Pillow, quality=100, method=6), JPEG XL lossless (imagecodecs, effort 9; None when
imagecodecs is not installed: `pip install -e '.[bench]'`). Audio: FLAC at compression level 8
(soundfile's compression_level=1.0) of 8- or 16-bit PCM.
"""
from __future__ import annotations

import io

import numpy as np

IMAGE_CODECS = ("png", "webp", "jxl")


def encoded_bytes(img: np.ndarray, codec: str) -> int | None:
    """img uint8 [H, W, C] -> bytes of the lossless file (None: the codec is unavailable)."""
    img = np.ascontiguousarray(img[..., 0] if img.shape[-1] == 1 else img)
    if codec == "jxl":
        try:
            import imagecodecs
        except ImportError:
            return None
        return len(imagecodecs.jpegxl_encode(img, lossless=True, effort=9))
    from PIL import Image

    buf = io.BytesIO()
    if codec == "png":
        Image.fromarray(img).save(buf, format="PNG", optimize=True, compress_level=9)
    elif codec == "webp":
        Image.fromarray(img).save(buf, format="WEBP", lossless=True, quality=100, method=6)
    else:
        raise ValueError(codec)
    return buf.tell()


def flac_bytes(pcm: np.ndarray, sample_rate: int) -> int | None:
    """pcm int8 or int16 [T] -> bytes of a FLAC file at the best compression level (None
    without soundfile)."""
    try:
        import soundfile as sf
    except ImportError:
        return None
    subtype = {np.dtype(np.int8): "PCM_S8", np.dtype(np.int16): "PCM_16"}[pcm.dtype]
    data = pcm.astype(np.int16) * (256 if pcm.dtype == np.int8 else 1)  # full-scale int16
    buf = io.BytesIO()
    sf.write(buf, data, sample_rate, format="FLAC", subtype=subtype, compression_level=1.0)
    return len(buf.getvalue())  # soundfile may leave the position elsewhere
