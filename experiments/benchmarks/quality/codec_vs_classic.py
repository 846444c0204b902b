"""Real files written by a trained model (argen_jax/codec) against PNG, WebP, JPEG XL and FLAC.

One JSON line, a row per data set (each also on stderr as it is done). Images: the first
`--limit` test images of each `--image_run` (Fashion-MNIST, the held-out photo patches, ...),
each coded to its own file by the model and by every classical codec at best-effort settings
(experiments/benchmarks/classic_codecs.py); bits/dim = 8 * total bytes / (images * H * W * C),
headers included on every side:

    codec_file_bpd    the model's real .ajc files (header + range-coder stream)
    codec_stream_bpd  the streams alone (what the header costs is the difference)
    model_nll_bpd     the model's NLL of the same images (the family's loss): the floor
    png_bpd, webp_bpd, jxl_bpd

Every file is decoded again and compared bit for bit (`decoded_exact`); encode / decode
images per second are measured on the same run (batch `--batch_size`, after a warm-up batch
that compiles the programs).

Speech (`--speech_run`, a WaveNet trained without local conditioning, e.g.
experiments/wavenet/cpu.py:nolocal): every held-out utterance of its data folder. The model
codes 8-bit mu-law samples, so the fair comparison is on that same signal: FLAC gets the
mu-law codes as 8-bit PCM and as their 16-bit expansion (the same 256 values; FLAC's linear
prediction prefers the expanded form) and the better of the two is `flac_mulaw_bits`. FLAC on
the original 16-bit samples (resampled to the model's rate, the signal mu-law was taken from)
is `flac_16bit_bits`, for reference only: the model does not code those 8 extra bits. All in
bits per sample; `realtime_encode` / `realtime_decode` are audio seconds per second.

    python -m experiments.benchmarks.quality.codec_vs_classic --image_run=runs/ppp_fmnist \
        --image_run=runs/ppp_patches --speech_run=runs/wavenet_nolocal --limit=200
"""
import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax import registry
from argen_jax.codec import Codec
from argen_jax.data import audio
from argen_jax.errors import UserError
from experiments.benchmarks import common
from experiments.benchmarks.classic_codecs import IMAGE_CODECS, encoded_bytes, flac_bytes

_IMAGE_RUNS = flags.DEFINE_multi_string("image_run", [], "Trained image-model workdirs.")
_SPEECH_RUN = flags.DEFINE_string("speech_run", "", "A WaveNet workdir (no local conditioning).")
_LIMIT = flags.DEFINE_integer("limit", 100, "Test images per image data set (0: all).")
_UTTERANCES = flags.DEFINE_integer("utterances", 0, "Held-out utterances (0: all).")
_BATCH = flags.DEFINE_integer("batch_size", 50, "Files coded in parallel.")


def _round(d: dict) -> dict:
    return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in d.items()}


def _nll_bits(codec, batch: dict) -> float:
    loss = jax.jit(lambda p, b: codec.family.loss(p, b, jax.random.PRNGKey(0), False)[1])
    return float(loss(codec.params, jax.tree.map(jnp.asarray, batch))["nll_sum"]) / np.log(2)


def _timed_round_trip(codec, data, labels) -> dict:
    """Encode + decode (after a warm-up batch that compiles); checks every file."""
    b = min(_BATCH.value, len(data))
    codec.decode([e.data for e in codec.encode(data[:b], labels and labels[:b], b)])
    with common.Stopwatch() as encoding:
        enc = codec.encode(data, labels, b, progress=True)
    with common.Stopwatch() as decoding:
        dec = codec.decode([e.data for e in enc], progress=True)
    exact = all(np.array_equal(x, y) for x, (y, _) in zip(data, dec, strict=True))
    return {"files": enc, "encode_s": encoding.seconds, "decode_s": decoding.seconds,
            "decoded_exact": exact}


def image_line(workdir: str) -> dict:
    codec = Codec.load(workdir)
    data = registry.build_data(codec.family.config)
    images, labels = [], []
    for batch in data.eval_batches():
        keep = batch["mask"] > 0
        images += list(batch["image"][keep].astype(np.uint8))
        labels += list(batch["label"][keep]) if "label" in batch else [None] * int(keep.sum())
    n = _LIMIT.value or len(images)
    images, labels = images[:n], labels[:n]
    labels = labels if codec.num_labels else None
    dims = len(images) * images[0].size
    batch = {"image": np.stack(images), "mask": np.ones(len(images), np.float32)}
    if labels is not None:
        batch["label"] = np.asarray(labels, np.int32)
    rt = _timed_round_trip(codec, images, labels)
    files = rt["files"]
    out = {"data": os.path.basename(os.path.normpath(workdir)), "model": codec.family.config.
           model.name, "step": codec.step, "images": len(images), "shape": list(images[0].shape),
           "model_nll_bpd": _nll_bits(codec, batch) / dims,
           "codec_file_bpd": 8.0 * sum(len(e.data) for e in files) / dims,
           "codec_stream_bpd": 8.0 * sum(len(e.data) - e.header_bytes for e in files) / dims,
           "header_bytes_per_file": files[0].header_bytes}
    for c in IMAGE_CODECS:
        sizes = [encoded_bytes(x, c) for x in images]
        out[f"{c}_bpd"] = None if None in sizes else 8.0 * sum(sizes) / dims
    out.update(decoded_exact=rt["decoded_exact"],
               encode_images_per_s=len(images) / rt["encode_s"],
               decode_images_per_s=len(images) / rt["decode_s"], batch_size=_BATCH.value)
    return out


def speech_line(workdir: str) -> dict:
    try:
        import soundfile  # noqa: F401
    except ImportError:
        raise SystemExit("FLAC needs soundfile: pip install -e '.[bench]'") from None
    codec = Codec.load(workdir)
    data = registry.build_data(codec.family.config)
    test, rate = data.test_set, codec.family.spec.sample_rate
    n = _UTTERANCES.value or len(test)
    codes = [np.asarray(c, np.uint8) for c in test.codes[:n]]
    labels = [int(s) for s in test.speakers[:n]] if codec.num_labels else None
    samples = sum(len(c) for c in codes)
    nll = 0.0
    for i, c in enumerate(codes):  # each utterance from t = 0, as the codec codes it
        batch = {"audio": c[None], "mask": np.ones(1, np.float32)}
        if labels is not None:
            batch["label"] = np.asarray(labels[i:i + 1], np.int32)
        nll += _nll_bits(codec, batch)
    rt = _timed_round_trip(codec, codes, labels)
    files = rt["files"]
    flac8 = flac16_mulaw = flac16 = 0
    for c, name in zip(codes, test.names[:n], strict=True):
        flac8 += flac_bytes((c.astype(np.int16) - 128).astype(np.int8), rate)
        expanded = np.round(audio.mulaw.dequantize(c.astype(np.int32)) * 32767)
        flac16_mulaw += flac_bytes(expanded.astype(np.int16), rate)
        x, r = audio.read_wav(os.path.join(codec.family.config.data.path, name))
        x = audio.resample(x, r, rate)[:len(c)]
        x = np.pad(x, (0, len(c) - len(x)))  # the same frame padding as the codes
        flac16 += flac_bytes(np.round(np.clip(x, -1, 1) * 32767).astype(np.int16), rate)
    seconds = samples / rate
    return _round({
        "data": "speech_" + os.path.basename(os.path.normpath(workdir)), "step": codec.step,
        "utterances": n, "seconds": seconds, "sample_rate": rate,
        "model_nll_bits": nll / samples,
        "codec_file_bits": 8.0 * sum(len(e.data) for e in files) / samples,
        "codec_stream_bits": 8.0 * sum(len(e.data) - e.header_bytes for e in files) / samples,
        "flac_mulaw_8bit_pcm_bits": 8.0 * flac8 / samples,
        "flac_mulaw_16bit_expanded_bits": 8.0 * flac16_mulaw / samples,
        "flac_mulaw_bits": 8.0 * min(flac8, flac16_mulaw) / samples,
        "flac_16bit_bits": 8.0 * flac16 / samples,
        "decoded_exact": rt["decoded_exact"],
        "realtime_encode": seconds / rt["encode_s"], "realtime_decode": seconds / rt["decode_s"],
        "batch_size": _BATCH.value})


def main(argv):
    del argv
    rows = []
    try:
        for run in _IMAGE_RUNS.value:
            rows.append(_round(image_line(run)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)  # progress
        if _SPEECH_RUN.value:
            rows.append(speech_line(_SPEECH_RUN.value))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    common.emit({"benchmark": "codec_vs_classic", "rows": rows})


if __name__ == "__main__":
    common.run(main)
