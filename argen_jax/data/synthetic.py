"""A synthetic ImageNet-layout image folder cut from the offline photos (`data/patches.py`):
`make_synthetic_folder` writes OUT/train/<class>/*.JPEG (and OUT/val/) that
`data/image_folder.py` reads like ImageNet, for tests and CPU runs
(experiments/data/make_image_folder.py is its command line)."""
from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from argen_jax.data import patches
from argen_jax.errors import ConfigError


def class_name(c: int) -> str:
    """Class folder names that sort like ImageNet's WordNet ids."""
    return f"n{c:08d}"


def _synthetic_image(photo: np.ndarray, rng: np.random.Generator, min_side: int,
                     max_side: int) -> Image.Image:
    h, w, _ = photo.shape
    ch = int(rng.integers(max(8, h * 2 // 5), h + 1))
    cw = int(rng.integers(max(8, w * 2 // 5), w + 1))
    top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
    out_w, out_h = (int(v) for v in rng.integers(min_side, max_side + 1, size=2))
    im = Image.fromarray(photo[top:top + ch, left:left + cw])
    im = im.resize((out_w, out_h), Image.BICUBIC)
    return im.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else im


def make_synthetic_folder(out: str, classes: int, per_class: int, val_per_class: int = 0,
                          seed: int = 0, min_side: int = 200, max_side: int = 500,
                          quality: int = 90, progress: bool = False,
                          photos: Sequence[str] | None = None) -> dict:
    """Write `out/train/<class>/*.JPEG` (and `out/val/<class>/` if val_per_class) cut from real
    photos: class c uses photo c mod len(photos); every image is a random window of its
    photo (40-100% of each side), resized to a random w x h in [min_side, max_side] and
    flipped with probability 0.5. Each file is a pure function of (seed, split, class,
    index): re-running writes the same bytes. Returns {'train': n, 'val': m}."""
    if classes < 1 or per_class < 1 or val_per_class < 0:
        raise ConfigError(f"need classes >= 1, per_class >= 1, val_per_class >= 0; got "
                          f"{classes}, {per_class}, {val_per_class}")
    if not 8 <= min_side <= max_side:
        raise ConfigError(f"need 8 <= min_side <= max_side, got {min_side}, {max_side}")
    names = tuple(photos) if photos else patches.TRAIN_PHOTOS + patches.TEST_PHOTOS
    loaded = [patches.load_photo(n) for n in names]
    counts = {"train": per_class, "val": val_per_class}
    total = classes * (per_class + val_per_class)
    with tqdm(total=total, desc=f"writing {out}", unit="img", disable=not progress) as bar:
        for split_id, split in enumerate(("train", "val")):
            for c in range(classes):
                if not counts[split]:
                    continue
                d = os.path.join(out, split, class_name(c))
                os.makedirs(d, exist_ok=True)
                for i in range(counts[split]):
                    rng = np.random.default_rng([seed, split_id, c, i])
                    im = _synthetic_image(loaded[c % len(loaded)], rng, min_side, max_side)
                    im.save(os.path.join(d, f"{class_name(c)}_{i:06d}.JPEG"), "JPEG",
                            quality=quality)
                    bar.update(1)
    return {split: classes * n for split, n in counts.items()}
