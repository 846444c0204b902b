"""The one autoregressive sampling loop of the codebase.

Raster sampling (PixelCNN), sample-by-sample generation with queues (WaveNet), token-by-token
decoding with a KV cache (Transformer / LlamaGen) and scale-by-scale decoding (VAR) are all
this `lax.scan`; they differ only in three callbacks and in what the explicit `cache` holds:

    step_fn(seq, cache, t) -> (out, cache)   # the model's prediction for step t
    draw_fn(keys_t, out, t) -> x             # sample step t; keys_t: [B, 2], one key per sample
    write_fn(seq, x, t) -> seq               # put the draw where step t+1 will see it

Randomness is per sample: sample b at step t uses `fold_in(keys[b], t)`, where `keys[b]`
derives from the sample's global index (`sample_keys`). A sample therefore does not depend on
the batch size, on its position in the batch or on the number of devices.

A step may produce a variable amount of output (speculative decoding, `sampling.speculative`:
a window of tokens per forward pass): with `until(seq)` the same body runs in a
`lax.while_loop` that stops once `until` holds (at most `num_steps` steps) and the loop
returns the number of steps it ran instead of the stacked draws.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

StepFn = Callable[[Any, Any, jax.Array], tuple[Any, Any]]
DrawFn = Callable[[jax.Array, Any, jax.Array], jax.Array]
WriteFn = Callable[[Any, jax.Array, jax.Array], Any]


@struct.dataclass
class LoopState:
    """The scan carry: what is generated so far, the model's step state, per-sample keys."""

    seq: Any  # [B, ...] canvas / token buffer being filled in
    cache: Any  # model step state (KV cache, WaveNet queues, ...); None if the model has none
    keys: jax.Array  # [B, 2] uint32: one base key per sample


def sample_keys(rng: jax.Array, start: int | jax.Array, batch: int) -> jax.Array:
    """Per-sample base keys for samples with global indices start, ..., start + batch - 1."""
    idx = jnp.arange(batch) + start
    return jax.vmap(lambda i: jax.random.fold_in(rng, i))(idx)


def step_keys(keys: jax.Array, t: jax.Array) -> jax.Array:
    """[B, 2] -> [B, 2]: the keys of every sample for step t."""
    return jax.vmap(lambda k: jax.random.fold_in(k, t))(keys)


def autoregressive_scan(
    step_fn: StepFn,
    draw_fn: DrawFn,
    write_fn: WriteFn,
    state: LoopState,
    num_steps: int,
    start: int = 0,
    static_steps: bool = False,
    until: Callable[[Any], jax.Array] | None = None,
) -> tuple[LoopState, Any]:
    """Runs steps start, ..., start + num_steps - 1. Returns the final state and the draws
    stacked over steps ([num_steps, B, ...]). Call it inside `jax.jit`.

    static_steps: unroll the steps in Python with `t` a Python int, for the few steps whose
    shapes differ (VAR: scale t has p_t^2 tokens). The draws are then a list, one per step.
    Same body, same keys: the two modes draw the same samples.

    until: seq -> bool scalar: stop before a step once it holds (a `lax.while_loop` of the
    same body; early exit, for steps that make a variable amount of progress). The second
    output is then the number of steps run (int32 scalar), not the draws."""

    def body(carry: LoopState, t):
        out, cache = step_fn(carry.seq, carry.cache, t)
        x = draw_fn(step_keys(carry.keys, t), out, t)
        seq = write_fn(carry.seq, x, t)
        return carry.replace(seq=seq, cache=cache), x

    if until is not None:
        if static_steps:
            raise ValueError("autoregressive_scan: until and static_steps exclude each other")
        end = start + num_steps

        def cond(c):
            carry, t = c
            return (t < end) & jnp.logical_not(until(carry.seq))

        def step(c):
            carry, t = c
            return body(carry, t)[0], t + 1

        state, t_end = jax.lax.while_loop(cond, step, (state, jnp.asarray(start, jnp.int32)))
        return state, t_end - start
    if static_steps:
        draws = []
        for t in range(start, start + num_steps):
            state, x = body(state, t)
            draws.append(x)
        return state, draws
    steps = jnp.arange(start, start + num_steps, dtype=jnp.int32)
    return jax.lax.scan(body, state, steps)


@dataclasses.dataclass(frozen=True)
class Steps:
    """A family's autoregressive order: its `step_fn` and `write_fn` and the `seq` / `cache`
    they start from (for a given batch). The sampler runs it with a draw in
    `autoregressive_scan` (`run`); the lossless codec (`argen_jax.codec`) calls the same two
    callbacks one step at a time, with the entropy coder in place of the draw."""

    step_fn: StepFn
    write_fn: WriteFn
    seq: Any  # [B, ...] before step 0
    cache: Any  # model step state before step 0 (None if the model has none)
    num_steps: int  # steps (with `until`: at most this many)
    until: Callable[[Any], jax.Array] | None = None  # early exit (`autoregressive_scan`)

    def run(self, draw_fn: DrawFn, keys: jax.Array) -> tuple[LoopState, Any]:
        """`autoregressive_scan` of these steps with `draw_fn` and per-sample `keys`."""
        state = LoopState(seq=self.seq, cache=self.cache, keys=keys)
        return autoregressive_scan(self.step_fn, draw_fn, self.write_fn, state, self.num_steps,
                                   until=self.until)
