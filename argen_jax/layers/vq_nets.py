"""The conv networks of a VQGAN-style tokenizer (Esser et al. 2021; LlamaGen's VQ-16; VAR's
multi-scale VQVAE): `Encoder` -> (quant conv to the code dim) -> quantizer -> (post-quant
conv) -> `Decoder` as one `VQModel`, and the PatchGAN `PatchDiscriminator`.

The conv ResNet downsamples by 2^(len(ch_mult) - 1) (8 or 16 for 256px data; 4 for 32px). The
quantizer is `layers.quantizer.VectorQuantizer` (one token map, LlamaGen) or
`MultiScaleResidualQuantizer` (one token map per scale, VAR). `ImageSpace` maps integer
images to the nets' padded [-1, 1] space and back. Parameter names are those the
checkpoints and the PyTorch converters (`argen_jax/pretrained/torch_*_vq.py`) use. `remat`
rematerialises every ResBlock (`layers/repeat.remat_block`; same parameters and names).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.layers import quantizer as qlib
from argen_jax.layers.repeat import remat_block
from argen_jax.layers.shifted_conv import ShiftedConv2D

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
    remat: str = "none"  # ResBlocks: 'none' | 'full' | a jax.checkpoint_policies name

    @nn.compact
    def __call__(self, x):  # [B, H, W, C] -> [B, H/f, W/f, z_channels]
        kw = dict(groups=self.groups, impl=self.impl, dtype=self.dtype)
        res_block = remat_block(ResBlock, self.remat)
        last = len(self.ch_mult) - 1
        h = Conv(self.ch, 3, impl=self.impl, dtype=self.dtype, name="conv_in")(x)
        for i, m in enumerate(self.ch_mult):
            for j in range(self.num_res_blocks):
                h = res_block(self.ch * m, name=f"down{i}_block{j}", **kw)(h)
                if self.attn_at_lowest and i == last:
                    h = AttnBlock(self.groups, self.dtype, name=f"down{i}_attn{j}")(h)
            if i < last:
                h = Conv(h.shape[-1], 3, strides=2, impl=self.impl, dtype=self.dtype,
                         padding=self.downsample, name=f"down{i}_sample")(h)
        h = res_block(h.shape[-1], name="mid_block1", **kw)(h)
        if self.mid_attention:
            h = AttnBlock(self.groups, self.dtype, name="mid_attn")(h)
        h = res_block(h.shape[-1], name="mid_block2", **kw)(h)
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
    remat: str = "none"  # ResBlocks: 'none' | 'full' | a jax.checkpoint_policies name

    @nn.compact
    def __call__(self, z):  # [B, h, w, z_channels] -> [B, h*f, w*f, out_channels] float32
        kw = dict(groups=self.groups, impl=self.impl, dtype=self.dtype)
        res_block = remat_block(ResBlock, self.remat)
        top = self.ch * self.ch_mult[-1]
        h = Conv(top, 3, impl=self.impl, dtype=self.dtype, name="conv_in")(z)
        h = res_block(top, name="mid_block1", **kw)(h)
        if self.mid_attention:
            h = AttnBlock(self.groups, self.dtype, name="mid_attn")(h)
        h = res_block(top, name="mid_block2", **kw)(h)
        for i in reversed(range(len(self.ch_mult))):
            for j in range(self.num_res_blocks + 1):
                h = res_block(self.ch * self.ch_mult[i], name=f"up{i}_block{j}", **kw)(h)
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
    remat: str = "none"  # the nets' ResBlocks (layers/repeat.remat_block)

    def setup(self):
        arch = dict(ch=self.ch, ch_mult=tuple(self.ch_mult), num_res_blocks=self.num_res_blocks,
                    mid_attention=self.mid_attention, groups=self.groups, impl=self.impl,
                    dtype=self.dtype, attn_at_lowest=self.attn_at_lowest, remat=self.remat)
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
        """Token map(s) -> images [B, H, W, C] clamped to [-1, 1] (as VAR's fhat_to_img and
        LlamaGen's samplers do; training reconstructions (`__call__`) are not clamped)."""
        return jnp.clip(self.decode_latent(self.latent_from_indices(indices)), -1.0, 1.0)

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


# --------------------------------------------------------------------------- images
@dataclasses.dataclass(frozen=True)
class ImageSpace:
    """Integer images [B, H, W, C] in [0, levels) <-> the model's [-1, 1], padded to `size`."""

    shape: tuple[int, int, int]
    levels: int
    size: tuple[int, int]

    @classmethod
    def of(cls, spec, ch_mult: Sequence[int], pad_to: int = 0,
           scales: Sequence[int] | None = None) -> ImageSpace:
        """The space of `spec`'s images for nets of `ch_mult` (downsampling 2^(len - 1)),
        padded to `pad_to`; `scales`: a multi-scale quantizer's, whose last must be the
        latent side. A ConfigError when the images do not fit."""
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"vqgan needs image data [H, W, C], got {spec.kind} {spec.shape}")
        h, w, _ = spec.shape
        size = (max(h, pad_to), max(w, pad_to))
        f = 2 ** (len(ch_mult) - 1)
        if size[0] % f or size[1] % f:
            raise ConfigError(f"images {size} (after model.pad_to={pad_to}) are not "
                              f"divisible by the downsampling factor {f} of ch_mult "
                              f"{tuple(ch_mult)}")
        latent = (size[0] // f, size[1] // f)
        if scales and (scales[-1] != latent[0] or latent[0] != latent[1]):
            raise ConfigError(f"multiscale quantizer: last scale {scales[-1]} must "
                              f"equal the (square) latent size {latent}")
        return cls(tuple(spec.shape), spec.levels, size)

    @property
    def pad(self) -> tuple[int, int]:
        return self.size[0] - self.shape[0], self.size[1] - self.shape[1]

    def to_model(self, images) -> jax.Array:
        """ints [B, H, W, C] in [0, levels) -> float32 in [-1, 1], padded to model size."""
        x = images.astype(jnp.float32) * (2.0 / (self.levels - 1)) - 1.0
        ph, pw = self.pad
        if ph or pw:
            x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)),
                        constant_values=-1.0)
        return x

    def crop(self, x) -> jax.Array:
        (oh, ow), (h, w) = (p // 2 for p in self.pad), self.shape[:2]
        return x[:, oh : oh + h, ow : ow + w]

    def to_images(self, x, size: int = 0) -> jax.Array:
        """Model-space [B, H', W', C] -> ints in [0, levels) [B, H, W, C] (cropped). `size`
        > 0: resized to [B, size, size, C] first with PyTorch's bicubic, as LlamaGen's FID
        protocol does with its 384-pixel samples (`F.interpolate`, then clamp and round)."""
        lv = self.levels - 1
        x = self.crop(x)
        if size and (size, size) != tuple(x.shape[1:3]):
            x = qlib.upsample(x, size, "torch_bicubic")  # any size: [dst, src] matrices
        return jnp.clip(jnp.round((x + 1.0) * (lv / 2.0)), 0, lv).astype(jnp.int32)
