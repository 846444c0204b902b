"""Logit processors and draws: temperature, top-k, top-p (nucleus), classifier-free guidance.

Processors map logits [..., V] -> logits [..., V] (excluded entries set to -inf) and know
nothing of the model. `categorical_draw` turns them into a `draw_fn` for the sampling loop.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

NEG_INF = -1e30  # finite: keeps softmax NaN-free even if a whole row were masked


def apply_temperature(logits: jax.Array, temperature: float | jax.Array) -> jax.Array:
    return logits / jnp.maximum(jnp.asarray(temperature, logits.dtype), 1e-6)


def top_k_filter(logits: jax.Array, k: int) -> jax.Array:
    """Keep the k largest logits per row (ties at the k-th value are kept too)."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)


def top_p_filter(logits: jax.Array, p: float) -> jax.Array:
    """Nucleus: keep the smallest set of most likely entries whose probability reaches p."""
    if p >= 1.0:
        return logits
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each entry
    keep_sorted = before < p  # the first entry is always kept
    keep = jnp.zeros_like(keep_sorted).at[
        tuple(jnp.indices(order.shape)[:-1]) + (order,)
    ].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


def process_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    logits = apply_temperature(logits.astype(jnp.float32), temperature)
    logits = top_k_filter(logits, top_k)
    return top_p_filter(logits, top_p)


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


def guided_step_fn(step_fn: Callable, scale: float | Callable) -> Callable:
    """Wraps a step_fn that runs on a doubled batch (conditional rows first, then
    unconditional) into one on the real batch. `scale` is a constant or a function of t.
    The model's cache must be built for the doubled batch; the sequence is not doubled."""

    def guided(seq, cache, t):
        both = jax.tree.map(lambda a: jnp.concatenate([a, a], axis=0), seq)
        out, cache = step_fn(both, cache, t)
        cond, uncond = jnp.split(out.astype(jnp.float32), 2, axis=0)
        s = scale(t) if callable(scale) else scale
        return cfg_combine(cond, uncond, s), cache

    return guided


def cfg_scale_schedule(scale: float, num_steps: int, kind: str = "constant") -> Callable:
    """Guidance scale as a function of the step t in [0, num_steps):
    'constant' scale; 'linear' ramps 1 -> scale (VAR's schedule: no guidance on the first
    step, full guidance on the last); 'cosine' the same ramp along a half cosine."""
    if kind not in ("constant", "linear", "cosine"):
        raise ValueError(f"cfg schedule must be constant, linear or cosine, got {kind!r}")

    def at(t):
        if kind == "constant":
            return jnp.asarray(scale, jnp.float32)
        r = jnp.asarray(t, jnp.float32) / max(num_steps - 1, 1)
        if kind == "cosine":
            r = 0.5 * (1.0 - jnp.cos(jnp.pi * r))
        return 1.0 + (scale - 1.0) * r

    return at


@dataclasses.dataclass(frozen=True)
class SamplingSettings:
    """A token sampler's knobs, read once from `config.sample` by every token family."""

    temperature: float = 1.0
    top_k: int = 0  # 0: off
    top_p: float = 1.0  # 1.0: off
    cfg_scale: float = 1.0  # classifier-free guidance; 1.0: off
    cfg_schedule: str = "constant"  # constant | linear | cosine (cfg_scale_schedule)
    cfg_interval: int = -1  # >= 0: guide only steps t <= cfg_interval + 1 (LlamaGen)

    @classmethod
    def from_config(cls, config, **defaults) -> SamplingSettings:
        """`config.sample` fields over `defaults` over the class defaults."""
        s = config.get("sample", {})
        kw = {f.name: s.get(f.name, defaults.get(f.name, f.default))
              for f in dataclasses.fields(cls)}
        return cls(float(kw["temperature"]), int(kw["top_k"]), float(kw["top_p"]),
                   float(kw["cfg_scale"]), str(kw["cfg_schedule"]), int(kw["cfg_interval"]))

    def draw_fn(self) -> Callable:
        return categorical_draw(self.temperature, self.top_k, self.top_p)

    def guidance(self, num_steps: int, scale: float | None = None) -> Callable:
        """The CFG scale as a function of the step t: the schedule over `num_steps`, cut to 1
        (the conditional logits) after t = cfg_interval + 1 when cfg_interval >= 0."""
        base = cfg_scale_schedule(self.cfg_scale if scale is None else scale, num_steps,
                                  self.cfg_schedule)
        if self.cfg_interval < 0:
            return base
        return lambda t: jnp.where(t <= self.cfg_interval + 1, base(t), 1.0)
