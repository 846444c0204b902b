"""ShiftedConv2D: tap sets, channel masks, and the two implementations agree."""
import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from argen_jax.layers import shifted_conv as sc


def test_mask_a_and_b_tap_sets():
    a = sc.masked_offsets(3, 3, "A")
    b = sc.masked_offsets(3, 3, "B")
    assert set(a) == {(-1, -1), (-1, 0), (-1, 1), (0, -1)}
    assert set(b) == set(a) | {(0, 0)}
    assert len(sc.masked_offsets(7, 7, "A")) == 3 * 7 + 3
    # colour mask A keeps the centre tap (its channel mask removes the current colour)
    assert (0, 0) in sc.masked_offsets(3, 3, "A", groups=3)
    # every tap of a mask lies strictly before the centre in raster order
    assert all((dy, dx) < (0, 0) for dy, dx in a)


def test_channel_mask_values():
    m_a = sc.channel_mask(3, 6, 3, "A")
    m_b = sc.channel_mask(3, 6, 3, "B")
    # out channel o is colour o % 3; in channel i is colour i
    np.testing.assert_array_equal(m_a[:, :3], [[0, 1, 1], [0, 0, 1], [0, 0, 0]])
    np.testing.assert_array_equal(m_b[:, :3], [[1, 1, 1], [0, 1, 1], [0, 0, 1]])
    np.testing.assert_array_equal(m_a[:, 3:], m_a[:, :3])


def test_dense_matches_shifted_copies():
    """y = sum_t shift(x, -dy, -dx) @ W_t, checked against numpy."""
    x = np.random.RandomState(0).randn(2, 5, 6, 3).astype(np.float32)
    offs = ((-1, -1), (0, -2), (0, 0), (1, 1))
    layer = sc.ShiftedConv2D(4, offs, use_bias=False)
    params = layer.init(jax.random.PRNGKey(0), x)
    y = layer.apply(params, x)
    w = np.asarray(params["params"]["kernel"].value)
    xp = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    ref = sum(xp[:, 2 + dy : 2 + dy + 5, 2 + dx : 2 + dx + 6] @ w[t]
              for t, (dy, dx) in enumerate(offs))
    np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("offsets,mask", [
    (sc.masked_offsets(5, 5, "A", 3), "A"),
    (sc.vertical_offsets(3, 3), None),
    (sc.down_right_shifted_offsets(2, 2), None),
])
def test_taps_equals_conv(offsets, mask, strides):
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 7, 8, 6))
    kw = dict(features=9, offsets=offsets, center_mask=mask, groups=3, strides=strides)
    taps = sc.ShiftedConv2D(impl="taps", **kw)
    conv = sc.ShiftedConv2D(impl="conv", **kw)
    params = taps.init(jax.random.PRNGKey(2), x)
    y1, y2 = taps.apply(params, x), conv.apply(params, x)
    chex.assert_shape(y1, (2, -(-7 // strides), -(-8 // strides), 9))
    np.testing.assert_allclose(y1, y2, rtol=1e-5, atol=1e-5)


def test_shift_moves_content_down():
    x = jnp.arange(9.0).reshape(1, 3, 3, 1)
    y = sc.shift(x, dy=1)
    np.testing.assert_array_equal(y[0, :, :, 0], [[0, 0, 0], [0, 1, 2], [3, 4, 5]])


def test_bad_offsets_raise():
    with pytest.raises(ValueError, match="distinct"):
        sc.ShiftedConv2D(2, ((0, 0), (0, 0))).init(jax.random.PRNGKey(0), jnp.ones((1, 3, 3, 1)))
