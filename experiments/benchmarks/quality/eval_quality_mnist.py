"""Sample quality of a trained binarized-MNIST model next to a floor and a ceiling.

Rows (all N images, all scored against the features of the whole binarized MNIST test set,
binarized with the data pipeline's fixed seed):
    model      the model's samples: the ADM-format sample batch that
               `launch/main.py --mode=eval --config.eval.sample_metrics=True` wrote
    held-out   N real training images the feature net never saw (train[50000:]),
               binarized with another fixed seed: the floor a perfect model would reach
    noise      a trivially bad generator: independent Bernoulli pixels with the training
               set's per-pixel means: the ceiling

    python -m experiments.evaluation.train_feature_net --data=DATA --steps=300 \
        --out=/tmp/featnet/mnist_binarized.npz
    python launch/main.py --config=experiments/pixelcnn/mnist.py:idx --config.data.path=DATA \
        --workdir=W --mode=eval --config.eval.sample_metrics=True \
        --config.eval.feature_net=/tmp/featnet/mnist_binarized.npz --config.eval.num_samples=100
    python -m experiments.benchmarks.quality.eval_quality_mnist --data=DATA \
        --feature_net=/tmp/featnet/mnist_binarized.npz --samples=W/samples/eval_<step>.npz

Metrics are FD / precision / recall in the small feature net's space (`*_smallnet`), not FID.
Prints one JSON line (a row of metrics per generator).
"""
import numpy as np
from absl import flags

from argen_jax.data.images import load_idx_folder
from argen_jax.data.pipeline import binarize_fixed
from argen_jax.evaluation import reference_stats
from argen_jax.evaluation.extract import extract_features
from argen_jax.evaluation.feature_net import SmallNetExtractor
from argen_jax.evaluation.sample_eval import feature_metrics
from experiments.benchmarks import common

_DATA = flags.DEFINE_string("data", "../shared/data/mnist", "MNIST idx folder.")
_NET = flags.DEFINE_string("feature_net", "/tmp/featnet/mnist_binarized.npz", "Feature net.")
_SAMPLES = flags.DEFINE_string("samples", None, "ADM sample batch (.npz) of the model.")
_NUM = flags.DEFINE_integer("num", 0, "Images per row (0: as many as the sample batch has).")
_CACHE = flags.DEFINE_string("cache_dir", "/tmp/eval_cache", "Reference-feature cache.")


def main(argv):
    del argv
    ext = SmallNetExtractor(_NET.value)
    train = load_idx_folder(_DATA.value, "train")
    test = load_idx_folder(_DATA.value, "test")
    rows = {}
    if _SAMPLES.value:
        model = reference_stats.read_images(_SAMPLES.value)  # uint8 {0, 255}
        rows["model samples"] = (model > 127).astype(np.uint8)
    n = _NUM.value or (len(rows["model samples"]) if rows else 1000)
    rows = {k: v[:n] for k, v in rows.items()}
    rows["held-out real (floor)"] = binarize_fixed(train.images[50000 : 50000 + n], 4321)
    p = train.images[:50000].astype(np.float64).mean(0) / 255.0  # per-pixel marginals
    rng = np.random.default_rng(0)
    rows["iid-pixel noise (ceiling)"] = (rng.random((n, *p.shape)) < p).astype(np.uint8)

    ref = reference_stats.cached_features(
        _CACHE.value, f"mnist-test-binarized-1234-{ext.key}",
        lambda: extract_features(ext, binarize_fixed(test.images, 1234), 2,
                                 desc="test-set features"))
    out = {"benchmark": "eval_quality_mnist", "reference_images": len(test),
           "images_per_row": n,
           "feature_net_test_accuracy": ext.meta.get("test_accuracy", float("nan")),
           "rows": {}}
    for name, images in rows.items():
        feats = extract_features(ext, images, 2, desc=name, quiet=True)
        m = feature_metrics(ref, feats, ext.suffix)
        out["rows"][name] = {k: round(float(m[k]), 4) for k in
                             ("fd_smallnet", "precision_smallnet", "recall_smallnet")}
    common.emit(out)


if __name__ == "__main__":
    common.run(main)
