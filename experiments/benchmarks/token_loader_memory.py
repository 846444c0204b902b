"""Peak memory and batch latency of the sharded token loader on an ImageNet-sized token set.

    python experiments/benchmarks/token_loader_memory.py [--n=1281167] [--length=256] \
        [--batch_size=256] [--batches=2000] [--shard_size=10000] [--dir=TMP]

Writes a synthetic shard store (`argen_jax/data/token_shards.py`: N random int16 maps of
`length` tokens, ~650 MB for ImageNet's 1,281,167 x 256) to a temporary directory, then, in
a fresh subprocess, builds data.kind='tokens' on it (`build_token_data`, the loader the
training loop uses) and times `train_batch(step)` for `--batches` steps. Prints one JSON line:
peak RSS (VmHWM) of the measuring process, its RSS right after the imports, its anonymous and
file-backed (memory-mapped, reclaimable) RSS at the end, the open time, and the batch latency
(median / p99 / mean, ms; the shards are in the page cache, having just been written). The
temporary data is deleted afterwards unless --dir names a directory to keep.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def _status() -> dict:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0]) / 1024  # kB -> MB
    return out


def write_synthetic(directory: str, n: int, length: int, shard_size: int, codebook: int,
                    n_test: int) -> float:
    from argen_jax.data import token_shards as ts

    side = int(round(length ** 0.5))
    if side * side != length:
        raise SystemExit(f"--length={length} must be a square (one h x w map)")
    index = ts.make_index(token_shape=[side, side], scales=[side], multiscale=False,
                          codebook_size=codebook, splits={"train": n, "test": n_test},
                          shard_size=shard_size)
    w = ts.ShardWriter(directory, index)
    t0 = time.perf_counter()
    for split in ("train", "test"):
        for k in w.pending(split):
            lo, hi = w.shard_range(split, k)
            rng = np.random.default_rng([split == "test", k])
            w.write_shard(split, k, rng.integers(0, codebook, (hi - lo, length), np.int16),
                          rng.integers(0, 1000, hi - lo, np.int32))
    return time.perf_counter() - t0


def measure(directory: str, batch_size: int, batches: int) -> dict:
    import ml_collections

    from argen_jax.data.tokens import build_token_data

    after_import = _status()["VmRSS"]
    t0 = time.perf_counter()
    data = build_token_data(ml_collections.ConfigDict(
        {"kind": "tokens", "path": directory, "batch_size": batch_size}), seed=0)
    open_s = time.perf_counter() - t0
    data.train_batch(0)  # first permutation
    times = []
    for step in range(1, batches + 1):
        t0 = time.perf_counter()
        b = data.train_batch(step)
        times.append(time.perf_counter() - t0)
    assert b["tokens"].shape == (batch_size, data.spec.shape[0])
    st = _status()
    ms = np.asarray(times) * 1e3
    return {"num_maps": len(data.train_tokens), "tokens_per_map": data.spec.shape[0],
            "batch_size": batch_size, "batches": batches,
            "peak_rss_mb": round(st["VmHWM"], 1), "rss_after_imports_mb": round(after_import, 1),
            "rss_anon_end_mb": round(st["RssAnon"], 1),
            "rss_file_end_mb": round(st["RssFile"], 1), "open_s": round(open_s, 3),
            "batch_ms_median": round(float(np.median(ms)), 3),
            "batch_ms_p99": round(float(np.percentile(ms, 99)), 3),
            "batch_ms_mean": round(float(ms.mean()), 3)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_281_167, help="training maps (ImageNet's)")
    ap.add_argument("--n_test", type=int, default=10_000)
    ap.add_argument("--length", type=int, default=256, help="tokens per map (16 x 16)")
    ap.add_argument("--codebook", type=int, default=16384)
    ap.add_argument("--shard_size", type=int, default=10_000)
    ap.add_argument("--batch_size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=2000)
    ap.add_argument("--dir", default="", help="write the store here and keep it")
    ap.add_argument("--measure", default="", help=argparse.SUPPRESS)  # the subprocess
    a = ap.parse_args()
    if a.measure:
        print(json.dumps(measure(a.measure, a.batch_size, a.batches)))
        return
    directory = a.dir or tempfile.mkdtemp(prefix="token_shards_bench_")
    try:
        write_s = write_synthetic(directory, a.n, a.length, a.shard_size, a.codebook, a.n_test)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run([sys.executable, os.path.abspath(__file__), f"--measure={directory}",
                              f"--batch_size={a.batch_size}", f"--batches={a.batches}"],
                             check=True, capture_output=True, text=True, env=env)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out.update(store_mb=round(size / 2**20, 1), write_s=round(write_s, 1),
                   shard_size=a.shard_size)
        print(json.dumps(out))
    finally:
        if not a.dir:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
