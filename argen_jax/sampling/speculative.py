"""Speculative Jacobi decoding (SJD: Teng et al. 2024, "Accelerating Auto-regressive
Text-to-Image Generation with Training-free Speculative Jacobi Decoding"): several tokens per
forward pass, with the model's own distribution, no draft model and no training.

It is the token sampler's step callbacks for the one `sampling.loop.autoregressive_scan` (in
its early-exit form, `until`), with `speculative_draw` as the draw. The carry
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
from argen_jax.sampling.processors import NEG_INF, guided_step_fn, process_logits

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
    to num_new); run with `speculative_draw`. seek_fn(cache, i) moves the cache to
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


def speculative_draw(temperature=1.0, top_k: int = 0, top_p: float = 1.0) -> Callable:
    """The draw of speculative (Jacobi) decoding (`sampling/speculative.py`): out is a
    `Proposal` (logits [B, W, V] of the window's W positions given its drafts, the drafts
    [B, W], the distributions q [B, W, V] they were drawn from, and `final` [B]: how many
    leading window positions hold already accepted tokens). Returns a `Verdict`.

    Row b goes through its drafts in order from `final[b]`: draft x at a position with
    target p = softmax(process_logits(logits)) is accepted with probability
    min(1, p(x) / q(x)); the first rejected position gets a draw from the residual
    normalize(max(p - q, 0)) (the standard speculative-sampling rule, so each accepted or
    redrawn token is distributed as p given the tokens before it) and the verdict stops
    there. Positions after it get new drafts from this pass's p (the Jacobi update: they were
    conditioned on the rejected token, which is allowed for a proposal), as do W more
    positions after the window (drafts from the last position's p). Keys: one per sample."""

    def draw(keys, out, t):
        del t
        logits = process_logits(out.logits, temperature, top_k, top_p)  # [B, W, V]
        probs = jax.nn.softmax(logits, axis=-1)

        def row(key, lg, p, drafts, q, final):
            w = drafts.shape[0]
            k_acc, k_res, k_new = jax.random.split(key, 3)
            px = jnp.take_along_axis(p, drafts[:, None], axis=-1)[:, 0]
            qx = jnp.take_along_axis(q, drafts[:, None], axis=-1)[:, 0]
            u = jax.random.uniform(k_acc, (w,))
            ok = (jnp.arange(w) < final) | (u * qx < px)  # accept iff u < p(x) / q(x)
            j = jnp.where(jnp.all(ok), w, jnp.argmin(ok))  # first rejection (w: none)
            jc = jnp.minimum(j, w - 1)
            res = jnp.maximum(p[jc] - q[jc], 0.0)
            res = jnp.where(jnp.sum(res) > 0, res, p[jc])  # p == q: rejection has prob. 0
            fix = jax.random.categorical(k_res, jnp.where(res > 0, jnp.log(res), NEG_INF))
            src = jnp.concatenate([lg, jnp.broadcast_to(lg[-1], lg.shape)])  # [2W, V]
            fresh = jax.random.categorical(k_new, src, axis=-1)  # [2W] new drafts
            i = jnp.arange(2 * w)
            kept = jnp.concatenate([drafts, jnp.zeros_like(drafts)])
            tokens = jnp.where(i < j, kept, jnp.where((i == j) & (j < w), fix,
                                                      fresh.astype(drafts.dtype)))
            q_new = jnp.concatenate([p, jnp.broadcast_to(p[-1], p.shape)])  # [2W, V]
            return tokens, q_new, jnp.minimum(j + 1, w)

        tokens, q, final = jax.vmap(row)(keys, logits, probs, out.drafts, out.q, out.final)
        return Verdict(tokens=tokens, q=q, final=final)

    return draw


@struct.dataclass
class Proposal:
    """What a speculative step hands its draw (`speculative_draw`): window of W positions."""

    logits: jax.Array  # [B, W, V] float32: the (guided) logits of each window position
    drafts: jax.Array  # [B, W] the window's tokens (drafts from position `final` on)
    q: jax.Array  # [B, W, V] the distribution each draft was drawn from
    final: jax.Array  # [B] int32: leading positions that hold accepted tokens (<= W)


@struct.dataclass
class Verdict:
    """A speculative draw: 2W positions from the window's start."""

    tokens: jax.Array  # [B, 2W]: accepted tokens, then new drafts
    q: jax.Array  # [B, 2W, V]: the new drafts' distributions (meaningless before `final`)
    final: jax.Array  # [B] int32 in [1, W]: leading positions now accepted
