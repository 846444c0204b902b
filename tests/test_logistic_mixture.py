"""Discretized logistic mixture: normalisation, the formula, edge bins, sampling frequencies."""
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.heads import logistic_mixture as lm

# one compilation per call site instead of eager op-by-op dispatch (faster on CPU)
log_prob = jax.jit(lm.log_prob, static_argnums=(2, 3, 4))
all_levels = jax.jit(lm.log_probs_all_levels, static_argnums=(1, 2))


def _random_params(key, shape, k, channels, scale_shift=0.0):
    p = jax.random.normal(key, shape + (lm.num_params(k, channels),))
    # means spread over [-1.2, 1.2], log scales in about [-5, 0]: sharp and wide components
    kk = k
    c = channels
    p = p.at[..., kk : kk + c * kk].multiply(0.6)
    p = p.at[..., kk + c * kk : kk + 2 * c * kk].set(
        -2.5 + scale_shift + 1.2 * p[..., kk + c * kk : kk + 2 * c * kk])
    return p


def test_num_params():
    assert lm.num_params(10, 3) == 100  # the paper's 10 parameters per component
    assert lm.num_params(10, 1) == 30
    with pytest.raises(ValueError, match="multiple"):
        lm.unpack(jnp.zeros((7,)), 1)


@pytest.mark.parametrize("levels", [256, 2, 17])
def test_grey_probabilities_sum_to_one(levels):
    params = _random_params(jax.random.PRNGKey(0), (64,), 4, 1)
    logp = all_levels(params, levels, 0.0)  # [64, L]
    np.testing.assert_allclose(jnp.exp(logp).sum(-1), 1.0, atol=2e-6)
    # the paper's mid-bin fallback only touches bins under 1e-5: still normalised
    logp_fb = all_levels(params, levels, 1e-5)
    np.testing.assert_allclose(jnp.exp(logp_fb).sum(-1), 1.0, atol=1e-4)
    assert bool(jnp.all(jnp.isfinite(logp_fb)))


def test_rgb_probabilities_sum_to_one():
    """Every (r, g, b) of a 32-level cube: sum of the joint mass with channel coupling = 1."""
    levels = 32
    params = _random_params(jax.random.PRNGKey(1), (6,), 3, 3)
    cube = jnp.asarray(list(itertools.product(range(levels), repeat=3)))  # [L^3, 3]
    logp = jax.jit(jax.vmap(lambda p: lm.log_prob(
        jnp.broadcast_to(p, (len(cube), p.shape[-1])), cube, levels, 3, 0.0)))(params)
    np.testing.assert_allclose(jnp.exp(logp).sum(-1), 1.0, atol=2e-5)


def _numpy_log_prob(params, v, levels, channels):
    """Direct float64 evaluation of the paper's formula (differences of sigmoids)."""
    params = np.asarray(params, np.float64)
    k = params.shape[-1] // (1 + 2 * channels + channels * (channels - 1) // 2)
    logits = params[:k]
    means = params[k : k + channels * k].reshape(channels, k)
    log_s = np.maximum(params[k + channels * k : k + 2 * channels * k].reshape(channels, k),
                       -7.0)
    coeffs = np.tanh(params[k + 2 * channels * k :].reshape(-1, k))
    x = 2.0 * np.asarray(v, np.float64) / (levels - 1) - 1.0
    sig = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    pi = np.exp(logits - logits.max())
    pi /= pi.sum()
    total = 0.0
    for comp in range(k):
        prob = pi[comp]
        for c in range(channels):
            mu = means[c, comp]
            if c == 1:
                mu += coeffs[0, comp] * x[0]
            if c == 2:
                mu += coeffs[1, comp] * x[0] + coeffs[2, comp] * x[1]
            s = np.exp(log_s[c, comp])
            hi = 1.0 if v[c] == levels - 1 else sig((x[c] + 1 / (levels - 1) - mu) / s)
            lo = 0.0 if v[c] == 0 else sig((x[c] - 1 / (levels - 1) - mu) / s)
            prob *= hi - lo
        total += prob
    return np.log(total)


@pytest.mark.parametrize("channels", [1, 3])
def test_log_prob_matches_numpy_formula(channels):
    rs = np.random.default_rng(0)
    n = 40
    params = np.asarray(_random_params(jax.random.PRNGKey(2), (n,), 3, channels, 1.5))
    v = rs.integers(0, 256, size=(n, channels))
    v[:4] = 0  # edge bins
    v[4:8] = 255
    v[8, 0], v[9, -1] = 0, 255
    got = log_prob(jnp.asarray(params), jnp.asarray(v if channels > 1 else v[:, 0]), 256,
                   channels, 0.0)
    want = [_numpy_log_prob(params[i], v[i], 256, channels) for i in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_edges_and_fallback_are_finite_with_gradients():
    """A very sharp component far from the target: masses underflow in a naive
    implementation; here log probs and their gradients stay finite."""
    p = jnp.asarray([[0.0, -0.9, -7.0], [0.0, 0.95, -7.0], [0.0, 0.0, 3.0]])  # K=1, grey
    v = jnp.asarray([255, 0, 128])
    lp = log_prob(p, v, 256, 1, 1e-5)
    g = jax.jit(jax.grad(lambda q: lm.log_prob(q, v, 256).sum()))(p)
    assert bool(jnp.all(jnp.isfinite(lp))) and bool(jnp.all(jnp.isfinite(g)))
    assert float(lp[0]) < -100 and float(lp[1]) < -100  # far tails, in log space


@pytest.mark.parametrize("channels", [1, 3])
def test_gradients_finite_for_extreme_parameters(channels):
    """Broad components (log_scale up to 150: 1/s underflows to 0), clamped sharp ones and
    means far outside [-1, 1]: every value's log prob and every gradient stay finite (a
    NaN in the unselected branch of a `where` used to poison the gradient at log_scale ~88)."""
    k = 2
    grid = list(itertools.product([-20.0, 0.0, 50.0, 90.0, 150.0], [-1e3, 0.0, 1e3]))
    p = np.zeros((len(grid), lm.num_params(k, channels)), np.float32)
    for i, (ls, mu) in enumerate(grid):
        p[i, k : k + channels * k] = mu  # means
        p[i, k + channels * k : k + 2 * channels * k] = ls  # log scales
        p[i, k + 2 * channels * k :] = 0.5  # RGB coupling
    p = jnp.asarray(p)
    for v in (0, 128, 255):
        t = jnp.full((len(grid),) + ((channels,) if channels > 1 else ()), v)
        lp = lm.log_prob(p, t, 256, channels)
        g = jax.jit(jax.grad(lambda q, t=t: lm.log_prob(q, t, 256, channels).sum()))(p)
        assert bool(jnp.all(jnp.isfinite(lp))), v
        assert bool(jnp.all(jnp.isfinite(g))), (v, np.argwhere(~np.isfinite(np.asarray(g))))


def test_sampling_frequencies_match_the_mixture():
    """A fixed 2-component mixture on 8 levels with coupling: empirical frequencies of 40k
    draws match the exact joint probabilities (chi-square style bound)."""
    levels, n = 8, 40_000
    p = np.zeros((lm.num_params(2, 3),), np.float32)
    k = 2
    p[:k] = [0.3, -0.2]  # logits
    p[k : k + 3 * k] = [-0.5, 0.4, 0.1, -0.3, 0.2, 0.6]  # means [C, K]
    p[k + 3 * k : k + 6 * k] = [-1.5, -1.0, -1.2, -1.8, -0.9, -1.4]  # log scales
    p[k + 6 * k :] = [0.8, -0.5, 0.3, 0.6, -0.7, 0.2]  # raw coupling coefficients
    params = jnp.asarray(p)
    keys = jax.random.split(jax.random.PRNGKey(3), n)
    draws = np.asarray(jax.jit(lm.mixture_draw(levels, 3))(
        keys, jnp.broadcast_to(params, (n, len(p))), 0))
    assert draws.shape == (n, 3) and draws.min() >= 0 and draws.max() < levels
    cube = jnp.asarray(list(itertools.product(range(levels), repeat=3)))
    probs = np.exp(np.asarray(log_prob(jnp.broadcast_to(params, (len(cube), len(p))), cube,
                                       levels, 3, 0.0)))
    idx = (draws[:, 0] * levels + draws[:, 1]) * levels + draws[:, 2]
    freq = np.bincount(idx, minlength=levels**3) / n
    # 5 standard errors per cell, plus the marginals of each channel tightly
    se = np.sqrt(probs * (1 - probs) / n)
    assert np.all(np.abs(freq - probs) <= 5 * se + 2e-4)
    for c in range(3):
        marg_f = np.bincount(draws[:, c], minlength=levels) / n
        marg_p = probs.reshape(levels, levels, levels).sum(
            axis=tuple(a for a in range(3) if a != c))
        np.testing.assert_allclose(marg_f, marg_p, atol=0.01)


def test_grey_sampling_and_1d_shapes():
    """Shape-generic: params [B, T, P], targets [B, T] (e.g. WaveNet audio)."""
    params = _random_params(jax.random.PRNGKey(4), (2, 5), 3, 1)
    x = jax.jit(lm.sample)(jax.random.PRNGKey(5), params)
    assert x.shape == (2, 5) and x.dtype == jnp.int32
    assert log_prob(params, x, 256, 1, 1e-5).shape == (2, 5)
    with pytest.raises(ValueError, match="do not fit"):
        lm.log_prob(params, x[:, :3], 256)
