"""PixelCNN (van den Oord et al. 2016a) and Gated PixelCNN (van den Oord et al. 2016b).

Both are built from `layers.shifted_conv.ShiftedConv2D`: a masked convolution is a tap set.
Colour images use the R -> G -> B channel masks (interleaved channel groups, see that module).
Outputs are logits [B, H, W, C, levels] of a categorical per sub-pixel.

PixelCNN keeps its blind spot (the stack of masked 3x3 convs never sees the pixels up and to
the right beyond a cone); Gated PixelCNN's vertical + horizontal stacks remove it.
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
from argen_jax.heads.categorical import categorical_nll, to_unit_range
from argen_jax.layers.shifted_conv import (
    IMPLS,
    ImageCache,
    ShiftedConv2D,
    horizontal_offsets,
    masked_offsets,
    raster_pixel,
    shift,
    vertical_offsets,
)
from argen_jax.models.base import CodingSymbols, Family, RasterCoding, categorical_symbols
from argen_jax.parallel import axes
from argen_jax.sampling.loop import Steps

CENTER = ((0, 0),)


@dataclasses.dataclass(frozen=True)
class PixelCNNSettings:
    """`config.model` of pixelcnn / gated_pixelcnn (`model.name` picks the network)."""

    features: int = 64  # channels of every hidden layer
    num_layers: int = 10  # layers after the input layer
    in_kernel: int = 7  # input-layer kernel (mask A)
    kernel: int = 3  # hidden-layer kernel (mask B)
    out_hidden: int = 0  # width of the 1x1 output head (0: features)
    conditional: bool = False  # class-conditional (label added to every gate)
    impl: str = "conv"  # 'conv' (lax.conv; fastest on CPU too, see xla_env.py) or 'taps'
    dtype: str = "float32"  # compute dtype; 'bfloat16' for mixed precision (params f32)

    def __post_init__(self):
        config_lib.check_positive(self, "features", "num_layers", "in_kernel", "kernel")
        if self.out_hidden < 0:
            raise ConfigError(f"model.out_hidden={self.out_hidden} must be >= 0")
        config_lib.check_choice(self, "impl", IMPLS)
        config_lib.check_choice(self, "dtype", config_lib.COMPUTE_DTYPES)

    def check_image(self, shape) -> None:
        """Kernels that fit images of `shape` [H, W, C]: mask A needs a pixel above or to the
        left (in_kernel >= 2); wider than 2 * side - 1 sees nothing more, only costs."""
        if self.in_kernel < 2:
            raise ConfigError(f"model.in_kernel={self.in_kernel}: the mask-A input layer needs "
                              "a kernel of at least 2 (1 would see no earlier pixel)")
        most = 2 * max(shape[:2]) - 1
        for key in ("in_kernel", "kernel"):
            if getattr(self, key) > most:
                raise ConfigError(f"model.{key}={getattr(self, key)} is wider than "
                                  f"{shape[0]}x{shape[1]} images can use (at most {most})")

    def network_fields(self) -> dict:
        """The fields of the network modules (`_Base`) these settings fix."""
        fields = dataclasses.asdict(self)
        del fields["conditional"]
        fields["out_hidden"] = self.out_hidden or self.features
        fields["dtype"] = jnp.dtype(self.dtype)
        return fields


class ClassBias(nn.Module):
    """Class embedding projected to a per-channel bias (the conditioning vector h)."""

    num_classes: int
    features: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, labels):  # [B] -> [B, 1, 1, F]
        emb = nn.Embed(
            self.num_classes, self.features, dtype=self.dtype,
            embedding_init=nn.with_logical_partitioning(
                nn.initializers.normal(0.02), (axes.CLASSES, axes.CONV_OUT)),
        )(labels)
        return emb[:, None, None, :]


class _Base(nn.Module):
    levels: int = 256
    channels: int = 1  # colour channels of the data (groups for the channel masks)
    features: int = 64
    num_layers: int = 8
    in_kernel: int = 7
    kernel: int = 3
    out_hidden: int = 64
    num_classes: int = 0  # 0: unconditional
    impl: str = "conv"
    dtype: Any = jnp.float32

    def conv(self, features, offsets, mask=None, name=None):
        return ShiftedConv2D(features, offsets, center_mask=mask, groups=self.channels,
                             impl=self.impl, dtype=self.dtype, name=name)

    def cond(self, labels, features, name):
        if not self.num_classes or labels is None:
            return 0.0
        return ClassBias(self.num_classes, features, self.dtype, name=name)(labels)

    def head(self, h):
        """ReLU -> 1x1 -> ReLU -> 1x1 to logits [B, H, W, C, levels] (float32)."""
        c = self.channels
        h = self.conv(self.out_hidden, CENTER, "B", name="out_1")(nn.relu(h))
        h = self.conv(self.levels * c, CENTER, "B", name="out_2")(nn.relu(h))
        b, hh, ww, _ = h.shape
        # channel o = v * C + c belongs to colour group c (interleaved groups)
        return h.reshape(b, hh, ww, self.levels, c).swapaxes(-1, -2).astype(jnp.float32)

    # ------------------------------------------------------------------ cached step
    @property
    def pad(self) -> int:
        return max(self.in_kernel, self.kernel) // 2

    def _step_pixel(self, canvas, cache, t):
        """Step t = sub-pixel `ch` of pixel p: writes pixels p - 1 (complete) and p (its
        channels < ch; the rest are masked) of the canvas into the input cache."""
        c = self.channels
        p, ch = t // c, t % c
        xc = cache["x"]
        for q in (jnp.maximum(p - 1, 0), p):
            qi, qj, xq = raster_pixel(canvas, q)
            xc = xc.write(to_unit_range(xq, self.levels).astype(self.dtype), qi, qj)
        i, j, _ = raster_pixel(canvas, p)
        return i, j, ch, xc

    def _logit(self, logits, ch):  # [B, 1, 1, C, levels] -> [B, levels] of channel ch
        return jax.lax.dynamic_index_in_dim(logits[:, 0, 0], ch, 1, keepdims=False)


class PixelCNN(_Base):
    """Mask-A 7x7 conv, residual mask-B 3x3 convs, 1x1 output head."""

    @nn.compact
    def __call__(self, x, labels=None, train: bool = False, cache=None, t=None):
        """x: ints [B, H, W, C] in [0, levels) -> logits [B, H, W, C, levels]. With `cache`
        (`init_cache`) and the step t: the logits [B, levels] of sub-pixel t of the canvas x,
        computed at that pixel only from the cached inputs of every layer, and the cache."""
        k, f, c = self.in_kernel, self.features, self.channels
        in_offs = masked_offsets(k, k, "A", c)
        offs = masked_offsets(self.kernel, self.kernel, "B", c)
        step = cache is not None
        if step:
            i, j, ch, xc = self._step_pixel(x, cache, t)
            h = self.conv(f, in_offs, "A", name="in")(xc.window(in_offs, i, j), True)
            layers = []
        else:
            h = to_unit_range(x, self.levels).astype(self.dtype)
            h = self.conv(f, in_offs, "A", name="in")(h)
        h = h + self.cond(labels, f, "cond_in")
        for n in range(self.num_layers):
            layer = self.conv(f, offs, "B", name=f"layer_{n}")
            if step:  # the window reads the cache before the write (in place, no copy)
                r = layer(cache["layers"][n].window(offs, i, j, new=nn.relu(h)), True)
                layers.append(cache["layers"][n].write(nn.relu(h), i, j))
            else:
                r = layer(nn.relu(h))
            h = h + r + self.cond(labels, f, f"cond_{n}")
        if step:
            return self._logit(self.head(h), ch), {"x": xc, "layers": layers}
        return self.head(h)

    def init_cache(self, batch: int, shape) -> dict:
        """Zero caches for canvases [batch, *shape]: the input and every layer's input."""
        h, w, c = shape
        zeros = lambda ch: ImageCache.zeros(batch, h, w, ch, self.pad, self.dtype)  # noqa: E731
        return {"x": zeros(c), "layers": [zeros(self.features) for _ in range(self.num_layers)]}


def gate(x):
    a, b = jnp.split(x, 2, axis=-1)
    return jnp.tanh(a) * jax.nn.sigmoid(b)


class GatedPixelCNN(_Base):
    """Vertical stack (rows above) + horizontal stack (pixels to the left), gated units,
    v -> h 1x1 link from the down-shifted vertical stack, residual + skip connections,
    class conditioning added to every gate."""

    @nn.compact
    def __call__(self, x, labels=None, train: bool = False, cache=None, t=None):
        f, c = self.features, self.channels
        if f % c:
            raise ConfigError(f"model.features={f} must be divisible by the {c} colour channels")
        if cache is not None:
            return self._step(x, labels, cache, t)
        x = to_unit_range(x, self.levels).astype(self.dtype)
        v_in, h_in, skip = x, x, 0.0
        for i in range(self.num_layers + 1):
            first = i == 0
            k = self.in_kernel if first else self.kernel
            mask = "A" if first else "B"
            v = self.conv(2 * f, vertical_offsets(k, k), name=f"v_{i}")(v_in)
            link = self.conv(2 * f, CENTER, name=f"v2h_{i}")(shift(v, dy=1))
            h = self.conv(2 * f, horizontal_offsets(k, mask, c), mask, name=f"h_{i}")(h_in)
            cond = self.cond(labels, 2 * f, f"cond_{i}")
            v_in = gate(v + cond)
            g = gate(h + link + cond)
            skip = skip + self.conv(f, CENTER, "B", name=f"skip_{i}")(g)
            h_out = self.conv(f, CENTER, "B", name=f"res_{i}")(g)
            h_in = h_out if first else h_in + h_out
        return self.head(skip)

    def _layers(self, labels):
        """Per layer i: kernel, mask, its modules (v, v2h, h, skip, res) and its class bias."""
        f, c = self.features, self.channels
        out = []
        for i in range(self.num_layers + 1):
            k, mask = (self.in_kernel, "A") if i == 0 else (self.kernel, "B")
            out.append((vertical_offsets(k, k), horizontal_offsets(k, mask, c), mask,
                        self.conv(2 * f, vertical_offsets(k, k), name=f"v_{i}"),
                        self.conv(2 * f, CENTER, name=f"v2h_{i}"),
                        self.conv(2 * f, horizontal_offsets(k, mask, c), mask, name=f"h_{i}"),
                        self.conv(f, CENTER, "B", name=f"skip_{i}"),
                        self.conv(f, CENTER, "B", name=f"res_{i}"),
                        self.cond(labels, 2 * f, f"cond_{i}")))
        return out

    def _step(self, canvas, labels, cache, t):
        """The cached step: the vertical stack a row at a time (at the first sub-pixel of each
        row, the row above, whose outputs the row's links read), the horizontal stack at the
        pixel; every stack input kept in an `ImageCache`."""
        w = canvas.shape[2]
        i, j, ch, xc = self._step_pixel(canvas, cache, t)
        layers = self._layers(labels)

        r = jnp.maximum(i - 1, 0)

        def v_row(caches):
            """The vertical stack on row i - 1: (its gated inputs of layers 1.., its outputs).
            Reads the caches only (written after the cond: no copy of them per step)."""
            ins, rows, v_in = [], [], None
            for n, (v_offs, _, _, v, *_, cond) in enumerate(layers):
                src = caches[n - 1] if n else xc
                y = v(src.window(v_offs, r, 0, 1, w, new=v_in), True)  # [B, 1, W, 2F]
                rows.append(y[:, 0])
                v_in = gate(y + cond)
                ins.append(v_in)
            return ins[:-1], rows

        def keep(caches):  # what the caches hold already (writing it back changes nothing)
            return [c.read(r, 0, 1, w) for c in caches], list(cache["v_rows"])

        ins, rows = jax.lax.cond((j == 0) & (ch == 0) & (i > 0), v_row, keep, list(cache["v"]))
        vc = {"in": [c.write(x, r, 0) for c, x in zip(cache["v"], ins, strict=True)],
              "rows": rows}
        h_caches, skip, h_in = [], 0.0, None
        for n, (_, h_offs, _, _, v2h, hconv, skip_conv, res, cond) in enumerate(layers):
            if n:  # the window reads the cache before the write (in place, no copy)
                win = cache["h"][n - 1].window(h_offs, i, j, new=h_in)
                h_caches.append(cache["h"][n - 1].write(h_in, i, j))
            else:
                win = xc.window(h_offs, i, j)
            link = v2h(jax.lax.dynamic_slice_in_dim(vc["rows"][n], j, 1, axis=1)[:, None])
            g = gate(hconv(win, True) + link + cond)
            skip = skip + skip_conv(g)
            h_out = res(g)
            h_in = h_out if n == 0 else h_in + h_out
        cache = {"x": xc, "v": vc["in"], "v_rows": vc["rows"], "h": h_caches}
        return self._logit(self.head(skip), ch), cache

    def init_cache(self, batch: int, shape) -> dict:
        """Zero caches for canvases [batch, *shape]: the input, the vertical and horizontal
        stacks' inputs after the first layer, and the vertical outputs of the row above."""
        h, w, c = shape
        f, n = self.features, self.num_layers
        zeros = lambda ch: ImageCache.zeros(batch, h, w, ch, self.pad, self.dtype)  # noqa: E731
        return {"x": zeros(c), "v": [zeros(f) for _ in range(n)], "h": [zeros(f) for _ in range(n)],
                "v_rows": [jnp.zeros((batch, w, 2 * f), self.dtype) for _ in range(n + 1)]}


MODELS = {"pixelcnn": PixelCNN, "gated_pixelcnn": GatedPixelCNN}


class PixelCNNFamily(RasterCoding, Family):
    """Categorical pixel models on image data; raster sampling with the shared loop."""

    def __init__(self, config, spec):
        super().__init__(config, spec)
        name = config.model.name
        if name not in MODELS:
            raise ConfigError(f"model.name={name!r} is not a PixelCNN; known: {sorted(MODELS)}")
        self.settings = typed(PixelCNNSettings, config.model, "model", ignore=("name",))
        if spec.kind != "image" or len(spec.shape) != 3:
            raise ConfigError(f"{name} needs image data [H, W, C], got {spec.kind} {spec.shape}")
        self.settings.check_image(spec.shape)
        num_classes = spec.num_classes if self.settings.conditional else 0
        self.model = MODELS[name](levels=spec.levels, channels=spec.shape[-1],
                                  num_classes=num_classes, **self.settings.network_fields())
        self.conditional = bool(num_classes)
        self.sampling.no_speculative("pixelcnn")

    def _labels(self, batch):
        return batch[LABEL] if self.conditional else None

    def init(self, rng, batch):
        return self.model.init(rng, batch[IMAGE], self._labels(batch))

    def loss(self, params, batch, rng, train, step=None):
        x = batch[IMAGE]
        logits = self.model.apply({"params": params}, x, self._labels(batch), train=train,
                                  rngs={"dropout": rng})
        nll = categorical_nll(logits, x).reshape(x.shape[0], -1).sum(-1)  # [B] nats
        return nll_loss_and_sums(nll, batch[MASK], float(np.prod(x.shape[1:])))

    def sample(self, params, keys, labels=None):
        """Raster order, one sub-pixel per scan step (R, G, B inside a pixel); the draw is
        `config.sample`'s (temperature, top_k, top_p: `SamplingSettings`)."""
        labels = labels if self.conditional else None
        steps = self.raster_steps(params, keys.shape[0], labels)
        state, _ = steps.run(self.raster_draw(), keys)
        return state.seq

    def raster_draw(self):
        """The draw of `raster_steps`' outputs: `config.sample`'s processors."""
        return self.sampling.draw_fn()

    def raster_steps(self, params, batch: int, labels=None) -> Steps:
        """Raster order, one sub-pixel per step: step t returns the logits [B, levels] of
        sub-pixel t of a zero canvas [B, H, W, C] being filled in. `sample.pixel_cache`: the
        cached step (the model's `init_cache` as the loop's cache), else the full pass."""
        h, w, c = self.spec.shape
        cached = self.sampling.pixel_cache

        def step_fn(canvas, cache, t):
            if cached:
                return self.model.apply({"params": params}, canvas, labels, cache=cache, t=t)
            logits = self.model.apply({"params": params}, canvas, labels)
            i, j, ch = t // (w * c), (t // c) % w, t % c
            return logits[:, i, j, ch], cache

        def write_fn(canvas, x, t):
            i, j, ch = t // (w * c), (t // c) % w, t % c
            return canvas.at[:, i, j, ch].set(x.astype(canvas.dtype))

        canvas = jnp.zeros((batch, h, w, c), jnp.int32)
        cache = self.model.init_cache(batch, (h, w, c)) if cached else None
        return Steps(step_fn, write_fn, canvas, cache, h * w * c)

    # ---------------------------------------------------------------- lossless codec
    def coding_symbols(self) -> CodingSymbols:
        return categorical_symbols(self.spec.levels, lambda x: x.reshape(x.shape[0], -1).T)
