"""Cached (KV-cache scan) vs naive (re-run the whole sequence each step) token sampling.

Both samplers are the shared `autoregressive_scan` with the same model, keys and draw; the
cached one is `sampling.tokens.sample_tokens` (one token per step through `extend`), the
naive one re-runs the full forward pass over the [B, L] token buffer at every step (the
static-shape way a jitted sampler without a cache must work). For each length L the cached
sampler generates all L tokens; the naive one runs `naive_steps` steps (its per-step cost does
not depend on t, the shape is static) and its total is extrapolated as L x per-step. The first
`naive_steps` tokens of both are checked to be identical. Timings are after compilation, with
`block_until_ready`, side by side in one run. Also timed: the cached sampler reading all
`max_len` cache slots every step (`decode_chunk=0`) against the default, which reads only the
filled prefix (`layers.attention.prefix_attention`). Prints one JSON line.

    python experiments/benchmarks/kv_cache_speed.py [--lengths 256,1024,4096] [--width 256]
        [--kv_heads 2]

Per generated token the cached sampler reads every weight once and the K/V of the t tokens
before it, so its cost is a + b*t: it is flat in length only while the weights term dominates
(wide models, few K/V heads). `--kv_heads` shrinks b by heads/kv_heads.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
from argen_jax import xla_env  # noqa: E402

xla_env.apply()  # the CPU XLA flags the launcher applies (argen_jax/xla_env.py)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from argen_jax.models.transformer import Decoder  # noqa: E402
from argen_jax.sampling.loop import LoopState, autoregressive_scan, sample_keys  # noqa: E402
from argen_jax.sampling.processors import categorical_draw  # noqa: E402
from argen_jax.sampling.tokens import sample_tokens  # noqa: E402
from experiments.benchmarks.timing import best_time  # noqa: E402


def bench(length, args):
    model = Decoder(vocab_size=args.vocab, num_classes=1, max_len=length, width=args.width,
                    depth=args.depth, num_heads=args.heads, mlp_dim=args.mlp, rope="1d",
                    num_kv_heads=args.kv_heads or None,
                    decode_chunk=args.chunk)
    dense = model.clone(decode_chunk=0)  # attends over all max_len cache slots every step
    b = args.batch
    prompt = jnp.full((b, 1), args.vocab, jnp.int32)  # the class / start token
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 8), jnp.int32))
    keys = sample_keys(jax.random.PRNGKey(1), 0, b)
    n_new = length - 1

    def cached_with(m):
        @jax.jit
        def run(variables, keys):
            fn = lambda ids, c: m.apply(variables, ids, c, method=Decoder.extend)
            return sample_tokens(fn, m.init_cache(b), prompt, n_new, keys)[0]
        return run

    cached, cached_dense = cached_with(model), cached_with(dense)

    k = min(args.naive_steps(length), n_new)

    @jax.jit
    def naive(variables, keys):
        def step(seq, cache, t):
            logits, _ = model.apply(variables, seq)  # the whole [B, L] buffer, every step
            return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), cache

        def write(seq, x, t):
            return jax.lax.dynamic_update_slice_in_dim(seq, x[:, None], t + 1, axis=1)

        seq = jnp.zeros((b, length), jnp.int32).at[:, 0].set(prompt[:, 0])
        _, draws = autoregressive_scan(step, categorical_draw(), write,
                                       LoopState(seq, None, keys), k)
        return draws.T  # [B, k]

    same = bool(np.array_equal(np.asarray(cached(variables, keys))[:, :k],
                               np.asarray(naive(variables, keys))))
    same_dense = bool(np.array_equal(np.asarray(cached(variables, keys)),
                                     np.asarray(cached_dense(variables, keys))))
    t_cached = best_time(cached, variables, keys, repeats=args.repeats)
    t_dense = best_time(cached_dense, variables, keys, repeats=args.repeats)
    t_naive_k = best_time(naive, variables, keys)
    per_cached = t_cached / n_new
    per_naive = t_naive_k / k
    return {"length": length, "cached_total_s": round(t_cached, 3),
            "cached_ms_per_token": round(1e3 * per_cached, 3),
            "cached_all_slots_ms_per_token": round(1e3 * t_dense / n_new, 3),
            "same_tokens_all_slots": same_dense,
            "naive_ms_per_token": round(1e3 * per_naive, 2), "naive_steps_timed": k,
            "naive_total_s_extrapolated": round(per_naive * n_new, 1),
            "speedup": round(per_naive / per_cached, 1), "same_tokens": same}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lengths", default="256,1024,4096")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--vocab", type=int, default=1024)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--mlp", type=int, default=768)
    p.add_argument("--kv_heads", type=int, default=0,
                   help="grouped-query attention: K/V heads (0 = heads, plain multi-head)")
    p.add_argument("--repeats", type=int, default=3, help="best of N timed cached runs")
    p.add_argument("--chunk", type=int, default=256,
                   help="Decoder.decode_chunk: cached decoding reads filled slots in chunks")
    p.add_argument("--naive_tokens", type=int, default=32768,
                   help="naive steps timed per length: max(2, this / length)")
    args = p.parse_args()
    args.naive_steps = lambda n: max(2, args.naive_tokens // n)
    rows = [bench(int(n), args) for n in args.lengths.split(",")]
    base = rows[0]["cached_ms_per_token"]
    for r in rows:
        r["cached_per_token_vs_shortest"] = round(r["cached_ms_per_token"] / base, 2)
        r["all_slots_per_token_vs_shortest"] = round(
            r["cached_all_slots_ms_per_token"] / rows[0]["cached_all_slots_ms_per_token"], 2)
    print(json.dumps({"benchmark": "kv_cache_speed", "device": jax.devices()[0].platform,
                      "model": {"width": args.width, "depth": args.depth, "heads": args.heads,
                                "kv_heads": args.kv_heads or args.heads, "mlp": args.mlp,
                                "vocab": args.vocab, "batch": args.batch},
                      "results": rows}))


if __name__ == "__main__":
    main()
