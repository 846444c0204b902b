"""Logit processors and draws: temperature, top-k, top-p (nucleus), classifier-free guidance
(`SamplingSettings`, the typed `config.sample` section, is `settings.py`).

Processors map logits [..., V] -> logits [..., V] (excluded entries set to -inf) and know
nothing of the model. `categorical_draw` turns them into a `draw_fn` for the sampling loop;
`guided_step_fn` is the one place CFG combines a doubled batch's logits. A new processor
touches this file (its function, `process_logits`) and a `SamplingSettings` field.
"""
from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

NEG_INF = -1e30  # finite: keeps softmax NaN-free even if a whole row were masked
CFG_SCHEDULES = ("constant", "linear", "cosine")  # cfg_scale_schedule kinds
KV_CACHE_DTYPES = ("", "bfloat16", "float32")  # sample.kv_cache_dtype ("": compute dtype)


def apply_temperature(logits: jax.Array, temperature: float | jax.Array) -> jax.Array:
    return logits / jnp.maximum(jnp.asarray(temperature, logits.dtype), 1e-6)


def _ordered_bits(x: jax.Array) -> jax.Array:
    """float32 -> uint32 in the same order (the usual radix-sort key: negative floats have
    all bits flipped, non-negative ones the sign bit; -0 sorts just below +0)."""
    b = jax.lax.bitcast_convert_type(x.astype(jnp.float32), jnp.uint32)
    return jnp.where(b >> 31 == 1, ~b, b | jnp.uint32(1 << 31))


def _float_of_ordered_bits(u: jax.Array) -> jax.Array:
    """The inverse of `_ordered_bits`."""
    b = jnp.where(u >> 31 == 1, u & jnp.uint32(0x7FFFFFFF), ~u)
    return jax.lax.bitcast_convert_type(b, jnp.float32)


def kth_largest(logits: jax.Array, k: int | jax.Array) -> jax.Array:
    """The k-th largest value of each row (counting repeats), [..., V] -> [..., 1] float32,
    for 1 <= k <= V and float32 or narrower logits (NaN not supported).

    Exact, without sorting: the answer is built bit by bit, most significant first, over the
    order-preserving uint32 image of the float32 bits (`_ordered_bits`): a bit is set iff at
    least k entries are >= the prefix with it set: 32 vectorized count passes over V, no
    sort and no gather, whatever k (`lax.top_k` with k = 2000 of 16384 is slow on XLA:CPU;
    experiments/benchmarks/speed/topk_filter.py compares them)."""
    keys = _ordered_bits(logits)

    def set_bit(i, t):  # bit 31 - i
        cand = t | jax.lax.shift_left(jnp.uint32(1), (31 - i).astype(jnp.uint32))
        count = jnp.sum(keys >= cand, axis=-1, keepdims=True, dtype=jnp.int32)
        return jnp.where(count >= k, cand, t)

    t = jax.lax.fori_loop(0, 32, set_bit, jnp.zeros(logits.shape[:-1] + (1,), jnp.uint32),
                          unroll=8)  # 4 trips: few loop overheads, a quarter the compile
    return _float_of_ordered_bits(t)


def per_row(x) -> bool:
    """Whether a processor parameter is per row (an array [N]: a serving engine's slots, each
    with its own settings) rather than one Python number for the whole batch."""
    return isinstance(x, (jax.Array, np.ndarray))


def _rows(x, logits: jax.Array) -> jax.Array:
    """A per-row parameter [N] -> [N, 1, ...], broadcasting against logits [N, ..., V]."""
    x = jnp.asarray(x)
    return x.reshape(x.shape + (1,) * (logits.ndim - x.ndim))


def top_k_filter(logits: jax.Array, k: int | jax.Array) -> jax.Array:
    """Keep the k largest logits per row (ties at the k-th value are kept too). k: one int,
    or one per row [N] (rows with k <= 0 or k >= V unfiltered)."""
    v = logits.shape[-1]
    if not per_row(k):
        if k <= 0 or k >= v:
            return logits
        return jnp.where(logits.astype(jnp.float32) < kth_largest(logits, k), NEG_INF, logits)
    k = _rows(jnp.asarray(k, jnp.int32), logits)
    kth = kth_largest(logits, jnp.clip(k, 1, v))
    return jnp.where((k > 0) & (k < v) & (logits.astype(jnp.float32) < kth), NEG_INF, logits)


def _nucleus_sorted(sorted_logits: jax.Array, p: float) -> jax.Array:
    """Keep-mask of a row sorted in descending order: entries whose mass before is < p."""
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each entry
    return before < p  # the first entry is always kept (p > 0)


def top_p_filter(logits: jax.Array, p: float | jax.Array) -> jax.Array:
    """Nucleus: keep the smallest set of most likely entries whose probability reaches p.
    Sorts the whole row (after a top-k filter, `top_k_top_p_filter` sorts only the kept
    candidates). p: one float, or one per row [N] (rows with p >= 1 unfiltered)."""
    if per_row(p):
        p = _rows(p, logits)
        return jnp.where(p >= 1.0, logits, _nucleus(logits, p))
    if p >= 1.0:
        return logits
    return _nucleus(logits, p)


def _nucleus(logits: jax.Array, p) -> jax.Array:
    """`top_p_filter`'s full sort, for p < 1 (a float or [N, 1, ...] per row)."""
    order = jnp.argsort(-logits, axis=-1)  # stable: ties in index order
    keep_sorted = _nucleus_sorted(jnp.take_along_axis(logits, order, axis=-1), p)
    keep = jnp.zeros_like(keep_sorted).at[
        tuple(jnp.indices(order.shape)[:-1]) + (order,)
    ].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


def candidate_capacity(k: int, vocab: int) -> int:
    """Slots `top_k_top_p_filter` sorts per row: k plus room for ties at the k-th value."""
    return min(vocab, k + k // 8 + 64)


def _nucleus_of_candidates(logits: jax.Array, keep_k: jax.Array, p: float,
                           capacity: int) -> jax.Array:
    """`top_p_filter(where(keep_k, logits, NEG_INF), p)` for rows [N, V] whose candidates
    (keep_k) number at most `capacity` and are all > NEG_INF: only the candidates are sorted.

    The candidates go, in index order, into `capacity` slots (a scatter at their running
    count), are sorted by a stable sort of -value (ties in index order, as argsort) and
    padded with NEG_INF to V: that is exactly the row `top_p_filter` would sort, so the
    nucleus, computed by the same arithmetic on the same [N, V] array, is the same bit for
    bit."""
    n, v = logits.shape
    fill = jnp.asarray(NEG_INF, logits.dtype)

    def compact(row_keep):  # [V] -> [capacity] indices of the candidates; v marks a free slot
        slot = jnp.where(row_keep, jnp.cumsum(row_keep, dtype=jnp.int32) - 1, capacity)
        return jnp.full((capacity,), v, jnp.int32).at[slot].set(
            jnp.arange(v, dtype=jnp.int32), mode="drop")

    idx = jax.vmap(compact)(keep_k)  # [N, C]
    vals = jnp.where(idx < v, jnp.take_along_axis(logits, jnp.minimum(idx, v - 1), axis=-1),
                     fill)
    neg, idx = jax.lax.sort((-vals, idx), dimension=-1, num_keys=1, is_stable=True)
    sorted_row = jnp.concatenate([-neg, jnp.full((n, v - capacity), fill)], axis=-1)
    keep_sorted = _nucleus_sorted(sorted_row, p)[:, :capacity]
    rows = jnp.arange(n)[:, None]
    keep = jnp.zeros((n, v), bool).at[rows, idx].set(keep_sorted, mode="drop")
    return jnp.where(keep, logits, NEG_INF)


def top_k_top_p_filter(logits: jax.Array, k: int | jax.Array,
                       p: float | jax.Array) -> jax.Array:
    """`top_p_filter(top_k_filter(logits, k), p)`, the same output bit for bit, sorting only
    the top-k candidates (`candidate_capacity` slots per row). With k or p per row (arrays
    [N]) it is that composition itself (a full sort where a row asks for top-p), skipped by a
    `lax.cond` when no row filters. Rows with more tied
    candidates than that, or a k-th value <= NEG_INF, take the full sort (a `lax.cond` over
    the batch: under `vmap` both branches run)."""
    v = logits.shape[-1]
    if per_row(k) or per_row(p):  # a serving engine's slots: one setting per row
        k = k if per_row(k) else np.full(logits.shape[:1], k, np.int32)
        p = p if per_row(p) else np.full(logits.shape[:1], p, np.float32)
        off = jnp.all(((k <= 0) | (k >= v)) & (p >= 1.0))  # no row filters: skip the work
        return jax.lax.cond(off, lambda: logits,
                            lambda: top_p_filter(top_k_filter(logits, k), p))
    if k <= 0 or k >= v:
        return top_p_filter(logits, p)
    if p >= 1.0:
        return top_k_filter(logits, k)
    capacity = candidate_capacity(k, v)
    flat = logits.reshape(-1, v)
    kth = kth_largest(flat, k)
    keep_k = flat.astype(jnp.float32) >= kth
    fits = jnp.all(jnp.sum(keep_k, axis=-1) <= capacity) & jnp.all(
        kth > jnp.asarray(NEG_INF, logits.dtype).astype(jnp.float32))
    out = jax.lax.cond(
        fits,
        lambda: _nucleus_of_candidates(flat, keep_k, p, capacity),
        lambda: top_p_filter(jnp.where(keep_k, flat, NEG_INF), p))
    return out.reshape(logits.shape)


def process_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Temperature, then top-k / top-p. Each setting is one Python number for the batch or
    an array [N] with one value per row (logits [N, ..., V])."""
    logits = logits.astype(jnp.float32)
    if per_row(temperature):
        temperature = _rows(temperature, logits)
    logits = apply_temperature(logits, temperature)
    return top_k_top_p_filter(logits, top_k, top_p)


def categorical_draw(temperature=1.0, top_k: int = 0, top_p: float = 1.0) -> Callable:
    """A draw_fn: out = logits [B, ..., V] -> ints [B, ...], one key per sample."""

    def draw(keys, logits, t):
        del t
        logits = process_logits(logits, temperature, top_k, top_p)
        return jax.vmap(lambda k, lg: jax.random.categorical(k, lg, axis=-1))(keys, logits)

    return draw


def cfg_combine(cond: jax.Array, uncond: jax.Array, scale) -> jax.Array:
    """Classifier-free guidance: uncond + scale * (cond - uncond)."""
    return uncond + scale * (cond - uncond)


def guided_step_fn(step_fn: Callable, scale: float | Callable,
                   steps_of: Callable | None = None) -> Callable:
    """Classifier-free guidance around a sampling loop's step_fn: the one place CFG is
    applied. `step_fn(seq, cache, t)` runs the model on a doubled batch (conditional rows
    first, then unconditional; its cache is built for 2B rows) and returns its outputs
    [2B, ...]; the guided step returns `cfg_combine` of the two halves [B, ...] (float32).
    `scale` is a constant or a function of the step (`SamplingSettings.guidance`), evaluated
    at t, or at `steps_of(seq, t)` [n] when the outputs [2B, n, ...] are n steps at once
    (speculative decoding's window: the scale of each token's own step)."""

    def guided(seq, cache, t):
        out, cache = step_fn(seq, cache, t)
        cond, uncond = jnp.split(out.astype(jnp.float32), 2, axis=0)
        at = t if steps_of is None else steps_of(seq, t)
        s = jnp.asarray(scale(at) if callable(scale) else scale, jnp.float32)
        s = s.reshape(s.shape + (1,) * max(cond.ndim - 1 - s.ndim, 0))  # [n] -> [n, 1, ...]
        return cfg_combine(cond, uncond, s), cache

    return guided


def cfg_scale_schedule(scale: float, num_steps: int, kind: str = "constant") -> Callable:
    """Guidance scale as a function of the step t in [0, num_steps):
    'constant' scale; 'linear' ramps 1 -> scale (VAR's schedule: no guidance on the first
    step, full guidance on the last); 'cosine' the same ramp along a half cosine."""
    if kind not in CFG_SCHEDULES:
        raise ValueError(f"cfg schedule must be one of {CFG_SCHEDULES}, got {kind!r}")

    def at(t):
        if kind == "constant":
            return jnp.asarray(scale, jnp.float32)
        r = jnp.asarray(t, jnp.float32) / max(num_steps - 1, 1)
        if kind == "cosine":
            r = 0.5 * (1.0 - jnp.cos(jnp.pi * r))
        return 1.0 + (scale - 1.0) * r

    return at


def guidance(scale, num_steps: int, kind: str = "constant", interval: int = -1) -> Callable:
    """The CFG scale as a function of the step t: the schedule over `num_steps`, cut to 1
    (the conditional logits) after t = interval + 1 when interval >= 0. `scale` and t may be
    arrays [N] (a serving engine's slots, each at its own step with its own scale)."""
    base = cfg_scale_schedule(scale, num_steps, kind)
    if interval < 0:
        return base
    return lambda t: jnp.where(t <= interval + 1, base(t), 1.0)
