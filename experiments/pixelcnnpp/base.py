"""Shared PixelCNN++ config sections (model / train / sample / mesh); the dataset files
(cifar10.py, fashion_mnist.py, patches.py) fill in `data` and their sizes."""
import ml_collections

from argen_jax.config_lib import parallel_config, section
from argen_jax.models.pixelcnnpp import PixelCNNPPSettings

# `tiny`: a minimal model (the settings' defaults are the paper's CIFAR-10 sizes)
TINY_MODEL = {"features": 8, "num_resnet": 1, "num_mixtures": 2, "dropout": 0.0}


def base_config(tiny: bool, **model) -> ml_collections.ConfigDict:
    """`model`: what differs from PixelCNNPPSettings (argen_jax/models/pixelcnnpp.py)
    besides the tiny sizes."""
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs (dropout) and data shuffling

    c.model = section(PixelCNNPPSettings, name="pixelcnnpp",
                      **{**(TINY_MODEL if tiny else {}), **model})

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 30 if tiny else 500_000
    c.train.lr = 2e-3 if tiny else 1e-3  # peak learning rate (Adam, as in the paper)
    c.train.schedule = "cosine"  # cosine | constant | linear, after linear warm-up
    c.train.warmup_steps = 5 if tiny else 1000
    c.train.end_lr_fraction = 0.05  # final lr = lr * this
    c.train.weight_decay = 0.0  # AdamW decoupled weight decay
    c.train.grad_clip = 1.0 if tiny else 0.0  # global-norm clipping (0 = off)
    c.train.ema_decay = 0.0 if tiny else 0.9995  # Polyak averaging for eval / sampling
    c.train.log_every = 10 if tiny else 100
    c.train.eval_every = 0 if tiny else 10_000  # 0: only at the end
    c.train.sample_every = 0  # 0: only at the end
    c.train.sample_at_end = True  # write a sample grid after the last step
    c.train.save_every = 30 if tiny else 2000
    c.train.max_to_keep = 3
    c.train.tensorboard = True
    c.train.quiet = False  # no progress bar

    c.sample = ml_collections.ConfigDict()
    c.sample.num = 4 if tiny else 64
    c.sample.batch_size = 4 if tiny else 64
    c.sample.seed = 0  # sample k uses fold_in(PRNGKey(seed), k)
    c.sample.temperature = 1.0  # scales component logits and logistic scales (1 = exact)

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
