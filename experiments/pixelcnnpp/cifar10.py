"""PixelCNN++ on CIFAR-10 through TFDS: the paper's setting (2.92 bits/dim), for GPU / TPU.

Prepare once with `tfds build cifar10` (needs TensorFlow and the internet); training then reads
the ArrayRecord files through `tfds.data_source` (no TensorFlow).

Arguments (comma-separated, `cifar10.py:tiny`):
  tiny         a minimal model and a handful of steps (smoke runs; still needs the TFDS data)
  conditional  class-conditional (label embedding added before every gate)
"""
import ml_collections

from argen_jax.config_lib import load_sibling, parse_args, section
from argen_jax.data.images import ImageDataSettings

base_config = load_sibling(__file__, "base").base_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "conditional"})
    tiny = "tiny" in args
    # paper sizes: 160 filters, 5 blocks x 3 resolutions, 10 mixtures
    c = base_config(tiny, conditional="conditional" in args)

    # config.data: argen_jax/data/images.py ImageDataSettings (TFDS, read through
    # tfds.data_source)
    c.data = section(ImageDataSettings, tfds_name="cifar10", batch_size=8 if tiny else 64,
                     eval_batch_size=8 if tiny else 256, test_limit=16 if tiny else 0)
    c.data.name = "tfds"
    return c
