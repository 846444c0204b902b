"""Peak memory and batch latency of the sharded token loader on an ImageNet-sized token set.

    python -m experiments.benchmarks.memory.token_loader_memory [--n=1281167] [--length=256] \
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

import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from absl import flags

from experiments.benchmarks import common

_N = flags.DEFINE_integer("n", 1_281_167, "Training maps (ImageNet's).")
_N_TEST = flags.DEFINE_integer("n_test", 10_000, "Test maps.")
_LENGTH = flags.DEFINE_integer("length", 256, "Tokens per map (16 x 16).")
_CODEBOOK = flags.DEFINE_integer("codebook", 16384, "Codebook size.")
_SHARD_SIZE = flags.DEFINE_integer("shard_size", 10_000, "Maps per shard.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 256, "Maps per batch.")
_BATCHES = flags.DEFINE_integer("batches", 2000, "Batches timed.")
_DIR = flags.DEFINE_string("dir", "", "Write the store here and keep it.")
_MEASURE = flags.DEFINE_string("measure", "", "Internal: measure this store (the subprocess).")


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
    with common.Stopwatch() as writing:
        for split in ("train", "test"):
            for k in w.pending(split):
                lo, hi = w.shard_range(split, k)
                rng = np.random.default_rng([split == "test", k])
                w.write_shard(split, k, rng.integers(0, codebook, (hi - lo, length), np.int16),
                              rng.integers(0, 1000, hi - lo, np.int32))
    return writing.seconds


def measure(directory: str, batch_size: int, batches: int) -> dict:
    import ml_collections

    from argen_jax.data.tokens import build_token_data

    after_import = _status()["VmRSS"]
    with common.Stopwatch() as opening:
        data = build_token_data(ml_collections.ConfigDict(
            {"kind": "tokens", "path": directory, "batch_size": batch_size}), seed=0)
    steps = iter(range(batches + 1))  # step 0: the first permutation, untimed
    last = {}

    def read():
        last["batch"] = data.train_batch(next(steps))

    times = common.times(read, repeats=batches, warmup=1)
    assert last["batch"]["tokens"].shape == (batch_size, data.spec.shape[0])
    st = _status()
    ms = np.asarray(times) * 1e3
    return {"num_maps": len(data.train_tokens), "tokens_per_map": data.spec.shape[0],
            "batch_size": batch_size, "batches": batches,
            "peak_rss_mb": round(st["VmHWM"], 1), "rss_after_imports_mb": round(after_import, 1),
            "rss_anon_end_mb": round(st["RssAnon"], 1),
            "rss_file_end_mb": round(st["RssFile"], 1), "open_s": round(opening.seconds, 3),
            "batch_ms_median": round(float(np.median(ms)), 3),
            "batch_ms_p99": round(float(np.percentile(ms, 99)), 3),
            "batch_ms_mean": round(float(ms.mean()), 3)}


def main(argv):
    del argv
    batch_size, batches = _BATCH_SIZE.value, _BATCHES.value
    if _MEASURE.value:
        print(json.dumps(measure(_MEASURE.value, batch_size, batches)))
        return
    directory = _DIR.value or tempfile.mkdtemp(prefix="token_shards_bench_")
    try:
        write_s = write_synthetic(directory, _N.value, _LENGTH.value, _SHARD_SIZE.value,
                                  _CODEBOOK.value, _N_TEST.value)
        size = sum(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
        res = subprocess.run([sys.executable, "-m", __spec__.name, f"--measure={directory}",
                              f"--batch_size={batch_size}", f"--batches={batches}"],
                             check=True, capture_output=True, text=True)
        out = json.loads(res.stdout.strip().splitlines()[-1])
        out.update(store_mb=round(size / 2**20, 1), write_s=round(write_s, 1),
                   shard_size=_SHARD_SIZE.value)
        common.emit(out)
    finally:
        if not _DIR.value:
            shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    common.run(main)
