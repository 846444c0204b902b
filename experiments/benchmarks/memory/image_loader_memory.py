"""Peak memory of the image-folder loader, for folders of different sizes (flat in the size).

    python -m experiments.data.make_image_folder --out=/tmp/in2k --classes=10 --per_class=200
    python -m experiments.data.make_image_folder --out=/tmp/in20k --classes=100 --per_class=200
    python -m experiments.benchmarks.memory.image_loader_memory --folders=/tmp/in2k,/tmp/in20k \
        [--workers=2] [--batches=40] [--batch_size=32] [--resolution=256]

For each folder, in a fresh subprocess: indexes its train/ split and builds the training
loader of data.kind='image_folder' on it (the grain loader with LlamaGen's random crop + flip
at --resolution, `--workers` worker processes),
reads `--batches` training batches, and reports the peak RSS (VmHWM) of the main process, its
RSS after the imports and after indexing the folder, and the peak RSS of each worker process
(read before the loader stops them). Prints one JSON line with a row per folder.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from absl import flags

from experiments.benchmarks import common

_FOLDERS = flags.DEFINE_list("folders", None, "Image folders.", required=True)
_WORKERS = flags.DEFINE_integer("workers", 2, "Loader worker processes.")
_BATCHES = flags.DEFINE_integer("batches", 40, "Batches read (>= 2).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per batch.")
_RESOLUTION = flags.DEFINE_integer("resolution", 256, "Output side.")
_ONE = flags.DEFINE_string("one", "", "Internal: measure this one folder (the subprocess).")


def _status(pid: str = "self") -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = round(int(val.split()[0]) / 1024, 1)  # kB -> MB
    return out


def _children(pid: int) -> list[str]:
    """Every live descendant of `pid` (grain's workers and their helpers)."""
    parents = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    parents[p] = f.read().rsplit(")", 1)[1].split()[1]
            except OSError:
                continue
    out, todo = [], [str(pid)]
    while todo:
        cur = todo.pop()
        kids = [p for p, pp in parents.items() if pp == cur]
        out += kids
        todo += kids
    return out


def measure(folder: str, workers: int, batches: int, batch_size: int, resolution: int) -> dict:
    """Runs in the subprocess: one folder, one JSON row."""
    from argen_jax.data.grain_loader import GrainLoader
    from argen_jax.data.image_folder import ImageFolderSource, ImageTransform

    after_imports = _status()["VmRSS"]
    with common.Stopwatch() as indexing:
        source = ImageFolderSource(folder, "train")
    after_index = _status()["VmRSS"]
    loader = GrainLoader(source, ImageTransform(resolution, "random_crop", flip=True),
                         batch_size, seed=0, worker_count=workers, prefetch=2)
    steps = iter(range(batches))

    def read():
        batch = loader(next(steps))
        assert batch["image"].shape == (batch_size, resolution, resolution, 3)

    # the first batch waits for the workers' start-up: untimed
    read_s = sum(common.times(read, repeats=batches - 1, warmup=1))
    workers_hwm = sorted(_status(p).get("VmHWM", 0.0) for p in _children(os.getpid()))
    loader.close()
    return {"folder": folder, "images": len(source), "index_s": round(indexing.seconds, 2),
            "rss_after_imports_mb": after_imports, "rss_after_index_mb": after_index,
            "main_peak_rss_mb": _status()["VmHWM"], "worker_peak_rss_mb": workers_hwm,
            "images_per_s_after_first_batch": round((batches - 1) * batch_size / read_s, 1)}


def main(argv):
    del argv
    workers, batches, batch_size = _WORKERS.value, _BATCHES.value, _BATCH_SIZE.value
    resolution = _RESOLUTION.value
    if _ONE.value:  # the measuring subprocess
        print(json.dumps(measure(_ONE.value, workers, batches, batch_size, resolution)))
        return
    rows = []
    for folder in _FOLDERS.value:
        out = subprocess.run(
            [sys.executable, "-m", __spec__.name, f"--folders={folder}", f"--one={folder}",
             f"--workers={workers}", f"--batches={batches}", f"--batch_size={batch_size}",
             f"--resolution={resolution}"], capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"measuring {folder} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    common.emit({"benchmark": "image_loader_memory", "workers": workers, "batches": batches,
                 "batch_size": batch_size, "resolution": resolution, "folders": rows})


if __name__ == "__main__":
    common.run(main)
