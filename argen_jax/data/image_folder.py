"""Folders of image files in the ImageNet layout: a lazy source, its settings and builder, and
a synthetic folder made offline for tests and benchmarks.

Layout (`data.path`):
    <path>/train/<class>/*.{JPEG,jpg,jpeg,png,webp}    classes = sub-folder names, sorted;
                                                       label = position in that order
    <path>/val/<class>/...                              the same layout (classes as in train), or
    <path>/val/*.JPEG + a labels file                   flat files: `data.val_labels`, else
                                                       val/labels.txt, val_labels.txt or
                                                       LOC_val_solution.csv (Kaggle's ImageNet)
A labels file has one `<file name> <label>` per line (whitespace or comma between; the name
with or without its extension; the label a class folder name such as n01440764 or an integer
class index; for LOC_val_solution.csv the first word of the PredictionString). Lines starting
with '#' and a header line (`ImageId,...` / `filename ...`) are skipped.

`ImageFolderSource` indexes file paths only (one scan of the folders; nothing is decoded until
`source[i]`), so it works for ImageNet's 1.28M files in about 50 MB. `build_image_folder_data`
(the future `data.kind='image_folder'`) trains on random crops + flips
(`data/preprocess.py`, LlamaGen's) through the grain loader (`data/grain_loader.py`) and
evaluates on ADM centre crops; with `data.tfds_name` the same pipeline reads a prepared TFDS
dataset record by record instead (`data/tfds_source.py`). `data/synthetic.py` writes an
ImageNet-layout folder of JPEGs of random sizes cut from the photos that ship inside installed
packages (`data/patches.py`), for tests and benchmarks without a download.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator, Sequence

import numpy as np
from absl import logging
from PIL import Image

from argen_jax import config_lib
from argen_jax.data import preprocess
from argen_jax.data.batch import check_batching
from argen_jax.data.grain_loader import GrainLoader
from argen_jax.data.patches import spread_index
from argen_jax.data.pipeline import DataSpec
from argen_jax.data.tfds_source import TfdsImageSource
from argen_jax.errors import ConfigError, DataError

IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png", ".webp")  # matched case-insensitively
LABEL_FILES = ("labels.txt", "{split}_labels.txt", "LOC_val_solution.csv")


def _is_image(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_EXTENSIONS)


def _list_dir(d: str) -> tuple[list[str], list[str]]:
    """(sorted sub-folder names, sorted image file names) of `d`, hidden entries skipped."""
    dirs, files = [], []
    with os.scandir(d) as it:
        for e in it:
            if e.name.startswith("."):
                continue
            if e.is_dir():
                dirs.append(e.name)
            elif _is_image(e.name):
                files.append(e.name)
    return sorted(dirs), sorted(files)


def load_image(path: str) -> Image.Image:
    """The RGB image at `path`, decoded; a DataError naming the file if it cannot be read."""
    try:
        with Image.open(path) as im:
            im.load()  # decoded: the image stays valid after the file closes
            return im if im.mode == "RGB" else im.convert("RGB")
    except FileNotFoundError:
        raise DataError(f"image file {path} is missing (removed after the folder was "
                        "indexed?)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"damaged image {path}: {str(e).splitlines()[0] if str(e) else e!r}"
                        ) from None


def read_labels_file(path: str) -> dict[str, str]:
    """{file name or stem: label string} from a labels file (format in the module doc)."""
    out = {}
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.replace(",", " ", 1).split()
            if not out and parts[0].lower() in ("imageid", "filename", "file", "name", "image"):
                continue  # a header line
            if len(parts) < 2:
                raise DataError(f"{path}, line {n + 1}: expected '<file name> <label>', "
                                f"got {line!r}")
            out[parts[0]] = parts[1]
    return out


class _Paths:
    """Many relative paths in one bytes blob + offsets (ImageNet: ~50 MB, pickles fast)."""

    def __init__(self, paths: Sequence[str]):
        enc = [p.encode("utf-8") for p in paths]
        self.offsets = np.zeros(len(enc) + 1, np.int64)
        np.cumsum([len(b) for b in enc], out=self.offsets[1:])
        self.blob = b"".join(enc)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        return self.blob[self.offsets[i]:self.offsets[i + 1]].decode("utf-8")


class ImageFolderSource:
    """Random access to `<root>/<split>`: `source[i] -> (PIL RGB image, int label)`.

    classes: the class names that define the labels (default: this split's sub-folders,
    sorted); pass the train split's classes for the val split. labels_file: for a flat split
    (absolute, or relative to the split folder or the root; '' = look for the usual names).
    """

    def __init__(self, root: str, split: str = "train", classes: Sequence[str] | None = None,
                 labels_file: str = "", skip_damaged: bool = False):
        self.skip_damaged = skip_damaged  # a damaged file: the next readable one, logged
        root = os.path.expanduser(str(root))
        if not os.path.isdir(root):
            raise DataError(f"image folder {root} does not exist (data.path)")
        self.root, self.split = root, split
        self.dir = os.path.join(root, split)
        if not os.path.isdir(self.dir):
            hint = "" if split == "train" else (
                "; data.val_fraction=0.05 holds out part of the training images instead")
            raise DataError(f"image folder {root} has no {split!r} folder ({self.dir}){hint}")
        subdirs, files = _list_dir(self.dir)
        if subdirs:
            paths, labels = self._scan_classes(subdirs, classes)
        else:
            paths, labels = self._read_flat(files, classes, labels_file)
        if not paths:
            raise DataError(f"no images ({'/'.join(IMAGE_EXTENSIONS)}) under {self.dir}")
        self._paths = _Paths(paths)
        self.labels = np.asarray(labels, np.int32)

    def _scan_classes(self, subdirs, classes):
        if classes is None:
            classes = subdirs
        unknown = sorted(set(subdirs) - set(classes))
        if unknown:
            raise DataError(f"{self.dir} has class folders that the label classes lack: "
                            f"{unknown[:5]}{' ...' if len(unknown) > 5 else ''}")
        self.classes = tuple(classes)
        index = {c: k for k, c in enumerate(self.classes)}
        paths, labels = [], []
        for c in subdirs:
            _, files = _list_dir(os.path.join(self.dir, c))
            paths += [f"{c}/{f}" for f in files]
            labels += [index[c]] * len(files)
        return paths, labels

    def _find_labels_file(self, labels_file: str) -> str:
        if labels_file:
            for cand in (labels_file, os.path.join(self.dir, labels_file),
                         os.path.join(self.root, labels_file)):
                if os.path.isfile(cand):
                    return cand
            raise DataError(f"labels file {labels_file} not found (data.val_labels; looked in "
                            f"{self.dir} and {self.root})")
        for name in LABEL_FILES:
            name = name.format(split=self.split)
            for d in (self.dir, self.root):
                if os.path.isfile(os.path.join(d, name)):
                    return os.path.join(d, name)
        return ""

    def _read_flat(self, files, classes, labels_file):
        if not files:
            return [], []
        path = self._find_labels_file(labels_file)
        if not path:
            raise DataError(f"{self.dir} holds {len(files)} images but no class folders and no "
                            f"labels file (set data.val_labels or add {self.dir}/labels.txt; "
                            "for an unlabelled set put the images in one sub-folder)")
        table = read_labels_file(path)
        raw = []
        for f in files:
            lab = table.get(f, table.get(os.path.splitext(f)[0]))
            if lab is None:
                raise DataError(f"{path} has no label for {os.path.join(self.dir, f)}")
            raw.append(lab)
        if classes is None:
            if all(r.isdigit() for r in raw):
                classes = [str(k) for k in range(max(int(r) for r in raw) + 1)]
            else:
                classes = sorted(set(raw))
        self.classes = tuple(classes)
        index = {c: k for k, c in enumerate(self.classes)}
        labels = []
        for f, r in zip(files, raw, strict=True):
            if r in index:
                labels.append(index[r])
            elif r.isdigit() and int(r) < len(self.classes):
                labels.append(int(r))
            else:
                raise DataError(f"{path}: label {r!r} of {f} is neither a class name nor an "
                                f"index below {len(self.classes)}")
        return files, labels

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self._paths)

    def path(self, i: int) -> str:
        return os.path.join(self.dir, self._paths[self._check(i)])

    def _check(self, i) -> int:
        i = int(i)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} outside [0, {len(self)})")
        return i

    def __getitem__(self, i) -> tuple[Image.Image, int]:
        i = self._check(i)
        if not self.skip_damaged:
            return load_image(self.path(i)), int(self.labels[i])
        for k in range(len(self)):  # skip_damaged: the next readable image takes its place
            j = (i + k) % len(self)
            try:
                return load_image(self.path(j)), int(self.labels[j])
            except DataError as e:
                note_damaged(self.path(j), e)
        raise DataError(f"no readable image under {self.dir} (data.skip_damaged)")


_DAMAGED: set[str] = set()  # files skipped by this process (each is logged once)


def note_damaged(path: str, error: Exception) -> int:
    """Count and log (once per file) a damaged file skipped under data.skip_damaged; returns
    how many distinct files this process has skipped."""
    if path not in _DAMAGED:
        _DAMAGED.add(path)
        logging.warning("data.skip_damaged: skipping %s (%d damaged file(s) skipped so far in "
                        "this process; the next readable image takes its place). `python -m "
                        "argen_jax.data.check --path=DIR` lists them all.", error, len(_DAMAGED))
    return len(_DAMAGED)


def damaged_files() -> list[str]:
    """The damaged files this process skipped (data.skip_damaged), sorted."""
    return sorted(_DAMAGED)


class SubsetSource:
    """`source` restricted to `indices` (train_limit / test_limit)."""

    def __init__(self, source, indices):
        self.source, self.indices = source, np.asarray(indices, np.int64)
        self.classes = source.classes

    @property
    def labels(self) -> np.ndarray:
        return np.asarray(self.source.labels)[self.indices]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):
        return self.source[int(self.indices[int(i)])]


def spread_subset(source, n: int):
    """n examples evenly spread over the source (every class represented), or all if 0."""
    idx = spread_index(len(source), n)
    return source if len(idx) == len(source) else SubsetSource(source, idx)


def held_out_split(source, fraction: float, test_dir: str):
    """(train, test) subsets of `source`: `fraction` of it (at least one image, spread over
    the classes, the same every run) held out for evaluation (data.val_fraction)."""
    if os.path.isdir(test_dir):
        raise ConfigError(f"data.val_fraction={fraction} holds out part of the training images, "
                          f"but {test_dir} exists: use one or the other (val_fraction=0 reads it)")
    n = len(source)
    n_val = max(1, int(round(fraction * n)))
    if n_val >= n:
        raise DataError(f"data.val_fraction={fraction} of {n} images leaves none to train on")
    val = spread_index(n, n_val)
    train = np.setdiff1d(np.arange(n), val)
    return SubsetSource(source, train), SubsetSource(source, val)


# --------------------------------------------------------------------------- transforms
TRAIN_TRANSFORMS = ("random_crop", "center_crop")


@dataclasses.dataclass(frozen=True)
class ImageTransform:
    """(PIL image, label), seed -> {'image': uint8 [r, r, 3], 'label': int32}."""

    resolution: int
    crop: str = "center_crop"  # 'random_crop' (LlamaGen's training crop) or 'center_crop' (ADM)
    flip: bool = False  # random horizontal flip with probability 0.5
    min_crop_frac: float = 0.8
    max_crop_frac: float = 1.0

    def __call__(self, example, seed: int) -> dict:
        image, label = example
        rng = np.random.default_rng(seed)
        if self.crop == "random_crop":
            im = preprocess.random_crop(image, self.resolution, rng, self.min_crop_frac,
                                        self.max_crop_frac)
        else:
            im = preprocess.center_crop(image, self.resolution)
        if self.flip and preprocess.draw_flip(rng):
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        return {"image": np.asarray(im), "label": np.int32(label)}


# --------------------------------------------------------------------------- settings + builder
@dataclasses.dataclass(frozen=True)
class ImageFolderSettings:
    """`config.data` for data.kind='image_folder' (the `kind` key is the registry's)."""

    path: str = ""  # dataset root holding <train_split>/ and <test_split>/ (required to build
    # unless tfds_name is set; pass --config.data.path=/data/imagenet)
    tfds_name: str = ""  # instead of a folder: a prepared TFDS dataset read record by record
    # (tfds.data_source), e.g. 'imagenet2012' with test_split='validation'
    data_dir: str = ""  # tfds_name: the TFDS data folder ('' = TFDS's default)
    resolution: int = 256  # side of the square training images (papers: 256, 384, 512)
    train_transform: str = "random_crop"  # 'random_crop' (LlamaGen: short side resized to
    # [res/max_crop_frac, res/min_crop_frac], random crop) or 'center_crop' (ADM's)
    flip: bool = True  # random horizontal flip (p = 0.5) of training images
    min_crop_frac: float = 0.8  # random_crop: smallest crop side / resized short side
    max_crop_frac: float = 1.0  # random_crop: largest crop side / resized short side
    batch_size: int = 256  # global training batch (all processes together)
    eval_batch_size: int = 0  # global evaluation batch (0 = batch_size); eval uses centre crops
    train_split: str = "train"  # sub-folder of `path` with the training images
    test_split: str = "val"  # sub-folder of `path` with the evaluation images
    val_labels: str = ""  # labels file of a flat test split ('' = labels.txt,
    # <split>_labels.txt or LOC_val_solution.csv in the split folder or the root)
    train_limit: int = 0  # spread subset of N training images (0 = all)
    test_limit: int = 0  # spread subset of N evaluation images (0 = all)
    val_fraction: float = 0.0  # > 0: a folder with only <train_split>/ holds out this fraction
    # of it (spread over the classes, fixed) as the evaluation split
    skip_damaged: bool = False  # True: a damaged / unreadable image is skipped (the next
    # readable one takes its place), each file logged once with a running count; False: the
    # first one stops the run (after saving the finished steps)
    conditional: bool = True  # False: DataSpec.num_classes = 0 (labels still in batches)
    worker_count: int = 0  # grain worker processes decoding images (0 = in the main process)
    num_threads: int = 0  # threads per process building batches (0 = 1 when prefetching)
    prefetch: int = 2  # batches read ahead (per worker); 0 with 0 workers = none

    def __post_init__(self):
        def bad(key, why):
            raise ConfigError(f"data.{key}={getattr(self, key)!r}: {why}")

        if self.resolution < 1:
            bad("resolution", "must be positive")
        if self.train_transform not in TRAIN_TRANSFORMS:
            bad("train_transform", f"must be one of {TRAIN_TRANSFORMS}")
        if not 0 < self.min_crop_frac <= self.max_crop_frac <= 1:
            bad("min_crop_frac", f"need 0 < min_crop_frac <= max_crop_frac "
                f"({self.max_crop_frac}) <= 1")
        check_batching(self)
        for key in ("worker_count", "num_threads", "prefetch"):
            if getattr(self, key) < 0:
                bad(key, "must be >= 0")
        for key in ("train_split", "test_split"):
            if not getattr(self, key):
                bad(key, "must name a split (a sub-folder of data.path, or a TFDS split)")
        if not 0.0 <= self.val_fraction < 1.0:
            bad("val_fraction", "must be in [0, 1) (0: the folder's own test split)")
        if self.val_fraction and self.tfds_name:
            bad("val_fraction", "is for image folders (a TFDS dataset has its own splits)")
        if self.path and self.tfds_name:
            bad("tfds_name", f"set data.path ({self.path!r}) or data.tfds_name, not both")


class ImageFolderData:
    """Train / eval batches of {'image': uint8 [B, r, r, 3], 'label': int32 [B], 'mask'}.

    `train_batch(step)` is the global batch of step (a pure function of (seed, step)); a
    multi-process loop builds `train_loader(process_index, process_count)` and asks it for
    its slice instead. `eval_batches()` gives every evaluation image once, centre-cropped,
    the last batch padded with mask 0.
    """

    def __init__(self, settings: ImageFolderSettings, seed: int = 0):
        s = settings
        self.settings, self.seed = s, seed
        if s.tfds_name:

            train = TfdsImageSource(s.tfds_name, s.train_split, s.data_dir)
            test = TfdsImageSource(s.tfds_name, s.test_split, s.data_dir)
        elif s.path:
            train = ImageFolderSource(s.path, s.train_split, skip_damaged=s.skip_damaged)
            if s.val_fraction:
                train, test = held_out_split(train, s.val_fraction,
                                             os.path.join(s.path, s.test_split))
            else:
                test = ImageFolderSource(s.path, s.test_split, classes=train.classes,
                                         labels_file=s.val_labels,
                                         skip_damaged=s.skip_damaged)
        else:
            raise ConfigError("data.path is empty: set --config.data.path to a folder holding "
                              f"{s.train_split}/<class>/*.JPEG and {s.test_split}/ (or "
                              "--config.data.tfds_name to a prepared TFDS dataset)")
        self.classes = train.classes
        self.train_set = spread_subset(train, s.train_limit)
        self.test_set = spread_subset(test, s.test_limit)
        self.spec = DataSpec((s.resolution, s.resolution, 3), 256,
                             len(self.classes) if s.conditional else 0, "image")
        self.train_transform = ImageTransform(s.resolution, s.train_transform, s.flip,
                                              s.min_crop_frac, s.max_crop_frac)
        self.eval_transform = ImageTransform(s.resolution, "center_crop")
        self.eval_batch_size = s.eval_batch_size or s.batch_size
        self.train_batch = self.train_loader()

    def _loader_options(self) -> dict:
        s = self.settings
        return dict(worker_count=s.worker_count, num_threads=s.num_threads, prefetch=s.prefetch)

    def train_loader(self, process_index: int = 0, process_count: int = 1) -> GrainLoader:
        """The training loader for one process: `loader(step)` is its slice of the batch."""
        return GrainLoader(self.train_set, self.train_transform, self.settings.batch_size,
                           self.seed, process_index=process_index, process_count=process_count,
                           **self._loader_options())

    def eval_loader(self, process_index: int = 0, process_count: int = 1) -> GrainLoader:
        return GrainLoader(self.test_set, self.eval_transform, self.eval_batch_size, self.seed,
                           process_index=process_index, process_count=process_count,
                           shuffle=False, **self._loader_options())

    def eval_batches(self) -> Iterator[dict]:
        return iter(self.eval_loader())

    def close(self) -> None:
        self.train_batch.close()


def build_image_folder_data(data_cfg, seed: int) -> ImageFolderData:
    """The builder for data.kind='image_folder' (`data/builders.py`)."""
    return ImageFolderData(
        config_lib.typed(ImageFolderSettings, data_cfg, "data", ignore=("kind",)), seed)
