"""The T5 v1.1 / FLAN-T5 encoder in Flax: relative position buckets, RMS norm, gated-GELU.

The architecture Hugging Face's `T5EncoderModel` computes (and LlamaGen's frozen FLAN-T5-XL
caption encoder): token embedding, N pre-norm blocks of bidirectional self-attention (no
1/sqrt(d) scale: T5 folds it into the initialisation) plus a relative position bias shared by
every block, then a gated-GELU feed-forward (`gelu(x W_0) * (x W_1) W_o`, tanh GELU), a final
RMS norm, no biases anywhere. Padded keys are hidden through the one mask rule
(`layers/masks.attention_mask`: every position has block id 0, keys valid where `mask`).
Parameters carry logical axis names (`parallel/axes.py`), so the encoder runs sharded over
the mesh like any of our models.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import CheckpointError
from argen_jax.layers import masks
from argen_jax.layers.attention import dot_product_attention
from argen_jax.layers.llama_block import RMSNorm
from argen_jax.parallel import axes

BUCKETS = "relpos_buckets"  # rows of the relative position bias table (never sharded)


@dataclasses.dataclass(frozen=True)
class T5Config:
    """The encoder's shape, read from a Hugging Face `config.json` (same key names)."""

    vocab_size: int = 32128
    d_model: int = 512
    d_kv: int = 64
    d_ff: int = 1024
    num_layers: int = 8
    num_heads: int = 6
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    layer_norm_epsilon: float = 1e-6
    feed_forward_proj: str = "gated-gelu"

    def __post_init__(self):
        if self.feed_forward_proj not in ("gated-gelu", "relu"):
            raise CheckpointError(
                f"T5 feed_forward_proj={self.feed_forward_proj!r}: only 'gated-gelu' (T5 v1.1, "
                f"FLAN-T5) and 'relu' (the original T5) are supported")

    @classmethod
    def from_json(cls, path: str) -> T5Config:
        try:
            with open(path) as f:
                raw = json.load(f)
        except (OSError, ValueError) as e:
            raise CheckpointError(f"cannot read T5 config {path!r}: {e}") from None
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})

    @classmethod
    def from_folder(cls, folder: str) -> T5Config:
        return cls.from_json(os.path.join(folder, "config.json"))


def relative_position_buckets(q_len: int, k_len: int, num_buckets: int,
                              max_distance: int) -> np.ndarray:
    """[Tq, Tk] int32 bucket of (key position - query position), bidirectional as T5's
    encoder: half the buckets for keys after the query; within each half, exact buckets for
    distances below num_buckets / 4 and logarithmic ones up to max_distance. Float32
    arithmetic, as Hugging Face's torch code does it, so boundary cases round alike."""
    rel = np.arange(k_len)[None, :] - np.arange(q_len)[:, None]
    half = num_buckets // 2
    out = np.where(rel > 0, half, 0)
    dist = np.abs(rel)
    exact = half // 2
    with np.errstate(divide="ignore"):
        log_ratio = np.log(dist.astype(np.float32) / np.float32(exact))
    scaled = log_ratio / np.float32(math.log(max_distance / exact)) * np.float32(half - exact)
    large = exact + np.where(dist < exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    return (out + np.where(dist < exact, dist, large)).astype(np.int32)


class _Proj(nn.Module):
    """x @ kernel with a named multi-axis kernel (no bias): `spec` is an einsum such as
    'bte,ehd->bthd' and `shape` / `names` the kernel's."""

    spec: str
    shape: tuple
    names: tuple
    std: float
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        kernel = self.param("kernel", nn.with_logical_partitioning(
            nn.initializers.normal(self.std), self.names), self.shape, self.param_dtype)
        return jnp.einsum(self.spec, x.astype(self.dtype), kernel.astype(self.dtype))


class T5Block(nn.Module):
    """x + SelfAttn(RMSNorm(x), bias); x + FF(RMSNorm(x))."""

    config: T5Config
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, mask, bias):  # x [B, T, E], mask [B, 1, T, T], bias [1, H, T, T]
        c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = RMSNorm(c.layer_norm_epsilon, name="attn_norm", **kw)(x)
        e, hd, std = c.d_model, (c.num_heads, c.d_kv), c.d_model ** -0.5
        qkv = ("bte,ehd->bthd", (e, *hd), (axes.EMBED, axes.HEADS, axes.HEAD_DIM), std)
        q, k, v = (_Proj(*qkv, name=n, **kw)(h) for n in "qkv")  # [B, T, H, Dh]
        o = dot_product_attention(q, k, v, mask, dtype=self.dtype, scale=1.0, bias=bias)
        x = x + _Proj("bthd,hde->bte", (*hd, e), (axes.HEADS, axes.HEAD_DIM, axes.EMBED),
                      (c.num_heads * c.d_kv) ** -0.5, name="o", **kw)(o)
        x = nn.with_logical_constraint(x, axes.RESIDUAL)
        h = RMSNorm(c.layer_norm_epsilon, name="mlp_norm", **kw)(x)
        up = ("bte,ef->btf", (e, c.d_ff), (axes.EMBED, axes.MLP), std)
        if c.feed_forward_proj == "gated-gelu":
            gate = _Proj(*up, name="wi_0", **kw)(h)
            h = nn.gelu(gate, approximate=True) * _Proj(*up, name="wi_1", **kw)(h)
        else:
            h = nn.relu(_Proj(*up, name="wi", **kw)(h))
        h = nn.with_logical_constraint(h, (axes.BATCH, axes.LENGTH, axes.MLP))
        x = x + _Proj("btf,fe->bte", (c.d_ff, e), (axes.MLP, axes.EMBED), c.d_ff ** -0.5,
                      name="wo", **kw)(h)
        return nn.with_logical_constraint(x, axes.RESIDUAL)


class T5Encoder(nn.Module):
    """ids [B, T] int, mask [B, T] (1 = token, 0 = padding) -> last hidden state [B, T, E]
    in `dtype` (Hugging Face's `T5EncoderModel(...).last_hidden_state`)."""

    config: T5Config
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, ids, mask):
        c, kw = self.config, dict(dtype=self.dtype, param_dtype=self.param_dtype)
        t = ids.shape[1]
        x = nn.Embed(c.vocab_size, c.d_model, name="shared", **kw, embedding_init=
                     nn.with_logical_partitioning(nn.initializers.normal(1.0),
                                                  (axes.VOCAB, axes.EMBED)))(ids)
        x = nn.with_logical_constraint(x, axes.RESIDUAL)
        table = self.param("relative_attention_bias", nn.with_logical_partitioning(
            nn.initializers.normal(1.0), (BUCKETS, axes.HEADS)),
            (c.relative_attention_num_buckets, c.num_heads), self.param_dtype)
        buckets = relative_position_buckets(t, t, c.relative_attention_num_buckets,
                                            c.relative_attention_max_distance)
        bias = jnp.transpose(table[buckets], (2, 0, 1))[None]  # [1, H, T, T]
        zeros = jnp.zeros(ids.shape, jnp.int32)  # one block: bidirectional, padding hidden
        attn_mask = masks.attention_mask(zeros, zeros, k_valid=jnp.asarray(mask, bool))
        for i in range(c.num_layers):
            x = T5Block(c, name=f"block_{i}", **kw)(x, attn_mask, bias)
        return RMSNorm(c.layer_norm_epsilon, name="final_norm", **kw)(x)


def init_params(config: T5Config, rng, length: int = 8, param_dtype=jnp.float32):
    """Random (boxed) parameters: the frozen-random encoder of the offline demo."""
    model = T5Encoder(config, param_dtype=param_dtype)
    ids = jnp.zeros((1, length), jnp.int32)
    return model.init(rng, ids, jnp.ones_like(ids))["params"]


def abstract_params(config: T5Config, param_dtype=jnp.float32):
    """The boxed parameter tree's shapes (for shardings), without allocating it."""
    return jax.eval_shape(lambda: init_params(config, jax.random.PRNGKey(0), 2, param_dtype))
