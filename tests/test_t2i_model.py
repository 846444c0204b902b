"""LlamaGen t2i's caption condition in the Decoder: CaptionEmbedder, zero RoPE of the caption
positions, left-padded caption masks in training and in the KV cache, the null caption of
CFG, plain and speculative sampling through the one loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.models import captions
from argen_jax.models.transformer import Decoder, caption_steps
from argen_jax.sampling.loop import sample_keys
from argen_jax.sampling.processors import categorical_draw, cfg_combine
from argen_jax.sampling.speculative import speculative_draw, tokens_of

P, C, V, GRID = 5, 6, 11, (3, 3)
L = GRID[0] * GRID[1]


def _model():
    return Decoder(vocab_size=V, num_classes=0, max_len=P + L - 1, width=32, depth=2,
                   num_heads=4, mlp_dim=64, rope="2d", grid=GRID, num_prefix=P,
                   prefix_rope="zero", norm_eps=1e-5, caption_dim=C)


def _caption(b, seed=0):
    """Left-padded captions [B, P, C] with 1..P valid rows, and their masks."""
    emb = jax.random.normal(jax.random.PRNGKey(seed), (b, P, C))
    count = 1 + jnp.arange(b) % P
    right_mask = (jnp.arange(P)[None] < count[:, None]).astype(jnp.int32)
    return captions.left_pad(emb, right_mask)


def _full(model, params, tokens, cap, mask, drop=None):
    ids = jnp.concatenate([jnp.zeros((tokens.shape[0], P), jnp.int32), tokens[:, :-1]], 1)
    logits, _ = model.apply({"params": params}, ids, valid=captions.key_valid(mask, ids.shape[1]),
                            caption=cap, caption_drop=drop)
    return logits[:, P - 1:]  # [B, L, V]: the logits of every image token


@pytest.fixture(scope="module")
def setup():
    model = _model()
    cap, mask = _caption(4)
    tokens = jax.random.randint(jax.random.PRNGKey(1), (4, L), 0, V)
    ids = jnp.zeros((4, P + L - 1), jnp.int32)
    params = model.init(jax.random.PRNGKey(2), ids, valid=captions.key_valid(mask, P + L - 1),
                        caption=cap)["params"]
    return model, params, cap, mask, tokens


def test_left_pad_as_llamagen():
    emb = jnp.arange(2 * 4 * 1, dtype=jnp.float32).reshape(2, 4, 1) + 1
    out, mask = captions.left_pad(emb, jnp.array([[1, 1, 0, 0], [1, 1, 1, 1]]))
    np.testing.assert_array_equal(mask, [[0, 0, 1, 1], [1, 1, 1, 1]])
    np.testing.assert_array_equal(out[..., 0], [[0, 0, 1, 2], [5, 6, 7, 8]])


def test_image_tokens_are_causal(setup):
    model, params, cap, mask, tokens = setup
    base = _full(model, params, tokens, cap, mask)
    k = 4
    other = tokens.at[:, k:].set((tokens[:, k:] + 3) % V)
    changed = _full(model, params, other, cap, mask)
    np.testing.assert_allclose(changed[:, :k + 1], base[:, :k + 1], atol=1e-6)  # token k's
    assert not np.allclose(changed[:, k + 1:], base[:, k + 1:], atol=1e-4)  # logits see < k


def test_caption_padding_never_changes_logits(setup):
    model, params, cap, mask, tokens = setup
    base = _full(model, params, tokens, cap, mask)
    noise = jax.random.normal(jax.random.PRNGKey(5), cap.shape) * (1 - mask)[..., None]
    np.testing.assert_allclose(_full(model, params, tokens, cap + 10 * noise, mask), base,
                               atol=1e-5)
    real = jax.random.normal(jax.random.PRNGKey(6), cap.shape) * mask[..., None]
    assert not np.allclose(_full(model, params, tokens, cap + real, mask), base, atol=1e-4)
    # the null caption ignores the caption's features
    drop = jnp.ones((4,), bool)
    np.testing.assert_allclose(_full(model, params, tokens, cap + real, mask, drop),
                               _full(model, params, tokens, cap, mask, drop), atol=1e-6)


@pytest.mark.parametrize("cfg", [1.0, 4.0])
def test_cached_sampler_equals_full_pass_and_cfg_uses_null_caption(setup, cfg):
    """Greedy (top_k=1) sampling through the KV cache picks the argmax of the full pass's
    logits, guided as uncond + s (cond - uncond) with the null caption (same mask) as the
    unconditional branch."""
    model, params, cap, mask, _ = setup
    steps = caption_steps(model, params, cap, mask, L, guided=cfg != 1.0, cfg_scale=cfg)
    state, _ = jax.jit(lambda k: steps.run(categorical_draw(top_k=1), k))(
        sample_keys(jax.random.PRNGKey(0), 0, 4))
    tokens = state.seq
    cond = _full(model, params, tokens, cap, mask)
    logits = cond
    if cfg != 1.0:
        uncond = _full(model, params, tokens, cap, mask, jnp.ones((4,), bool))
        logits = cfg_combine(cond, uncond, cfg)
    np.testing.assert_array_equal(tokens, np.argmax(logits, -1))
    if cfg != 1.0:  # guidance changes the samples (the null caption differs)
        assert not np.array_equal(tokens, np.argmax(cond, -1))


def test_speculative_decoding_with_captions_gives_greedy_tokens(setup):
    model, params, cap, mask, _ = setup
    steps = caption_steps(model, params, cap, mask, L, guided=True, cfg_scale=3.0, window=3)
    plain = caption_steps(model, params, cap, mask, L, guided=True, cfg_scale=3.0)
    keys = sample_keys(jax.random.PRNGKey(0), 0, 4)
    spec, _ = jax.jit(lambda k: steps.run(speculative_draw(top_k=1), k))(keys)
    ref, _ = jax.jit(lambda k: plain.run(categorical_draw(top_k=1), k))(keys)
    np.testing.assert_array_equal(tokens_of(spec.seq), ref.seq)
