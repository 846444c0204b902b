"""Feature-extraction throughput (images/s) of the evaluator on this machine.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
    python -m experiments.benchmarks.speed.eval_throughput --data=/work/shared/data/mnist

Measures, in one run, after compilation (`extract_features` returns host arrays, so every
batch is finished), the small feature net on 28x28 binarized MNIST and the FID Inception-v3
on the same images resized to 299x299 RGB. Inception runs with random weights of the real
shapes (the timing does not depend on the values; the real file is not shipped). Prints one
JSON line (images/s of each network, and their ratio).
"""
import jax
import numpy as np
from absl import flags

from argen_jax.data.images import load_idx_folder
from argen_jax.data.pipeline import binarize_fixed
from argen_jax.evaluation import inception
from argen_jax.evaluation.extract import extract_features
from argen_jax.evaluation.feature_net import SmallNetExtractor
from experiments.benchmarks import common

_DATA = flags.DEFINE_string("data", "../shared/data/mnist", "MNIST idx folder.")
_NET = flags.DEFINE_string("feature_net", "/tmp/featnet/mnist_binarized.npz", "Feature net.")
_N_SMALL = flags.DEFINE_integer("n_small", 4000, "Images timed through the small net.")
_N_INC = flags.DEFINE_integer("n_inception", 32, "Images timed through Inception.")
_BS_INC = flags.DEFINE_integer("bs_inception", 16, "Inception batch size.")


def _images_per_s(ext, images, levels, bs) -> float:
    extract_features(ext, images[:bs], levels, bs, quiet=True)  # compile
    seconds = common.best_time(lambda: extract_features(ext, images, levels, bs, quiet=True),
                               repeats=1, warmup=0)
    return len(images) / seconds


def main(argv):
    del argv
    test = load_idx_folder(_DATA.value, "test")
    x_bin = binarize_fixed(test.images, 1234)
    small = SmallNetExtractor(_NET.value)
    rng = np.random.default_rng(0)
    sd = {k: rng.normal(0, 0.05, s).astype(np.float32) + (1.0 if "running_var" in k else 0.0)
          for k, (_, _, s) in inception.state_dict_keys().items()}
    inc = inception.InceptionExtractor(inception.state_dict_to_variables(sd))
    r_small = _images_per_s(small, x_bin[: _N_SMALL.value], 2, 200)
    r_inc = _images_per_s(inc, test.images[: _N_INC.value], 256, _BS_INC.value)
    common.emit({"benchmark": "eval_throughput", "devices": jax.device_count(),
                 "platform": jax.devices()[0].platform,
                 "smallnet_images_per_s": round(r_small, 1), "smallnet_batch": 200,
                 "inception_images_per_s": round(r_inc, 2),
                 "inception_batch": _BS_INC.value,
                 "smallnet_over_inception": round(r_small / r_inc, 1)})


if __name__ == "__main__":
    common.run(main)
