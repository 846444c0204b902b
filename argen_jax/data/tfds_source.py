"""A TFDS image dataset read lazily, record by record, through `tfds.data_source`.

`tfds.data_source` opens a prepared dataset's ArrayRecord files for random access without
TensorFlow. `TfdsImageSource[i]` reads record i only (nothing reads or stacks the split), so
ImageNet's 1.28M records cost no memory until asked for; it plugs into the image-folder
pipeline (`data.kind='image_folder'` with `data.tfds_name`) in place of a folder: the same
random crops, flips, grain workers and per-process rows.

Prepare the dataset once (`tfds build imagenet2012 --data_dir=...`, or let TFDS download the
datasets that allow it); `data.data_dir` names the TFDS data folder ('' = TFDS's default).
Worker processes reopen the source from (name, split, data_dir): the opened reader is not
pickled.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from argen_jax.errors import DataError


def open_data_source(name: str, split: str, data_dir: str = ""):
    """`tfds.data_source(name, split=split)`; a DataError naming the dataset if it can't."""
    import tensorflow_datasets as tfds

    try:
        return tfds.data_source(name, split=split, data_dir=data_dir or None)
    except Exception as e:  # noqa: BLE001 - tfds raises many types; name the dataset
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"TFDS dataset {name!r} split {split!r} could not be opened "
                        f"(prepare it with `tfds build {name}`, or set data.data_dir): "
                        f"{first}") from None


class TfdsImageSource:
    """Random access to a TFDS split: `source[i] -> (PIL RGB image, int label)`.

    classes: the label names from the dataset's ClassLabel feature (or '0'..'n-1'); a
    dataset without `label_key` gives label 0 and one class."""

    def __init__(self, name: str, split: str, data_dir: str = "", image_key: str = "image",
                 label_key: str = "label"):
        self.name, self.split, self.data_dir = name, split, data_dir
        self.image_key, self.label_key = image_key, label_key
        self._src = open_data_source(name, split, data_dir)
        self._len = len(self._src)
        if self._len == 0:
            raise DataError(f"TFDS dataset {name!r} split {split!r} has no records")
        features = self._src.dataset_info.features
        if image_key not in features:
            raise DataError(f"TFDS dataset {name!r} has no {image_key!r} feature (its features:"
                            f" {sorted(features.keys())})")
        label = features[label_key] if label_key in features else None
        names = getattr(label, "names", None)
        if names:
            self.classes = tuple(names)
        else:
            self.classes = tuple(str(c) for c in range(getattr(label, "num_classes", 1) or 1))

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __getstate__(self):  # worker processes reopen the files
        state = dict(self.__dict__)
        state["_src"] = None
        return state

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, i) -> tuple[Image.Image, int]:
        i = int(i)
        if not 0 <= i < self._len:
            raise IndexError(f"index {i} outside [0, {self._len})")
        if self._src is None:
            self._src = open_data_source(self.name, self.split, self.data_dir)
        record = self._src[i]
        image = np.asarray(record[self.image_key])
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise DataError(f"TFDS {self.name!r} record {i}: {self.image_key!r} is "
                            f"{image.dtype} {image.shape}, expected uint8 [H, W(, C)]")
        if image.ndim == 3 and image.shape[-1] == 1:
            image = image[..., 0]
        label = int(record[self.label_key]) if self.label_key in record else 0
        return Image.fromarray(image).convert("RGB"), label
