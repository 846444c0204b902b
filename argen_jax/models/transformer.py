"""The Llama-style decoder-only transformer every token family shares (IGPT, LlamaGen).

`Decoder` maps input ids [B, T] to next-token logits [B, T, V] (float32). Input ids below
`vocab_size` are tokens; ids `vocab_size + c` are class tokens (c = num_classes is the null
class: the start token of unconditional models and the unconditional branch of CFG). Token
and class tables are separate parameters; the output head is untied.

Positions come from the call: a full forward pass uses 0 .. T-1; with a cache (a tuple of
per-layer `KVCache`), tokens go at the cache's fill index, so prefilling a prompt and
decoding one token (or one block) are the same call, `extend(ids, cache)`, on different
lengths. The attention mask is block-causal over `block_sizes` (VAR's scales) or causal
(None); RoPE is '1d' over the position, '2d' over (row, col) of a `grid` of tokens after
`num_prefix` class tokens, or off.

The blocks are `remat`erialised per a policy and built unrolled (`block_0` ..) or scanned
(`scan_layers`: one `blocks` submodule with a leading layer axis, and one stacked `KVCache`
instead of the tuple), see `layers/repeat.py`; `attention_impl` picks the full pass's
attention kernel (`layers/attention.py`).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.layers.attention import ATTENTION_IMPLS, KVCache, seek_caches
from argen_jax.layers.llama_block import LlamaBlock, RMSNorm
from argen_jax.layers.masks import attention_mask, block_ids_from_sizes, causal_ids
from argen_jax.layers.repeat import check_remat, repeated_block
from argen_jax.layers.rope import coords_1d, coords_2d, rotary_angles
from argen_jax.models.base import CodingSymbols, categorical_symbols, check_coding_shape
from argen_jax.models.captions import key_valid
from argen_jax.parallel import axes
from argen_jax.sampling.loop import Steps
from argen_jax.sampling.orders import (
    GridOrder,
    OrderSettings,
    fixed_order,
    permute,
    sequence_positions,
)
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sampling.speculative import speculative_token_steps, tokens_of
from argen_jax.sampling.tokens import token_steps

Cache = tuple  # tuple[KVCache, ...], one per layer (scan_layers: one stacked KVCache)


def cache_index(cache) -> jax.Array:
    """The fill index of a decoder's cache (a tuple of per-layer caches or one stacked)."""
    return cache[0].index if isinstance(cache, tuple) else cache.index[0]


def config_dtype(name: str, key: str):
    """The jnp dtype a `config.model.<key>` string names; a ConfigError naming the key."""
    try:
        return jnp.dtype(name)
    except TypeError:
        raise ConfigError(f"model.{key}={name!r} is not a dtype (e.g. 'float32', "
                          f"'bfloat16')") from None


@dataclasses.dataclass(frozen=True)
class DecoderSettings(OrderSettings):
    """The `Decoder` fields of a `config.model` section (IGPT, LlamaGen), with the generation
    order (`OrderSettings`, sampling/orders.py: the family reads those, not the module)."""

    width: int = 128  # residual stream width
    depth: int = 4  # Llama blocks
    num_heads: int = 4  # query heads
    num_kv_heads: int = 0  # grouped KV heads (0: = num_heads)
    head_dim: int = 0  # 0: width // num_heads
    mlp_dim: int = 384  # SwiGLU hidden width
    dropout: float = 0.0  # embeddings and residual branches
    rope_theta: float = 10000.0  # RoPE base
    norm_eps: float = 1e-6  # RMSNorm epsilon
    dtype: str = "float32"  # compute dtype ('bfloat16' on accelerators)
    param_dtype: str = "float32"  # parameter storage dtype
    remat: str = "none"  # per-block rematerialisation: 'none' | 'full' | a
    #   jax.checkpoint_policies name ('dots_saveable', 'nothing_saveable', ...)
    scan_layers: bool = False  # nn.scan over the blocks (compile time independent of depth;
    #   parameters in the scanned layout, layers/repeat.py)
    attention_impl: str = "einsum"  # full-pass attention: 'einsum' (reference) | 'xla' |
    #   'cudnn' (jax.nn.dot_product_attention; cuDNN flash attention on GPU)

    def __post_init__(self):
        OrderSettings.__post_init__(self)
        check_remat(self.remat)
        config_lib.check_choice(self, "attention_impl", ATTENTION_IMPLS)
        for key in ("width", "depth", "num_heads"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"model.{key} must be > 0, got {getattr(self, key)}")
        for key in ("num_kv_heads", "head_dim", "mlp_dim"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0, got {getattr(self, key)}")
        if not self.head_dim and self.width < self.num_heads:
            raise ConfigError(f"model.width={self.width} is below model.num_heads="
                              f"{self.num_heads}: heads of width / num_heads = 0 (set fewer "
                              "heads, a larger width, or model.head_dim)")
        if self.num_kv_heads and self.num_heads % self.num_kv_heads:
            raise ConfigError(f"model.num_heads={self.num_heads} is not a multiple of "
                              f"model.num_kv_heads={self.num_kv_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        config_dtype(self.dtype, "dtype")
        config_dtype(self.param_dtype, "param_dtype")

    def shape(self) -> dict:
        """Decoder width / depth / heads / mlp_dim."""
        return dict(width=self.width, depth=self.depth, num_heads=self.num_heads,
                    num_kv_heads=self.num_kv_heads or None, head_dim=self.head_dim or None,
                    mlp_dim=self.mlp_dim)

    def network_fields(self) -> dict:
        """The fields of the `Decoder` module these settings fix (the convention of every
        family's settings): every `DecoderSettings` field by name, the dtypes as jnp dtypes,
        0 heads / head_dim as None. A new knob is a field here and a field of `Decoder`
        defaulting to it."""
        order_fields = {f.name for f in dataclasses.fields(OrderSettings)}
        own = {f.name: getattr(self, f.name) for f in dataclasses.fields(DecoderSettings)
               if f.name not in order_fields}
        own.update(self.shape(), dtype=config_dtype(self.dtype, "dtype"),
                   param_dtype=config_dtype(self.param_dtype, "param_dtype"))
        return own

    def decoder(self, vocab_size: int, num_classes: int, max_len: int, **fields) -> Decoder:
        """The Decoder of these settings; `fields`: the family's own (rope, grid, ...)."""
        return Decoder(vocab_size=vocab_size, num_classes=num_classes, max_len=max_len,
                       **self.network_fields(), **fields)


class Decoder(nn.Module):
    vocab_size: int
    num_classes: int = 0  # class-token rows = num_classes + 1 (the last: null / start)
    max_len: int = 1024  # positions (and KV-cache slots)
    width: int = DecoderSettings.width  # the defaults are DecoderSettings' (one source)
    depth: int = DecoderSettings.depth
    num_heads: int = DecoderSettings.num_heads
    num_kv_heads: int | None = None  # grouped-query attention when < num_heads
    head_dim: int | None = None  # None: width // num_heads
    mlp_dim: int = DecoderSettings.mlp_dim  # SwiGLU hidden width
    dropout: float = DecoderSettings.dropout  # embeddings and residual branches
    rope: str = "1d"  # '1d' | '2d' | 'none'
    rope_theta: float = DecoderSettings.rope_theta
    grid: tuple[int, int] | None = None  # (H, W) token grid for rope='2d'
    num_prefix: int = 1  # class tokens before the grid (rope='2d')
    prefix_rope: str = "identity"  # '2d' class tokens: 'identity' (no rotation) | 'zero'
    #   (LlamaGen: rotation factors cos = sin = 0, so their queries and keys are zero)
    norm_eps: float = DecoderSettings.norm_eps  # RMSNorm epsilon (LlamaGen: 1e-5)
    caption_dim: int = 0  # > 0: the num_prefix positions are a caption (LlamaGen t2i): their
    #   embeddings are CaptionEmbedder(caption [B, num_prefix, caption_dim]), whatever the ids
    block_sizes: tuple[int, ...] | None = None  # None: causal; else block-causal
    decode_chunk: int = 256  # cached decoding reads the filled KV slots this many at a time
    remat: str = DecoderSettings.remat  # per-block rematerialisation (layers/repeat.py)
    scan_layers: bool = DecoderSettings.scan_layers  # nn.scan over the blocks ('blocks')
    attention_impl: str = DecoderSettings.attention_impl  # full-pass attention kernel
    dtype: Any = jnp.float32  # compute
    param_dtype: Any = jnp.float32  # storage
    perturb_embeddings: bool = False  # tests: a 'perturbations' entry to differentiate by
    position_embed: int = 0  # N > 0: learned embeddings of the image position each token
    #   holds and of the one it predicts (ids in [0, N], N = none), fed as `positions`
    #   (target-aware orders, sampling/orders.py)

    # ------------------------------------------------------------------ static tables
    @property
    def null_id(self) -> int:
        return self.vocab_size + self.num_classes

    def class_ids(self, labels: jax.Array) -> jax.Array:
        """labels [B] in [0, num_classes] (num_classes = null) -> input ids [B]."""
        return self.vocab_size + labels.astype(jnp.int32)

    def class_prompt(self, labels: jax.Array) -> jax.Array:
        """labels [B] -> the class tokens before the sequence [B, num_prefix] (the class id,
        repeated: LlamaGen's cls_token_num)."""
        return jnp.repeat(self.class_ids(labels)[:, None], self.num_prefix, axis=1)

    def _head_dim(self) -> int:
        return self.head_dim or self.width // self.num_heads

    def _block_ids(self) -> np.ndarray:
        if self.block_sizes is None:
            return causal_ids(self.max_len)
        ids = block_ids_from_sizes(self.block_sizes)
        if len(ids) != self.max_len:
            raise ConfigError(f"block_sizes sum to {len(ids)} but max_len is {self.max_len}")
        return ids

    def _coords(self) -> np.ndarray | None:
        if self.rope == "none":
            return None
        if self.rope == "1d":
            return coords_1d(self.max_len)
        if self.rope == "2d":
            if self.grid is None:
                raise ConfigError("rope='2d' needs grid=(H, W)")
            c = coords_2d(*self.grid, self.num_prefix)
            if len(c) < self.max_len:
                raise ConfigError(f"grid {self.grid} + {self.num_prefix} prefix tokens has "
                                  f"fewer positions than max_len={self.max_len}")
            return c[: self.max_len]
        raise ConfigError(f"rope must be '1d', '2d' or 'none', got {self.rope!r}")

    def init_cache(self, batch: int, dtype: Any = None) -> Cache:
        """An empty cache: `depth` KVCaches of [batch, max_len, kv_heads, head_dim] (with
        scan_layers one KVCache of [depth, batch, ...])."""
        hkv = self.num_kv_heads or self.num_heads
        if self.scan_layers:
            return KVCache.zeros(batch, self.max_len, hkv, self._head_dim(),
                                 dtype or self.dtype, layers=self.depth)
        return tuple(KVCache.zeros(batch, self.max_len, hkv, self._head_dim(),
                                   dtype or self.dtype) for _ in range(self.depth))

    # ------------------------------------------------------------------ forward
    @nn.compact
    def __call__(self, ids, cache: Cache | None = None, valid=None, train: bool = False,
                 positions=None, caption=None, caption_drop=None):
        """ids [B, T] -> (logits [B, T, V] float32, cache). valid: key padding, [B, T] in a
        full pass, [B, max_len] over the cache's slots with a cache (a left-padded caption's
        mask, then ones). positions: (content, target) ids [B, T] when `position_embed`.
        caption [B, num_prefix, caption_dim] (caption_dim > 0) gives the embeddings of
        positions < num_prefix; caption_drop [B] bool replaces it by the learned null caption
        (CFG's unconditional branch; caption dropout)."""
        b, t = ids.shape
        if t > self.max_len:
            raise ConfigError(f"sequence of {t} tokens exceeds the model's max_len "
                              f"{self.max_len}")
        blk = jnp.asarray(self._block_ids())
        if cache is None:
            pos = jnp.arange(t, dtype=jnp.int32)  # [T]
            mask = attention_mask(blk[pos], blk[pos], valid)  # [B|1, 1, T, T]
        else:
            start = cache_index(cache)
            pos = start + jnp.arange(t, dtype=jnp.int32)
            slots = jnp.arange(self.max_len, dtype=jnp.int32)
            written = slots < start + t
            mask = attention_mask(blk[jnp.minimum(pos, self.max_len - 1)], blk,
                                  written if valid is None else written & valid)  # [B|1,1,T,L]
        coords = self._coords()
        angles = None
        if coords is not None:
            c = jnp.asarray(coords)[jnp.minimum(pos, self.max_len - 1)]  # [T, P]
            angles = rotary_angles(c, self._head_dim(), self.rope_theta)  # [T, D/2]
            if self.rope == "2d" and self.prefix_rope == "zero":
                on = (pos >= self.num_prefix)[:, None].astype(jnp.float32)  # [T, 1]
                angles = (jnp.cos(angles) * on, jnp.sin(angles) * on)
            elif self.prefix_rope not in ("identity", "zero"):
                raise ConfigError(f"prefix_rope must be 'identity' or 'zero', got "
                                  f"{self.prefix_rope!r}")

        emb_init = nn.initializers.normal(0.02)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        tok = nn.Embed(self.vocab_size, self.width, embedding_init=nn.with_logical_partitioning(
            emb_init, (axes.VOCAB, axes.EMBED)), name="token_embed", **kw)
        cls = nn.Embed(self.num_classes + 1, self.width,
                       embedding_init=nn.with_logical_partitioning(
                           emb_init, (axes.CLASSES, axes.EMBED)), name="class_embed", **kw)
        is_tok = (ids < self.vocab_size)[..., None]
        x = jnp.where(is_tok, tok(jnp.clip(ids, 0, self.vocab_size - 1)),
                      cls(jnp.clip(ids - self.vocab_size, 0, self.num_classes)))  # [B, T, E]
        if self.position_embed:
            if positions is None:
                raise ConfigError("this decoder has position embeddings: pass positions")
            for name, p in zip(("content_embed", "target_embed"), positions, strict=True):
                x = x + nn.Embed(self.position_embed + 1, self.width, name=name, **kw,
                                 embedding_init=nn.with_logical_partitioning(
                                     emb_init, (None, axes.EMBED)))(p)
        if self.caption_dim:
            if caption is None:
                raise ConfigError("a caption model (caption_dim > 0) needs caption=")
            at = jnp.clip(pos, 0, self.num_prefix - 1)
            cap = CaptionEmbedder(self.num_prefix, self.caption_dim, self.width,
                                  name="caption_embed", **kw)(caption, at, caption_drop)
            x = jnp.where((pos < self.num_prefix)[None, :, None], cap, x)
        x = nn.with_logical_constraint(x, axes.RESIDUAL)
        if self.perturb_embeddings:  # identity; lets tests take d logits / d embeddings
            x = self.perturb("embed", x)
        x = nn.Dropout(self.dropout)(x, deterministic=not train)

        # LlamaBlock(x, mask, angles, cache, train, is_causal): train, is_causal static
        block = repeated_block(LlamaBlock, remat=self.remat, scan=self.scan_layers,
                               depth=self.depth, static_argnums=(5, 6),
                               in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast,
                                        nn.broadcast))
        args = dict(num_heads=self.num_heads, mlp_dim=self.mlp_dim,
                    num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                    dropout=self.dropout, decode_chunk=self.decode_chunk,
                    norm_eps=self.norm_eps, attention_impl=self.attention_impl, **kw)
        is_causal = cache is None and valid is None and self.block_sizes is None
        if self.scan_layers:
            x, new_cache = block(name="blocks", **args)(x, mask, angles, cache, train,
                                                        is_causal)
        else:
            new_cache = []
            for i in range(self.depth):
                x, c = block(name=f"block_{i}", **args)(
                    x, mask, angles, None if cache is None else cache[i], train, is_causal)
                new_cache.append(c)
            new_cache = None if cache is None else tuple(new_cache)
        x = RMSNorm(self.norm_eps, name="final_norm", **kw)(x)
        logits = nn.Dense(self.vocab_size, use_bias=False, name="head", **kw,
                          kernel_init=nn.with_logical_partitioning(
                              nn.initializers.normal(self.width ** -0.5),
                              (axes.EMBED, axes.VOCAB)))(x)
        logits = nn.with_logical_constraint(logits.astype(jnp.float32),
                                            (axes.BATCH, axes.LENGTH, axes.VOCAB))
        return logits, new_cache

    def extend(self, ids, cache: Cache, train: bool = False, positions=None, valid=None,
               caption=None, caption_drop=None):
        """Feeds ids [B, n] at the cache's position: (logits [B, n, V], advanced cache).
        Prefilling a prompt and decoding one token (or one VAR block) are this call."""
        return self(ids, cache=cache, valid=valid, train=train, positions=positions,
                    caption=caption, caption_drop=caption_drop)


class CaptionEmbedder(nn.Module):
    """LlamaGen t2i's caption projection: caption features [B, N, C] -> [B, N, E] through an
    MLP (Linear, tanh-GELU, Linear, with biases), and a learned null caption [N, C] (init
    normal / sqrt(C)) that replaces the caption of rows with `drop` (caption dropout in
    training, the unconditional branch of CFG). `at` [T] picks the caption rows to embed
    (the positions a call feeds), so decoding one token projects one row."""

    length: int
    caption_dim: int
    width: int
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, caption, at, drop=None):  # caption [B, N, C], at [T] -> [B, T, E]
        c = self.caption_dim
        null = self.param("null_caption", nn.with_logical_partitioning(
            nn.initializers.normal(c ** -0.5), (axes.LENGTH, axes.CODE_DIM)),
            (self.length, c), self.param_dtype)
        rows = jnp.take(caption, at, axis=1)  # [B, T, C]
        if drop is not None:
            rows = jnp.where(drop[:, None, None], jnp.take(null, at, axis=0)[None], rows)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        h = nn.Dense(self.width, name="fc1", **kw, kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (axes.CODE_DIM, axes.EMBED)))(rows)
        h = nn.gelu(h, approximate=True)
        return nn.Dense(self.width, name="fc2", **kw, kernel_init=nn.with_logical_partitioning(
            nn.initializers.lecun_normal(), (axes.MLP, axes.EMBED)))(h)


def sample_decoder(model: Decoder, params, keys: jax.Array, labels: jax.Array,
                   null_labels: jax.Array | None, num_tokens: int,
                   sampling: SamplingSettings, with_passes: bool = False, order=None):
    """The KV-cache sampler of the class-prompted decoders (IGPT, LlamaGen): `num_tokens`
    tokens [B, num_tokens] after the class prompt of `labels` [B], guided by the prompt of
    `null_labels` (CFG on a doubled batch) unless it is None. With `sampling.speculative`,
    speculative Jacobi decoding (`sampling/speculative.py`). with_passes: also return the
    number of sequential forward passes after the prompt's prefill (int32 scalar:
    num_tokens without speculative decoding). order: the generation order
    (`decoder_steps`)."""
    steps = decoder_steps(model, params, labels, num_tokens, null_labels,
                          sampling.guidance(num_tokens), sampling.cache_dtype,
                          window=sampling.speculative, order=order)
    state, ran = steps.run(sampling.draw_fn(), keys)
    if sampling.speculative:
        tokens, passes = tokens_of(state.seq), ran
    else:
        tokens, passes = state.seq, jnp.asarray(num_tokens, jnp.int32)
    return (tokens, passes) if with_passes else tokens


def decoder_steps(model: Decoder, params, labels: jax.Array, num_tokens: int,
                  null_labels: jax.Array | None = None, cfg_scale=1.0,
                  cache_dtype: Any = None, window: int = 0, order=None) -> Steps:
    """`sample_decoder`'s order (the KV cache filled by `Decoder.extend`, prompt prefilled):
    step t returns the (guided) logits [B, V] of token t. cache_dtype: the KV cache's
    storage (None: the compute dtype; `SamplingSettings.cache_dtype`). window > 0: the
    speculative order instead (`speculative_token_steps`, a window of drafts per step).
    order ([num_tokens] or [B, num_tokens], `sampling/orders.py`; None: raster): step t
    draws the token at image position order[t] (the seq stays in image layout); a model with
    `position_embed` is fed the positions of that order."""
    if window and (order is not None or model.position_embed):
        raise ConfigError("speculative decoding runs the raster order of a decoder without "
                          "position embeddings only: set sample.speculative=0")
    guided = null_labels is not None
    uncond = model.class_prompt(null_labels) if guided else None
    cache = model.init_cache(2 * labels.shape[0] if guided else labels.shape[0], cache_dtype)
    positions = None
    if model.position_embed:
        if order is None:
            order = jnp.arange(num_tokens, dtype=jnp.int32)
        rows = jnp.broadcast_to(jnp.asarray(order, jnp.int32), (labels.shape[0], num_tokens))
        positions = sequence_positions(jnp.concatenate([rows, rows]) if guided else rows,
                                       model.num_prefix)

    def logits_fn(ids, cache):
        pos = None
        if positions is not None:
            start, n = cache_index(cache), ids.shape[1]
            pos = tuple(jax.lax.dynamic_slice_in_dim(p, start, n, axis=1) for p in positions)
        return model.apply({"params": params}, ids, cache, positions=pos,
                           method=Decoder.extend)

    return _prompted_steps(model, logits_fn, cache, model.class_prompt(labels), uncond,
                           num_tokens, cfg_scale, window, order)


def _prompted_steps(model: Decoder, logits_fn, cache, prompt, uncond, num_tokens: int,
                    cfg_scale, window: int, order=None) -> Steps:
    """The token sampler's (window > 0: the speculative sampler's) callbacks after `prompt`
    [B, P] (and the unconditional `uncond` [B, P] of CFG, or None)."""
    if window:
        return speculative_token_steps(logits_fn, seek_caches, cache, prompt, num_tokens,
                                       window, model.vocab_size, uncond_prompt=uncond,
                                       cfg_scale=cfg_scale)
    return token_steps(logits_fn, cache, prompt, num_tokens, uncond_prompt=uncond,
                       cfg_scale=cfg_scale, order=order)


def caption_steps(model: Decoder, params, caption: jax.Array, caption_mask: jax.Array,
                  num_tokens: int, guided: bool = False, cfg_scale=1.0,
                  cache_dtype: Any = None, window: int = 0) -> Steps:
    """The sampler of a caption decoder (LlamaGen t2i, `caption_dim` > 0), as LlamaGen's
    `generate`: caption [B, P, C] left-padded with its mask [B, P] (`models/captions.py`)
    prefilled into the KV cache, whose caption slots stay masked by it at every step; with
    `guided`, CFG's unconditional rows are the learned null caption under the same mask
    (LlamaGen's uncond_embedding, emb_masks repeated). Token ids at the caption positions
    are placeholders (0): the caption gives their embeddings."""
    b, p = caption_mask.shape
    rows = 2 * b if guided else b
    both = jnp.concatenate([caption, caption]) if guided else caption  # [B', P, C]
    mask = jnp.concatenate([caption_mask, caption_mask]) if guided else caption_mask
    drop = jnp.arange(rows) >= b  # [B']: the second half is the null caption
    slots = key_valid(mask, model.max_len)  # [B', max_len]: validity of every cache slot

    def logits_fn(ids, cache):
        return model.apply({"params": params}, ids, cache, valid=slots, caption=both,
                           caption_drop=drop, method=Decoder.extend)

    prompt = jnp.zeros((b, p), jnp.int32)
    return _prompted_steps(model, logits_fn, model.init_cache(rows, cache_dtype), prompt,
                           prompt if guided else None, num_tokens, cfg_scale, window)


class DecoderCoding:
    """The lossless codec's view of the class-prompted decoders (IGPT, LlamaGen): the KV-cache
    sampler's order without guidance (the model's own likelihood), the label coded being a
    class or the null class (the default, and the only one of unconditional models). The
    order is the family's `coding_order` (its evaluation order; None: raster)."""

    coding_order = None

    def coding_steps(self, params, shape, labels) -> Steps:
        check_coding_shape(self.spec, shape)
        labels = labels if self.conditional else self.classes.null(labels.shape[0])
        return decoder_steps(self.model, params, labels, self.num_tokens,
                             order=self.coding_order)

    def coding_symbols(self) -> CodingSymbols:
        order = self.coding_order

        def targets(x):
            x = x.reshape(x.shape[0], -1)
            return (x if order is None else x[:, order]).T

        return categorical_symbols(self.spec.levels, targets)

    def coding_labels(self) -> tuple[int, int | None]:
        if not self.conditional:
            return 0, None
        return self.num_classes + 1, self.classes.null_class


ORDER_RNG = 0x0D  # the loss rng's fold_in for training orders (other streams unchanged)


class OrderedDecoding(DecoderCoding):
    """The generation order of a class-prompted decoder family (`sampling/orders.py`): the
    family calls `init_order` in its constructor, trains on `ordered_inputs` and samples
    through `sample_order` (also the codec's order)."""

    def init_order(self, settings: DecoderSettings, grid, config, speculative: int) -> None:
        # train.num_steps only times RAR's annealing; a config built only to sample or to
        # check parity may have no train section (then no annealing schedule is needed)
        num_steps = config.train.num_steps if "train" in config else 0
        self.order = GridOrder(settings, grid, num_steps)
        if speculative and settings.ordered:
            raise ConfigError("speculative decoding runs the raster order only: set "
                              "sample.speculative=0 or model.order='raster'")
        self.coding_order = self.order.eval if settings.ordered else None

    def ordered_inputs(self, tokens, rng, train: bool, step=None):
        """tokens [B, N] (image layout) -> (tokens in this batch's order [B, N], the
        decoder's `positions` or None)."""
        if self.coding_order is None:
            return tokens, None
        orders = self.order.orders(rng, tokens.shape[0], train, step)
        pos = (sequence_positions(orders, self.model.num_prefix)
               if self.model.position_embed else None)
        return permute(tokens, orders), pos

    def sample_order(self, order=None):
        """The order a sample call draws in: `order` (a fixed order's name, or a
        permutation [N] / [B, N]; a model trained in random order samples in any) or the
        evaluation order."""
        if isinstance(order, str):
            if order != self.order.settings.fixed_eval_order and not self.model.position_embed:
                raise ConfigError(f"this model was trained in order "
                                  f"{self.order.settings.order!r} without position embeddings"
                                  f": it samples only in that order")
            return fixed_order(order, *self.order.grid)
        return self.coding_order if order is None else order
