"""One token draw at vocabulary scale: logit filters + draw, before and after issue #22, next
to torch. Prints one JSON line.

A draw is what the sampling loop's `draw_fn` does to one step's logits [B, V]: the filters
(top-k, top-p, or both), then a categorical draw per row. Three implementations:

    reference  the filters as they were before #22 (`lax.top_k` for the k-th value, a full
               argsort for the nucleus; kept in reference_filters.py, which
               tests/test_logit_filters.py uses as the reference the new filters must
               equal bit for bit), then the same
               `jax.random.categorical` draw as `processors.categorical_draw`
    new        `processors.categorical_draw` (k-th value by bit-wise counting; top-p after
               top-k sorts only the candidates)
    torch      LlamaGen's `sample()`: torch.topk, logits[logits < v[:, [-1]]] = -inf, for
               top-p a sort + softmax + cumsum + scatter (`top_k_top_p_filtering`), then
               softmax + multinomial (skipped with a note when torch is not installed)

Every variant is compiled and warmed up first (`--warmup` rounds); then the variants run
interleaved (one call of each per round, `--repeats` rounds) and each reports its median
milliseconds per draw.
The JAX draws of `reference` and `new` are checked to be the same tokens. Run it on an idle
machine (other work skews the ratios):

    python -m experiments.benchmarks.speed.topk_filter [--vocab 16384] [--batches 1,8,64]
        [--top_k 2000] [--top_p 0.9] [--repeats 50] [--torch_threads 0]
"""
from __future__ import annotations

import os
import statistics

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax.sampling.processors import categorical_draw
from experiments.benchmarks import common
from experiments.benchmarks.reference_filters import reference_draw

_VOCAB = flags.DEFINE_integer("vocab", 16384, "Vocabulary.")
_BATCHES = flags.DEFINE_list("batches", ["1", "8", "64"], "Batch sizes.")
_TOP_K = flags.DEFINE_integer("top_k", 2000, "Top-k (LlamaGen's default).")
_TOP_P = flags.DEFINE_float("top_p", 0.9, "Top-p.")
_SCALE = flags.DEFINE_float("scale", 3.0, "Std of the random logits.")
_TORCH_THREADS = flags.DEFINE_integer("torch_threads", 0, "0: torch's default.")
common.timing_flags(repeats=50, warmup=3)  # rounds of one call of each variant


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


def main(argv):
    del argv
    top_k, top_p, vocab, rounds = _TOP_K.value, _TOP_P.value, _VOCAB.value, flags.FLAGS.repeats

    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and _TORCH_THREADS.value:
        torch.set_num_threads(_TORCH_THREADS.value)

    settings = {f"top_k={top_k}": (top_k, 1.0), f"top_p={top_p}": (0, top_p),
                f"top_k={top_k},top_p={top_p}": (top_k, top_p)}
    calls, same = {}, {}
    for b in [int(x) for x in _BATCHES.value]:
        logits_np = np.random.default_rng(b).normal(0.0, _SCALE.value, (b, vocab))
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
    for _ in range(flags.FLAGS.warmup):
        for call in calls.values():
            call()
    for _ in range(rounds):
        for key, call in calls.items():
            times[key] += common.times(call, repeats=1, warmup=0)
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
        benchmark="topk_filter", vocab=vocab, rounds=rounds, scale=_SCALE.value,
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
    common.emit(out)


if __name__ == "__main__":
    common.run(main)
