"""Multi-head attention with optional grouped KV heads and an explicit, preallocated KV cache.

The cache is a plain pytree (`KVCache`: keys, values, fill index) that callers carry through
`lax.scan`; the layer writes the new keys / values in place with `lax.dynamic_update_slice`
and attends under a mask built by `layers.masks` (slots not written yet are always masked).
With a cache it reads only the filled slots (`prefix_attention`: chunks of `decode_chunk`
slots, a dynamic trip count and a running softmax), so a decode step costs what the tokens so
far cost, not what the preallocated `max_len` would. The same call serves

    full forward   cache=None: keys are the inputs themselves, mask [B, 1, T, T]
    prefill        cache at index 0, a prompt of T tokens, mask [B, 1, T, max_len]
    decode step    cache at index i, a block of n >= 1 tokens (n > 1: VAR scales)

so prefill + decoding runs exactly the arithmetic of the full pass (tested to f32 tolerance).

`impl` picks the full pass's (cache=None: training, evaluation) kernel: 'einsum' (the
reference, `dot_product_attention` below), 'xla' or 'cudnn' (`jax.nn.dot_product_attention`:
XLA's fused attention / cuDNN flash attention on GPU, `fused_attention`). The fused path gets
the same boolean mask from `layers.masks` (or `is_causal=True` when the caller says the mask
is plain causal, which cuDNN runs without materialising it). Decoding with a cache always
uses the reference path.

Options for other transformer families (defaults are Llama's: no biases, 1/sqrt(D) logits):
`biases` names the projections that carry a bias (VAR: query, value and out but not key, as in
BEiT),
`qk_l2_norm` is cosine attention with a learned per-head temperature (VAR's attn_l2_norm,
Swin v2), `softmax_scale` overrides 1/sqrt(D).
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax import struct

from argen_jax.layers.rope import apply_rotary
from argen_jax.parallel import axes

CACHE_AXES = (axes.BATCH, axes.LENGTH, axes.KV_HEADS, axes.HEAD_DIM)
PROJECTIONS = ("query", "key", "value", "out")  # Attention's projections (`biases` names)
ATTENTION_IMPLS = ("einsum", "xla", "cudnn")  # full-pass kernels (`model.attention_impl`)


@struct.dataclass
class KVCache:
    """One attention layer's decoding state."""

    k: jax.Array  # [B, L, Hkv, D] keys of positions 0 .. L-1 (written up to `index`)
    v: jax.Array  # [B, L, Hkv, D] values
    index: jax.Array  # int32 scalar: number of filled slots = position of the next token

    @classmethod
    def zeros(cls, batch: int, max_len: int, num_kv_heads: int, head_dim: int,
              dtype: Any = jnp.float32, layers: int | None = None) -> KVCache:
        """An empty cache; `layers`: the stacked caches of that many scanned layers (every
        field gains a leading [layers] axis, `nn.scan` slices one per layer)."""
        lead, names = ((), CACHE_AXES) if layers is None else ((layers,),
                                                               (axes.LAYERS, *CACHE_AXES))
        shape = (*lead, batch, max_len, num_kv_heads, head_dim)
        k = nn.with_logical_constraint(jnp.zeros(shape, dtype), names)
        v = nn.with_logical_constraint(jnp.zeros(shape, dtype), names)
        return cls(k=k, v=v, index=jnp.zeros(lead, jnp.int32))

    @property
    def max_len(self) -> int:
        return self.k.shape[-3]


def seek_caches(caches: Any, index: jax.Array | int) -> Any:
    """Every `KVCache` in a pytree (a model's per-layer tuple) moved to fill index `index`:
    the next `extend` writes from slot `index` on, and slots from there on are unwritten to
    the mask (`k_valid = slot < filled`), so what was written there before (speculative
    decoding's rejected drafts) is never seen and gets overwritten."""
    index = jnp.asarray(index, jnp.int32)
    return jax.tree.map(  # a scanned model's one cache has an index per layer
        lambda c: c.replace(index=jnp.broadcast_to(index, jnp.shape(c.index)))
        if isinstance(c, KVCache) else c, caches, is_leaf=lambda c: isinstance(c, KVCache))


def dot_product_attention(q, k, v, mask, dtype=jnp.float32, scale: float | None = None,
                          bias=None):
    """q [B, T, H, D], k / v [B, S, Hkv, D] with H = G * Hkv, mask bool [B, 1, T, S].
    Logits are scaled by `scale` (None: D ** -0.5), then `bias` [B|1, H, T, S] is added (T5's
    relative position bias). Softmax in float32. Returns [B, T, H, D] in `dtype`."""
    b, t, h, d = q.shape
    hkv = k.shape[2]
    q = q.reshape(b, t, hkv, h // hkv, d)  # [B, T, Hkv, G, D]
    logits = jnp.einsum("btkgd,bskd->bkgts", q, k, preferred_element_type=jnp.float32)
    logits = logits * (d ** -0.5 if scale is None else scale)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32).reshape(bias.shape[0], hkv, h // hkv, t, -1)
    logits = jnp.where(mask[:, :, None], logits, jnp.finfo(jnp.float32).min)
    probs = jax.nn.softmax(logits, axis=-1).astype(dtype)  # [B, Hkv, G, T, S]
    out = jnp.einsum("bkgts,bskd->btkgd", probs, v.astype(dtype))
    return out.reshape(b, t, h, d)


def fused_attention(q, k, v, mask, dtype=jnp.float32, scale: float | None = None,
                    impl: str = "xla", is_causal: bool = False):
    """`dot_product_attention` through `jax.nn.dot_product_attention(implementation=impl)`.
    mask bool [B|1, 1, T, S] from `layers.masks`, or None with is_causal=True (the plain
    causal mask, T = S). q, k, v are cast to `dtype`. Returns [B, T, H, D] in `dtype`."""
    if impl not in ATTENTION_IMPLS[1:]:
        raise ValueError(f"fused attention impl must be one of {ATTENTION_IMPLS[1:]}, got "
                         f"{impl!r}")
    if mask is not None and mask.shape[0] != q.shape[0]:
        mask = jnp.broadcast_to(mask, (q.shape[0], *mask.shape[1:]))
    out = jax.nn.dot_product_attention(
        q.astype(dtype), k.astype(dtype), v.astype(dtype), mask=None if is_causal else mask,
        scale=scale, is_causal=is_causal, implementation=impl)
    return out.astype(dtype)


def prefix_attention(q, k, v, mask, length, chunk: int = 256, dtype=jnp.float32,
                     scale: float | None = None):
    """`dot_product_attention` that only reads the first `length` key slots (a traced int).

    Decoding with a preallocated cache of L slots would otherwise attend over all L at every
    step, so a token's cost would grow with the cache size, not with the tokens so far. Keys
    are visited in chunks of `chunk` slots by a `fori_loop` with a dynamic trip count
    ceil(length / chunk), combined with a running (online) softmax. Slots >= length must be
    masked out by `mask` (they are: unwritten cache slots are invalid keys). The last chunk is
    clamped to end at slot L; slots an earlier chunk already covered are masked in it.
    `scale` as in `dot_product_attention`."""
    b, t, h, d = q.shape
    big = k.shape[1]
    chunk = min(chunk, big)
    hkv = k.shape[2]
    g = h // hkv
    q = q.reshape(b, t, hkv, g, d)
    mb = mask.shape[0]
    m0 = jnp.full((b, hkv, g, t), -jnp.inf, jnp.float32)
    den0 = jnp.zeros((b, hkv, g, t), jnp.float32)
    acc0 = jnp.zeros((b, hkv, g, t, d), jnp.float32)

    def body(i, carry):
        m, den, acc = carry
        lo = i * chunk
        start = jnp.minimum(lo, big - chunk)
        ks = jax.lax.dynamic_slice_in_dim(k, start, chunk, axis=1)  # [B, C, Hkv, D]
        vs = jax.lax.dynamic_slice_in_dim(v, start, chunk, axis=1)
        ms = jax.lax.dynamic_slice(mask, (0, 0, 0, start), (mb, 1, t, chunk))  # [B|1,1,T,C]
        ms = ms & (start + jnp.arange(chunk) >= lo)  # not seen by the previous chunk
        s = jnp.einsum("btkgd,bskd->bkgts", q, ks.astype(q.dtype),
                       preferred_element_type=jnp.float32) * (d ** -0.5 if scale is None
                                                              else scale)
        ms = ms[:, :, None]  # [B|1, 1, 1, T, C]
        s = jnp.where(ms, s, -jnp.inf)
        m_new = jnp.maximum(m, s.max(-1))
        safe = jnp.where(jnp.isfinite(m_new), m_new, 0.0)
        p = jnp.where(ms, jnp.exp(s - safe[..., None]), 0.0)
        corr = jnp.where(jnp.isfinite(m), jnp.exp(m - safe), 0.0)
        den = den * corr + p.sum(-1)
        acc = acc * corr[..., None] + jnp.einsum(
            "bkgts,bskd->bkgtd", p.astype(dtype), vs.astype(dtype),
            preferred_element_type=jnp.float32)
        return m_new, den, acc

    n = (length + chunk - 1) // chunk
    _, den, acc = jax.lax.fori_loop(0, n, body, (m0, den0, acc0))
    out = acc / jnp.maximum(den, 1e-30)[..., None]  # [B, Hkv, G, T, D]
    return jnp.einsum("bkgtd->btkgd", out).reshape(b, t, h, d).astype(dtype)


def _l2_normalize(x, eps: float = 1e-12):
    """x / max(||x||, eps) over the last axis, in float32 (torch.nn.functional.normalize)."""
    xf = x.astype(jnp.float32)
    return xf * jax.lax.rsqrt(jnp.maximum(jnp.sum(xf * xf, -1, keepdims=True), eps * eps))


class Attention(nn.Module):
    """Multi-head (grouped-query when num_kv_heads < num_heads) self-attention with RoPE."""

    num_heads: int
    num_kv_heads: int | None = None  # None: = num_heads (plain MHA); 1: multi-query
    head_dim: int | None = None  # None: width // num_heads
    dropout: float = 0.0  # on the attention output (before the residual add)
    decode_chunk: int = 256  # with a cache: read only the filled slots, this many at a time
    #   (caches of at most this many slots are read whole: one chunk gains nothing)
    biases: tuple[str, ...] = ()  # projections with a bias, any of PROJECTIONS (VAR:
    #   ('query', 'value', 'out'))
    qk_l2_norm: bool = False  # cosine attention: l2-normalised q, k; q times a learned
    #   per-head temperature exp(min(s, log 100)), s initialised to log 4 (VAR attn_l2_norm)
    softmax_scale: float | None = None  # logit scale; None: head_dim ** -0.5 (1 if qk_l2_norm)
    impl: str = "einsum"  # full-pass kernel: ATTENTION_IMPLS (decoding: always 'einsum')
    init_std: float | None = None  # q / k / v kernels' init std (None: width ** -0.5)
    out_init_std: float | None = None  # output kernel's (None: (heads * head_dim) ** -0.5)
    dtype: Any = jnp.float32  # compute
    param_dtype: Any = jnp.float32  # storage

    def dims(self, width: int) -> tuple[int, int]:
        hkv = self.num_kv_heads or self.num_heads
        if self.num_heads % hkv:
            raise ValueError(f"num_heads={self.num_heads} not divisible by num_kv_heads={hkv}")
        return hkv, self.head_dim or width // self.num_heads

    @nn.compact
    def __call__(self, x, mask, angles=None, cache: KVCache | None = None,
                 train: bool = False, is_causal: bool = False):
        """x [B, T, E]; mask bool [B, 1, T, S] with S = T (no cache) or cache.max_len;
        angles [B, T, D/2] rotary angles or None. is_causal: `mask` is the plain causal mask
        (lets a fused kernel skip it). Returns (y [B, T, E], cache)."""
        width = x.shape[-1]
        hkv, hd = self.dims(width)
        if isinstance(self.biases, str) or set(self.biases) - set(PROJECTIONS):
            raise ValueError(f"Attention biases must be a tuple of {PROJECTIONS}, got "
                             f"{self.biases!r}")
        if self.impl not in ATTENTION_IMPLS:
            raise ValueError(f"Attention impl must be one of {ATTENTION_IMPLS}, got "
                             f"{self.impl!r}")
        init = nn.initializers.normal(self.init_std or width ** -0.5)

        def proj(heads, name, names):
            w = self.param(name, nn.with_logical_partitioning(init, (axes.EMBED, names,
                                                                     axes.HEAD_DIM)),
                           (width, heads, hd), self.param_dtype)
            y = jnp.einsum("bte,ehd->bthd", x.astype(self.dtype), w.astype(self.dtype))
            if name in self.biases:
                bias = self.param(f"{name}_bias", nn.with_logical_partitioning(
                    nn.initializers.zeros, (names, axes.HEAD_DIM)), (heads, hd),
                    self.param_dtype)
                y = y + bias.astype(self.dtype)
            return y

        q = proj(self.num_heads, "query", axes.HEADS)  # [B, T, H, D]
        k = proj(hkv, "key", axes.KV_HEADS)  # [B, T, Hkv, D]
        v = proj(hkv, "value", axes.KV_HEADS)
        scale = self.softmax_scale
        if self.qk_l2_norm:
            temp = self.param("logit_scale", nn.with_logical_partitioning(
                nn.initializers.constant(jnp.log(4.0)), (axes.HEADS,)), (self.num_heads,),
                self.param_dtype)
            temp = jnp.exp(jnp.minimum(temp.astype(jnp.float32), jnp.log(100.0)))  # [H]
            q = (_l2_normalize(q) * temp[:, None]).astype(self.dtype)
            k = _l2_normalize(k).astype(self.dtype)
            scale = 1.0 if scale is None else scale
        if angles is not None:
            q, k = apply_rotary(q, angles), apply_rotary(k, angles)
        q = nn.with_logical_constraint(q, (axes.BATCH, axes.LENGTH, axes.HEADS, axes.HEAD_DIM))
        k = nn.with_logical_constraint(k, CACHE_AXES)
        v = nn.with_logical_constraint(v, CACHE_AXES)
        if cache is not None:
            start = (0, cache.index, 0, 0)
            ck = jax.lax.dynamic_update_slice(cache.k, k.astype(cache.k.dtype), start)
            cv = jax.lax.dynamic_update_slice(cache.v, v.astype(cache.v.dtype), start)
            ck = nn.with_logical_constraint(ck, CACHE_AXES)
            cv = nn.with_logical_constraint(cv, CACHE_AXES)
            cache = cache.replace(k=ck, v=cv, index=cache.index + x.shape[1])
            if self.decode_chunk and cache.max_len > self.decode_chunk:
                out = prefix_attention(q, ck, cv, mask, cache.index, self.decode_chunk,
                                       self.dtype, scale)
            else:
                out = dot_product_attention(q, ck.astype(self.dtype), cv, mask, self.dtype,
                                            scale)
        elif self.impl == "einsum":
            out = dot_product_attention(q, k.astype(self.dtype), v, mask, self.dtype, scale)
        else:
            out = fused_attention(q, k, v, mask, self.dtype, scale, self.impl,
                                  is_causal and x.shape[1] == mask.shape[-1])
        out = nn.with_logical_constraint(
            out, (axes.BATCH, axes.LENGTH, axes.HEADS, axes.HEAD_DIM))
        wo = self.param("out", nn.with_logical_partitioning(
            nn.initializers.normal(self.out_init_std or (self.num_heads * hd) ** -0.5),
            (axes.HEADS, axes.HEAD_DIM, axes.EMBED)), (self.num_heads, hd, width),
            self.param_dtype)
        y = jnp.einsum("bthd,hde->bte", out, wo.astype(self.dtype))
        if "out" in self.biases:
            bo = self.param("out_bias", nn.with_logical_partitioning(
                nn.initializers.zeros, (axes.EMBED,)), (width,), self.param_dtype)
            y = y + bo.astype(self.dtype)
        y = nn.Dropout(self.dropout)(y, deterministic=not train)
        return y, cache
