"""The top-k / top-p filters against the implementation they replaced (the reference:
`lax.top_k` for the k-th value, a full argsort for the nucleus): the same output
bit for bit, hence the same support, on random logits with ties, -inf, NEG_INF and signed
zeros, in float32 and bfloat16, rows [B, V] and [B, T, V], the fast candidate path and the
full-sort fallback alike."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from argen_jax.sampling import processors
from argen_jax.sampling.processors import (
    NEG_INF,
    kth_largest,
    process_logits,
    top_k_filter,
    top_k_top_p_filter,
    top_p_filter,
)

# The reference: the filters before #22. experiments/benchmarks/reference_filters.py keeps the
# one copy (speed/topk_filter.py times them against the new ones).
from experiments.benchmarks.reference_filters import (
    reference_process_logits as ref_process_logits,
)
from experiments.benchmarks.reference_filters import reference_top_k_filter as ref_top_k_filter
from experiments.benchmarks.reference_filters import reference_top_p_filter as ref_top_p_filter


def ref_before(sorted_logits):
    """The reference's mass before each entry of a sorted row (for p at exact boundaries)."""
    probs = jax.nn.softmax(sorted_logits.astype(jnp.float32), axis=-1)
    return jnp.cumsum(probs, axis=-1) - probs


# ----------------------------------------------------------------------------- inputs
def random_logits(shape, dtype, seed, ties=False):
    """Normal logits (scale 3); with ties, rounded to quarters; a few -inf, NEG_INF, -0.0
    and +0.0 entries scattered in."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 3.0, shape).astype(np.float32)
    if ties:
        x = np.round(x * 4) / 4
    special = rng.random(shape)
    x[special < 0.02] = -np.inf
    x[(special >= 0.02) & (special < 0.03)] = NEG_INF
    x[(special >= 0.03) & (special < 0.04)] = -0.0
    x[(special >= 0.04) & (special < 0.05)] = 0.0
    return jnp.asarray(x).astype(dtype)


def assert_same(new, ref):
    """Same dtype, same values bit for bit (the kept set and the kept logits)."""
    assert new.dtype == ref.dtype and new.shape == ref.shape
    np.testing.assert_array_equal(np.asarray(new.astype(jnp.float32)),
                                  np.asarray(ref.astype(jnp.float32)))
    np.testing.assert_array_equal(np.asarray(new) > -1e29, np.asarray(ref) > -1e29)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _filters(x, k, p):  # the new filters of one (k, p) case, in one program
    return top_k_filter(x, k), top_k_top_p_filter(x, k, p)


_top_k_top_p = jax.jit(top_k_top_p_filter, static_argnums=(1, 2))
_candidates = jax.jit(processors._nucleus_of_candidates, static_argnums=(2, 3))

CASES = [(0, 0.9), (1, 0.5), (7, 1.0), (40, 0.9), (299, 0.3), (500, 0.5), (40, 0.0)]


# ----------------------------------------------------------------------------- tests
@pytest.mark.parametrize("dtype,shape,ties", [
    (jnp.float32, (4, 300), False), (jnp.float32, (2, 3, 300), True),
    (jnp.bfloat16, (4, 300), True), (jnp.bfloat16, (2, 3, 300), False)])
def test_filters_equal_the_reference(dtype, shape, ties):
    logits = random_logits(shape, dtype, seed=len(shape) + 2 * ties, ties=ties)
    for k, p in CASES:
        top_k, both = _filters(logits, k, p)
        assert_same(top_k, ref_top_k_filter(logits, k))
        assert_same(both, ref_top_p_filter(ref_top_k_filter(logits, k), p))
    assert_same(top_p_filter(logits, 0.9), ref_top_p_filter(logits, 0.9))
    assert_same(process_logits(logits, 0.7, 40, 0.9), ref_process_logits(logits, 0.7, 40, 0.9))


def test_kth_largest_is_exact():
    logits = random_logits((6, 257), jnp.float32, seed=3, ties=True)
    for k in (1, 2, 100, 256, 257):
        want = np.sort(np.asarray(logits), axis=-1)[:, ::-1][:, k - 1:k]
        np.testing.assert_array_equal(kth_largest(logits, k), want)
    assert float(kth_largest(jnp.array([[-0.0, 0.0, -jnp.inf]]), 2)[0, 0]) == 0.0
    assert float(kth_largest(jnp.array([[1.0, -jnp.inf, -jnp.inf]]), 2)[0, 0]) == -np.inf


def test_p_at_an_exact_boundary_matches():
    """p equal to the reference's float32 mass before some candidate: `before < p` turns on
    the last bit of the reference's arithmetic, which the candidate path repeats."""
    logits = random_logits((4, 2000), jnp.float32, seed=5)
    k = 300
    filtered = ref_top_k_filter(logits, k)
    before = ref_before(jnp.sort(filtered, axis=-1)[:, ::-1])
    for j in (1, 17, 150, 299):
        p = float(before[2, j])  # exactly representable: a float32
        assert_same(_top_k_top_p(logits, k, p),
                    ref_top_p_filter(filtered, p))


def test_fast_path_and_fallback_both_match():
    """Rows whose candidates fit `candidate_capacity` take the candidate sort (checked by
    calling it directly); many ties at the k-th value, or a k-th value of -inf, take the
    full sort, with the same output."""
    v, k, p = 1000, 50, 0.8
    cap = processors.candidate_capacity(k, v)
    assert cap < v
    logits = random_logits((3, v), jnp.float32, seed=7)
    kth = kth_largest(logits, k)
    keep_k = logits >= kth
    assert int(jnp.sum(keep_k, -1).max()) <= cap and bool(jnp.all(kth > NEG_INF))
    fast = _candidates(logits, keep_k, p, cap)
    assert_same(fast, ref_top_p_filter(ref_top_k_filter(logits, k), p))
    tied = logits.at[1, : cap + 5].set(20.0)  # k-th value shared by cap + 5 entries
    minus_inf = logits.at[2, k - 2:].set(-jnp.inf)  # k-th value -inf: every entry kept
    for x in (tied, minus_inf):
        assert_same(top_k_top_p_filter(x, k, p), ref_top_p_filter(ref_top_k_filter(x, k), p))


VALUES = st.sampled_from([-np.inf, NEG_INF, -3.0, -1.0, -0.0, 0.0, 0.5, 1.0, 2.0, 7.0])


@settings(max_examples=30, deadline=None)
@given(rows=st.lists(st.lists(VALUES, min_size=16, max_size=16), min_size=3, max_size=3),
       k=st.sampled_from([0, 1, 2, 3, 5, 8, 13, 15, 16]),
       p=st.sampled_from([0.0, 1e-3, 0.5, 0.9, 1.0]), slack=st.integers(0, 2))
def test_property_filters_equal_the_reference(rows, k, p, slack):
    """Heavily tied rows: the filters equal the reference; the candidate path does too at
    any capacity its precondition allows (all candidates fit and are > NEG_INF)."""
    logits = jnp.asarray(rows, jnp.float32)
    top_k, both = _filters(logits, k, p)
    assert_same(top_k, ref_top_k_filter(logits, k))
    want = ref_top_p_filter(ref_top_k_filter(logits, k), p)
    assert_same(both, want)
    if 0 < k < 16 and p < 1.0:
        kth = kth_largest(logits, k)
        keep_k = logits >= kth
        cap = min(16, int(jnp.sum(keep_k, -1).max()) + slack)
        if bool(jnp.all(kth > NEG_INF)):
            assert_same(_candidates(logits, keep_k, p, cap), want)
