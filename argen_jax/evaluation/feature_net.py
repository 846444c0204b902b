"""A small classifier for offline, small-scale evaluation of 28x28 image models.

Inception FID needs 299x299 RGB natural images and published weights; for MNIST /
Fashion-MNIST runs on a laptop we train this CNN here (experiments/evaluation/
train_feature_net.py) and use its penultimate 128-d activations as the feature space.
Distances computed with it are reported as `fd_smallnet`, `precision_smallnet`,
`recall_smallnet`, never as "FID": the numbers are only comparable between runs that use the
same saved network file.

The network sees images in [0, 1] (`x / (levels - 1)`), so a net trained on binarized data
(levels 2) must be evaluated on binarized images and one trained on 8-bit data on 8-bit
images; the saved file records which (`meta['levels']`) and `SmallNetExtractor` checks it.
"""
from __future__ import annotations

import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util

from argen_jax.errors import CheckpointError, DataError

METRIC_SUFFIX = "smallnet"  # metric names: fd_smallnet, precision_smallnet, recall_smallnet


class SmallFeatureNet(nn.Module):
    """conv3x3(32) -> conv3x3/2(64) -> conv3x3/2(64) -> dense(128) [features] -> dense(classes)."""

    num_classes: int = 10
    features: int = 128
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # x: [B, H, W, C] float in [0, 1]
        h = x.astype(self.dtype) * 2.0 - 1.0
        h = nn.relu(nn.Conv(32, (3, 3), dtype=self.dtype, name="conv_0")(h))  # [B, 28, 28, 32]
        h = nn.relu(nn.Conv(64, (3, 3), strides=2, dtype=self.dtype, name="conv_1")(h))  # /2
        h = nn.relu(nn.Conv(64, (3, 3), strides=2, dtype=self.dtype, name="conv_2")(h))  # /4
        h = h.reshape(h.shape[0], -1)
        feats = nn.relu(nn.Dense(self.features, dtype=self.dtype, name="fc")(h))  # [B, 128]
        logits = nn.Dense(self.num_classes, dtype=self.dtype, name="head")(feats)
        return feats.astype(jnp.float32), logits.astype(jnp.float32)


def to_unit(images, levels: int) -> np.ndarray:
    """Integer images in [0, levels) -> float32 in [0, 1]."""
    return np.asarray(images, np.float32) / float(max(levels - 1, 1))


# --------------------------------------------------------------------------- training
def train(train_x: np.ndarray, train_y: np.ndarray, levels: int, binarize: bool,
          num_steps: int = 1500, batch_size: int = 128, lr: float = 2e-3, seed: int = 0,
          num_classes: int = 10, log=print):
    """Adam + cosine decay on cross-entropy. train_x: uint8 [N, H, W, C] (8-bit). With
    `binarize`, every batch is a fresh Bernoulli(x / 255) draw (dynamic binarization, the
    input distribution of binarized-MNIST models) and the net expects levels = 2."""
    model = SmallFeatureNet(num_classes)
    rng = np.random.default_rng(seed)
    params = model.init(jax.random.PRNGKey(seed), jnp.zeros((1, *train_x.shape[1:])))["params"]
    tx = optax.adam(optax.cosine_decay_schedule(lr, num_steps, 0.05))
    opt = tx.init(params)

    @jax.jit
    def step(params, opt, x, y):
        def loss_fn(p):
            _, logits = model.apply({"params": p}, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt = tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt, loss

    for s in range(num_steps):
        idx = rng.integers(0, len(train_x), batch_size)
        x = train_x[idx].astype(np.float32) / 255.0
        if binarize:
            x = (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)
        params, opt, loss = step(params, opt, x, train_y[idx])
        if log and (s % 250 == 0 or s == num_steps - 1):
            log(f"feature net step {s}: loss {float(loss):.4f}")
    return model, params


def accuracy(model, params, x01: np.ndarray, y: np.ndarray, batch_size: int = 1000) -> float:
    apply = jax.jit(lambda p, x: model.apply({"params": p}, x)[1])
    correct = 0
    for s in range(0, len(x01), batch_size):
        correct += int(np.sum(np.argmax(apply(params, x01[s : s + batch_size]), -1)
                              == y[s : s + batch_size]))
    return correct / len(x01)


# --------------------------------------------------------------------------- files
def save(path: str, params, meta: dict) -> None:
    """params + meta (levels, image shape, num_classes, dataset, accuracy) as one .npz."""
    flat = traverse_util.flatten_dict(jax.device_get(params), sep="/")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, __meta__=np.asarray(json.dumps(meta)), **{k: np.asarray(v)
                                                             for k, v in flat.items()})


def load(path: str):
    """-> (model, params, meta) of a file written by `save`."""
    if not os.path.exists(path):
        raise CheckpointError(
            f"feature net file not found: {path!r}. Train one with "
            "`python -m experiments.evaluation.train_feature_net --out=PATH`.")
    with np.load(path) as f:
        if "__meta__" not in f.files:
            raise CheckpointError(f"{path!r} is not a SmallFeatureNet file (no __meta__)")
        meta = json.loads(str(f["__meta__"]))
        flat = {k: jnp.asarray(f[k]) for k in f.files if k != "__meta__"}
    params = traverse_util.unflatten_dict(flat, sep="/")
    return SmallFeatureNet(meta.get("num_classes", 10)), params, meta


class SmallNetExtractor:
    """Integer images [B, H, W, C] (in the net's `levels`) -> {'pool': [B, 128],
    'logits': [B, classes]}; the interface of `extract.extract_features`."""

    suffix = METRIC_SUFFIX

    def __init__(self, path: str):
        self.model, self.params, self.meta = load(path)
        self.levels = int(self.meta["levels"])
        self.shape = tuple(self.meta["image_shape"])
        self.key = f"smallnet:{os.path.basename(path)}:{self.meta.get('fingerprint', '')}"

    def check(self, shape, levels: int) -> None:
        if tuple(shape) != self.shape or levels != self.levels:
            raise DataError(
                f"the feature net was trained on {self.shape} images with {self.levels} levels "
                f"({'binarized' if self.levels == 2 else '8-bit'}); these are {tuple(shape)} with "
                f"{levels} levels. Train a net for this data "
                "(experiments/evaluation/train_feature_net.py).")

    def apply(self, params, images, levels: int) -> dict:
        """images: integers in [0, levels) (levels must be the net's, see `check`)."""
        x = jnp.asarray(images, jnp.float32) / float(max(levels - 1, 1))
        feats, logits = self.model.apply({"params": params}, x)
        return {"pool": feats, "logits": logits}
