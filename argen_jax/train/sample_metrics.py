"""Sample-quality metrics of a trained experiment (`--mode=eval` with
`config.eval.sample_metrics`); the settings, extractors and metrics are in
`evaluation/sample_eval.py`."""
from __future__ import annotations

import hashlib
import json
import os
import time

import jax
import numpy as np
from absl import logging

from argen_jax.evaluation import reference_stats
from argen_jax.evaluation.extract import extract_features
from argen_jax.evaluation.sample_eval import build_extractor, feature_metrics, reference_images
from argen_jax.models.base import images_of


def reference_features(exp, extractor, workdir: str, levels: int) -> dict:
    """Features of the whole test split (cached in `eval.cache_dir` under a key naming the
    data config and the feature network)."""
    ecfg = exp.eval_settings
    data_key = hashlib.sha1(json.dumps(exp.config.data.to_dict(), sort_keys=True,
                                       default=str).encode()).hexdigest()[:12]
    cache_dir = os.path.expanduser(ecfg.cache_dir or os.path.join(workdir, "eval_cache"))
    return reference_stats.cached_features(
        cache_dir, f"test-{data_key}-{extractor.key}",
        lambda: extract_features(extractor, reference_images(exp.data), levels,
                                 ecfg.feature_batch_size, exp.mesh, desc="reference features"))


def score_images(exp, extractor, ref: dict, images: np.ndarray, levels: int) -> dict:
    """FD / precision / recall (and IS / sFID with Inception) of images against `ref`."""
    fake = extract_features(extractor, images, levels, exp.eval_settings.feature_batch_size,
                            exp.mesh, desc="sample features")
    return feature_metrics(ref, fake, extractor.suffix, exp.eval_settings.pr_k)


def evaluate_samples(exp, params, workdir: str, step: int) -> dict:
    ecfg = exp.eval_settings
    extractor = build_extractor(ecfg)
    num = ecfg.num_samples
    t0 = time.time()
    samples = exp.sample(params, num, seed=ecfg.sample_seed,
                         batch_size=ecfg.sample_batch_size or None)
    samples, levels = images_of(exp.family, samples)  # token models: decoded
    t_sample = time.time() - t0
    ref = reference_features(exp, extractor, workdir, levels)
    out = score_images(exp, extractor, ref, samples, levels)
    if jax.process_index() == 0:
        scale = 255.0 / max(levels - 1, 1)
        path = os.path.join(workdir, "samples", f"eval_{step:07d}.npz")
        reference_stats.write_sample_batch(
            path, np.round(samples * scale).astype(np.uint8))
    logging.info("sampled %d in %.1fs; %s", num, t_sample, out)
    return {f"eval_samples/{k}": v for k, v in out.items()}
