"""VAR VQVAE converter (argen_jax/pretrained/torch_var_vq.py): key coverage and errors, and the
converted model against an independent NumPy forward pass of VAR's VQVAE on the torch-layout
arrays. VAR's encoder / decoder are LlamaGen's net under other key names, so the reference
renames the keys (here, independently of the converter) and reuses the LlamaGen NumPy net;
the multi-scale quantizer (area pooling, PyTorch bicubic, VAR's phi ticks) is written out."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError
from argen_jax.models import vqgan
from argen_jax.pretrained.torch_var_vq import convert_vqvae
from experiments.tokenizer import llamagen
from tests.test_llamagen_vq_convert import (
    _conv_k,
    llamagen_vq_shapes,
    random_state_dict,
    ref_decode,
    ref_encode,
)

CH, MULT, NRB, K, D, GROUPS = 8, (1, 2), 1, 16, 4, 4
SCALES = (1, 2, 3, 4, 6, 8)  # VAR's phi ticks pick phi 3 for scale 4; an even split, phi 2


def var_state_dict(seed=0):
    """VAR's key names (models/basic_vae.py, quant.py) on random arrays, and the same arrays
    under LlamaGen's names (for the reference net)."""
    shapes = llamagen_vq_shapes(CH, MULT, NRB, D, K, D)
    shapes["quant_conv.weight"] = shapes["post_quant_conv.weight"] = (D, D, 3, 3)
    lg = random_state_dict(shapes, seed)
    del lg["quantize.codebook_used"]
    rng = np.random.default_rng(seed + 1)
    lg["quantize.embedding.weight"] = rng.normal(0, 0.5, (K, D)).astype(np.float32)
    n = len(MULT)

    def rename(key):  # LlamaGen name -> VAR name
        parts = key.split(".")
        if parts[1] == "conv_blocks":  # LlamaGen decoder block b is level n - 1 - b
            lvl = int(parts[2]) if parts[0] == "encoder" else n - 1 - int(parts[2])
            stage = "down" if parts[0] == "encoder" else "up"
            kind = {"res": "block"}.get(parts[3], parts[3])
            parts = [parts[0], stage, str(lvl), kind] + parts[4:]
        elif parts[1] == "mid":
            parts = [parts[0], "mid", ("block_1", "attn_1", "block_2")[int(parts[2])]] + parts[3:]
        return ".".join(parts)

    var = {rename(k): v for k, v in lg.items() if k.split(".")[-2] not in ("q", "k", "v")}
    for key in [k[: -len(".q.weight")] for k in lg if k.endswith(".q.weight")]:
        for t in ("weight", "bias"):  # VAR's one qkv conv: q, k, v stacked on out channels
            var[rename(f"{key}.qkv.{t}")] = np.concatenate([lg[f"{key}.{m}.{t}"] for m in "qkv"])
    for k in range(4):
        var[f"quantize.quant_resi.qresi_ls.{k}.weight"] = rng.normal(
            0, 1 / np.sqrt(9 * D), (D, D, 3, 3)).astype(np.float32)
        var[f"quantize.quant_resi.qresi_ls.{k}.bias"] = rng.normal(0, 0.1, (D,)).astype(
            np.float32)
    var["quantize.ema_vocab_hit_SV"] = np.zeros((len(SCALES), K), np.float32)  # skipped
    return var, lg


def _area(x, p):  # F.interpolate(mode='area') = adaptive average pooling, NCHW
    h = x.shape[2]
    out = np.zeros(x.shape[:2] + (p, p))
    for i in range(p):
        for j in range(p):
            a, b = i * h // p, -(-(i + 1) * h // p)
            c, d = j * h // p, -(-(j + 1) * h // p)
            out[:, :, i, j] = x[:, :, a:b, c:d].mean((2, 3))
    return out


def _bicubic_1d(x, size, axis, a=-0.75):  # torch bicubic, align_corners=False, one axis
    x = np.moveaxis(x, axis, -1)
    n = x.shape[-1]
    out = np.zeros(x.shape[:-1] + (size,))
    for i in range(size):
        src = (i + 0.5) * n / size - 0.5
        f = int(np.floor(src))
        t = src - f
        for off in (-1, 0, 1, 2):
            d = abs(t - off)
            w = ((a + 2) * d - (a + 3)) * d * d + 1 if d <= 1 else \
                ((a * d - 5 * a) * d + 8 * a) * d - 4 * a
            out[..., i] += w * x[..., min(max(f + off, 0), n - 1)]
    return np.moveaxis(out, -1, axis)


def _phi(var, s, h):
    ticks = np.linspace(1 / 12, 11 / 12, 4)
    k = int(np.argmin(np.abs(ticks - s / (len(SCALES) - 1))))
    return 0.5 * h + 0.5 * _conv_k(var, f"quantize.quant_resi.qresi_ls.{k}", h)


def var_forward(var, lg, x):
    """-> per-scale indices [B, p, p], f_hat NCHW, reconstruction NCHW (VAR's
    f_to_idxBl_or_fhat + decoder)."""
    f = ref_encode(lg, x, len(MULT), NRB, GROUPS)
    emb = var["quantize.embedding.weight"]
    rest, f_hat, out, size = f.copy(), np.zeros_like(f), [], f.shape[-1]
    for s, p in enumerate(SCALES):
        z = (_area(rest, p) if p != size else rest).transpose(0, 2, 3, 1)
        d = (z**2).sum(-1, keepdims=True) + (emb**2).sum(-1) - 2 * z @ emb.T
        idx = d.argmin(-1)
        h = emb[idx].transpose(0, 3, 1, 2)
        if p != size:
            h = _bicubic_1d(_bicubic_1d(h, size, 2), size, 3)
        h = _phi(var, s, h)
        f_hat, rest = f_hat + h, rest - h
        out.append(idx)
    return out, f_hat, ref_decode(lg, f_hat, len(MULT), NRB, GROUPS)


def _family():
    c = llamagen.get_config("tiny,var,exact")
    c.model.update(ch=CH, ch_mult=MULT, num_res_blocks=NRB, z_channels=D, code_dim=D,
                   codebook_size=K, norm_groups=GROUPS, scales=SCALES, pad_to=0)
    return vqgan.VQGANFamily(c, DataSpec((16, 16, 3), 256, 10, "image"))


def test_converted_vqvae_reproduces_var_numpy_forward():
    var, lg = var_state_dict(seed=3)
    fam = _family()
    model = fam.generator
    params = convert_vqvae(var, model)
    x = np.random.default_rng(4).uniform(-1, 1, (2, 3, 16, 16))
    f64 = lambda sd: {k: v.astype(np.float64) for k, v in sd.items()}  # noqa: E731
    idx_ref, fhat_ref, rec_ref = var_forward(f64(var), f64(lg), x)
    v = {"params": jax.tree.map(jnp.asarray, params)}

    @jax.jit
    def ours(v, x, idx):
        return (model.apply(v, x, method=vqgan.VQModel.encode),
                model.apply(v, idx, method=vqgan.VQModel.latent_from_indices),
                model.apply(v, idx, method=vqgan.VQModel.decode))

    idx_in = [jnp.asarray(i, jnp.int32) for i in idx_ref]
    idx, fhat, rec = ours(v, jnp.asarray(x.transpose(0, 2, 3, 1), jnp.float32), idx_in)
    for s, (a, b) in enumerate(zip(idx, idx_ref, strict=True)):
        np.testing.assert_array_equal(a, b, err_msg=f"scale {s}")
    assert len(np.unique(idx_ref[-1])) > 3
    np.testing.assert_allclose(fhat, fhat_ref.transpose(0, 2, 3, 1), rtol=1e-4, atol=1e-4)
    # VQModel.decode clamps to [-1, 1] as VAR's fhat_to_img does
    np.testing.assert_allclose(rec, np.clip(rec_ref, -1, 1).transpose(0, 2, 3, 1), rtol=1e-4,
                               atol=1e-4)


def test_var_converter_errors_and_coverage():
    var, _ = var_state_dict()
    fam = _family()
    params = convert_vqvae(var, fam.generator)
    assert sum(p.size for p in jax.tree.leaves(params)) == \
        sum(v.size for k, v in var.items() if k != "quantize.ema_vocab_hit_SV")
    with pytest.raises(CheckpointError, match="lacks 'quantize.quant_resi.qresi_ls.3.bias'"):
        convert_vqvae({k: v for k, v in var.items()
                       if k != "quantize.quant_resi.qresi_ls.3.bias"}, fam.generator)
    with pytest.raises(CheckpointError, match=r"decoder\.up\.1\.attn\.0\.qkv\.weight has shape"):
        convert_vqvae(dict(var, **{"decoder.up.1.attn.0.qkv.weight":
                                   np.zeros((16, 16, 1, 1), np.float32)}), fam.generator)
    with pytest.raises(CheckpointError, match=r"does not: \['encoder\.down\.0\.attn\.0\.qkv"):
        convert_vqvae(dict(var, **{"encoder.down.0.attn.0.qkv.weight": np.zeros(1)}),
                      fam.generator)
    c = llamagen.get_config("tiny,var")  # not exact: our default multi-scale layout
    with pytest.raises(CheckpointError, match="phi_schedule='even'"):
        convert_vqvae(var, vqgan.VQGANFamily(c, DataSpec((32, 32, 3), 256, 10,
                                                         "image")).generator)
