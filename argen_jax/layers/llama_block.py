"""Llama building blocks: RMSNorm, SwiGLU feed-forward, and the pre-norm decoder block."""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn

from argen_jax.layers.attention import Attention, KVCache
from argen_jax.parallel import axes


class RMSNorm(nn.Module):
    """x / rms(x) * scale, computed in float32."""

    eps: float = 1e-6
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):  # [..., E]
        scale = self.param("scale", nn.with_logical_partitioning(nn.initializers.ones,
                                                                 (axes.EMBED,)),
                           (x.shape[-1],), self.param_dtype)
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


class SwiGLU(nn.Module):
    """silu(x W_gate) * (x W_up) W_down; the hidden width is sharded on the 'mlp' axis."""

    hidden: int
    dropout: float = 0.0
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, train: bool = False):  # [B, T, E] -> [B, T, E]
        width = x.shape[-1]

        def dense(features, names, std, name):
            return nn.Dense(features, use_bias=False, dtype=self.dtype,
                            param_dtype=self.param_dtype, name=name,
                            kernel_init=nn.with_logical_partitioning(
                                nn.initializers.normal(std), names))

        gate = dense(self.hidden, (axes.EMBED, axes.MLP), width ** -0.5, "gate")(x)
        up = dense(self.hidden, (axes.EMBED, axes.MLP), width ** -0.5, "up")(x)
        h = nn.with_logical_constraint(nn.silu(gate) * up, (axes.BATCH, axes.LENGTH, axes.MLP))
        y = dense(width, (axes.MLP, axes.EMBED), self.hidden ** -0.5, "down")(h)
        return nn.Dropout(self.dropout)(y, deterministic=not train)


class LlamaBlock(nn.Module):
    """x + Attn(RMSNorm(x)); then x + SwiGLU(RMSNorm(x))."""

    num_heads: int
    mlp_dim: int
    num_kv_heads: int | None = None
    head_dim: int | None = None
    dropout: float = 0.0
    decode_chunk: int = 256  # Attention.decode_chunk
    norm_eps: float = 1e-6  # RMSNorm epsilon (LlamaGen: 1e-5)
    attention_impl: str = "einsum"  # Attention.impl (full pass)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, angles=None, cache: KVCache | None = None,
                 train: bool = False, is_causal: bool = False):
        """Arguments as `Attention`'s (positional, so `nn.remat` can mark train / is_causal
        static: argnums 5, 6)."""
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(self.norm_eps, name="attn_norm", **kw)(x)
        h, cache = Attention(self.num_heads, self.num_kv_heads, self.head_dim, self.dropout,
                             self.decode_chunk, impl=self.attention_impl, name="attn", **kw)(
            h, mask, angles, cache, train, is_causal)
        x = nn.with_logical_constraint(x + h, axes.RESIDUAL)
        h = SwiGLU(self.mlp_dim, self.dropout, name="mlp", **kw)(
            RMSNorm(self.norm_eps, name="mlp_norm", **kw)(x), train)
        return nn.with_logical_constraint(x + h, axes.RESIDUAL), cache
