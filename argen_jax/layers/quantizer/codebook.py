"""The codebook: single-scale vector quantization (VQGAN / LlamaGen).

`VectorQuantizer` is the codebook: nearest-code lookup (squared Euclidean distance, or cosine
when codes are l2-normalised as in LlamaGen: 16,384 codes of 8 dims), straight-through
gradients, codebook + commitment losses (beta = 0.25), an optional entropy loss, optional EMA
codebook updates and dead-code restart, and usage / perplexity statistics.

State that is not learned by gradients (EMA codebook statistics, the usage EMA that finds dead
codes, restart offsets) lives in the flax collection `vq_state`. Apply with
`mutable=['vq_state']` and `rngs={'restart': key}` while training to get its new value; a
family turns "new value" into an optimizer update with `assign_surrogate` (see
models/vqgan.py): the training loop has one optimizer over `params`, and a leaf whose
"gradient" is (old - new) under `optax.scale(-1)` is assigned `new` exactly.

Shapes: latents are channels-last [B, h, w, D]; token maps are int32 [B, h, w].
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.parallel import axes

STATE = "vq_state"  # flax collection of assignment-updated quantizer state
RESTART_RNG = "restart"  # rng stream for dead-code restart


def l2_normalize(x: jax.Array, axis: int = -1, eps: float = 1e-12) -> jax.Array:
    """x / max(||x||, eps) (as torch.nn.functional.normalize; codes start at ~1/K)."""
    return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(jnp.square(x), axis=axis, keepdims=True),
                                         eps * eps))


def usage_from_counts(counts: jax.Array) -> jax.Array:
    """counts [..., K] -> fraction of codes used at least once [...]."""
    return jnp.mean((counts > 0).astype(jnp.float32), axis=-1)


def perplexity_from_counts(counts: jax.Array) -> jax.Array:
    """exp(entropy) of the code histogram [..., K]: K when uniform, 1 when collapsed."""
    p = counts / jnp.maximum(jnp.sum(counts, axis=-1, keepdims=True), 1e-12)
    return jnp.exp(-jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1))


def entropy_loss(logits: jax.Array, weights: jax.Array) -> jax.Array:
    """LlamaGen / MaskGIT entropy regulariser: mean per-vector entropy (make assignments
    confident) minus the entropy of the weighted average assignment (use every code).
    logits [N, K] float32, weights [N] -> scalar."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    w = weights / jnp.maximum(jnp.sum(weights), 1e-12)
    sample_entropy = -jnp.sum(w * jnp.sum(p * logp, axis=-1))
    avg = jnp.sum(w[:, None] * p, axis=0)
    avg_entropy = -jnp.sum(avg * jnp.log(avg + 1e-5))
    return sample_entropy - avg_entropy


class QuantizerOutput(NamedTuple):
    z_q: jax.Array  # [B, h, w, D] straight-through quantized latent (value = codes, grad = id)
    indices: Any  # int32 [B, h, w] (single scale) or a list of [B, s, s] (multi-scale)
    per_example_loss: jax.Array  # [B] codebook + beta * commitment (mask it in the family)
    aux_loss: jax.Array  # scalar: entropy_weight * entropy loss (0 when off)
    counts: jax.Array  # [K] (single) or [S, K] (per scale): code histogram, mask-weighted


# --------------------------------------------------------------------------- the codebook
class VectorQuantizer(nn.Module):
    """A codebook of `codebook_size` codes of `code_dim` dims.

    Call it on a latent [B, h, w, D] for the full single-scale quantizer; multi-scale users call
    `nearest`, `lookup`, `statistics` and `update_state` directly.
    """

    codebook_size: int
    code_dim: int
    beta: float = 0.25  # commitment weight
    l2_normalize: bool = True  # cosine lookup on l2-normalised codes (LlamaGen)
    entropy_weight: float = 0.0  # 0: no entropy loss
    entropy_temperature: float = 0.01
    ema: bool = False  # EMA codebook updates instead of the codebook loss
    ema_decay: float = 0.99
    restart_threshold: float = 0.0  # restart codes whose usage EMA < threshold / K (0: off)
    usage_decay: float = 0.99  # decay of the usage EMA that finds dead codes
    param_dtype: Any = jnp.float32

    def setup(self):
        k, d = self.codebook_size, self.code_dim
        if k < 2 or d < 1:
            raise ConfigError(f"codebook needs >= 2 codes of >= 1 dims, got {k} x {d}")
        init = nn.initializers.uniform(scale=2.0 / k)

        def table(key, shape=(k, d)):
            return init(key, shape, jnp.float32) - 1.0 / k  # U(-1/K, 1/K) as in taming/LlamaGen

        if self.ema:
            self.codebook_var = self.variable(STATE, "codebook",
                                              lambda: table(self.make_rng("params")))
            self.cluster_size = self.variable(STATE, "cluster_size", lambda: jnp.ones((k,)))
            self.embed_sum = self.variable(STATE, "embed_sum", lambda: self.codebook_var.value)
        else:
            self.codebook = self.param(
                "codebook",
                nn.with_logical_partitioning(lambda key, shape, dtype: table(key, shape)
                                             .astype(dtype), (axes.VOCAB, axes.CODE_DIM)),
                (k, d), self.param_dtype)
            if self.restart_threshold > 0:
                self.offset = self.variable(STATE, "restart_offset", lambda: jnp.zeros((k, d)))
        if self.restart_threshold > 0:
            self.usage = self.variable(STATE, "usage", lambda: jnp.full((k,), 1.0 / k, jnp.float32))

    # ---------------------------------------------------------------- lookup
    def raw_codes(self) -> jax.Array:
        if self.ema:
            return self.codebook_var.value
        codes = self.codebook.astype(jnp.float32)
        if self.restart_threshold > 0:
            codes = codes + self.offset.value
        return codes

    def codes(self) -> jax.Array:
        """The effective code table [K, D] float32 (l2-normalised if configured)."""
        c = self.raw_codes().astype(jnp.float32)
        return l2_normalize(c) if self.l2_normalize else c

    def prepare(self, z: jax.Array) -> jax.Array:
        """The vector that is compared with codes: z (l2-normalised if configured), float32."""
        z = z.astype(jnp.float32)
        return l2_normalize(z) if self.l2_normalize else z

    def distances(self, z: jax.Array) -> jax.Array:
        """z [..., D] (prepared) -> squared distances [..., K] to every code."""
        c = self.codes()
        return (jnp.sum(z * z, -1, keepdims=True) - 2.0 * z @ c.T + jnp.sum(c * c, -1))

    def nearest(self, z: jax.Array) -> jax.Array:
        """Nearest code index int32 [...] for latents z [..., D]."""
        return jnp.argmin(self.distances(self.prepare(z)), axis=-1).astype(jnp.int32)

    def lookup(self, indices: jax.Array) -> jax.Array:
        """int [...] -> codes [..., D] float32."""
        return jnp.take(self.codes(), indices, axis=0)

    # ---------------------------------------------------------------- statistics / state
    def statistics(self, z: jax.Array, indices: jax.Array, weights: jax.Array):
        """Histogram [K] and per-code sums of z [K, D] (prepared), weighted by weights [...]."""
        k = self.codebook_size
        idx, w = indices.reshape(-1), weights.reshape(-1).astype(jnp.float32)
        counts = jnp.zeros((k,), jnp.float32).at[idx].add(w)
        sums = jnp.zeros((k, self.code_dim), jnp.float32).at[idx].add(
            w[:, None] * z.reshape(-1, self.code_dim))
        return counts, sums

    def update_state(self, counts: jax.Array, sums: jax.Array, candidates: jax.Array) -> None:
        """One step of EMA codebook / usage / dead-code restart from this step's histogram
        `counts` [K], per-code sums `sums` [K, D] and restart candidates [N, D] (prepared
        latents of this batch). No-op unless `vq_state` is mutable (training)."""
        if not self.is_mutable_collection(STATE) or self.is_initializing():
            return
        k = self.codebook_size
        if self.ema:
            d = self.ema_decay
            size = d * self.cluster_size.value + (1 - d) * counts
            embed = d * self.embed_sum.value + (1 - d) * sums
            n = jnp.sum(size)
            smoothed = (size + 1e-5) / (n + k * 1e-5) * n  # Laplace smoothing
            table = embed / smoothed[:, None]
        if self.restart_threshold <= 0:
            if self.ema:
                self.cluster_size.value, self.embed_sum.value = size, embed
                self.codebook_var.value = table
            return
        u = self.usage_decay
        share = counts / jnp.maximum(jnp.sum(counts), 1e-12)
        usage = u * self.usage.value + (1 - u) * share
        dead = usage < self.restart_threshold / k  # [K]
        pick = jax.random.randint(self.make_rng(RESTART_RNG), (k,), 0, candidates.shape[0])
        targets = jax.lax.stop_gradient(candidates[pick])  # [K, D]
        self.usage.value = jnp.where(dead, 1.0 / k, usage)
        if self.ema:
            mean_size = jnp.mean(size)
            self.cluster_size.value = jnp.where(dead, mean_size, size)
            self.embed_sum.value = jnp.where(dead[:, None], targets * mean_size, embed)
            self.codebook_var.value = jnp.where(dead[:, None], targets, table)
        else:  # effective code = codebook + offset: move dead codes onto the targets
            learned = jax.lax.stop_gradient(self.codebook.astype(jnp.float32))
            self.offset.value = jnp.where(dead[:, None], targets - learned, self.offset.value)

    def live_fraction(self) -> jax.Array:
        """Fraction of codes not dead by the usage EMA (1.0 when restart is off)."""
        if self.restart_threshold <= 0:
            return jnp.ones(())
        return jnp.mean((self.usage.value >= self.restart_threshold / self.codebook_size)
                        .astype(jnp.float32))

    def losses(self, z: jax.Array, q: jax.Array) -> jax.Array:
        """Per-example codebook + beta * commitment loss [B] for prepared z, codes q
        [B, ..., D]. With EMA updates the codebook term is dropped (codes move by EMA)."""
        red = tuple(range(1, z.ndim))
        commit = jnp.mean(jnp.square(jax.lax.stop_gradient(q) - z), axis=red)
        if self.ema:
            return self.beta * commit
        codebook = jnp.mean(jnp.square(q - jax.lax.stop_gradient(z)), axis=red)
        return codebook + self.beta * commit

    def entropy(self, z: jax.Array, weights: jax.Array) -> jax.Array:
        if self.entropy_weight <= 0:
            return jnp.zeros(())
        logits = -self.distances(z.reshape(-1, self.code_dim)) / self.entropy_temperature
        return self.entropy_weight * entropy_loss(logits, weights.reshape(-1))

    # ---------------------------------------------------------------- single scale
    def __call__(self, z: jax.Array, mask: jax.Array | None = None) -> QuantizerOutput:
        """z [B, h, w, D] -> QuantizerOutput; mask [B] weights examples (padding = 0)."""
        if z.shape[-1] != self.code_dim:
            raise ConfigError(f"latent has {z.shape[-1]} channels, codebook has {self.code_dim}")
        mask = jnp.ones(z.shape[:1]) if mask is None else mask
        zp = self.prepare(z)
        idx = jnp.argmin(self.distances(zp), axis=-1).astype(jnp.int32)  # [B, h, w]
        q = self.lookup(idx)
        weights = jnp.broadcast_to(mask.reshape((-1,) + (1,) * (idx.ndim - 1)), idx.shape)
        counts, sums = self.statistics(zp, idx, weights)
        self.update_state(counts, sums, zp.reshape(-1, self.code_dim))
        z_q = zp + jax.lax.stop_gradient(q - zp)  # straight-through
        return QuantizerOutput(z_q, idx, self.losses(zp, q), self.entropy(zp, weights), counts)
