"""Input throughput: our grain loader against torchvision's ImageFolder + DataLoader.

Both sides read the same ImageNet-layout folder of JPEGs and apply the same per-image work,
LlamaGen's training transform (`ImageTransform('random_crop', flip=True)`: BOX/BICUBIC resize
of the short side to a random size in [res, res / 0.8], random crop, random horizontal flip)
at `--resolution`, with the same number of worker processes, and deliver uint8 batches
[B, res, res, 3] (torch: a stacked uint8 tensor). The torch side calls the very same
transform object on the image torchvision's ImageFolder loaded, seeded from torch's RNG, so
the two differ only in the loader (file listing, image loading, workers, batching, transfer
to the main process). Each side first reads `--warmup` batches (worker start-up, file cache),
then `--batches` timed batches; the sides alternate (taking turns to go first) for `--rounds`
rounds; the median and best images/s of each are reported. Prints one JSON line.

    python -m experiments.data.make_image_folder --out=/tmp/in20k --classes=100 --per_class=200
    python -m experiments.benchmarks.speed.input_pipeline --folder=/tmp/in20k --workers=2
(needs torchvision: in a venv of its own, pip install -e '.[bench-vision]')
"""
from __future__ import annotations

import json
import os
import sys
import warnings

import numpy as np
from absl import flags

from argen_jax.data.grain_loader import GrainLoader
from argen_jax.data.image_folder import ImageFolderSource, ImageTransform
from experiments.benchmarks import common

_FOLDER = flags.DEFINE_string("folder", None, "ImageNet-layout folder (train/CLASS/*.jpeg).",
                              required=True)
_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Output side.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.")
_WORKERS = flags.DEFINE_integer("workers", 2, "Worker processes (both sides).")
_BATCHES = flags.DEFINE_integer("batches", 20, "Timed batches per side per round.")
_WARMUP = flags.DEFINE_integer("warmup", 3, "Untimed batches first (worker start-up).")
_ROUNDS = flags.DEFINE_integer("rounds", 4, "Rounds (the sides take turns to go first).")


class TorchTransform:
    """Our ImageTransform on a PIL image, seeded per call from torch's (per-worker) RNG."""

    def __init__(self, resolution: int):
        self.transform = ImageTransform(resolution, "random_crop", flip=True)

    def __call__(self, image):
        import torch

        seed = int(torch.randint(0, 2**62, ()).item())
        with warnings.catch_warnings():  # read-only array: the batch collation copies it
            warnings.simplefilter("ignore", UserWarning)
            return torch.from_numpy(self.transform((image, 0), seed)["image"])


def time_loader(next_batch, batches: int, warmup: int, batch_size: int) -> float:
    """Images/s over `batches` batches after `warmup` untimed ones."""
    common.times(next_batch, repeats=0, warmup=warmup)
    return batches * batch_size / sum(common.times(next_batch, repeats=batches, warmup=0))


def ours(folder, res, batch_size, workers, batches, warmup):
    source = ImageFolderSource(folder, "train")
    loader = GrainLoader(source, ImageTransform(res, "random_crop", flip=True), batch_size,
                         seed=0, worker_count=workers, prefetch=2)
    step = iter(range(10**9))
    try:
        return time_loader(lambda: loader.batch(next(step)), batches, warmup, batch_size)
    finally:
        loader.close()


def torch_side(folder, res, batch_size, workers, batches, warmup):
    import torch
    import torchvision

    ds = torchvision.datasets.ImageFolder(os.path.join(folder, "train"),
                                          transform=TorchTransform(res))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                     num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0,
                                     prefetch_factor=2 if workers else None)
    it = iter(dl)
    return time_loader(lambda: next(it), batches, warmup, batch_size)


def main(argv):
    del argv
    import torch
    import torchvision

    torch.set_num_threads(1)
    n = len(ImageFolderSource(_FOLDER.value, "train"))
    res = {"ours": [], "torch": []}
    batch_size = _BATCH_SIZE.value
    args = (_FOLDER.value, _RESOLUTION.value, batch_size, _WORKERS.value, _BATCHES.value,
            _WARMUP.value)
    sides = {"ours": ours, "torch": torch_side}
    for r in range(_ROUNDS.value):  # alternate which side goes first
        for name in (("ours", "torch") if r % 2 == 0 else ("torch", "ours")):
            res[name].append(sides[name](*args))
        print(json.dumps({k: round(v[-1], 1) for k, v in res.items()}), file=sys.stderr)
    best = {k: max(v) for k, v in res.items()}
    median = {k: float(np.median(v)) for k, v in res.items()}
    common.emit({
        "benchmark": "input_pipeline", "images_in_folder": n, "resolution": _RESOLUTION.value,
        "batch_size": batch_size, "workers": _WORKERS.value,
        "timed_images": _BATCHES.value * batch_size,
        "transform": "LlamaGen random_crop_arr + flip (the same ImageTransform both sides)",
        "ours_median_images_per_s": round(median["ours"], 1),
        "torch_median_images_per_s": round(median["torch"], 1),
        "median_ours_over_torch": round(median["ours"] / median["torch"], 3),
        "best_ours_over_torch": round(best["ours"] / best["torch"], 3),
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in res.items()},
        "torch": torch.__version__, "torchvision": torchvision.__version__})


if __name__ == "__main__":
    common.run(main)
