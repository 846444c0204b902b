"""Feature-extraction throughput (images/s) of the evaluator on this machine.

    XLA_FLAGS=--xla_cpu_multi_thread_eigen=false \
    python experiments/benchmarks/eval_throughput.py --data=/work/shared/data/mnist

Measures, in one run, after compilation (`extract_features` returns host arrays, so every
batch is finished), the small feature net on 28x28 binarized MNIST and the FID Inception-v3
on the same images resized to 299x299 RGB. Inception runs with random weights of the real
shapes (the timing does not depend on the values; the real file is not shipped).
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from argen_jax.data.images import load_idx_folder  # noqa: E402
from argen_jax.data.pipeline import binarize_fixed  # noqa: E402
from argen_jax.evaluation import inception  # noqa: E402
from argen_jax.evaluation.extract import extract_features  # noqa: E402
from argen_jax.evaluation.feature_net import SmallNetExtractor  # noqa: E402

_DATA = flags.DEFINE_string("data", "../shared/data/mnist", "MNIST idx folder.")
_NET = flags.DEFINE_string("feature_net", "/tmp/featnet/mnist_binarized.npz", "Feature net.")
_N_SMALL = flags.DEFINE_integer("n_small", 4000, "Images timed through the small net.")
_N_INC = flags.DEFINE_integer("n_inception", 32, "Images timed through Inception.")
_BS_INC = flags.DEFINE_integer("bs_inception", 16, "Inception batch size.")


def _time(ext, images, levels, bs):
    extract_features(ext, images[:bs], levels, bs, quiet=True)  # compile
    t = time.perf_counter()
    out = extract_features(ext, images, levels, bs, quiet=True)
    jax.block_until_ready(out)
    return len(images) / (time.perf_counter() - t)


def main(argv):
    del argv
    test = load_idx_folder(_DATA.value, "test")
    x_bin = binarize_fixed(test.images, 1234)
    small = SmallNetExtractor(_NET.value)
    rng = np.random.default_rng(0)
    sd = {k: rng.normal(0, 0.05, s).astype(np.float32) + (1.0 if "running_var" in k else 0.0)
          for k, (_, _, s) in inception.state_dict_keys().items()}
    inc = inception.InceptionExtractor(inception.state_dict_to_variables(sd))
    r_small = _time(small, x_bin[: _N_SMALL.value], 2, 200)
    r_inc = _time(inc, test.images[: _N_INC.value], 256, _BS_INC.value)
    print(f"devices: {jax.device_count()} x {jax.devices()[0].platform}")
    print(f"small feature net, 28x28x1, batch 200:        {r_small:9.1f} images/s")
    print(f"FID Inception-v3, 299x299x3, batch {_BS_INC.value:3d}:      {r_inc:9.2f} images/s")
    print(f"ratio small / Inception: {r_small / r_inc:.0f}x")


if __name__ == "__main__":
    app.run(main)
