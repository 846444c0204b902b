"""LlamaGen's VQ tokenizer setting (Sun et al. 2024, VQ-16) for GPU users, and VAR's VQVAE.

Arguments (comma-separated, `llamagen.py:var`):
  f8          downsampling factor 8 (32x32 tokens at 256px) instead of 16 (16x16 tokens)
  exact       LlamaGen's exact VQ-16 / VQ-8 layout (so `argen_jax.pretrained.torch_llamagen_vq`
              can load its released vq_ds16_c2i.pt / vq_ds8_c2i.pt): stride-2 convs padded
              bottom/right only, and an AttnBlock after every ResBlock of the lowest
              resolution in the encoder and the decoder (72M parameters at VQ-16); with
              `var`: VAR's released VQVAE vae_ch160v4096z32.pth (ch 160, 3x3 quant convs,
              PyTorch bicubic upsampling, VAR's phi schedule; argen_jax.pretrained.torch_var_vq);
              float32 and no perceptual loss (inference; set loss.perceptual_* to fine-tune)
  var         VAR's multi-scale residual quantizer: 4,096 codes of 32 dims, scales
              1,2,3,4,5,6,8,10,13,16, 4 shared phi convs, no l2 normalisation
  tiny        shrinks everything to seconds on CPU (same code paths), for smoke tests

ImageNet 256 through TFDS (`tfds build imagenet2012` once; nothing is downloaded at run time).
LlamaGen trains 40 epochs at batch 128, lr 1e-4, betas (0.9, 0.95), disc from step 20k.
The perceptual loss needs VGG16 LPIPS weights converted to the .npz layout documented in
`argen_jax.losses.perceptual.load_perceptual_weights` at `loss.perceptual_path`.
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.models.vqgan import (
    LLAMAGEN_LAYOUT,
    VAR_LAYOUT,
    VAR_QUANTIZER,
    VQGANLossSettings,
    VQGANSettings,
)
from argen_jax.sections import parallel_config


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"f8", "var", "tiny", "exact"})
    tiny, var = "tiny" in args, "var" in args
    c = ml_collections.ConfigDict()
    c.seed = 0

    # settings and their meaning: argen_jax/models/vqgan.py (VQGANSettings, VQGANLossSettings);
    # the defaults are LlamaGen's VQ-16 nets (factor 16: ch_mult (1, 1, 2, 2, 4))
    exact = "exact" in args
    m = dict(ch_mult=(1, 2, 2, 4)) if "f8" in args else {}  # factor 8
    if var:  # VAR's codes: 4,096 of 32 dims, scales 1..16, no l2 normalisation
        m.update(VAR_QUANTIZER)
    if exact:  # the released nets, parameter for parameter (argen_jax/pretrained/torch_*_vq.py)
        m.update(VAR_LAYOUT if var else LLAMAGEN_LAYOUT)
    # exact: the released nets for inference and conversion, in float32 (bfloat16 costs them
    # ~3e-3 in reconstructions)
    m.update(l2_normalize=not var, dtype="float32" if tiny or exact else "bfloat16")
    if tiny:  # MNIST 28x28 -> 32x32 so the factor-16 net still fits; VAR's last scale = 2
        m.update(ch=8, num_res_blocks=1, z_channels=8, norm_groups=8, codebook_size=64,
                 code_dim=8, pad_to=32, scales=(1, 2) if "f8" not in args else (1, 2, 4))
    c.model = section(VQGANSettings, name="vqgan", **m)
    c.loss = section(  # LlamaGen: L2 reconstruction, LPIPS, hinge GAN with weight 0.5
        # exact (the released nets): no perceptual net needed to build them; set
        # loss.perceptual_weight / perceptual_path to fine-tune with LPIPS
        VQGANLossSettings, perceptual_weight=0.0 if tiny or exact else 1.0,
        perceptual_path="" if tiny or exact else "~/weights/lpips_vgg16.npz", disc_weight=0.5,
        disc_start=5 if tiny else 20000, disc_channels=8 if tiny else 64,
        disc_layers=2 if tiny else 3)

    c.data = ml_collections.ConfigDict()
    c.data.kind = "image"
    c.data.name = "mnist_offline" if tiny else "tfds"
    c.data.tfds_name = "imagenet2012"  # prepared beforehand; images must be 256x256
    c.data.data_dir = ""
    c.data.path = ""
    c.data.binarize = "none"
    c.data.batch_size = 8 if tiny else 128
    c.data.eval_batch_size = 48 if tiny else 128
    c.data.train_limit = 0
    c.data.test_limit = 50 if tiny else 0

    c.train = ml_collections.ConfigDict()
    c.train.num_steps = 10 if tiny else 400_000  # ~40 epochs of ImageNet at batch 128
    c.train.lr = 1e-4
    c.train.schedule = "constant"
    c.train.warmup_steps = 0
    c.train.end_lr_fraction = 1.0
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.weight_decay = 0.05
    c.train.grad_clip = 1.0
    c.train.ema_decay = 0.0
    c.train.log_every = 5 if tiny else 100
    c.train.eval_every = 0 if tiny else 20000
    c.train.sample_every = 0
    c.train.sample_at_end = False
    c.train.save_every = 0 if tiny else 5000
    c.train.max_to_keep = 3
    c.train.tensorboard = not tiny
    c.train.quiet = tiny

    c.mesh, c.sharding = parallel_config()
    return c
