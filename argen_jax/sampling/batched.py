"""Drawing N samples in batches over a mesh: the one loop behind `Experiment.sample` (training's
sample grids, --mode=eval's sample metrics) and `inference.Run.sample` (--mode=sample,
`pretrained sample` / `evaluate`)."""
from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from argen_jax.parallel import mesh as meshlib
from argen_jax.sampling.loop import sample_keys


def sample_in_batches(sample: Callable, params, num: int, seed: int, mesh: Mesh,
                      num_classes: int, start_index: int = 0, batch_size: int | None = None,
                      labels=None) -> np.ndarray:
    """`num` samples of `sample(params, keys, labels)` (a jitted family sampler taking
    batch-sharded keys and labels); sample k always uses the key
    fold_in(PRNGKey(seed), start_index + k) whatever the batch size or device count (design
    rule 3). Labels default to k % num_classes. Batches are rounded up to the data-parallel
    size; the output is gathered to the host on every process."""
    sharding = meshlib.batch_sharding(mesh)
    dp = meshlib.data_parallel_size(mesh)
    bs = batch_size or num
    bs = -(-bs // dp) * dp  # round up to the data-parallel size
    if labels is None:
        labels = (np.arange(num) + start_index) % max(num_classes, 1)
    labels = np.asarray(labels, np.int32)
    rng = jax.random.PRNGKey(seed)
    out = []
    for s in range(0, num, bs):
        idx = np.arange(s, s + bs)
        keys = jax.device_put(sample_keys(rng, start_index + s, bs), sharding)
        lab = jax.device_put(labels[np.minimum(idx, num - 1)], sharding)
        out.append(meshlib.to_host(sample(params, keys, lab)))
    return np.concatenate(out)[:num]
