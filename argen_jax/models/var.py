"""VAR: visual autoregressive modelling by next-scale prediction (Tian et al. 2024).

A multi-scale residual tokenizer (`layers.quantizer.MultiScaleResidualQuantizer`) turns an
image into token maps of sizes p_1 < ... < p_S (VAR: 1, 2, 3, 4, 5, 6, 8, 10, 13, 16). The
transformer sees all maps concatenated coarse to fine (L = sum p_s^2 tokens) under a
block-causal mask (`layers.masks.block_ids_from_sizes`): every token of scale s sees all tokens
of scales <= s, so one forward pass predicts all p_s^2 tokens of scale s at once.

Inputs (what position i of scale s is fed):
    scale 0   class embedding + pos_start (the start token; its class is the condition)
    scale s   word_embed(teacher-forcing input): the tokenizer's latent accumulated from the
              token maps of scales < s, area-downsampled to p_s x p_s
              (`Tokenizer.teacher_forcing_inputs`); at sampling time the same construction
              from the drawn tokens (`embed_scale` + `next_scale_input`)
plus a level (scale) embedding and a learned absolute position embedding. Every block is an
AdaLN block (`layers.adaln`) conditioned on the class embedding; the head is AdaLN + Dense.
Label dropout to the null class (= num_classes) trains the unconditional branch for CFG.

The tokenizer's quantizer inside the parameters. The teacher-forcing inputs and the sampler
need the quantizer's codebook and phi convs. They are copied from the tokenizer checkpoint into
`params['tokenizer']` (the quantizer's params and its assigned `vq_state`, a few KB) and kept
frozen (`param_groups`, design rule 16). Why not close over them as
constants: the loss and the sampler stay pure functions of `params` (nothing baked into the
compiled program, sharded and checkpointed like every other leaf), a checkpoint alone
generates tokens, and the PyTorch converter can fill the same subtree from VAR's VQ-VAE.
Decoding tokens to pixels still uses the full tokenizer (`TokenImageFamily.to_images`).

Sampling is `sampling.loop.autoregressive_scan(..., static_steps=True)`: one step per scale,
the transformer's `extend` feeds the step's block into the KV cache; CFG doubles the batch and
ramps the guidance across scales (`processors.cfg_scale_schedule`, 'linear': scale 1 at the
first scale, `cfg_scale` at the last; VAR's `cfg` is our cfg_scale - 1). Known tokens
(`known_tokens`, `known_mask`) replace the draws at their positions at every scale: VAR's
zero-shot in-painting / out-painting by teacher forcing.

Scale switches (`layers/repeat.py`): `remat` per AdaLN block, `scan_layers` (one `blocks`
submodule with a leading layer axis and one stacked KV cache), `attention_impl` for the full
(teacher-forced) pass.

Not implemented: VAR's drop-path (stochastic depth) and the shared-AdaLN variant.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.evaluation.likelihood import nll_loss_and_sums
from argen_jax.heads.categorical import categorical_nll
from argen_jax.layers import quantizer as qlib
from argen_jax.layers.adaln import AdaLNBlock, AdaLNHead, var_init_std
from argen_jax.layers.attention import ATTENTION_IMPLS, KVCache
from argen_jax.layers.masks import attention_mask, block_ids_from_sizes
from argen_jax.layers.repeat import check_remat, repeated_block
from argen_jax.models.base import FROZEN
from argen_jax.models.flops import TRAIN_MULTIPLIER, var_forward_flops
from argen_jax.models.labels import LabelSettings
from argen_jax.models.token_family import TokenImageFamily
from argen_jax.models.transformer import config_dtype
from argen_jax.parallel import axes
from argen_jax.sampling.loop import LoopState, autoregressive_scan

Cache = tuple  # tuple[KVCache, ...], one per block

IMAGENET_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
# VAR's published sizes (README "VAR zoo"): depth -> parameters of the transformer
PUBLISHED_PARAMS = {16: 310e6, 20: 600e6, 24: 1.0e9, 30: 2.0e9}


def depth_config(depth: int) -> dict:
    """VAR's shapes for a depth (models/__init__.py build_vae_var): width 64 * depth, heads =
    depth, MLP ratio 4, 4096 codes of 32 dims, 1000 classes, ImageNet-256 patch nums."""
    return dict(depth=depth, width=64 * depth, num_heads=depth, vocab_size=4096, code_dim=32,
                num_classes=1000, patch_nums=IMAGENET_PATCH_NUMS)


def _normal(std, names):
    return nn.with_logical_partitioning(nn.initializers.truncated_normal(std), names)


class VARTransformer(nn.Module):
    """The next-scale prediction transformer. Full pass: `__call__(labels, x_tf)`; decoding:
    `extend(labels, inputs, cache, scale)` one scale at a time."""

    vocab_size: int = 4096
    code_dim: int = 32  # the tokenizer's latent channels (VAR: Cvae)
    num_classes: int = 1000  # class rows = num_classes + 1 (the last: null class)
    patch_nums: Sequence[int] = IMAGENET_PATCH_NUMS
    width: int = 1024
    depth: int = 16
    num_heads: int = 16
    mlp_ratio: float = 4.0
    attn_l2_norm: bool = True
    norm_eps: float = 1e-6
    ada_gamma_init: float = 1e-5  # AdaLN gamma columns' init multiplier (VAR's alng)
    remat: str = "none"  # per-block rematerialisation ('none' | 'full' | a policy name)
    scan_layers: bool = False  # nn.scan over the blocks (params 'blocks', leading layer axis)
    attention_impl: str = "einsum"  # full-pass attention kernel (layers/attention.py)
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    # ------------------------------------------------------------------ static tables
    @property
    def seq_len(self) -> int:
        return int(sum(p * p for p in self.patch_nums))

    @property
    def begin_ends(self) -> list[tuple[int, int]]:
        out, cur = [], 0
        for p in self.patch_nums:
            out.append((cur, cur + p * p))
            cur += p * p
        return out

    def block_ids(self) -> np.ndarray:
        return block_ids_from_sizes([p * p for p in self.patch_nums])

    def init_cache(self, batch: int, dtype: Any = None) -> Cache:
        hd = self.width // self.num_heads
        if self.scan_layers:
            return KVCache.zeros(batch, self.seq_len, self.num_heads, hd, dtype or self.dtype,
                                 layers=self.depth)
        return tuple(KVCache.zeros(batch, self.seq_len, self.num_heads, hd, dtype or self.dtype)
                     for _ in range(self.depth))

    # ------------------------------------------------------------------ modules
    def setup(self):
        if self.width % self.num_heads:
            raise ConfigError(f"VAR width {self.width} not divisible by {self.num_heads} heads")
        c, std = self.width, var_init_std(self.width)
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        first = self.patch_nums[0] ** 2
        self.word_embed = nn.Dense(c, name="word_embed", kernel_init=nn.with_logical_partitioning(
            nn.initializers.normal(std), (axes.CODE_DIM, axes.EMBED)), **kw)
        self.class_emb = self.param("class_emb", _normal(std, (axes.CLASSES, axes.EMBED)),
                                    (self.num_classes + 1, c), self.param_dtype)
        self.pos_start = self.param("pos_start", _normal(std, (None, axes.EMBED)), (first, c),
                                    self.param_dtype)
        self.pos_embed = self.param("pos_embed", _normal(std, (None, axes.EMBED)),
                                    (self.seq_len, c), self.param_dtype)
        self.lvl_embed = self.param("lvl_embed", _normal(std, (None, axes.EMBED)),
                                    (len(self.patch_nums), c), self.param_dtype)
        # AdaLNBlock(x, cond, mask, cache, train): train static
        block = repeated_block(AdaLNBlock, remat=self.remat, scan=self.scan_layers,
                               depth=self.depth, static_argnums=(5,),
                               in_axes=(nn.broadcast, nn.broadcast, 0, nn.broadcast))
        args = dict(num_heads=self.num_heads, mlp_ratio=self.mlp_ratio,
                    attn_l2_norm=self.attn_l2_norm, norm_eps=self.norm_eps, init_std=std,
                    gamma_init=self.ada_gamma_init, residual_init_scale=(2 * self.depth) ** -0.5,
                    attention_impl=self.attention_impl, **kw)
        if self.scan_layers:
            self.blocks = block(name="blocks", **args)
        else:
            self.blocks = [block(name=f"block_{i}", **args) for i in range(self.depth)]
        self.head_nm = AdaLNHead(self.norm_eps, std, name="head_nm", **kw)
        self.head = nn.Dense(self.vocab_size, name="head", dtype=self.dtype,
                             param_dtype=self.param_dtype,
                             kernel_init=nn.with_logical_partitioning(
                                 nn.initializers.normal(0.02 * std), (axes.EMBED, axes.VOCAB)))

    def condition(self, labels):
        """labels [B] in [0, num_classes] -> class embeddings [B, E] (the AdaLN condition)."""
        return jnp.take(self.class_emb, labels.astype(jnp.int32), axis=0).astype(jnp.float32)

    def _embed(self, cond, inputs, start: int, end: int):
        """The residual stream of positions start..end-1 [B, end - start, E]. inputs
        [B, n, code_dim] are the teacher-forcing inputs of those positions that are not the
        start token (positions >= first_l)."""
        first = self.patch_nums[0] ** 2
        parts = []
        if start < first:
            sos = cond[:, None, :] + self.pos_start[None].astype(jnp.float32)  # [B, first, E]
            parts.append(sos[:, start:min(end, first)])
        if end > first:
            parts.append(self.word_embed(inputs.astype(self.dtype)).astype(jnp.float32))
        x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
        lvl = jnp.asarray(self.block_ids()[start:end])
        x = x + (jnp.take(self.lvl_embed, lvl, axis=0) + self.pos_embed[start:end]).astype(
            jnp.float32)[None]
        return nn.with_logical_constraint(x.astype(self.dtype), axes.RESIDUAL)

    def _backbone(self, x, cond, mask, cache, train):
        if self.scan_layers:
            x, new_cache = self.blocks(x, cond, mask, cache, train)
        else:
            new_cache = []
            for i, block in enumerate(self.blocks):
                x, c = block(x, cond, mask, None if cache is None else cache[i], train)
                new_cache.append(c)
            new_cache = None if cache is None else tuple(new_cache)
        logits = self.head(self.head_nm(x, cond).astype(self.dtype))
        logits = nn.with_logical_constraint(logits.astype(jnp.float32),
                                            (axes.BATCH, axes.LENGTH, axes.VOCAB))
        return logits, new_cache

    def __call__(self, labels, x_tf, train: bool = False):
        """labels [B]; x_tf [B, L - p_1^2, code_dim] teacher-forcing inputs -> logits
        [B, L, V] float32 for every token of every scale."""
        if x_tf.shape[1] != self.seq_len - self.patch_nums[0] ** 2:
            raise ConfigError(f"teacher-forcing inputs have {x_tf.shape[1]} positions, the "
                              f"scales {tuple(self.patch_nums)} need "
                              f"{self.seq_len - self.patch_nums[0] ** 2}")
        cond = self.condition(labels)
        x = self._embed(cond, x_tf, 0, self.seq_len)
        ids = jnp.asarray(self.block_ids())
        logits, _ = self._backbone(x, cond, attention_mask(ids, ids), None, train)
        return logits

    def extend(self, labels, inputs, cache: Cache, scale: int, train: bool = False):
        """Feeds scale `scale` (a Python int) into the cache: inputs [B, p_s^2, code_dim]
        (None for scale 0, the start token). The cache must hold scales < s. Returns
        (logits [B, p_s^2, V], advanced cache)."""
        start, end = self.begin_ends[scale]
        cond = self.condition(labels)
        x = self._embed(cond, inputs, start, end)
        ids = jnp.asarray(self.block_ids())
        slots = jnp.arange(self.seq_len)
        mask = attention_mask(ids[start:end], ids, slots < end)  # [1, 1, n, L]
        return self._backbone(x, cond, mask, cache, train)


@dataclasses.dataclass(frozen=True)
class VARSettings(LabelSettings):
    """`config.model` of 'var' (experiments/var/fashion_mnist.py); label conditioning is
    `LabelSettings`'."""

    depth: int = 16  # AdaLN blocks (VAR's d16, d20, d24, d30)
    width: int = 0  # residual width (0: 64 * depth, VAR's rule)
    num_heads: int = 0  # attention heads (0: = depth, VAR's rule)
    mlp_ratio: float = 4.0  # GELU MLP hidden width = mlp_ratio * width
    attn_l2_norm: bool = True  # cosine attention with a learned temperature (VAR default)
    norm_eps: float = 1e-6  # LayerNorm epsilon
    ada_gamma_init: float = 1e-5  # init multiplier of the AdaLN gamma columns (VAR's alng:
    #   its README trains d16 / d20 with 1e-3, d24 1e-4, d30 1e-5)
    code_dim: int = 0  # tokenizer latent channels (0: read from the tokenizer)
    dtype: str = "float32"  # compute dtype ('bfloat16' on accelerators)
    param_dtype: str = "float32"  # parameter storage dtype
    remat: str = "none"  # per-block rematerialisation: 'none' | 'full' | a
    #   jax.checkpoint_policies name ('dots_saveable', 'nothing_saveable', ...)
    scan_layers: bool = False  # nn.scan over the blocks (compile time independent of depth;
    #   parameters in the scanned layout, layers/repeat.py)
    attention_impl: str = "einsum"  # full-pass attention: 'einsum' | 'xla' | 'cudnn'

    def __post_init__(self):
        super().__post_init__()
        check_remat(self.remat)
        config_lib.check_choice(self, "attention_impl", ATTENTION_IMPLS)
        if self.depth <= 0:
            raise ConfigError(f"model.depth must be > 0, got {self.depth}")
        for key in ("width", "num_heads", "code_dim"):
            if getattr(self, key) < 0:
                raise ConfigError(f"model.{key} must be >= 0 (0: the default rule), got "
                                  f"{getattr(self, key)}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"model.mlp_ratio must be > 0, got {self.mlp_ratio}")
        if self.ada_gamma_init < 0:
            raise ConfigError(f"model.ada_gamma_init must be >= 0, got {self.ada_gamma_init}")
        config_dtype(self.dtype, "dtype")
        config_dtype(self.param_dtype, "param_dtype")

    def transformer(self, vocab_size: int, code_dim: int, num_classes: int,
                    patch_nums: Sequence[int]) -> VARTransformer:
        """The VARTransformer of these settings (width and heads by VAR's rules when 0)."""
        return VARTransformer(
            vocab_size=vocab_size, code_dim=code_dim, num_classes=num_classes,
            patch_nums=tuple(int(p) for p in patch_nums), width=self.width or 64 * self.depth,
            depth=self.depth, num_heads=self.num_heads or self.depth, mlp_ratio=self.mlp_ratio,
            attn_l2_norm=self.attn_l2_norm, norm_eps=self.norm_eps,
            ada_gamma_init=self.ada_gamma_init, remat=self.remat,
            scan_layers=self.scan_layers, attention_impl=self.attention_impl,
            dtype=config_dtype(self.dtype, "dtype"),
            param_dtype=config_dtype(self.param_dtype, "param_dtype"))


def tokenizer_subtree(tok_params: dict) -> dict:
    """The part of a multi-scale tokenizer's params its quantizer needs (codebook, phi convs,
    assigned restart state): what `params['tokenizer']` holds."""
    sub = {"generator": {"quantizer": tok_params["generator"]["quantizer"]}}
    if "vq_state" in tok_params:
        sub["vq_state"] = tok_params["vq_state"]
    return sub


class VARFamily(TokenImageFamily):
    """VAR on multi-scale token maps (data.kind='tokens' with scales); see the module
    docstring. params = {'var': transformer, 'tokenizer': frozen quantizer subtree}."""

    sampling_defaults = {"cfg_schedule": "linear"}  # VAR's own (config.sample keys win)

    Settings = VARSettings

    def __init__(self, config, spec, tokenizer=None):
        super().__init__(config, spec, tokenizer)
        if not spec.scales:
            raise ConfigError("VAR needs multi-scale token maps (a token file written from a "
                              "tokenizer with model.quantizer='multiscale'); this one has one "
                              "scale")
        self.scales = tuple(int(s) for s in spec.scales)
        self.sizes = [p * p for p in self.scales]
        self.seq_len = sum(self.sizes)
        self.sampling.no_speculative("var (it draws a whole scale per pass already)")
        self._model = None
        if tokenizer is not None:
            self._check_tokenizer()
    # ---------------------------------------------------------------- pieces
    @property
    def code_dim(self) -> int:
        return self.settings.code_dim or self.tokenizer.code_dim

    @property
    def model(self) -> VARTransformer:
        if self._model is None:
            self._model = self.settings.transformer(self.codebook_size, self.code_dim,
                                                    self.num_classes, self.scales)
        return self._model

    def _check_tokenizer(self):
        tok = self.tokenizer
        if not tok.multiscale or tuple(tok.scales) != self.scales:
            raise ConfigError(f"VAR's token maps have scales {self.scales} but the tokenizer "
                              f"has {tok.scales if tok.multiscale else 'one scale'}")
        if self.settings.code_dim and self.code_dim != tok.code_dim:
            raise ConfigError(f"model.code_dim={self.code_dim} but the tokenizer's latent has "
                              f"{tok.code_dim} channels (set model.code_dim=0 to follow it)")

    def teacher_forcing_inputs(self, params, tokens):
        """tokens [B, L] -> [B, L - p_1^2, code_dim] from the frozen quantizer subtree."""
        tok = jax.lax.stop_gradient(params["tokenizer"])
        return self.tokenizer.teacher_forcing_inputs(self.token_maps(tokens), params=tok)

    # ---------------------------------------------------------------- contract
    def init(self, rng, batch):
        self._check_tokenizer()
        n = batch["tokens"].shape[0]
        x_tf = jnp.zeros((n, self.seq_len - self.sizes[0], self.code_dim), jnp.float32)
        variables = self.model.init(rng, self.labels(batch), x_tf)
        tok = jax.tree.map(jnp.asarray, tokenizer_subtree(self.tokenizer.params))
        return {"params": {"var": variables["params"], "tokenizer": tok}}

    group_names = ("train", FROZEN)

    def param_groups(self, params):
        """The copied tokenizer subtree is frozen; the transformer is trained."""
        return {k: (FROZEN if k == "tokenizer" else "train") for k in params}

    def logits(self, params, batch, rng=None, train: bool = False):
        """Teacher-forced logits [B, L, V] of every scale (labels dropped in training)."""
        rng = jax.random.PRNGKey(0) if rng is None else rng
        labels = self.labels(batch, rng, train)
        x_tf = self.teacher_forcing_inputs(params, batch["tokens"])
        return self.model.apply({"params": params["var"]}, labels, x_tf, train=train)

    def loss(self, params, batch, rng, train, step=None):
        tokens = batch["tokens"].astype(jnp.int32)
        mask = batch["mask"].astype(jnp.float32)
        logits = self.logits(params, batch, rng, train)
        nll = categorical_nll(logits, tokens)  # [B, L] nats
        loss, sums = nll_loss_and_sums(nll.sum(-1), mask, float(self.seq_len))
        correct = (jnp.argmax(logits, -1) == tokens).astype(jnp.float32)
        sums["acc_sum"] = jnp.sum(correct.mean(-1) * mask)
        start = 0
        for s, n in enumerate(self.sizes):  # per-scale means per token, summed over examples
            sl = slice(start, start + n)
            sums[f"loss_scale{s}_sum"] = jnp.sum(nll[:, sl].mean(-1) * mask)
            sums[f"acc_scale{s}_sum"] = jnp.sum(correct[:, sl].mean(-1) * mask)
            start += n
        return loss, sums

    def train_flops_per_example(self) -> float:  # models.base.CountsFlops
        return TRAIN_MULTIPLIER * var_forward_flops(self.model)

    def tokens_per_example(self) -> int:
        return self.seq_len

    # ---------------------------------------------------------------- sampling
    def sample(self, params, keys, labels):
        return self.generate(params, keys, labels)

    def generate(self, params, keys, labels=None, known_tokens=None, known_mask=None, *,
                 return_logits: bool = False, **sampling):
        """Tokens [B, L] drawn scale by scale. keys [B, 2] per-sample keys; labels [B].
        known_tokens int [B, L] / known_mask bool [B, L]: positions whose token is given
        (in-/out-painting); they replace the draws and condition every finer scale.
        return_logits: also return the (guided) logits of every scale [B, L, V].
        sampling: `SamplingSettings` fields that override `config.sample` (cfg_scale=...)."""
        b = keys.shape[0]
        model, tokz = self.model, self.tokenizer
        st = self.sampling.replace(**sampling) if sampling else self.sampling
        labels, null = self.classes.for_sampling(labels, b, st.guided)
        guided = null is not None
        both = jnp.concatenate([labels, null]) if guided else labels  # cond rows first
        tok = params["tokenizer"]
        ends = np.cumsum(self.sizes)

        def step_fn(seq, cache, s):  # -> logits [B', p_s^2, V] of the (doubled) batch
            kv, f_hat = cache
            inputs = None
            if s > 0:
                prev = seq[:, ends[s - 1] - self.sizes[s - 1]:ends[s - 1]].reshape(
                    b, self.scales[s - 1], self.scales[s - 1])
                f_hat = f_hat + tokz.embed_scale(s - 1, prev, params=tok)
                inputs = tokz.next_scale_input(f_hat, s, params=tok).reshape(b, self.sizes[s], -1)
                if guided:
                    inputs = jnp.concatenate([inputs, inputs])
            logits, kv = model.apply({"params": params["var"]}, both, inputs, kv, s,
                                     method=VARTransformer.extend)
            return logits, (kv, f_hat)

        base_draw = st.draw_fn()
        collected = []

        def draw_fn(keys_t, logits, s):
            if return_logits:
                collected.append(logits)
            return base_draw(keys_t, logits, s)

        def write_fn(seq, x, s):
            lo, hi = ends[s] - self.sizes[s], ends[s]
            if known_mask is not None:
                x = jnp.where(known_mask[:, lo:hi], known_tokens[:, lo:hi], x)
            return seq.at[:, lo:hi].set(x.astype(seq.dtype))

        h = self.scales[-1]
        f_hat = jnp.zeros((b, h, h, self.code_dim), jnp.float32)
        cache = (model.init_cache(2 * b if guided else b, st.cache_dtype), f_hat)
        state = LoopState(seq=jnp.zeros((b, self.seq_len), jnp.int32), cache=cache, keys=keys)
        step = st.guide(step_fn, len(self.scales)) if guided else step_fn
        state, _ = autoregressive_scan(step, draw_fn, write_fn, state, len(self.scales),
                                       static_steps=True)
        if return_logits:
            return state.seq, jnp.concatenate(collected, axis=1)
        return state.seq

    def known_from_images(self, images, keep):
        """In-/out-painting inputs from images [B, H, W, C] and a keep mask over the finest
        token map [B, p_S, p_S] (True: keep this region). A token of scale s is known iff
        every finest-scale cell it covers is kept (nearest resize of the mask). Returns
        (known_tokens [B, L], known_mask [B, L])."""
        maps = self.tokenizer.encode(images)
        keep = jnp.asarray(keep, jnp.float32)
        masks = []
        for p in self.scales:
            m = qlib.downsample(keep[..., None], p)[..., 0] > 0.999  # all cells kept
            masks.append(m.reshape(m.shape[0], -1))
        return qlib.flatten_scales(maps), jnp.concatenate(masks, axis=1)
