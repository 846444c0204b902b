"""Image-caption pairs, lazy and random-access (for the grain loader): LlamaGen's jsonl layout
and webdataset tar shards as img2dataset writes them.

    jsonl   <dir>/*.jsonl, one object a line: {"image_path": ..., "text": ...} (or
            "caption"; a list of captions: the first, LlamaGen's 'blip' key); a relative
            image_path is read from the jsonl's folder (LlamaGen's dataset/t2i.py)
    tars    <dir>/*.tar (img2dataset: 00000.tar ...), members key.jpg|jpeg|png|webp +
            key.txt (the caption) [+ key.json, unused]

Indexing reads only jsonl lines and tar headers (+ the small .txt members); images are
decoded by `source[i] -> (PIL RGB image, caption str)`. Pairs that cannot be used are
skipped and *counted* in `source.skipped` (reason -> count), never silently dropped and never
a crash: at indexing a missing image file / member, an empty caption, an unparsable line, a
damaged tar or a cut member (the members before the damage are kept); at reading a damaged
image, whose index then serves the next readable pair (deterministic: batches stay a
function of the step), the count being this process's.
"""
from __future__ import annotations

import collections
import glob
import io
import json
import os
import tarfile

from PIL import Image

from argen_jax.data.image_folder import _Paths, load_image
from argen_jax.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def _caption_of(obj: dict) -> str:
    text = obj.get("text", obj.get("caption", ""))
    if isinstance(text, list):
        text = text[0] if text else ""
    return str(text).strip()


class _CaptionSource:
    """What both layouts share: the counted skips and the damaged-image fallback."""

    def __init__(self):
        self.skipped: collections.Counter = collections.Counter()
        self._captions: _Paths
        self._damaged: set[int] = set()

    def __len__(self) -> int:
        return len(self._captions)

    def caption(self, i: int) -> str:
        return self._captions[i]

    def _load(self, i: int) -> Image.Image:
        raise NotImplementedError

    def __getitem__(self, i) -> tuple[Image.Image, str]:
        n = len(self)
        for j in range(int(i), int(i) + n):
            j %= n
            if j in self._damaged:
                continue
            try:
                return self._load(j), self.caption(j)
            except DataError:
                self._damaged.add(j)
                self.skipped["damaged_image"] += 1
        raise DataError("no readable image among the caption pairs")

    def _finish(self, where: str) -> None:
        if not len(self._captions):
            raise DataError(f"no usable image-caption pairs in {where} (skipped: "
                            f"{dict(self.skipped)})")


class JsonlCaptionSource(_CaptionSource):
    """LlamaGen's jsonl layout: every *.jsonl of `root`, sorted, line by line."""

    def __init__(self, root: str):
        super().__init__()
        files = sorted(glob.glob(os.path.join(os.path.expanduser(root), "*.jsonl")))
        if not files:
            raise DataError(f"no .jsonl files in {root!r}")
        paths, caps = [], []
        for f in files:
            with open(f, encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        continue
                    try:
                        obj = json.loads(line)
                        path = os.path.join(os.path.dirname(f), obj["image_path"])
                    except (ValueError, KeyError, TypeError):
                        self.skipped["bad_line"] += 1
                        continue
                    cap = _caption_of(obj)
                    if not cap:
                        self.skipped["empty_caption"] += 1
                    elif not os.path.isfile(path):
                        self.skipped["missing_image"] += 1
                    else:
                        paths.append(path)
                        caps.append(cap)
        self._paths, self._captions = _Paths(paths), _Paths(caps)
        self._finish(root)

    def _load(self, i: int) -> Image.Image:
        return load_image(self._paths[i])


class TarCaptionSource(_CaptionSource):
    """img2dataset's webdataset shards: every *.tar of `root`, sorted; a pair per key."""

    def __init__(self, root: str):
        super().__init__()
        self.tars = sorted(glob.glob(os.path.join(os.path.expanduser(root), "*.tar")))
        if not self.tars:
            raise DataError(f"no .tar shards in {root!r}")
        where, caps = [], []  # where: "tar index:offset:size" of the image member
        for t, path in enumerate(self.tars):
            for image, cap in self._scan(path).values():
                if image is None:
                    self.skipped["missing_image"] += 1
                elif image == "cut":
                    self.skipped["damaged_member"] += 1
                elif not cap:
                    self.skipped["empty_caption"] += 1
                else:
                    where.append(f"{t}:{image[0]}:{image[1]}")
                    caps.append(cap)
        self._where, self._captions = _Paths(where), _Paths(caps)
        self._finish(root)

    def _scan(self, path: str) -> dict:
        """{key: ((offset, size) of the image member or None, caption)} in member order."""
        pairs: dict = {}
        end = os.path.getsize(path)
        try:
            with tarfile.open(path, "r:") as tf:
                for m in tf:
                    if not m.isfile():
                        continue
                    key, ext = os.path.splitext(m.name)
                    entry = pairs.setdefault(key, [None, ""])
                    if ext.lower() in IMAGE_SUFFIXES:  # a truncated shard cuts its last member
                        entry[0] = (m.offset_data, m.size) if m.offset_data + m.size <= end \
                            else "cut"
                    elif ext.lower() == ".txt":
                        entry[1] = tf.extractfile(m).read().decode("utf-8", "replace").strip()
        except (tarfile.TarError, OSError, EOFError):
            self.skipped["damaged_tar"] += 1  # the members read before the damage stay
        return {k: tuple(v) for k, v in pairs.items()}

    def _load(self, i: int) -> Image.Image:
        t, offset, size = (int(v) for v in self._where[i].split(":"))
        try:
            with open(self.tars[t], "rb") as f:
                f.seek(offset)
                data = f.read(size)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return im if im.mode == "RGB" else im.convert("RGB")
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise DataError(f"damaged image in {self.tars[t]} at {offset}: {e}") from None


def caption_source(root: str):
    """The source of `root`: tar shards if it holds *.tar, else jsonl files."""
    if glob.glob(os.path.join(os.path.expanduser(root), "*.tar")):
        return TarCaptionSource(root)
    return JsonlCaptionSource(root)
