"""VAR (argen_jax/models/var.py): block-causality through jax.grad, the cached scale-by-scale
sampler against the full pass (with and without CFG, with known tokens), the teacher-forcing
inputs against the tokenizer's reconstruction path, VAR's published parameter counts and
the PyTorch checkpoint converter."""
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError, ConfigError
from argen_jax.layers import quantizer as qlib
from argen_jax.models import var as varlib
from argen_jax.models import vqgan
from argen_jax.models.tokenizer import Tokenizer
from argen_jax.pretrained import torch_var
from argen_jax.pretrained.layouts import var_shapes
from argen_jax.sampling.loop import sample_keys
from argen_jax.sampling.processors import cfg_combine, cfg_scale_schedule
from experiments.tokenizer import small
from experiments.var import fashion_mnist
from tests.model_utils import random_params

SCALES = (1, 2, 4, 8)  # the tiny multi-scale tokenizer's maps
L = sum(p * p for p in SCALES)  # 85 tokens
IMAGE_SPEC = DataSpec((28, 28, 1), 256, 10, "image")


@pytest.fixture(scope="module")
def setup():
    """A random tiny multi-scale tokenizer (random params: only its quantizer runs here), a
    tiny VAR family on its tokens, VAR params with random normal values (AdaLN gammas are not
    ~0) and a batch of random token maps."""
    tfam = vqgan.VQGANFamily(small.get_config("tiny,multiscale"), IMAGE_SPEC)
    x = jnp.zeros((1, 32, 32, 1))
    tparams = {"generator": random_params(tfam.generator, x, jnp.ones(1), seed=1)["params"]}
    tok = Tokenizer.of(tfam, tparams)
    c = fashion_mnist.get_config("tiny")
    c.data.path, c.data.tokenizer = "", ""
    c.model.depth, c.model.width, c.model.num_heads = 2, 32, 2
    spec = DataSpec((L,), tok.codebook_size, 10, "tokens", grid=(8, 8), scales=SCALES)
    fam = varlib.VARFamily(c, spec, tokenizer=tok)
    tokens = jax.random.randint(jax.random.PRNGKey(5), (4, L), 0, tok.codebook_size)
    batch = {"tokens": tokens, "label": jnp.array([0, 3, 7, 9], jnp.int32),
             "mask": jnp.ones(4)}
    x_tf = jnp.zeros((4, L - 1, tok.code_dim))
    vparams = random_params(fam.model, batch["label"], x_tf, scale=0.3)["params"]
    params = {"var": vparams, "tokenizer": varlib.tokenizer_subtree(tparams)}
    return fam, tok, params, batch


# ----------------------------------------------------------------------------- masks
def test_block_causal_through_grad(setup):
    """The dependency matrix d logits[i] / d input[j] (one jacrev) is exactly block-causal:
    zero for every finer scale, non-zero for every input of the same or a coarser scale (so
    inside a scale every token sees every other); scale 0 depends on no input."""
    fam, _, params, batch = setup
    x_tf = jax.random.normal(jax.random.PRNGKey(2), (2, L - 1, fam.code_dim))
    labels = batch["label"][:2]
    proj = jax.random.normal(jax.random.PRNGKey(3), (fam.codebook_size,))

    def out(x):  # [L]: a random projection of every position's logits, summed over batch
        logits = fam.model.apply({"params": params["var"]}, labels, x)
        return jnp.sum(logits @ proj, axis=0)

    dep = np.asarray(jnp.abs(jax.jit(jax.jacrev(out))(x_tf)).sum((1, 3)))  # [L, L - 1]
    blk = fam.model.block_ids()
    expected = blk[1:][None, :] <= blk[:, None]  # input j sits at position j + 1
    np.testing.assert_array_equal(dep > 0, expected)
    assert expected[-1].all() and not expected[0].any()


# ----------------------------------------------------------------------------- sampler
def test_cached_sampler_logits_equal_full_pass(setup):
    """The scale-by-scale KV-cache sampler under CFG (linear ramp), top-k and known tokens:
    its logits (built from its own next-scale inputs) equal the ramp-combined conditional and
    unconditional teacher-forced full passes on the tokens it returned; known tokens are
    kept; drawn tokens respect top-k."""
    fam, _, params, batch = setup
    labels = batch["label"]
    keys = sample_keys(jax.random.PRNGKey(0), 0, 4)
    known = batch["tokens"]
    known_mask = jnp.zeros((4, L), bool).at[:, : 1 + 4 + 8].set(True)  # scales 0, 1, half 2
    gen = jax.jit(lambda p, k, lab, kt, km: fam.generate(
        p, k, lab, kt, km, cfg_scale=3.0, top_k=5, return_logits=True))
    toks, logits = gen(params, keys, labels, known, known_mask)
    chex.assert_shape(toks, (4, L))
    full = jax.jit(fam.logits)
    cond = full(params, {"tokens": toks, "label": labels})
    unc = full(params, {"tokens": toks, "label": jnp.full_like(labels, fam.null_class)})
    ramp = cfg_scale_schedule(3.0, len(SCALES), "linear")
    assert float(ramp(0)) == 1.0 and float(ramp(len(SCALES) - 1)) == 3.0
    scale_of_pos = fam.model.block_ids()
    ramped = jnp.asarray([float(ramp(s)) for s in scale_of_pos])[None, :, None]
    np.testing.assert_allclose(logits, cfg_combine(cond, unc, ramped), atol=5e-4, rtol=5e-4)
    # known tokens are kept; the rest is drawn, among the 5 most likely guided logits
    np.testing.assert_array_equal(np.where(known_mask, toks, -1), np.where(known_mask, known, -1))
    assert int(jnp.sum(toks[:, 13:] != known[:, 13:])) > 0
    free = ~np.asarray(known_mask)
    kth = jax.lax.top_k(logits, 5)[0][..., -1]
    picked = jnp.take_along_axis(logits, toks[..., None], -1)[..., 0]
    assert bool(jnp.all((picked >= kth)[free]))


def test_bf16_kv_cache_logits_stay_within_bf16_precision(setup):
    """sample.kv_cache_dtype='bfloat16' reaches VAR's cache: with every token known (teacher
    forcing: both caches see the same tokens) the logits stay within 2 * 2^-8 * max|logits|
    of the float32 cache's (the bound of tests/test_transformer.py's bf16 cache test)."""
    fam, _, params, batch = setup
    keys = sample_keys(jax.random.PRNGKey(0), 0, 4)
    known = jnp.ones((4, L), bool)
    gen = jax.jit(lambda p, dtype: fam.generate(p, keys, batch["label"], batch["tokens"], known,
                                                return_logits=True, kv_cache_dtype=dtype)[1],
                  static_argnums=1)
    ref, low = gen(params, ""), gen(params, "bfloat16")
    err, scale = float(jnp.abs(low - ref).max()), float(jnp.abs(ref).max())
    assert 0 < err <= 2 * 2.0 ** -8 * scale, (err, scale)


# ----------------------------------------------------------------------------- tokenizer path
def test_teacher_forcing_matches_tokenizer_reconstruction(setup):
    fam, tok, params, batch = setup
    maps = fam.token_maps(batch["tokens"])
    tf = fam.teacher_forcing_inputs(params, batch["tokens"])  # [B, L - 1, D]
    chex.assert_shape(tf, (4, L - 1, tok.code_dim))
    start = 0
    for s in range(1, len(SCALES)):
        # input of scale s = the latent the tokenizer rebuilds from scales < s, pooled to p_s
        rebuilt = tok.latent_from_indices(maps[:s])  # [B, 8, 8, D]
        want = qlib.downsample(rebuilt, SCALES[s]).reshape(4, -1, tok.code_dim)
        n = SCALES[s] ** 2
        np.testing.assert_allclose(tf[:, start:start + n], want, atol=1e-5, rtol=1e-5)
        start += n
    # the sampler's path: summed per-scale contributions, pooled to the next scale
    f_hat = 0.0
    for s in range(len(SCALES)):
        f_hat = f_hat + tok.embed_scale(s, maps[s])
        if s + 1 < len(SCALES):
            n = SCALES[s + 1] ** 2
            lo = sum(p * p for p in SCALES[1:s + 1])
            np.testing.assert_allclose(tok.next_scale_input(f_hat, s + 1).reshape(4, n, -1),
                                       tf[:, lo:lo + n], atol=1e-5, rtol=1e-5)
    # ... whose sum over all scales is the latent the tokenizer decodes
    np.testing.assert_allclose(f_hat, tok.latent_from_indices(maps), atol=1e-5)


def test_loss_metrics_per_scale(setup):
    fam, _, params, batch = setup
    loss, m = fam.loss(params, dict(batch, mask=jnp.array([1.0, 1.0, 1.0, 0.0])),
                       jax.random.PRNGKey(0), False)
    assert float(m["num_examples"]) == 3.0 and float(m["num_dims"]) == 3.0 * L
    per_scale = sum(float(m[f"loss_scale{s}_sum"]) * SCALES[s] ** 2
                    for s in range(len(SCALES)))
    np.testing.assert_allclose(per_scale, float(m["nll_sum"]), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(m["nll_sum"]) / (3 * L), rtol=1e-5)
    assert all(0.0 <= float(m[f"acc_scale{s}_sum"]) <= 3.0 for s in range(len(SCALES)))


def test_without_a_tokenizer_init_and_decoding_name_data_tokenizer(setup):
    """The tokenizer is given to the constructor (`registry.build_family` loads it from
    data.tokenizer); without one, VAR's init and decoding are one-line ConfigErrors."""
    fam, _, _, batch = setup
    bare = varlib.VARFamily(fam.config, fam.spec)
    for call in (lambda: bare.init(jax.random.PRNGKey(0), batch),
                 lambda: bare.to_images(np.zeros((1, L), np.int32))):
        with pytest.raises(ConfigError, match="set data.tokenizer") as e:
            call()
        assert "\n" not in str(e.value)


# ----------------------------------------------------------------------------- sizes
def expected_params(depth: int) -> int:
    """VAR's parameter count from the shapes in models/var.py + basic_var.py (non-shared
    AdaLN): per block mat_qkv 3C^2, q/v biases 2C, scale_mul H, proj C^2 + C, fc1 4C^2 + 4C,
    fc2 4C^2 + C, ada_lin 6C^2 + 6C; plus word_embed, class_emb, pos_start, pos_1LC,
    lvl_embed, head_nm.ada_lin and head."""
    cfg = varlib.depth_config(depth)
    c, h, v = cfg["width"], cfg["num_heads"], cfg["vocab_size"]
    seq = sum(p * p for p in cfg["patch_nums"])
    block = 18 * c * c + 14 * c + h
    rest = (cfg["code_dim"] * c + c) + (cfg["num_classes"] + 1) * c + c + seq * c \
        + len(cfg["patch_nums"]) * c + (2 * c * c + 2 * c) + (c * v + v)
    return depth * block + rest


@pytest.mark.parametrize("depth", [16, 20, 24, 30])
def test_depth_configs_match_published_parameter_counts(depth):
    """Built abstractly (jax.eval_shape): exactly VAR's module shapes, and within 5% of the
    README's #params (310M, 600M, 1.0B, 2.0B are rounded to two significant digits, so a
    count that rounds to them lies within 5%)."""
    m = varlib.VARTransformer(**varlib.depth_config(depth))
    shapes = jax.eval_shape(m.init, jax.random.PRNGKey(0), jnp.zeros((1,), jnp.int32),
                            jnp.zeros((1, m.seq_len - 1, 32)))
    n = sum(math.prod(x.shape) for x in jax.tree.leaves(shapes))
    assert n == expected_params(depth)
    published = varlib.PUBLISHED_PARAMS[depth]
    assert abs(n - published) / published < 0.05, (depth, n)


# ----------------------------------------------------------------------------- converter
def _random_var_state_dict(rng, c=16, heads=2, depth=2, vocab=12, cvae=4, classes=3,
                           patch_nums=(1, 2, 3)):
    """Random arrays with the key names and shapes of VAR's models/var.py state dict."""
    shapes = var_shapes(depth, c, vocab, cvae, classes, patch_nums, heads)
    sd = {k: (rng.normal(size=s) * 0.3).astype(np.float32) for k, s in shapes.items()}
    seq = sum(p * p for p in patch_nums)
    sd["attn_bias_for_masking"] = np.zeros((1, 1, seq, seq), np.float32)  # a buffer
    return sd


def _reference_forward(sd, labels, x_tf, patch_nums, heads, eps=1e-6):
    """VAR's forward written in numpy on the PyTorch layout (x @ W.T + b), independently of
    the flax modules."""
    def lin(x, name):
        return x @ sd[name + ".weight"].T + sd.get(name + ".bias", 0.0)

    def ln(x):
        return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + eps)

    def silu(x):
        return x / (1.0 + np.exp(-x))

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))

    c = sd["class_emb.weight"].shape[1]
    cond = sd["class_emb.weight"][labels]  # [B, C]
    sos = cond[:, None] + sd["pos_start"]
    x = np.concatenate([sos, lin(x_tf, "word_embed")], 1)
    lvl = np.repeat(np.arange(len(patch_nums)), [p * p for p in patch_nums])
    x = x + sd["lvl_embed.weight"][lvl] + sd["pos_1LC"][0]
    allowed = lvl[None, :] <= lvl[:, None]
    b, n = x.shape[:2]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    for i in range(depth):
        p = f"blocks.{i}."
        g1, g2, s1, s2, t1, t2 = np.split(lin(silu(cond), p + "ada_lin.1")[:, None], 6, -1)
        h = ln(x) * (1 + s1) + t1
        bias = np.concatenate([sd[p + "attn.q_bias"], np.zeros(c), sd[p + "attn.v_bias"]])
        qkv = (h @ sd[p + "attn.mat_qkv.weight"].T + bias).reshape(b, n, 3, heads, -1)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
        temp = np.exp(np.minimum(sd[p + "attn.scale_mul_1H11"].reshape(heads), np.log(100)))
        q = q / np.linalg.norm(q, axis=-1, keepdims=True) * temp[:, None]
        k = k / np.linalg.norm(k, axis=-1, keepdims=True)
        att = np.where(allowed, np.einsum("bihd,bjhd->bhij", q, k), -np.inf)
        att = np.exp(att - att.max(-1, keepdims=True))
        att = att / att.sum(-1, keepdims=True)
        o = np.einsum("bhij,bjhd->bihd", att, v).reshape(b, n, c)
        x = x + lin(o, p + "attn.proj") * g1
        h = ln(x) * (1 + s2) + t2
        x = x + lin(gelu(lin(h, p + "ffn.fc1")), p + "ffn.fc2") * g2
    scale, shift = np.split(lin(silu(cond), "head_nm.ada_lin.1")[:, None], 2, -1)
    return lin(ln(x) * (1 + scale) + shift, "head")


def test_converter_matches_reference_forward():
    rng = np.random.default_rng(0)
    patch_nums = (1, 2, 3)
    sd = _random_var_state_dict(rng, patch_nums=patch_nums)
    params, cfg = torch_var.convert_var_state_dict(sd, patch_nums=patch_nums)
    assert cfg["depth"] == 2 and cfg["num_heads"] == 2 and cfg["attn_l2_norm"]
    model = varlib.VARTransformer(**cfg)
    labels = np.array([0, 3])
    x_tf = rng.normal(size=(2, 13, 4)).astype(np.float32)
    abstract = jax.eval_shape(model.init, jax.random.PRNGKey(0), labels, x_tf)["params"]
    chex.assert_trees_all_equal_shapes(nn.unbox(abstract), params)
    got = model.apply({"params": params}, labels, x_tf)
    want = _reference_forward(sd, labels, x_tf, patch_nums, heads=2)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)
    # torch tensors are accepted too (duck-typed: CI has no torch; .detach().cpu().float()
    # .numpy() is the tensor API to_numpy uses)
    class Tensor:
        def __init__(self, a):
            self.a = a

        def detach(self):
            return self

        cpu = float = detach

        def numpy(self):
            return self.a

    p2, _ = torch_var.convert_var_state_dict({k: Tensor(v) for k, v in sd.items()},
                                             patch_nums=patch_nums)
    chex.assert_trees_all_equal(p2, params)
    with pytest.raises(CheckpointError, match="patch_nums"):
        torch_var.convert_var_state_dict(sd)  # ImageNet scales do not fit this pos_1LC
    with pytest.raises(CheckpointError, match="not understood"):
        torch_var.convert_var_state_dict(dict(sd, extra=np.zeros(1)), patch_nums=patch_nums)
