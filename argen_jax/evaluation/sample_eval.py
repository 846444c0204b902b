"""Sample-quality metrics: the `config.eval` section, the feature extractor, the metrics.

`train/sample_metrics.py` runs them on a trained model (`--mode=eval` with
`config.eval.sample_metrics`): it draws `eval.num_samples` samples with per-sample seeds
(sample k uses fold_in(PRNGKey(seed), k), so the set is the same whatever the batch size or
device count), extracts features of the samples and of the whole test split (cached in
`eval.cache_dir`), and returns

    eval_samples/fd_<net>, eval_samples/precision_<net>, eval_samples/recall_<net>
    eval_samples/is_<net>, eval_samples/sfid_<net>        (Inception only)

where <net> is `smallnet` (feature_net.py, 28x28 data; NOT comparable with FID) or
`inception` (FID / IS / sFID). The samples are also written as an ADM-format sample batch.
"""
from __future__ import annotations

import dataclasses
import os

import numpy as np

from argen_jax.config_lib import check_choice
from argen_jax.errors import ConfigError
from argen_jax.evaluation import metrics
from argen_jax.evaluation.feature_net import SmallNetExtractor
from argen_jax.evaluation.inception import InceptionExtractor

FEATURES = ("smallnet", "inception")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    """The `config.eval` section."""

    sample_metrics: bool = False  # --mode=eval also samples (and decodes) and scores them
    features: str = "smallnet"  # smallnet (28x28 feature_net.py; not FID) | inception
    feature_net: str = ""  # .npz from experiments/evaluation/train_feature_net.py
    inception_weights: str = ""  # .npz from experiments/evaluation/convert_pt_inception.py
    num_samples: int = 1000  # sample k is seeded by fold_in(sample_seed, k)
    sample_seed: int = 0
    sample_batch_size: int = 0  # speed only: samples do not depend on it (0: all at once)
    feature_batch_size: int = 200  # images per feature-extraction batch
    pr_k: int = 3  # k of the k-NN manifolds of precision / recall
    cache_dir: str = ""  # test-set features cache ('' = WORKDIR/eval_cache)

    def __post_init__(self):
        check_choice(self, "features", FEATURES, "eval")
        for name in ("num_samples", "feature_batch_size", "pr_k"):
            if getattr(self, name) < 1:
                raise ConfigError(f"eval.{name} must be >= 1, got {getattr(self, name)}")
        if self.sample_batch_size < 0:
            raise ConfigError(f"eval.sample_batch_size must be >= 0, got "
                              f"{self.sample_batch_size}")


def build_extractor(ecfg: EvalSettings):
    kind = ecfg.features
    if kind == "smallnet":

        if not ecfg.feature_net:
            raise ConfigError("eval.features='smallnet' needs eval.feature_net (a .npz from "
                              "experiments/evaluation/train_feature_net.py)")
        return SmallNetExtractor(os.path.expanduser(ecfg.feature_net))
    if kind == "inception":

        if not ecfg.inception_weights:
            raise ConfigError("eval.features='inception' needs eval.inception_weights (see "
                              "argen_jax/evaluation/inception.py for the file)")
        return InceptionExtractor(os.path.expanduser(ecfg.inception_weights))
    raise ConfigError(f"eval.features must be 'smallnet' or 'inception', got {kind!r}")


def reference_images(data) -> np.ndarray:
    """Every (unpadded) test image of a data builder, in order (token data: the images its
    test tokens were made from)."""
    if hasattr(data, "test_images"):
        return data.test_images()
    xs = [b["image"][np.asarray(b["mask"]) > 0] for b in data.eval_batches()]
    return np.concatenate(xs)


def feature_metrics(ref: dict, fake: dict, suffix: str, k: int = 3,
                    ref_stats: dict | None = None) -> dict:
    """FD, precision / recall (and IS, sFID for Inception) of `fake` features against `ref`.
    ref_stats: {'pool', 'spatial'} `FeatureStats` stored in an ADM reference batch (its mu /
    sigma, mu_s / sigma_s), used for FD / sFID instead of the statistics of `ref`, as the ADM
    evaluator does; None entries fall back to `ref`."""
    ref_stats = ref_stats or {}

    def fd(name):
        if ref_stats.get(name) is not None:
            return metrics.stats_distance(ref_stats[name],
                                          metrics.FeatureStats.from_features(fake[name]))
        return metrics.fid(ref[name], fake[name])

    out = {f"fd_{suffix}": fd("pool")}
    p, r = metrics.precision_recall(ref["pool"], fake["pool"], k=k)
    out.update({f"precision_{suffix}": p, f"recall_{suffix}": r})
    if suffix == "inception":
        out["is_inception"] = metrics.inception_score(fake["logits"])[0]
        out["sfid_inception"] = fd("spatial")
    return out
