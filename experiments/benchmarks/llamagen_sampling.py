"""LlamaGen sampling speed: the KV-cache sampler vs a naive re-run of the full forward pass at
every step, and vs speculative Jacobi decoding (`--speculative=W`), same model, settings and
keys, side by side in one run.

The cached sampler is `LlamaGenFamily.sample` (`sampling.tokens.sample_tokens`: prefill the
class token, then one token per step through the KV cache). The naive sampler is the same
`autoregressive_scan` whose step re-runs the whole [2B, T] input buffer (class token + the
tokens so far, zeros after) through the uncached decoder and reads the logits of position t:
the static-shape way a jitted sampler without a cache must work (`--no-naive` skips it: at
GPT-B shape it is slow). The speculative sampler is the family with `sample.speculative=W`
(`sampling/speculative.py`): a window of W drafts verified per forward pass; it reports its
sequential forward passes per image (after the prompt's prefill; the cached sampler needs one
per token) and the tokens accepted per pass. All use classifier-free guidance on a doubled
batch when cfg_scale != 1. Images/s count token maps (decoding them with the tokenizer costs
the same for all and is left out). Timings are after compilation, best of `--repeats`, with
block_until_ready. Weights are random: a trained model's peaked distributions accept more
drafts (experiments/benchmarks/speculative_quality.py measures a trained run). Prints one
JSON line.

    python experiments/benchmarks/llamagen_sampling.py [--config experiments/llamagen/
        fashion_mnist.py:cpu] [--batch 20] [--cfg_scale 2.0] [--top_k 0] [--speculative 8]
    python experiments/benchmarks/llamagen_sampling.py --size=B --batch=8 --no-naive \
        --speculative=16           # GPT-B, ImageNet's tokens: 16x16 map of 16384 codes
    python experiments/benchmarks/llamagen_sampling.py --size=tiny --speculative=4  # smoke
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

from argen_jax.data.pipeline import DataSpec  # noqa: E402
from argen_jax.models.llamagen import SIZES, LlamaGenFamily  # noqa: E402
from argen_jax.models.transformer import sample_decoder  # noqa: E402
from argen_jax.sampling.loop import LoopState, autoregressive_scan, sample_keys  # noqa: E402
from experiments.benchmarks.timing import best_time  # noqa: E402


def load_config(spec: str):
    import importlib.util

    path, _, arg = spec.partition(":")
    mod_spec = importlib.util.spec_from_file_location("cfg", path)
    mod = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(mod)
    return mod.get_config(arg or None)


def naive_sampler(fam: LlamaGenFamily, b: int):
    """Full forward over the whole buffer at every step (no cache)."""
    n = fam.num_tokens

    def sample(params, keys, labels):
        labels, null = fam.classes.for_sampling(labels, b, fam.sampling.guided)
        guided = null is not None
        prompt = fam.prompt(jnp.concatenate([labels, null]) if guided else labels)  # [B', P]

        def step(seq, cache, t):  # -> logits [B', V] of the (doubled) batch
            both = jnp.concatenate([seq, seq]) if guided else seq  # [B', L]
            ids = jnp.concatenate([prompt, both[:, :-1]], axis=1)  # [B', P + L - 1]
            logits, _ = fam.model.apply({"params": params}, ids)
            logits = jax.lax.dynamic_index_in_dim(logits, t + fam.cls_token_num - 1, axis=1,
                                                  keepdims=False)  # [B', V]
            return logits, cache

        def write(seq, x, t):
            return jax.lax.dynamic_update_slice_in_dim(seq, x[:, None].astype(seq.dtype), t, 1)

        state = LoopState(jnp.zeros((b, n), jnp.int32), None, keys)
        step_fn = fam.sampling.guide(step, n) if guided else step
        state, _ = autoregressive_scan(step_fn, fam.sampling.draw_fn(), write, state, n)
        return state.seq

    return sample


def speculative_sampler(fam: LlamaGenFamily):
    """(token maps, sequential forward passes) of the family's sampler (its settings)."""

    def sample(params, keys, labels):
        labels, null = fam.classes.for_sampling(labels, keys.shape[0], fam.sampling.guided)
        return sample_decoder(fam.model, params, keys, labels, null, fam.num_tokens,
                              fam.sampling, with_passes=True)

    return sample


# --size: (token grid side, codebook, classes): LlamaGen's ImageNet-256 token maps for its GPT
# sizes, the Fashion-MNIST token file's shape for cpu, a toy shape for tiny
SIZE_SHAPES = {**{k: (16, 16384, 1000) for k in SIZES}, "cpu": (8, 512, 10), "tiny": (4, 64, 10)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--config", default="experiments/llamagen/fashion_mnist.py:cpu")
    p.add_argument("--size", default="", choices=["", *SIZE_SHAPES],
                   help="experiments/llamagen/fashion_mnist.py:SIZE with its token shape "
                        "(SIZE_SHAPES; overrides --config, --grid, --vocab)")
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--cfg_scale", type=float, default=2.0)
    p.add_argument("--top_k", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--speculative", type=int, default=0,
                   help="also time speculative Jacobi decoding with this window (0: off)")
    p.add_argument("--naive", action=argparse.BooleanOptionalAction, default=True,
                   help="time the uncached sampler too")
    p.add_argument("--grid", type=int, default=8, help="token grid side (L = grid^2)")
    p.add_argument("--vocab", type=int, default=512)
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    classes = 10
    if a.size:
        a.config = f"experiments/llamagen/fashion_mnist.py:{a.size}"
        a.grid, a.vocab, classes = SIZE_SHAPES[a.size]
    cfg = load_config(a.config)
    cfg.sample.cfg_scale, cfg.sample.top_k = a.cfg_scale, a.top_k
    cfg.sample.temperature = a.temperature
    spec = DataSpec((a.grid * a.grid,), a.vocab, classes, "tokens", grid=(a.grid, a.grid))
    fam = LlamaGenFamily(cfg, spec)
    b = a.batch
    labels = jnp.arange(b, dtype=jnp.int32) % classes
    keys = sample_keys(jax.random.PRNGKey(1), 0, b)
    batch = {"tokens": jnp.zeros((1, spec.shape[0]), jnp.int32), "label": labels[:1]}
    params = jax.jit(fam.init)(jax.random.PRNGKey(0), batch)["params"]
    cached = jax.jit(fam.sample)
    tc = np.asarray(cached(params, keys, labels))
    t_cached = best_time(cached, params, keys, labels, repeats=a.repeats)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    n = spec.shape[0]
    row = {
        "benchmark": "llamagen_sampling", "device": jax.devices()[0].platform,
        "config": a.config, "size": a.size, "params": int(n_params), "tokens_per_image": n,
        "vocab": a.vocab, "batch": b, "cfg_scale": a.cfg_scale, "top_k": a.top_k,
        "temperature": a.temperature,
        "cached_s": round(t_cached, 3), "cached_images_per_s": round(b / t_cached, 2),
        "cached_passes_per_image": n}
    if a.naive:
        naive = jax.jit(naive_sampler(fam, b))
        tn = np.asarray(naive(params, keys, labels))
        t_naive = best_time(naive, params, keys, labels, repeats=a.repeats)
        row.update({"naive_s": round(t_naive, 3), "naive_images_per_s": round(b / t_naive, 2),
                    "speedup": round(t_naive / t_cached, 2),
                    "same_tokens_fraction": float((tc == tn).mean())})
    if a.speculative:
        cfg.sample.speculative = a.speculative
        spec_fam = LlamaGenFamily(cfg, spec)
        run = jax.jit(speculative_sampler(spec_fam))
        _, passes = run(params, keys, labels)
        passes = int(passes)
        t_spec = best_time(run, params, keys, labels, repeats=a.repeats)
        row.update({"speculative": a.speculative, "speculative_s": round(t_spec, 3),
                    "speculative_images_per_s": round(b / t_spec, 2),
                    "speculative_passes_per_image": passes,
                    "speculative_tokens_per_pass": round(n / passes, 3),
                    "speculative_speedup_vs_cached": round(t_cached / t_spec, 2)})
    print(json.dumps(row))


if __name__ == "__main__":
    main()
