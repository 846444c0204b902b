"""Sample-quality metrics on feature vectors and images.

Feature-space metrics (the features come from `inception.py` for FID / IS / sFID on natural
images, or from `feature_net.py` for the small-scale "FD" on 28x28 data):

    frechet_distance   ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))
    fid / sfid         Frechet distance of Inception pool3 / mixed_6 features
    inception_score    exp(E_x KL(p(y|x) || p(y))), mean and std over 10 splits
    precision_recall   k-NN manifold precision / recall (Kynkaanniemi et al. 2019, k = 3)
    rfid               FID of a tokenizer's reconstructions against the originals

Image metrics (tokenizers): `psnr` and `ssim` per image (SSIM with the 11x11 Gaussian window,
sigma 1.5, of Wang et al. 2004; equal to scikit-image's `structural_similarity(...,
gaussian_weights=True, use_sample_covariance=False)`).

The statistics (means, covariances, k-NN radii) are host-side float64 numpy: they are small
next to feature extraction, and float64 is what makes the Frechet distance reproducible.
"""
from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from argen_jax.errors import DataError


# --------------------------------------------------------------------------- Frechet distance
@dataclasses.dataclass
class FeatureStats:
    """Mean [D] and covariance [D, D] of a feature set (the ADM evaluator's `mu`, `sigma`)."""

    mu: np.ndarray
    sigma: np.ndarray
    num: int = 0  # number of feature vectors the statistics were computed from

    @classmethod
    def from_features(cls, feats) -> FeatureStats:
        x = np.asarray(feats, np.float64).reshape(len(feats), -1)  # [N, D]
        if len(x) < 2:
            raise DataError(f"need at least 2 feature vectors for a covariance, got {len(x)}")
        return cls(x.mean(0), np.cov(x, rowvar=False), len(x))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a PSD matrix (negative round-off eigenvalues clipped)."""
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^(1/2)) for PSD S1, S2, computed stably.

    S1 S2 is not symmetric, so a general `sqrtm` (scipy, as in the reference evaluator) can
    return complex round-off or fail on singular products. It is similar to the symmetric PSD
    matrix M = S1^(1/2) S2 S1^(1/2) (same eigenvalues), so the trace is sum(sqrt(eig(M)))
    with symmetric eigensolvers only.
    """
    s1 = np.asarray(sigma1, np.float64)
    s2 = np.asarray(sigma2, np.float64)
    r = _psd_sqrt(s1)
    m = r @ s2 @ r
    m = 0.5 * (m + m.T)
    return float(np.sum(np.sqrt(np.clip(np.linalg.eigvalsh(m), 0.0, None))))


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2,
                                                                                  np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2,
                                                                                   np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != mu1.shape * 2:
        raise DataError(f"statistics do not match: mu {mu1.shape} vs {mu2.shape}, sigma "
                        f"{s1.shape} vs {s2.shape} (features from different networks/layers?)")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2)
    return float(max(value, 0.0))


def stats_distance(a: FeatureStats, b: FeatureStats) -> float:
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma)


def fid(feats_a, feats_b) -> float:
    """Frechet distance between two feature sets [N, D] (FID on Inception pool3 features,
    sFID on mixed_6 spatial features, 'FD' on the small feature net's features)."""
    return stats_distance(FeatureStats.from_features(feats_a), FeatureStats.from_features(feats_b))


sfid = fid


def rfid(extract: Callable[[np.ndarray], np.ndarray], originals, reconstructions) -> float:
    """Reconstruction FID of a tokenizer: FD between the features of the originals and those
    of their reconstructions. `extract` maps images [N, H, W, C] to features [N, D] (e.g.
    `extract.extract_features` bound to an Inception network)."""
    if len(originals) != len(reconstructions):
        raise DataError(f"rFID pairs originals with reconstructions: {len(originals)} vs "
                        f"{len(reconstructions)} images")
    return fid(extract(originals), extract(reconstructions))


# --------------------------------------------------------------------------- Inception score
def inception_score(logits_or_probs, splits: int = 10, from_logits: bool = True
                    ) -> tuple[float, float]:
    """Mean and std over `splits` contiguous splits of exp(E_x KL(p(y|x) || p(y)))."""
    x = np.asarray(logits_or_probs, np.float64)  # [N, K]
    if from_logits:
        x = x - x.max(-1, keepdims=True)
        logp = x - np.log(np.exp(x).sum(-1, keepdims=True))
    else:
        logp = np.log(np.clip(x, 1e-30, None))
    if len(x) < splits:
        raise DataError(f"inception_score: {len(x)} predictions for {splits} splits")
    scores = []
    for part in np.array_split(logp, splits):
        p = np.exp(part)
        log_py = np.log(np.clip(p.mean(0), 1e-30, None))
        kl = np.sum(p * (part - log_py), axis=-1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


# --------------------------------------------------------------------------- precision / recall
def _sq_dists(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances [len(a), len(b)] (float64 norms, float32 matmul)."""
    na = np.sum(np.square(a, dtype=np.float64), 1)[:, None]
    nb = np.sum(np.square(b, dtype=np.float64), 1)[None, :]
    return np.maximum(na + nb - 2.0 * (a @ b.T).astype(np.float64), 0.0)


def knn_radii(feats, k: int = 3, block: int = 4096) -> np.ndarray:
    """Squared distance of every vector to its k-th nearest neighbour (itself excluded)."""
    x = np.asarray(feats, np.float32).reshape(len(feats), -1)
    if len(x) <= k:
        raise DataError(f"k-NN manifold with k={k} needs more than {k} vectors, got {len(x)}")
    out = np.empty(len(x), np.float64)
    for s in range(0, len(x), block):
        d = _sq_dists(x[s : s + block], x)
        # index 0 of the partition is the vector itself (distance 0), index k its k-th neighbour
        out[s : s + block] = np.partition(d, k, axis=1)[:, k]
    return out


def _inside(points: np.ndarray, centers: np.ndarray, radii: np.ndarray, block: int) -> np.ndarray:
    """[len(points)] bool: inside at least one ball (center, radius)."""
    out = np.zeros(len(points), bool)
    for s in range(0, len(points), block):
        d = _sq_dists(points[s : s + block], centers)
        out[s : s + block] = np.any(d <= radii[None, :], axis=1)
    return out


def precision_recall(real_feats, fake_feats, k: int = 3, block: int = 4096
                     ) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019).

    The manifold of a set is the union of balls around its vectors with radius the distance
    to the k-th nearest neighbour in the same set. precision = fraction of fake vectors inside
    the real manifold; recall = fraction of real vectors inside the fake manifold.
    """
    real = np.asarray(real_feats, np.float32).reshape(len(real_feats), -1)
    fake = np.asarray(fake_feats, np.float32).reshape(len(fake_feats), -1)
    if real.shape[1] != fake.shape[1]:
        raise DataError(f"feature sizes differ: real {real.shape[1]} vs fake {fake.shape[1]}")
    precision = _inside(fake, real, knn_radii(real, k, block), block).mean()
    recall = _inside(real, fake, knn_radii(fake, k, block), block).mean()
    return float(precision), float(recall)


# --------------------------------------------------------------------------- PSNR / SSIM
def psnr(a, b, data_range: float = 255.0, mse_floor: float = 0.0) -> jax.Array:
    """Per-image PSNR in dB of images [B, H, W, C] (inf for identical images unless
    `mse_floor` > 0, which training metrics use to stay finite)."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    mse = jnp.mean(jnp.square(a - b), axis=tuple(range(1, a.ndim)))  # [B]
    return 10.0 * jnp.log10(data_range**2 / jnp.maximum(mse, mse_floor))


def _gaussian_window(sigma: float = 1.5, truncate: float = 3.5) -> np.ndarray:
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-0.5 * (x / sigma) ** 2)
    return (w / w.sum()).astype(np.float32)


def _filter_valid(x: jax.Array, w: jax.Array) -> jax.Array:
    """Separable 'valid' filtering of [B, H, W, C] along H and W with the 1-D window w [K]."""
    k = w.shape[0]
    h, wd = x.shape[1] - k + 1, x.shape[2] - k + 1
    x = sum(w[i] * x[:, i : i + h] for i in range(k))
    return sum(w[i] * x[:, :, i : i + wd] for i in range(k))


def ssim(a, b, data_range: float = 255.0, sigma: float = 1.5, k1: float = 0.01,
         k2: float = 0.03, window: str = "gaussian") -> jax.Array:
    """Per-image mean SSIM of images [B, H, W, C], averaged over channels.

    window='gaussian' (Wang et al.): sigma 1.5, 11 taps, population covariances.
    window='uniform' (scikit-image's defaults, and LlamaGen's tokenizer evaluation): 7x7 box,
    sample covariances. Means over the region where the window fits inside the image
    (scikit-image crops exactly this border)."""
    if window not in ("gaussian", "uniform"):
        raise ValueError(f"ssim window must be 'gaussian' or 'uniform', got {window!r}")
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    if a.shape != b.shape or a.ndim != 4:
        raise DataError(f"ssim expects two [B, H, W, C] arrays of one shape, got {a.shape} "
                        f"and {b.shape}")
    taps = len(_gaussian_window(sigma)) if window == "gaussian" else 7
    if a.shape[1] < taps or a.shape[2] < taps:
        raise DataError(f"ssim: images {a.shape[1:3]} are smaller than the {taps}-tap window")
    return _ssim(a, b, float(data_range), float(sigma), float(k1), float(k2), window)


@functools.partial(jax.jit, static_argnums=(2, 3, 4, 5, 6))
def _ssim(a, b, data_range, sigma, k1, k2, window):
    if window == "gaussian":
        w, unbias = jnp.asarray(_gaussian_window(sigma)), 1.0
    else:
        w, unbias = jnp.full((7,), 1.0 / 7.0, jnp.float32), 49.0 / 48.0
    mu_a, mu_b = _filter_valid(a, w), _filter_valid(b, w)
    var_a = unbias * (_filter_valid(a * a, w) - mu_a**2)
    var_b = unbias * (_filter_valid(b * b, w) - mu_b**2)
    cov = unbias * (_filter_valid(a * b, w) - mu_a * mu_b)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b
                                                                                + c2))
    return jnp.mean(s, axis=(1, 2, 3))  # [B]
