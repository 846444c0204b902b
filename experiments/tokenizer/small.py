"""VQ tokenizer for 28x28 / 32x32 data on CPU (Fashion-MNIST, MNIST, CIFAR-sized images).

Arguments (comma-separated, `small.py:multiscale,tiny`):
  multiscale  VAR's multi-scale residual quantizer (scales 1,2,3,4,6,8) instead of one map
  gan         switch the PatchGAN hinge loss on at train.num_steps // 2
  ema         EMA codebook updates instead of the codebook loss
  mnist       real MNIST (idx folder ../shared/data/mnist) instead of Fashion-MNIST
  patches     32x32 RGB patches of offline photos (held-out photos for eval)
  tiny        a seconds-long run on the offline MNIST subset, for tests and smoke runs

28x28 images are padded to 32x32 (pixel value 0), downsampled by 4 to an 8x8 token map.
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.models.vqgan import VQGANLossSettings, VQGANSettings
from argen_jax.sections import parallel_config, photo_patches_data


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"tiny", "multiscale", "gan", "ema", "mnist", "patches"})
    tiny, ms = "tiny" in args, "multiscale" in args
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # settings and their meaning: argen_jax/models/vqgan.py (VQGANSettings, VQGANLossSettings)
    c.model = section(
        VQGANSettings, name="vqgan", ch=8 if tiny else 16, ch_mult=(1, 2, 2), num_res_blocks=1,
        z_channels=16 if tiny else 32, mid_attention=not tiny, norm_groups=8,
        pad_to=32,  # pad 28x28 images to 32x32
        quantizer="multiscale" if ms else "single", codebook_size=64 if tiny else 512,
        l2_normalize=not ms,  # cosine codes (LlamaGen); VAR uses plain Euclidean codes
        ema="ema" in args, restart_threshold=0.0 if tiny else 0.03,
        usage_decay=0.9,  # the usage EMA that finds dead codes, for short runs
        scales=(1, 2, 4, 8) if tiny else (1, 2, 3, 4, 6, 8), num_phi=2 if tiny else 4)
    c.loss = section(
        VQGANLossSettings, rec_loss="l1",
        disc_weight=0.1 if "gan" in args else 0.0,
        disc_channels=16 if tiny else 32, disc_layers=2)  # disc_start: set below

    c.data = ml_collections.ConfigDict()
    c.data.kind = "image"
    c.data.name = "mnist_offline" if tiny else "idx"  # mnist_offline | digits | idx | tfds
    c.data.path = "../shared/data/mnist" if "mnist" in args else "../shared/data/fashion_mnist"
    c.data.binarize = "none"  # tokenizers see 8-bit pixels
    c.data.batch_size = 16 if tiny else 32
    c.data.eval_batch_size = 64 if tiny else 250  # divisible by the test's 8 devices
    c.data.train_limit = 0  # first N train examples (0 = all)
    c.data.test_limit = 100 if tiny else 2000  # first N test examples (0 = all)
    if "patches" in args:
        if "mnist" in args:
            raise ValueError("choose one dataset: 'mnist' or 'patches'")
        c.model.pad_to = 0  # patches are already 32x32
        c.data = photo_patches_data(  # the same split as PixelCNN++'s patches.py
            batch_size=16 if tiny else 32, eval_batch_size=16 if tiny else 118,
            train_limit=256 if tiny else 0, test_limit=16 if tiny else 0)

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 20 if tiny else 1500
    c.train.lr = 2e-3 if tiny else 1e-3  # peak learning rate (both players)
    c.train.schedule = "cosine"
    c.train.warmup_steps = 2 if tiny else 100
    c.train.end_lr_fraction = 0.1
    c.train.b1 = 0.9
    c.train.b2 = 0.95  # LlamaGen's betas
    c.train.weight_decay = 0.0
    c.train.grad_clip = 1.0  # per player
    c.train.ema_decay = 0.0  # no Polyak averaging (it would also average quantizer state)
    c.train.log_every = 10 if tiny else 50
    c.train.eval_every = 0 if tiny else 500
    c.train.sample_every = 0  # a tokenizer has no sampler
    c.train.sample_at_end = False
    c.train.save_every = 0 if tiny else 250
    c.train.max_to_keep = 2
    c.train.tensorboard = not tiny
    c.train.quiet = tiny
    c.loss.disc_start = c.train.num_steps // 2

    c.mesh, c.sharding = parallel_config()
    return c
