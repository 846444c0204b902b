"""LlamaGen (Sun et al. 2024): class-conditional next-token prediction over the raster of
image tokens with a Llama decoder ('llamagen').

The model is `models.transformer.Decoder` with 2-D RoPE over the (h, w) token grid:

    input   [c] * cls_token_num, t_0, ..., t_{L-2}      (c: the class token, or the null
                                                          class: label dropout / unconditional)
    target  t_0, ..., t_{L-1}                            next-token cross-entropy, bits/token

As in LlamaGen's c2i GPT, the class tokens' rotary factors are zero (`prefix_rope='zero'`: their
queries and keys vanish, their values still reach every token), RMSNorm uses eps 1e-5, the
SwiGLU width is LlamaGen's rule (`ffn_dim`), and `dropout` plays LlamaGen's token_dropout_p /
resid_dropout_p / ffn_dropout_p (dropout on the embeddings and on the residual branches).
`token_noise` is an extra regulariser that LlamaGen does not have: in training each input token
is replaced by a uniformly random code with that probability (the targets are untouched).

Sampling is the shared KV-cache token sampler (`sampling.tokens.sample_tokens`; speculative
Jacobi decoding with `sample.speculative`: `sampling/speculative.py`) with
classifier-free guidance (a constant or scheduled scale, optionally only for the first
cfg_interval + 2 tokens, as LlamaGen's `cfg_interval`), temperature, top-k and top-p. Samples
are token maps [B, L]; `to_images` / `save_samples` decode them with the tokenizer.

`SIZES` are LlamaGen's published c2i shapes; `pretrained/torch_llamagen.py` imports its released
PyTorch checkpoints into these parameters.
"""
from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from argen_jax import config_lib
from argen_jax.errors import ConfigError
from argen_jax.evaluation.likelihood import nll_loss_and_sums
from argen_jax.heads.categorical import categorical_nll
from argen_jax.models.flops import TRAIN_MULTIPLIER, decoder_forward_flops
from argen_jax.models.labels import LabelSettings
from argen_jax.models.token_family import TokenImageFamily
from argen_jax.models.transformer import (
    ORDER_RNG,
    Decoder,
    DecoderSettings,
    OrderedDecoding,
    sample_decoder,
)

# LlamaGen's GPT configs (autoregressive/models/gpt.py): name -> (layers, heads, width), with
# the parameter counts the paper states (ImageNet 256: 16384 codes, 1000 classes, 16x16 map).
SIZES = {
    "B": (12, 12, 768),
    "L": (24, 16, 1024),
    "XL": (36, 20, 1280),
    "XXL": (48, 24, 1536),
    "3B": (24, 32, 3200),
}
PUBLISHED_PARAMS = {"B": 111e6, "L": 343e6, "XL": 775e6, "XXL": 1.4e9, "3B": 3.1e9}


def ffn_dim(width: int, multiplier: float | None = None, multiple_of: int = 256) -> int:
    """LlamaGen's (Llama's) SwiGLU width: 2/3 of 4 * width, times `multiplier`, rounded up to
    a multiple of `multiple_of`."""
    hidden = int(2 * (4 * width) / 3)
    if multiplier:
        hidden = int(multiplier * hidden)
    return -(-hidden // multiple_of) * multiple_of


@dataclasses.dataclass(frozen=True)
class LlamaGenSettings(DecoderSettings, LabelSettings):
    """`config.model` of 'llamagen' (experiments/llamagen/fashion_mnist.py). The Decoder fields
    (width, depth, heads, dropout, dtype, ...) are `DecoderSettings`'; label conditioning is
    `LabelSettings`'."""

    size: str = ""  # LlamaGen's shape (SIZES: B, L, XL, XXL, 3B); '' = width / depth /
    #   num_heads / num_kv_heads / head_dim / mlp_dim below
    width: int = 192  # residual stream width (size='' only)
    depth: int = 6  # Llama blocks (size='' only)
    num_heads: int = 6  # query heads (size='' only)
    mlp_dim: int = 0  # SwiGLU width; 0: LlamaGen's rule (2/3 * 4 * width, rounded up)
    multiple_of: int = 256  # rounding of that rule (LlamaGen: 256; small models: 32)
    cls_token_num: int = 1  # class tokens before the map (LlamaGen c2i: 1)
    prefix_rope: str = "zero"  # class tokens' RoPE: 'zero' (LlamaGen: cos = sin = 0) |
    #   'identity' (no rotation)
    norm_eps: float = 1e-5  # RMSNorm epsilon (LlamaGen)
    token_noise: float = 0.0  # training: input token -> random code with this probability

    def __post_init__(self):
        DecoderSettings.__post_init__(self)
        LabelSettings.__post_init__(self)
        if self.size and self.size not in SIZES:
            raise ConfigError(f"model.size must be one of {sorted(SIZES)} or '', got "
                              f"{self.size!r}")
        if self.cls_token_num < 1:
            raise ConfigError(f"model.cls_token_num must be >= 1, got {self.cls_token_num}")
        if self.multiple_of < 1:
            raise ConfigError(f"model.multiple_of must be >= 1, got {self.multiple_of}")
        if self.prefix_rope not in ("identity", "zero"):
            raise ConfigError(f"model.prefix_rope must be 'identity' or 'zero', got "
                              f"{self.prefix_rope!r}")
        if not 0.0 <= self.token_noise <= 1.0:
            raise ConfigError(f"model.token_noise must be in [0, 1], got {self.token_noise}")

    def shape(self) -> dict:
        """width / depth / heads / mlp_dim: LlamaGen's shape when `size` names one of SIZES,
        else the fields'."""
        if self.size:
            depth, heads, width = SIZES[self.size]
            return dict(width=width, depth=depth, num_heads=heads, num_kv_heads=None,
                        head_dim=None, mlp_dim=ffn_dim(width))
        return dict(super().shape(),
                    mlp_dim=self.mlp_dim or ffn_dim(self.width, None, self.multiple_of))

    def llamagen_decoder(self, vocab_size: int, num_classes: int,
                         grid: tuple[int, int]) -> Decoder:
        """The c2i Decoder over an h x w token grid (2-D RoPE after the class tokens)."""
        return self.decoder(vocab_size, num_classes,
                            self.cls_token_num + grid[0] * grid[1] - 1, rope="2d",
                            grid=tuple(grid), num_prefix=self.cls_token_num,
                            prefix_rope=self.prefix_rope,
                            position_embed=grid[0] * grid[1] if self.position_embed else 0)


def llamagen_decoder(m, vocab_size: int, num_classes: int, grid: tuple[int, int]) -> Decoder:
    """The c2i Decoder of `LlamaGenSettings` or of a `config.model` section (a dict such as
    {'size': 'B'} works: absent keys take the defaults)."""
    if not isinstance(m, LlamaGenSettings):
        m = config_lib.typed(LlamaGenSettings, m, "model", ignore=("name",))
    return m.llamagen_decoder(vocab_size, num_classes, grid)


class LlamaGenFamily(OrderedDecoding, TokenImageFamily):
    Settings = LlamaGenSettings

    def __init__(self, config, spec, tokenizer=None):
        super().__init__(config, spec, tokenizer)
        if spec.scales:
            raise ConfigError("llamagen models one raster token map; this token file is "
                              f"multi-scale (scales {spec.scales}): use a single-scale file")
        m = self.settings
        self.cls_token_num = m.cls_token_num
        self.num_tokens = spec.shape[0]
        self.model = m.llamagen_decoder(spec.levels, self.num_classes, spec.grid)
        self.token_noise = m.token_noise
        self.init_order(m, spec.grid, config, self.sampling.speculative)

    # ---------------------------------------------------------------- sequences
    def prompt(self, labels: jax.Array) -> jax.Array:
        """labels [B] -> the class tokens [B, cls_token_num] (the class id, repeated)."""
        return self.model.class_prompt(labels)
    def inputs(self, tokens: jax.Array, labels: jax.Array) -> jax.Array:
        """tokens [B, L], labels [B] -> input ids [B, cls_token_num + L - 1]."""
        return jnp.concatenate([self.prompt(labels), tokens[:, :-1]], axis=1)

    def _noisy(self, rng, tokens):
        """Training: each input token becomes a random code with prob. token_noise."""
        if self.token_noise <= 0:
            return tokens
        r_mask, r_tok = jax.random.split(rng)
        swap = jax.random.bernoulli(r_mask, self.token_noise, tokens.shape)
        return jnp.where(swap, jax.random.randint(r_tok, tokens.shape, 0, self.codebook_size),
                         tokens)

    def logits(self, params, tokens, labels, rng=None, train: bool = False, positions=None):
        """Next-token logits [B, L, V] (float32) of every token of the maps (tokens in
        sequence order; positions: the decoder's, `OrderedDecoding.ordered_inputs`)."""
        ids = self.inputs(tokens, labels)
        rngs = {"dropout": rng} if rng is not None else {}
        logits, _ = self.model.apply({"params": params}, ids, train=train, rngs=rngs,
                                     positions=positions)
        return logits[:, self.cls_token_num - 1:]

    # ---------------------------------------------------------------- Family contract
    def init(self, rng, batch):
        tokens, pos = self.ordered_inputs(jnp.asarray(batch["tokens"], jnp.int32), None, False)
        return self.model.init(rng, self.inputs(tokens, self.labels(batch)), positions=pos)

    def loss(self, params, batch, rng, train, step=None):
        tokens = jnp.asarray(batch["tokens"], jnp.int32)  # [B, L]
        label_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
        labels = self.labels(batch, label_rng, train)
        tokens, pos = self.ordered_inputs(tokens, jax.random.fold_in(rng, ORDER_RNG), train,
                                          step)  # sequence order
        inputs = self._noisy(noise_rng, tokens) if train else tokens
        logits = self.logits(params, inputs, labels, drop_rng, train, pos)  # [B, L, V]
        nll = categorical_nll(logits, tokens).sum(-1)  # [B] nats
        return nll_loss_and_sums(nll, batch["mask"], float(self.num_tokens))

    def sample(self, params, keys, labels=None, order=None):
        """keys [B, 2] -> token maps int32 [B, L] (drawn in `order`: `sample_order`)."""
        labels, null = self.classes.for_sampling(labels, keys.shape[0], self.sampling.guided)
        return sample_decoder(self.model, params, keys, labels, null, self.num_tokens,
                              self.sampling, order=self.sample_order(order))

    def train_flops_per_example(self) -> float:  # models.base.CountsFlops
        seq = self.cls_token_num + self.num_tokens - 1  # the inputs of `logits`
        return TRAIN_MULTIPLIER * decoder_forward_flops(self.model, seq)

    def tokens_per_example(self) -> int:
        return self.num_tokens
