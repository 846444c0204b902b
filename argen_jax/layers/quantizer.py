"""Vector quantizers: one codebook module, used alone (VQGAN / LlamaGen) or over scales (VAR).

`VectorQuantizer` is the codebook: nearest-code lookup (squared Euclidean distance, or cosine
when codes are l2-normalised as in LlamaGen: 16,384 codes of 8 dims), straight-through
gradients, codebook + commitment losses (beta = 0.25), an optional entropy loss, optional EMA
codebook updates and dead-code restart, and usage / perplexity statistics.

`MultiScaleResidualQuantizer` (VAR, Tian et al. 2024) shares one `VectorQuantizer` over scales
`(1, 2, 3, 4, 5, 6, 8, 10, 13, 16)`: at scale s the residual is area-downsampled to s x s,
quantized, upsampled back, refined by a small conv phi and subtracted. It exposes the per-scale
token maps VAR trains on, the latent rebuilt from any prefix of scales, and VAR's
teacher-forcing inputs (the accumulated latent of scales < s, area-downsampled to scale s).

State that is not learned by gradients (EMA codebook statistics, the usage EMA that finds dead
codes, restart offsets) lives in the flax collection `vq_state`. Apply with
`mutable=['vq_state']` and `rngs={'restart': key}` while training to get its new value; a
family turns "new value" into an optimizer update with `assign_surrogate` (see
models/vqgan.py): the training loop has one optimizer over `params`, and a leaf whose
"gradient" is (old - new) under `optax.scale(-1)` is assigned `new` exactly.

Shapes: latents are channels-last [B, h, w, D]; token maps are int32 [B, h, w].
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from argen_jax.errors import ConfigError
from argen_jax.layers.shifted_conv import ShiftedConv2D
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


# --------------------------------------------------------------------------- resampling
@functools.cache
def area_matrix(src: int, dst: int) -> np.ndarray:
    """[dst, src] averaging matrix of adaptive average pooling (PyTorch 'area' resize)."""
    m = np.zeros((dst, src), np.float32)
    for i in range(dst):
        a, b = (i * src) // dst, -(-((i + 1) * src) // dst)
        m[i, a:b] = 1.0 / (b - a)
    return m


def torch_bicubic_matrix(src: int, dst: int, a: float = -0.75) -> np.ndarray:
    """[dst, src] matrix of PyTorch's `F.interpolate(mode='bicubic', align_corners=False)`
    (VAR's upsampling): Keys kernel with a = -0.75 (jax.image.resize's 'cubic' uses -0.5),
    source coordinate (i + 0.5) * src / dst - 0.5 unclamped, taps clamped to the border."""
    def k1(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def k2(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    m = np.zeros((dst, src), np.float64)
    for i in range(dst):
        x = (i + 0.5) * src / dst - 0.5
        x0 = int(np.floor(x))
        t = x - x0
        for off, w in zip((-1, 0, 1, 2), (k2(t + 1), k1(t), k1(1 - t), k2(2 - t)), strict=True):
            m[i, min(max(x0 + off, 0), src - 1)] += w
    return m.astype(np.float32)


UPSAMPLE_METHODS = ("nearest", "linear", "bilinear", "trilinear", "cubic", "bicubic", "tricubic",
                    "lanczos3", "lanczos5", "torch_bicubic")


@functools.cache
def upsample_matrix(src: int, dst: int, method: str) -> np.ndarray:
    """[dst, src] matrix of `jax.image.resize(method)` from src to dst samples, or of
    PyTorch's bicubic for method='torch_bicubic'."""
    if method not in UPSAMPLE_METHODS:
        raise ConfigError(f"upsample method must be one of {UPSAMPLE_METHODS}, got {method!r}")
    if src == dst:
        return np.eye(src, dtype=np.float32)
    if method == "torch_bicubic":
        return torch_bicubic_matrix(src, dst)
    with jax.ensure_compile_time_eval():
        m = jax.image.resize(jnp.eye(src, dtype=jnp.float32), (src, dst), method)
    return np.asarray(m).T.copy()


def resize2d(x: jax.Array, matrix_h: np.ndarray, matrix_w: np.ndarray) -> jax.Array:
    """[B, h, w, D] -> [B, h', w', D] with separable [h', h] and [w', w] matrices."""
    return jnp.einsum("ph,bhwd,qw->bpqd", jnp.asarray(matrix_h), x, jnp.asarray(matrix_w))


def downsample(x: jax.Array, size: int) -> jax.Array:
    """Area (average) downsampling of [B, H, W, D] to [B, size, size, D]."""
    _, h, w, _ = x.shape
    return resize2d(x, area_matrix(h, size), area_matrix(w, size))


def upsample(x: jax.Array, size: int, method: str = "cubic") -> jax.Array:
    """[B, s, s, D] -> [B, size, size, D] (identity when s == size)."""
    _, h, w, _ = x.shape
    return resize2d(x, upsample_matrix(h, size, method), upsample_matrix(w, size, method))


# --------------------------------------------------------------------------- multi-scale
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
