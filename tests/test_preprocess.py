"""The papers' preprocessing (data/preprocess.py) on fixed images."""
import numpy as np
import pytest
from PIL import Image

from argen_jax.data import preprocess as pp
from argen_jax.errors import DataError


def _blocky(h, w, seed=0):
    """A random image made of constant 2x2 blocks: BOX-halving it is exact."""
    blocks = np.random.default_rng(seed).integers(0, 256, (h // 2, w // 2, 3), dtype=np.uint8)
    return blocks, blocks.repeat(2, axis=0).repeat(2, axis=1)


@pytest.mark.parametrize("h,w,size", [(200, 300, 100), (120, 64, 32)])
def test_center_crop_non_square_exact(h, w, size):
    # short side = 2 * size: one BOX halving (2x2 block means), then the BICUBIC resize is to
    # the same size (a copy), then the centre crop with floor offsets
    blocks, img = _blocky(h, w)
    out = pp.center_crop_arr(Image.fromarray(img), size)
    assert out.shape == (size, size, 3) and out.dtype == np.uint8
    top, left = (h // 2 - size) // 2, (w // 2 - size) // 2
    np.testing.assert_array_equal(out, blocks[top:top + size, left:left + size])


def test_center_crop_bicubic_path():
    # 90x50 (w x h) to 32: no halving (50 < 64), BICUBIC to round(90 * 32 / 50) = 58 x 32,
    # crop columns 13..44
    img = np.random.default_rng(1).integers(0, 256, (50, 90, 3), dtype=np.uint8)
    out = pp.center_crop_arr(Image.fromarray(img), 32)
    ref = np.asarray(Image.fromarray(img).resize((58, 32), Image.BICUBIC))[:, 13:45]
    np.testing.assert_array_equal(out, ref)


def test_center_crop_keeps_centre_and_halves_repeatedly():
    # 1000x600 to 64: halved three times (600 -> 300 -> 150 -> 75 >= 64 stops at 75), then
    # BICUBIC to 64; a centred white disc stays centred
    yy, xx = np.mgrid[:600, :1000]
    img = np.zeros((600, 1000, 3), np.uint8)
    img[(yy - 300) ** 2 + (xx - 500) ** 2 < 200 ** 2] = 255
    out = pp.center_crop_arr(Image.fromarray(img), 64).astype(float)
    assert out.shape == (64, 64, 3)
    w = out[..., 0] / out[..., 0].sum()
    cy, cx = (w * np.arange(64)[:, None]).sum(), (w * np.arange(64)[None]).sum()
    assert abs(cy - 31.5) < 1 and abs(cx - 31.5) < 1  # the disc's centre of mass
    assert out[32, 32, 0] == 255 and out[0, 0, 0] == 0


def test_random_crop_deterministic_and_in_range():
    img = Image.fromarray(np.random.default_rng(2).integers(0, 256, (70, 110, 3), np.uint8))
    a = pp.random_crop_arr(img, 32, np.random.default_rng(5))
    b = pp.random_crop_arr(img, 32, 5)
    np.testing.assert_array_equal(a, b)
    outs = {pp.random_crop_arr(img, 32, s).tobytes() for s in range(8)}
    assert len(outs) > 1 and a.shape == (32, 32, 3)
    assert pp.crop_short_side_range(256) == (256, 320)  # LlamaGen's range at 256
    assert pp.crop_short_side_range(32, 0.5, 0.9) == (36, 64)
    # the draws, in order: short side, top, left
    rng = np.random.default_rng(9)
    short = int(rng.integers(32, 41))
    r = np.asarray(pp.resize_short_side(img, short))
    top, left = int(rng.integers(r.shape[0] - 31)), int(rng.integers(r.shape[1] - 31))
    np.testing.assert_array_equal(pp.random_crop_arr(img, 32, 9), r[top:top + 32, left:left + 32])


def test_random_crop_without_range_on_square_is_center_crop():
    img = Image.fromarray(np.random.default_rng(3).integers(0, 256, (90, 90, 3), np.uint8))
    np.testing.assert_array_equal(pp.random_crop_arr(img, 40, 0, 1.0, 1.0),
                                  pp.center_crop_arr(img, 40))
    with pytest.raises(DataError, match="crop fractions"):
        pp.random_crop_arr(img, 40, 0, 0.9, 0.8)


def test_flip():
    a = np.arange(2 * 3 * 4 * 3).reshape(2, 3, 4, 3)
    np.testing.assert_array_equal(pp.hflip(a[0])[:, 0], a[0][:, 3])
    np.testing.assert_array_equal(pp.hflip(a), a[:, :, ::-1])
    np.testing.assert_array_equal(pp.random_flip(a[0], 0, p=1.0), pp.hflip(a[0]))
    np.testing.assert_array_equal(pp.random_flip(a[0], 0, p=0.0), a[0])
    flips = [not np.array_equal(pp.random_flip(a[0], s), a[0]) for s in range(200)]
    assert 60 < sum(flips) < 140


def test_ten_crop_count_and_positions():
    n, size = 13, 8
    yy, xx = np.mgrid[:n, :n]
    arr = np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.uint8)  # pixel = its (y, x)
    crops = pp.ten_crop(arr, size)
    assert crops.shape == (10, size, size, 3)
    # tl, tr, bl, br, centre (round(5 / 2) = 2), then the same on the mirrored image
    corners = [(0, 0), (0, 5), (5, 0), (5, 5), (2, 2)]
    for k, (t, left) in enumerate(corners):
        assert tuple(crops[k][0, 0, :2]) == (t, left)
        assert tuple(crops[5 + k][0, 0, :2]) == (t, n - 1 - left)
        np.testing.assert_array_equal(crops[5 + k], pp.hflip(arr)[t:t + size, left:left + size])
    # LlamaGen at 256: int(256 * 1.1) = 281, centre offset round(12.5) = 12
    assert pp.five_crop_offsets(281, 281, 256)[4] == (12, 12)
    assert pp.five_crop_offsets(283, 283, 256)[4] == (14, 14)  # round(13.5) = 14


def test_ten_crop_flip_arr_and_center_flip():
    img = Image.fromarray(np.random.default_rng(4).integers(0, 256, (40, 60, 3), np.uint8))
    t = pp.ten_crop_flip_arr(img, 16)  # centre crop to int(17.6) = 17, then ten 16-px crops
    c17 = pp.center_crop_arr(img, 17)
    assert t.shape == (10, 16, 16, 3)
    np.testing.assert_array_equal(t[0], c17[:16, :16])
    np.testing.assert_array_equal(t[9], pp.hflip(c17)[0:16, 0:16])  # round(0.5) = 0
    cf = pp.center_flip_arr(img, 16)
    np.testing.assert_array_equal(cf[0], pp.center_crop_arr(img, 16))
    np.testing.assert_array_equal(cf[1], pp.hflip(cf[0]))
