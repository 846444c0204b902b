"""Input throughput: our grain loader against torchvision's ImageFolder + DataLoader.

Both sides read the same ImageNet-layout folder of JPEGs and apply the same per-image work,
LlamaGen's training transform (`preprocess.random_crop_arr`: BOX/BICUBIC resize of the short
side to a random size in [res, res / 0.8], random crop; then a random horizontal flip) at
`--resolution`, with the same number of worker processes, and deliver uint8 batches
[B, res, res, 3] (torch: a stacked uint8 tensor). Each side first reads `--warmup` batches
(worker start-up, file cache), then `--batches` timed batches; the sides alternate for
`--rounds` rounds and the best images/s of each is reported. Prints one JSON line.

    python experiments/data/make_image_folder.py --out=/tmp/in20k --classes=100 --per_class=200
    python experiments/benchmarks/input_pipeline.py --folder=/tmp/in20k --workers=2
(needs the `bench` extra: pip install -e '.[bench]', torch and torchvision pinned)
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax.data import preprocess  # noqa: E402
from argen_jax.data.grain_loader import GrainLoader  # noqa: E402
from argen_jax.data.image_folder import ImageFolderSource, ImageTransform  # noqa: E402


class TorchTransform:
    """The same work as ImageTransform('random_crop', flip=True), on torch's RNG-free path:
    a numpy Generator seeded per call from torch's worker seed, so both sides do equal work."""

    def __init__(self, resolution: int):
        self.resolution = resolution

    def __call__(self, image):
        import torch

        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        arr = preprocess.random_crop_arr(image, self.resolution, rng)
        return torch.from_numpy(np.ascontiguousarray(preprocess.random_flip(arr, rng)))


def time_loader(next_batch, batches: int, warmup: int, batch_size: int) -> float:
    for _ in range(warmup):
        next_batch()
    t0 = time.perf_counter()
    for _ in range(batches):
        next_batch()
    return batches * batch_size / (time.perf_counter() - t0)


def ours(folder, res, batch_size, workers, batches, warmup):
    source = ImageFolderSource(folder, "train")
    loader = GrainLoader(source, ImageTransform(res, "random_crop", flip=True), batch_size,
                         seed=0, worker_count=workers, prefetch=2)
    step = iter(range(10**9))
    try:
        return time_loader(lambda: loader.batch(next(step)), batches, warmup, batch_size)
    finally:
        loader.close()


class TorchImageFolder:
    """torchvision.datasets.ImageFolder's behaviour (classes = sorted sub-folders, files
    sorted, PIL open + convert('RGB'), then the transform), for when torchvision's wheel does
    not import against the installed torch (on this machine the CPU build of torch 2.13.0
    and torchvision 0.28.0 from PyPI fail with 'operator torchvision::nms does not exist')."""

    EXTS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")

    def __init__(self, root: str, transform):
        self.transform = transform
        classes = sorted(e.name for e in os.scandir(root) if e.is_dir())
        self.samples = [(os.path.join(root, c, f), i) for i, c in enumerate(classes)
                        for f in sorted(os.listdir(os.path.join(root, c)))
                        if f.lower().endswith(self.EXTS)]

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        from PIL import Image

        path, label = self.samples[i]
        with open(path, "rb") as f:
            image = Image.open(f).convert("RGB")
        return self.transform(image), label


def torch_image_folder(root: str, transform):
    """(dataset, which one): torchvision's ImageFolder when torchvision imports, else the
    equivalent above."""
    try:
        import torchvision

        return torchvision.datasets.ImageFolder(root, transform=transform), "torchvision"
    except (ImportError, RuntimeError):
        return TorchImageFolder(root, transform), "same-behaviour stand-in (torchvision broken)"


def torch_side(folder, res, batch_size, workers, batches, warmup):
    import torch

    ds, _ = torch_image_folder(os.path.join(folder, "train"), TorchTransform(res))
    dl = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True,
                                     num_workers=workers, drop_last=True,
                                     persistent_workers=workers > 0,
                                     prefetch_factor=2 if workers else None)
    it = iter(dl)
    return time_loader(lambda: next(it), batches, warmup, batch_size)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folder", required=True)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    import torch

    _, which = torch_image_folder(os.path.join(a.folder, "train"), None)
    torch.set_num_threads(1)
    n = len(ImageFolderSource(a.folder, "train"))
    res = {"ours": [], "torch": []}
    args = (a.folder, a.resolution, a.batch_size, a.workers, a.batches, a.warmup)
    for _ in range(a.rounds):
        res["ours"].append(ours(*args))
        res["torch"].append(torch_side(*args))
        print(json.dumps({k: round(v[-1], 1) for k, v in res.items()}), file=sys.stderr)
    best = {k: max(v) for k, v in res.items()}
    print(json.dumps({
        "benchmark": "input_pipeline", "images_in_folder": n, "resolution": a.resolution,
        "batch_size": a.batch_size, "workers": a.workers, "timed_images": a.batches * a.batch_size,
        "transform": "LlamaGen random_crop_arr + flip", "ours_images_per_s": round(best["ours"], 1),
        "torch_images_per_s": round(best["torch"], 1),
        "ours_over_torch": round(best["ours"] / best["torch"], 2),
        "all_rounds": {k: [round(x, 1) for x in v] for k, v in res.items()},
        "torch": torch.__version__, "torch_dataset": which}))


if __name__ == "__main__":
    main()
