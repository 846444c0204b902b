"""Find every unreadable image of a folder before a run meets it, in parallel.

    python -m argen_jax.data.check --path=/data/imagenet [--workers=16]

Indexes the folder as training does (`data/image_folder.py`: the split folders, or the whole
folder when it has no train/val layout), decodes every image in `--workers` processes and
prints one line per damaged or unreadable file, then a JSON summary. Exit status: 0 every
image decodes, 1 some do not (listed), 2 a bad --path. A run over the folder can skip the
listed files with `--config.data.skip_damaged=True`, or remove them.
"""
from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

from absl import app, flags

from argen_jax.data.image_folder import _is_image, load_image
from argen_jax.errors import DataError, UserError

_PATH = flags.DEFINE_string("path", None, "the image folder (holding train/ and val/, or "
                            "class folders, or images)", required=True)
_WORKERS = flags.DEFINE_integer("workers", 0, "decoding processes (0: one per CPU)")
_CHUNK = 256  # files per task: one round trip per chunk, not per file


def image_files(root: str) -> list[str]:
    """Every image file under `root` (the extensions the loader reads; hidden entries
    skipped), sorted."""
    root = os.path.expanduser(root)
    if not os.path.isdir(root):
        raise DataError(f"image folder {root} does not exist (--path)")
    out = []
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith("."))
        out += [os.path.join(d, f) for f in sorted(files) if _is_image(f)]
    return out


def _unreadable(paths: list[str]) -> list[str]:
    """The one-line reasons of the files in `paths` that do not decode."""
    bad = []
    for p in paths:
        try:
            load_image(p)
        except DataError as e:
            bad.append(str(e))
    return bad


def check_folder(root: str, workers: int = 0) -> dict:
    """{'files', 'damaged': [one line per unreadable file], 'seconds'}."""
    t0 = time.time()
    files = image_files(root)
    if not files:
        raise DataError(f"no image files under {root}")
    chunks = [files[i:i + _CHUNK] for i in range(0, len(files), _CHUNK)]
    workers = min(workers or os.cpu_count() or 1, len(chunks))
    if workers <= 1:
        damaged = [line for c in chunks for line in _unreadable(c)]
    else:
        with ProcessPoolExecutor(workers) as pool:
            damaged = [line for lines in pool.map(_unreadable, chunks) for line in lines]
    return {"files": len(files), "damaged": damaged, "seconds": round(time.time() - t0, 2)}


def main(argv) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        result = check_folder(_PATH.value, _WORKERS.value)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    for line in result["damaged"]:
        print(line)
    print(json.dumps({"path": _PATH.value, "files": result["files"],
                      "damaged": len(result["damaged"]), "seconds": result["seconds"]}))
    sys.exit(1 if result["damaged"] else 0)


if __name__ == "__main__":
    app.run(main)
