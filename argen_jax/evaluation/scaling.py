"""Scaling-law fits: L(x) = E + A x^-alpha over model size N or compute C, with intervals.

`fit_power_law(x, y)` fits the saturating power law by least squares on log L (scipy's
`curve_fit`, x normalised by its geometric mean for conditioning; E in [0, min y), A > 0)
and puts percentile intervals on (E, A, alpha) by a residual bootstrap (the fitted curve plus
resampled log-residuals, refitted `bootstrap` times): with the handful of sizes of a sweep a
case bootstrap would drop too many points. R^2 is the fit's on log L. `fit_power_law(...,
saturating=False)` fits the pure power law (E = 0), as Kaplan et al. 2020 do for L(N) of
converged models.

`compute_frontier(points)` keeps the (C, L) points of a sweep's evaluations that no cheaper
point beats (the lower envelope: the best loss reachable with compute C), to which L(C) is
fitted. `holdout_prediction` fits all but the largest x and predicts it. `plot_fit` writes a
log-log PNG of the points, the fit and its interval band, the extrapolation shaded.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
    E: float  # irreducible loss
    A: float  # amplitude at x = x0
    alpha: float  # exponent
    x0: float  # normalisation: L = E + A (x / x0)^-alpha
    r2: float  # on log L
    interval: dict  # name -> (lo, hi): 95% residual-bootstrap percentile intervals
    num_points: int

    def __call__(self, x) -> np.ndarray:
        return self.E + self.A * (np.asarray(x, float) / self.x0) ** -self.alpha

    def band(self, x, samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """2.5 / 97.5 percentiles of the bootstrap curves at x (samples [K, 3] of E, A, alpha)."""
        x = np.asarray(x, float)[None] / self.x0
        curves = samples[:, :1] + samples[:, 1:2] * x ** -samples[:, 2:3]
        return np.percentile(curves, 2.5, axis=0), np.percentile(curves, 97.5, axis=0)

    def as_dict(self) -> dict:
        return dict(E=self.E, A=self.A, alpha=self.alpha, x0=self.x0, r2=self.r2,
                    interval={k: list(v) for k, v in self.interval.items()},
                    num_points=self.num_points)


def _fit_once(x, y, saturating: bool, p0=None):
    from scipy.optimize import curve_fit

    logy = np.log(y)
    if not saturating:  # log L = log A - alpha log x: linear
        slope, icpt = np.polyfit(np.log(x), logy, 1)
        return np.array([0.0, math.exp(icpt), -slope])

    def f(lx, e, a, alpha):
        return np.log(e + a * np.exp(-alpha * lx))

    ymin = float(np.min(y))
    if p0 is None:
        lin = _fit_once(x, y, False)
        p0 = [0.5 * ymin, lin[1], max(lin[2], 1e-3)]
    p0 = np.clip(p0, [0.0, 1e-12, 0.0], [ymin * 0.999, np.inf, 10.0])
    p, _ = curve_fit(f, np.log(x), logy, p0=p0,
                     bounds=([0.0, 1e-12, 0.0], [ymin * 0.999, np.inf, 10.0]), maxfev=20000)
    return p


def fit_power_law(x, y, *, saturating: bool = True, bootstrap: int = 1000,
                  seed: int = 0) -> tuple[PowerLawFit, np.ndarray]:
    """Fits L = E + A (x / x0)^-alpha (E = 0 unless saturating). Returns the fit and the
    bootstrap samples [K, 3] of (E, A, alpha)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < (3 if saturating else 2) or (y <= 0).any() or (x <= 0).any():
        raise ValueError(f"need >= {3 if saturating else 2} positive points, got {len(x)}")
    x0 = float(np.exp(np.mean(np.log(x))))
    xn = x / x0
    p = _fit_once(xn, y, saturating)
    pred = np.log(p[0] + p[1] * xn ** -p[2])
    resid = np.log(y) - pred
    ss_tot = float(((np.log(y) - np.log(y).mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    rng = np.random.default_rng(seed)
    samples = []
    # residuals of a fit with k parameters to n points are shrunk: rescale (as in regression)
    k = 3 if saturating else 2
    scale = math.sqrt(len(x) / max(len(x) - k, 1))
    for _ in range(bootstrap):
        yb = np.exp(pred + scale * rng.choice(resid, len(resid), replace=True))
        try:
            samples.append(_fit_once(xn, yb, saturating, p0=p))
        except (RuntimeError, ValueError):
            continue
    samples = np.array(samples).reshape(-1, 3)
    interval = {name: (float(np.percentile(samples[:, i], 2.5)),
                       float(np.percentile(samples[:, i], 97.5)))
                for i, name in enumerate(("E", "A", "alpha"))}
    fit = PowerLawFit(float(p[0]), float(p[1]), float(p[2]), x0, r2, interval, len(x))
    return fit, samples


def holdout_prediction(x, y, **kw) -> dict:
    """Fit on all points but the largest x; predict that one: {'predicted', 'actual',
    'error_percent' (of the actual loss)} and the fit."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    last = int(np.argmax(x))
    keep = np.arange(len(x)) != last
    fit, _ = fit_power_law(x[keep], y[keep], **kw)
    pred = float(fit(x[last]))
    return dict(x=float(x[last]), predicted=pred, actual=float(y[last]),
                error_percent=100.0 * (pred - y[last]) / y[last], fit=fit.as_dict())


def compute_frontier(c, loss) -> tuple[np.ndarray, np.ndarray]:
    """The points (c, loss) that no point of smaller or equal compute beats: sorted by c."""
    c, loss = np.asarray(c, float), np.asarray(loss, float)
    idx = np.lexsort((loss, c))
    keep, best = [], np.inf
    for i in idx:
        if loss[i] < best:
            keep.append(i)
            best = loss[i]
    return c[keep], loss[keep]


def plot_fit(path: str, x, y, fit: PowerLawFit, samples: np.ndarray, *, xlabel: str,
             ylabel: str, title: str = "", extrapolate: float = 10.0, other=None,
             heldout=None, points_label: str = "runs") -> None:
    """A log-log PNG: points, the fit and its 95% bootstrap band, the extrapolation beyond
    the largest x (to extrapolate * max x) shaded; `other` = (x, y, label) extra points
    (all evaluations behind a frontier); `heldout` = (x, y): the prediction of a point from
    a fit without it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x, y = np.asarray(x, float), np.asarray(y, float)
    lo, hi = x.min() / 1.5, x.max() * extrapolate
    grid = np.geomspace(lo, hi, 200)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    if other is not None:
        ax.scatter(other[0], other[1], s=8, c="0.7", label=other[2])
    band = fit.band(grid, samples) if len(samples) else None
    if band is not None:
        ax.fill_between(grid, *band, color="C0", alpha=0.2, lw=0, label="95% bootstrap")
    ax.plot(grid, fit(grid), "C0-", label=f"fit: E + A x^-{fit.alpha:.3f} "
            f"[{fit.interval['alpha'][0]:.3f}, {fit.interval['alpha'][1]:.3f}]")
    ax.axvspan(x.max(), hi, color="0.5", alpha=0.12, lw=0, label="extrapolation")
    ax.scatter(x, y, c="C1", zorder=3, label=points_label)
    if heldout is not None:
        ax.scatter(*heldout, marker="x", c="C3", zorder=3,
                   label="largest, predicted from the others")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title or f"R^2 = {fit.r2:.3f}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
