"""Tokenizers for ImageNet (or any ImageNet-layout folder of your own images).

    python launch/main.py --config=experiments/tokenizer/imagenet.py --workdir=W \
        --config.data.path=/data/imagenet          # holds train/<class>/*.JPEG and val/

Default: LlamaGen's VQ-16 (Sun et al. 2024; its tokenizer/tokenizer_image/vq_train.py):
16,384 codes of 8 dims, l2-normalised, downsampling 16 (256px -> 16x16 tokens); L2
reconstruction + LPIPS (weight 1) + PatchGAN hinge loss (weight 0.5) from step 20,000;
AdamW lr 1e-4 constant, betas (0.9, 0.95), weight decay 0.05, clip 1.0, global batch 128,
40 epochs (400k steps of 1.28M images), bf16; random crop (LlamaGen's random_crop_arr,
80-100% of the resized short side) + horizontal flip. The LPIPS loss needs VGG16 weights
converted to the .npz layout of `argen_jax.losses.perceptual.load_perceptual_weights` at
`loss.perceptual_path` (or --config.loss.perceptual_weight=0).

Arguments (comma-separated, `imagenet.py:var,384`):
  var        VAR's multi-scale VQVAE (Tian et al. 2024): 4,096 codes of 32 dims, no l2
             normalisation, scales 1,2,3,4,5,6,8,10,13,16 (at 256px), ch 160, 3x3 quant convs
  f8         downsampling factor 8 (LlamaGen VQ-8: 32x32 tokens at 256px)
  384 | 512  the resolution (data.resolution; the default 256); with `var` the scales grow to
             the last one = resolution / 16 (VAR's 512 model: 1,2,3,4,6,9,13,18,24,32)
  tiny       a minute-long CPU run at 32px on a small folder (e.g. one written by
             experiments/data/make_image_folder.py): factor 4 (8x8 tokens), 64 codes

Then tokenize (experiments/tokenizer/tokenize_dataset.py) and train
experiments/llamagen/imagenet.py or experiments/var/imagenet.py on the token file.
"""
import ml_collections

from argen_jax.config_lib import parse_args, section
from argen_jax.data.image_folder import ImageFolderSettings
from argen_jax.models.vqgan import VAR_LAYOUT, VAR_QUANTIZER, VQGANLossSettings, VQGANSettings
from argen_jax.sections import parallel_config, train_section

RESOLUTIONS = {"384": 384, "512": 512}
VAR_SCALES_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)  # VAR's 512px model


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = parse_args(arg, {"var", "f8", "tiny", *RESOLUTIONS})
    tiny, var = "tiny" in args, "var" in args
    res = [RESOLUTIONS[a] for a in args if a in RESOLUTIONS]
    if len(res) > 1:
        raise ValueError(f"pick one resolution, got {sorted(res)}")
    res = 32 if tiny else res[0] if res else 256
    c = ml_collections.ConfigDict()
    c.seed = 0  # seeds init, the per-step rngs and data shuffling

    # argen_jax/models/vqgan.py VQGANSettings: the defaults are LlamaGen's VQ-16 nets
    m = dict(ch_mult=(1, 2, 2, 4)) if "f8" in args else {}
    if var:  # VAR's VQVAE: its codes, widths, quant convs, bicubic upsampling and phi schedule
        m.update(VAR_QUANTIZER, ch=VAR_LAYOUT["ch"], quant_conv_kernel=3,
                 upsample="torch_bicubic", phi_schedule="var")
        if res == 512:
            m.update(scales=VAR_SCALES_512)
        elif res == 384:
            m.update(scales=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 24))
    m.update(l2_normalize=not var, dtype="float32" if tiny else "bfloat16")
    if tiny:  # same code paths, seconds per step on a CPU
        m.update(ch=8, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=8, norm_groups=8,
                 mid_attention=False, codebook_size=64, code_dim=8,
                 scales=(1, 2, 4, 8), num_phi=2)
    c.model = section(VQGANSettings, name="vqgan", **m)
    c.loss = section(  # LlamaGen: L2 reconstruction (the default), LPIPS, hinge GAN at 0.5
        VQGANLossSettings, perceptual_weight=0.0 if tiny else 1.0,
        perceptual_path="" if tiny else "~/weights/lpips_vgg16.npz", disc_weight=0.5,
        disc_start=6 if tiny else 20000, disc_channels=8 if tiny else 64,
        disc_layers=2 if tiny else 3)

    # argen_jax/data/image_folder.py ImageFolderSettings (defaults: LlamaGen's random crop +
    # flip at 256px, batch 256); --config.data.path=/data/imagenet is required
    c.data = section(ImageFolderSettings, resolution=res, batch_size=8 if tiny else 128,
                     eval_batch_size=8 if tiny else 128, test_limit=8 if tiny else 0,
                     worker_count=0 if tiny else 16)
    c.data.kind = "image_folder"  # registry: argen_jax/data/builders.py

    c.train = train_section(
        num_steps=12 if tiny else 400_000, lr=2e-3 if tiny else 1e-4, schedule="constant",
        b2=0.95, weight_decay=0.0 if tiny else 0.05, grad_clip=1.0,
        log_every=4 if tiny else 100, eval_every=0 if tiny else 20000, sample_at_end=False,
        save_every=0 if tiny else 5000, tensorboard=not tiny, quiet=tiny)

    c.mesh, c.sharding = parallel_config()
    return c
