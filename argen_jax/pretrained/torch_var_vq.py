"""VAR's PyTorch multi-scale VQVAE checkpoint (vae_ch160v4096z32.pth) -> `layers.vq_nets.VQModel`
parameters.

The model must be VAR's exact layout (`VQGANSettings.released('var_vqvae')`, which
`experiments/tokenizer/llamagen.py:var,exact` uses):
LlamaGen's encoder / decoder layout (bottom/right-padded stride-2 convs, an AttnBlock after
every ResBlock of the lowest resolution, GroupNorm(32, eps 1e-6), swish, nearest x2 + 3x3
upsampling) with ch=160, z_channels = code_dim = 32, 3x3 quant_conv / post_quant_conv
(`quant_conv_kernel=3`), and the multi-scale residual quantizer with PyTorch's bicubic
upsampling (`upsample='torch_bicubic'`: Keys a=-0.75, where jax.image.resize's 'cubic' uses
-0.5), VAR's phi schedule (`phi_schedule='var'`: nearest of the ticks linspace(1/12, 11/12, 4)
to s / (S - 1), which differs from our 'even' schedule at scales 2 and 7 of 10), plain
Euclidean codes (VAR's using_znorm=False) and area downsampling (= ours).

Key names and shapes of VAR's models/vqvae.py, basic_vae.py, quant.py (torch conv weights
[out, in, kh, kw]; L levels, R = num_res_blocks; the decoder's `up` list is indexed by level):

    encoder.down.i.block.j.{norm1,conv1,norm2,conv2,nin_shortcut} -> encoder/down{i}_block{j}
    encoder.down.{L-1}.attn.j.{norm, qkv [3C, C, 1, 1], proj_out} -> encoder/down{L-1}_attn{j}
    encoder.down.i.downsample.conv                    -> encoder/down{i}_sample
    {encoder,decoder}.mid.block_1 / attn_1 / block_2  -> mid_block1 / mid_attn / mid_block2
    decoder.up.i.block.j (j <= R) / .attn.j / .upsample.conv -> decoder/up{i}_block{j} / ...
    {encoder,decoder}.conv_in / norm_out / conv_out, quant_conv, post_quant_conv
    quantize.embedding.weight [V, C]                  -> quantizer/vq/codebook
    quantize.quant_resi.qresi_ls.k.{weight, bias}     -> quantizer/phi_k (partially shared;
        also quant_resi.qresi.* (one shared phi) and quant_resi.k.* (one per scale))
The `quantize.ema_vocab_hit_SV` buffer (usage statistics) is skipped.

    python -m argen_jax.pretrained.torch_var_vq --ckpt vae_ch160v4096z32.pth --out /tmp/vae.msgpack

writes {'params': {'generator': ...}} for `VQGANSettings.released('var_vqvae').module(3)` (the
generator of `experiments/tokenizer/llamagen.py:var,exact`); with `convert.var_torch` (the
transformer) this gives VAR's class-conditional sampler end to end in JAX.
"""
from __future__ import annotations

import argparse

from argen_jax.errors import CheckpointError
from argen_jax.layers.vq_nets import VQModel
from argen_jax.pretrained.torch_llamagen import unwrap
from argen_jax.pretrained.torch_llamagen_vq import (
    StateDictReader,
    expected_params,
    write_converted,
)

SKIPPED = ("quantize.ema_vocab_hit_SV",)  # usage buffer, not a parameter


# quantizer fields VAR's layout needs, where a model's quantizer_kwargs leave them out
_QUANTIZER_DEFAULTS = dict(upsample_method="cubic", phi_schedule="even", l2_normalize=False,
                           ema=False, restart_threshold=0.0)


def _check_model(model: VQModel) -> None:
    qk = {**_QUANTIZER_DEFAULTS, **(model.quantizer_kwargs or {})}
    want = {"multiscale": (model.multiscale, True),
            "downsample": (model.downsample, "pad01"),
            "attn_at_lowest": (model.attn_at_lowest, True),
            "mid_attention": (model.mid_attention, True),
            "upsample": (qk["upsample_method"], "torch_bicubic"),
            "phi_schedule": (qk["phi_schedule"], "var"),
            "l2_normalize": (bool(qk["l2_normalize"]), False),
            "ema / restart": (bool(qk["ema"]) or qk["restart_threshold"] > 0, False)}
    bad = [f"{k}={v!r} (VAR: {w!r})" for k, (v, w) in want.items() if v != w]
    if bad:
        raise CheckpointError("the model cannot hold VAR's VQVAE exactly: " + "; ".join(bad)
                              + " (use VQGANSettings.released('var_vqvae'), as "
                              "experiments/tokenizer/llamagen.py:var,exact)")


def convert_vqvae(state_dict: dict, model: VQModel) -> dict:
    """VAR VQVAE state dict (torch tensors or arrays) -> the `params` of `model` (float32
    numpy). CheckpointError names the first missing, unexpected or mis-shaped key."""
    _check_model(model)
    sd = {k: v for k, v in unwrap(state_dict).items() if k not in SKIPPED}
    expected = expected_params(model, size=max(model.quantizer_kwargs["scales"][-1], 1)
                               * 2 ** (len(model.ch_mult) - 1))
    levels, r = len(model.ch_mult), model.num_res_blocks
    num_phi = {"num_phi": 4, **model.quantizer_kwargs}["num_phi"]  # 4: the quantizer's default
    rd = StateDictReader(sd, "VAR VQVAE", f"is it a VQVAE with ch_mult={tuple(model.ch_mult)}, "
                         f"num_res_blocks={r}, {num_phi} phi?")

    def mid(side, ours):
        return {"mid_block1": rd.res(f"{side}.mid.block_1", ours["mid_block1"]),
                "mid_attn": rd.attn(f"{side}.mid.attn_1", ours["mid_attn"], fused=True),
                "mid_block2": rd.res(f"{side}.mid.block_2", ours["mid_block2"])}

    out = {}
    for side, stage, blocks, sample in (("encoder", "down", r, "downsample"),
                                        ("decoder", "up", r + 1, "upsample")):
        e = expected[side]
        t = {n: rd.conv(f"{side}.{n}", e[n]) for n in ("conv_in", "conv_out")}
        t["norm_out"] = rd.norm(f"{side}.norm_out", e["norm_out"])
        t.update(mid(side, e))
        for i in range(levels):
            p = f"{side}.{stage}.{i}"
            for j in range(blocks):
                t[f"{stage}{i}_block{j}"] = rd.res(f"{p}.block.{j}", e[f"{stage}{i}_block{j}"])
                if i == levels - 1:
                    t[f"{stage}{i}_attn{j}"] = rd.attn(f"{p}.attn.{j}", e[f"{stage}{i}_attn{j}"],
                                                       fused=True)
            if (side == "encoder" and i < levels - 1) or (side == "decoder" and i > 0):
                t[f"{stage}{i}_sample"] = rd.conv(f"{p}.{sample}.conv", e[f"{stage}{i}_sample"])
        out[side] = t
    q = expected["quantizer"]
    phis = sorted(k for k in q if k.startswith("phi_"))
    if len(phis) == 1 and "quantize.quant_resi.qresi.weight" in sd:
        names = ["quantize.quant_resi.qresi"]  # one phi shared by every scale
    elif any(k.startswith("quantize.quant_resi.qresi_ls.") for k in sd):
        names = [f"quantize.quant_resi.qresi_ls.{k}" for k in range(len(phis))]
    else:  # one phi per scale (PhiNonShared)
        names = [f"quantize.quant_resi.{k}" for k in range(len(phis))]
    quant = {"vq": {"codebook": rd.array("quantize.embedding.weight", q["vq"]["codebook"].shape)}}
    for k, name in enumerate(names):
        quant[f"phi_{k}"] = rd.conv(name, q[f"phi_{k}"])
    params = {**out, "quantizer": quant,
              "quant_conv": rd.conv("quant_conv", expected["quant_conv"]),
              "post_quant_conv": rd.conv("post_quant_conv", expected["post_quant_conv"])}
    return rd.finish(params, expected)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="VAR vae_ch160v4096z32.pth")
    p.add_argument("--out", required=True, help="output .msgpack of {'params': ...}")
    a = p.parse_args(argv)
    n = write_converted("var_vqvae", 256, convert_vqvae, a.ckpt, a.out)
    print(f"wrote {a.out}: {n / 1e6:.1f}M parameters of VAR's VQVAE")


if __name__ == "__main__":
    main()
