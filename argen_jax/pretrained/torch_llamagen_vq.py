"""LlamaGen's PyTorch VQ tokenizer checkpoints (vq_ds16_c2i.pt, vq_ds8_c2i.pt) ->
`layers.vq_nets.VQModel` parameters.

The model must use LlamaGen's exact layout (`VQGANSettings.released('llamagen_vq16')`, which
`experiments/tokenizer/llamagen.py:exact` uses, or
`VQModel(downsample='pad01', attn_at_lowest=True, groups=32)` with a single-scale,
l2-normalised, non-EMA quantizer): LlamaGen's Downsample pads one zero row / column at the
bottom / right and runs a VALID stride-2 3x3 conv (our 'pad01' taps 0..2), and both its
encoder and decoder put an AttnBlock after every ResBlock of the lowest resolution, besides
the (res, attn, res) middle block. GroupNorm(32, eps 1e-6), swish, nearest x2 + 3x3 conv
upsampling, 1x1 quant / post-quant convs and the cosine codebook lookup are the same as ours.

Key names and shapes of LlamaGen's `tokenizer/tokenizer_image/vq_model.py` (torch conv
weights [out, in, kh, kw]; L = len(ch_mult) levels, R = num_res_blocks; decoder block n is
level L - 1 - n):

    encoder.conv_in / conv_out / norm_out              -> encoder/conv_in, conv_out, norm_out
    encoder.conv_blocks.i.res.j.{norm1,conv1,norm2,conv2,nin_shortcut}
                                                       -> encoder/down{i}_block{j}/{.., skip}
    encoder.conv_blocks.{L-1}.attn.j.{norm,q,k,v,proj_out} -> encoder/down{L-1}_attn{j}
    encoder.conv_blocks.i.downsample.conv              -> encoder/down{i}_sample
    {encoder,decoder}.mid.0 / .1 / .2                  -> mid_block1 / mid_attn / mid_block2
    decoder.conv_blocks.n.res.j (j <= R) / .attn.j / .upsample.conv
                                                       -> decoder/up{L-1-n}_block{j} / _attn{j}
                                                          / _sample
    quant_conv, post_quant_conv                        -> quant_conv, post_quant_conv
    quantize.embedding.weight [K, D]                   -> quantizer/codebook (normalised at use)

A k x k conv weight becomes our tap kernel [k*k, in, out] (tap ky * k + kx); an AttnBlock's
q, k, v 1x1 convs become one `qkv` Dense [C, 3C] (q | k | v columns) and proj_out `proj`.
The `quantize.codebook_used` buffer (training statistics) is skipped.

With the GPT, one command writes a run directory whose `tokenizer/` sub-run is this
tokenizer (`Tokenizer.load(RUN + '/tokenizer')`):

    python -m argen_jax.pretrained convert --system=llamagen --gpt=c2i_B_256.pt \
        --vq=vq_ds16_c2i.pt --out=/tmp/llamagen_B

The tokenizer alone:

    python -m argen_jax.pretrained.torch_llamagen_vq --ckpt vq_ds16_c2i.pt --out /tmp/vq16.msgpack

writes flax.serialization bytes of {'params': {'generator': ...}}, the params of
`VQGANSettings.released('llamagen_vq16').module(3)` (float32), used for inference without a
tokenizer family or its training losses:

    from flax import serialization
    from argen_jax.data.pipeline import DataSpec
    from argen_jax.models.tokenizer import Tokenizer
    from argen_jax.models.vqgan import VQGANSettings
    params = serialization.msgpack_restore(open('/tmp/vq16.msgpack', 'rb').read())['params']
    tok = Tokenizer(VQGANSettings.released('llamagen_vq16'),
                    DataSpec((256, 256, 3), 256, 1000, 'image'), params)
    images = tok.decode(tok.encode(images))     # uint8 [B, 256, 256, 3] in and out

(--f8 for VQ-8: 'llamagen_vq8'). `experiments/tokenizer/llamagen.py:exact` is the same net as
a training config (float32, no perceptual loss unless loss.perceptual_* are set).
"""
from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from flax import serialization

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError
from argen_jax.layers.vq_nets import ImageSpace, VQModel
from argen_jax.models.vqgan import VQGANSettings
from argen_jax.pretrained.torch_llamagen import load_torch_checkpoint, to_numpy, unwrap

SKIPPED = ("quantize.codebook_used",)  # usage buffer, not a parameter


def expected_params(model: VQModel, size: int = 32) -> dict:
    """Shapes of `model`'s params (jax.ShapeDtypeStruct leaves), without allocating them."""
    f = 2 ** (len(model.ch_mult) - 1)
    x = jnp.zeros((1, max(size, f), max(size, f), model.channels), jnp.float32)
    return nn.unbox(jax.eval_shape(model.init, jax.random.PRNGKey(0), x))["params"]


def _check_model(model: VQModel) -> None:
    qk = dict(model.quantizer_kwargs or {})
    problems = []
    if model.multiscale:
        problems.append("multiscale quantizer (LlamaGen's is single-scale)")
    if model.downsample != "pad01":
        problems.append(f"downsample={model.downsample!r} (LlamaGen pads bottom/right: 'pad01')")
    if not model.attn_at_lowest:
        problems.append("attn_at_lowest=False (LlamaGen attends after every lowest-level "
                        "ResBlock)")
    if not model.mid_attention:
        problems.append("mid_attention=False")
    if qk.get("ema") or (qk.get("restart_threshold") or 0) > 0:
        problems.append("EMA / restart quantizer state (LlamaGen's codebook is a parameter)")
    if qk.get("l2_normalize") is False:  # absent: VectorQuantizer's default (True)
        problems.append("l2_normalize=False (LlamaGen looks codes up by cosine)")
    if problems:
        raise CheckpointError("the model cannot hold a LlamaGen VQ checkpoint exactly: "
                              + "; ".join(problems) + " (use experiments/tokenizer/"
                              "llamagen.py:exact)")


class StateDictReader:
    """Reads torch conv / GroupNorm / ResBlock / AttnBlock entries of a state dict into our
    VQGAN sub-trees, shaped after `ours` (the expected tree), recording what it used."""

    def __init__(self, sd: dict, what: str, hint: str):
        self.sd, self.what, self.hint, self.used = sd, what, hint, set()

    def array(self, key, shape):
        if key not in self.sd:
            raise CheckpointError(f"{self.what} state dict lacks {key!r} ({self.hint})")
        self.used.add(key)
        a = to_numpy(self.sd[key])
        if a.shape != tuple(shape):
            raise CheckpointError(f"{key} has shape {a.shape}, the model needs {tuple(shape)}")
        return a

    def conv(self, key, ours):  # torch Conv2d -> our tap conv {'conv': {'kernel', 'bias'}}
        t, cin, cout = ours["conv"]["kernel"].shape
        k = int(round(t**0.5))
        w = self.array(key + ".weight", (cout, cin, k, k))  # [out, in, kh, kw]
        return {"conv": {"kernel": w.transpose(2, 3, 1, 0).reshape(t, cin, cout),
                         "bias": self.array(key + ".bias", (cout,))}}

    def norm(self, key, ours):
        return {"scale": self.array(key + ".weight", ours["scale"].shape),
                "bias": self.array(key + ".bias", ours["bias"].shape)}

    def res(self, key, ours):
        out = {n: self.norm(f"{key}.{n}", ours[n]) for n in ("norm1", "norm2")}
        out.update({n: self.conv(f"{key}.{n}", ours[n]) for n in ("conv1", "conv2")})
        if "skip" in ours:
            out["skip"] = self.conv(f"{key}.nin_shortcut", ours["skip"])
        return out

    def attn(self, key, ours, fused: bool = False):
        """q, k, v 1x1 convs (LlamaGen) or one qkv conv [3C, C, 1, 1] (VAR) -> qkv Dense."""
        c = ours["proj"]["kernel"].shape[0]
        if fused:
            qkv_w = self.array(f"{key}.qkv.weight", (3 * c, c, 1, 1))[:, :, 0, 0].T  # [C, 3C]
            qkv_b = self.array(f"{key}.qkv.bias", (3 * c,))
        else:
            w = [self.array(f"{key}.{n}.weight", (c, c, 1, 1))[:, :, 0, 0].T for n in "qkv"]
            qkv_w = np.concatenate(w, axis=1)  # [C, 3C]: q | k | v columns
            qkv_b = np.concatenate([self.array(f"{key}.{n}.bias", (c,)) for n in "qkv"])
        proj = self.array(f"{key}.proj_out.weight", (c, c, 1, 1))[:, :, 0, 0]
        return {"norm": self.norm(f"{key}.norm", ours["norm"]),
                "qkv": {"kernel": qkv_w, "bias": qkv_b},
                "proj": {"kernel": proj.T, "bias": self.array(f"{key}.proj_out.bias", (c,))}}

    def finish(self, params: dict, expected: dict) -> dict:
        """Raises unless every entry was used and the tree is exactly the expected one."""
        extra = sorted(set(self.sd) - self.used)
        if extra:
            raise CheckpointError(f"{self.what} state dict has entries the model does not: "
                                  f"{extra[:5]}{' ...' if len(extra) > 5 else ''} ({self.hint})")
        flat_e = dict(jax.tree_util.tree_flatten_with_path(expected)[0])
        flat_p = dict(jax.tree_util.tree_flatten_with_path(params)[0])
        if set(flat_e) != set(flat_p):  # a layer the walk does not know
            diff = sorted(map(jax.tree_util.keystr, set(flat_e) ^ set(flat_p)))
            raise CheckpointError(f"converted parameter tree does not match the model: {diff[:5]}")
        return params


def convert_vq(state_dict: dict, model: VQModel) -> dict:
    """LlamaGen VQ state dict (torch tensors or arrays, optionally inside {'model': ...}) ->
    the `params` of `model` (float32 numpy). Every entry must be used and every parameter
    filled with the right shape: CheckpointError names the first missing, unexpected or
    mis-shaped key."""
    _check_model(model)
    sd = {k: v for k, v in unwrap(state_dict).items() if k not in SKIPPED}
    expected = expected_params(model)
    levels, r = len(model.ch_mult), model.num_res_blocks
    rd = StateDictReader(sd, "LlamaGen VQ", f"is it a VQ model with ch_mult="
                         f"{tuple(model.ch_mult)}, num_res_blocks={r}?")

    def mid(side, ours):
        return {"mid_block1": rd.res(f"{side}.mid.0", ours["mid_block1"]),
                "mid_attn": rd.attn(f"{side}.mid.1", ours["mid_attn"]),
                "mid_block2": rd.res(f"{side}.mid.2", ours["mid_block2"])}

    e, d = expected["encoder"], expected["decoder"]
    enc = {n: rd.conv(f"encoder.{n}", e[n]) for n in ("conv_in", "conv_out")}
    enc["norm_out"] = rd.norm("encoder.norm_out", e["norm_out"])
    enc.update(mid("encoder", e))
    for i in range(levels):
        p = f"encoder.conv_blocks.{i}"
        for j in range(r):
            enc[f"down{i}_block{j}"] = rd.res(f"{p}.res.{j}", e[f"down{i}_block{j}"])
            if i == levels - 1:
                enc[f"down{i}_attn{j}"] = rd.attn(f"{p}.attn.{j}", e[f"down{i}_attn{j}"])
        if i < levels - 1:
            enc[f"down{i}_sample"] = rd.conv(f"{p}.downsample.conv", e[f"down{i}_sample"])
    dec = {n: rd.conv(f"decoder.{n}", d[n]) for n in ("conv_in", "conv_out")}
    dec["norm_out"] = rd.norm("decoder.norm_out", d["norm_out"])
    dec.update(mid("decoder", d))
    for n in range(levels):
        i, p = levels - 1 - n, f"decoder.conv_blocks.{n}"
        for j in range(r + 1):
            dec[f"up{i}_block{j}"] = rd.res(f"{p}.res.{j}", d[f"up{i}_block{j}"])
            if n == 0:
                dec[f"up{i}_attn{j}"] = rd.attn(f"{p}.attn.{j}", d[f"up{i}_attn{j}"])
        if i > 0:
            dec[f"up{i}_sample"] = rd.conv(f"{p}.upsample.conv", d[f"up{i}_sample"])
    params = {
        "encoder": enc, "decoder": dec,
        "quant_conv": rd.conv("quant_conv", expected["quant_conv"]),
        "post_quant_conv": rd.conv("post_quant_conv", expected["post_quant_conv"]),
        "quantizer": {"codebook": rd.array("quantize.embedding.weight",
                                         expected["quantizer"]["codebook"].shape)},
    }
    return rd.finish(params, expected)


def write_converted(name: str, size: int, convert, ckpt: str, out: str) -> int:
    """Builds the exact nets of the released tokenizer `name` (`VQGANSettings.released`:
    llamagen_vq16, llamagen_vq8, var_vqvae) for size x size RGB images, converts the PyTorch
    checkpoint `ckpt` with `convert(state_dict, generator)` and writes
    {'params': {'generator': ...}} to `out` (.msgpack). Returns the parameter count."""
    settings = VQGANSettings.released(name)
    ImageSpace.of(DataSpec((size, size, 3), 256, 1000, "image"), settings.ch_mult,
                  settings.pad_to, settings.scales if settings.multiscale else None)
    params = convert(load_torch_checkpoint(ckpt), settings.module(3))
    with open(out, "wb") as f:
        f.write(serialization.to_bytes({"params": {"generator": params}}))
    return sum(x.size for x in jax.tree.leaves(params))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", required=True, help="LlamaGen vq_ds16_c2i.pt (or vq_ds8 with --f8)")
    p.add_argument("--f8", action="store_true", help="VQ-8 (ch_mult 1,2,2,4)")
    p.add_argument("--size", type=int, default=256, help="image side the family is built for")
    p.add_argument("--out", required=True, help="output .msgpack of {'params': ...}")
    a = p.parse_args(argv)
    n = write_converted("llamagen_vq8" if a.f8 else "llamagen_vq16", a.size, convert_vq,
                        a.ckpt, a.out)
    print(f"wrote {a.out}: {n / 1e6:.1f}M parameters of LlamaGen VQ-{8 if a.f8 else 16}")


if __name__ == "__main__":
    main()
