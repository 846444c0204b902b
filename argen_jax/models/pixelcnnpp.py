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
    ImageCache,
    ShiftedConv2D,
    ShiftedConvTranspose2D,
    down_right_shifted_offsets,
    down_right_shifted_up_offsets,
    down_shifted_offsets,
    down_shifted_up_offsets,
    raster_pixel,
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
    def __call__(self, x, a=None, labels=None, train: bool = False, cache=None, at=None):
        """Full form: x [B, H, W, F] -> [B, H, W, F]. Step form (`cache` given): x is the
        `ImageCache` of this block's input (the new block already written), `cache` the one
        of its inner activation, `at` = (i, j, n, m) the output block, `a` the shortcut input
        there; returns (output block [B, n, m, F], updated inner cache)."""
        f = self.features
        conv = lambda feats, taps, name, **kw: ShiftedConv2D(  # noqa: E731
            feats, taps, impl=self.impl, dtype=self.dtype, name=name, **kw)
        step = cache is not None
        if step:
            i, j, n, m = at
            c = conv(f, self.taps, "conv_1")(concat_elu(x.window(self.taps, i, j, n, m)), True)
            x = x.read(i, j, n, m)
        else:
            c = conv(f, self.taps, "conv_1")(concat_elu(x))
        if a is not None:
            c = c + conv(f, CENTER, "nin_a")(concat_elu(a))
        if step:
            cache = cache.write(c, i, j)
            c = concat_elu(cache.window(self.taps, i, j, n, m))
        else:
            c = concat_elu(c)
        c = nn.Dropout(self.dropout, deterministic=not train)(c)
        c = conv(2 * f, self.taps, "conv_2",
                 kernel_init=nn.initializers.variance_scaling(0.1, "fan_in", "truncated_normal")
                 )(c, step)
        if self.num_classes and labels is not None:
            c = c + nn.Embed(
                self.num_classes, 2 * f, dtype=self.dtype, name="cond",
                embedding_init=nn.with_logical_partitioning(
                    nn.initializers.normal(0.02), (axes.CLASSES, axes.CONV_OUT)),
            )(labels)[:, None, None, :]
        g, gate = jnp.split(c, 2, axis=-1)
        out = x + g * jax.nn.sigmoid(gate)
        return (out, cache) if step else out


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
    def __call__(self, x, labels=None, train: bool = False, cache=None, t=None):
        """Full pass; with `cache` (from `init_cache`) and the raster step `t`, the cached step
        of `_step` on the canvas x (same modules, same parameters)."""
        if cache is not None:
            return self._step(x, labels, cache, t)
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

    # ------------------------------------------------------------------ cached step
    # Ramachandran et al. 2017 (fast-pixel-cnn-pp): every layer input is an `ImageCache` at
    # its resolution. The u stream at step (i, j) only reads rows above i, so it is computed a
    # row at a time, at the first step of a row (resolution l: rows whose full-resolution row
    # is a multiple of 2^l); the ul stream a pixel at a time (resolution l: steps on its grid,
    # i and j multiples of 2^l). Both under `lax.cond`, so a step pays only for what it needs.
    def _plan(self):
        """Per resolution l: the names of the u / ul stream values (`d{l}_{k}` down, `u{l}_{k}`
        up; the lowest level's up input is its last down value) and the up pass's blocks."""
        res, r = self.num_resolutions, self.num_resnet
        n_up = [r if lv == res - 1 else r + 1 for lv in range(res)]
        up_in = [f"d{res - 1}_{r}" if lv == res - 1 else f"u{lv}_0" for lv in range(res)]
        return n_up, up_in

    def _up_value(self, lv, k):
        return self._plan()[1][lv] if k == 0 else f"u{lv}_{k}"

    def init_cache(self, batch: int, shape) -> dict:
        """Zero caches for canvases [batch, *shape]: the input (and its channel of ones) and,
        per resolution, every u / ul stream value and every block's inner activation."""
        h, w, c = shape
        f, r, dt = self.features, self.num_resnet, self.dtype
        n_up, _ = self._plan()

        def zeros(lv, ch=f):
            return ImageCache.zeros(batch, h >> lv, w >> lv, ch, 1, dt)

        cache = {"x": zeros(0, c + 1)}
        for stream in ("u", "ul"):
            vals, inner = {}, {}
            for lv in range(self.num_resolutions):
                for k in range(r + 1):
                    vals[f"d{lv}_{k}"] = zeros(lv)
                for k in range(r):
                    inner[f"d{lv}_{k}"] = zeros(lv)
                for k in range(n_up[lv] + 1):
                    vals.setdefault(self._up_value(lv, k), zeros(lv))
                for k in range(n_up[lv]):
                    inner[f"u{lv}_{k}"] = zeros(lv)
            cache[stream], cache[stream + "_inner"] = vals, inner
        return cache

    def _step(self, canvas, labels, cache, t):
        """canvas [B, H, W, C] ints with pixels < t written, cache -> (mixture parameters
        [B, P] of pixel t, cache)."""
        _, h, w, _ = canvas.shape
        res, r, f = self.num_resolutions, self.num_resnet, self.features
        labels = labels if self.num_classes else None
        n_up, _ = self._plan()
        i, j = t // w, t % w
        # the pixel written by the last step (at t = 0 a placeholder, overwritten at t = 1)
        pi, pj, xp = raster_pixel(canvas, jnp.maximum(t - 1, 0))
        xp = lm.to_unit(xp, self.levels).astype(self.dtype)
        xp = jnp.concatenate([xp, jnp.ones(xp.shape[:-1] + (1,), xp.dtype)], axis=-1)
        cache = dict(cache, x=cache["x"].write(xp, pi, pj))

        u_in = self._conv(f, down_shifted_offsets(2, 3), "u_in")
        ul_up_in = self._conv(f, down_shifted_offsets(1, 3), "ul_in_up")
        ul_left_in = self._conv(f, down_right_shifted_offsets(2, 1), "ul_in_left")
        downs = {(s, lv): self._conv(f, taps, f"{s}_down_{lv}", strides=2)
                 for lv in range(1, res) for s, taps in (("u", U_TAPS), ("ul", UL_TAPS))}
        ups = {lv: (ShiftedConvTranspose2D(f, down_shifted_up_offsets(2, 3), 2, impl=self.impl,
                                           dtype=self.dtype, name=f"u_up_{lv}"),
                    ShiftedConvTranspose2D(f, down_right_shifted_up_offsets(2, 2), 2,
                                           impl=self.impl, dtype=self.dtype, name=f"ul_up_{lv}"))
               for lv in range(1, res)}
        blocks = {}
        for lv in range(res):
            for p, n in (("d", r), ("u", n_up[lv])):
                for k in range(n):
                    blocks["u", f"{p}{lv}_{k}"] = self._block(U_TAPS, f"u_{p[0]}{lv}_{k}")
                    blocks["ul", f"{p}{lv}_{k}"] = self._block(UL_TAPS, f"ul_{p[0]}{lv}_{k}")

        def run_block(c, s, name, x_name, out_name, a, at):
            out, inner = blocks[s, name](c[s][x_name], a, labels, False,
                                         c[s + "_inner"][name], at)
            c = dict(c, **{s: dict(c[s], **{out_name: c[s][out_name].write(out, *at[:2])}),
                           s + "_inner": dict(c[s + "_inner"], **{name: inner})})
            return c

        def put(c, s, name, x, at):
            return dict(c, **{s: dict(c[s], **{name: c[s][name].write(x, *at[:2])})})

        def last_down(lv):  # the up pass's first block at level lv takes d{lv}_{last_down}
            return r - 1 if lv == res - 1 else r

        # ---- u stream: rows. Level lv, row ii (full-resolution row ii << lv).
        def u_rows(c, lv):
            ii, wl = i >> lv, w >> lv
            at = (ii, 0, 1, wl)
            if lv == 0:  # u0 row ii = u_in of input row ii - 1 (zero on row 0)
                x0 = u_in(c["x"].window(u_in.offsets, ii - 1, 0, 1, wl), True)
                x0 = jnp.where(ii > 0, x0, 0.0)
            else:
                x0 = downs["u", lv](c["u"][f"d{lv - 1}_{r}"].window(U_TAPS, ii, 0, 1, wl, 2),
                                    True)
            c = put(c, "u", f"d{lv}_0", x0, at)
            for k in range(r):
                c = run_block(c, "u", f"d{lv}_{k}", f"d{lv}_{k}", f"d{lv}_{k + 1}", None, at)
            if lv + 1 < res:
                c = jax.lax.cond(ii % 2 == 0, lambda c: u_rows(c, lv + 1), lambda c: c, c)
                up = ups[lv + 1][0]
                low = c["u"][self._up_value(lv + 1, n_up[lv + 1])]
                y = up(low.window(up.taps, ii // 2, 0, 1, wl // 2), True)  # [B, 2, wl, F]
                c = put(c, "u", f"u{lv}_0",
                        jax.lax.dynamic_slice_in_dim(y, ii % 2, 1, axis=1), at)
            last = last_down(lv)
            for k in range(n_up[lv]):
                a = c["u"][f"d{lv}_{last - k}"].read(*at)
                c = run_block(c, "u", f"u{lv}_{k}", self._up_value(lv, k), f"u{lv}_{k + 1}",
                              a, at)
            return c

        # ---- ul stream: pixels. Level lv, pixel (ii, jj) (full resolution (ii, jj) << lv).
        def ul_pixel(c, lv):
            ii, jj = i >> lv, j >> lv
            at = (ii, jj, 1, 1)
            if lv == 0:  # down-shift of ul_in_up, right-shift of ul_in_left
                x0 = (jnp.where(ii > 0, ul_up_in(c["x"].window(ul_up_in.offsets, ii - 1, jj),
                                                 True), 0.0)
                      + jnp.where(jj > 0, ul_left_in(c["x"].window(ul_left_in.offsets, ii,
                                                                     jj - 1), True), 0.0))
            else:
                x0 = downs["ul", lv](c["ul"][f"d{lv - 1}_{r}"].window(UL_TAPS, ii, jj, 1, 1, 2),
                                     True)
            c = put(c, "ul", f"d{lv}_0", x0, at)
            for k in range(r):
                a = c["u"][f"d{lv}_{k + 1}"].read(*at)
                c = run_block(c, "ul", f"d{lv}_{k}", f"d{lv}_{k}", f"d{lv}_{k + 1}", a, at)
            if lv + 1 < res:
                c = jax.lax.cond((ii % 2 == 0) & (jj % 2 == 0), lambda c: ul_pixel(c, lv + 1),
                                 lambda c: c, c)
                up = ups[lv + 1][1]
                low = c["ul"][self._up_value(lv + 1, n_up[lv + 1])]
                y = up(low.window(up.taps, ii // 2, jj // 2), True)  # [B, 2, 2, F]
                y = jax.lax.dynamic_slice(y, (0, ii % 2, jj % 2, 0), (y.shape[0], 1, 1, f))
                c = put(c, "ul", f"u{lv}_0", y, at)
            last = last_down(lv)
            for k in range(n_up[lv]):
                a = jnp.concatenate([c["u"][f"u{lv}_{k + 1}"].read(*at),
                                     c["ul"][f"d{lv}_{last - k}"].read(*at)], axis=-1)
                c = run_block(c, "ul", f"u{lv}_{k}", self._up_value(lv, k), f"u{lv}_{k + 1}",
                              a, at)
            return c

        cache = jax.lax.cond(j == 0, lambda c: u_rows(c, 0), lambda c: c, cache)
        cache = ul_pixel(cache, 0)
        ul = cache["ul"][self._up_value(0, n_up[0])].read(i, j)
        p = lm.num_params(self.num_mixtures, self.channels)
        out = self._conv(p, CENTER, "out")(jax.nn.elu(ul))
        return out[:, 0, 0].astype(jnp.float32), cache

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
        state, _ = self.raster_steps(params, keys.shape[0], labels).run(self.raster_draw(), keys)
        return state.seq

    def raster_draw(self):
        """The draw of `raster_steps`' outputs: the mixture at `sample.temperature`."""
        return lm.mixture_draw(self.spec.levels, self.spec.shape[-1], self.sampling.temperature)

    def raster_steps(self, params, batch: int, labels=None) -> Steps:
        """Raster order, one pixel per step: step t returns the mixture parameters [B, P] of
        pixel t of a zero canvas [B, H, W, C] being filled in (the draw: [B, C] or [B]).
        `sample.pixel_cache`: the cached step (the model's `init_cache` as the loop's
        cache), else the full pass (the reference)."""
        h, w, c = self.spec.shape
        cached = self.sampling.pixel_cache

        def step_fn(canvas, cache, t):
            if cached:
                return self.model.apply({"params": params}, canvas, labels, cache=cache, t=t)
            out = self.model.apply({"params": params}, canvas, labels)
            return out[:, t // w, t % w], cache  # [B, P]

        def write_fn(canvas, x, t):
            x = x.reshape(x.shape[0], c).astype(canvas.dtype)  # [B, C]
            return canvas.at[:, t // w, t % w, :].set(x)

        canvas = jnp.zeros((batch, h, w, c), jnp.int32)
        cache = self.model.init_cache(batch, (h, w, c)) if cached else None
        return Steps(step_fn, write_fn, canvas, cache, h * w)

    # ---------------------------------------------------------------- lossless codec
    def coding_symbols(self) -> CodingSymbols:
        """One pixel per step, its C channels in C stages (R, then G | R, then B | R, G)."""
        levels, c = self.spec.levels, self.spec.shape[-1]

        def log_probs(out, x, stage):  # x [B, 1, C]
            return lm.channel_log_probs(out, x[:, 0], stage, levels, c)[:, None]

        def targets(data):  # [B, H, W, C] -> [H * W, B, 1, C]
            return jnp.asarray(data).reshape(data.shape[0], -1, 1, c).swapaxes(0, 1)

        return CodingSymbols(levels, log_probs, lambda x: x[:, 0], targets, stages=c)
