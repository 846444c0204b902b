"""Shared PixelCNN++ config sections (model / train / sample / mesh); the dataset files
(cifar10.py, fashion_mnist.py, patches.py) fill in `data` and their sizes."""
import ml_collections

from argen_jax.config_lib import section
from argen_jax.models.pixelcnnpp import PixelCNNPPSettings
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sections import parallel_config, train_section

# `tiny`: a minimal model (the settings' defaults are the paper's CIFAR-10 sizes)
TINY_MODEL = {"features": 8, "num_resnet": 1, "num_mixtures": 2, "dropout": 0.0}


def base_config(tiny: bool, **model) -> ml_collections.ConfigDict:
    """`model`: what differs from PixelCNNPPSettings (argen_jax/models/pixelcnnpp.py)
    besides the tiny sizes."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs (dropout) and data shuffling

    c.model = section(PixelCNNPPSettings, name="pixelcnnpp",
                      **{**(TINY_MODEL if tiny else {}), **model})

    c.train = train_section(
        num_steps=30 if tiny else 500_000, lr=2e-3 if tiny else 1e-3,
        warmup_steps=5 if tiny else 1000, end_lr_fraction=0.05, grad_clip=1.0 if tiny else 0.0,
        ema_decay=0.0 if tiny else 0.9995, log_every=10 if tiny else 100,
        eval_every=0 if tiny else 10_000, save_every=30 if tiny else 2000)

    c.sample = section(SamplingSettings, num=4 if tiny else 64, batch_size=4 if tiny else 64)

    c.mesh, c.sharding = parallel_config()
    return c


def run_length(c: ml_collections.ConfigDict, cpu: bool, cpu_warmup: int,
               cpu_steps: int) -> None:
    """The train / sample schedule of a dataset file's non-tiny sizes: the 2-core CPU run
    (`cpu`, `cpu_steps` steps: ~15-50 min on an idle 2-core machine) or the paper-length run."""
    c.train.num_steps = cpu_steps if cpu else 100_000
    c.train.lr = 2e-3 if cpu else 1e-3
    c.train.warmup_steps = cpu_warmup if cpu else 1000
    c.train.sample_at_end = not cpu  # raster sampling costs ~H*W forward passes: run
    # `--mode=sample` separately on CPU
    c.train.ema_decay = 0.999 if cpu else 0.9995  # Polyak averaging over ~1k / ~2k steps
    c.train.eval_every = 1000 if cpu else 5000
    c.train.save_every = 1000 if cpu else 2000
    c.train.log_every = 100
    c.sample.num = c.sample.batch_size = 8 if cpu else 64
