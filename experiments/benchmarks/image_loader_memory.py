"""Peak memory of the image-folder loader, for folders of different sizes (flat in the size).

    python experiments/data/make_image_folder.py --out=/tmp/in2k --classes=10 --per_class=200
    python experiments/data/make_image_folder.py --out=/tmp/in20k --classes=100 --per_class=200
    python experiments/benchmarks/image_loader_memory.py --folders=/tmp/in2k,/tmp/in20k \
        [--workers=2] [--batches=40] [--batch_size=32] [--resolution=256]

For each folder, in a fresh subprocess: indexes its train/ split and builds the training
loader of data.kind='image_folder' on it (the grain loader with LlamaGen's random crop + flip
at --resolution, `--workers` worker processes),
reads `--batches` training batches, and reports the peak RSS (VmHWM) of the main process, its
RSS after the imports and after indexing the folder, and the peak RSS of each worker process
(read before the loader stops them). Prints one JSON line with a row per folder.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


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
    t0 = time.perf_counter()
    source = ImageFolderSource(folder, "train")
    index_s = time.perf_counter() - t0
    after_index = _status()["VmRSS"]
    loader = GrainLoader(source, ImageTransform(resolution, "random_crop", flip=True),
                         batch_size, seed=0, worker_count=workers, prefetch=2)
    for step in range(batches):
        if step == 1:  # after the workers' start-up
            t0 = time.perf_counter()
        batch = loader(step)
        assert batch["image"].shape == (batch_size, resolution, resolution, 3)
    read_s = time.perf_counter() - t0
    workers_hwm = sorted(_status(p).get("VmHWM", 0.0) for p in _children(os.getpid()))
    loader.close()
    return {"folder": folder, "images": len(source), "index_s": round(index_s, 2),
            "rss_after_imports_mb": after_imports, "rss_after_index_mb": after_index,
            "main_peak_rss_mb": _status()["VmHWM"], "worker_peak_rss_mb": workers_hwm,
            "images_per_s_after_first_batch": round((batches - 1) * batch_size / read_s, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--folders", required=True, help="comma-separated image folders")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batches", type=int, default=40, help=">= 2")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--_one", default="", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._one:  # the measuring subprocess
        print(json.dumps(measure(a._one, a.workers, a.batches, a.batch_size, a.resolution)))
        return
    rows = []
    for folder in a.folders.split(","):
        out = subprocess.run(
            [sys.executable, __file__, f"--folders={folder}", f"--_one={folder}",
             f"--workers={a.workers}", f"--batches={a.batches}", f"--batch_size={a.batch_size}",
             f"--resolution={a.resolution}"], capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"measuring {folder} failed:\n{out.stderr[-3000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr)
    print(json.dumps({"benchmark": "image_loader_memory", "workers": a.workers,
                      "batches": a.batches, "batch_size": a.batch_size,
                      "resolution": a.resolution, "folders": rows}))


if __name__ == "__main__":
    main()
