"""The Llama decoder: causality, cached decoding == full pass, no retracing, the token sampler
and its logit processors (top-k / top-p / temperature / CFG), and the igpt family."""
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.data.pipeline import DataSpec
from argen_jax.models.igpt import IGPTFamily
from argen_jax.models.transformer import Decoder, decoder_steps
from argen_jax.sampling.loop import LoopState, autoregressive_scan, sample_keys
from argen_jax.sampling.processors import (
    categorical_draw,
    cfg_combine,
    cfg_scale_schedule,
    process_logits,
    top_k_filter,
    top_p_filter,
)
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sampling.tokens import sample_tokens
from experiments.igpt.mnist import get_config
from tests.model_utils import random_params

V = 16  # vocabulary of the toy decoders


def _decoder(**kw):
    cfg = dict(vocab_size=V, num_classes=3, max_len=8, width=16, depth=2, num_heads=4,
               num_kv_heads=2, mlp_dim=32)
    cfg.update(kw)
    return Decoder(**cfg)


def _ids(b=2, t=8, seed=1):
    ids = jax.random.randint(jax.random.PRNGKey(seed), (b, t), 0, V)
    return ids.at[:, 0].set(V + jnp.arange(b) % 3)  # a class token first


def _init(model, ids):
    return random_params(model, ids)


def test_decoder_is_causal_through_grad():
    model = _decoder(perturb_embeddings=True)
    ids = _ids()
    variables = _init(model, ids)
    params, perturb = variables["params"], variables["perturbations"]

    def per_position(p):  # [T]: summed logits of each position
        logits, _ = model.apply({"params": params, "perturbations": p}, ids)
        return logits.sum(axis=(0, 2))

    jac = jax.jit(jax.jacrev(per_position))(perturb)["embed"]  # [T, B, S, E]
    seen = np.asarray(jnp.abs(jac).sum(axis=(1, 3)) > 0)  # [T, S]
    np.testing.assert_array_equal(seen, np.tril(np.ones((8, 8), bool)))


@pytest.mark.parametrize("kind", ["1d_gqa", "2d_prefix", "block_causal", "chunked"])
def test_prefill_and_decoding_equal_full_pass(kind):
    """prompt of 3 through `extend`, then `extend` again (1 token, or whole blocks for the
    block-causal model) gives the full forward pass's logits (f32). 'chunked' reads the
    filled cache slots 3 at a time (several chunks, the last one clamped to the cache end)."""
    if kind == "1d_gqa":
        model, steps = _decoder(rope="1d", num_kv_heads=1), [(0, 3)] + [(t, 1) for t in range(3, 8)]
    elif kind == "chunked":
        model = _decoder(rope="1d", num_kv_heads=1, decode_chunk=3)
        steps = [(0, 3)] + [(t, 1) for t in range(3, 8)]
    elif kind == "2d_prefix":
        model = _decoder(rope="2d", grid=(3, 3), num_prefix=1, num_kv_heads=None)
        steps = [(0, 3)] + [(t, 1) for t in range(3, 8)]
    else:
        model = _decoder(rope="none", block_sizes=(1, 2, 3, 2))
        steps = [(0, 1), (1, 2), (3, 3), (6, 2)]
    ids = _ids()
    variables = {"params": _init(model, ids)["params"]}

    @jax.jit
    def run(variables):
        full, _ = model.apply(variables, ids)
        cache = model.init_cache(ids.shape[0])
        outs = []
        for start, n in steps:
            logits, cache = model.apply(variables, ids[:, start:start + n], cache,
                                        method=Decoder.extend)
            outs.append(logits)
        return full, jnp.concatenate(outs, axis=1), cache

    full, cached, cache = run(variables)
    np.testing.assert_allclose(cached, full, atol=2e-5, rtol=1e-5)
    assert all(int(c.index) == 8 for c in cache)
    if kind == "block_causal":  # and it really is block-causal: position 1 sees position 2
        other = ids.at[:, 2].set((ids[:, 2] + 1) % V)
        changed, _ = jax.jit(model.apply)(variables, other)
        assert float(jnp.abs(changed[:, 1] - full[:, 1]).max()) > 1e-6
        np.testing.assert_allclose(changed[:, 0], full[:, 0], atol=1e-6)


def test_decode_step_compiles_once():
    model = _decoder()
    ids = _ids()
    variables = {"params": _init(model, ids)["params"]}

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(variables, tok, cache):
        return model.apply(variables, tok, cache, method=Decoder.extend)

    cache = model.init_cache(2)
    for t in range(4):
        logits, cache = step(variables, ids[:, t:t + 1], cache)
    assert int(cache[0].index) == 4
    chex.assert_shape(logits, (2, 1, V))


def test_kv_cache_sampler_equals_naive_sampler():
    """The scan sampler with the KV cache draws exactly the tokens of the naive sampler that
    re-runs the whole prefix each step (same per-sample keys)."""
    model = _decoder(max_len=8)
    ids = _ids()
    variables = {"params": _init(model, ids)["params"]}
    keys = sample_keys(jax.random.PRNGKey(3), 0, 2)
    prompt = ids[:, :1]  # the class token

    @jax.jit
    def both(variables):
        logits_fn = lambda tok, c: model.apply(variables, tok, c, method=Decoder.extend)
        cached, _ = sample_tokens(logits_fn, model.init_cache(2), prompt, 7, keys)

        def naive_step(seq, cache, t):  # seq: [B, 8] input ids, re-run in full every step
            logits, _ = model.apply(variables, seq)
            return jax.lax.dynamic_index_in_dim(logits, t, axis=1, keepdims=False), cache

        def write(seq, x, t):
            return jax.lax.dynamic_update_slice_in_dim(seq, x[:, None], t + 1, axis=1)

        seq = jnp.zeros((2, 8), jnp.int32).at[:, 0].set(prompt[:, 0])
        state, draws = autoregressive_scan(naive_step, categorical_draw(), write,
                                           LoopState(seq, None, keys), 7)
        return cached, draws.T

    cached, naive = both(variables)
    np.testing.assert_array_equal(cached, naive)
    assert cached.min() >= 0 and cached.max() < V


@pytest.mark.parametrize("decode_chunk", [256, 4])  # whole-cache attention, chunked prefix
def test_bf16_kv_cache_logits_stay_within_bf16_precision(decode_chunk):
    """sample.kv_cache_dtype='bfloat16': the cached sampler's logits (teacher-forced, so both
    caches see the same tokens) stay within 2 * 2^-8 * max|logits| of the float32 cache's.

    Keys and values rounded to bf16 carry a relative error of at most 2^-9 each; at this
    model's scale (width 16, weights N(0, 0.3^2)) the measured worst case over 5 seeds and
    both attention paths is 0.71 * 2^-8 * max|logits| (seed 0: 0.37), so the bound is about
    three times the worst measurement: a bf16 cache costs about bf16's own precision at the
    logits' scale. The default ('' -> the compute dtype, float32 here) is the cache every
    other test uses, unchanged."""
    model = _decoder(max_len=9, decode_chunk=decode_chunk)
    params = _init(model, _ids(t=9))["params"]
    forced = jax.random.randint(jax.random.PRNGKey(0), (2, 8), 0, V)
    bf16 = SamplingSettings(kv_cache_dtype="bfloat16")
    assert SamplingSettings().cache_dtype is None and bf16.cache_dtype == jnp.bfloat16

    @functools.partial(jax.jit, static_argnums=1)
    def teacher_forced(params, cache_dtype):  # the sampler's steps, fed `forced`
        steps = decoder_steps(model, params, jnp.array([1, 2]), 8, cache_dtype=cache_dtype)
        seq, cache, out = steps.seq, steps.cache, []
        for t in range(8):
            logits, cache = steps.step_fn(seq, cache, t)
            out.append(logits)
            seq = steps.write_fn(seq, forced[:, t], t)
        return jnp.stack(out, 1), cache[0].k

    ref, ref_keys = teacher_forced(params, SamplingSettings().cache_dtype)
    low, low_keys = teacher_forced(params, bf16.cache_dtype)
    assert ref_keys.dtype == jnp.float32 and low_keys.dtype == jnp.bfloat16
    err, scale = float(jnp.abs(low - ref).max()), float(jnp.abs(ref).max())
    assert 0 < err <= 2 * 2.0 ** -8 * scale, (err, scale)


# ----------------------------------------------------------------------------- processors
def test_top_k_and_top_p_keep_exact_support():
    logits = jnp.log(jnp.array([[0.05, 0.4, 0.1, 0.3, 0.15]]))
    kept = lambda lg: np.asarray(lg > -1e29)[0]
    np.testing.assert_array_equal(kept(top_k_filter(logits, 2)), [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(kept(top_k_filter(logits, 0)), [1] * 5)
    # p=0.7: 0.4 + 0.3 reaches 0.7 -> {1, 3}; p=0.71 needs 0.15 too; tiny p keeps the argmax
    np.testing.assert_array_equal(kept(top_p_filter(logits, 0.7)), [0, 1, 0, 1, 0])
    np.testing.assert_array_equal(kept(top_p_filter(logits, 0.71)), [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(kept(top_p_filter(logits, 1e-3)), [0, 1, 0, 0, 0])
    both = process_logits(logits, temperature=1.0, top_k=3, top_p=0.6)
    np.testing.assert_array_equal(kept(both), [0, 1, 0, 1, 0])


def test_draw_frequencies_match_processed_distribution():
    """200k draws from a fixed logit table reproduce the renormalised target distribution
    (temperature 0.5 and top-k 3 / top-p 0.8 together)."""
    p = np.array([0.05, 0.4, 0.1, 0.3, 0.15])
    n = 200_000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray(p, jnp.float32)), (n, 5))
    keys = sample_keys(jax.random.PRNGKey(0), 0, n)
    cases = {
        (0.5, 0, 1.0): p ** 2 / np.sum(p ** 2),
        (1.0, 3, 1.0): np.where(p >= 0.15, p, 0) / 0.85,
        (1.0, 0, 0.8): np.where(p >= 0.15, p, 0) / 0.85,  # 0.4+0.3 < 0.8 -> add 0.15
    }
    for (temp, k, top_p), target in cases.items():
        x = jax.jit(lambda keys, lg, temp=temp, k=k, top_p=top_p: categorical_draw(
            temp, k, top_p)(keys, lg, 0))(keys, logits)
        freq = np.bincount(np.asarray(x), minlength=5) / n
        # 5 standard errors of a binomial proportion
        tol = 5 * np.sqrt(target * (1 - target) / n) + 1e-9
        assert np.all(np.abs(freq - target) <= tol), (temp, k, top_p, freq, target)


def test_cfg_combination_and_schedule():
    cond, uncond = jnp.array([1.0, 3.0]), jnp.array([2.0, 0.0])
    np.testing.assert_allclose(cfg_combine(cond, uncond, 1.0), cond)
    np.testing.assert_allclose(cfg_combine(cond, uncond, 0.0), uncond)
    np.testing.assert_allclose(cfg_combine(cond, uncond, 3.0), [-1.0, 9.0])
    lin = cfg_scale_schedule(4.0, 5, "linear")
    np.testing.assert_allclose([float(lin(t)) for t in range(5)], [1.0, 1.75, 2.5, 3.25, 4.0])
    cos = cfg_scale_schedule(4.0, 5, "cosine")
    np.testing.assert_allclose([float(cos(0)), float(cos(2)), float(cos(4))], [1.0, 2.5, 4.0],
                               rtol=1e-6)
    assert float(cfg_scale_schedule(2.5, 5)(3)) == 2.5
    with pytest.raises(ValueError, match="schedule"):
        cfg_scale_schedule(2.0, 5, "exp")


def test_guided_sampler_combines_cond_and_uncond_rows():
    """CFG in the token sampler: the model sees the doubled batch (cond rows, then uncond
    rows fed the null prompt), the draw sees uncond + s(t) * (cond - uncond)."""
    seen = []

    def logits_fn(ids, cache):  # a fake model: logits depend on the row's prompt only
        first = jnp.where(cache["t"] == 0, ids[:, 0], cache["first"])
        logits = jax.nn.one_hot(first % 4, 4) * 10.0 * jnp.where(first == 9, -1.0, 1.0)[:, None]
        return logits[:, None], {"t": cache["t"] + 1, "first": first}

    prompt, null = jnp.array([[1], [2]]), jnp.array([[9], [9]])
    cache = {"t": jnp.zeros((), jnp.int32), "first": jnp.zeros((4,), jnp.int32)}
    draw = lambda keys, logits, t: (seen.append(logits), jnp.argmax(logits, -1))[1]
    toks, _ = sample_tokens(logits_fn, cache, prompt, 3, sample_keys(jax.random.PRNGKey(0), 0, 2),
                            uncond_prompt=null, cfg_scale=cfg_scale_schedule(3.0, 3, "linear"),
                            draw_fn=draw)
    np.testing.assert_array_equal(toks, [[1, 1, 1], [2, 2, 2]])
    # traced once inside the scan: check the combination symbolically on the values
    cond = jax.nn.one_hot(jnp.array([1, 2]), 4) * 10.0
    uncond = -jax.nn.one_hot(jnp.array([1, 1]), 4) * 10.0
    np.testing.assert_allclose(cfg_combine(cond, uncond, 3.0)[0], [0, 50, 0, 0])
    assert len(seen) == 1 and seen[0].shape == (2, 4)


# ----------------------------------------------------------------------------- family
def test_igpt_family_loss_and_guided_sampling():
    cfg = get_config("tiny,cond")
    cfg.model.width, cfg.model.mlp_dim = 16, 32
    cfg.sample.cfg_scale, cfg.sample.cfg_schedule = 2.0, "linear"
    spec = DataSpec((4, 4, 1), 2, 10, "image")
    fam = IGPTFamily(cfg, spec)
    assert fam.model.max_len == 16 and fam.model.null_id == 12
    batch = {"image": jax.random.bernoulli(jax.random.PRNGKey(0), 0.3, (3, 4, 4, 1)).astype(
        jnp.uint8), "label": jnp.array([1, 2, 3]), "mask": jnp.array([1.0, 1.0, 0.0])}
    params = random_params(fam.model, fam._inputs(batch, batch["label"])[0])["params"]

    @jax.jit
    def run(params):
        loss, sums = fam.loss(params, batch, jax.random.PRNGKey(1), True)
        keys = sample_keys(jax.random.PRNGKey(2), 0, 2)
        return loss, sums, fam.sample(params, keys, jnp.array([4, 5]))

    loss, sums, samples = run(params)
    assert float(sums["num_examples"]) == 2 and float(sums["num_dims"]) == 32
    np.testing.assert_allclose(loss, sums["nll_sum"] / 32, rtol=1e-6)
    assert 0.3 * np.log(2) * 32 < float(sums["nll_sum"]) < 3 * np.log(2) * 32
    chex.assert_shape(samples, (2, 4, 4, 1))
    assert set(np.unique(np.asarray(samples))) <= {0, 1}


def test_static_steps_mode_draws_the_same_samples():
    """The unrolled mode (VAR's differently-sized scale blocks) is the same loop: same keys,
    same draws as the scan."""
    logits = jax.random.normal(jax.random.PRNGKey(1), (5, 7))

    def step(seq, cache, t):
        return logits[jnp.asarray(t) % 5][None].repeat(3, 0) + seq.sum(1, keepdims=True), cache

    def write(seq, x, t):
        return jax.lax.dynamic_update_slice_in_dim(seq, x[:, None], t, axis=1)

    keys = sample_keys(jax.random.PRNGKey(0), 0, 3)
    state = LoopState(seq=jnp.zeros((3, 6), jnp.int32), cache=None, keys=keys)
    a, da = autoregressive_scan(step, categorical_draw(), write, state, 6)
    b, db = autoregressive_scan(step, categorical_draw(), write, state, 6, static_steps=True)
    np.testing.assert_array_equal(a.seq, b.seq)
    np.testing.assert_array_equal(da, jnp.stack(db))
    assert len(set(np.asarray(a.seq).ravel().tolist())) > 1
