"""VAR's multi-scale residual quantizer (Tian et al. 2024) over one shared codebook.

`MultiScaleResidualQuantizer` shares one `VectorQuantizer` over scales
`(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)`: at scale s the residual is area-downsampled to s x s,
quantized, upsampled back, refined by a small conv phi and subtracted. It exposes the per-scale
token maps VAR trains on, the latent rebuilt from any prefix of scales, and VAR's
teacher-forcing inputs (the accumulated latent of scales < s, area-downsampled to scale s).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.layers.quantizer.codebook import QuantizerOutput, VectorQuantizer
from argen_jax.layers.quantizer.resample import downsample, upsample
from argen_jax.layers.shifted_conv import ShiftedConv2D


class Phi(nn.Module):
    """VAR's quantizer refinement: x * (1 - r) + conv3x3(x) * r."""

    ratio: float = 0.5
    impl: str = "conv"
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        taps = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
        y = ShiftedConv2D(x.shape[-1], taps, impl=self.impl, param_dtype=self.param_dtype,
                          name="conv")(x)
        return x * (1.0 - self.ratio) + y.astype(x.dtype) * self.ratio


class MultiScaleResidualQuantizer(nn.Module):
    """VAR's multi-scale residual quantizer over one shared codebook.

    Scale s quantizes the residual area-downsampled to `scales[s]` x `scales[s]`; its codes are
    upsampled to the latent size, refined by phi and summed into the rebuilt latent f_hat. The
    last scale must equal the latent size. phi: `num_phi` convs shared over scales as in VAR
    (`phi_schedule`: 'even' gives scale s phi s * num_phi // S; 'var' is VAR's: the phi whose
    tick (linspace(1/(3K), 1 - 1/(3K), K) for K = 4, else 1/(2K)) is nearest s / (S - 1);
    they differ at some scales, e.g. scales 2 and 7 of 10)
    (0: no refinement; len(scales): one per scale).
    """

    scales: Sequence[int]
    codebook_size: int
    code_dim: int
    beta: float = 0.25
    l2_normalize: bool = False  # VAR: plain Euclidean codes (residuals shrink over scales)
    entropy_weight: float = 0.0
    entropy_temperature: float = 0.01
    ema: bool = False
    ema_decay: float = 0.99
    restart_threshold: float = 0.0
    usage_decay: float = 0.99
    num_phi: int = 4
    phi_ratio: float = 0.5
    upsample_method: str = "cubic"  # jax.image.resize method, or 'torch_bicubic' (VAR)
    impl: str = "conv"
    param_dtype: Any = jnp.float32
    phi_schedule: str = "even"  # which phi refines scale s: 'even' | 'var' (see above)

    def setup(self):
        if self.phi_schedule not in ("even", "var"):
            raise ConfigError(f"phi_schedule must be 'even' or 'var', got {self.phi_schedule!r}")
        sc = tuple(int(s) for s in self.scales)
        if not sc or any(b <= a for a, b in zip(sc, sc[1:], strict=False)) or sc[0] < 1:
            raise ConfigError(f"quantizer scales must be increasing positive ints, got {sc}")
        self.vq = VectorQuantizer(
            self.codebook_size, self.code_dim, self.beta, self.l2_normalize,
            self.entropy_weight, self.entropy_temperature, self.ema, self.ema_decay,
            self.restart_threshold, self.usage_decay, self.param_dtype, name="vq")
        self.phis = [Phi(self.phi_ratio, self.impl, self.param_dtype, name=f"phi_{i}")
                     for i in range(self.num_phi)]

    @property
    def num_scales(self) -> int:
        return len(self.scales)

    def token_shapes(self) -> list[tuple[int, int]]:
        return [(int(s), int(s)) for s in self.scales]

    def phi(self, s: int, h: jax.Array) -> jax.Array:
        if not self.num_phi:
            return h
        k = self.num_phi
        if self.phi_schedule == "var":
            d = 1 / (3 * k) if k == 4 else 1 / (2 * k)
            ticks = np.linspace(d, 1 - d, k)
            i = int(np.argmin(np.abs(ticks - s / max(self.num_scales - 1, 1))))
        else:
            i = min(s * k // self.num_scales, k - 1)
        return self.phis[i](h)

    def _check(self, z):
        if z.shape[1] != self.scales[-1] or z.shape[2] != self.scales[-1]:
            raise ConfigError(f"latent is {z.shape[1]}x{z.shape[2]} but the last quantizer "
                              f"scale is {self.scales[-1]}: they must match")
        if z.shape[-1] != self.code_dim:
            raise ConfigError(f"latent has {z.shape[-1]} channels, codebook has {self.code_dim}")

    # ---------------------------------------------------------------- decode-side API
    def embed_scale(self, s: int, indices: jax.Array, size: int | None = None) -> jax.Array:
        """Token map of scale s [B, p, p] -> its contribution to the latent [B, H, H, D]:
        phi_s(upsample(codes))."""
        size = size or self.scales[-1]
        return self.phi(s, upsample(self.vq.lookup(indices), size, self.upsample_method))

    def latent_from_indices(self, indices: Sequence[jax.Array]) -> jax.Array:
        """Rebuilt latent f_hat [B, H, H, D] from the token maps of scales 0..len(indices)-1
        (any prefix; all scales give the quantized latent)."""
        if not 0 < len(indices) <= self.num_scales:
            raise ConfigError(f"need 1..{self.num_scales} scales of tokens, got {len(indices)}")
        f_hat = 0.0
        for s, idx in enumerate(indices):
            f_hat = f_hat + self.embed_scale(s, idx)
        return f_hat

    def next_scale_input(self, f_hat: jax.Array, s: int) -> jax.Array:
        """VAR's input for predicting scale s: the accumulated latent of scales < s,
        area-downsampled to scales[s] ([B, p_s, p_s, D])."""
        return downsample(f_hat, self.scales[s])

    def teacher_forcing_inputs(self, indices: Sequence[jax.Array]) -> jax.Array:
        """All of VAR's teacher-forcing inputs at once: for s = 1..S-1 the latent accumulated
        from scales < s, area-downsampled to scale s, flattened and concatenated:
        [B, sum_{s>=1} p_s^2, D] (scale 0's input is the class token, not included)."""
        f_hat, out = 0.0, []
        for s in range(1, self.num_scales):
            f_hat = f_hat + self.embed_scale(s - 1, indices[s - 1])
            x = self.next_scale_input(f_hat, s)
            out.append(x.reshape(x.shape[0], -1, x.shape[-1]))
        return jnp.concatenate(out, axis=1)

    # ---------------------------------------------------------------- encode side
    def __call__(self, z: jax.Array, mask: jax.Array | None = None) -> QuantizerOutput:
        """z [B, H, H, D] -> QuantizerOutput with a list of per-scale token maps and per-scale
        counts [S, K]. Loss per VAR: mean over scales of ||sg(f_hat_s) - z||^2 * beta +
        ||f_hat_s - sg(z)||^2 where f_hat_s is the latent rebuilt after scale s."""
        self._check(z)
        mask = jnp.ones(z.shape[:1]) if mask is None else mask
        b, size = z.shape[0], self.scales[-1]
        z = z.astype(jnp.float32)
        z_sg = jax.lax.stop_gradient(z)
        rest, f_hat = z_sg, jnp.zeros_like(z)
        red = (1, 2, 3)
        loss = jnp.zeros((b,))
        aux = jnp.zeros(())
        all_idx, all_counts = [], []
        sum_counts = jnp.zeros((self.codebook_size,))
        sum_embed = jnp.zeros((self.codebook_size, self.code_dim))
        candidates = []
        for s, p in enumerate(self.scales):
            zs = self.vq.prepare(downsample(rest, p))  # [B, p, p, D]
            idx = jnp.argmin(self.vq.distances(zs), axis=-1).astype(jnp.int32)
            w = jnp.broadcast_to(mask[:, None, None], idx.shape)
            counts, sums = self.vq.statistics(zs, idx, w)
            sum_counts, sum_embed = sum_counts + counts, sum_embed + sums
            all_counts.append(counts)
            candidates.append(zs.reshape(-1, self.code_dim))
            aux = aux + self.vq.entropy(zs, w)
            h = self.phi(s, upsample(self.vq.lookup(idx), size, self.upsample_method))
            f_hat = f_hat + h
            rest = rest - h
            loss = loss + (self.beta * jnp.mean(jnp.square(jax.lax.stop_gradient(f_hat) - z),
                                                 axis=red)
                           + jnp.mean(jnp.square(f_hat - z_sg), axis=red))
            all_idx.append(idx)
        self.vq.update_state(sum_counts, sum_embed, jnp.concatenate(candidates, axis=0))
        z_q = z + jax.lax.stop_gradient(f_hat - z)  # straight-through
        s_n = self.num_scales
        return QuantizerOutput(z_q, all_idx, loss / s_n, aux / s_n, jnp.stack(all_counts))

    def encode(self, z: jax.Array) -> list[jax.Array]:
        """z [B, H, H, D] -> per-scale token maps [B, p_s, p_s] (no losses, no state)."""
        self._check(z)
        rest, out, size = z.astype(jnp.float32), [], self.scales[-1]
        for s, p in enumerate(self.scales):
            idx = self.vq.nearest(downsample(rest, p))
            rest = rest - self.phi(s, upsample(self.vq.lookup(idx), size, self.upsample_method))
            out.append(idx)
        return out

    def live_fraction(self) -> jax.Array:
        return self.vq.live_fraction()


def flatten_scales(indices: Sequence[jax.Array]) -> jax.Array:
    """Per-scale token maps [B, p_s, p_s] -> one sequence [B, sum p_s^2] (coarse to fine)."""
    return jnp.concatenate([i.reshape(i.shape[0], -1) for i in indices], axis=1)


def split_scales(tokens: jax.Array, scales: Sequence[int]) -> list[jax.Array]:
    """Inverse of `flatten_scales`: [B, sum p_s^2] -> [B, p_s, p_s] per scale."""
    out, start = [], 0
    for p in scales:
        out.append(tokens[:, start : start + p * p].reshape(tokens.shape[0], p, p))
        start += p * p
    if start != tokens.shape[1]:
        raise ConfigError(f"{tokens.shape[1]} tokens do not match scales {tuple(scales)}")
    return out
