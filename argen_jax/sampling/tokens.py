"""Next-token decoding with a model's explicit cache: the shared scan with token callbacks.

The model is seen only through `logits_fn(ids [B', n], cache) -> (logits [B', n, V], cache)`,
which feeds n tokens at the positions the cache is at and advances it (a KV cache, or any
other state). Everything runs in `sampling.loop.autoregressive_scan`; this module only builds
its callbacks:

    prefill   prompt[:, :-1] goes through logits_fn once (outside the scan)
    step t    feeds the previous token (step 0: the last prompt token) and returns the
              logits of the token to draw, guided by CFG if an unconditional prompt is given
    draw      the processors' categorical draw (temperature / top-k / top-p), per-sample keys
    write     puts the draw into the token buffer

Classifier-free guidance runs the conditional and the unconditional prompt as one doubled
batch (conditional rows first) whose cache the caller allocates for 2B rows; the drawn token
is fed to both halves and `processors.guided_step_fn` combines the logits. `cfg_scale` is a
constant or a schedule t -> scale (`SamplingSettings.guidance`).

Speculative Jacobi decoding (a window of draft tokens per step, `sample.speculative`) is the
same loop with other callbacks: `sampling/speculative.py`.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from argen_jax.sampling.loop import Steps
from argen_jax.sampling.processors import categorical_draw, guided_step_fn

LogitsFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]


def sample_tokens(logits_fn: LogitsFn, cache: Any, prompt: jax.Array, num_new: int,
                  keys: jax.Array, *, uncond_prompt: jax.Array | None = None,
                  cfg_scale: float | Callable = 1.0,
                  draw_fn: Callable | None = None) -> tuple[jax.Array, Any]:
    """prompt [B, P] ids (P >= 1); keys [B, 2] per-sample keys (`loop.sample_keys`).
    Returns (new tokens [B, num_new], final cache). Call inside `jax.jit`.

    With `uncond_prompt` [B, P], `cache` must hold 2B rows; logits are combined as
    uncond + scale * (cond - uncond) with scale = cfg_scale or cfg_scale(t).
    draw_fn: the loop's draw (`SamplingSettings.draw_fn()`; None: plain categorical)."""
    steps = token_steps(logits_fn, cache, prompt, num_new, uncond_prompt=uncond_prompt,
                        cfg_scale=cfg_scale)
    state, _ = steps.run(draw_fn or categorical_draw(), keys)
    return state.seq, state.cache


def token_steps(logits_fn: LogitsFn, cache: Any, prompt: jax.Array, num_new: int, *,
                uncond_prompt: jax.Array | None = None,
                cfg_scale: float | Callable = 1.0, order: jax.Array | None = None) -> Steps:
    """The order of `sample_tokens` (after the prefill): step t returns the logits [B, V]
    of new token t; seq [B, num_new] holds the new tokens. order ([num_new] or [B, num_new],
    `sampling/orders.py`): step t's token goes to seq[:, order[t]] (the buffer stays in image
    layout) and step t + 1 feeds it; None: seq[:, t]."""
    b, p = prompt.shape
    if order is not None:
        order = jnp.broadcast_to(jnp.asarray(order, jnp.int32), (b, num_new))
    guided = uncond_prompt is not None
    both = jnp.concatenate([prompt, uncond_prompt], axis=0) if guided else prompt  # [B', P]
    if p > 1:
        _, cache = logits_fn(both[:, :-1], cache)
    last = both[:, -1]  # [B']: what step 0 feeds

    def step_fn(seq, cache, t):  # -> logits [B', V] of the (doubled) model batch
        if order is None:
            prev = jax.lax.dynamic_index_in_dim(seq, jnp.maximum(t - 1, 0), axis=1,
                                                keepdims=False)  # [B]
        else:
            at = jax.lax.dynamic_index_in_dim(order, jnp.maximum(t - 1, 0), axis=1)
            prev = jnp.take_along_axis(seq, at, axis=1)[:, 0]
        prev = jnp.concatenate([prev, prev]) if guided else prev
        ids = jnp.where(t == 0, last, prev.astype(last.dtype))[:, None]  # [B', 1]
        logits, cache = logits_fn(ids, cache)
        return logits[:, 0].astype(jnp.float32), cache

    def write_fn(seq, x, t):
        if order is not None:
            at = jax.lax.dynamic_index_in_dim(order, t, axis=1, keepdims=False)
            return seq.at[jnp.arange(b), at].set(x.astype(seq.dtype))
        return jax.lax.dynamic_update_slice_in_dim(seq, x[:, None].astype(seq.dtype), t, axis=1)

    step = guided_step_fn(step_fn, cfg_scale) if guided else step_fn
    return Steps(step, write_fn, jnp.zeros((b, num_new), prompt.dtype), cache, num_new)
