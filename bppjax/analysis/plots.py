"""Figures for the analysis tools: the update-norm heat map (Fig. 7) and LinearScope panels (Fig. 8).

Figures are built with ``matplotlib.figure.Figure`` rather than ``pyplot``, so
they work headless, in threads and in notebooks alike, and never pile up in a
global figure registry. Each function returns the figure and, given a path,
also saves it as a PNG.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib.figure import Figure

DPI = 120


def _save(fig: Figure, path: str | Path | None) -> Figure:
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
    return fig


def _heatmap(ax, norms: np.ndarray, title: str):
    """Draw one levels x blocks map with its values; lowest level at the bottom."""
    levels, blocks = norms.shape
    peak = float(norms.max()) if norms.size else 0.0
    im = ax.imshow(norms, origin="lower", cmap="viridis", aspect="auto", vmin=0, vmax=max(peak, 1e-12))
    for (l, t), v in np.ndenumerate(norms):
        ax.text(t, l, f"{v:.0f}", ha="center", va="center", fontsize=8, color="black" if v > 0.6 * peak else "white")
    ax.set_xticks(range(blocks), [str(t + 1) for t in range(blocks)])
    ax.set_yticks(range(levels), [str(l) for l in range(levels)])
    ax.set_xlabel("flux block t")
    ax.set_ylabel("level l (0 = lowest res.)")
    ax.set_title(title, fontsize=10)
    return im


def _as_map(norms: np.ndarray) -> np.ndarray:
    norms = np.asarray(norms, np.float64)
    if norms.ndim != 2:
        raise ValueError(f"update norms must be (levels, blocks); got shape {norms.shape}")
    return norms


def plot_update_norms(norms: np.ndarray, path: str | Path | None = None, title: str = "Update norms (max = 100)") -> Figure:
    """The paper's L x D heat map: rows are levels (lowest resolution at the bottom), columns blocks.

    Args:
      norms: ``(levels, blocks)``, lowest level first, e.g. from ``mean_update_norms``.
    """
    norms = _as_map(norms)
    levels, blocks = norms.shape
    fig = Figure(figsize=(max(3.5, 0.55 * blocks + 2.2), max(1.8, 0.55 * levels + 1.2)))
    ax = fig.add_subplot()
    fig.colorbar(_heatmap(ax, norms, title), ax=ax, fraction=0.04)
    return _save(fig, path)


def plot_update_norms_grid(norms: Sequence[np.ndarray], titles: Sequence[str], path: str | Path | None = None) -> Figure:
    """Several heat maps stacked (e.g. BPP over ResNet), each with its own max-100 scale."""
    maps = [_as_map(n) for n in norms]
    width = max(3.5, 0.55 * max(m.shape[1] for m in maps) + 2.2)
    fig = Figure(figsize=(width, sum(max(1.8, 0.55 * m.shape[0] + 1.2) for m in maps)), layout="constrained")
    axes = fig.subplots(len(maps), 1, squeeze=False, height_ratios=[m.shape[0] + 1.5 for m in maps])[:, 0]
    for ax, m, t in zip(axes, maps, titles):
        _heatmap(ax, m, t)
    return _save(fig, path)


def _show(ax, image: np.ndarray, title: str) -> None:
    ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()


def signed_to_unit(a: np.ndarray) -> np.ndarray:
    """Map a signed image to [0, 1] with 0 at mid-grey and the largest magnitude at 0 or 1.

    The global part r has no natural range (it can be negative), so it is shown
    symmetrically scaled; the scale goes in the figure title and ``summary.json``.
    """
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    return 0.5 + 0.5 * a / peak if peak > 0 else np.full_like(a, 0.5)


def plot_linearscope(
    x: np.ndarray, y: np.ndarray, fx: np.ndarray, r: np.ndarray, path: str | Path | None = None, title: str = ""
) -> Figure:
    """Input, output y, local part F x and global part r (symmetrically scaled) side by side; HWC arrays."""
    fig = Figure(figsize=(12, 3.4))
    axes = fig.subplots(1, 4)
    _show(axes[0], x, "input x")
    _show(axes[1], y, "output y")
    _show(axes[2], fx, "local part F x")
    peak = float(np.max(np.abs(r)))
    _show(axes[3], signed_to_unit(r), f"global part r (grey = 0, ±{peak:.3g})")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def crop_window(a: np.ndarray, center: tuple[int, int], size: int) -> np.ndarray:
    """A ``size`` x ``size`` window of an HW(C) array around ``center``, clamped inside the image."""
    h, w = a.shape[:2]
    size = min(size, h, w)
    top = int(np.clip(center[0] - size // 2, 0, h - size))
    left = int(np.clip(center[1] - size // 2, 0, w - size))
    return a[top : top + size, left : left + size]


def plot_filters(
    x: np.ndarray,
    rows: np.ndarray,
    pixels: Sequence[tuple[int, int]],
    path: str | Path | None = None,
    window: int = 32,
    title: str = "",
    scale: int = 1,
) -> Figure:
    """For each output pixel p: the input patch around p and the filter (row p of F) beside it.

    The filter is summed over input colour channels and drawn on a diverging
    scale set by its largest *off-centre* tap: in a residual network the centre
    tap is ~1 (the skip connection) and would hide the rest, so it saturates and
    its value goes in the title. A third panel shows log10 |filter| over the
    whole image: how far the network reaches beyond the patch.

    Args:
      x: the input image (H, W, 3).
      rows: ``(P, H, W, 3)`` from ``linearscope.filters``.
      pixels: the P output positions ``(row, col)``.
      scale: output pixels per input pixel (``bppjax.models.output_scale``; an
        LR-input model's output pixel p sits over input pixel p // scale).
    """
    rows = np.asarray(rows)
    n = len(pixels)
    fig = Figure(figsize=(9, 3.0 * n))
    axes = np.asarray(fig.subplots(n, 3, squeeze=False))
    for k, out_p in enumerate(pixels):
        p = (int(out_p[0]) // scale, int(out_p[1]) // scale)
        filt = rows[k].sum(-1)
        patch = crop_window(x, p, window)
        local = crop_window(filt, p, window)
        _show(axes[k, 0], patch, f"input patch at {tuple(int(v) for v in p)}" + (f" (output {tuple(int(v) for v in out_p)})" if scale > 1 else ""))
        centre = float(filt[p[0], p[1]])
        off = np.abs(filt).copy()
        off[p[0], p[1]] = 0.0
        peak = float(off.max()) or 1.0
        im = axes[k, 1].imshow(local, cmap="RdBu_r", vmin=-peak, vmax=peak, interpolation="nearest")
        axes[k, 1].set_title(f"row of F: centre {centre:.3f}, sum {filt.sum():.3f}", fontsize=9)
        axes[k, 1].set_axis_off()
        fig.colorbar(im, ax=axes[k, 1], fraction=0.046)
        mag = np.log10(np.abs(filt) + 1e-12)
        im = axes[k, 2].imshow(mag, cmap="magma", vmin=mag.max() - 6, vmax=mag.max(), interpolation="nearest")
        axes[k, 2].plot([p[1]], [p[0]], "c+", markersize=8)
        axes[k, 2].set_title("log10 |filter|, whole image", fontsize=9)
        axes[k, 2].set_axis_off()
        fig.colorbar(im, ax=axes[k, 2], fraction=0.046)
    if title:
        fig.suptitle(title)
    return _save(fig, path)

