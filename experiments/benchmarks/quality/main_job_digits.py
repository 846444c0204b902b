"""Do the main job's samples look like digits? A small MNIST classifier's view.

    python -m experiments.evaluation.train_feature_net --data=../shared/data/mnist \
        --out=/tmp/featnet/mnist_binarized.npz          # once (binarized MNIST, ~99% test acc)
    python launch/main.py --config=experiments/pixelcnn/mnist.py:tiny --workdir=W
    python -m experiments.benchmarks.quality.main_job_digits --workdir=W \
        --feature_net=/tmp/featnet/mnist_binarized.npz

Draws `--per_class` samples of each digit from the trained class-conditional run (the seeds
of `--mode=sample`) and as many binarized MNIST test digits, and reports for both the
classifier's mean confidence (max softmax probability) and how often it names the digit that
was asked for (the label, for test digits). A model whose samples read as digits comes close
to the test digits' figures; noise scores ~0.1 agreement. One JSON line.
"""
import jax
import numpy as np
from absl import flags

from argen_jax.data.images import load_idx_folder
from argen_jax.data.pipeline import binarize_fixed
from argen_jax.evaluation.feature_net import SmallNetExtractor
from argen_jax.inference import open_run
from experiments.benchmarks import common

_WORKDIR = flags.DEFINE_string("workdir", None, "A trained run of experiments/pixelcnn/mnist.py.",
                               required=True)
_NET = flags.DEFINE_string("feature_net", "/tmp/featnet/mnist_binarized.npz",
                           "Binarized-MNIST feature net (experiments/evaluation/"
                           "train_feature_net.py).")
_DATA = flags.DEFINE_string("data", "../shared/data/mnist", "MNIST idx folder (test digits).")
_PER_CLASS = flags.DEFINE_integer("per_class", 10, "Samples (and test digits) per digit.")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")


def classify(ext: SmallNetExtractor, images: np.ndarray, labels: np.ndarray) -> dict:
    """Mean max-softmax confidence and agreement with `labels` of binary images."""
    logits = np.asarray(jax.device_get(ext.apply(ext.params, images, 2)["logits"]))
    p = np.exp(logits - logits.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    return {"confidence": round(float(p.max(-1).mean()), 4),
            "agreement": round(float((p.argmax(-1) == labels).mean()), 4)}


def main(argv):
    del argv
    ext = SmallNetExtractor(_NET.value)
    run = open_run(_WORKDIR.value)
    n = 10 * _PER_CLASS.value
    labels = np.arange(n) % 10
    with common.Stopwatch() as sw:
        samples = run.sample(n, seed=_SEED.value, labels=labels)
    ext.check(samples.shape[1:], run.spec.levels)
    test = load_idx_folder(_DATA.value, "test")
    pick = np.concatenate([np.flatnonzero(test.labels == d)[:_PER_CLASS.value]
                           for d in range(10)])
    real = binarize_fixed(test.images[pick], 1234)
    common.emit({"benchmark": "main_job_digits", "workdir": _WORKDIR.value,
                 "step": int(run.step), "num": n,
                 "samples": classify(ext, samples, labels),
                 "test_digits": classify(ext, real, test.labels[pick]),
                 "sampling_seconds": round(sw.seconds, 1),
                 "feature_net_test_accuracy": ext.meta.get("test_accuracy")})


if __name__ == "__main__":
    common.run(main)
