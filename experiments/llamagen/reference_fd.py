"""Reference points for the LlamaGen sample metrics: FD / precision / recall vs the whole test
set of (a) the tokenizer's reconstructions of N train images (decoded train token maps: what a
perfect token model could reach at best) and (b) N real train images (the floor at this N).

    python -m experiments.llamagen.reference_fd \
        [--config=experiments/llamagen/fashion_mnist.py:cpu] [--num=2000]
"""
import json

import numpy as np
from absl import app, flags
from ml_collections import config_flags

from argen_jax import registry
from argen_jax.data.images import load_image_set
from argen_jax.evaluation.extract import extract_features
from argen_jax.evaluation.sample_eval import build_extractor, feature_metrics

_CONFIG = config_flags.DEFINE_config_file(
    "config", "experiments/llamagen/fashion_mnist.py:cpu", "The LlamaGen experiment config "
    "(`path.py[:arg]`, --config.<key>= overrides), as launch/main.py takes it.",
    lock_config=False)
_NUM = flags.DEFINE_integer("num", 2000, "Train images (and reconstructions) scored.")


def main(argv):
    del argv
    cfg, num = _CONFIG.value, _NUM.value
    data = registry.build_data(cfg)
    fam = registry.build_family(cfg, data.spec)
    ext = build_extractor(cfg.eval)
    levels = fam.image_levels
    feats = lambda x: extract_features(ext, x, levels, 200, None)  # noqa: E731
    ref = feats(data.test_images())
    recon = fam.to_images(data.train_tokens[:num])
    tcfg = data.tokenizer_config().data
    tcfg.test_limit = 0
    real = np.asarray(load_image_set(tcfg, "train").images[:num])
    out = {"num": num,
           "tokenizer_reconstructions": feature_metrics(ref, feats(recon), ext.suffix,
                                                        cfg.eval.pr_k),
           "real_train_images": feature_metrics(ref, feats(real), ext.suffix, cfg.eval.pr_k)}
    print(json.dumps(out))


if __name__ == "__main__":
    app.run(main)
