"""Import VAR's released PyTorch transformer checkpoints (FoundationVision/VAR, var_d*.pth).

One command turns the transformer and its VQVAE into a run directory (`argen_jax.pretrained`):

    python -m argen_jax.pretrained convert --system=var --var=var_d16.pth \
        --vae=vae_ch160v4096z32.pth --out=/tmp/var_d16

In Python:

    sd = load_torch_state_dict('var_d16.pth')          # needs torch: pip install -e '.[convert]'
    params, cfg = convert_var_state_dict(sd)           # numpy arrays also accepted
    model = VARTransformer(**cfg)
    logits = model.apply({'params': params}, labels, x_tf)

Key names and shapes (models/var.py, models/basic_var.py; C width, H heads, V codes, Cv the
VQ-VAE latent channels, L = sum p_s^2):
    word_embed.{weight [C, Cv], bias}      class_emb.weight [classes + 1, C]
    pos_start [1, p_1^2, C]   pos_1LC [1, L, C]   lvl_embed.weight [S, C]
    blocks.N.attn.mat_qkv.weight [3C, C] (q, k, v stacked; no bias) + q_bias, v_bias [C]
    blocks.N.attn.scale_mul_1H11 [1, H, 1, 1] (attn_l2_norm)   blocks.N.attn.proj.{weight, bias}
    blocks.N.ffn.fc1.{weight [4C, C], bias}   blocks.N.ffn.fc2.{weight [C, 4C], bias}
    blocks.N.ada_lin.1.{weight [6C, C], bias}  head_nm.ada_lin.1.{weight [2C, C], bias}
    head.{weight [V, C], bias}
Buffers (attn_bias_for_masking, lvl_1L, zero_k_bias) are rebuilt, not read. The shared-AdaLN
variant (shared_ada_lin / ada_gss) is not supported.

The multi-scale VQ-VAE (vae_ch160v4096z32.pth) converts with `convert.var_vq_torch` into
`experiments/tokenizer/llamagen.py:var,exact` (3x3 quant convs, attention at the lowest
resolution, PyTorch's bicubic kernel and VAR's phi schedule).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np

from argen_jax.errors import CheckpointError

IMAGENET_PATCH_NUMS = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
IGNORED = ("attn_bias_for_masking", "lvl_1L", "zero_k_bias")


def to_numpy(x) -> np.ndarray:
    """A numpy array from a numpy array or a torch tensor (float32)."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch
        x = x.detach().cpu().float().numpy()
    return np.asarray(x, np.float32)


def load_torch_state_dict(path: str) -> dict:
    """A VAR .pth file -> {name: numpy array}. Needs torch (pip install -e '.[convert]')."""
    try:
        import torch
    except ImportError as e:
        raise CheckpointError("reading a .pth checkpoint needs torch: pip install -e "
                              "'.[convert]' (or pass a dict of numpy arrays)") from e
    sd = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(sd, Mapping) and "state_dict" in sd and isinstance(sd["state_dict"], Mapping):
        sd = sd["state_dict"]
    return {k: to_numpy(v) for k, v in sd.items()}


def _dense(sd, name):
    """torch Linear (weight [out, in], bias [out]) -> flax Dense {'kernel' [in, out], 'bias'}."""
    out = {"kernel": sd[f"{name}.weight"].T.copy()}
    if f"{name}.bias" in sd:
        out["bias"] = sd[f"{name}.bias"].copy()
    return out


def convert_var_state_dict(state_dict: Mapping, patch_nums: Sequence[int] | None = None,
                           num_heads: int | None = None) -> tuple[dict, dict]:
    """VAR's state dict (numpy arrays or torch tensors) -> (params of `models.var.
    VARTransformer`, its constructor kwargs). patch_nums: the scales it was trained on
    (default: ImageNet-256's, checked against pos_1LC); num_heads: needed only without
    attn_l2_norm (default: depth, VAR's rule)."""
    sd = {k.removeprefix("module."): to_numpy(v) for k, v in state_dict.items()}
    if any(k.startswith("shared_ada_lin") or k.endswith("ada_gss") for k in sd):
        raise CheckpointError("shared-AdaLN VAR checkpoints (shared_ada_lin / ada_gss) are not "
                              "supported")
    required = ("word_embed.weight", "class_emb.weight", "pos_start", "pos_1LC",
                "lvl_embed.weight", "head_nm.ada_lin.1.weight", "head.weight")
    missing = [k for k in required if k not in sd]
    if missing:
        raise CheckpointError(f"not a VAR transformer state dict: missing {missing}")
    depth = 1 + max((int(m.group(1)) for k in sd if (m := re.match(r"blocks\.(\d+)\.", k))),
                    default=-1)
    if depth == 0:
        raise CheckpointError("VAR state dict has no blocks.N.* entries")
    width = sd["class_emb.weight"].shape[1]
    l2 = "blocks.0.attn.scale_mul_1H11" in sd
    heads = sd["blocks.0.attn.scale_mul_1H11"].shape[1] if l2 else (num_heads or depth)
    patch_nums = tuple(int(p) for p in (patch_nums or IMAGENET_PATCH_NUMS))
    seq = sum(p * p for p in patch_nums)
    if sd["pos_1LC"].shape[1] != seq or sd["lvl_embed.weight"].shape[0] != len(patch_nums):
        raise CheckpointError(f"pos_1LC {sd['pos_1LC'].shape} / lvl_embed "
                              f"{sd['lvl_embed.weight'].shape} do not match patch_nums "
                              f"{patch_nums} (L = {seq}); pass the checkpoint's patch_nums")
    hd = width // heads
    used = set()

    def take(name):
        used.add(name)
        return sd[name]

    params = {
        "word_embed": _dense(sd, "word_embed"),
        "class_emb": take("class_emb.weight").copy(),
        "pos_start": take("pos_start")[0].copy(),
        "pos_embed": take("pos_1LC")[0].copy(),
        "lvl_embed": take("lvl_embed.weight").copy(),
        "head_nm": {"ada_lin": _dense(sd, "head_nm.ada_lin.1")},
        "head": _dense(sd, "head"),
    }
    used.update({"word_embed.weight", "word_embed.bias", "head_nm.ada_lin.1.weight",
                 "head_nm.ada_lin.1.bias", "head.weight", "head.bias"})
    mlp_hidden = sd["blocks.0.ffn.fc1.weight"].shape[0]
    for i in range(depth):
        p = f"blocks.{i}."
        for key, want in (("ffn.fc1.weight", (mlp_hidden, width)),
                          ("ffn.fc2.weight", (width, mlp_hidden)),
                          ("attn.mat_qkv.weight", (3 * width, width))):
            got = sd[p + key].shape if p + key in sd else "missing"
            if got != want:
                raise CheckpointError(f"{p}{key} is {got}, {want} expected (width {width}, "
                                      f"MLP width {mlp_hidden} from blocks.0.ffn.fc1.weight): "
                                      "a damaged file?")
        qkv = take(p + "attn.mat_qkv.weight").T  # [C, 3C]: q | k | v, each head-major
        q, k, v = (w.reshape(width, heads, hd) for w in np.split(qkv, 3, axis=1))
        proj = take(p + "attn.proj.weight").T.reshape(heads, hd, width)
        attn = {"query": q.copy(), "key": k.copy(), "value": v.copy(), "out": proj.copy(),
                "query_bias": take(p + "attn.q_bias").reshape(heads, hd).copy(),
                "value_bias": take(p + "attn.v_bias").reshape(heads, hd).copy(),
                "out_bias": take(p + "attn.proj.bias").copy()}
        if l2:
            attn["logit_scale"] = take(p + "attn.scale_mul_1H11").reshape(heads).copy()
        params[f"block_{i}"] = {
            "attn": attn,
            "ffn": {"fc1": _dense(sd, p + "ffn.fc1"), "fc2": _dense(sd, p + "ffn.fc2")},
            "ada_lin": _dense(sd, p + "ada_lin.1"),
        }
        used.update({p + n for n in ("ffn.fc1.weight", "ffn.fc1.bias", "ffn.fc2.weight",
                                     "ffn.fc2.bias", "ada_lin.1.weight", "ada_lin.1.bias")})
    unused = sorted(k for k in sd if k not in used and not k.endswith(IGNORED))
    if unused:
        raise CheckpointError(f"VAR state dict entries not understood: {unused[:8]}"
                              f"{' ...' if len(unused) > 8 else ''}")
    config = dict(vocab_size=sd["head.weight"].shape[0], code_dim=sd["word_embed.weight"].shape[1],
                  num_classes=sd["class_emb.weight"].shape[0] - 1, patch_nums=patch_nums,
                  width=width, depth=depth, num_heads=heads,
                  mlp_ratio=mlp_hidden / width, attn_l2_norm=l2)
    if not math.isclose(round(config["mlp_ratio"] * width), mlp_hidden):
        raise CheckpointError(f"MLP hidden width {mlp_hidden} is not a ratio of width {width}")
    return params, config
