"""VQGAN-style image tokenizer (Esser et al. 2021; LlamaGen's VQ-16; VAR's multi-scale VQVAE).

Encoder -> (1x1 conv to the code dim) -> quantizer -> (1x1 conv back) -> decoder. The conv
ResNet downsamples by 2^(len(ch_mult) - 1) (8 or 16 for 256px data; 4 for 32px). The
quantizer is `layers.quantizer.VectorQuantizer` (one token map, LlamaGen) or
`MultiScaleResidualQuantizer` (one token map per scale, VAR).

Losses: L1 or L2 reconstruction, an LPIPS-style perceptual loss whose feature weights are read
from a local .npz file (format: `load_perceptual_weights`; no download), the quantizer's
codebook + commitment (+ entropy) loss, and a PatchGAN discriminator with hinge losses that
switches on at `loss.disc_start`.

One optimizer, two players: `params` = {'generator', 'discriminator', 'vq_state',
'perceptual'}. The loss is the sum of the generator's objective (discriminator params behind
stop_gradient) and the discriminator's hinge loss (reconstructions behind stop_gradient), so
one gradient of the sum is exactly (dG, dD). `make_optimizer` gives each player its own
clipped AdamW (optax.multi_transform), keeps the perceptual weights frozen, and *assigns* the
quantizer's EMA / restart state (`vq_state`) through `assign_surrogate`.

Public API for the AR models built on the tokenizer: `Tokenizer` (params bound, from a
workdir checkpoint) and the family's pure methods `encode`, `decode`, `decode_latent`,
`latent_from_indices`, `teacher_forcing_inputs`, `embed_scale`, `next_scale_input`.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import CheckpointError, ConfigError
from argen_jax.evaluation.metrics import psnr, ssim
from argen_jax.layers import quantizer as qlib
from argen_jax.layers.shifted_conv import ShiftedConv2D
from argen_jax.models.base import ASSIGNED, FROZEN, Family, assign_surrogate

STATE = qlib.STATE


PADDINGS = ("same", "pad01")


def square_taps(k: int, padding: str = "same") -> tuple[tuple[int, int], ...]:
    """All taps of a k x k kernel, row-major (tap ky * k + kx is torch's weight[:, :, ky, kx]).

    'same': centred; for even k the extra tap is below/right (pix2pix pad 1).
    'pad01': taps 0..k-1 below/right of the output's anchor pixel: taming / LlamaGen's
    Downsample (zero-pad one row and column at the bottom/right, then a VALID stride-2 conv);
    output pixel i of a stride-s conv reads input rows s*i .. s*i + k - 1 (zero past the end);
    for even H that is exactly LlamaGen's output (for odd H torch's has one row fewer).
    """
    if padding not in PADDINGS:
        raise ConfigError(f"conv padding must be one of {PADDINGS}, got {padding!r}")
    lo = -((k - 1) // 2) if padding == "same" else 0
    return tuple((dy, dx) for dy in range(lo, lo + k) for dx in range(lo, lo + k))


class Conv(nn.Module):
    """Plain k x k convolution (optional stride) on the shared tap conv. padding: 'same' or
    'pad01' (see `square_taps`; both give ceil(H / strides) rows and the same parameters)."""

    features: int
    kernel: int = 3
    strides: int = 1
    impl: str = "conv"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    padding: str = "same"

    @nn.compact
    def __call__(self, x):
        return ShiftedConv2D(self.features, square_taps(self.kernel, self.padding),
                             strides=self.strides,
                             impl=self.impl, dtype=self.dtype, param_dtype=self.param_dtype,
                             name="conv")(x)


class ResBlock(nn.Module):
    features: int
    groups: int = 32
    impl: str = "conv"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        g = lambda c: min(self.groups, c)  # noqa: E731
        h = nn.swish(nn.GroupNorm(g(x.shape[-1]), dtype=self.dtype, name="norm1")(x))
        h = Conv(self.features, 3, impl=self.impl, dtype=self.dtype, name="conv1")(h)
        h = nn.swish(nn.GroupNorm(g(self.features), dtype=self.dtype, name="norm2")(h))
        h = Conv(self.features, 3, impl=self.impl, dtype=self.dtype, name="conv2")(h)
        if x.shape[-1] != self.features:
            x = Conv(self.features, 1, impl=self.impl, dtype=self.dtype, name="skip")(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions (VQGAN's mid block)."""

    groups: int = 32
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        b, h, w, c = x.shape
        y = nn.GroupNorm(min(self.groups, c), dtype=self.dtype, name="norm")(x)
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(y).reshape(b, h * w, 3, c)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # [B, T, C]
        att = jnp.einsum("btc,bsc->bts", q, k).astype(jnp.float32) / np.sqrt(c)
        att = jax.nn.softmax(att, axis=-1).astype(self.dtype)
        y = jnp.einsum("bts,bsc->btc", att, v).reshape(b, h, w, c)
        return x + nn.Dense(c, dtype=self.dtype, name="proj")(y)


class Encoder(nn.Module):
    """Conv ResNet encoder. `downsample` is the padding of the stride-2 convs ('same', or
    'pad01' as taming / LlamaGen); `attn_at_lowest` adds an AttnBlock after every ResBlock of
    the lowest resolution (taming / LlamaGen), named down{i}_attn{j}."""

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    z_channels: int
    mid_attention: bool = True
    groups: int = 32
    impl: str = "conv"
    dtype: Any = jnp.float32
    downsample: str = "same"
    attn_at_lowest: bool = False

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, H/f, W/f, z_channels]
        kw = dict(groups=self.groups, impl=self.impl, dtype=self.dtype)
        last = len(self.ch_mult) - 1
        h = Conv(self.ch, 3, impl=self.impl, dtype=self.dtype, name="conv_in")(x)
        for i, m in enumerate(self.ch_mult):
            for j in range(self.num_res_blocks):
                h = ResBlock(self.ch * m, name=f"down{i}_block{j}", **kw)(h)
                if self.attn_at_lowest and i == last:
                    h = AttnBlock(self.groups, self.dtype, name=f"down{i}_attn{j}")(h)
            if i < last:
                h = Conv(h.shape[-1], 3, strides=2, impl=self.impl, dtype=self.dtype,
                         padding=self.downsample, name=f"down{i}_sample")(h)
        h = ResBlock(h.shape[-1], name="mid_block1", **kw)(h)
        if self.mid_attention:
            h = AttnBlock(self.groups, self.dtype, name="mid_attn")(h)
        h = ResBlock(h.shape[-1], name="mid_block2", **kw)(h)
        h = nn.swish(nn.GroupNorm(min(self.groups, h.shape[-1]), dtype=self.dtype,
                                  name="norm_out")(h))
        return Conv(self.z_channels, 3, impl=self.impl, dtype=self.dtype, name="conv_out")(h)


class Decoder(nn.Module):
    """Mirror of `Encoder` (num_res_blocks + 1 ResBlocks per level, nearest x2 + 3x3 conv
    upsampling). `attn_at_lowest`: an AttnBlock after every ResBlock of the lowest resolution
    (the first level decoded), named up{i}_attn{j}."""

    ch: int
    ch_mult: Sequence[int]
    num_res_blocks: int
    out_channels: int
    mid_attention: bool = True
    groups: int = 32
    impl: str = "conv"
    dtype: Any = jnp.float32
    attn_at_lowest: bool = False

    @nn.compact
    def __call__(self, z):  # [B, h, w, z_channels] -> [B, h*f, w*f, out_channels] float32
        kw = dict(groups=self.groups, impl=self.impl, dtype=self.dtype)
        top = self.ch * self.ch_mult[-1]
        h = Conv(top, 3, impl=self.impl, dtype=self.dtype, name="conv_in")(z)
        h = ResBlock(top, name="mid_block1", **kw)(h)
        if self.mid_attention:
            h = AttnBlock(self.groups, self.dtype, name="mid_attn")(h)
        h = ResBlock(top, name="mid_block2", **kw)(h)
        for i in reversed(range(len(self.ch_mult))):
            for j in range(self.num_res_blocks + 1):
                h = ResBlock(self.ch * self.ch_mult[i], name=f"up{i}_block{j}", **kw)(h)
                if self.attn_at_lowest and i == len(self.ch_mult) - 1:
                    h = AttnBlock(self.groups, self.dtype, name=f"up{i}_attn{j}")(h)
            if i > 0:
                b, hh, ww, c = h.shape
                h = jax.image.resize(h, (b, 2 * hh, 2 * ww, c), "nearest")
                h = Conv(c, 3, impl=self.impl, dtype=self.dtype, name=f"up{i}_sample")(h)
        h = nn.swish(nn.GroupNorm(min(self.groups, h.shape[-1]), dtype=self.dtype,
                                  name="norm_out")(h))
        h = Conv(self.out_channels, 3, impl=self.impl, dtype=self.dtype, name="conv_out")(h)
        return h.astype(jnp.float32)


class VQModel(nn.Module):
    """Encoder + quantizer + decoder. Methods are the tokenizer API (apply(..., method=))."""

    channels: int  # image channels
    ch: int = 128
    ch_mult: Sequence[int] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 256
    mid_attention: bool = True
    groups: int = 32
    quantizer_kwargs: Any = None  # dict of VectorQuantizer / MultiScale... fields
    multiscale: bool = False
    impl: str = "conv"
    dtype: Any = jnp.float32
    downsample: str = "same"  # encoder's stride-2 conv padding: 'same' | 'pad01' (LlamaGen)
    attn_at_lowest: bool = False  # AttnBlocks after the lowest level's ResBlocks (LlamaGen)
    quant_conv_kernel: int = 1  # kernel of quant_conv / post_quant_conv (VAR's VQVAE: 3)

    def setup(self):
        arch = dict(ch=self.ch, ch_mult=tuple(self.ch_mult), num_res_blocks=self.num_res_blocks,
                    mid_attention=self.mid_attention, groups=self.groups, impl=self.impl,
                    dtype=self.dtype, attn_at_lowest=self.attn_at_lowest)
        qk = dict(self.quantizer_kwargs or {})
        self.encoder = Encoder(z_channels=self.z_channels, downsample=self.downsample, **arch)
        self.decoder = Decoder(out_channels=self.channels, **arch)
        self.quant_conv = Conv(qk["code_dim"], self.quant_conv_kernel, impl=self.impl)
        self.post_quant_conv = Conv(self.z_channels, self.quant_conv_kernel, impl=self.impl)
        cls = qlib.MultiScaleResidualQuantizer if self.multiscale else qlib.VectorQuantizer
        if self.multiscale:
            qk["impl"] = self.impl
        self.quantizer = cls(**qk)

    def encode_latent(self, x):  # [B, H, W, C] in [-1, 1] -> [B, h, w, D] float32
        return self.quant_conv(self.encoder(x)).astype(jnp.float32)

    def decode_latent(self, z):  # [B, h, w, D] -> [B, H, W, C] float32 in ~[-1, 1]
        return self.decoder(self.post_quant_conv(z))

    def __call__(self, x, mask=None):
        q = self.quantizer(self.encode_latent(x), mask)
        return self.decode_latent(q.z_q), q

    def encode(self, x):
        """Token map [B, h, w] (single) or the per-scale maps (multi-scale)."""
        z = self.encode_latent(x)
        if self.multiscale:
            return self.quantizer.encode(z)
        return self.quantizer.nearest(z)

    def latent_from_indices(self, indices):
        if self.multiscale:
            return self.quantizer.latent_from_indices(list(indices))
        return self.quantizer.lookup(indices)

    def decode(self, indices):
        return self.decode_latent(self.latent_from_indices(indices))

    def teacher_forcing_inputs(self, indices):
        return self.quantizer.teacher_forcing_inputs(list(indices))

    def embed_scale(self, s, indices):
        return self.quantizer.embed_scale(s, indices)

    def next_scale_input(self, f_hat, s):
        return self.quantizer.next_scale_input(f_hat, s)

    def live_fraction(self):
        return self.quantizer.live_fraction()


class PatchDiscriminator(nn.Module):
    """PatchGAN (pix2pix NLayerDiscriminator) with GroupNorm: one logit per patch."""

    channels: int = 64
    num_layers: int = 3
    groups: int = 32
    impl: str = "conv"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, h, w] float32 logits
        conv = lambda f, s, name: Conv(f, 4, s, impl=self.impl, dtype=self.dtype,  # noqa: E731
                                       name=name)
        h = nn.leaky_relu(conv(self.channels, 2, "conv_0")(x), 0.2)
        for i in range(1, self.num_layers + 1):
            f = self.channels * min(2**i, 8)
            h = conv(f, 2 if i < self.num_layers else 1, f"conv_{i}")(h)
            h = nn.leaky_relu(nn.GroupNorm(min(self.groups, f), dtype=self.dtype,
                                           name=f"norm_{i}")(h), 0.2)
        return conv(1, 1, "conv_out")(h)[..., 0].astype(jnp.float32)


# --------------------------------------------------------------------------- perceptual loss
def load_perceptual_weights(path: str) -> dict:
    """Feature-net weights for the perceptual loss from a local .npz file.

    Layout (a VGG-like net: stages of 3x3 conv + ReLU, 2x2 max-pool between stages, features
    tapped at the end of every stage, as LPIPS taps VGG16's relu1_2 ... relu5_3):
        stage{s}/conv{k}/kernel  [3, 3, Cin, Cout]  (HWIO)
        stage{s}/conv{k}/bias    [Cout]
        stage{s}/lin             [Cout_last] optional non-negative LPIPS channel weights
        shift, scale             [Cin] optional input normalisation (x - shift) / scale
    Convert VGG16 + LPIPS 'lin' weights into this layout once; nothing is downloaded.
    """
    if not path or not os.path.exists(os.path.expanduser(path)):
        raise ConfigError(f"loss.perceptual_path {path!r} does not exist: the perceptual loss "
                          f"needs a local .npz of feature weights (see load_perceptual_weights)")
    with np.load(os.path.expanduser(path)) as f:
        w = {k: np.asarray(f[k], np.float32) for k in f.files}
    if "stage0/conv0/kernel" not in w:
        raise ConfigError(f"{path}: no 'stage0/conv0/kernel' array: not a perceptual-weights file")
    return w


def make_perceptual_weights(path: str, stages: Sequence[int] = (16, 32, 64),
                            convs_per_stage: int = 2, in_channels: int = 3,
                            seed: int = 0) -> str:
    """Writes random (He-initialised) feature weights in the `load_perceptual_weights`
    layout: for tests and CPU smoke runs (random conv features are a weak perceptual loss)."""
    rng = np.random.default_rng(seed)
    out, cin = {}, in_channels
    for s, c in enumerate(stages):
        for k in range(convs_per_stage):
            out[f"stage{s}/conv{k}/kernel"] = (rng.standard_normal((3, 3, cin, c))
                                               * np.sqrt(2.0 / (9 * cin))).astype(np.float32)
            out[f"stage{s}/conv{k}/bias"] = np.zeros((c,), np.float32)
            cin = c
        out[f"stage{s}/lin"] = np.full((c,), 1.0 / c, np.float32)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    np.savez(path, **out)
    return path


def _conv3x3(x, kernel, bias):
    """'same' 3x3 conv as 9 shifted slices + one matmul (fast on CPU)."""
    _, h, w, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = [xp[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
    return jnp.concatenate(cols, -1) @ kernel.reshape(9 * c, -1) + bias


def perceptual_features(weights: dict, x: jax.Array) -> list[jax.Array]:
    """x [B, H, W, C] in [-1, 1] -> the feature map at the end of every stage."""
    first = weights["stage0/conv0/kernel"]
    if x.shape[-1] != first.shape[2]:
        if x.shape[-1] != 1:
            raise ConfigError(f"perceptual net takes {first.shape[2]} channels, images have "
                              f"{x.shape[-1]}")
        x = jnp.repeat(x, first.shape[2], axis=-1)
    if "shift" in weights:
        x = (x - weights["shift"]) / weights["scale"]
    feats, s = [], 0
    while f"stage{s}/conv0/kernel" in weights:
        if s:
            b, h, w, c = x.shape
            x = x[:, : h // 2 * 2, : w // 2 * 2].reshape(b, h // 2, 2, w // 2, 2, c).max((2, 4))
        k = 0
        while f"stage{s}/conv{k}/kernel" in weights:
            x = nn.relu(_conv3x3(x, weights[f"stage{s}/conv{k}/kernel"],
                                 weights[f"stage{s}/conv{k}/bias"]))
            k += 1
        feats.append(x)
        s += 1
    return feats


def perceptual_distance(weights: dict, x: jax.Array, y: jax.Array) -> jax.Array:
    """LPIPS-style distance [B]: per stage, channel-normalised features, squared difference
    weighted by the stage's `lin` weights (uniform if absent), mean over positions; summed."""
    fx = perceptual_features(weights, jnp.concatenate([x, y], 0))
    b, total = x.shape[0], 0.0
    for s, f in enumerate(fx):
        f = qlib.l2_normalize(f, eps=1e-10)
        d = jnp.square(f[:b] - f[b:])
        lin = weights.get(f"stage{s}/lin")
        d = d @ lin if lin is not None else jnp.mean(d, -1)
        total = total + jnp.mean(d, axis=(1, 2))
    return total


# --------------------------------------------------------------------------- the family
def _masked_mean(v, mask):
    return jnp.sum(v * mask) / jnp.maximum(jnp.sum(mask), 1.0)


class VQGANFamily(Family):
    """Tokenizer trained with the shared loop; see the module docstring."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        m, lc = config.model, config.get("loss", {})
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"vqgan needs image data [H, W, C], got {spec.kind} {spec.shape}")
        h, w, c = spec.shape
        pad_to = int(m.get("pad_to", 0))
        self.size = (max(h, pad_to), max(w, pad_to))
        factor = 2 ** (len(m.ch_mult) - 1)
        if self.size[0] % factor or self.size[1] % factor:
            raise ConfigError(f"images {self.size} (after model.pad_to={pad_to}) are not "
                              f"divisible by the downsampling factor {factor} of ch_mult "
                              f"{tuple(m.ch_mult)}")
        self.latent_shape = (self.size[0] // factor, self.size[1] // factor)
        self.multiscale = m.get("quantizer", "single") == "multiscale"
        qk = dict(codebook_size=m.codebook_size, code_dim=m.code_dim, beta=m.get("beta", 0.25),
                  l2_normalize=m.get("l2_normalize", not self.multiscale),
                  entropy_weight=m.get("entropy_weight", 0.0),
                  entropy_temperature=m.get("entropy_temperature", 0.01),
                  ema=m.get("ema", False), ema_decay=m.get("ema_decay", 0.99),
                  restart_threshold=m.get("restart_threshold", 0.0),
                  usage_decay=m.get("usage_decay", 0.99))
        if self.multiscale:
            self.scales = tuple(int(s) for s in m.scales)
            if self.scales[-1] != self.latent_shape[0] or self.latent_shape[0] != \
                    self.latent_shape[1]:
                raise ConfigError(f"multiscale quantizer: last scale {self.scales[-1]} must equal "
                                  f"the (square) latent size {self.latent_shape}")
            qk.update(scales=self.scales, num_phi=m.get("num_phi", 4),
                      phi_ratio=m.get("phi_ratio", 0.5),
                      upsample_method=m.get("upsample", "cubic"),
                      phi_schedule=m.get("phi_schedule", "even"))
        else:
            self.scales = None
        self.dtype = jnp.dtype(m.get("dtype", "float32"))
        impl = m.get("impl", "conv")
        self.generator = VQModel(
            channels=c, ch=m.ch, ch_mult=tuple(m.ch_mult), num_res_blocks=m.num_res_blocks,
            z_channels=m.z_channels, mid_attention=m.get("mid_attention", True),
            groups=m.get("norm_groups", 32), quantizer_kwargs=qk, multiscale=self.multiscale,
            impl=impl, dtype=self.dtype, downsample=m.get("downsample", "same"),
            attn_at_lowest=m.get("attn_at_lowest", False),
            quant_conv_kernel=m.get("quant_conv_kernel", 1))
        square_taps(3, self.generator.downsample)  # ConfigError now for a bad padding name
        self.rec_loss = lc.get("rec_loss", "l2")
        if self.rec_loss not in ("l1", "l2"):
            raise ConfigError(f"loss.rec_loss must be 'l1' or 'l2', got {self.rec_loss!r}")
        self.rec_weight = float(lc.get("rec_weight", 1.0))
        self.codebook_weight = float(lc.get("codebook_weight", 1.0))
        self.perceptual_weight = float(lc.get("perceptual_weight", 0.0))
        self.perceptual_path = lc.get("perceptual_path", "")
        if self.perceptual_weight > 0:
            load_perceptual_weights(self.perceptual_path)  # fail early with a clear message
        self.disc_weight = float(lc.get("disc_weight", 0.0))
        self.disc_start = int(lc.get("disc_start", 0))
        self.discriminator = PatchDiscriminator(
            lc.get("disc_channels", 64), lc.get("disc_layers", 3), m.get("norm_groups", 32),
            impl, self.dtype) if self.disc_weight > 0 else None
        self.has_state = bool(qk["ema"] or qk["restart_threshold"] > 0)

    # ---------------------------------------------------------------- images <-> model space
    def to_model(self, images) -> jax.Array:
        """ints [B, H, W, C] in [0, levels) -> float32 in [-1, 1], padded to model size."""
        x = images.astype(jnp.float32) * (2.0 / (self.spec.levels - 1)) - 1.0
        h, w = self.spec.shape[:2]
        ph, pw = self.size[0] - h, self.size[1] - w
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                        constant_values=-1.0)
        return x

    def crop(self, x) -> jax.Array:
        h, w = self.spec.shape[:2]
        oh, ow = (self.size[0] - h) // 2, (self.size[1] - w) // 2
        return x[:, oh : oh + h, ow : ow + w]

    def to_images(self, x) -> jax.Array:
        """Model-space [B, H', W', C] -> ints in [0, levels) [B, H, W, C] (cropped)."""
        lv = self.spec.levels - 1
        return jnp.clip(jnp.round((self.crop(x) + 1.0) * (lv / 2.0)), 0, lv).astype(jnp.int32)

    # ---------------------------------------------------------------- contract
    def init(self, rng, batch):
        rg, rd = jax.random.split(rng)
        x = self.to_model(batch["image"])
        variables = self.generator.init({"params": rg}, x, batch["mask"])
        params = {"generator": variables["params"]}
        if STATE in variables:
            params["vq_state"] = variables[STATE]
        if self.discriminator is not None:
            params["discriminator"] = self.discriminator.init(rd, self.crop(x))["params"]
        if self.perceptual_weight > 0:
            params["perceptual"] = {k: jnp.asarray(v) for k, v in
                                    load_perceptual_weights(self.perceptual_path).items()}
        return {"params": params}

    group_names = ("generator", "discriminator", ASSIGNED, FROZEN)

    def param_groups(self, params):
        """Two players with their own AdamW, the quantizer's EMA / restart state assigned,
        the perceptual feature net frozen."""
        label = {"generator": "generator", "discriminator": "discriminator",
                 "vq_state": ASSIGNED, "perceptual": FROZEN}
        return {k: label[k] for k in params}

    def _variables(self, params):
        v = {"params": params["generator"]}
        if "vq_state" in params:
            v[STATE] = jax.lax.stop_gradient(params["vq_state"])
        return v

    def loss(self, params, batch, rng, train, step=None):
        images, mask = batch["image"], batch["mask"].astype(jnp.float32)
        n = jnp.sum(mask)
        x = self.to_model(images)
        variables = self._variables(params)
        update = train and self.has_state
        if update:
            (x_rec, q), new = self.generator.apply(
                variables, x, mask, rngs={qlib.RESTART_RNG: jax.random.fold_in(rng, 1)},
                mutable=[STATE])
        else:
            x_rec, q = self.generator.apply(variables, x, mask)
        xc, rc = self.crop(x), self.crop(x_rec)
        err = rc - xc
        red = (1, 2, 3)
        l1 = jnp.mean(jnp.abs(err), red)  # [B]
        mse = jnp.mean(jnp.square(err), red)
        per_ex = self.rec_weight * (l1 if self.rec_loss == "l1" else mse)
        per_ex = per_ex + self.codebook_weight * q.per_example_loss
        m = {"num_examples": n, "l1_sum": jnp.sum(l1 * mask), "mse_sum": jnp.sum(mse * mask),
             "quant_loss_sum": jnp.sum(q.per_example_loss * mask)}
        if self.perceptual_weight > 0:
            perc = perceptual_distance(jax.lax.stop_gradient(params["perceptual"]), xc, rc)
            per_ex = per_ex + self.perceptual_weight * perc
            m["perceptual_sum"] = jnp.sum(perc * mask)
        loss = _masked_mean(per_ex, mask) + q.aux_loss
        if train and self.discriminator is not None and step is not None:
            g_adv, d_loss, active = self._gan(params["discriminator"], xc, rc, step)
            loss = loss + self.disc_weight * active * _masked_mean(g_adv + d_loss, mask)
            m.update(g_adv_sum=jnp.sum(g_adv * mask), d_loss_sum=jnp.sum(d_loss * mask),
                     disc_active_sum=active * n)
        if update:
            loss = loss + assign_surrogate(params["vq_state"], new[STATE])
        # reconstruction quality on the integer images (what users see)
        rec_img, orig = self.to_images(x_rec), images.astype(jnp.int32)
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
        if self.has_state:
            live = self.generator.apply(variables, method=VQModel.live_fraction)
            m["live_codes_sum"] = live * n
        return loss, m

    def _gan(self, dparams, x, x_rec, step):
        """Hinge losses [B] for generator and discriminator, 0 before `disc_start`."""
        b = x.shape[0]
        d = self.discriminator

        def on(_):
            fake_g = d.apply({"params": jax.lax.stop_gradient(dparams)}, x_rec)
            logits = d.apply({"params": dparams},
                             jnp.concatenate([x, jax.lax.stop_gradient(x_rec)], 0))
            real, fake = logits[:b], logits[b:]
            red = (1, 2)
            g_adv = -jnp.mean(fake_g, red)
            d_loss = jnp.mean(nn.relu(1.0 - real), red) + jnp.mean(nn.relu(1.0 + fake), red)
            return g_adv, d_loss

        def off(_):
            return jnp.zeros((b,)), jnp.zeros((b,))

        active = (step >= self.disc_start).astype(jnp.float32)
        g_adv, d_loss = jax.lax.cond(step >= self.disc_start, on, off, None)
        return g_adv, d_loss, active

    def sample(self, params, keys, labels):
        raise NotImplementedError(
            "a tokenizer has no sampler: train LlamaGen / VAR on its tokens "
            "(set train.sample_at_end=False for tokenizer runs)")

    # ---------------------------------------------------------------- tokenizer API (pure)
    def _apply(self, params, method, *args):
        return self.generator.apply(self._variables(params), *args, method=method)

    def encode(self, params, images):
        """ints [B, H, W, C] -> token map [B, h, w] or list of [B, p_s, p_s] (multi-scale)."""
        return self._apply(params, VQModel.encode, self.to_model(images))

    def decode(self, params, indices):
        """Token map(s) -> ints [B, H, W, C] in [0, levels)."""
        return self.to_images(self._apply(params, VQModel.decode, indices))

    def decode_latent(self, params, latent):
        """Latent [B, h, w, D] (e.g. VAR's f_hat) -> ints [B, H, W, C]."""
        return self.to_images(self._apply(params, VQModel.decode_latent, latent))

    def reconstruct(self, params, images):
        return self.decode(params, self.encode(params, images))

    def latent_from_indices(self, params, indices):
        """Quantized latent [B, h, w, D] from a token map, or from any prefix of scales."""
        return self._apply(params, VQModel.latent_from_indices, indices)

    def teacher_forcing_inputs(self, params, indices):
        """VAR: [B, sum_{s>=1} p_s^2, D], the input of scale s = accumulated latent of scales
        < s, area-downsampled to scale s."""
        return self._apply(params, VQModel.teacher_forcing_inputs, indices)

    def embed_scale(self, params, s: int, indices):
        """VAR sampling: scale s's tokens [B, p_s, p_s] -> their latent contribution."""
        return self._apply(params, VQModel.embed_scale, s, indices)

    def next_scale_input(self, params, f_hat, s: int):
        """VAR sampling: accumulated latent -> input of scale s [B, p_s, p_s, D]."""
        return self._apply(params, VQModel.next_scale_input, f_hat, s)

    @property
    def codebook_size(self) -> int:
        return int(self.config.model.codebook_size)

    @property
    def token_shapes(self) -> list[tuple[int, int]]:
        if self.multiscale:
            return [(s, s) for s in self.scales]
        return [self.latent_shape]


class Tokenizer:
    """A trained tokenizer with its params bound; every method is jitted.

        tok = Tokenizer.from_workdir('/tmp/tok')
        idx = tok.encode(images)        # [B, h, w] or list of [B, p_s, p_s]
        images = tok.decode(idx)
    """

    def __init__(self, family: VQGANFamily, params):
        self.family, self.params = family, params
        f = family
        self._encode = jax.jit(f.encode)
        self._decode = jax.jit(f.decode)
        self._decode_latent = jax.jit(f.decode_latent)
        self._latent = jax.jit(f.latent_from_indices)
        self._tf = jax.jit(f.teacher_forcing_inputs)

    @classmethod
    def from_workdir(cls, workdir: str, config=None, use_ema: bool = True) -> Tokenizer:
        """Restores the newest checkpoint of a tokenizer run (config from workdir/config.json
        unless given). Builds the run's data builder to know the image spec."""
        from argen_jax.io.checkpoint import Checkpointer
        from argen_jax.io.run_dir import load_config
        from argen_jax.train.experiment import Experiment

        if config is None:
            config = load_config(workdir, CheckpointError, "a tokenizer workdir")
        exp = Experiment(config)
        if not isinstance(exp.family, VQGANFamily):
            raise CheckpointError(f"{workdir!r} holds a {config.model.name!r} run, not a tokenizer")
        ckpt = Checkpointer(workdir)
        state, _ = ckpt.restore(exp.abstract_state)
        ckpt.close()
        params = exp.eval_params(state) if use_ema else state.params
        tok = cls(exp.family, params)
        tok.experiment = exp  # its data builder (the splits the tokenizer was trained on)
        tok.step = int(jax.device_get(state.step))
        tok.config = config
        return tok

    multiscale = property(lambda self: self.family.multiscale)
    scales = property(lambda self: self.family.scales)
    codebook_size = property(lambda self: self.family.codebook_size)
    token_shapes = property(lambda self: self.family.token_shapes)
    code_dim = property(lambda self: int(self.family.config.model.code_dim))

    def encode(self, images):
        return self._encode(self.params, jnp.asarray(images))

    def decode(self, indices):
        return self._decode(self.params, indices)

    def reconstruct(self, images):
        return self.decode(self.encode(images))

    def decode_latent(self, latent):
        return self._decode_latent(self.params, latent)

    def latent_from_indices(self, indices):
        return self._latent(self.params, indices)

    def teacher_forcing_inputs(self, indices):
        return self._tf(self.params, indices)

    def embed_scale(self, s: int, indices):
        return self.family.embed_scale(self.params, s, indices)

    def next_scale_input(self, f_hat, s: int):
        return self.family.next_scale_input(self.params, f_hat, s)
