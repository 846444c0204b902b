"""PixelCNN++ on CIFAR-10 through TFDS: the paper's setting (2.92 bits/dim), for GPU / TPU.

Prepare once with `tfds build cifar10` (needs TensorFlow and the internet); training then reads
the ArrayRecord files through `tfds.data_source` (no TensorFlow).

Arguments (comma-separated, `cifar10.py:tiny`):
  tiny         a minimal model and a handful of steps (smoke runs; still needs the TFDS data)
  conditional  class-conditional (label embedding added before every gate)
"""
import ml_collections

from argen_jax.config_lib import load_sibling, parse_args

base_config = load_sibling(__file__, "base").base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "conditional"})
    tiny = "tiny" in args
    c = base_config(tiny)  # paper sizes: 160 filters, 5 blocks x 3 resolutions, 10 mixtures
    c.model.conditional = "conditional" in args

    c.data = ml_collections.ConfigDict()
    c.data.kind = "image"  # registry: which data builder
    c.data.name = "tfds"  # read through tfds.data_source
    c.data.tfds_name = "cifar10"
    c.data.data_dir = ""  # TFDS data_dir ('' = default ~/tensorflow_datasets)
    c.data.train_split = "train"
    c.data.test_split = "test"
    c.data.batch_size = 8 if tiny else 64  # global batch (split over the data mesh axis)
    c.data.eval_batch_size = 8 if tiny else 256
    c.data.train_limit = 0  # use only the first N train examples (0 = all)
    c.data.test_limit = 16 if tiny else 0  # use only the first N test examples (0 = all)
    return c
