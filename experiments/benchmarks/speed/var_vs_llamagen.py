"""Sampling speed: VAR (next-scale, 6 steps) vs a raster next-token transformer (64 steps)
over the same 8x8 token grid of the Fashion-MNIST tokenizers, in one run.

VAR: `VARFamily.generate` on the multi-scale tokens (scales 1, 2, 3, 4, 6, 8: 130 tokens in 6
blocks, KV cache, the quantizer's next-scale inputs computed between steps). Raster
(LlamaGen-style): `models.transformer.Decoder` + `sampling.tokens.sample_tokens` with a KV
cache, one class token then 64 tokens one by one (2-D RoPE). Same width / depth / heads; the
raster MLP width is chosen so both have about the same number of parameters (VAR's blocks
carry AdaLN). Both with CFG (the batch doubled), the same vocabulary (512) and batch. Random
weights: speed does not depend on them. Decoding tokens to pixels (the same tokenizer decoder
for both) is not timed. Timings: after compilation, best of `--repeats`, `block_until_ready`,
side by side. Prints one JSON line.

    python -m experiments.benchmarks.speed.var_vs_llamagen [--batch 1,64] [--width 128] [--depth 4]
"""
from __future__ import annotations

import json
import math
import sys

import jax
import jax.numpy as jnp
from absl import flags

from argen_jax import registry
from argen_jax.data.builders import build_data
from argen_jax.models.transformer import Decoder
from argen_jax.sampling.loop import sample_keys
from argen_jax.sampling.processors import cfg_scale_schedule
from argen_jax.sampling.tokens import sample_tokens
from experiments.benchmarks import common
from experiments.var import fashion_mnist

_BATCH = flags.DEFINE_list("batch", ["1", "64"], "Batch sizes.")
_WIDTH = flags.DEFINE_integer("width", 128, "Model width (both).")
_DEPTH = flags.DEFINE_integer("depth", 4, "Blocks (both).")
_HEADS = flags.DEFINE_integer("heads", 4, "Attention heads (both).")
_CFG = flags.DEFINE_float("cfg", 3.0, "Classifier-free guidance scale.")
_TOKENS = flags.DEFINE_string("tokens", "/tmp/tok/fashion_mnist_tokens_multiscale.npz",
                              "The multi-scale token file (its tokenizer builds VAR's inputs).")
common.timing_flags(repeats=3)


def count(tree) -> int:
    return int(sum(math.prod(x.shape) for x in jax.tree.leaves(tree)))


def main(argv):
    del argv
    depth, heads, cfg = _DEPTH.value, _HEADS.value, _CFG.value

    # VAR on the multi-scale tokens (its tokenizer's quantizer builds the next-scale inputs)
    c = fashion_mnist.get_config("cpu")
    c.data.path = _TOKENS.value
    c.model.depth, c.model.width, c.model.num_heads = depth, _WIDTH.value, heads
    c.sample.cfg_scale = cfg
    spec = build_data(c.data, c.seed).spec
    scales, grid = spec.scales, spec.grid
    var = registry.build_family(c, spec)  # loads the tokenizer named by the token file
    batch = {"tokens": jnp.zeros((2, var.seq_len), jnp.int32),
             "label": jnp.zeros((2,), jnp.int32), "mask": jnp.ones(2)}
    var_params = jax.jit(var.init)(jax.random.PRNGKey(0), batch)["params"]

    # raster next-token decoder over the finest 8x8 map, about VAR's parameter count
    vocab, n = var.codebook_size, grid[0] * grid[1]
    w = _WIDTH.value
    var_block = 18 * w * w  # attention 4w^2 + MLP 8w^2 + AdaLN 6w^2
    mlp = int(round((var_block - 4 * w * w) / (3 * w) / 32) * 32)  # SwiGLU: 3 w mlp
    raster = Decoder(vocab_size=vocab, num_classes=10, max_len=n + 1, width=w,
                     depth=depth, num_heads=heads, mlp_dim=mlp, rope="2d",
                     grid=grid, num_prefix=1)
    raster_vars = jax.jit(raster.init)(jax.random.PRNGKey(0), jnp.zeros((1, n + 1), jnp.int32))

    def run_var(params, keys, labels):
        return var.generate(params, keys, labels)

    def run_raster(variables, keys, labels):
        b = keys.shape[0]
        prompt = raster.class_ids(labels)[:, None]
        uncond = jnp.full_like(prompt, raster.null_id)
        fn = lambda ids, cache: raster.apply(variables, ids, cache,  # noqa: E731
                                             method=Decoder.extend)
        scale = cfg_scale_schedule(cfg, n, "linear")
        return sample_tokens(fn, raster.init_cache(2 * b), prompt, n, keys,
                             uncond_prompt=uncond, cfg_scale=scale)[0]

    var_fn, raster_fn = jax.jit(run_var), jax.jit(run_raster)
    out = {"device": jax.devices()[0].device_kind, "width": w, "depth": depth,
           "heads": heads, "cfg": cfg, "var_params": count(var_params["var"]),
           "raster_params": count(raster_vars), "raster_mlp_dim": mlp,
           "var_steps": len(scales), "raster_steps": n, "var_tokens": var.seq_len,
           "raster_tokens": n, "results": []}
    for b in (int(x) for x in _BATCH.value):
        keys = sample_keys(jax.random.PRNGKey(1), 0, b)
        labels = jnp.arange(b, dtype=jnp.int32) % 10
        t_var = common.best_time(var_fn, var_params, keys, labels)
        t_ras = common.best_time(raster_fn, raster_vars, keys, labels)
        out["results"].append({"batch": b, "var_s": round(t_var, 4),
                               "raster_s": round(t_ras, 4),
                               "raster_over_var": round(t_ras / t_var, 2)})
        print(json.dumps(out["results"][-1]), file=sys.stderr, flush=True)
    common.emit(out)


if __name__ == "__main__":
    common.run(main)
