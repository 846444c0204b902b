"""LlamaGen sampling speed: the KV-cache sampler vs a naive re-run of the full forward pass at
every step, and vs speculative Jacobi decoding (`--speculative=W`), same model, settings and
keys, side by side in one run.

The cached sampler is `LlamaGenFamily.sample` (`sampling.tokens.sample_tokens`: prefill the
class token, then one token per step through the KV cache). The naive sampler is the same
`autoregressive_scan` whose step re-runs the whole [2B, T] input buffer (class token + the
tokens so far, zeros after) through the uncached decoder and reads the logits of position t:
the static-shape way a jitted sampler without a cache must work (`--nonaive` skips it: at
GPT-B shape it is slow). The speculative sampler is the family with `sample.speculative=W`
(`sampling/speculative.py`): a window of W drafts verified per forward pass; it reports its
sequential forward passes per image (after the prompt's prefill; the cached sampler needs one
per token) and the tokens accepted per pass. All use classifier-free guidance on a doubled
batch when cfg_scale != 1. Images/s count token maps (decoding them with the tokenizer costs
the same for all and is left out). Timings are after compilation, best of `--repeats`, with
block_until_ready. Weights are random: a trained model's peaked distributions accept more
drafts (quality/speculative_quality.py measures a trained run). Prints one
JSON line.

    python -m experiments.benchmarks.speed.llamagen_sampling [--config experiments/llamagen/
        fashion_mnist.py:cpu] [--batch 20] [--cfg_scale 2.0] [--top_k 0] [--speculative 8]
    python -m experiments.benchmarks.speed.llamagen_sampling --size=B --batch=8 --nonaive \
        --speculative=16           # GPT-B, ImageNet's tokens: 16x16 map of 16384 codes
    python -m experiments.benchmarks.speed.llamagen_sampling --size=tiny --speculative=4
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.llamagen import SIZES, LlamaGenFamily
from argen_jax.models.transformer import sample_decoder
from argen_jax.sampling.loop import LoopState, autoregressive_scan, sample_keys
from experiments.benchmarks import common

# --size: (token grid side, codebook, classes): LlamaGen's ImageNet-256 token maps for its GPT
# sizes, the Fashion-MNIST token file's shape for cpu, a toy shape for tiny
SIZE_SHAPES = {**{k: (16, 16384, 1000) for k in SIZES}, "cpu": (8, 512, 10), "tiny": (4, 64, 10)}

_CONFIG = common.config_flag("experiments/llamagen/fashion_mnist.py:cpu")
_SIZE = flags.DEFINE_enum("size", "", ["", *SIZE_SHAPES],
                          "The config's argument with its token shape (SIZE_SHAPES; overrides "
                          "--config's `:arg`, --grid, --vocab).")
_BATCH = flags.DEFINE_integer("batch", 20, "Images sampled at once.")
_CFG_SCALE = flags.DEFINE_float("cfg_scale", 2.0, "Classifier-free guidance scale.")
_TOP_K = flags.DEFINE_integer("top_k", 0, "Top-k (0: off).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
_SPECULATIVE = flags.DEFINE_integer("speculative", 0, "Also time speculative Jacobi decoding "
                                   "with this window (0: off).")
_NAIVE = flags.DEFINE_bool("naive", True, "Time the uncached sampler too.")
_GRID = flags.DEFINE_integer("grid", 8, "Token grid side (L = grid^2).")
_VOCAB = flags.DEFINE_integer("vocab", 512, "Codebook size.")
common.timing_flags(repeats=2)


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


def main(argv):
    del argv
    classes, grid, vocab = 10, _GRID.value, _VOCAB.value
    if _SIZE.value:
        grid, vocab, classes = SIZE_SHAPES[_SIZE.value]
    cfg = common.config_with_arg(_CONFIG, _SIZE.value)
    cfg.sample.cfg_scale, cfg.sample.top_k = _CFG_SCALE.value, _TOP_K.value
    cfg.sample.temperature = _TEMPERATURE.value
    spec = DataSpec((grid * grid,), vocab, classes, "tokens", grid=(grid, grid))
    fam = LlamaGenFamily(cfg, spec)
    b = _BATCH.value
    labels = jnp.arange(b, dtype=jnp.int32) % classes
    keys = sample_keys(jax.random.PRNGKey(1), 0, b)
    batch = {"tokens": jnp.zeros((1, spec.shape[0]), jnp.int32), "label": labels[:1]}
    params = jax.jit(fam.init)(jax.random.PRNGKey(0), batch)["params"]
    cached = jax.jit(fam.sample)
    tc = np.asarray(cached(params, keys, labels))
    t_cached = common.best_time(cached, params, keys, labels)
    n_params = sum(x.size for x in jax.tree.leaves(params))
    n = spec.shape[0]
    row = {
        "benchmark": "llamagen_sampling", "device": jax.devices()[0].platform,
        "config": common.config_spec(_CONFIG, _SIZE.value), "size": _SIZE.value,
        "params": int(n_params), "tokens_per_image": n, "vocab": vocab, "batch": b,
        "cfg_scale": _CFG_SCALE.value, "top_k": _TOP_K.value,
        "temperature": _TEMPERATURE.value,
        "cached_s": round(t_cached, 3), "cached_images_per_s": round(b / t_cached, 2),
        "cached_passes_per_image": n}
    if _NAIVE.value:
        naive = jax.jit(naive_sampler(fam, b))
        tn = np.asarray(naive(params, keys, labels))
        t_naive = common.best_time(naive, params, keys, labels)
        row.update({"naive_s": round(t_naive, 3), "naive_images_per_s": round(b / t_naive, 2),
                    "speedup": round(t_naive / t_cached, 2),
                    "same_tokens_fraction": float((tc == tn).mean())})
    if _SPECULATIVE.value:
        cfg.sample.speculative = _SPECULATIVE.value
        spec_fam = LlamaGenFamily(cfg, spec)
        run = jax.jit(speculative_sampler(spec_fam))
        _, passes = run(params, keys, labels)
        passes = int(passes)
        t_spec = common.best_time(run, params, keys, labels)
        row.update({"speculative": _SPECULATIVE.value, "speculative_s": round(t_spec, 3),
                    "speculative_images_per_s": round(b / t_spec, 2),
                    "speculative_passes_per_image": passes,
                    "speculative_tokens_per_pass": round(n / passes, 3),
                    "speculative_speedup_vs_cached": round(t_cached / t_spec, 2)})
    common.emit(row)


if __name__ == "__main__":
    common.run(main)
