"""Evaluation metrics against scipy / scikit-image and hand-made cases."""
import numpy as np
import pytest
import scipy.linalg
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from argen_jax.errors import DataError
from argen_jax.evaluation import metrics, reference_stats


def _gaussians(seed, n=400, d=6):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    b = rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 0.5
    return a, b


def _scipy_fd(a, b):
    m1, m2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(np.sum((m1 - m2) ** 2) + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_matches_scipy_and_is_zero_on_itself():
    a, b = _gaussians(0)
    assert metrics.fid(a, b) == pytest.approx(_scipy_fd(a, b), rel=1e-8)
    assert abs(metrics.fid(a, a)) < 1e-8
    assert metrics.fid(a, b) == pytest.approx(metrics.fid(b, a), rel=1e-10)  # symmetric
    assert metrics.fid(a, b) > 1.0


def test_frechet_distance_stable_on_singular_covariances():
    # 5 vectors in 16 dimensions: rank-deficient covariances, where sqrtm of the product is
    # ill-conditioned; the eigen route stays real, finite and >= 0.
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(5, 16))
    assert abs(metrics.fid(a, a)) < 1e-8
    d = metrics.fid(a, b)
    assert np.isfinite(d) and d > 0
    with pytest.raises(DataError):
        metrics.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_inception_score_limits():
    k = 7
    assert metrics.inception_score(np.zeros((70, k)))[0] == pytest.approx(1.0, abs=1e-9)
    confident = np.full((140, k), -50.0)
    confident[np.arange(140), np.arange(140) % k] = 50.0  # every split holds every class
    mean, std = metrics.inception_score(confident, splits=10)
    assert mean == pytest.approx(k, rel=1e-6) and std < 1e-6
    probs = np.eye(k)[np.arange(140) % k]
    assert metrics.inception_score(probs, from_logits=False)[0] == pytest.approx(k, rel=1e-6)


def test_precision_recall_hand_made_manifolds():
    real = np.stack([np.arange(10.0), np.zeros(10)], 1)  # points (i, 0): 1-NN radius 1
    fake = np.array([[2.5, 0.0], [4.0, 0.9], [20.0, 0.0], [5.0, 3.0]])
    # precision: (2.5, 0) and (4, 0.9) lie within distance 1 of a real point; the others not.
    # recall (fake 1-NN radii^2: 3.06, 3.06, 234, 5.41): real 1..4 fall in the balls of the
    # first two fake points, real 5..9 in the big ball of (20, 0); real 0 in none.
    p, r = metrics.precision_recall(real, fake, k=1)
    assert p == pytest.approx(0.5) and r == pytest.approx(0.9)
    p, r = metrics.precision_recall(real, real + 0.1, k=3)
    assert p == 1.0 and r == 1.0
    p, r = metrics.precision_recall(real, real + 100.0, k=3)
    assert p == 0.0 and r == 0.0


def test_psnr_ssim_match_scikit_image():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(2, 24, 20, 3)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 20, size=a.shape), 0, 255).astype(np.float32)
    ours_p = np.asarray(metrics.psnr(a, b))
    ours_s = np.asarray(metrics.ssim(a, b))
    for i in range(2):
        ref_p = peak_signal_noise_ratio(a[i], b[i], data_range=255)
        ref_s = structural_similarity(a[i], b[i], data_range=255, channel_axis=-1,
                                      gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False)
        assert ours_p[i] == pytest.approx(ref_p, rel=1e-5)
        assert ours_s[i] == pytest.approx(ref_s, abs=1e-5)
    assert np.asarray(metrics.ssim(a, a)) == pytest.approx(1.0, abs=1e-6)


def test_reference_npz_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(6, 8, 8, 3), dtype=np.uint8)
    path = str(tmp_path / "batch.npz")
    reference_stats.write_sample_batch(path, images)
    assert np.array_equal(reference_stats.read_images(path), images)
    pool, spatial = rng.normal(size=(50, 4)), rng.normal(size=(50, 3))
    stats = reference_stats.write_reference_batch(path, images, pool, spatial)
    back, back_s = reference_stats.read_stats(path)
    assert np.allclose(back.mu, stats[0].mu) and np.allclose(back_s.sigma, stats[1].sigma)
    assert np.array_equal(reference_stats.read_images(path), images)


def test_cached_stats_computed_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"pool": np.random.default_rng(0).normal(size=(20, 3))}

    a = reference_stats.cached_stats(str(tmp_path), "ds-key", compute)
    b = reference_stats.cached_stats(str(tmp_path), "ds-key", compute)
    assert len(calls) == 1 and np.allclose(a["pool"].sigma, b["pool"].sigma)
