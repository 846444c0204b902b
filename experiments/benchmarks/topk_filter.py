"""One token draw at vocabulary scale: logit filters + draw, before and after issue #22, next
to torch. Prints one JSON line.

A draw is what the sampling loop's `draw_fn` does to one step's logits [B, V]: the filters
(top-k, top-p, or both), then a categorical draw per row. Three implementations:

    reference  the filters as they were before #22 (`lax.top_k` for the k-th value, a full
               argsort for the nucleus; kept here, and used by tests/test_logit_filters.py
               as the reference the new filters must equal bit for bit), then the same
               `jax.random.categorical` draw as `processors.categorical_draw`
    new        `processors.categorical_draw` (k-th value by bit-wise counting; top-p after
               top-k sorts only the candidates)
    torch      LlamaGen's `sample()`: torch.topk, logits[logits < v[:, [-1]]] = -inf, for
               top-p a sort + softmax + cumsum + scatter (`top_k_top_p_filtering`), then
               softmax + multinomial (skipped with a note when torch is not installed)

Every variant is compiled and warmed up first; then the variants run interleaved (one call
of each per round, `--rounds` rounds) and each reports its median milliseconds per draw.
The JAX draws of `reference` and `new` are checked to be the same tokens. Run it on an idle
machine (other work skews the ratios):

    python experiments/benchmarks/topk_filter.py [--vocab 16384] [--batches 1,8,64]
        [--top_k 2000] [--top_p 0.9] [--rounds 50] [--torch_threads 0]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from argen_jax import xla_env  # noqa: E402
from argen_jax.sampling.processors import NEG_INF, apply_temperature, categorical_draw  # noqa: E402


# ----------------------------------------------------------------------------- reference
def reference_top_k_filter(logits, k):
    """top_k_filter before #22."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = jax.lax.top_k(logits, k)[0][..., -1:]
    return jnp.where(logits < kth, NEG_INF, logits)


def reference_top_p_filter(logits, p):
    """top_p_filter before #22."""
    if p >= 1.0:
        return logits
    order = jnp.argsort(-logits, axis=-1)
    sorted_logits = jnp.take_along_axis(logits, order, axis=-1)
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    before = jnp.cumsum(probs, axis=-1) - probs
    keep_sorted = before < p
    keep = jnp.zeros_like(keep_sorted).at[
        tuple(jnp.indices(order.shape)[:-1]) + (order,)
    ].set(keep_sorted)
    return jnp.where(keep, logits, NEG_INF)


def reference_process_logits(logits, temperature=1.0, top_k=0, top_p=1.0):
    """process_logits before #22."""
    logits = apply_temperature(logits.astype(jnp.float32), temperature)
    return reference_top_p_filter(reference_top_k_filter(logits, top_k), top_p)


def reference_draw(top_k, top_p):
    def draw(keys, logits, t):
        del t
        logits = reference_process_logits(logits, 1.0, top_k, top_p)
        return jax.vmap(lambda k, lg: jax.random.categorical(k, lg, axis=-1))(keys, logits)

    return draw


# ----------------------------------------------------------------------------- torch
def torch_draw(torch, top_k, top_p):
    """LlamaGen's `sample()` (autoregressive/models/generate.py) on logits [B, V]."""
    f = torch.nn.functional

    def draw(logits):
        logits = logits.clone()  # the filters write in place
        if top_k > 0:
            v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
            logits[logits < v[:, [-1]]] = -float("inf")
        if top_p < 1.0:
            sorted_logits, sorted_indices = torch.sort(logits, descending=True)
            cum = torch.cumsum(f.softmax(sorted_logits, dim=-1), dim=-1)
            remove = cum > top_p
            remove[..., 1:] = remove[..., :-1].clone()
            remove[..., 0] = 0
            logits[remove.scatter(1, sorted_indices, remove)] = -float("inf")
        return torch.multinomial(f.softmax(logits, dim=-1), num_samples=1)

    return draw


# ----------------------------------------------------------------------------- timing
def _jax_call(draw, keys, logits):
    fn = jax.jit(lambda keys, logits: draw(keys, logits, 0))
    return lambda: jax.block_until_ready(fn(keys, logits))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", type=int, default=16384)
    ap.add_argument("--batches", default="1,8,64")
    ap.add_argument("--top_k", type=int, default=2000)  # LlamaGen's default
    ap.add_argument("--top_p", type=float, default=0.9)
    ap.add_argument("--scale", type=float, default=3.0)  # std of the random logits
    ap.add_argument("--rounds", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--torch_threads", type=int, default=0)  # 0: torch's default
    args = ap.parse_args(argv)
    xla_env.apply()  # before the first JAX computation

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    settings = {f"top_k={args.top_k}": (args.top_k, 1.0), f"top_p={args.top_p}": (0, args.top_p),
                f"top_k={args.top_k},top_p={args.top_p}": (args.top_k, args.top_p)}
    calls, same = {}, {}
    for b in [int(x) for x in args.batches.split(",")]:
        logits_np = np.random.default_rng(b).normal(0.0, args.scale, (b, args.vocab))
        logits = jnp.asarray(logits_np, jnp.float32)
        keys = jax.random.split(jax.random.PRNGKey(0), b)
        for name, (k, p) in settings.items():
            ref = _jax_call(reference_draw(k, p), keys, logits)
            new = _jax_call(categorical_draw(1.0, k, p), keys, logits)
            same[f"b{b}/{name}"] = bool(np.array_equal(ref(), new()))
            calls[(b, name, "reference")] = ref
            calls[(b, name, "new")] = new
            if torch is not None:
                t_logits = torch.from_numpy(logits_np.astype(np.float32))
                t_draw = torch_draw(torch, k, p)
                calls[(b, name, "torch")] = lambda d=t_draw, x=t_logits: d(x)

    times = {key: [] for key in calls}
    ctx = torch.inference_mode() if torch is not None else None
    if ctx is not None:
        ctx.__enter__()
    for _ in range(args.warmup):
        for call in calls.values():
            call()
    for _ in range(args.rounds):
        for key, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[key].append(time.perf_counter() - t0)
    if ctx is not None:
        ctx.__exit__(None, None, None)

    results = {}
    for (b, name, impl), ts in times.items():
        results.setdefault(f"b{b}", {}).setdefault(name, {})[f"{impl}_ms"] = round(
            1e3 * statistics.median(ts), 4)
    for row in results.values():
        for r in row.values():
            r["new_vs_reference"] = round(r["reference_ms"] / r["new_ms"], 2)
            if "torch_ms" in r:
                r["new_vs_torch"] = round(r["torch_ms"] / r["new_ms"], 2)
    out = dict(
        benchmark="topk_filter", vocab=args.vocab, rounds=args.rounds, scale=args.scale,
        jax=jax.__version__, backend=jax.default_backend(),
        torch=None if torch is None else torch.__version__,
        torch_threads=None if torch is None else torch.get_num_threads(),
        cpu_count=os.cpu_count(), same_draws_reference_new=all(same.values()),
        results=results,
        note=("median ms per draw (filters + categorical), interleaved rounds after warm-up; "
              "x_vs_y = y_ms / x_ms" + ("" if torch is not None else
                                         "; torch not installed: torch columns skipped")))
    if not all(same.values()):
        out["different_draws"] = [k for k, v in same.items() if not v]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
