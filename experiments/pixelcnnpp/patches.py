"""PixelCNN++ on 32x32 RGB patches of the real photos that ship with scikit-image (offline):
train patches from six photos, test patches from two other photos (astronaut, coffee).
The RGB mixture uses the paper's linear channel coupling (10 parameters per component).

Arguments (comma-separated, `patches.py:cpu`):
  tiny  minimal model, few steps, a few hundred patches
  cpu   a small model and 300 steps: a short run on a shared 2-core CPU
"""
import ml_collections

from experiments.common import parse_args
from experiments.pixelcnnpp.base import base_config, run_length


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "cpu"})
    tiny, cpu = "tiny" in args, "cpu" in args
    c = base_config(tiny)
    if not tiny:
        c.model.features = 32 if cpu else 96
        c.model.num_resnet = 1 if cpu else 4
        c.model.num_mixtures = 5 if cpu else 10
        c.model.dropout = 0.0 if cpu else 0.5
        run_length(c, cpu, cpu_warmup=50)

    c.data = ml_collections.ConfigDict()
    c.data.kind = "photo_patches"  # registry: argen_jax.data.patches
    c.data.patch_size = 32  # patch side (divisible by 4 for the 3 resolutions)
    c.data.train_stride = 16  # train patches overlap by half; test patches never overlap
    c.data.train_photos = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry",
                           "retina", "stereo_motorcycle")  # skimage.data photos
    c.data.test_photos = ("astronaut", "coffee")  # held-out photos
    c.data.batch_size = 4 if tiny else (16 if cpu else 64)  # global batch
    c.data.eval_batch_size = 16 if tiny else 118  # 472 test patches = 4 x 118
    c.data.train_limit = 256 if tiny else 0  # spread subset of N train patches (0 = all)
    c.data.test_limit = 16 if tiny else 0  # spread subset of N test patches (0 = all)
    return c
