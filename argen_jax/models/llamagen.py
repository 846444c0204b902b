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

Sampling is the shared KV-cache token sampler (`sampling.tokens.sample_tokens`) with
classifier-free guidance (a constant or scheduled scale, optionally only for the first
cfg_interval + 2 tokens, as LlamaGen's `cfg_interval`), temperature, top-k and top-p. Samples
are token maps [B, L]; `to_images` / `save_samples` decode them with the tokenizer.

`SIZES` are LlamaGen's published c2i shapes; `convert/llamagen_torch.py` imports its released
PyTorch checkpoints into these parameters.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from argen_jax.errors import ConfigError
from argen_jax.evaluation.likelihood import nll_loss_and_sums
from argen_jax.heads.categorical import categorical_nll
from argen_jax.models.token_family import TokenImageFamily
from argen_jax.models.transformer import Decoder
from argen_jax.sampling.processors import SamplingSettings
from argen_jax.sampling.tokens import sample_tokens

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


def model_shape(m) -> dict:
    """width / depth / heads / mlp_dim of a `config.model` section: LlamaGen's shape when
    `m.size` names one of SIZES, else the section's own fields."""
    size = m.get("size", "")
    if size:
        if size not in SIZES:
            raise ConfigError(f"model.size must be one of {sorted(SIZES)} or '', got {size!r}")
        depth, heads, width = SIZES[size]
        return dict(width=width, depth=depth, num_heads=heads, num_kv_heads=None,
                    head_dim=None, mlp_dim=ffn_dim(width))
    return dict(width=m.width, depth=m.depth, num_heads=m.num_heads,
                num_kv_heads=m.get("num_kv_heads") or None, head_dim=m.get("head_dim") or None,
                mlp_dim=m.get("mlp_dim") or ffn_dim(m.width, None, m.get("multiple_of", 256)))


def llamagen_decoder(m, vocab_size: int, num_classes: int, grid: tuple[int, int]) -> Decoder:
    """The c2i Decoder of a `config.model` section over an h x w token grid."""
    n_cls = int(m.get("cls_token_num", 1))
    if n_cls < 1:
        raise ConfigError(f"model.cls_token_num must be >= 1, got {n_cls}")
    return Decoder(
        vocab_size=vocab_size, num_classes=num_classes, max_len=n_cls + grid[0] * grid[1] - 1,
        dropout=m.get("dropout", 0.0), rope="2d", rope_theta=m.get("rope_theta", 10000.0),
        grid=tuple(grid), num_prefix=n_cls, prefix_rope=m.get("prefix_rope", "zero"),
        norm_eps=m.get("norm_eps", 1e-5), dtype=jnp.dtype(m.get("dtype", "float32")),
        param_dtype=jnp.dtype(m.get("param_dtype", "float32")), **model_shape(m))


class LlamaGenFamily(TokenImageFamily):
    def __init__(self, config, spec, tokenizer=None):
        super().__init__(config, spec, tokenizer)
        if spec.scales:
            raise ConfigError("llamagen models one raster token map; this token file is "
                              f"multi-scale (scales {spec.scales}): use a single-scale file")
        m = config.model
        self.cls_token_num = int(m.get("cls_token_num", 1))
        self.num_tokens = spec.shape[0]
        self.model = llamagen_decoder(m, spec.levels, self.num_classes, spec.grid)
        self.token_noise = float(m.get("token_noise", 0.0))
        self.sampling = SamplingSettings.from_config(config)

    # ---------------------------------------------------------------- sequences
    def prompt(self, labels: jax.Array) -> jax.Array:
        """labels [B] -> the class tokens [B, cls_token_num] (the class id, repeated)."""
        ids = self.model.class_ids(labels)[:, None]
        return jnp.repeat(ids, self.cls_token_num, axis=1)

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

    def logits(self, params, tokens, labels, rng=None, train: bool = False):
        """Next-token logits [B, L, V] (float32) of every token of the maps."""
        ids = self.inputs(tokens, labels)
        rngs = {"dropout": rng} if rng is not None else {}
        logits, _ = self.model.apply({"params": params}, ids, train=train, rngs=rngs)
        return logits[:, self.cls_token_num - 1:]

    # ---------------------------------------------------------------- Family contract
    def init(self, rng, batch):
        tokens = jnp.asarray(batch["tokens"], jnp.int32)
        return self.model.init(rng, self.inputs(tokens, self.labels(batch)))

    def loss(self, params, batch, rng, train, step=None):
        tokens = jnp.asarray(batch["tokens"], jnp.int32)  # [B, L]
        label_rng, noise_rng, drop_rng = jax.random.split(rng, 3)
        labels = self.labels(batch, label_rng, train)
        inputs = self._noisy(noise_rng, tokens) if train else tokens
        logits = self.logits(params, inputs, labels, drop_rng, train)  # [B, L, V]
        nll = categorical_nll(logits, tokens).sum(-1)  # [B] nats
        return nll_loss_and_sums(nll, batch["mask"], float(self.num_tokens))

    def guidance_scale(self):
        """The CFG scale per step t. `cfg_interval` as LlamaGen's: its prefill token and decode
        steps i <= cfg_interval are guided (t <= cfg_interval + 1)."""
        return self.sampling.guidance(self.num_tokens)

    def sample(self, params, keys, labels=None):
        """keys [B, 2] -> token maps int32 [B, L]."""
        b = keys.shape[0]
        labels = self.sample_labels(labels, b)
        guided = self.conditional and self.sampling.cfg_scale != 1.0
        prompt = self.prompt(labels)  # [B, P]
        uncond = self.prompt(jnp.full((b,), self.null_class, jnp.int32)) if guided else None
        cache = self.model.init_cache(2 * b if guided else b)

        def logits_fn(ids, cache):
            return self.model.apply({"params": params}, ids, cache, method=Decoder.extend)

        tokens, _ = sample_tokens(logits_fn, cache, prompt, self.num_tokens, keys,
                                  uncond_prompt=uncond, cfg_scale=self.guidance_scale(),
                                  draw_fn=self.sampling.draw_fn())
        return tokens  # [B, L]
