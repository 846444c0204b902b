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

    python -m experiments.benchmarks.speed.kv_cache_speed [--lengths 256,1024,4096] [--width 256]
        [--kv_heads 2]

Per generated token the cached sampler reads every weight once and the K/V of the t tokens
before it, so its cost is a + b*t: it is flat in length only while the weights term dominates
(wide models, few K/V heads). `--kv_heads` shrinks b by heads/kv_heads.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax.models.transformer import Decoder
from argen_jax.sampling.loop import LoopState, autoregressive_scan, sample_keys
from argen_jax.sampling.processors import categorical_draw
from argen_jax.sampling.tokens import sample_tokens
from experiments.benchmarks import common

_LENGTHS = flags.DEFINE_list("lengths", ["256", "1024", "4096"], "Sequence lengths.")
_BATCH = flags.DEFINE_integer("batch", 1, "Sequences sampled at once.")
_VOCAB = flags.DEFINE_integer("vocab", 1024, "Vocabulary.")
_WIDTH = flags.DEFINE_integer("width", 256, "Model width.")
_DEPTH = flags.DEFINE_integer("depth", 4, "Blocks.")
_HEADS = flags.DEFINE_integer("heads", 8, "Attention heads.")
_MLP = flags.DEFINE_integer("mlp", 768, "MLP width.")
_KV_HEADS = flags.DEFINE_integer("kv_heads", 0, "Grouped-query attention: K/V heads "
                                 "(0 = heads, plain multi-head).")
_CHUNK = flags.DEFINE_integer("chunk", 256, "Decoder.decode_chunk: cached decoding reads "
                              "filled slots in chunks.")
_NAIVE_TOKENS = flags.DEFINE_integer("naive_tokens", 32768, "Naive steps timed per length: "
                                     "max(2, this / length).")
common.timing_flags(repeats=3)  # best of N timed cached runs (the naive sampler: one)


def bench(length: int) -> dict:
    vocab = _VOCAB.value
    model = Decoder(vocab_size=vocab, num_classes=1, max_len=length, width=_WIDTH.value,
                    depth=_DEPTH.value, num_heads=_HEADS.value, mlp_dim=_MLP.value,
                    rope="1d", num_kv_heads=_KV_HEADS.value or None,
                    decode_chunk=_CHUNK.value)
    dense = model.clone(decode_chunk=0)  # attends over all max_len cache slots every step
    b = _BATCH.value
    prompt = jnp.full((b, 1), vocab, jnp.int32)  # the class / start token
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

    k = min(max(2, _NAIVE_TOKENS.value // length), n_new)

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
    t_cached = common.best_time(cached, variables, keys)
    t_dense = common.best_time(cached_dense, variables, keys)
    t_naive_k = common.best_time(naive, variables, keys, repeats=1)
    per_cached = t_cached / n_new
    per_naive = t_naive_k / k
    return {"length": length, "cached_total_s": round(t_cached, 3),
            "cached_ms_per_token": round(1e3 * per_cached, 3),
            "cached_all_slots_ms_per_token": round(1e3 * t_dense / n_new, 3),
            "same_tokens_all_slots": same_dense,
            "naive_ms_per_token": round(1e3 * per_naive, 2), "naive_steps_timed": k,
            "naive_total_s_extrapolated": round(per_naive * n_new, 1),
            "speedup": round(per_naive / per_cached, 1), "same_tokens": same}


def main(argv):
    del argv
    rows = [bench(int(n)) for n in _LENGTHS.value]
    base = rows[0]["cached_ms_per_token"]
    for r in rows:
        r["cached_per_token_vs_shortest"] = round(r["cached_ms_per_token"] / base, 2)
        r["all_slots_per_token_vs_shortest"] = round(
            r["cached_all_slots_ms_per_token"] / rows[0]["cached_all_slots_ms_per_token"], 2)
    common.emit({"benchmark": "kv_cache_speed", "device": jax.devices()[0].platform,
                 "model": {"width": _WIDTH.value, "depth": _DEPTH.value,
                           "heads": _HEADS.value, "kv_heads": _KV_HEADS.value or _HEADS.value,
                           "mlp": _MLP.value, "vocab": _VOCAB.value, "batch": _BATCH.value},
                 "results": rows})


if __name__ == "__main__":
    common.run(main)
