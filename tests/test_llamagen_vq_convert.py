"""LlamaGen VQ tokenizer converter (argen_jax/pretrained/torch_llamagen_vq.py): key coverage and
errors, and the converted model against an independent NumPy forward pass of LlamaGen's
encoder -> quantizer -> decoder written on the torch-layout arrays (NCHW, [out, in, kh, kw])."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError
from argen_jax.models import vqgan
from argen_jax.pretrained.layouts import llamagen_vq_shapes
from argen_jax.pretrained.torch_llamagen_vq import convert_vq, expected_params
from experiments.tokenizer import llamagen

# ----------------------------------------------------------------------------- state dict
# llamagen_vq_shapes: the one copy of LlamaGen's key layout (argen_jax/pretrained/layouts.py)


def random_state_dict(shapes, seed=0):
    rng = np.random.default_rng(seed)
    sd = {}
    for k, shp in shapes.items():
        if k.endswith(".weight") and len(shp) == 4:  # conv: fan-in scaled
            sd[k] = rng.normal(0, 1 / np.sqrt(np.prod(shp[1:])), shp).astype(np.float32)
        elif "norm" in k and k.endswith(".weight"):
            sd[k] = (1 + 0.1 * rng.normal(size=shp)).astype(np.float32)
        else:
            sd[k] = (0.1 * rng.normal(size=shp)).astype(np.float32)
    sd["quantize.codebook_used"] = np.zeros((65536,), np.float32)  # buffer, skipped
    return sd


# ----------------------------------------------------------------------------- NumPy LlamaGen
def _conv(x, w, b, stride=1, pad=(1, 1, 1, 1)):
    """torch Conv2d on NCHW: pad (top, bottom, left, right), then VALID, explicit taps."""
    xp = np.pad(x, ((0, 0), (0, 0), pad[:2], pad[2:]))
    _, _, kh, kw = w.shape
    ho, wo = (xp.shape[2] - kh) // stride + 1, (xp.shape[3] - kw) // stride + 1
    y = np.zeros((x.shape[0], w.shape[0], ho, wo), np.float64)
    for ky in range(kh):
        for kx in range(kw):
            patch = xp[:, :, ky : ky + stride * (ho - 1) + 1 : stride,
                       kx : kx + stride * (wo - 1) + 1 : stride]
            y += np.einsum("bchw,oc->bohw", patch, w[:, :, ky, kx])
    return y + b[None, :, None, None]


def _conv_k(sd, key, x, **kw):
    w = sd[key + ".weight"]
    pad = (w.shape[2] // 2,) * 4
    return _conv(x, w, sd[key + ".bias"], pad=pad, **kw)


def _gn(sd, key, x, groups):
    b, c, h, w = x.shape
    g = x.reshape(b, groups, -1)
    g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + 1e-6)
    return (g.reshape(b, c, h, w) * sd[key + ".weight"][None, :, None, None]
            + sd[key + ".bias"][None, :, None, None])


def _swish(x):
    return x / (1 + np.exp(-x))


def _res(sd, key, x, groups):
    h = _conv_k(sd, key + ".conv1", _swish(_gn(sd, key + ".norm1", x, groups)))
    h = _conv_k(sd, key + ".conv2", _swish(_gn(sd, key + ".norm2", h, groups)))
    if key + ".nin_shortcut.weight" in sd:
        x = _conv_k(sd, key + ".nin_shortcut", x)
    return x + h


def _attn(sd, key, x, groups):
    b, c, h, w = x.shape
    y = _gn(sd, key + ".norm", x, groups)
    q, k, v = (_conv_k(sd, f"{key}.{n}", y).reshape(b, c, h * w) for n in "qkv")
    a = np.einsum("bci,bcj->bij", q, k) / np.sqrt(c)
    a = np.exp(a - a.max(-1, keepdims=True))
    a /= a.sum(-1, keepdims=True)
    out = np.einsum("bij,bcj->bci", a, v).reshape(b, c, h, w)
    return x + _conv_k(sd, key + ".proj_out", out)


def _normalize(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def ref_encode(sd, x, levels, nrb, groups):
    """LlamaGen's encoder + quant_conv: x NCHW in [-1, 1] -> latent [B, D, h, w]."""
    h = _conv_k(sd, "encoder.conv_in", x)
    for i in range(levels):
        for j in range(nrb):
            h = _res(sd, f"encoder.conv_blocks.{i}.res.{j}", h, groups)
            if i == levels - 1:
                h = _attn(sd, f"encoder.conv_blocks.{i}.attn.{j}", h, groups)
        if i != levels - 1:  # F.pad (0, 1, 0, 1) then a VALID stride-2 conv
            key = f"encoder.conv_blocks.{i}.downsample.conv"
            h = _conv(h, sd[key + ".weight"], sd[key + ".bias"], stride=2, pad=(0, 1, 0, 1))
    h = _res(sd, "encoder.mid.0", h, groups)
    h = _attn(sd, "encoder.mid.1", h, groups)
    h = _res(sd, "encoder.mid.2", h, groups)
    h = _conv_k(sd, "encoder.conv_out", _swish(_gn(sd, "encoder.norm_out", h, groups)))
    return _conv_k(sd, "quant_conv", h)


def ref_decode(sd, q, levels, nrb, groups):
    """LlamaGen's post_quant_conv + decoder: codes [B, D, h, w] -> image NCHW."""
    h = _conv_k(sd, "decoder.conv_in", _conv_k(sd, "post_quant_conv", q))
    h = _res(sd, "decoder.mid.0", h, groups)
    h = _attn(sd, "decoder.mid.1", h, groups)
    h = _res(sd, "decoder.mid.2", h, groups)
    for b in range(levels):
        for j in range(nrb + 1):
            h = _res(sd, f"decoder.conv_blocks.{b}.res.{j}", h, groups)
            if b == 0:
                h = _attn(sd, f"decoder.conv_blocks.{b}.attn.{j}", h, groups)
        if b != levels - 1:  # nearest x2, then 3x3
            h = _conv_k(sd, f"decoder.conv_blocks.{b}.upsample.conv",
                        h.repeat(2, axis=2).repeat(2, axis=3))
    return _conv_k(sd, "decoder.conv_out", _swish(_gn(sd, "decoder.norm_out", h, groups)))


def llamagen_forward(sd, x, levels, nrb, groups):
    """x NCHW in [-1, 1] -> (latent after quant_conv [B, D, h, w], indices [B, h, w],
    reconstruction NCHW)."""
    latent = ref_encode(sd, x, levels, nrb, groups)
    zf = _normalize(latent.transpose(0, 2, 3, 1))  # [B, h, w, D]
    emb = _normalize(sd["quantize.embedding.weight"].astype(np.float64))
    d = (zf**2).sum(-1, keepdims=True) + (emb**2).sum(-1) - 2 * zf @ emb.T
    idx = d.argmin(-1)
    return latent, idx, ref_decode(sd, emb[idx].transpose(0, 3, 1, 2), levels, nrb, groups)


# ----------------------------------------------------------------------------- tests
CH, MULT, NRB, Z, K, D, GROUPS = 8, (1, 2), 2, 8, 16, 4, 4


def _model(**kw):
    args = dict(channels=3, ch=CH, ch_mult=MULT, num_res_blocks=NRB, z_channels=Z,
                groups=GROUPS, quantizer_kwargs=dict(codebook_size=K, code_dim=D),
                downsample="pad01", attn_at_lowest=True)
    args.update(kw)
    return vqgan.VQModel(**args)


def test_converted_vq_reproduces_llamagen_numpy_forward():
    sd = random_state_dict(llamagen_vq_shapes(CH, MULT, NRB, Z, K, D), seed=1)
    model = _model()
    params = convert_vq({"model": sd}, model)  # LlamaGen checkpoints nest it under 'model'
    x = np.random.default_rng(2).uniform(-1, 1, (2, 3, 16, 16))
    lat_ref, idx_ref, rec_ref = llamagen_forward({k: v.astype(np.float64) for k, v in sd.items()},
                                                 x, len(MULT), NRB, GROUPS)
    variables = {"params": jax.tree.map(jnp.asarray, params)}
    xj = jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32)

    @jax.jit  # one compilation for all three paths (eager dispatch is slower here)
    def ours(v, xj, idx):
        lat = model.apply(v, xj, method=vqgan.VQModel.encode_latent)
        rec, q = model.apply(v, xj)
        return lat, rec, q.indices, model.apply(v, idx, method=vqgan.VQModel.decode)

    lat, rec, idx, dec = ours(variables, xj, jnp.asarray(idx_ref, jnp.int32))
    np.testing.assert_allclose(lat, lat_ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(idx, idx_ref)
    assert len(np.unique(idx_ref)) > 3  # the lookup is exercised, not one code everywhere
    np.testing.assert_allclose(rec, rec_ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    # decoding clamps to [-1, 1] (as LlamaGen's and VAR's samplers); training outputs do not
    np.testing.assert_allclose(dec, np.clip(rec_ref, -1, 1).transpose(0, 2, 3, 1), rtol=1e-4,
                               atol=1e-4)
    assert np.abs(rec_ref).max() > 1.0  # the clamp is exercised
    # our default layout ('same' downsampling, no lowest-level attention) is a different net
    with pytest.raises(CheckpointError, match="pad01"):
        convert_vq(sd, _model(downsample="same", attn_at_lowest=False))


def test_converter_names_missing_extra_and_misshaped_keys():
    sd = random_state_dict(llamagen_vq_shapes(CH, MULT, NRB, Z, K, D))
    model = _model()
    params = convert_vq(sd, model)
    n_ckpt = sum(v.size for k, v in sd.items() if k != "quantize.codebook_used")
    assert sum(p.size for p in jax.tree.leaves(params)) == n_ckpt
    shapes = jax.tree.map(lambda s: s.shape, expected_params(model))
    assert jax.tree.map(np.shape, params) == shapes  # every parameter filled, right shape
    key = "decoder.conv_blocks.0.attn.2.k.weight"
    with pytest.raises(CheckpointError, match="lacks 'decoder.conv_blocks.0.attn.2.k.weight'"):
        convert_vq({k: v for k, v in sd.items() if k != key}, model)
    with pytest.raises(CheckpointError, match=r"encoder\.conv_blocks\.0\.downsample\.conv\."
                                              r"weight has shape \(8, 8, 2, 2\)"):
        convert_vq(dict(sd, **{"encoder.conv_blocks.0.downsample.conv.weight":
                               np.zeros((8, 8, 2, 2), np.float32)}), model)
    with pytest.raises(CheckpointError, match=r"entries the model does not: \['encoder\.conv_"
                                              r"blocks\.0\.res\.2\.conv1\.weight'\]"):
        extra = np.zeros((CH, CH, 3, 3), np.float32)  # a third ResBlock the model lacks
        convert_vq(dict(sd, **{"encoder.conv_blocks.0.res.2.conv1.weight": extra}), model)
    with pytest.raises(CheckpointError, match="quantize.embedding.weight has shape"):
        convert_vq(random_state_dict(llamagen_vq_shapes(CH, MULT, NRB, Z, 2 * K, D)), model)


def test_exact_config_holds_llamagen_vq16_parameter_for_parameter():
    """`llamagen.py:exact` is LlamaGen's VQ-16: the tiny variant converts (the forward pass of
    that layout is checked above), and the full one has exactly LlamaGen's parameter count
    (72M; eval_shape, nothing allocated)."""
    spec = DataSpec((32, 32, 3), 256, 10, "image")
    c = llamagen.get_config("tiny,exact")
    fam = vqgan.VQGANFamily(c, spec)
    m = c.model
    sd = random_state_dict(llamagen_vq_shapes(m.ch, tuple(m.ch_mult), m.num_res_blocks,
                                              m.z_channels, m.codebook_size, m.code_dim))
    params = convert_vq(sd, fam.generator)
    assert params["encoder"]["down4_attn0"]["qkv"]["kernel"].shape == (32, 96)
    c = llamagen.get_config("exact")
    c.loss.perceptual_weight = 0.0  # no LPIPS weights file here; the generator is the same
    full = vqgan.VQGANFamily(c, spec).generator
    ours = jax.tree.leaves(jax.tree.map(lambda s: s.size, expected_params(full)))
    theirs = llamagen_vq_shapes(128, (1, 1, 2, 2, 4), 2, 256, 16384, 8)
    n_theirs = sum(int(np.prod(s)) for s in theirs.values())
    assert sum(ours) == n_theirs and 71e6 < n_theirs < 73e6


def test_released_presets_are_the_exact_experiment_configs():
    """The converters build `VQGANSettings.released(name)`; `llamagen.py:exact` (and ',f8',
    'var,exact') are the same nets (the experiment's compute dtype aside)."""
    import dataclasses

    from argen_jax import config_lib

    for arg, name in (("exact", "llamagen_vq16"), ("exact,f8", "llamagen_vq8"),
                      ("var,exact", "var_vqvae")):
        m = config_lib.typed(vqgan.VQGANSettings, llamagen.get_config(arg).model, "model",
                             ignore=("name",))
        released = vqgan.VQGANSettings.released(name)
        assert dataclasses.replace(m, dtype="float32", l2_normalize=None) == \
            dataclasses.replace(released, l2_normalize=None), arg
        assert m.quantizer_kwargs() == released.quantizer_kwargs()
