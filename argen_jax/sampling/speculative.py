"""Speculative Jacobi decoding (SJD: Teng et al. 2024, "Accelerating Auto-regressive
Text-to-Image Generation with Training-free Speculative Jacobi Decoding"): several tokens per
forward pass, with the model's own distribution, no draft model and no training.

It is the token sampler's step callbacks for the one `sampling.loop.autoregressive_scan` (in
its early-exit form, `until`), with `processors.speculative_draw` as the draw. The carry
`seq` is a `Window`: the token buffer, how many tokens of each sample are final (accepted),
and the distributions the W drafts of the window were drawn from. One step (one forward pass):

    start   s = min(min over the batch of final counts, N - W): the window is positions
            [s, s + W); the cache is moved to s (`seek_fn`), so what rejected drafts wrote
            there before is masked (unwritten slots) and overwritten
    feed    the token before s (the last prompt token when s = 0) and the tokens at
            s .. s + W - 2 through `logits_fn` in one call: logits of positions s .. s + W - 1
            (CFG: the doubled batch, guided per position by `processors.guided_step_fn`)
    draw    `speculative_draw`: per sample, accept drafts from its own final count on with
            probability min(1, p/q), redraw the first rejected one from normalize(max(p - q,
            0)), give every later position a new draft from this pass's p (Jacobi), and draft
            W positions past the window from the last position's p
    write   the accepted tokens and the new drafts; the window moves to the new start

Every step makes at least one more token final for the sample furthest behind, so N steps
suffice; the loop stops when every sample has N final tokens and returns the number of steps
(forward passes) it ran. Samples share the window start (one cache position for the batch:
the KV cache has one fill index), so a sample further ahead re-feeds tokens it has accepted
(recomputing the same keys / values) and verifies only its own drafts.

Each accepted or redrawn token is distributed as the (processed) model distribution given the
tokens before it (the speculative-sampling argument: a draft is a draw from a known q,
independent of the acceptance randomness), so the samples have the plain sampler's
distribution (tests/test_speculative.py). They are not the plain sampler's samples for the
same keys, and a sample depends on the batch it is drawn in: which window a token is verified
in depends on the other samples' progress. With top_k=1 both are greedy decoding: the same
tokens.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from argen_jax.sampling.loop import Steps
from argen_jax.sampling.processors import Proposal, Verdict, guided_step_fn

LogitsFn = Callable[[jax.Array, Any], tuple[jax.Array, Any]]
SeekFn = Callable[[Any, jax.Array], Any]


@struct.dataclass
class Window:
    """The speculative sampler's `seq`."""

    tokens: jax.Array  # [B, N + W]: final tokens before `final`, then drafts up to the
    #   window's end; the W slots past N are scratch (the window never needs clamping)
    q: jax.Array  # [B, W, V] float32: distribution of the draft at window position i
    final: jax.Array  # [B] int32: tokens of each sample accepted so far


def speculative_token_steps(logits_fn: LogitsFn, seek_fn: SeekFn, cache: Any,
                            prompt: jax.Array, num_new: int, window: int, vocab_size: int, *,
                            uncond_prompt: jax.Array | None = None,
                            cfg_scale: float | Callable = 1.0) -> Steps:
    """`token_steps` (sampling/tokens.py) with a window of `window` drafts per step (clamped
    to num_new); run with `processors.speculative_draw`. seek_fn(cache, i) moves the cache to
    position i (`layers.attention.seek_caches`). The steps' `until` stops the loop when every
    sample is done; `tokens_of(seq)` are the new tokens [B, num_new]. `cfg_scale`: as
    `token_steps` (a schedule is evaluated at each window position's own step)."""
    b, p = prompt.shape
    w = max(1, min(window, num_new))
    guided = uncond_prompt is not None
    both = jnp.concatenate([prompt, uncond_prompt], axis=0) if guided else prompt  # [B', P]
    if p > 1:
        _, cache = logits_fn(both[:, :-1], cache)
    last = both[:, -1:]  # [B', 1]: token -1 (what position 0 is predicted from)

    def start(seq: Window) -> jax.Array:
        return jnp.minimum(jnp.min(seq.final), num_new - w)

    def model_step(seq: Window, cache, t):  # -> logits [B', W, V]
        s = start(seq)
        rows = jnp.concatenate([seq.tokens, seq.tokens]) if guided else seq.tokens
        fed = jnp.concatenate([last, rows.astype(last.dtype)], axis=1)  # [B', 1 + N + W]
        ids = jax.lax.dynamic_slice_in_dim(fed, s, w, axis=1)  # tokens s - 1 .. s + w - 2
        logits, cache = logits_fn(ids, seek_fn(cache, p - 1 + s))
        return logits.astype(jnp.float32), cache

    logits_step = (guided_step_fn(model_step, cfg_scale,
                                  steps_of=lambda seq, t: start(seq) + jnp.arange(w))
                   if guided else model_step)

    def step_fn(seq: Window, cache, t):
        logits, cache = logits_step(seq, cache, t)
        s = start(seq)
        drafts = jax.lax.dynamic_slice_in_dim(seq.tokens, s, w, axis=1)
        return Proposal(logits=logits, drafts=drafts, q=seq.q, final=seq.final - s), cache

    def write_fn(seq: Window, x: Verdict, t) -> Window:
        s = start(seq)
        tokens = jax.lax.dynamic_update_slice_in_dim(seq.tokens, x.tokens.astype(
            seq.tokens.dtype), s, axis=1)  # s + 2W <= N + W: never clamped
        final = s + x.final
        new = Window(tokens=tokens, q=seq.q, final=final)
        q = jax.lax.dynamic_slice_in_dim(x.q, start(new) - s, w, axis=1)
        return new.replace(q=q)

    init = Window(tokens=jnp.zeros((b, num_new + w), prompt.dtype),
                  q=jax.nn.one_hot(jnp.zeros((b, w), jnp.int32), vocab_size,
                                   dtype=jnp.float32),  # drafts 0, drawn from a point mass
                  final=jnp.zeros((b,), jnp.int32))
    return Steps(step_fn, write_fn, init, cache, num_new,
                 until=lambda seq: jnp.min(seq.final) >= num_new)


def tokens_of(seq: Window) -> jax.Array:
    """The new tokens [B, N] of a finished speculative run."""
    return seq.tokens[:, : seq.tokens.shape[1] - seq.q.shape[1]]
