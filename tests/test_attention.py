"""Masks, rotary embeddings, and the attention layer with its explicit KV cache."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.layers.attention import (
    Attention,
    KVCache,
    dot_product_attention,
    prefix_attention,
)
from argen_jax.layers.masks import (
    attention_mask,
    block_causal_mask,
    block_ids_from_sizes,
    causal_ids,
    causal_mask,
    padding_mask,
)
from argen_jax.layers.rope import apply_rotary, coords_2d, rotary_angles
from tests.model_utils import random_params


# ----------------------------------------------------------------------------- masks
def test_causal_mask_values():
    chex.assert_trees_all_equal(causal_mask(4)[0, 0], jnp.asarray(np.tril(np.ones((4, 4), bool))))
    chex.assert_shape(causal_mask(5), (1, 1, 5, 5))


def test_block_causal_mask_values():
    # blocks of 1, 2 and 3 tokens (VAR-like scales): see own block and all earlier blocks
    expected = np.array([
        [1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
        [1, 1, 1, 1, 1, 1],
    ], bool)
    np.testing.assert_array_equal(block_ids_from_sizes((1, 2, 3)), [0, 1, 1, 2, 2, 2])
    chex.assert_trees_all_equal(block_causal_mask((1, 2, 3))[0, 0], jnp.asarray(expected))
    # blocks of size 1 are the causal mask
    chex.assert_trees_all_equal(block_causal_mask((1,) * 5), causal_mask(5))
    with pytest.raises(ValueError, match="positive"):
        block_ids_from_sizes((1, 0, 2))


def test_padding_and_query_validity():
    ids = causal_ids(4)
    k_valid = jnp.array([[True, True, True, True], [False, True, True, False]])
    m = attention_mask(ids, ids, k_valid)
    chex.assert_shape(m, (2, 1, 4, 4))
    chex.assert_trees_all_equal(m[0, 0], causal_mask(4)[0, 0])
    expected_1 = np.tril(np.ones((4, 4), bool)) & np.array([0, 1, 1, 0], bool)[None, :]
    chex.assert_trees_all_equal(m[1, 0], jnp.asarray(expected_1))
    chex.assert_trees_all_equal(padding_mask(k_valid)[:, 0, 0], k_valid)
    mq = attention_mask(ids, ids, q_valid=jnp.array([[True, False, True, True]]))
    assert not bool(mq[0, 0, 1].any()) and bool(mq[0, 0, 2, :3].all())


# ----------------------------------------------------------------------------- rope
def test_rope_is_relative_in_1d_and_2d():
    rng = np.random.default_rng(0)
    q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
    k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)

    def score(pq, pk):  # <R(pq) q, R(pk) k>
        aq = rotary_angles(jnp.asarray([pq]), 8)[None]  # [1, 1, 4]
        ak = rotary_angles(jnp.asarray([pk]), 8)[None]
        return float(jnp.sum(apply_rotary(q, aq) * apply_rotary(k, ak)))

    # rotation keeps norms; scores depend on the offset only
    a = rotary_angles(jnp.asarray([[3]]), 8)[None]
    np.testing.assert_allclose(jnp.linalg.norm(apply_rotary(q, a)), jnp.linalg.norm(q),
                               rtol=1e-6)
    np.testing.assert_allclose(score([5], [2]), score([13], [10]), rtol=1e-5)
    np.testing.assert_allclose(score([4, 1], [2, 3]), score([7, 5], [5, 7]), rtol=1e-5)
    assert abs(score([4, 1], [2, 3]) - score([4, 1], [3, 2])) > 1e-3  # rows != cols
    # 2-D coordinates: class prefix at (0, 0), then raster (row, col)
    np.testing.assert_array_equal(coords_2d(2, 3, 1),
                                  [[0, 0], [0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]])


# ----------------------------------------------------------------------------- attention
def _layer(**kw):
    layer = Attention(num_heads=4, num_kv_heads=2, **kw)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 6, 16))
    params = random_params(layer, x, causal_mask(6))
    return layer, params, x


def test_attention_dependencies_through_grad():
    """d y[t] / d x[s] is zero exactly where the block-causal mask forbids s, and nonzero
    everywhere it allows s (later tokens of the own block included). The token-causal case
    is tested through the whole model in test_transformer.py."""
    layer, params, x = _layer()
    sizes = (1, 2, 3)
    mask = block_causal_mask(sizes)
    out_per_query = lambda x: layer.apply(params, x, mask)[0].sum(axis=(0, 2))  # [T]
    jac = jax.jit(jax.jacrev(out_per_query))(x)  # [T, B, S, E]: row t = d y[t] / d x
    seen = np.asarray(jnp.abs(jac).sum(axis=(1, 3)) > 0)  # [T, S]
    np.testing.assert_array_equal(seen, np.asarray(mask[0, 0]), err_msg=f"sizes {sizes}")


def test_cache_blocks_equal_full_pass():
    """Prefill 1 token, then blocks of 2 and 3 tokens (VAR-style block decoding) through the
    preallocated cache give the full block-causal pass; the cache is written in place."""
    layer, params, x = _layer()
    angles = rotary_angles(jnp.arange(6)[:, None], 4)
    ids = block_ids_from_sizes((1, 2, 3))

    @jax.jit
    def run(params, x):
        full, none = layer.apply(params, x, block_causal_mask((1, 2, 3)), angles)
        assert none is None
        cache = KVCache.zeros(2, 6, 2, 4)
        outs, index = [], []
        for start, n in ((0, 1), (1, 2), (3, 3)):
            mask = attention_mask(ids[start:start + n], ids, jnp.arange(6) < start + n)
            y, cache = layer.apply(params, x[:, start:start + n], mask,
                                   angles[start:start + n], cache)
            outs.append(y)
            index.append(cache.index)
        return full, jnp.concatenate(outs, 1), jnp.stack(index), cache

    full, blocks, index, cache = run(params, x)
    np.testing.assert_allclose(blocks, full, atol=1e-5, rtol=1e-5)
    np.testing.assert_array_equal(index, [1, 3, 6])
    chex.assert_shape(cache.k, (2, 6, 2, 4))
    # the cache holds exactly the keys of the full pass (written in place, never reset)
    k_full = jnp.einsum("bte,ehd->bthd", x, params["params"]["key"])
    np.testing.assert_allclose(cache.k, apply_rotary(k_full, angles), atol=1e-5)


@pytest.mark.parametrize("length,chunk", [(3, 4), (9, 4), (10, 4), (7, 10)])
def test_prefix_attention_equals_dense_and_reads_only_the_prefix(length, chunk):
    """The cached path's chunked running-softmax attention gives the dense masked attention,
    and never touches slots past its last chunk (NaN there would poison the output)."""
    b, t, h, hkv, d, big = 2, 3, 4, 2, 8, 10
    kq, kk, kv = jax.random.split(jax.random.PRNGKey(0), 3)
    q = jax.random.normal(kq, (b, t, h, d))
    k = jax.random.normal(kk, (b, big, hkv, d))
    v = jax.random.normal(kv, (b, big, hkv, d))
    ids = block_ids_from_sizes((1, 2, 3, 4))
    qpos = jnp.arange(length - t, length)
    mask = attention_mask(ids[qpos], ids, jnp.arange(big) < length)  # [1, 1, T, S]
    dense = dot_product_attention(q, k, v, mask)
    read = -(-length // chunk) * chunk
    if read < big:
        k = k.at[:, read:].set(jnp.nan)
        v = v.at[:, read:].set(jnp.nan)
    got = jax.jit(prefix_attention, static_argnums=5)(q, k, v, mask, length, chunk)
    np.testing.assert_allclose(got, dense, atol=1e-5, rtol=1e-5)
