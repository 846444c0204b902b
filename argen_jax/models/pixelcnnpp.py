"""PixelCNN++ (Salimans et al. 2017): two shifted-conv streams in a U-Net, logistic mixture out.

* No masks: the u stream sees only rows above (down-shifted convs, kernel 2x3, and an initial
  one-row down shift); the ul stream sees rows above and pixels to the left (down-right-shifted
  convs, kernel 2x2, plus the u stream). Every conv is a `layers.shifted_conv.ShiftedConv2D`
  tap set; up-sampling is `ShiftedConvTranspose2D` (phase convolutions of the same taps).
* Gated ResNet blocks with concat_elu, dropout between the two convs, an optional shortcut
  input `a` (through a 1x1 conv) and optional class conditioning added before the gate.
* Three resolutions (stride-2 down-sampling twice); every block output of the down pass is fed
  to the mirrored block of the up pass (U-Net shortcuts).
* Output: ELU -> 1x1 conv to the discretized logistic mixture parameters of each pixel (all C
  channels of a pixel jointly, with the paper's linear channel coupling; `heads.logistic_mixture`).

EMA (Polyak averaging) of the weights for evaluation and sampling comes from the shared loop
(`config.train.ema_decay`). Weight normalisation is not used (optional in the issue).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax import config_lib
from argen_jax.config_lib import typed
from argen_jax.data.batch import IMAGE, LABEL, MASK
from argen_jax.errors import ConfigError
from argen_jax.evaluation.likelihood import nll_loss_and_sums
from argen_jax.heads import logistic_mixture as lm
from argen_jax.layers.shifted_conv import (
    IMPLS,
    ShiftedConv2D,
    ShiftedConvTranspose2D,
    down_right_shifted_offsets,
    down_right_shifted_up_offsets,
    down_shifted_offsets,
    down_shifted_up_offsets,
    shift,
)
from argen_jax.models.base import CodingSymbols, Family, RasterCoding
from argen_jax.parallel import axes
from argen_jax.sampling.loop import Steps

CENTER = ((0, 0),)
U_TAPS = down_shifted_offsets(2, 3)  # u stream: rows i-1, i; columns j-1..j+1
UL_TAPS = down_right_shifted_offsets(2, 2)  # ul stream: rows i-1, i; columns j-1, j


@dataclasses.dataclass(frozen=True)
class PixelCNNPPSettings:
    """`config.model` of pixelcnnpp. The defaults are the paper's CIFAR-10 model."""

    features: int = 160  # filters of every conv (paper: 160)
    num_resnet: int = 5  # gated ResNet blocks per resolution (paper: 5)
    num_resolutions: int = 3  # 3: full, 1/2, 1/4 resolution (sides divisible by 4)
    num_mixtures: int = 10  # logistic mixture components (paper: 10)
    dropout: float = 0.5  # dropout inside every gated ResNet (paper: 0.5)
    conditional: bool = False  # class-conditional (label embedding added before each gate)
    impl: str = "conv"  # 'conv' (lax.conv; fastest on CPU too, see xla_env.py) or 'taps'
    dtype: str = "float32"  # compute dtype; 'bfloat16' for mixed precision (params f32)

    def __post_init__(self):
        config_lib.check_positive(self, "features", "num_resnet", "num_resolutions",
                                  "num_mixtures")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout={self.dropout} must be in [0, 1)")
        config_lib.check_choice(self, "impl", IMPLS)
        config_lib.check_choice(self, "dtype", config_lib.COMPUTE_DTYPES)

    def network_fields(self) -> dict:
        """The fields of `PixelCNNPP` these settings fix."""
        fields = dataclasses.asdict(self)
        del fields["conditional"]
        fields["dtype"] = jnp.dtype(self.dtype)
        return fields


def concat_elu(x: jax.Array) -> jax.Array:
    """ELU of [x, -x] on the channel axis (doubles the channels)."""
    return jax.nn.elu(jnp.concatenate([x, -x], axis=-1))


class GatedResnet(nn.Module):
    """x + gate(conv(concat_elu(dropout(concat_elu(conv(concat_elu(x)) + nin(a)))) + h))."""

    features: int
    taps: tuple
    dropout: float = 0.5
    num_classes: int = 0
    impl: str = "conv"
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, a=None, labels=None, train: bool = False):
        f = self.features
        conv = lambda feats, taps, name, **kw: ShiftedConv2D(  # noqa: E731
            feats, taps, impl=self.impl, dtype=self.dtype, name=name, **kw)
        c = conv(f, self.taps, "conv_1")(concat_elu(x))
        if a is not None:
            c = c + conv(f, CENTER, "nin_a")(concat_elu(a))
        c = concat_elu(c)
        c = nn.Dropout(self.dropout, deterministic=not train)(c)
        c = conv(2 * f, self.taps, "conv_2",
                 kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "truncated_normal")
                 )(c)
        if self.num_classes and labels is not None:
            c = c + nn.Embed(
                self.num_classes, 2 * f, dtype=self.dtype, name="cond",
                embedding_init=nn.with_logical_partitioning(
                    nn.initializers.normal(0.02), (axes.CLASSES, axes.CONV_OUT)),
            )(labels)[:, None, None, :]
        g, gate = jnp.split(c, 2, axis=-1)
        return x + g * jax.nn.sigmoid(gate)


class PixelCNNPP(nn.Module):
    """x [B, H, W, C]: ints in [0, levels), or floats already in [-1, 1] (e.g. to take
    gradients with respect to the input) -> mixture parameters [B, H, W, P] (float32)."""

    levels: int = 256
    channels: int = 3
    features: int = 160  # filters of every layer (the paper: 160)
    num_resnet: int = 5  # gated ResNet blocks per resolution (the paper: 5)
    num_resolutions: int = 3  # the paper: 3 (32, 16, 8 for CIFAR-10)
    num_mixtures: int = 10  # logistic components (the paper: 10)
    dropout: float = 0.5
    num_classes: int = 0  # 0: unconditional
    impl: str = "conv"
    dtype: Any = jnp.float32

    def _conv(self, feats, taps, name, **kw):
        return ShiftedConv2D(feats, taps, impl=self.impl, dtype=self.dtype, name=name, **kw)

    def _block(self, taps, name):
        return GatedResnet(self.features, taps, self.dropout, self.num_classes, self.impl,
                           self.dtype, name=name)

    @nn.compact
    def __call__(self, x, labels=None, train: bool = False):
        _, h, w, _ = x.shape
        down = 2 ** (self.num_resolutions - 1)
        if h % down or w % down:
            raise ConfigError(f"PixelCNN++ with {self.num_resolutions} resolutions needs image "
                              f"sides divisible by {down}, got {h}x{w}")
        f, r = self.features, self.num_resnet
        labels = labels if self.num_classes else None
        xf = x if jnp.issubdtype(x.dtype, jnp.floating) else lm.to_unit(x, self.levels)
        xf = xf.astype(self.dtype)
        # A channel of ones marks the image (the convs zero-pad outside it).
        xf = jnp.concatenate([xf, jnp.ones(xf.shape[:-1] + (1,), xf.dtype)], axis=-1)

        # ---- down pass: u sees rows strictly above, ul also the pixels strictly to the left.
        u = shift(self._conv(f, down_shifted_offsets(2, 3), "u_in")(xf), dy=1)
        ul = (shift(self._conv(f, down_shifted_offsets(1, 3), "ul_in_up")(xf), dy=1)
              + shift(self._conv(f, down_right_shifted_offsets(2, 1), "ul_in_left")(xf), dx=1))
        us, uls = [u], [ul]
        for level in range(self.num_resolutions):
            if level:
                us.append(self._conv(f, U_TAPS, f"u_down_{level}", strides=2)(us[-1]))
                uls.append(self._conv(f, UL_TAPS, f"ul_down_{level}", strides=2)(uls[-1]))
            for i in range(r):
                us.append(self._block(U_TAPS, f"u_d{level}_{i}")(us[-1], None, labels, train))
                uls.append(self._block(UL_TAPS, f"ul_d{level}_{i}")(uls[-1], us[-1], labels,
                                                                     train))

        # ---- up pass: mirror blocks take the down pass's outputs as shortcuts.
        u, ul = us.pop(), uls.pop()
        for level in reversed(range(self.num_resolutions)):
            n = r if level == self.num_resolutions - 1 else r + 1
            for i in range(n):
                u = self._block(U_TAPS, f"u_u{level}_{i}")(u, us.pop(), labels, train)
                ul = self._block(UL_TAPS, f"ul_u{level}_{i}")(
                    ul, jnp.concatenate([u, uls.pop()], axis=-1), labels, train)
            if level:
                u = ShiftedConvTranspose2D(f, down_shifted_up_offsets(2, 3), 2, impl=self.impl,
                                           dtype=self.dtype, name=f"u_up_{level}")(u)
                ul = ShiftedConvTranspose2D(f, down_right_shifted_up_offsets(2, 2), 2,
                                            impl=self.impl, dtype=self.dtype,
                                            name=f"ul_up_{level}")(ul)
        assert not us and not uls
        p = lm.num_params(self.num_mixtures, self.channels)
        out = self._conv(p, CENTER, "out")(jax.nn.elu(ul))
        return out.astype(jnp.float32)  # [B, H, W, P]


class PixelCNNPPFamily(RasterCoding, Family):
    """PixelCNN++ on image data [H, W, C]; raster sampling, one pixel (all channels) per step."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.settings = s = typed(PixelCNNPPSettings, config.model, "model", ignore=("name",))
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"pixelcnnpp needs image data [H, W, C], got {spec.kind} "
                              f"{spec.shape}")
        if spec.levels < 2:
            raise ConfigError(f"pixelcnnpp needs at least 2 levels, got {spec.levels}")
        num_classes = spec.num_classes if s.conditional else 0
        if s.conditional and not num_classes:
            raise ConfigError("model.conditional=True but the data has no classes")
        self.model = PixelCNNPP(levels=spec.levels, channels=spec.shape[-1],
                                num_classes=num_classes, **s.network_fields())
        self.conditional = bool(num_classes)
        self.sampling.temperature_only("the logistic mixture")  # a ConfigError for top_k / p
        self.sampling.no_speculative("pixelcnnpp")

    def _labels(self, batch):
        return batch[LABEL] if self.conditional else None

    def init(self, rng, batch):
        return self.model.init(rng, batch[IMAGE], self._labels(batch))

    def loss(self, params, batch, rng, train, step=None):
        x = batch[IMAGE]  # [B, H, W, C] ints
        out = self.model.apply({"params": params}, x, self._labels(batch), train=train,
                               rngs={"dropout": rng})  # [B, H, W, P]
        c = self.spec.shape[-1]
        nll = lm.nll(out, x if c > 1 else x[..., 0], self.spec.levels, c)  # [B, H, W]
        nll = nll.reshape(x.shape[0], -1).sum(-1)  # [B] nats per image
        return nll_loss_and_sums(nll, batch[MASK], float(np.prod(x.shape[1:])))

    def sample(self, params, keys, labels=None):
        """Raster order, one pixel per scan step: the mixture draws its C channels jointly
        (at `sample.temperature`)."""
        labels = labels if self.conditional else None
        draw = lm.mixture_draw(self.spec.levels, self.spec.shape[-1], self.sampling.temperature)
        state, _ = self.raster_steps(params, keys.shape[0], labels).run(draw, keys)
        return state.seq

    def raster_steps(self, params, batch: int, labels=None) -> Steps:
        """Raster order, one pixel per step: step t returns the mixture parameters [B, P] of
        pixel t of a zero canvas [B, H, W, C] being filled in (the draw: [B, C] or [B])."""
        h, w, c = self.spec.shape

        def step_fn(canvas, cache, t):
            out = self.model.apply({"params": params}, canvas, labels)
            return out[:, t // w, t % w], cache  # [B, P]

        def write_fn(canvas, x, t):
            x = x.reshape(x.shape[0], c).astype(canvas.dtype)  # [B, C]
            return canvas.at[:, t // w, t % w, :].set(x)

        canvas = jnp.zeros((batch, h, w, c), jnp.int32)
        return Steps(step_fn, write_fn, canvas, None, h * w)

    # ---------------------------------------------------------------- lossless codec
    def coding_symbols(self) -> CodingSymbols:
        """One pixel per step, its C channels in C stages (R, then G | R, then B | R, G)."""
        levels, c = self.spec.levels, self.spec.shape[-1]

        def log_probs(out, x, stage):  # x [B, 1, C]
            return lm.channel_log_probs(out, x[:, 0], stage, levels, c)[:, None]

        def targets(data):  # [B, H, W, C] -> [H * W, B, 1, C]
            return jnp.asarray(data).reshape(data.shape[0], -1, 1, c).swapaxes(0, 1)

        return CodingSymbols(levels, log_probs, lambda x: x[:, 0], targets, stages=c)
