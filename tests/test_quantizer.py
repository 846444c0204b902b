"""Vector quantizer and VAR's multi-scale residual quantizer (argen_jax/layers/quantizer.py)."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from argen_jax.errors import ConfigError
from argen_jax.layers import quantizer as q
from argen_jax.models.base import assign_surrogate


def _vq(**kw):
    kw = {"codebook_size": 4, "code_dim": 2, "l2_normalize": False, **kw}
    return q.VectorQuantizer(**kw)


CODES = jnp.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])


def _with_codes(variables, codes):
    p = dict(variables["params"])
    p["codebook"] = codes
    return {**variables, "params": p}


def test_nearest_code_and_straight_through_identity(rng):
    vq = _vq()
    z = jax.random.normal(rng, (2, 3, 3, 2))
    v = _with_codes(vq.init(rng, z), CODES)
    out = vq.apply(v, z)
    d = jnp.sum(jnp.square(z[..., None, :] - CODES), -1)
    chex.assert_trees_all_equal(out.indices, jnp.argmin(d, -1))
    chex.assert_trees_all_close(out.z_q, CODES[out.indices], atol=1e-6)
    # straight-through: d(sum w * z_q)/dz == w exactly
    w = jax.random.normal(jax.random.PRNGKey(1), z.shape)
    g = jax.grad(lambda z: jnp.sum(w * vq.apply(v, z).z_q))(z)
    chex.assert_trees_all_close(g, w, atol=1e-6)


def test_losses_codebook_and_commitment(rng):
    vq = _vq(beta=0.25)
    z = jnp.full((1, 1, 1, 2), 0.4).at[..., 1].set(0.0)  # nearest code: (0, 0)... or (1, 0)
    v = _with_codes(vq.init(rng, z), CODES)
    out = vq.apply(v, z)
    assert int(out.indices[0, 0, 0]) == 0
    # codebook term (0.16 / 2) + beta * commitment term (0.16 / 2)
    np.testing.assert_allclose(out.per_example_loss, [1.25 * 0.08], rtol=1e-6)
    # the codebook term moves codes only, the commitment term moves z only
    gz = jax.grad(lambda z: vq.apply(v, z).per_example_loss.sum())(z)
    np.testing.assert_allclose(gz[0, 0, 0], [0.25 * 0.4, 0.0], rtol=1e-5)
    gc = jax.grad(lambda p: vq.apply({"params": p}, z).per_example_loss.sum())(v["params"])
    np.testing.assert_allclose(gc["codebook"][0], [-0.4, 0.0], rtol=1e-5)


def test_l2_normalised_lookup_is_cosine(rng):
    vq = q.VectorQuantizer(8, 4, l2_normalize=True)
    z = jax.random.normal(rng, (2, 2, 2, 4))
    v = vq.init(rng, z)
    out = vq.apply(v, z)
    codes = vq.apply(v, method=q.VectorQuantizer.codes)
    np.testing.assert_allclose(jnp.linalg.norm(codes, axis=-1), 1.0, rtol=1e-5)
    cos = q.l2_normalize(z) @ codes.T
    chex.assert_trees_all_equal(out.indices, jnp.argmax(cos, -1))


def test_usage_and_perplexity_on_a_hand_made_histogram(rng):
    vq = _vq()
    idx = jnp.array([[0, 0], [1, 3]])  # B=2 examples of 2 tokens
    z = CODES[idx][:, :, None, :]  # [2, 2, 1, 2] sits exactly on the codes
    v = _with_codes(vq.init(rng, z), CODES)
    out = vq.apply(v, z)
    np.testing.assert_array_equal(out.counts, [2, 1, 0, 1])
    np.testing.assert_allclose(q.usage_from_counts(out.counts), 0.75)
    p = np.array([0.5, 0.25, 0.25])
    np.testing.assert_allclose(q.perplexity_from_counts(out.counts), np.exp(-(p * np.log(p)).sum()),
                               rtol=1e-6)
    masked = vq.apply(v, z, jnp.array([1.0, 0.0]))  # the second example is padding
    np.testing.assert_array_equal(masked.counts, [2, 0, 0, 0])


def test_entropy_loss_prefers_confident_and_spread_assignments():
    confident_spread = jnp.array([[10.0, 0.0], [0.0, 10.0]])
    collapsed = jnp.array([[10.0, 0.0], [10.0, 0.0]])
    w = jnp.ones(2)
    assert q.entropy_loss(confident_spread, w) < q.entropy_loss(collapsed, w) - 0.5


def test_ema_update_and_assignment_through_the_optimizer(rng):
    vq = _vq(ema=True, ema_decay=0.5)
    z = jnp.array([[[[0.9, 0.1]], [[1.1, -0.1]]]])  # [1, 2, 1, 2], both nearest to code 1
    v = vq.init(rng, z)
    codes0 = jnp.array(CODES)
    st = {"codebook": codes0, "cluster_size": jnp.ones(4), "embed_sum": codes0}
    v = {**v, q.STATE: st}
    out, new = vq.apply(v, z, mutable=[q.STATE])
    assert int(out.indices[0, 0, 0, 0] if out.indices.ndim == 4 else out.indices[0, 0, 0]) == 1
    new = new[q.STATE]
    # EMA: size = 0.5 * 1 + 0.5 * 2 = 1.5, sum = 0.5 * (1, 0) + 0.5 * (2, 0) = (1.5, 0)
    np.testing.assert_allclose(new["cluster_size"][1], 1.5, rtol=1e-6)
    np.testing.assert_allclose(new["embed_sum"][1], [1.5, 0.0], atol=1e-6)
    np.testing.assert_allclose(new["codebook"][0], codes0[0], atol=1e-4)  # unused: unchanged
    # the family's surrogate + optax.scale(-1) assigns the new state exactly
    grads = jax.grad(lambda s: assign_surrogate(s, new))(st)
    tx = optax.scale(-1.0)
    upd, _ = tx.update(grads, tx.init(st))
    chex.assert_trees_all_close(optax.apply_updates(st, upd), new, atol=1e-6)
    assert float(assign_surrogate(st, new)) == 0.0


def test_dead_code_restart_moves_dead_codes_onto_latents(rng):
    vq = _vq(restart_threshold=0.5, usage_decay=0.0)
    z = jnp.array([[[[0.9, 0.1]], [[1.1, -0.1]]]])  # only code 1 is used
    v = _with_codes(vq.init(rng, z), CODES)
    _, new = vq.apply(v, z, mutable=[q.STATE], rngs={q.RESTART_RNG: rng})
    v2 = {**v, q.STATE: new[q.STATE]}
    codes = vq.apply(v2, method=q.VectorQuantizer.codes)
    cands = z.reshape(-1, 2)
    for k in (0, 2, 3):  # dead: now equal to one of the batch latents
        assert np.min(np.abs(np.asarray(codes[k]) - np.asarray(cands)).sum(-1)) < 1e-6
    np.testing.assert_allclose(codes[1], CODES[1])
    live = vq.apply(v2, method=q.VectorQuantizer.live_fraction)
    assert float(live) == 1.0  # restarted codes get a fresh usage share


def test_area_and_upsample_matrices():
    # adaptive average pooling 5 -> 3: bins [0,2), [1,4), [3,5)
    m = q.area_matrix(5, 3)
    np.testing.assert_allclose(m @ np.arange(5.0), [0.5, 2.0, 3.5])
    np.testing.assert_allclose(q.area_matrix(16, 13).sum(1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(q.upsample_matrix(4, 4, "cubic"), np.eye(4))
    np.testing.assert_allclose(q.upsample_matrix(2, 8, "linear").sum(1), 1.0, rtol=1e-5)


SCALES = (1, 2, 3, 4, 6, 8)


@pytest.fixture(scope="module")
def msrq():
    rng = jax.random.PRNGKey(0)
    m = q.MultiScaleResidualQuantizer(SCALES, codebook_size=256, code_dim=2, num_phi=0)
    z = jax.random.normal(rng, (3, 8, 8, 2))
    v = m.init(rng, z)
    p = dict(v["params"])
    vq = dict(p["vq"])
    vq["codebook"] = jax.random.normal(jax.random.PRNGKey(1), (256, 2))  # dense codes
    p["vq"] = vq
    return m, {"params": p}, z


def test_multiscale_token_shapes_and_consistency(msrq):
    m, v, z = msrq
    out = m.apply(v, z)
    assert [i.shape for i in out.indices] == [(3, s, s) for s in SCALES]
    assert out.counts.shape == (len(SCALES), 256)
    np.testing.assert_allclose(out.counts.sum(1), [3 * s * s for s in SCALES])
    enc = m.apply(v, z, method=m.encode)
    for a, b in zip(enc, out.indices, strict=True):
        chex.assert_trees_all_equal(a, b)
    f_hat = m.apply(v, out.indices, method=m.latent_from_indices)
    chex.assert_trees_all_close(f_hat, out.z_q, atol=1e-5)  # straight-through value = f_hat


def test_multiscale_all_scales_beat_every_prefix(msrq):
    m, v, z = msrq
    idx = m.apply(v, z, method=m.encode)
    errs = [float(jnp.mean(jnp.square(m.apply(v, idx[:k], method=m.latent_from_indices) - z)))
            for k in range(1, len(SCALES) + 1)]
    assert all(errs[-1] < e for e in errs[:-1]), errs
    assert errs[-1] < 0.1 * float(jnp.mean(jnp.square(z)))


def test_teacher_forcing_inputs_are_downsampled_prefix_latents(msrq):
    m, v, z = msrq
    idx = m.apply(v, z, method=m.encode)
    tf = m.apply(v, idx, method=m.teacher_forcing_inputs)
    assert tf.shape == (3, sum(s * s for s in SCALES[1:]), 2)
    start = 0
    for s in range(1, len(SCALES)):
        f_prefix = m.apply(v, idx[:s], method=m.latent_from_indices)
        want = m.apply(v, f_prefix, s, method=m.next_scale_input)
        n = SCALES[s] ** 2
        chex.assert_trees_all_close(tf[:, start : start + n], want.reshape(3, n, 2), atol=1e-5)
        start += n
    flat = q.flatten_scales(idx)
    assert flat.shape == (3, sum(s * s for s in SCALES))
    for a, b in zip(q.split_scales(flat, SCALES), idx, strict=True):
        chex.assert_trees_all_equal(a, b)


def test_multiscale_rejects_a_latent_that_does_not_match_the_last_scale(msrq):
    m, v, _ = msrq
    with pytest.raises(ConfigError, match="last quantizer scale"):
        m.apply(v, jnp.zeros((1, 16, 16, 2)))
