"""Matplotlib pictures for notebooks: metric curves, sample grids, receptive-field maps.

Every function draws into a given `ax` (or a new figure) and returns the axes, so notebooks
compose them freely. matplotlib is imported on first use only: the training path never
needs it.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from argen_jax.evaluation.images import make_grid
from argen_jax.train.metrics import read_metrics


def _plt():
    import matplotlib.pyplot as plt

    return plt


def _axes(ax, figsize=(5, 3.5)):
    if ax is None:
        _, ax = _plt().subplots(figsize=figsize)
    return ax


def metric_curve(rows_or_workdir, key: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of `key` from metrics.jsonl rows or a workdir holding them."""
    rows = read_metrics(rows_or_workdir) if isinstance(rows_or_workdir, str) else rows_or_workdir
    pts = [(r["step"], r[key]) for r in rows if key in r]
    if not pts:
        return np.zeros(0), np.zeros(0)
    steps, vals = zip(*pts, strict=True)
    return np.asarray(steps), np.asarray(vals, np.float64)


def plot_metrics(rows_or_workdir, keys: Sequence[str] = ("train/bpd", "eval/bpd"), ax=None,
                 title: str | None = None, ylabel: str | None = None):
    """Lines (several points) or markers (one point, e.g. a final eval) per metric key."""
    ax = _axes(ax)
    for key in keys:
        steps, vals = metric_curve(rows_or_workdir, key)
        if len(steps):
            ax.plot(steps, vals, "o-" if len(steps) < 3 else "-", label=key)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel or ", ".join(keys))
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    return ax


def show_images(images, levels: int = 256, ncol: int | None = None, ax=None,
                title: str | None = None, scale: float = 0.5):
    """A grid of ints [N, H, W, C] in [0, levels) (C in {1, 3}) without axes."""
    grid = make_grid(np.asarray(images), levels, ncol)
    if ax is None:
        h, w = grid.shape[:2]
        _, ax = _plt().subplots(figsize=(max(2.0, scale * w / 16), max(2.0, scale * h / 16)))
    ax.imshow(grid[..., 0] if grid.shape[-1] == 1 else grid, cmap="gray", vmin=0, vmax=255,
              interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def show_image_panels(panels: Mapping[str, np.ndarray], levels: int = 256,
                      ncol: int | None = None, panel_size: float = 2.6, columns: int = 0):
    """Side-by-side grids: {title: images [N, H, W, C]} (e.g. one panel per temperature),
    `panel_size` inches wide each, as tall as the widest grid's aspect needs. Returns the
    figure."""
    plt = _plt()
    n = len(panels)
    cols = columns or n
    rows = -(-n // cols)
    grids = [make_grid(np.asarray(v), levels, ncol) for v in panels.values()]
    aspect = max(g.shape[0] / g.shape[1] for g in grids)
    fig, axes = plt.subplots(rows, cols, squeeze=False,
                             figsize=(panel_size * cols, (panel_size * aspect + 0.35) * rows))
    for ax, (name, imgs) in zip(axes.flat, panels.items(), strict=False):
        show_images(imgs, levels, ncol, ax=ax, title=name)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def show_receptive_field(grad: np.ndarray, position: tuple[int, int], ax=None,
                         title: str | None = None, log: bool = True):
    """|d output / d input| [H, W] or [H, W, C] (summed over C) as a heat map; the output's
    own pixel is outlined in red, exact zeros (inputs not seen) are shown white."""
    g = np.asarray(grad, np.float64)
    if g.ndim == 3:
        g = g.sum(-1)
    ax = _axes(ax, (3, 3))
    shown = np.where(g > 0, np.log10(np.maximum(g, 1e-30)) if log else g, np.nan)
    cmap = _plt().get_cmap("viridis").copy()
    cmap.set_bad("white")
    ax.imshow(shown, cmap=cmap, interpolation="nearest")
    i, j = position
    ax.add_patch(_plt().Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, ec="red", lw=2))
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def plot_sequence_field(grad: np.ndarray, position: int, ax=None, title: str | None = None):
    """|d output_t / d input| over a 1-D sequence ([T] or [T, C], summed over C) on a log
    scale, with the output's own position marked."""
    g = np.asarray(grad, np.float64)
    if g.ndim == 2:
        g = g.sum(-1)
    ax = _axes(ax, (8, 2.5))
    t = np.arange(len(g))
    nz = g > 0
    ax.semilogy(t[nz], g[nz], ".", ms=2)
    ax.axvline(position, color="red", lw=1, label=f"output t={position}")
    ax.set_xlabel("input position")
    ax.set_ylabel("|d out / d in|")
    ax.legend(loc="upper left")
    if title:
        ax.set_title(title, fontsize=9)
    return ax
