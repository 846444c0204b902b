"""Sample-quality evaluation of a trained model: `--mode=eval` with `config.eval.sample_metrics`.

Draws `config.eval.num_samples` samples with per-sample seeds (`Experiment.sample`: sample k
uses fold_in(PRNGKey(seed), k), so the set is the same whatever the batch size or device
count), extracts features of the samples and of the whole test split (cached in
`eval.cache_dir`), and returns

    eval_samples/fd_<net>, eval_samples/precision_<net>, eval_samples/recall_<net>
    eval_samples/is_<net>, eval_samples/sfid_<net>        (Inception only)

where <net> is `smallnet` (feature_net.py, 28x28 data; NOT comparable with FID) or
`inception` (FID / IS / sFID). The samples are also written as an ADM-format sample batch.
"""
from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import numpy as np
from absl import logging

from argen_jax.errors import ConfigError
from argen_jax.evaluation import metrics, reference_stats
from argen_jax.evaluation.extract import extract_features
from argen_jax.models.base import images_of


def build_extractor(ecfg):
    kind = ecfg.get("features", "smallnet")
    if kind == "smallnet":
        from argen_jax.evaluation.feature_net import SmallNetExtractor

        if not ecfg.get("feature_net"):
            raise ConfigError("eval.features='smallnet' needs eval.feature_net (a .npz from "
                              "experiments/evaluation/train_feature_net.py)")
        return SmallNetExtractor(os.path.expanduser(ecfg.feature_net))
    if kind == "inception":
        from argen_jax.evaluation.inception import InceptionExtractor

        if not ecfg.get("inception_weights"):
            raise ConfigError("eval.features='inception' needs eval.inception_weights (see "
                              "argen_jax/evaluation/inception.py for the file)")
        return InceptionExtractor(os.path.expanduser(ecfg.inception_weights))
    raise ConfigError(f"eval.features must be 'smallnet' or 'inception', got {kind!r}")


def test_images(data) -> np.ndarray:
    """Every (unpadded) test image of a data builder, in order (token data: the images its
    test tokens were made from)."""
    if hasattr(data, "test_images"):
        return data.test_images()
    xs = [b["image"][np.asarray(b["mask"]) > 0] for b in data.eval_batches()]
    return np.concatenate(xs)


def feature_metrics(ref: dict, fake: dict, suffix: str, k: int = 3) -> dict:
    out = {f"fd_{suffix}": metrics.fid(ref["pool"], fake["pool"])}
    p, r = metrics.precision_recall(ref["pool"], fake["pool"], k=k)
    out.update({f"precision_{suffix}": p, f"recall_{suffix}": r})
    if suffix == "inception":
        out["is_inception"] = metrics.inception_score(fake["logits"])[0]
        out["sfid_inception"] = metrics.fid(ref["spatial"], fake["spatial"])
    return out


def evaluate_samples(exp, params, workdir: str, step: int) -> dict:
    ecfg = exp.config.eval
    extractor = build_extractor(ecfg)
    num = int(ecfg.get("num_samples", 1000))
    t0 = time.time()
    samples = exp.sample(params, num, seed=ecfg.get("sample_seed", 0),
                         batch_size=ecfg.get("sample_batch_size", 0) or None)
    samples, levels = images_of(exp.family, samples)  # token models: decoded
    t_sample = time.time() - t0
    bs = ecfg.get("feature_batch_size", 200)
    data_key = hashlib.sha1(json.dumps(exp.config.data.to_dict(), sort_keys=True,
                                       default=str).encode()).hexdigest()[:12]
    cache_dir = os.path.expanduser(ecfg.get("cache_dir", "") or os.path.join(workdir,
                                                                             "eval_cache"))
    ref = reference_stats.cached_features(
        cache_dir, f"test-{data_key}-{extractor.key}",
        lambda: extract_features(extractor, test_images(exp.data), levels, bs,
                                 exp.mesh, desc="reference features"))
    fake = extract_features(extractor, samples, levels, bs, exp.mesh,
                            desc="sample features")
    out = feature_metrics(ref, fake, extractor.suffix, int(ecfg.get("pr_k", 3)))
    if jax.process_index() == 0:
        scale = 255.0 / max(levels - 1, 1)
        path = os.path.join(workdir, "samples", f"eval_{step:07d}.npz")
        reference_stats.write_sample_batch(
            path, np.round(samples * scale).astype(np.uint8))
    logging.info("sampled %d in %.1fs; %s", num, t_sample, out)
    return {f"eval_samples/{k}": v for k, v in out.items()}
