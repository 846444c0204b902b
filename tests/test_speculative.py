"""Speculative Jacobi decoding (`sample.speculative`, sampling/speculative.py): the plain
sampler's distribution (chi-square over every sequence of a tiny model, with temperature,
top-k, top-p and CFG), greedy tokens with top_k=1, at most one forward pass per token (fewer
when drafts get accepted), and a KV cache equal to a fresh prefill of the final sequence
although rejected drafts were written into it."""
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from argen_jax.data.pipeline import DataSpec
from argen_jax.errors import ConfigError
from argen_jax.layers.attention import seek_caches
from argen_jax.models.llamagen import LlamaGenFamily
from argen_jax.models.transformer import Decoder, decoder_steps, sample_decoder
from argen_jax.sampling.loop import sample_keys
from argen_jax.sampling.processors import cfg_combine, process_logits
from argen_jax.sampling.settings import SamplingSettings
from argen_jax.sampling.speculative import tokens_of
from experiments.llamagen.fashion_mnist import get_config
from tests.model_utils import random_params

V, N, C = 6, 3, 2  # vocabulary, tokens per sequence, classes (null class = C)
LABEL = 1


def _decoder(vocab=V, num_tokens=N):
    return Decoder(vocab_size=vocab, num_classes=C, max_len=num_tokens, width=16, depth=2,
                   num_heads=2, mlp_dim=32)


def _params(model, num_tokens=N, scale=0.6, seed=0):
    return random_params(model, jnp.zeros((1, num_tokens), jnp.int32), scale=scale,
                         seed=seed)["params"]


def _labels(b, st):
    labels = jnp.full((b,), LABEL, jnp.int32)
    return labels, (jnp.full((b,), C, jnp.int32) if st.guided else None)


def _exact_log_probs(model, params, st):
    """log P(x) of every sequence x in [V]^N under the plain sampler's processed, guided
    step distributions (one full uncached pass per sequence)."""
    seqs = jnp.asarray(list(itertools.product(range(V), repeat=N)), jnp.int32)  # [S, N]

    def logits_of(label):
        prompt = model.class_prompt(jnp.full((len(seqs),), label))
        return model.apply({"params": params}, jnp.concatenate([prompt, seqs[:, :-1]], 1))[0]

    logits = logits_of(LABEL)
    if st.guided:
        scale = st.guidance(N)(jnp.arange(N))
        logits = cfg_combine(logits, logits_of(C), jnp.broadcast_to(scale, (N,))[:, None])
    logp = jax.nn.log_softmax(process_logits(logits, st.temperature, st.top_k, st.top_p))
    return np.asarray(jnp.take_along_axis(logp, seqs[..., None], -1)[..., 0].sum(-1)), seqs


def _chi2_pvalue(draws: np.ndarray, log_probs: np.ndarray) -> float:
    """Pearson chi-square of draws [M, N] against P(sequence); cells expecting < 5 draws are
    pooled, and a draw of a zero-probability sequence fails outright."""
    idx = (draws * V ** np.arange(N - 1, -1, -1)).sum(-1)  # row index in the product order
    counts = np.bincount(idx, minlength=V ** N)
    probs = np.exp(log_probs.astype(np.float64))
    probs = probs / probs.sum()
    assert counts[probs == 0].sum() == 0, "drew a sequence the filters exclude"
    expected = probs * len(draws)
    small = expected < 5
    obs = np.append(counts[~small], counts[small].sum())
    exp = np.append(expected[~small], expected[small].sum())
    keep = exp > 0
    exp = exp[keep] * obs[keep].sum() / exp[keep].sum()  # equal totals to float precision
    return float(stats.chisquare(obs[keep], exp).pvalue)


CASES = {  # sampling settings of the distribution test: every filter, CFG in two; windows
    #   of 2 move along the 3 tokens (and clamp at the end), a window of 3 covers them all
    "temperature": dict(temperature=0.7, speculative=2),
    "top_k_cfg": dict(top_k=3, cfg_scale=2.0, speculative=3),
    "top_p_cfg_linear": dict(temperature=1.3, top_p=0.8, cfg_scale=3.0,
                             cfg_schedule="linear", speculative=2),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_speculative_samples_have_the_plain_samplers_distribution(case):
    """6000 speculative draws of 3-token sequences over 6 codes: chi-square against the
    exact sequence probabilities of the plain sampler's processors; the plain sampler's own
    6000 draws pass the same test (the exact probabilities are the right ones)."""
    st = SamplingSettings(**CASES[case])
    model = _decoder()
    params = _params(model)
    m = 6000
    keys = sample_keys(jax.random.PRNGKey(7), 0, m)
    labels, null = _labels(m, st)

    @functools.partial(jax.jit, static_argnums=0)
    def draw(st, params):
        return sample_decoder(model, params, keys, labels, null, N, st, with_passes=True)

    spec, passes = draw(st, params)
    plain, plain_passes = draw(st.replace(speculative=0), params)
    log_probs, _ = _exact_log_probs(model, params, st)
    assert int(plain_passes) == N and 1 <= int(passes) <= N
    p_spec = _chi2_pvalue(np.asarray(spec), log_probs)
    p_plain = _chi2_pvalue(np.asarray(plain), log_probs)
    assert p_plain > 1e-3, p_plain
    assert p_spec > 1e-3, p_spec
    assert not np.array_equal(np.asarray(spec), np.asarray(plain))  # another sampler


def _llamagen(**sample):
    cfg = get_config("tiny")
    cfg.model.width, cfg.model.num_heads, cfg.model.depth = 16, 2, 2
    cfg.sample.update(sample)
    return LlamaGenFamily(cfg, DataSpec((12,), 16, 3, "tokens", grid=(3, 4)))


@pytest.mark.parametrize("cfg_scale", [1.0, 2.5])
def test_top_k_1_gives_the_greedy_tokens(cfg_scale):
    """LlamaGen (2-D RoPE, zero-rotation class token) with top_k=1: speculative decoding
    with a window of 4 returns exactly the plain sampler's greedy tokens, with CFG too."""
    fam = _llamagen(top_k=1, cfg_scale=cfg_scale, speculative=4)
    plain = _llamagen(top_k=1, cfg_scale=cfg_scale)
    b = 6
    params = random_params(fam.model, jnp.zeros((1, 12), jnp.int32), scale=0.5)["params"]
    keys = sample_keys(jax.random.PRNGKey(0), 0, b)
    labels = jnp.arange(b) % 3
    spec = np.asarray(jax.jit(fam.sample)(params, keys, labels))
    greedy = np.asarray(jax.jit(plain.sample)(params, keys, labels))
    assert spec.shape == (b, 12)
    np.testing.assert_array_equal(spec, greedy)


def test_forward_passes_at_most_one_per_token_and_fewer_when_drafts_fit():
    """A random model: at most N passes for N tokens. A model whose next-token distribution
    does not depend on the tokens (zero token embeddings: only positions and the class token
    matter) accepts whole windows of drafts: far fewer passes than tokens."""
    n, w, b = 16, 4, 8
    model = _decoder(vocab=16, num_tokens=n)
    params = _params(model, n, scale=0.8)
    st = SamplingSettings(speculative=w, cfg_scale=2.0)
    keys = sample_keys(jax.random.PRNGKey(1), 0, b)
    labels, null = _labels(b, st)
    run = jax.jit(lambda params: sample_decoder(model, params, keys, labels, null, n, st,
                                                with_passes=True))
    tokens, passes = run(params)
    assert np.asarray(tokens).shape == (b, n) and 1 <= int(passes) <= n
    context_free = dict(params, token_embed={"embedding": jnp.zeros_like(
        params["token_embed"]["embedding"])})
    tokens, passes = run(context_free)
    assert int(passes) <= n // 2, int(passes)
    assert np.asarray(tokens).min() >= 0 and np.asarray(tokens).max() < 16


def test_cache_after_speculative_decoding_equals_a_fresh_prefill():
    """Rejected drafts write keys / values that later passes must overwrite: after decoding,
    every cache slot (both CFG halves) equals a one-call prefill of the final sequence, and
    the cache's next-token logits equal the uncached full pass."""
    n, w, b = 10, 4, 4
    model = _decoder(vocab=16, num_tokens=n)
    params = _params(model, n, scale=0.8)
    st = SamplingSettings(speculative=w, cfg_scale=1.5, temperature=1.2)
    keys = sample_keys(jax.random.PRNGKey(2), 0, b)
    labels, null = _labels(b, st)

    @jax.jit
    def run(params):
        steps = decoder_steps(model, params, labels, n, null, st.guidance(n), window=w)
        state, passes = steps.run(st.draw_fn(), keys)
        tokens = tokens_of(state.seq)
        prompt = model.class_prompt(jnp.concatenate([labels, null]))
        ids = jnp.concatenate([prompt, jnp.concatenate([tokens, tokens])[:, :-1]], 1)
        _, fresh = model.apply({"params": params}, ids, model.init_cache(2 * b),
                               method=Decoder.extend)
        full = model.apply({"params": params}, ids)[0][:, -1]  # [2B, V]
        # the last token again through the decoded cache: reads every slot before it
        last, _ = model.apply({"params": params}, ids[:, -1:], seek_caches(state.cache, n - 1),
                              method=Decoder.extend)
        return state.cache, fresh, full, last[:, 0], passes

    cache, fresh, full, last, passes = run(params)
    assert int(passes) > -(-n // w)  # some drafts were rejected (else no stale slot)
    for got, want in zip(cache, fresh, strict=True):
        np.testing.assert_allclose(got.k, want.k, atol=1e-5)
        np.testing.assert_allclose(got.v, want.v, atol=1e-5)
    np.testing.assert_allclose(last, full, atol=1e-4)


def test_speculative_setting_is_validated_and_refused_where_unsupported():
    with pytest.raises(ConfigError, match="sample.speculative"):
        SamplingSettings(speculative=-1)
    with pytest.raises(ConfigError, match="no speculative decoding"):
        SamplingSettings(speculative=2).no_speculative("pixelcnn")
    SamplingSettings(speculative=0).no_speculative("pixelcnn")  # off: fine
