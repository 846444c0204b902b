"""Lossless compression with a trained model.

    python -m argen_jax.codec encode --workdir=RUN IN... --out=DIR [--batch_size=16] [--label=K]
    python -m argen_jax.codec decode --workdir=RUN IN.ajc... --out=DIR

encode: PNG / idx images, WAV audio (at the model's rate; coded as its mu-law codes) or .npy
token maps -> DIR/NAME.ajc, one file per image / utterance / map, coded `batch_size` at a time
(one model step per sub-pixel, pixel, sample or token: raster decoding is slow on a CPU).
decode: .ajc files of the same run -> DIR/NAME.{png,wav,npy}. A file of another model, or a
damaged one, is refused with a one-line error.
"""
import os
import sys

from absl import app, flags

from argen_jax import xla_env

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
xla_env.apply()  # the launcher's CPU XLA flags, before JAX starts (argen_jax/xla_env.py)

_WORKDIR = flags.DEFINE_string("workdir", None, "The trained run whose model codes the data.")
_OUT = flags.DEFINE_string("out", None, "Output folder.")
_BATCH = flags.DEFINE_integer("batch_size", 16, "Files coded in parallel (encode).")
_LABEL = flags.DEFINE_integer("label", None, "Class / speaker id of every input, for "
                              "conditional models (encode; stored in each file).")
_PIXEL_CACHE = flags.DEFINE_bool(
    "pixel_cache", True, "Pixel models: the cached steps (fast). --nopixel_cache: the full pass "
    "per step, which files written before the cached steps existed need (docs/design.md 21).")
flags.mark_flags_as_required(["workdir", "out"])

MODES = ("encode", "decode")


def encode(codec, paths: list[str], out: str) -> None:
    import numpy as np

    from argen_jax.codec import files

    spec = codec.family.spec
    inputs = files.read_inputs(paths, codec.kind, spec.sample_rate)
    labels = None if _LABEL.value is None else [_LABEL.value] * len(inputs)
    encoded = codec.encode([x for _, x in inputs], labels, _BATCH.value, progress=True)
    os.makedirs(out, exist_ok=True)
    for (name, _), e in zip(inputs, encoded, strict=True):
        with open(os.path.join(out, name + files.SUFFIX), "wb") as f:
            f.write(e.data)
    dims = sum(int(np.prod(x.shape)) for _, x in inputs)
    size = sum(len(e.data) for e in encoded)
    print(f"{len(inputs)} files -> {out}: {size} bytes, {8 * size / dims:.4f} bits/dim "
          f"(headers {sum(e.header_bytes for e in encoded)} bytes)")


def decode(codec, paths: list[str], out: str) -> None:
    from argen_jax.codec import files

    blobs = []
    for p in paths:
        if not os.path.isfile(p):
            from argen_jax.errors import DataError

            raise DataError(f"input {p!r} not found")
        with open(p, "rb") as f:
            blobs.append(f.read())
    decoded = codec.decode(blobs, paths, progress=True)
    for p, (x, _) in zip(paths, decoded, strict=True):
        files.write_output(out, files.stem(p), codec.kind, x, codec.family.spec.sample_rate)
    print(f"{len(paths)} files -> {out}")


def main(argv):
    if len(argv) < 3 or argv[1] not in MODES:
        raise app.UsageError("usage: python -m argen_jax.codec encode|decode --workdir=RUN "
                             "IN... --out=DIR")
    from argen_jax.codec import Codec
    from argen_jax.errors import UserError

    try:
        codec = Codec.load(os.path.expanduser(_WORKDIR.value), _PIXEL_CACHE.value)
        (encode if argv[1] == "encode" else decode)(codec, argv[2:], _OUT.value)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
