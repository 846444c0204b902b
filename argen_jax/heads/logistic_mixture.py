"""Discretized mixture of logistics (Salimans et al. 2017, PixelCNN++), any number of levels.

A value v in {0, ..., L-1} is mapped to x = 2 v / (L-1) - 1 in [-1, 1]; its bin is
[x - w, x + w] with half-width w = 1 / (L-1). One component k gives the bin the mass

    P(v | k) = sigmoid((x + w - mu_k) / s_k) - sigmoid((x - w - mu_k) / s_k)

except at the edges, where the bin reaches to infinity: v = 0 gets sigmoid((x + w - mu) / s)
and v = L-1 gets 1 - sigmoid((x - w - mu) / s). The masses of all L values therefore sum to
exactly 1. Everything is computed in log space with

    log(sigmoid(a) - sigmoid(b)) = log_sigmoid(a) + log_sigmoid(-b) + log(-expm1(b - a)),

which is exact and stays finite in both tails (no difference of two numbers close to 1).
The paper's mid-bin fallback is kept for parity with its numerics: where a bin's mass is below
`fallback_threshold` the log density at the bin centre plus log(2w) is used instead (set the
threshold to 0 to switch it off; with it on, masses under the threshold are approximations).

Multi-channel data (RGB): all C channels of one position share the mixture component; channel
c's mean is shifted linearly by the values of the channels before it,

    mean_c = mu_c + sum_{c' < c} tanh(alpha_{c, c'}) * x_{c'}

(for RGB: G depends on R, B on R and G, the paper's coupling). Parameter layout, last axis,
K components, C channels, P = K * (1 + 2C + C(C-1)/2) (3K grey / 1-D, 10K RGB):

    [ logits (K) | means (C*K) | log_scales (C*K) | coupling coefficients (C(C-1)/2 * K) ]

with the per-channel blocks laid out channel-major ([C, K]). The API is shape-generic:
`params [..., P]`, targets `[...]` for C = 1 (images, audio, any 1-D signal) or `[..., C]`.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

LOG_SCALE_MIN = -7.0  # the paper's clamp: keeps 1 / s finite in float32


def num_params(num_mixtures: int, channels: int = 1) -> int:
    """Size P of the parameter vector per position."""
    return num_mixtures * (1 + 2 * channels + channels * (channels - 1) // 2)


def num_mixtures_of(p: int, channels: int = 1) -> int:
    per = 1 + 2 * channels + channels * (channels - 1) // 2
    if p % per:
        raise ValueError(f"{p} mixture parameters is not a multiple of {per} for {channels} "
                         "channel(s)")
    return p // per


def unpack(params: jax.Array, channels: int = 1):
    """params [..., P] -> logits [..., K], means [..., C, K], log_scales [..., C, K],
    coeffs [..., C(C-1)/2, K] (tanh applied), all float32."""
    params = params.astype(jnp.float32)
    k = num_mixtures_of(params.shape[-1], channels)
    c = channels
    lead = params.shape[:-1]
    logits = params[..., :k]
    means = params[..., k : k + c * k].reshape(lead + (c, k))
    log_scales = params[..., k + c * k : k + 2 * c * k].reshape(lead + (c, k))
    log_scales = jnp.maximum(log_scales, LOG_SCALE_MIN)
    coeffs = jnp.tanh(params[..., k + 2 * c * k :].reshape(lead + (c * (c - 1) // 2, k)))
    return logits, means, log_scales, coeffs


def _pairs(channels: int) -> list[tuple[int, int]]:
    """(c, c') with c' < c in coefficient order: (1,0), (2,0), (2,1), (3,0), ..."""
    return [(c, cp) for c in range(channels) for cp in range(c)]


def to_unit(v: jax.Array, levels: int) -> jax.Array:
    return v.astype(jnp.float32) * (2.0 / (levels - 1)) - 1.0


def coupled_means(means: jax.Array, coeffs: jax.Array, x: jax.Array) -> jax.Array:
    """means [..., C, K] shifted by the channels before each one: x [..., C] in [-1, 1]."""
    c = means.shape[-2]
    if c == 1:
        return means
    shifted = [means[..., 0, :]]
    for ch in range(1, c):
        m = means[..., ch, :]
        for i, (a, b) in enumerate(_pairs(c)):
            if a == ch:
                m = m + coeffs[..., i, :] * x[..., b, None]
        shifted.append(m)
    return jnp.stack(shifted, axis=-2)


def log_bin_mass(v: jax.Array, mean: jax.Array, log_scale: jax.Array, levels: int,
                 fallback_threshold: float = 1e-5) -> jax.Array:
    """log P(v) of one discretized logistic; v ints, mean / log_scale broadcastable floats."""
    x = to_unit(v, levels)
    half = 1.0 / (levels - 1)
    inv_s = jnp.exp(-log_scale)
    centred = x - mean
    a = inv_s * (centred + half)  # upper bin edge, standardised
    b = inv_s * (centred - half)  # lower bin edge
    log_cdf_upper = jax.nn.log_sigmoid(a)  # v = 0: mass of (-inf, x + w]
    log_sf_lower = jax.nn.log_sigmoid(-b)  # v = L-1: mass of [x - w, inf)
    # interior: log(sigmoid(a) - sigmoid(b)) with a - b = 2w/s, formed directly (no
    # cancellation). Floored at the smallest normal float: for log_scale > ~87, 1/s underflows
    # to 0, and log(0) would make the gradient NaN even where this branch is not selected.
    width = jnp.maximum(inv_s * (2.0 * half), np.finfo(np.float32).tiny)
    log_delta = log_cdf_upper + log_sf_lower + jnp.log(-jnp.expm1(-width))
    if fallback_threshold > 0:
        mid = inv_s * centred
        log_pdf_mid = mid - log_scale - 2.0 * jax.nn.softplus(mid)  # logistic log density
        log_delta = jnp.where(log_delta > np.log(fallback_threshold), log_delta,
                              log_pdf_mid + np.log(2.0 * half))
    return jnp.where(v <= 0, log_cdf_upper, jnp.where(v >= levels - 1, log_sf_lower, log_delta))


def log_prob(params: jax.Array, targets: jax.Array, levels: int = 256, channels: int = 1,
             fallback_threshold: float = 1e-5) -> jax.Array:
    """Joint log-probability (nats, float32) of each position's value(s).

    params [..., P]; targets ints in [0, levels): [...] if channels == 1, else [..., C].
    Returns [...]: log sum_k pi_k prod_c P(v_c | k, v_<c)."""
    if channels == 1 and (targets.ndim == params.ndim - 1):
        targets = targets[..., None]
    if targets.shape[-1] != channels or targets.shape[:-1] != params.shape[:-1]:
        raise ValueError(f"logistic mixture: targets {targets.shape} do not fit params "
                         f"{params.shape} with {channels} channel(s)")
    logits, means, log_scales, coeffs = unpack(params, channels)
    x = to_unit(targets, levels)  # [..., C]
    means = coupled_means(means, coeffs, x)  # [..., C, K]
    lp = log_bin_mass(targets[..., None], means, log_scales, levels, fallback_threshold)
    lp = lp.sum(axis=-2) + jax.nn.log_softmax(logits, axis=-1)  # [..., K]
    return jax.nn.logsumexp(lp, axis=-1)


def nll(params, targets, levels: int = 256, channels: int = 1, **kw) -> jax.Array:
    """Negative log-likelihood in nats [...] (see `log_prob`)."""
    return -log_prob(params, targets, levels, channels, **kw)


def channel_log_probs(params: jax.Array, prev: jax.Array, channel: int, levels: int = 256,
                      channels: int = 1, fallback_threshold: float = 1e-5) -> jax.Array:
    """log P(v_c = v | v_<c) for every level v: the exact conditional of channel `channel`
    given the values `prev` [..., C] of the channels before it (later ones are ignored), with
    the mixture weights updated by those values (the components' posterior). params [..., P]
    -> [..., levels]. Chaining c = 0, ..., C-1 factorises `log_prob` exactly:
    log_prob(v) = sum_c channel_log_probs(params, v, c)[v_c] (up to the fallback's
    approximation, which this normalises)."""
    logits, means, log_scales, coeffs = unpack(params, channels)
    x = to_unit(prev, levels)  # [..., C]
    means = coupled_means(means, coeffs, x)  # [..., C, K]
    log_w = jax.nn.log_softmax(logits, axis=-1)  # [..., K]
    if channel:  # the posterior of the components given the channels before this one
        lp_prev = log_bin_mass(prev[..., :channel, None], means[..., :channel, :],
                               log_scales[..., :channel, :], levels, fallback_threshold)
        log_w = jax.nn.log_softmax(log_w + lp_prev.sum(axis=-2), axis=-1)
    v = jnp.arange(levels)[:, None]  # [levels, 1]
    lp = log_bin_mass(v, means[..., None, channel, :], log_scales[..., None, channel, :],
                      levels, fallback_threshold)  # [..., levels, K]
    return jax.nn.log_softmax(jax.nn.logsumexp(lp + log_w[..., None, :], axis=-1), axis=-1)


def log_probs_all_levels(params: jax.Array, levels: int = 256,
                         fallback_threshold: float = 1e-5) -> jax.Array:
    """Single-channel only: params [..., P] -> log P(v) for every v, [..., levels]. Turns the
    mixture into categorical logits (e.g. to compare with a softmax head)."""
    v = jnp.arange(levels)
    p = jnp.broadcast_to(params[..., None, :], params.shape[:-1] + (levels, params.shape[-1]))
    return log_prob(p, jnp.broadcast_to(v, p.shape[:-1]), levels, 1, fallback_threshold)


def sample(key: jax.Array, params: jax.Array, levels: int = 256, channels: int = 1,
           temperature: float = 1.0) -> jax.Array:
    """Draw from the mixture: params [..., P] -> ints [...] (C = 1) or [..., C].

    Pick a component from the logits, then channel by channel draw a logistic and round it to
    the nearest level (clipped to [0, L-1]), which gives each level exactly the bin mass of
    `log_prob`; later channels' means use the *discretised* earlier values, as the likelihood
    does. `temperature` scales the component logits and the logistic scales (1 = exact)."""
    logits, means, log_scales, coeffs = unpack(params, channels)
    k_mix, k_u = jax.random.split(key)
    t = max(float(temperature), 1e-6)
    comp = jax.random.categorical(k_mix, logits / t, axis=-1)  # [...]
    pick = lambda a: jnp.take_along_axis(a, comp[..., None, None], axis=-1)[..., 0]  # noqa: E731
    mu, ls, co = pick(means), pick(log_scales), pick(coeffs)  # [..., C], [..., C], [..., Cp]
    u = jax.random.uniform(k_u, mu.shape, jnp.float32, 1e-5, 1.0 - 1e-5)
    noise = (jnp.log(u) - jnp.log1p(-u)) * jnp.exp(ls) * t  # logistic(0, s * t)
    values, xs = [], []
    pairs = _pairs(channels)
    for ch in range(channels):
        m = mu[..., ch]
        for i, (a, b) in enumerate(pairs):
            if a == ch:
                m = m + co[..., i] * xs[b]
        cont = m + noise[..., ch]
        v = jnp.clip(jnp.round((cont + 1.0) * (levels - 1) / 2.0), 0, levels - 1)
        v = v.astype(jnp.int32)
        values.append(v)
        xs.append(to_unit(v, levels))
    out = jnp.stack(values, axis=-1)
    return out[..., 0] if channels == 1 else out


def mixture_draw(levels: int = 256, channels: int = 1, temperature: float = 1.0) -> Callable:
    """A draw_fn for `sampling.loop.autoregressive_scan`: out = params [B, ..., P] -> ints,
    one key per sample (keys [B, 2])."""

    def draw(keys, params, t):
        del t
        return jax.vmap(lambda k, p: sample(k, p, levels, channels, temperature))(keys, params)

    return draw
