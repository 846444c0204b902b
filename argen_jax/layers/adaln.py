"""Adaptive-LayerNorm transformer blocks (VAR, Tian et al. 2024; DiT's adaLN).

A condition vector c [B, Dc] (VAR: the class embedding) modulates every block:

    gamma1, gamma2, scale1, scale2, shift1, shift2 = Dense(6E)(silu(c))
    x = x + gamma1 * Attn(LN(x) * (1 + scale1) + shift1)
    x = x + gamma2 * MLP(LN(x) * (1 + scale2) + shift2)

with LayerNorm without affine parameters (eps 1e-6), a GELU (tanh) MLP of ratio 4 with biases,
and attention with q / v / output biases (and optionally VAR's l2-normalised attention) from
`layers.attention.Attention`, so the same `KVCache` serves block-by-block decoding.
`AdaLNHead` is the final norm before the output head: LN(x) * (1 + scale) + shift.

The 6E modulation vector keeps VAR's order (gamma1, gamma2, scale1, scale2, shift1, shift2)
so a PyTorch `ada_lin.1` weight converts by a transpose. Initialisation follows VAR's
`init_weights`: Dense kernels (q / k / v too) N(0, 1 / (3E)), the attention output and fc2
divided by sqrt(2 depth) (`residual_init_scale`); the modulation kernel times `gamma_init` for the
gammas (VAR's alng, default 1e-5: blocks start near the identity) and 0.5 for scales / shifts.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from argen_jax.layers.attention import Attention, KVCache
from argen_jax.parallel import axes


def var_init_std(width: int) -> float:
    """VAR's automatic init std: sqrt(1 / (3 * width))."""
    return (1.0 / (3.0 * width)) ** 0.5


def _modulation_init(std: float, width: int, gamma_chunks: int, gamma_mult: float,
                     mult: float):
    """N(0, std^2) kernel [Dc, k * E]: the first `gamma_chunks` E-wide columns blocks times
    gamma_mult, the rest times mult (VAR: 1e-5 and 0.5)."""

    def init(key, shape, dtype=jnp.float32):
        w = nn.initializers.normal(std)(key, shape, dtype)
        col = jnp.arange(shape[-1]) // width
        return w * jnp.where(col < gamma_chunks, gamma_mult, mult).astype(dtype)

    return init


def _layer_norm(x, eps: float):
    """LayerNorm without affine parameters, in float32."""
    xf = x.astype(jnp.float32)
    mu = jnp.mean(xf, -1, keepdims=True)
    var = jnp.mean(jnp.square(xf - mu), -1, keepdims=True)
    return (xf - mu) * jax.lax.rsqrt(var + eps)


class MLP(nn.Module):
    """fc2(gelu_tanh(fc1(x))), with biases; hidden width sharded on the 'mlp' axis."""

    hidden: int
    init_std: float
    out_init_std: float | None = None  # fc2's (None: init_std)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # [B, T, E] -> [B, T, E]
        width = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.Dense(self.hidden, name="fc1", kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(self.init_std), (axes.EMBED, axes.MLP)), **kw)(x)
        h = nn.with_logical_constraint(nn.gelu(h, approximate=True),
                                       (axes.BATCH, axes.LENGTH, axes.MLP))
        return nn.Dense(width, name="fc2", kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(self.out_init_std or self.init_std), (axes.MLP, axes.EMBED)),
            **kw)(h)


class AdaLNBlock(nn.Module):
    """VAR's AdaLNSelfAttn (non-shared modulation): see the module docstring."""

    num_heads: int
    mlp_ratio: float = 4.0
    attn_l2_norm: bool = True  # cosine attention with a learned temperature (VAR's default)
    norm_eps: float = 1e-6
    init_std: float | None = None  # None: var_init_std(width)
    gamma_init: float = 1e-5  # the gamma columns' init multiplier (VAR's alng)
    residual_init_scale: float = 1.0  # attention output / fc2 init std = init_std * this
    #   (VAR: 1 / sqrt(2 depth))
    attention_impl: str = "einsum"  # Attention.impl (full pass)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond, mask, cache: KVCache | None = None, train: bool = False):
        """x [B, T, E], cond [B, Dc], mask bool [B, 1, T, S] -> (x [B, T, E], cache).
        Positional arguments (`nn.remat` marks train, argnum 5, static)."""
        width = x.shape[-1]
        std = self.init_std or var_init_std(width)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        ada = nn.Dense(6 * width, name="ada_lin", kernel_init=nn.with_logical_partitioning(
            _modulation_init(std, width, 2, self.gamma_init, 0.5), (axes.EMBED, axes.MLP)), **kw)(
            nn.silu(cond))
        gamma1, gamma2, scale1, scale2, shift1, shift2 = jnp.split(
            ada.astype(jnp.float32)[:, None, :], 6, axis=-1)  # each [B, 1, E]
        # VAR's softmax scale without l2 attention is 0.25 / sqrt(head_dim)
        hd = width // self.num_heads
        attn = Attention(self.num_heads, biases=("query", "value", "out"),
                         qk_l2_norm=self.attn_l2_norm,
                         softmax_scale=None if self.attn_l2_norm else 0.25 * hd ** -0.5,
                         impl=self.attention_impl, init_std=std,
                         out_init_std=std * self.residual_init_scale, name="attn", **kw)
        h = _layer_norm(x, self.norm_eps) * (1.0 + scale1) + shift1
        h, cache = attn(h.astype(self.dtype), mask, None, cache, train)
        x = nn.with_logical_constraint(x + (h * gamma1).astype(x.dtype), axes.RESIDUAL)
        h = _layer_norm(x, self.norm_eps) * (1.0 + scale2) + shift2
        h = MLP(round(width * self.mlp_ratio), std, std * self.residual_init_scale, name="ffn",
                **kw)(h.astype(self.dtype))
        return nn.with_logical_constraint(x + (h * gamma2).astype(x.dtype), axes.RESIDUAL), cache


class AdaLNHead(nn.Module):
    """VAR's AdaLNBeforeHead: LN(x) * (1 + scale) + shift, (scale, shift) = Dense(silu(c))."""

    norm_eps: float = 1e-6
    init_std: float | None = None
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, cond):  # [B, T, E], [B, Dc] -> [B, T, E] float32
        width = x.shape[-1]
        std = self.init_std or var_init_std(width)
        ada = nn.Dense(2 * width, name="ada_lin", dtype=self.dtype,
                       param_dtype=self.param_dtype, kernel_init=nn.with_logical_partitioning(
                           _modulation_init(std, width, 0, 1.0, 0.5), (axes.EMBED, axes.MLP)))(
            nn.silu(cond))
        scale, shift = jnp.split(ada.astype(jnp.float32)[:, None, :], 2, axis=-1)
        return _layer_norm(x, self.norm_eps) * (1.0 + scale) + shift
