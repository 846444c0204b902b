"""LlamaGen c2i: causality, cached sampling == full pass (with CFG), the family on a tiny token
file through the shared loop, LlamaGen's parameter counts, and the PyTorch checkpoint
converter against an independent numpy forward pass of LlamaGen's GPT."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import CheckpointError
from argen_jax.models.llamagen import (
    PUBLISHED_PARAMS,
    SIZES,
    LlamaGenFamily,
    ffn_dim,
    llamagen_decoder,
)
from argen_jax.pretrained.torch_llamagen import convert_gpt, unwrap
from argen_jax.sampling.loop import sample_keys
from experiments.llamagen.fashion_mnist import get_config
from tests.model_utils import random_params

V, C, GRID = 12, 3, (3, 4)  # toy codebook, classes, token grid (L = 12)
L = GRID[0] * GRID[1]


def _family(cls_token_num=2, **sample):
    cfg = get_config("tiny")
    cfg.model.cls_token_num = cls_token_num
    cfg.model.width, cfg.model.num_heads, cfg.model.depth = 16, 2, 2
    cfg.sample.update(sample)
    spec = DataSpec((L,), V, C, "tokens", grid=GRID)
    return LlamaGenFamily(cfg, spec)


def _tokens(b=3, seed=1):
    return jax.random.randint(jax.random.PRNGKey(seed), (b, L), 0, V)


def _params(fam, b=3):
    return random_params(fam.model, fam.inputs(_tokens(b), jnp.zeros((b,), jnp.int32)))["params"]


def test_logits_are_causal_through_grad():
    """d logits[t] / d input embedding[s] is nonzero exactly for s <= t (class tokens incl.,
    whose queries and keys LlamaGen's zero rotary factors remove: their values still count)."""
    fam = _family(cls_token_num=2)
    model = fam.model.clone(perturb_embeddings=True)
    ids = fam.inputs(_tokens(2), jnp.array([0, 2]))  # [2, T], T = 2 + L - 1
    t = ids.shape[1]
    variables = random_params(model, ids)

    def per_position(p):
        logits, _ = model.apply({"params": variables["params"], "perturbations": p}, ids)
        return logits.sum(axis=(0, 2))  # [T]

    jac = jax.jit(jax.jacrev(per_position))(variables["perturbations"])["embed"]  # [T, B, T, E]
    seen = np.asarray(jnp.abs(jac).sum(axis=(1, 3)) > 0)
    np.testing.assert_array_equal(seen, np.tril(np.ones((t, t), bool)))


def test_class_tokens_have_zero_queries_and_keys():
    """prefix_rope='zero' (LlamaGen) vs 'identity' differ, and with 'zero' the first class
    token attends uniformly (to itself only), so its output ignores the query weights."""
    fam = _family(cls_token_num=1)
    ids = fam.inputs(_tokens(2), jnp.array([0, 1]))
    params = _params(fam, 2)
    p2 = jax.tree.map(lambda x: x, params)
    p2["block_0"]["attn"]["query"] = params["block_0"]["attn"]["query"] * 3.0

    @jax.jit
    def run(params, p2):
        ident = fam.model.clone(prefix_rope="identity").apply({"params": params}, ids)[0]
        return fam.model.apply({"params": params}, ids)[0], ident, \
            fam.model.apply({"params": p2}, ids)[0]

    zero, ident, zero2 = run(params, p2)
    assert not np.allclose(zero[:, 1:], ident[:, 1:], atol=1e-4)
    np.testing.assert_allclose(zero2[:, 0], zero[:, 0], atol=1e-5)


@pytest.mark.parametrize("cfg_scale,cfg_interval", [(1.0, -1), (3.0, 5)])
def test_greedy_cached_sampling_matches_full_pass(cfg_scale, cfg_interval):
    """top_k=1 sampling through the KV cache (CFG on a doubled batch, guidance only for the
    first cfg_interval + 2 tokens, as LlamaGen counts) picks the argmax of the full, uncached
    forward pass's (guided) logits at every position."""
    fam = _family(cls_token_num=2, top_k=1, cfg_scale=cfg_scale, cfg_interval=cfg_interval)
    b = 4
    params = _params(fam, b)
    labels = jnp.arange(b) % C
    tokens = jax.jit(fam.sample)(params, sample_keys(jax.random.PRNGKey(0), 0, b), labels)
    assert tokens.shape == (b, L) and tokens.dtype == jnp.int32
    cond, uncond = jax.jit(lambda p: (fam.logits(p, tokens, labels),  # [B, L, V]
                                      fam.logits(p, tokens, jnp.full((b,), C))))(params)
    scale = np.where(np.arange(L) < (cfg_interval + 2 if cfg_interval >= 0 else L),
                     cfg_scale, 1.0)
    guided = uncond + scale[None, :, None] * (cond - uncond)
    np.testing.assert_array_equal(np.asarray(tokens), np.asarray(guided.argmax(-1)))


def test_kv_cache_logits_equal_full_pass():
    """prefill(class tokens) + one-token decode steps give the full pass's logits."""
    fam = _family(cls_token_num=2)
    tokens, labels = _tokens(2), jnp.array([1, 2])
    params = _params(fam, 2)
    ids = fam.inputs(tokens, labels)
    full, _ = jax.jit(fam.model.apply)({"params": params}, ids)
    step = jax.jit(lambda ids, c: fam.model.apply({"params": params}, ids, c,
                                                  method=fam.model.extend))
    out, cache = step(ids[:, :2], fam.model.init_cache(2))
    outs = [out]
    for t in range(2, ids.shape[1]):
        out, cache = step(ids[:, t:t + 1], cache)
        outs.append(out)
    np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=2e-5, rtol=1e-5)


def test_token_noise_replaces_inputs_only():
    fam = _family()
    fam.token_noise = 0.5
    tokens = jnp.zeros((64, L), jnp.int32)
    noisy = jax.jit(fam._noisy)(jax.random.PRNGKey(0), tokens)
    frac = float((noisy != 0).mean())
    assert 0.35 < frac < 0.55  # 0.5 * (V - 1) / V of the tokens change


def _write_tokens(path, n_train=96, n_test=24):
    """A learnable toy set: each map is a class-dependent ramp of codes."""
    def maps(n):
        labels = (np.arange(n) % C).astype(np.int32)
        return ((3 * labels[:, None] + np.arange(L)) % V).astype(np.int16), labels

    (tr, trl), (te, tel) = maps(n_train), maps(n_test)
    np.savez(path, train_tokens=tr, train_labels=trl, test_tokens=te, test_labels=tel,
             token_shape=np.array(GRID, np.int32), scales=np.array([GRID[0]], np.int32),
             codebook_size=np.int32(V), multiscale=np.bool_(False))


def test_family_trains_and_samples_through_the_shared_loop(tmp_path):
    """Config -> registry -> token data -> shared training loop: test bits per token fall
    well below the uniform log2(V); guided samples of the trained model are token maps in
    range, mostly the class's ramp."""
    from argen_jax.train.loop import restore_experiment, train

    path, workdir = str(tmp_path / "tok.npz"), str(tmp_path / "w")
    _write_tokens(path)
    cfg = get_config("tiny")
    cfg.data.path = path
    cfg.data.test_limit = 0
    cfg.train.sample_at_end = False
    cfg.sample.cfg_scale = 2.0
    out = train(cfg, workdir)
    assert out["eval/bpd"] < 0.5 * np.log2(V), out  # bits per token (dims = tokens)
    exp, state = restore_experiment(cfg, workdir)
    assert isinstance(exp.family, LlamaGenFamily)
    samples = np.asarray(exp.sample(exp.eval_params(state), 6, seed=0))  # labels k % C
    assert samples.shape == (6, L) and samples.min() >= 0 and samples.max() < V
    ramps = (3 * (np.arange(6) % C)[:, None] + np.arange(L)) % V
    assert (samples == ramps).mean() > 0.5


def test_loss_reports_bits_per_token():
    fam = _family()
    params = _params(fam, 3)
    batch = {"tokens": _tokens(3), "label": jnp.array([0, 1, 2]),
             "mask": jnp.array([1.0, 1.0, 0.0])}
    (loss, m), logits = jax.jit(lambda p: (
        fam.loss(p, batch, jax.random.PRNGKey(0), train=False),
        fam.logits(p, batch["tokens"], batch["label"])))(params)
    assert float(m["num_dims"]) == 2 * L and float(m["num_examples"]) == 2
    nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), batch["tokens"][..., None], -1)
    np.testing.assert_allclose(float(m["nll_sum"]), float(nll[:2].sum()), rtol=1e-5)
    np.testing.assert_allclose(float(loss), float(nll[:2].mean()), rtol=1e-5)


# ------------------------------------------------------------------ published sizes
def test_parameter_counts_match_llamagen():
    """LlamaGen's figures (111M, 343M, 775M, 1.4B, 3.1B) are rounded to 3 and 2 significant
    digits: each count must round to the published figure (ImageNet: 16384 codes, 1000
    classes + the null class, 16x16 tokens). Built with eval_shape: nothing is allocated."""
    for size in SIZES:
        model = llamagen_decoder(ml_collections.ConfigDict({"size": size}), 16384, 1000,
                                 (16, 16))
        shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 2), jnp.int32))
        n = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(nn.unbox(shapes)))
        pub = PUBLISHED_PARAMS[size]
        digits = 2 if pub >= 1e9 else 3
        assert float(f"{n:.{digits}g}") == pub, (size, n, pub)
    assert ffn_dim(768) == 2048 and ffn_dim(3200) == 8704  # LlamaGen's SwiGLU rule


# ------------------------------------------------------------------ checkpoint import
def _llamagen_state_dict(rng, depth, heads, width, ffn, vocab, classes, blocks):
    """Random arrays under LlamaGen's c2i GPT key names and shapes (torch [out, in])."""
    def w(*shape):
        return rng.normal(size=shape).astype(np.float32) * 0.3

    sd = {"tok_embeddings.weight": w(vocab, width),
          "cls_embedding.embedding_table.weight": w(classes + 1, width),
          "norm.weight": 1 + w(width), "output.weight": w(vocab, width),
          "freqs_cis": np.zeros((blocks + 1, width // heads // 2, 2), np.float32)}
    for i in range(depth):
        p = f"layers.{i}."
        sd.update({p + "attention.wqkv.weight": w(3 * width, width),
                   p + "attention.wo.weight": w(width, width),
                   p + "feed_forward.w1.weight": w(ffn, width),
                   p + "feed_forward.w3.weight": w(ffn, width),
                   p + "feed_forward.w2.weight": w(width, ffn),
                   p + "attention_norm.weight": 1 + w(width),
                   p + "ffn_norm.weight": 1 + w(width)})
    return sd


def _reference_forward(sd, labels, tokens, depth, heads, grid, eps=1e-5, base=10000.0):
    """LlamaGen's c2i forward (training form, no dropout), written independently in numpy
    from gpt.py's definitions: interleaved-pair 2-D RoPE with zero factors on the class
    token, fused wqkv, causal softmax attention, RMSNorm, SwiGLU w2(silu(w1 x) * w3 x)."""
    def rms(x, g):
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * g

    x = np.concatenate([sd["cls_embedding.embedding_table.weight"][labels][:, None],
                        sd["tok_embeddings.weight"][tokens[:, :-1]]], 1)  # [B, T, E]
    b, t, e = x.shape
    d = e // heads
    freqs = 1.0 / base ** (np.arange(0, d // 2, 2)[: d // 4] / (d // 2))  # [D/4]
    rows, cols = np.divmod(np.arange(grid * grid), grid)
    ang = np.concatenate([np.outer(rows, freqs), np.outer(cols, freqs)], -1)  # [HW, D/2]
    cos = np.concatenate([np.zeros((1, d // 2)), np.cos(ang)])[:t]  # class token: 0
    sin = np.concatenate([np.zeros((1, d // 2)), np.sin(ang)])[:t]

    def rope(q):  # [B, T, H, D], pairs (2i, 2i+1)
        q0, q1 = q[..., 0::2], q[..., 1::2]
        c, s = cos[None, :, None], sin[None, :, None]
        return np.stack([q0 * c - q1 * s, q1 * c + q0 * s], -1).reshape(q.shape)

    causal = np.tril(np.ones((t, t), bool))
    for i in range(depth):
        p = f"layers.{i}."
        h = rms(x, sd[p + "attention_norm.weight"])
        q, k, v = np.split(h @ sd[p + "attention.wqkv.weight"].T, 3, -1)
        q, k, v = (a.reshape(b, t, heads, d) for a in (q, k, v))
        q, k = rope(q), rope(k)
        s = np.einsum("bthd,bshd->bhts", q, k) / np.sqrt(d)
        s = np.where(causal, s, -np.inf)
        a = np.exp(s - s.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        o = np.einsum("bhts,bshd->bthd", a, v).reshape(b, t, e)
        x = x + o @ sd[p + "attention.wo.weight"].T
        h = rms(x, sd[p + "ffn_norm.weight"])
        g = h @ sd[p + "feed_forward.w1.weight"].T
        x = x + (g / (1 + np.exp(-g)) * (h @ sd[p + "feed_forward.w3.weight"].T)) @ \
            sd[p + "feed_forward.w2.weight"].T
    return rms(x, sd["norm.weight"]) @ sd["output.weight"].T  # [B, L, V]


def test_converted_checkpoint_reproduces_llamagen_logits():
    depth, heads, width, grid = 2, 2, 16, 3
    ffn = ffn_dim(width, None, 8)
    rng = np.random.default_rng(0)
    sd = _llamagen_state_dict(rng, depth, heads, width, ffn, V, C, grid * grid)
    wrapped = {"model": {"_orig_mod." + k: v for k, v in sd.items()}}  # as saved by training
    cfg = get_config("tiny")
    cfg.model.update(width=width, depth=depth, num_heads=heads, multiple_of=8)
    fam = LlamaGenFamily(cfg, DataSpec((grid * grid,), V, C, "tokens", grid=(grid, grid)))
    params = convert_gpt(wrapped, fam.model)
    tokens = rng.integers(0, V, (3, grid * grid))
    labels = np.array([0, 2, 3])  # 3 = the null class
    ours = jax.jit(fam.logits)(params, jnp.asarray(tokens), jnp.asarray(labels))
    ref = _reference_forward(sd, labels, tokens, depth, heads, grid)
    np.testing.assert_allclose(np.asarray(ours), ref, atol=2e-4, rtol=2e-4)

    bad = dict(unwrap(wrapped))
    del bad["layers.1.feed_forward.w3.weight"]
    with pytest.raises(CheckpointError, match="w3"):
        convert_gpt(bad, fam.model)
    bad = dict(sd, **{"layers.0.attention.wqkv.weight": np.zeros((40, width), np.float32)})
    with pytest.raises(CheckpointError, match="wqkv"):
        convert_gpt(bad, fam.model)
    with pytest.raises(CheckpointError, match="layers.2"):
        convert_gpt(_llamagen_state_dict(rng, 3, heads, width, ffn, V, C, 9), fam.model)
