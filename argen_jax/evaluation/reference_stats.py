"""Reference batches and statistics in the ADM evaluator's `.npz` layout, and a cache.

The guided-diffusion evaluator (used for the published LlamaGen / VAR / ADM tables) reads

    sample batch     arr_0: uint8 images [N, H, W, 3] (optionally arr_1: labels [N])
    reference batch  arr_0 as above, plus mu [2048], sigma [2048, 2048] (Inception pool3)
                     and mu_s, sigma_s (the 2023-dim mixed_6 spatial features of sFID)

Reading their published reference batches (e.g. `VIRTUAL_imagenet256_labeled.npz`) gives
statistics directly comparable with those tables; writing ours in the same layout lets users
cross-check a run with the original TensorFlow evaluator.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable

import numpy as np

from argen_jax.errors import DataError
from argen_jax.evaluation.metrics import FeatureStats


def _load(path: str):
    if not os.path.exists(path):
        raise DataError(f"npz file not found: {path!r}")
    try:
        return np.load(path)
    except Exception as e:  # noqa: BLE001 - numpy raises several types for bad files
        raise DataError(f"{path!r} is not a readable .npz file: {e}") from e


def read_images(path: str) -> np.ndarray:
    """`arr_0` of a sample / reference batch: uint8 images [N, H, W, C]."""
    with _load(path) as f:
        if "arr_0" not in f.files:
            raise DataError(f"{path!r} has no arr_0 (images); keys: {f.files}")
        x = f["arr_0"]
    if x.ndim != 4 or x.dtype != np.uint8:
        raise DataError(f"{path!r}: arr_0 must be uint8 [N, H, W, C], got {x.dtype} {x.shape}")
    return x


def read_stats(path: str) -> tuple[FeatureStats | None, FeatureStats | None]:
    """(pool3 stats, spatial stats) stored in a reference batch; None where absent."""
    with _load(path) as f:
        pool = FeatureStats(f["mu"], f["sigma"]) if "mu" in f.files else None
        spatial = FeatureStats(f["mu_s"], f["sigma_s"]) if "mu_s" in f.files else None
    return pool, spatial


def write_sample_batch(path: str, images, labels=None) -> None:
    """Samples as the ADM evaluator's sample batch (arr_0 uint8 [N, H, W, C], arr_1 labels)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise DataError(f"sample batches hold uint8 images, got {images.dtype}")
    arrays = {"arr_0": images}
    if labels is not None:
        arrays["arr_1"] = np.asarray(labels)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **arrays)


def write_reference_batch(path: str, images, pool_feats, spatial_feats=None
                          ) -> tuple[FeatureStats, FeatureStats | None]:
    """A reference batch: images plus the statistics of their features."""
    pool = FeatureStats.from_features(pool_feats)
    spatial = FeatureStats.from_features(spatial_feats) if spatial_feats is not None else None
    arrays = {"arr_0": np.asarray(images, np.uint8), "mu": pool.mu, "sigma": pool.sigma}
    if spatial is not None:
        arrays.update(mu_s=spatial.mu, sigma_s=spatial.sigma)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **arrays)
    return pool, spatial


# --------------------------------------------------------------------------- cache
def cache_path(cache_dir: str, key: str) -> str:
    """A readable, collision-safe file name for a cache key (e.g. 'mnist-test-featnet-v1')."""
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", key)[:80]
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(cache_dir, f"{stem}-{digest}.npz")


def cached_features(cache_dir: str, key: str,
                    compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Features of a dataset, computed once and kept in `cache_dir` (float32 arrays).

    `key` must name everything the features depend on (dataset, split, preprocessing,
    feature network and its weights)."""
    path = cache_path(cache_dir, key)
    if os.path.exists(path):
        with np.load(path) as f:
            return {k: f[k] for k in f.files}
    feats = {k: np.asarray(v, np.float32) for k, v in compute().items()}
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **feats)
    os.replace(tmp, path)
    return feats


def cached_stats(cache_dir: str, key: str,
                 compute: Callable[[], dict[str, np.ndarray]]) -> dict[str, FeatureStats]:
    """Mean / covariance of each feature set, computed once (only the statistics are kept)."""
    path = cache_path(cache_dir, "stats-" + key)
    if os.path.exists(path):
        with np.load(path) as f:
            names = sorted({k.split("/")[0] for k in f.files})
            return {n: FeatureStats(f[f"{n}/mu"], f[f"{n}/sigma"], int(f[f"{n}/num"]))
                    for n in names}
    stats = {k: FeatureStats.from_features(v) for k, v in compute().items()}
    arrays = {}
    for n, s in stats.items():
        arrays.update({f"{n}/mu": s.mu, f"{n}/sigma": s.sigma, f"{n}/num": np.int64(s.num)})
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + ".tmp.npz"
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return stats
