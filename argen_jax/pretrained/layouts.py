"""{key: shape} of the released files' state dicts (LlamaGen's gpt.py / vq_model.py, VAR's
var.py / vqvae.py), and random arrays in those layouts: test inputs and stand-ins for the
real files (experiments/pretrained/make_random_checkpoints.py)."""
from __future__ import annotations

import numpy as np


def llamagen_gpt_shapes(depth: int, width: int, mlp: int, vocab: int = 16384,
                        classes: int = 1000, kv_width: int | None = None) -> dict:
    """LlamaGen c2i GPT (autoregressive/models/gpt.py). kv_width: Hkv * head_dim (GQA)."""
    e, kv = width, kv_width or width
    s = {"tok_embeddings.weight": (vocab, e),
         "cls_embedding.embedding_table.weight": (classes + 1, e),
         "norm.weight": (e,), "output.weight": (vocab, e)}
    for i in range(depth):
        p = f"layers.{i}."
        s.update({p + "attention.wqkv.weight": (e + 2 * kv, e), p + "attention.wo.weight": (e, e),
                  p + "feed_forward.w1.weight": (mlp, e), p + "feed_forward.w3.weight": (mlp, e),
                  p + "feed_forward.w2.weight": (e, mlp), p + "attention_norm.weight": (e,),
                  p + "ffn_norm.weight": (e,)})
    return s


def _conv(s, key, cin, cout, k):
    s[key + ".weight"], s[key + ".bias"] = (cout, cin, k, k), (cout,)


def _norm(s, key, c):
    s[key + ".weight"], s[key + ".bias"] = (c,), (c,)


def _res(s, key, cin, cout):
    _norm(s, key + ".norm1", cin)
    _conv(s, key + ".conv1", cin, cout, 3)
    _norm(s, key + ".norm2", cout)
    _conv(s, key + ".conv2", cout, cout, 3)
    if cin != cout:
        _conv(s, key + ".nin_shortcut", cin, cout, 1)


def _attn(s, key, c, fused: bool):
    _norm(s, key + ".norm", c)
    if fused:  # VAR: one qkv conv
        _conv(s, key + ".qkv", c, 3 * c, 1)
    else:
        for n in ("q", "k", "v"):
            _conv(s, f"{key}.{n}", c, c, 1)
    _conv(s, key + ".proj_out", c, c, 1)


def _vq_nets(s, ch, ch_mult, nrb, z, var: bool, in_ch=3):
    """LlamaGen's encoder / decoder under LlamaGen's (conv_blocks) or VAR's (down / up) names."""
    n = len(ch_mult)
    enc = (lambda i: f"encoder.down.{i}") if var else (lambda i: f"encoder.conv_blocks.{i}")
    dec = (lambda i: f"decoder.up.{i}") if var else (lambda i: f"decoder.conv_blocks.{n - 1 - i}")
    blk, mid = ("block", ("block_1", "attn_1", "block_2")) if var else ("res", ("0", "1", "2"))
    _conv(s, "encoder.conv_in", in_ch, ch, 3)
    cin = ch
    for i, m in enumerate(ch_mult):
        for j in range(nrb):
            _res(s, f"{enc(i)}.{blk}.{j}", cin, ch * m)
            cin = ch * m
            if i == n - 1:
                _attn(s, f"{enc(i)}.attn.{j}", cin, var)
        if i != n - 1:
            _conv(s, f"{enc(i)}.downsample.conv", cin, cin, 3)
    for side in ("encoder", "decoder"):
        c = ch * ch_mult[-1]
        _res(s, f"{side}.mid.{mid[0]}", c, c)
        _attn(s, f"{side}.mid.{mid[1]}", c, var)
        _res(s, f"{side}.mid.{mid[2]}", c, c)
    _norm(s, "encoder.norm_out", cin)
    _conv(s, "encoder.conv_out", cin, z, 3)
    cin = ch * ch_mult[-1]
    _conv(s, "decoder.conv_in", z, cin, 3)
    for i in reversed(range(n)):
        for j in range(nrb + 1):
            _res(s, f"{dec(i)}.{blk}.{j}", cin, ch * ch_mult[i])
            cin = ch * ch_mult[i]
            if i == n - 1:
                _attn(s, f"{dec(i)}.attn.{j}", cin, var)
        if i != 0:
            _conv(s, f"{dec(i)}.upsample.conv", cin, cin, 3)
    _norm(s, "decoder.norm_out", cin)
    _conv(s, "decoder.conv_out", cin, in_ch, 3)


def llamagen_vq_shapes(ch=128, ch_mult=(1, 1, 2, 2, 4), nrb=2, z=256, codes=16384, dim=8,
                       in_ch=3) -> dict:
    """LlamaGen's VQModel (tokenizer/tokenizer_image/vq_model.py); defaults: vq_ds16_c2i."""
    s: dict = {}
    _vq_nets(s, ch, ch_mult, nrb, z, var=False, in_ch=in_ch)
    _conv(s, "quant_conv", z, dim, 1)
    _conv(s, "post_quant_conv", dim, z, 1)
    s["quantize.embedding.weight"] = (codes, dim)
    return s


def var_vae_shapes(ch=160, ch_mult=(1, 1, 2, 2, 4), nrb=2, z=32, codes=4096, dim=32,
                   num_phi=4) -> dict:
    """VAR's VQVAE (models/vqvae.py, basic_vae.py, quant.py); defaults: vae_ch160v4096z32."""
    s: dict = {}
    _vq_nets(s, ch, ch_mult, nrb, z, var=True)
    _conv(s, "quant_conv", z, dim, 3)
    _conv(s, "post_quant_conv", dim, z, 3)
    s["quantize.embedding.weight"] = (codes, dim)
    for k in range(num_phi):
        _conv(s, f"quantize.quant_resi.qresi_ls.{k}", dim, dim, 3)
    return s


def var_shapes(depth=16, width=None, vocab=4096, code_dim=32, classes=1000,
               patch_nums=(1, 2, 3, 4, 5, 6, 8, 10, 13, 16), heads=None,
               mlp_ratio=4.0) -> dict:
    """VAR's transformer (models/var.py, basic_var.py); width 64 * depth and heads = depth by
    VAR's rule."""
    c = width or 64 * depth
    h, f = heads or depth, int(round(mlp_ratio * c))
    seq = sum(p * p for p in patch_nums)
    s = {"word_embed.weight": (c, code_dim), "word_embed.bias": (c,),
         "class_emb.weight": (classes + 1, c), "pos_start": (1, patch_nums[0] ** 2, c),
         "pos_1LC": (1, seq, c), "lvl_embed.weight": (len(patch_nums), c),
         "head_nm.ada_lin.1.weight": (2 * c, c), "head_nm.ada_lin.1.bias": (2 * c,),
         "head.weight": (vocab, c), "head.bias": (vocab,)}
    for i in range(depth):
        p = f"blocks.{i}."
        s.update({p + "attn.mat_qkv.weight": (3 * c, c), p + "attn.q_bias": (c,),
                  p + "attn.v_bias": (c,), p + "attn.scale_mul_1H11": (1, h, 1, 1),
                  p + "attn.proj.weight": (c, c), p + "attn.proj.bias": (c,),
                  p + "ffn.fc1.weight": (f, c), p + "ffn.fc1.bias": (f,),
                  p + "ffn.fc2.weight": (c, f), p + "ffn.fc2.bias": (c,),
                  p + "ada_lin.1.weight": (6 * c, c), p + "ada_lin.1.bias": (6 * c,)})
    return s


def random_state_dict(shapes: dict, seed: int = 0) -> dict:
    """float32 arrays of `shapes`: weights scaled by fan-in (activations stay O(1)), norm
    scales near 1, biases and embeddings small."""
    rng = np.random.default_rng(seed)
    sd = {}
    for k, shp in shapes.items():
        if k.endswith("scale_mul_1H11"):  # log attention temperature (VAR: log 4)
            a = np.full(shp, np.log(4.0))
        elif "norm" in k and k.endswith(".weight") and len(shp) == 1:
            a = 1.0 + 0.1 * rng.normal(size=shp)
        elif k.endswith(".weight") and len(shp) >= 2 and "embed" not in k and "emb." not in k:
            a = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shp[1:])), shp)
        else:
            a = 0.1 * rng.normal(size=shp)
        sd[k] = a.astype(np.float32)
    return sd
