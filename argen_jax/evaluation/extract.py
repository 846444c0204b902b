"""Batched feature extraction sharded over the device mesh.

An *extractor* (`inception.InceptionExtractor`, `feature_net.SmallNetExtractor`) has
`params`, `apply(params, images, levels) -> {name: [B, ...]}` (pure, jittable), `check(shape,
levels)`, a cache `key` and a metric-name `suffix`. `extract_features` runs `apply` jitted with
the batch split over the mesh's data axes and the weights replicated; every batch has the
same padded size, so there is one compilation whatever N is.
"""
from __future__ import annotations

import jax
import numpy as np
from tqdm import tqdm

from argen_jax.errors import DataError
from argen_jax.parallel import mesh as meshlib


class _Jitted:
    """One jitted `apply` per (extractor, mesh, levels)."""

    cache: dict = {}

    @classmethod
    def get(cls, extractor, mesh, levels: int):
        key = (id(extractor), id(mesh), levels)
        if key not in cls.cache:
            cls.cache[key] = jax.jit(
                lambda p, x: extractor.apply(p, x, levels),
                in_shardings=(meshlib.replicated(mesh), meshlib.batch_sharding(mesh)),
                out_shardings=meshlib.batch_sharding(mesh))
        return cls.cache[key]


def extract_features(extractor, images, levels: int, batch_size: int = 200, mesh=None,
                     desc: str = "features", quiet: bool = False) -> dict[str, np.ndarray]:
    """images: integers [N, H, W, C] in [0, levels) -> {name: float32 [N, ...]}.

    `batch_size` is the global batch (rounded up to a multiple of the data-parallel size);
    the last batch is padded and the padding dropped. Multi-process: every process passes the
    same `images` and feeds its own slice of each batch."""
    images = np.asarray(images)
    if images.ndim != 4:
        raise DataError(f"extract_features expects images [N, H, W, C], got {images.shape}")
    extractor.check(images.shape[1:], levels)
    mesh = mesh if mesh is not None else meshlib.create_mesh()
    dp = meshlib.data_parallel_size(mesh)
    bs = -(-max(1, min(batch_size, len(images))) // dp) * dp
    fn = _Jitted.get(extractor, mesh, levels)
    params = jax.device_put(extractor.params, meshlib.replicated(mesh))
    sharding = meshlib.batch_sharding(mesh)
    n_proc, i_proc = jax.process_count(), jax.process_index()
    out: dict[str, list] = {}
    bar = tqdm(total=len(images), desc=desc, unit="img", mininterval=2.0,
               disable=quiet or i_proc != 0)
    for s in range(0, len(images), bs):
        x = images[s : s + bs]
        n = len(x)
        if n < bs:  # pad with copies of the last image; dropped below
            x = np.concatenate([x, np.repeat(x[-1:], bs - n, 0)])
        per = bs // n_proc
        x = jax.make_array_from_process_local_data(
            sharding, x[i_proc * per : (i_proc + 1) * per], x.shape)
        feats = jax.tree.map(meshlib.to_host, fn(params, x))
        for k, v in feats.items():
            out.setdefault(k, []).append(np.asarray(v, np.float32)[:n])
        bar.update(n)
    bar.close()
    return {k: np.concatenate(v) for k, v in out.items()}
