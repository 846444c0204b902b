"""One causal 2-D convolution for every pixel model: a sum over explicit kernel taps.

    y[b, i, j] = sum_t  x[b, i + dy_t, j + dx_t] @ W_t        (zero outside the image)

A PixelCNN mask (type A / B), the Gated PixelCNN vertical and horizontal stacks and
PixelCNN++'s down-shifted / down-right-shifted convolutions are all just different tap sets,
so they share this module instead of each writing a masked conv. Only the taps that may be
seen are parameters; a masked-out weight does not exist, so it cannot leak.

For colour images the tap at (0, 0) may carry a channel mask: channel c belongs to group
`c % groups` (interleaved, so splitting a tensor in halves for gates keeps every channel's
group), and output group g sees input groups < g (mask 'A') or <= g (mask 'B').

Step form (cached generation, Ramachandran et al. 2017): a layer's *input* is kept in an
`ImageCache` (every position of the image, zero-padded around it, an explicit pytree carried by
the sampling loop's `cache`, as `causal_conv`'s queues are); the model writes the new inputs
into it and calls the layer with `valid=True` on `cache.window(...)`, the padded patch whose
outputs are the positions being computed. Same module, same parameters, same taps: a sampling
step computes one pixel (or, for stacks that see the current row, one row once the row above
is complete) instead of the whole image.

Two implementations of the same function (same parameters):
  * 'taps': concatenate the shifted slices and do one matmul. XLA's CPU matmul is far faster
    than its convolution (see docs/design.md), so this is the default on CPU.
  * 'conv': scatter the taps into a dense kernel and call `lax.conv_general_dilated`
    (cuDNN / TPU convolutions are fast there).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import struct

from argen_jax.parallel import axes

Offsets = tuple[tuple[int, int], ...]
IMPLS = ("conv", "taps")  # the two implementations of ShiftedConv2D (same function, params)


# --------------------------------------------------------------------------- tap sets
def masked_offsets(kh: int, kw: int, mask: str, groups: int = 1) -> Offsets:
    """PixelCNN mask: rows above in full, the current row left of centre, centre per mask.

    Mask 'A' (first layer) excludes the centre pixel; for colour (`groups > 1`) the centre tap
    stays and its channel mask keeps only earlier colour channels.
    """
    if mask not in ("A", "B"):
        raise ValueError(f"mask must be 'A' or 'B', got {mask!r}")
    offs = [(dy, dx) for dy in range(-(kh // 2), 0) for dx in range(-(kw // 2), kw // 2 + 1)]
    offs += [(0, dx) for dx in range(-(kw // 2), 0)]
    if mask == "B" or groups > 1:
        offs.append((0, 0))
    return tuple(offs)


def vertical_offsets(kh: int, kw: int) -> Offsets:
    """Gated PixelCNN vertical stack: rows [i - kh//2, i], full width. Includes row i, so its
    output must be shifted down one row before it feeds the horizontal stack."""
    return tuple((dy, dx) for dy in range(-(kh // 2), 1) for dx in range(-(kw // 2), kw // 2 + 1))


def horizontal_offsets(kw: int, mask: str, groups: int = 1) -> Offsets:
    """Gated PixelCNN horizontal stack: pixels [j - kw//2, j) of the current row, + centre."""
    offs = [(0, dx) for dx in range(-(kw // 2), 0)]
    if mask == "B" or groups > 1:
        offs.append((0, 0))
    return tuple(offs)


def down_shifted_offsets(kh: int, kw: int) -> Offsets:
    """PixelCNN++ down-shifted conv: rows [i-kh+1, i], columns centred."""
    return tuple((dy, dx) for dy in range(-(kh - 1), 1) for dx in range(-(kw // 2), kw // 2 + 1))


def down_right_shifted_offsets(kh: int, kw: int) -> Offsets:
    """PixelCNN++ down-right-shifted conv: rows [i-kh+1, i], columns [j-kw+1, j]."""
    return tuple((dy, dx) for dy in range(-(kh - 1), 1) for dx in range(-(kw - 1), 1))


def _transpose_phase_offsets(kh: int, kw: int, stride: int, col_crop: int) -> tuple[Offsets, ...]:
    """Per-phase taps of a stride-`stride` transposed conv with a kh x kw kernel whose output
    is cropped to the first rows and to columns [col_crop, col_crop + stride * w).

    Output pixel (stride*i + a, stride*j + b) (phase a*stride + b) sums low-resolution pixels
    (i + dy, j + dx) for its (dy, dx); every kernel tap lands in exactly one phase."""
    phases = []
    for a in range(stride):
        for b in range(stride):
            offs = [((a - ky) // stride, (b + col_crop - kx) // stride)
                    for ky in range(kh) for kx in range(kw)
                    if (a - ky) % stride == 0 and (b + col_crop - kx) % stride == 0]
            phases.append(tuple(offs))
    return tuple(phases)


def down_shifted_up_offsets(kh: int, kw: int, stride: int = 2) -> tuple[Offsets, ...]:
    """PixelCNN++ down-shifted transposed conv (kh x kw, columns centred): output rows
    stride*i + a only see low-resolution row i, so the u stream stays strictly above."""
    return _transpose_phase_offsets(kh, kw, stride, (kw - 1) // 2)


def down_right_shifted_up_offsets(kh: int, kw: int, stride: int = 2) -> tuple[Offsets, ...]:
    """PixelCNN++ down-right-shifted transposed conv: output (stride*i + a, stride*j + b)
    only sees low-resolution pixels at or above-left of (i, j)."""
    return _transpose_phase_offsets(kh, kw, stride, 0)


def channel_mask(cin: int, cout: int, groups: int, mask: str) -> np.ndarray:
    """[cin, cout] 0/1 mask: out group g sees in groups < g ('A') or <= g ('B')."""
    gi = np.arange(cin)[:, None] % groups
    go = np.arange(cout)[None, :] % groups
    return (gi < go if mask == "A" else gi <= go).astype(np.float32)


def shift(x: jax.Array, dy: int = 0, dx: int = 0) -> jax.Array:
    """out[:, i, j] = x[:, i - dy, j - dx] (zero-filled): dy=1 moves content down one row."""
    _, h, w, _ = x.shape
    xp = jnp.pad(x, ((0, 0), (max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)), (0, 0)))
    y0, x0 = max(-dy, 0), max(-dx, 0)
    return xp[:, y0 : y0 + h, x0 : x0 + w, :]


# --------------------------------------------------------------------------- step form
def tap_pads(offsets) -> tuple[int, int, int, int]:
    """(top, bottom, left, right): how far the taps reach above, below, left and right."""
    dys, dxs = [o[0] for o in offsets], [o[1] for o in offsets]
    return max(0, -min(dys)), max(0, max(dys)), max(0, -min(dxs)), max(0, max(dxs))


@struct.dataclass
class ImageCache:
    """The values of one layer input at every position of an H x W image (zeros where not
    written yet), padded with `pad` zero rows above and `pad` zero columns on either side:
    the convolutions' zero padding. The step form's state (see the module docstring)."""

    buf: jax.Array  # [B, pad + H, pad + W + pad, C]
    pad: int = struct.field(pytree_node=False)

    @classmethod
    def zeros(cls, batch: int, h: int, w: int, channels: int, pad: int,
              dtype=jnp.float32) -> ImageCache:
        return cls(jnp.zeros((batch, pad + h, w + 2 * pad, channels), dtype), pad)

    def write(self, x: jax.Array, i, j) -> ImageCache:
        """x [B, n, m, C]: the values at image rows i.., columns j.. (i, j may be traced)."""
        p = self.pad
        return self.replace(buf=jax.lax.dynamic_update_slice(
            self.buf, x.astype(self.buf.dtype), (0, i + p, j + p, 0)))

    def read(self, i, j, n: int = 1, m: int = 1) -> jax.Array:
        """[B, n, m, C]: the values at image rows i..i+n-1, columns j..j+m-1."""
        p, b, c = self.pad, self.buf.shape[0], self.buf.shape[-1]
        return jax.lax.dynamic_slice(self.buf, (0, i + p, j + p, 0), (b, n, m, c))

    def window(self, offsets, i, j, n: int = 1, m: int = 1, stride: int = 1,
               new: jax.Array | None = None) -> jax.Array:
        """The padded input patch of a layer with these taps and stride whose `valid` outputs
        are output rows i..i+n-1, columns j..j+m-1: [B, s(n-1)+top+1, s(m-1)+left+right+1, C].
        Taps below the current row (bottom > 0) are not cached inputs. `new` [B, n, m, C]
        (stride 1): the inputs at those positions, not written yet, used in their place."""
        top, bottom, left, right = tap_pads(offsets)
        if bottom or max(top, left, right) > self.pad:
            raise ValueError(f"ImageCache(pad={self.pad}) cannot serve taps {offsets}")
        p, s, b, c = self.pad, stride, self.buf.shape[0], self.buf.shape[-1]
        size = (b, s * (n - 1) + top + 1, s * (m - 1) + left + right + 1, c)
        win = jax.lax.dynamic_slice(self.buf, (0, s * i + p - top, s * j + p - left, 0), size)
        if new is None:
            return win
        return win.at[:, top:top + n, left:left + m].set(new.astype(win.dtype))


# --------------------------------------------------------------------------- the module
class ShiftedConv2D(nn.Module):
    """Convolution over an explicit set of taps `offsets` ((dy, dx) pairs; dy < 0 is above).

    Input [B, H, W, Cin] -> output [B, ceil(H/s), ceil(W/s), features]. With `valid=True`
    the input is an already padded patch (`ImageCache.window`) and the output has only the
    positions whose taps all fall inside it: the step form, with the same parameters.
    """

    features: int
    offsets: Sequence[tuple[int, int]]
    center_mask: str | None = None  # None, 'A' or 'B': channel mask on the (0, 0) tap
    groups: int = 1  # colour groups for the channel mask (3 for RGB)
    strides: int = 1
    use_bias: bool = True
    impl: str = "conv"  # 'conv' (lax.conv on a dense kernel) or 'taps' (concat + one matmul)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

    @nn.compact
    def __call__(self, x: jax.Array, valid: bool = False) -> jax.Array:
        offsets = tuple((int(dy), int(dx)) for dy, dx in self.offsets)
        if len(set(offsets)) != len(offsets) or not offsets:
            raise ValueError(f"ShiftedConv2D: offsets must be distinct and non-empty: {offsets}")
        cin, t = x.shape[-1], len(offsets)

        def init(key, shape, dtype):  # fan-in of the real taps only
            return self.kernel_init(key, (t * cin, self.features), dtype).reshape(shape)

        kernel = self.param(
            "kernel",
            nn.with_logical_partitioning(init, (axes.TAPS, axes.CONV_IN, axes.CONV_OUT)),
            (t, cin, self.features),
            self.param_dtype,
        )
        if self.center_mask is not None and self.groups > 1:
            if (0, 0) not in offsets:
                raise ValueError("center_mask given but (0, 0) is not among the offsets")
            m = np.ones((t, cin, self.features), np.float32)
            m[offsets.index((0, 0))] = channel_mask(cin, self.features, self.groups,
                                                    self.center_mask)
            kernel = kernel * jnp.asarray(m, kernel.dtype)
        x = x.astype(self.dtype)
        kernel = kernel.astype(self.dtype)
        if self.impl == "taps":
            y = self._taps(x, kernel, offsets, valid)
        elif self.impl == "conv":
            y = self._conv(x, kernel, offsets, valid)
        else:
            raise ValueError(f"ShiftedConv2D.impl must be 'taps' or 'conv', got {self.impl!r}")
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, (axes.CONV_OUT,)),
                (self.features,),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y

    def _taps(self, x, kernel, offsets, valid):
        s = self.strides
        top, bottom, left, right = tap_pads(offsets)
        if valid:  # a padded patch: n = the outputs it holds
            xp = x
            n = (x.shape[1] - top - bottom - 1) // s + 1
            m = (x.shape[2] - left - right - 1) // s + 1
        else:
            xp = jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
            n, m = -(-x.shape[1] // s), -(-x.shape[2] // s)
        cols = [
            xp[:, top + dy : top + dy + s * (n - 1) + 1 : s,
               left + dx : left + dx + s * (m - 1) + 1 : s, :]
            for dy, dx in offsets
        ]
        patches = jnp.concatenate(cols, axis=-1)  # [B, H', W', T*Cin]
        return patches @ kernel.reshape(-1, kernel.shape[-1])

    def _conv(self, x, kernel, offsets, valid):
        top, bottom, left, right = tap_pads(offsets)
        kh, kw = top + bottom + 1, left + right + 1
        dense = jnp.zeros((kh, kw) + kernel.shape[1:], kernel.dtype)
        for i, (dy, dx) in enumerate(offsets):
            dense = dense.at[top + dy, left + dx].set(kernel[i])
        return jax.lax.conv_general_dilated(
            x,
            dense,
            window_strides=(self.strides, self.strides),
            padding="VALID" if valid else ((top, bottom), (left, right)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
        )


class ShiftedConvTranspose2D(nn.Module):
    """Up-sampling by `stride` as `stride**2` phase convolutions, each a `ShiftedConv2D` over
    its own taps (from `down_shifted_up_offsets` / `down_right_shifted_up_offsets`), then
    interleaved (depth to space). The same function and parameter count as a transposed
    convolution with that kernel, without writing another convolution. Phases with the same
    taps share one ShiftedConv2D call; one bias is shared by all phases.

    Input [B, h, w, Cin] -> output [B, stride*h, stride*w, features]. With `valid=True` the
    input is a padded patch of the low-resolution input (`ImageCache.window` with `taps`)
    and the output the `stride`-times larger block of its valid positions (the step form).
    """

    features: int
    phase_offsets: Sequence[Offsets]  # stride**2 tap sets; phase a*stride + b
    stride: int = 2
    use_bias: bool = True
    impl: str = "conv"
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32
    kernel_init: Any = nn.initializers.variance_scaling(1.0, "fan_in", "truncated_normal")

    @property
    def taps(self) -> Offsets:
        """Every phase's taps together: what a step-form patch must cover."""
        return tuple(sorted({(int(dy), int(dx)) for offs in self.phase_offsets
                             for dy, dx in offs}))

    @nn.compact
    def __call__(self, x: jax.Array, valid: bool = False) -> jax.Array:
        s, f = self.stride, self.features
        if len(self.phase_offsets) != s * s:
            raise ValueError(f"ShiftedConvTranspose2D: need {s * s} phase tap sets, got "
                             f"{len(self.phase_offsets)}")
        groups: dict[Offsets, list[int]] = {}
        for ph, offs in enumerate(self.phase_offsets):
            groups.setdefault(tuple((int(dy), int(dx)) for dy, dx in offs), []).append(ph)
        outs: list[Any] = [None] * (s * s)
        top, _, left, right = tap_pads(self.taps)
        for gi, (offs, phases) in enumerate(groups.items()):
            xi = x
            if valid:  # this phase's own patch inside the patch of all taps
                t, _, lf, rt = tap_pads(offs)
                xi = x[:, top - t:, left - lf : x.shape[2] - (right - rt)]
            y = ShiftedConv2D(f * len(phases), offs, use_bias=False, impl=self.impl,
                              dtype=self.dtype, param_dtype=self.param_dtype,
                              kernel_init=self.kernel_init, name=f"phase_{gi}")(xi, valid)
            for n, ph in enumerate(phases):
                outs[ph] = y[..., n * f : (n + 1) * f]
        b, h, w, _ = outs[0].shape
        y = jnp.stack(outs, axis=3).reshape(b, h, w, s, s, f)  # [B, h, w, a, b, F]
        y = y.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * s, w * s, f)
        if self.use_bias:
            bias = self.param(
                "bias",
                nn.with_logical_partitioning(nn.initializers.zeros, (axes.CONV_OUT,)),
                (f,),
                self.param_dtype,
            )
            y = y + bias.astype(self.dtype)
        return y


def raster_pixel(x: jax.Array, p) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(i, j, x[:, i:i+1, j:j+1]) of raster position p (traced) of x [B, H, W, ...]."""
    w = x.shape[2]
    i, j = p // w, p % w
    size = (x.shape[0], 1, 1) + x.shape[3:]
    return i, j, jax.lax.dynamic_slice(x, (0, i, j) + (0,) * (x.ndim - 3), size)
