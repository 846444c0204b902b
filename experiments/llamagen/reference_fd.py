"""Reference points for the LlamaGen sample metrics: FD / precision / recall vs the whole test
set of (a) the tokenizer's reconstructions of N train images (decoded train token maps: what a
perfect token model could reach at best) and (b) N real train images (the floor at this N).

    python experiments/llamagen/reference_fd.py [--config experiments/llamagen/
        fashion_mnist.py:cpu] [--num 2000]
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

import numpy as np  # noqa: E402

from argen_jax import registry  # noqa: E402
from argen_jax.data.images import load_image_set  # noqa: E402
from argen_jax.evaluation.extract import extract_features  # noqa: E402
from argen_jax.evaluation.sample_eval import build_extractor, feature_metrics  # noqa: E402
from experiments.benchmarks.llamagen_sampling import load_config  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/llamagen/fashion_mnist.py:cpu")
    p.add_argument("--num", type=int, default=2000)
    a = p.parse_args()
    cfg = load_config(a.config)
    data = registry.build_data(cfg)
    fam = registry.build_family(cfg, data.spec)
    ext = build_extractor(cfg.eval)
    levels = fam.image_levels
    feats = lambda x: extract_features(ext, x, levels, 200, None)  # noqa: E731
    ref = feats(data.test_images())
    recon = fam.to_images(data.train_tokens[: a.num])
    tcfg = data.tokenizer_config().data
    tcfg.test_limit = 0
    real = np.asarray(load_image_set(tcfg, "train").images[: a.num])
    out = {"num": a.num,
           "tokenizer_reconstructions": feature_metrics(ref, feats(recon), ext.suffix,
                                                        cfg.eval.pr_k),
           "real_train_images": feature_metrics(ref, feats(real), ext.suffix, cfg.eval.pr_k)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
