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

from argen_jax.data.pipeline import DataSpec
from argen_jax.layers import quantizer as qlib
from argen_jax.models import var as varlib
from argen_jax.models import vqgan
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
    tok = vqgan.Tokenizer(tfam, tparams)
    c = fashion_mnist.get_config("tiny")
    c.data.path, c.data.tokenizer = "", ""
    c.model.depth, c.model.width, c.model.num_heads = 2, 32, 2
    spec = DataSpec((L,), tfam.codebook_size, 10, "tokens", grid=(8, 8), scales=SCALES)
    fam = varlib.VARFamily(c, spec)
    fam.attach_tokenizer(tok)
    tokens = jax.random.randint(jax.random.PRNGKey(5), (4, L), 0, tfam.codebook_size)
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
