"""Lossless code lengths of PNG and WebP on PixelCNN++'s test images, next to the model's.

A likelihood model is a lossless code (arithmetic coding reaches its NLL within a few bits per
image), so its test bits/dim compare directly with the sizes of lossless codecs on the same
images. Pillow, best compression: PNG `optimize=True, compress_level=9`; WebP
`lossless=True, quality=100, method=6`. Two numbers per codec:
  per_image  every test image its own file (headers included: what storing them costs)
  mosaic     all test images tiled into one image (headers amortised: the codec's best case)

    python -m experiments.benchmarks.quality.pixelcnnpp_codecs \
        --config=experiments/pixelcnnpp/fashion_mnist.py:cpu \
        --config.data.path=/work/shared/data/fashion_mnist --workdir=/tmp/ppp/fmnist

Prints one JSON line; with --workdir, the model's latest `eval/bpd` from its metrics.jsonl
(evaluated on exactly these images by the training loop) is printed alongside.
"""
import json
import math
import os

import numpy as np
from absl import flags

from argen_jax import registry
from experiments.benchmarks import common
from experiments.benchmarks.classic_codecs import encoded_bytes

_CONFIG = common.config_flag(None, "PixelCNN++ experiment config.")
_WORKDIR = flags.DEFINE_string("workdir", "", "Trained run whose eval/bpd to show (optional).")
flags.mark_flags_as_required(["config"])


def mosaic(images: np.ndarray) -> np.ndarray:
    n, h, w, c = images.shape
    cols = int(math.ceil(math.sqrt(n)))
    rows = int(math.ceil(n / cols))
    out = np.zeros((rows * h, cols * w, c), np.uint8)
    for i in range(n):
        r, q = divmod(i, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
    return out


def codec_bpd(images: np.ndarray) -> dict:
    dims = images.size
    res = {}
    for codec in ("png", "webp"):
        per = sum(encoded_bytes(x, codec) for x in images)
        res[f"{codec}_per_image_bpd"] = 8.0 * per / dims
        res[f"{codec}_mosaic_bpd"] = 8.0 * encoded_bytes(mosaic(images), codec) / dims
    return res


def model_bpd(workdir: str):
    path = os.path.join(workdir, "metrics.jsonl")
    if not workdir or not os.path.exists(path):
        return None
    best = None
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            if "eval/bpd" in row:
                best = {"model_bpd": row["eval/bpd"], "model_step": row.get("step")}
    return best


def main(argv):
    del argv
    config = _CONFIG.value
    data = registry.build_data(config)
    if data.spec.levels != 256:
        raise SystemExit("codec comparison needs 8-bit data")
    images = np.concatenate([b["image"][b["mask"] > 0] for b in data.eval_batches()])
    out = {"images": int(len(images)), "shape": list(images.shape[1:]), **codec_bpd(images)}
    m = model_bpd(_WORKDIR.value)
    if m:
        out.update(m)
    common.emit({k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()})


if __name__ == "__main__":
    common.run(main)
