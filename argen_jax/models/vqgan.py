"""The VQGAN tokenizer family (Esser et al. 2021; LlamaGen's VQ-16; VAR's multi-scale VQVAE).

Settings: `VQGANSettings` (config.model: the nets of `layers/vq_nets.py` and the quantizer of
`layers/quantizer/`) and `VQGANLossSettings` (config.loss). Losses: L1 or L2 reconstruction,
the LPIPS-style perceptual loss (`losses/perceptual.py`), the quantizer's codebook +
commitment (+ entropy) loss, and PatchGAN hinge losses (`losses/gan.py`) from `loss.disc_start`.

One optimizer, two players: `params` = {'generator', 'discriminator', 'vq_state',
'perceptual'}. The loss is the sum of both players' objectives (`losses/gan.py`), so one
gradient of the sum is exactly (dG, dD); `param_groups` gives each player its own AdamW,
freezes the perceptual weights and *assigns* the quantizer's EMA / restart state (`vq_state`)
through `assign_surrogate`. A tokenizer has no sampler. A trained one is used through
`models.tokenizer.Tokenizer.load(workdir)`.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.evaluation.metrics import psnr, ssim
from argen_jax.layers import quantizer as qlib
from argen_jax.layers.repeat import check_remat
from argen_jax.layers.vq_nets import ImageSpace, PatchDiscriminator, VQModel, square_taps
from argen_jax.losses.gan import gated_hinge_losses
from argen_jax.losses.perceptual import load_perceptual_weights, perceptual_distance
from argen_jax.models.base import ASSIGNED, FROZEN, Family, assign_surrogate

STATE = qlib.STATE
VAR_SCALES = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)


@dataclasses.dataclass(frozen=True)
class VQGANSettings:
    """config.model of a tokenizer. Defaults: LlamaGen's VQ-16 nets with 'same' padding."""

    ch: int = 128  # base channels of the conv ResNet
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # channel multipliers; factor 2^(len-1)
    num_res_blocks: int = 2  # ResNet blocks per resolution (decoder: +1)
    z_channels: int = 256  # encoder output channels before the quant conv to the codes
    mid_attention: bool = True  # self-attention in the middle block
    norm_groups: int = 32  # GroupNorm groups (capped by the channels)
    pad_to: int = 0  # pad images to pad_to x pad_to (value 0) before encoding (0 = none)
    # 'same': centred stride-2 taps; 'pad01': LlamaGen's (pad bottom/right, VALID)
    downsample: str = "same"
    attn_at_lowest: bool = False  # AttnBlock after each lowest-level ResBlock (LlamaGen)
    quant_conv_kernel: int = 1  # kernel of quant / post-quant convs (VAR's VQVAE: 3)
    impl: str = "conv"  # 'conv' (lax.conv, fastest everywhere) or 'taps' (slices + matmul)
    dtype: str = "float32"  # compute dtype
    remat: str = "none"  # ResBlocks' rematerialisation: 'none' | 'full' | a
    #   jax.checkpoint_policies name ('dots_saveable', 'nothing_saveable', ...)
    # ---- quantizer (layers/quantizer/)
    quantizer: str = "single"  # single (one token map) | multiscale (VAR's scales)
    codebook_size: int = 16384  # number of codes K
    code_dim: int = 8  # dims of each code (low-dim codes, LlamaGen)
    beta: float = 0.25  # commitment weight
    l2_normalize: bool | None = None  # cosine codes; None: True single, False multiscale
    entropy_weight: float = 0.0  # entropy-loss weight (0 = off)
    entropy_temperature: float = 0.01  # softmax temperature of the entropy loss
    ema: bool = False  # EMA codebook updates instead of the codebook loss
    ema_decay: float = 0.99  # EMA decay of the codebook statistics
    restart_threshold: float = 0.0  # restart codes with usage EMA < threshold / K (0 = off)
    usage_decay: float = 0.99  # decay of the usage EMA that finds dead codes
    scales: tuple[int, ...] = VAR_SCALES  # multiscale token-map sizes, coarse to fine
    num_phi: int = 4  # phi refinement convs shared over scales (0 = none)
    phi_ratio: float = 0.5  # x * (1 - r) + phi(x) * r
    # code upsampling: jax.image.resize method ('cubic', a=-0.5) or 'torch_bicubic' (VAR)
    upsample: str = "cubic"
    phi_schedule: str = "even"  # which phi refines scale s: even | var (VAR's)

    def __post_init__(self):
        for k in ("ch", "num_res_blocks", "z_channels", "norm_groups", "codebook_size",
                  "code_dim", "quant_conv_kernel"):
            if getattr(self, k) < 1:
                raise ConfigError(f"model.{k} must be positive, got {getattr(self, k)}")
        if not self.ch_mult:
            raise ConfigError("model.ch_mult must list at least one level")
        if min(self.ch_mult) <= 0:
            raise ConfigError(f"model.ch_mult={tuple(self.ch_mult)}: every channel multiplier "
                              "must be positive")
        config_lib.check_choice(self, "dtype", config_lib.COMPUTE_DTYPES)
        check_remat(self.remat)
        if self.quantizer not in ("single", "multiscale"):
            raise ConfigError(f"model.quantizer must be single or multiscale, got "
                              f"{self.quantizer!r}")
        config_lib.check_choice(self, "upsample", qlib.UPSAMPLE_METHODS)
        square_taps(3, self.downsample)  # ConfigError for a bad padding name

    @property
    def multiscale(self) -> bool:
        return self.quantizer == "multiscale"

    def quantizer_kwargs(self) -> dict:
        """The fields of `VectorQuantizer` / `MultiScaleResidualQuantizer`."""
        qk = dict(codebook_size=self.codebook_size, code_dim=self.code_dim, beta=self.beta,
                  l2_normalize=(not self.multiscale if self.l2_normalize is None
                                else self.l2_normalize),
                  entropy_weight=self.entropy_weight,
                  entropy_temperature=self.entropy_temperature, ema=self.ema,
                  ema_decay=self.ema_decay, restart_threshold=self.restart_threshold,
                  usage_decay=self.usage_decay)
        if self.multiscale:
            qk.update(scales=tuple(self.scales), num_phi=self.num_phi, phi_ratio=self.phi_ratio,
                      upsample_method=self.upsample, phi_schedule=self.phi_schedule)
        return qk

    def module(self, channels: int) -> VQModel:
        """The `VQModel` for images of `channels` channels."""
        return VQModel(channels=channels, ch=self.ch, ch_mult=tuple(self.ch_mult),
                       num_res_blocks=self.num_res_blocks, z_channels=self.z_channels,
                       mid_attention=self.mid_attention, groups=self.norm_groups,
                       quantizer_kwargs=self.quantizer_kwargs(), multiscale=self.multiscale,
                       impl=self.impl, dtype=jnp.dtype(self.dtype), downsample=self.downsample,
                       attn_at_lowest=self.attn_at_lowest,
                       quant_conv_kernel=self.quant_conv_kernel, remat=self.remat)

    @classmethod
    def released(cls, name: str) -> VQGANSettings:
        """The exact nets of a released PyTorch tokenizer (`RELEASED`), for the converters."""
        if name not in RELEASED:
            raise ConfigError(f"unknown released tokenizer {name!r}; known: {sorted(RELEASED)}")
        return cls(**RELEASED[name])


# What differs from the defaults in the released tokenizers' exact layouts
LLAMAGEN_LAYOUT = dict(downsample="pad01", attn_at_lowest=True)  # LlamaGen's nets
VAR_QUANTIZER = dict(z_channels=32, quantizer="multiscale", codebook_size=4096, code_dim=32,
                     l2_normalize=False)  # VAR's codes (VQVAE vae_ch160v4096z32)
VAR_LAYOUT = dict(LLAMAGEN_LAYOUT, ch=160, quant_conv_kernel=3, upsample="torch_bicubic",
                  phi_schedule="var")  # VAR's nets, bicubic and phi schedule
RELEASED = {
    "llamagen_vq16": dict(LLAMAGEN_LAYOUT),  # vq_ds16_c2i.pt
    "llamagen_vq8": dict(LLAMAGEN_LAYOUT, ch_mult=(1, 2, 2, 4)),  # vq_ds8_c2i.pt
    "var_vqvae": dict(VAR_QUANTIZER, **VAR_LAYOUT),  # vae_ch160v4096z32.pth
}


@dataclasses.dataclass(frozen=True)
class VQGANLossSettings:
    """config.loss of a tokenizer."""

    rec_loss: str = "l2"  # l1 | l2 pixel reconstruction loss (images in [-1, 1])
    rec_weight: float = 1.0
    codebook_weight: float = 1.0  # weight of codebook + commitment loss
    perceptual_weight: float = 0.0  # LPIPS-style loss weight (needs perceptual_path)
    perceptual_path: str = ""  # local .npz of feature weights (losses/perceptual.py)
    disc_weight: float = 0.0  # PatchGAN hinge weight (0 = no GAN)
    disc_start: int = 0  # step at which the GAN loss switches on
    disc_channels: int = 64  # first discriminator layer width
    disc_layers: int = 3  # stride-2 layers of the PatchGAN

    def __post_init__(self):
        if self.rec_loss not in ("l1", "l2"):
            raise ConfigError(f"loss.rec_loss must be 'l1' or 'l2', got {self.rec_loss!r}")
        for key in ("rec_weight", "codebook_weight", "perceptual_weight", "disc_weight",
                    "disc_start", "disc_layers"):
            if not getattr(self, key) >= 0:  # also NaN
                raise ConfigError(f"loss.{key} must be >= 0, got {getattr(self, key)}")
        if self.disc_channels < 1:
            raise ConfigError(f"loss.disc_channels must be >= 1, got {self.disc_channels}")


def variables(params) -> dict:
    """A tokenizer's params ({'generator', 'vq_state'?, ...}) -> the VQModel's variables."""
    v = {"params": params["generator"]}
    if "vq_state" in params:
        v[STATE] = jax.lax.stop_gradient(params["vq_state"])
    return v


def _masked_mean(v, mask):
    return jnp.sum(v * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class VQGANFamily(Family):
    """Tokenizer trained with the shared loop; see the module docstring."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.settings = s = config_lib.typed(VQGANSettings, config.model, "model",
                                             ignore=("name",))
        self.loss_settings = lc = config_lib.typed(VQGANLossSettings, config.get("loss"), "loss")
        if lc.disc_weight > 0 and lc.disc_channels % s.norm_groups:
            raise ConfigError(f"loss.disc_channels={lc.disc_channels} must be a multiple of "
                              f"model.norm_groups={s.norm_groups} (the PatchGAN's group norms)")
        self.space = ImageSpace.of(spec, s.ch_mult, s.pad_to,
                                   s.scales if s.multiscale else None)
        self.size = self.space.size
        self.multiscale = s.multiscale
        self.scales = tuple(s.scales) if s.multiscale else None
        self.dtype = jnp.dtype(s.dtype)
        self.generator = s.module(spec.shape[-1])
        # read now (a clear error early, no file read under tracing); numpy arrays
        self.perceptual = (load_perceptual_weights(lc.perceptual_path)
                           if lc.perceptual_weight > 0 else None)
        self.discriminator = PatchDiscriminator(
            lc.disc_channels, lc.disc_layers, s.norm_groups, s.impl,
            self.dtype) if lc.disc_weight > 0 else None
        self.has_state = bool(s.ema or s.restart_threshold > 0)

    def init(self, rng, batch):
        rg, rd = jax.random.split(rng)
        x = self.space.to_model(batch["image"])
        v = self.generator.init({"params": rg}, x, batch["mask"])
        params = {"generator": v["params"]}
        if STATE in v:
            params["vq_state"] = v[STATE]
        if self.discriminator is not None:
            params["discriminator"] = self.discriminator.init(rd, self.space.crop(x))["params"]
        if self.perceptual is not None:
            params["perceptual"] = {k: jnp.asarray(w) for k, w in self.perceptual.items()}
        return {"params": params}

    group_names = ("generator", "discriminator", ASSIGNED, FROZEN)

    def param_groups(self, params):
        """Two players with their own AdamW, the quantizer's EMA / restart state assigned,
        the perceptual feature net frozen."""
        label = {"generator": "generator", "discriminator": "discriminator",
                 "vq_state": ASSIGNED, "perceptual": FROZEN}
        return {k: label[k] for k in params}

    def loss(self, params, batch, rng, train, step=None):
        lc, space = self.loss_settings, self.space
        images, mask = batch["image"], batch["mask"].astype(jnp.float32)
        n = jnp.sum(mask)
        x = space.to_model(images)
        v = variables(params)
        update = train and self.has_state
        if update:
            (x_rec, q), new = self.generator.apply(
                v, x, mask, rngs={qlib.RESTART_RNG: jax.random.fold_in(rng, 1)},
                mutable=[STATE])
        else:
            x_rec, q = self.generator.apply(v, x, mask)
        xc, rc = space.crop(x), space.crop(x_rec)
        err = rc - xc
        red = (1, 2, 3)
        l1 = jnp.mean(jnp.abs(err), red)  # [B]
        mse = jnp.mean(jnp.square(err), red)
        per_ex = lc.rec_weight * (l1 if lc.rec_loss == "l1" else mse)
        per_ex = per_ex + lc.codebook_weight * q.per_example_loss
        m = {"num_examples": n, "l1_sum": jnp.sum(l1 * mask), "mse_sum": jnp.sum(mse * mask),
             "quant_loss_sum": jnp.sum(q.per_example_loss * mask)}
        if lc.perceptual_weight > 0:
            perc = perceptual_distance(jax.lax.stop_gradient(params["perceptual"]), xc, rc)
            per_ex = per_ex + lc.perceptual_weight * perc
            m["perceptual_sum"] = jnp.sum(perc * mask)
        loss = _masked_mean(per_ex, mask) + q.aux_loss
        if train and self.discriminator is not None and step is not None:
            g_adv, d_loss, active = gated_hinge_losses(
                self.discriminator.apply, params["discriminator"], xc, rc, step, lc.disc_start)
            loss = loss + lc.disc_weight * active * _masked_mean(g_adv + d_loss, mask)
            m.update(g_adv_sum=jnp.sum(g_adv * mask), d_loss_sum=jnp.sum(d_loss * mask),
                     disc_active_sum=active * n)
        if update:
            loss = loss + assign_surrogate(params["vq_state"], new[STATE])
        m.update(self._metrics(images, x_rec, q, mask, n, train))
        if self.has_state:
            live = self.generator.apply(v, method=VQModel.live_fraction)
            m["live_codes_sum"] = live * n
        return loss, m

    def _metrics(self, images, x_rec, q, mask, n, train) -> dict:
        """Reconstruction quality on the integer images (what users see) and code usage."""
        m = {}
        rec_img, orig = self.space.to_images(x_rec), images.astype(jnp.int32)
        scale = 255.0 / (self.spec.levels - 1)
        m["psnr_sum"] = jnp.sum(psnr(rec_img * scale, orig * scale, mse_floor=1e-10) * mask)
        if not train:
            m["ssim_sum"] = jnp.sum(ssim(rec_img * scale, orig * scale, window="uniform") * mask)
        counts = q.counts if q.counts.ndim == 2 else q.counts[None]
        usage, ppl = qlib.usage_from_counts(counts), qlib.perplexity_from_counts(counts)
        m["batch_usage_sum"] = jnp.mean(usage) * n if self.multiscale else usage[0] * n
        m["batch_perplexity_sum"] = ppl[-1] * n if not self.multiscale else jnp.mean(ppl) * n
        if self.multiscale:
            m["batch_usage_all_scales_sum"] = qlib.usage_from_counts(counts.sum(0)) * n
            for s in range(counts.shape[0]):
                m[f"batch_usage_scale{s}_sum"] = usage[s] * n
        return m
