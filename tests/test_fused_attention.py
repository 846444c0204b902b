"""Fused attention (`jax.nn.dot_product_attention`, model.attention_impl) equals the einsum
reference for the causal, block-causal and padded masks of `layers.masks`, in float32."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.errors import ConfigError
from argen_jax.layers.attention import dot_product_attention, fused_attention
from argen_jax.layers.masks import attention_mask, block_ids_from_sizes, causal_ids
from argen_jax.models.llamagen import LlamaGenSettings
from argen_jax.models.transformer import Decoder
from tests.model_utils import random_params

T = 10


def _qkv(b=2, h=4, hkv=2, d=8, seed=0):
    r = np.random.default_rng(seed)
    q = jnp.asarray(r.normal(size=(b, T, h, d)), jnp.float32)
    k = jnp.asarray(r.normal(size=(b, T, hkv, d)), jnp.float32)
    v = jnp.asarray(r.normal(size=(b, T, hkv, d)), jnp.float32)
    return q, k, v


def _masks():
    causal = causal_ids(T)
    blocks = block_ids_from_sizes((1, 2, 3, 4))
    valid = jnp.asarray([[True] * T, [True] * 6 + [False] * 2 + [True, False]])
    return {"causal": attention_mask(causal, causal),
            "block_causal": attention_mask(blocks, blocks),
            "padded": attention_mask(causal, causal, valid),
            "block_causal_padded": attention_mask(blocks, blocks, valid)}


@pytest.mark.parametrize("kind", list(_masks()))
def test_fused_equals_reference_values_and_gradients(kind):
    mask = _masks()[kind]
    q, k, v = _qkv()

    def ref(q, k, v):
        return dot_product_attention(q, k, v, mask, scale=0.3)

    def fused(q, k, v):
        return fused_attention(q, k, v, mask, scale=0.3, impl="xla")

    np.testing.assert_allclose(fused(q, k, v), ref(q, k, v), rtol=1e-5, atol=1e-6)
    w = jnp.asarray(np.random.default_rng(1).normal(size=q.shape), jnp.float32)
    g_ref = jax.grad(lambda *a: jnp.sum(ref(*a) * w), argnums=(0, 1, 2))(q, k, v)
    g_fused = jax.grad(lambda *a: jnp.sum(fused(*a) * w), argnums=(0, 1, 2))(q, k, v)
    for a, b in zip(g_fused, g_ref, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_is_causal_flag_equals_the_causal_mask():
    q, k, v = _qkv()
    mask = _masks()["causal"]
    np.testing.assert_allclose(fused_attention(q, k, v, None, is_causal=True),
                               dot_product_attention(q, k, v, mask), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("padded", [False, True])
def test_decoder_with_fused_attention_equals_einsum(padded):
    kw = dict(vocab_size=16, num_classes=3, max_len=T, width=16, depth=2, num_heads=4,
              num_kv_heads=2, mlp_dim=32)
    ids = jax.random.randint(jax.random.PRNGKey(1), (2, T), 0, 16)
    valid = (jnp.arange(T)[None] < jnp.asarray([[T], [7]])) if padded else None
    ref = Decoder(**kw)
    params = random_params(ref, ids)
    want, _ = ref.apply(params, ids, valid=valid)
    got, _ = Decoder(**kw, attention_impl="xla").apply(params, ids, valid=valid)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_unknown_attention_impl_is_a_config_error():
    with pytest.raises(ConfigError, match="attention_impl"):
        LlamaGenSettings(attention_impl="flash")
