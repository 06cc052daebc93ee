"""The SR degradation of one patch, computed from a small window of the HR image.

``sr_input`` (bppjax.image.degrade) shrinks the whole mod-cropped HR image
with the MATLAB bicubic and enlarges it back. Each output pixel of either pass
depends only on the few input pixels its kernel covers, and the resize weights
lie on a 2**-36 grid so every sum is exact in float64 whatever its order
(bppjax.image.resize). A patch of the network input therefore needs only the
LR pixels under the enlarging kernel, which need only the HR pixels under the
shrinking kernel: applying the same weight rows to that window gives the very
pixels of the whole-image degradation, bit for bit, at a fraction of the cost.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from bppjax.image.resize import resize_weights

__all__ = ["Plan", "plan", "degrade_window", "lr_shape"]


def lr_shape(shape: tuple[int, int], scale: int) -> tuple[int, int]:
    """LR size of a mod-cropped HR image of ``shape`` (H, W) at integer ``scale``."""
    return shape[0] // scale, shape[1] // scale


@functools.lru_cache(maxsize=4096)
def _axis(hr_len: int, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Taps of the shrinking and the enlarging pass along one axis, as ``imresize`` computes them."""
    lr_len = hr_len // scale
    d_idx, d_w = resize_weights(hr_len, lr_len, lr_len / hr_len)  # imresize's scale: out / in
    u_idx, u_w = resize_weights(lr_len, hr_len, hr_len / lr_len)
    return d_idx, d_w, u_idx, u_w


def _taps(idx: np.ndarray, w: np.ndarray, rows: slice, origin: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of output ``rows``, their indices counted from ``origin``."""
    return idx[rows] - origin, w[rows]


class Plan(NamedTuple):
    """What one patch needs: the HR window to read and the weight matrices to apply to it.

    ``window`` is ((y0, y1), (x0, x1)) in HR pixels of the mod-cropped image;
    ``down`` holds the (indices, weights) taps, per axis, that map it to LR
    rows/columns and ``up``, for an upscaled input, those back to the patch's
    HR rows/columns.
    """

    window: tuple[tuple[int, int], tuple[int, int]]
    down: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
    up: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None


def _axis_plan(hr_len: int, scale: int, start: int, size: int, lr_input: bool):
    d_idx, d_w, u_idx, u_w = _axis(hr_len, scale)
    if lr_input:  # the LR pixels of the patch itself
        lo, hi = start // scale, (start + size) // scale
        up = None
    else:  # the LR pixels under the enlarging kernel of the patch's rows
        taps = u_idx[start : start + size]
        lo, hi = int(taps.min()), int(taps.max()) + 1
        up = _taps(u_idx, u_w, slice(start, start + size), lo)
    src = d_idx[lo:hi]
    y0, y1 = int(src.min()), int(src.max()) + 1
    return (y0, y1), _taps(d_idx, d_w, slice(lo, hi), y0), up


def plan(shape: tuple[int, int], scale: int, y: int, x: int, size: int, lr_input: bool = False) -> Plan:
    """The window and weights for the ``size`` x ``size`` HR patch at (y, x) of a mod-cropped image of ``shape``.

    ``lr_input``: the patch's input is the LR image itself (``y``, ``x`` and
    ``size`` must then be multiples of ``scale``), not its enlargement.
    """
    if lr_input and (y % scale or x % scale or size % scale):
        raise ValueError(f"an LR-input patch needs offsets and size that are multiples of the scale {scale}; got y={y}, x={x}, size={size}")
    wy, dy, uy = _axis_plan(shape[0], scale, y, size, lr_input)
    wx, dx, ux = _axis_plan(shape[1], scale, x, size, lr_input)
    return Plan((wy, wx), (dy, dx), None if lr_input else (uy, ux))


def _pass(x: np.ndarray, taps: tuple[np.ndarray, np.ndarray], axis: int, peak: float) -> np.ndarray:
    """One 1-D resampling of an (H, W, C) float64 array along ``axis`` (0 or 1), rounded as integer data.

    A weighted sum of gathered taps (a few per output pixel), not a matmul
    with the mostly-zero dense matrix: fewer operations, and no BLAS threads.
    """
    idx, w = taps
    if axis == 0:
        out = np.einsum("ok,okwc->owc", w, x[idx])
    else:
        out = np.einsum("ok,hokc->hoc", w, x[:, idx])
    return np.clip(np.floor(out + 0.5), 0, peak)


def degrade_window(window: np.ndarray, p: Plan) -> np.ndarray:
    """The patch's network input (uint8) from the HR ``window`` read at ``p.window``.

    Height first, then width, rounding after each pass: MATLAB's order for equal
    scales, as ``imresize`` does it.
    """
    if window.dtype != np.uint8:
        raise ValueError(f"SR degradation expects uint8 images (exact MATLAB rounding), got dtype {window.dtype}")
    x = window.astype(np.float64)
    x = _pass(x, p.down[0], 0, 255.0)
    x = _pass(x, p.down[1], 1, 255.0)
    if p.up is not None:
        x = _pass(x, p.up[0], 0, 255.0)
        x = _pass(x, p.up[1], 1, 255.0)
    return x.astype(np.uint8)
