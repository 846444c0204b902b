"""LlamaGen's PyTorch c2i GPT checkpoints -> `models.llamagen` (Decoder) parameters.

Key names and shapes of LlamaGen's `autoregressive/models/gpt.py` (torch Linear weights are
[out, in]; E = width, H / Hkv heads of D = E / H, F the SwiGLU width):

    tok_embeddings.weight                 [V, E]            -> token_embed.embedding
    cls_embedding.embedding_table.weight  [C + 1, E]        -> class_embed.embedding (row C:
                                                               the null class of CFG)
    layers.i.attention.wqkv.weight        [(H + 2Hkv) D, E] -> block_i.attn.{query,key,value}
    layers.i.attention.wo.weight          [E, H D]          -> block_i.attn.out [H, D, E]
    layers.i.feed_forward.w1/w3/w2.weight [F, E] [F, E] [E, F] -> block_i.mlp.gate/up/down
    layers.i.attention_norm.weight, layers.i.ffn_norm.weight -> block_i.attn_norm/mlp_norm
    norm.weight                           [E]               -> final_norm.scale
    output.weight                         [V, E]            -> head.kernel [E, V]

LlamaGen rotates interleaved pairs (x[2i], x[2i+1]); our RoPE rotates (x[i], x[i + D/2])
(`layers.rope`). Both use the same angle of pair i, so the query and key columns of each head
are permuted (even dims first, then odd): q.k is unchanged and the logits are identical.
Buffers that are not parameters (`freqs_cis`, KV caches, `causal_mask`) are skipped.

The one-command path (GPT + VQ -> a run directory that launch/main.py samples from):

    python -m argen_jax.pretrained convert --system=llamagen --gpt=c2i_B_256.pt \
        --vq=vq_ds16_c2i.pt --out=/tmp/llamagen_B

The GPT alone, as bytes:

    python -m argen_jax.pretrained.torch_llamagen --ckpt c2i_B_256.pt --size B \
        --out /tmp/llamagen_B.msgpack      # flax.serialization bytes of {'params': ...}

and sample in JAX: params = flax.serialization.msgpack_restore(open(out, 'rb').read())
['params'], then `LlamaGenFamily(config, spec).sample(params, keys, labels)` with a config whose
model.size matches (experiments/llamagen/fashion_mnist.py:B) and spec = DataSpec((256,), 16384,
1000, 'tokens', grid=(16, 16)). Decoding needs LlamaGen's VQ tokenizer: `convert.llamagen_vq_torch`.
"""
from __future__ import annotations

import argparse
import re

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization

from argen_jax.errors import CheckpointError
from argen_jax.layers.repeat import stack_layers
from argen_jax.models.llamagen import SIZES, LlamaGenSettings
from argen_jax.models.transformer import Decoder

SKIPPED = re.compile(r"(^|\.)(freqs_cis|causal_mask|kv_cache\.[kv]_cache)$")
WRAPPERS = ("model", "module", "state_dict")  # LlamaGen's checkpoints nest the weights
PREFIXES = ("module.", "_orig_mod.")  # DDP / torch.compile


def to_numpy(t) -> np.ndarray:
    """A torch tensor (any dtype, incl. bfloat16) or array -> float32 numpy."""
    if hasattr(t, "detach"):
        t = t.detach().cpu().float().numpy()
    return np.asarray(t, np.float32)


def unwrap(checkpoint: dict) -> dict:
    """The GPT state dict inside a LlamaGen checkpoint, without wrapper prefixes."""
    for k in WRAPPERS:
        if k in checkpoint and isinstance(checkpoint[k], dict):
            checkpoint = checkpoint[k]
            break
    out = {}
    for k, v in checkpoint.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def rope_permutation(head_dim: int) -> np.ndarray:
    """Our rotary dim j <- LlamaGen's dim perm[j]: pairs (2i, 2i+1) become (i, i + D/2)."""
    return np.concatenate([np.arange(0, head_dim, 2), np.arange(1, head_dim, 2)])


def _expected(model: Decoder) -> dict:
    ids = jnp.zeros((1, 2), jnp.int32)
    return nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), ids))["params"]


def convert_gpt(state_dict: dict, model: Decoder) -> dict:
    """LlamaGen c2i GPT state dict (torch tensors or arrays) -> `params` of `model` (float32
    numpy), each checked against the model's shapes. Raises CheckpointError naming the first
    missing, unexpected or mis-shaped entry."""
    sd = {k: v for k, v in unwrap(state_dict).items() if not SKIPPED.search(k)}
    used: set[str] = set()

    def get(key):
        if key not in sd:
            raise CheckpointError(f"LlamaGen state dict lacks {key!r} (is it a c2i GPT with "
                                  f"{model.depth} layers?)")
        used.add(key)
        return to_numpy(sd[key])

    h = model.num_heads
    hkv = model.num_kv_heads or h
    d = model._head_dim()
    e = model.width
    perm = rope_permutation(d) if model.rope != "none" else np.arange(d)
    params = {
        "token_embed": {"embedding": get("tok_embeddings.weight")},
        "class_embed": {"embedding": get("cls_embedding.embedding_table.weight")},
        "final_norm": {"scale": get("norm.weight")},
        "head": {"kernel": get("output.weight").T},
    }
    for i in range(model.depth):
        p = f"layers.{i}."
        wqkv = get(p + "attention.wqkv.weight")  # [(H + 2 Hkv) D, E]
        if wqkv.shape != ((h + 2 * hkv) * d, e):
            raise CheckpointError(f"{p}attention.wqkv.weight has shape {wqkv.shape}; a model "
                                  f"with {h} heads of {d} ({hkv} KV heads), width {e} needs "
                                  f"{((h + 2 * hkv) * d, e)}")
        wq, wk, wv = np.split(wqkv, [h * d, (h + hkv) * d], axis=0)
        wo = get(p + "attention.wo.weight")  # [E, H D]
        for n, want in (("w1", (model.mlp_dim, e)), ("w3", (model.mlp_dim, e)),
                        ("w2", (e, model.mlp_dim))):
            got = sd.get(p + f"feed_forward.{n}.weight")
            if got is not None and tuple(got.shape) != want:
                raise CheckpointError(
                    f"{p}feed_forward.{n}.weight has shape {tuple(got.shape)}, the model's MLP "
                    f"width is {model.mlp_dim} ({want}): set model.mlp_dim, or the "
                    "model.multiple_of the checkpoint was trained with (LlamaGen: 256)")
        params[f"block_{i}"] = {
            "attn": {
                "query": wq.reshape(h, d, e)[:, perm].transpose(2, 0, 1),  # [E, H, D]
                "key": wk.reshape(hkv, d, e)[:, perm].transpose(2, 0, 1),
                "value": wv.reshape(hkv, d, e).transpose(2, 0, 1),
                "out": wo.reshape(e, h, d).transpose(1, 2, 0),  # [H, D, E]
            },
            "attn_norm": {"scale": get(p + "attention_norm.weight")},
            "mlp_norm": {"scale": get(p + "ffn_norm.weight")},
            "mlp": {"gate": {"kernel": get(p + "feed_forward.w1.weight").T},
                    "up": {"kernel": get(p + "feed_forward.w3.weight").T},
                    "down": {"kernel": get(p + "feed_forward.w2.weight").T}},
        }
    extra = sorted(set(sd) - used)
    if extra:
        raise CheckpointError(f"LlamaGen state dict has entries the model does not: {extra[:5]}"
                              f"{' ...' if len(extra) > 5 else ''} (more layers than depth="
                              f"{model.depth}, or not a c2i GPT?)")
    if model.scan_layers:  # a scanned config: its layout (layers/repeat.py)
        params = stack_layers(params)
    expected = _expected(model)
    flat_e = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
    flat_p = dict(jax.tree_util.tree_flatten_with_path(params)[0])
    if set(flat_e) != set(flat_p):
        raise CheckpointError("converted parameter tree does not match the model: "
                              f"{sorted(map(str, set(flat_e) ^ set(flat_p)))[:5]}")
    for path, spec in flat_e.items():
        if flat_p[path].shape != spec.shape:
            raise CheckpointError(f"{jax.tree_util.keystr(path)}: checkpoint gives "
                                  f"{flat_p[path].shape}, the model needs {spec.shape}")
    return params


def load_torch_checkpoint(path: str) -> dict:
    """A LlamaGen .pt file -> its GPT state dict (needs torch: `pip install -e '.[convert]'`)."""
    try:
        import torch
    except ImportError:
        raise CheckpointError("reading a .pt checkpoint needs torch: pip install -e "
                              "'.[convert]'") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a missing, truncated or foreign file
        raise CheckpointError(f"cannot read LlamaGen checkpoint {path!r}: {e}") from None
    return unwrap(ckpt)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="LlamaGen c2i .pt file")
    p.add_argument("--size", required=True, choices=sorted(SIZES))
    p.add_argument("--grid", type=int, default=16, help="token grid side (256px: 16)")
    p.add_argument("--num_classes", type=int, default=1000)
    p.add_argument("--vocab", type=int, default=16384)
    p.add_argument("--out", required=True, help="output .msgpack of {'params': ...}")
    a = p.parse_args(argv)
    model = LlamaGenSettings(size=a.size).llamagen_decoder(a.vocab, a.num_classes,
                                                           (a.grid, a.grid))
    params = convert_gpt(load_torch_checkpoint(a.ckpt), model)
    with open(a.out, "wb") as f:
        f.write(serialization.to_bytes({"params": params}))
    n = sum(x.size for x in jax.tree.leaves(params))
    print(f"wrote {a.out}: {n / 1e6:.1f}M parameters of LlamaGen-{a.size}")


if __name__ == "__main__":
    main()
