"""MATLAB-compatible bicubic ``imresize``, in NumPy and in JAX.

SR results are only comparable when the low-resolution images are made the
way MATLAB's ``imresize(img, scale, 'bicubic')`` makes them. The rules, as
described in docs/METRICS.md (verified bit-exactly against MATLAB-made
benchmark images):

* Keys cubic kernel with a = -0.5, support [-2, 2].
* When shrinking, the kernel is stretched by 1/scale (antialiasing).
* Output pixel x (1-based) samples input position
  ``u = x / scale + 0.5 * (1 - 1 / scale)``; weights are normalised to sum 1.
* Taps outside the image clamp to the edge pixel.
* Axes are resized one at a time, the one shrinking most first (MATLAB's
  order); with equal scales that is height, then width.
* Integer data (uint8, uint16) are rounded half up and clipped after each
  1-D pass.

Arrays are (H, W) or (..., H, W, C). ``imresize`` (NumPy, float64 arithmetic)
serves the data pipeline and evaluation; ``imresize_jax`` runs under ``jit``,
is differentiable for float input, and reproduces ``imresize`` exactly on
uint8 input (see ``_exact_pass_jax``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy import sparse

__all__ = ["imresize", "imresize_jax", "output_shape_for", "resize_weights"]

Edge = Literal["clamp", "symmetric"]
_WEIGHT_GRID = 2.0**36
ScaleArg = float | Sequence[float] | None
ShapeArg = Sequence[int | None] | None


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel, a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx**2
    absx3 = absx**3
    inner = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return inner + outer


@functools.lru_cache(maxsize=256)
def resize_weights(
    in_len: int, out_len: int, scale: float, antialias: bool = True, edge: Edge = "clamp"
) -> tuple[np.ndarray, np.ndarray]:
    """1-D resampling taps, as MATLAB's ``contributions``.

    Args:
      in_len: input length.
      out_len: output length.
      scale: out / in size ratio used for the sampling grid.
      antialias: stretch the kernel when shrinking.
      edge: "clamp" (MATLAB-exact, see module docstring) or "symmetric" mirroring.

    Returns:
      ``(indices, weights)``, both (out_len, taps): output pixel i is
      ``sum_k weights[i, k] * input[indices[i, k]]`` (0-based indices). Read-only.
    """
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel = lambda t: scale * cubic(scale * t)  # noqa: E731
        kernel_width = kernel_width / scale
    else:
        kernel = cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)[:, None]
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left + np.arange(taps, dtype=np.float64)[None, :]  # 1-based positions
    weights = kernel(u - indices)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Snap to a 2**-36 grid (a change below 1.5e-11): every product and partial
    # sum with uint8/uint16 data is then exact in float64, so the result does
    # not depend on summation order and NumPy and JAX round identically, even
    # at exact .5 ties (fractional scales such as 1.5 produce them).
    weights = np.round(weights * _WEIGHT_GRID) / _WEIGHT_GRID
    idx = indices.astype(np.int64) - 1
    if edge == "clamp":
        idx = np.clip(idx, 0, in_len - 1)
    elif edge == "symmetric":
        period = 2 * in_len
        idx = np.mod(idx, period)
        idx = np.where(idx >= in_len, period - 1 - idx, idx)
    else:
        raise ValueError(f"edge must be 'clamp' or 'symmetric', got {edge!r}")
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero tap columns
    idx, weights = idx[:, keep], weights[:, keep]
    idx.setflags(write=False)
    weights.setflags(write=False)
    return idx, weights


def output_shape_for(
    in_shape: tuple[int, int], scale: ScaleArg = None, output_shape: ShapeArg = None
) -> tuple[tuple[int, int], tuple[float, float]]:
    """Resolves MATLAB's ``imresize`` size arguments.

    Exactly one of ``scale`` (a number or (sh, sw)) and ``output_shape``
    ((h, w); one entry may be None to keep the aspect ratio) is given. With a
    scale, the output size is ``ceil(scale * in)``; with an output size, the
    scale is ``out / in``.

    Returns:
      ``((out_h, out_w), (scale_h, scale_w))``.
    """
    if (scale is None) == (output_shape is None):
        raise ValueError("give exactly one of scale= and output_shape=")
    in_h, in_w = in_shape
    if in_h < 1 or in_w < 1:
        raise ValueError(f"cannot resize an empty image of spatial shape {in_shape}")
    if scale is not None:
        scales = _pair(scale, "scale")
        for s in scales:
            if not (isinstance(s, (int, float, np.number)) and math.isfinite(s) and s > 0):
                raise ValueError(f"scale must be a positive finite number (or a pair), got {scale!r}")
        sh, sw = float(scales[0]), float(scales[1])
        return (math.ceil(sh * in_h), math.ceil(sw * in_w)), (sh, sw)
    shape = _pair(output_shape, "output_shape")
    if shape[0] is None and shape[1] is None:
        raise ValueError("output_shape must give at least one of (height, width)")
    for n in shape:
        if n is not None and not (isinstance(n, (int, np.integer)) and n > 0):
            raise ValueError(f"output_shape entries must be positive integers or None, got {output_shape!r}")
    if shape[0] is None:
        s = shape[1] / in_w
        return (math.ceil(s * in_h), int(shape[1])), (s, s)
    if shape[1] is None:
        s = shape[0] / in_h
        return (int(shape[0]), math.ceil(s * in_w)), (s, s)
    return (int(shape[0]), int(shape[1])), (shape[0] / in_h, shape[1] / in_w)


def imresize(
    image: np.ndarray,
    scale: ScaleArg = None,
    *,
    output_shape: ShapeArg = None,
    antialias: bool = True,
    edge: Edge = "clamp",
) -> np.ndarray:
    """MATLAB ``imresize(image, scale, 'bicubic')`` in NumPy (float64, sparse matmuls).

    Args:
      image: (H, W) or (..., H, W, C); uint8, uint16 or float.
      scale: resize factor, a number or (scale_h, scale_w); e.g. 0.5 halves.
      output_shape: (h, w) instead of ``scale`` (one entry may be None).
      antialias: widen the kernel when shrinking (MATLAB's default).
      edge: "clamp" (MATLAB-exact) or "symmetric".

    Returns:
      The resized array with the input's dtype. Integer data are rounded half
      up and clipped after each 1-D pass, as MATLAB does.
    """
    image = np.asarray(image)
    dtype = image.dtype
    if not (dtype in (np.uint8, np.uint16) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"imresize supports uint8, uint16 and float images, got dtype {dtype}")
    axes = _spatial_axes(image.ndim)
    in_shape = (image.shape[axes[0]], image.shape[axes[1]])
    out_shape, scales = output_shape_for(in_shape, scale, output_shape)
    peak = float(np.iinfo(dtype).max) if dtype in (np.uint8, np.uint16) else None

    x = image.astype(np.float64)
    for k in _pass_order(scales):
        matrix = _sparse_weights(in_shape[k], out_shape[k], scales[k], antialias, edge)
        x = _apply_weights(x, matrix, axes[k])
        if peak is not None:
            x = np.clip(np.floor(x + 0.5), 0, peak)
    return x.astype(dtype)


@functools.lru_cache(maxsize=256)
def _sparse_weights(in_len: int, out_len: int, scale: float, antialias: bool, edge: Edge) -> sparse.csr_matrix:
    """The taps as a sparse (out_len, in_len) matrix (clamped taps merged)."""
    idx, w = resize_weights(in_len, out_len, scale, antialias, edge)
    rows = np.repeat(np.arange(out_len), idx.shape[1])
    return sparse.csr_matrix((w.ravel(), (rows, idx.ravel())), shape=(out_len, in_len))


def _apply_weights(x: np.ndarray, matrix: sparse.csr_matrix, axis: int) -> np.ndarray:
    """Resamples ``axis`` of x; on the 2**-36 weight grid the order of summation is irrelevant."""
    moved = np.ascontiguousarray(np.moveaxis(x, axis, 0))
    out = matrix @ moved.reshape(moved.shape[0], -1)
    return np.moveaxis(out.reshape((matrix.shape[0],) + moved.shape[1:]), 0, axis)


def imresize_jax(
    image: jax.Array,
    scale: ScaleArg = None,
    *,
    output_shape: ShapeArg = None,
    antialias: bool = True,
    edge: Edge = "clamp",
) -> jax.Array:
    """MATLAB-compatible bicubic resize in JAX (jit-able; sizes are static).

    Each 1-D pass is a matmul with a (out, in) weight matrix built on the host,
    so it runs well on accelerators and batches for free.

    Args:
      image: (H, W) or (..., H, W, C) array. Float input: differentiable, agrees
        with ``imresize`` to float32 precision. uint8 input: per-pass rounding,
        bit-identical to ``imresize`` (not differentiable).
      scale, output_shape, antialias, edge: as in ``imresize``; pass them as
        static arguments when jitting.

    Returns:
      The resized array; uint8 in, uint8 out; float in, float out.
    """
    image = jnp.asarray(image)
    dtype = image.dtype
    if not (dtype == jnp.uint8 or jnp.issubdtype(dtype, jnp.floating)):
        raise ValueError(f"imresize_jax supports uint8 and float images, got dtype {dtype}")
    axes = _spatial_axes(image.ndim)
    in_shape = (image.shape[axes[0]], image.shape[axes[1]])
    out_shape, scales = output_shape_for(in_shape, scale, output_shape)
    if edge not in ("clamp", "symmetric"):
        raise ValueError(f"edge must be 'clamp' or 'symmetric', got {edge!r}")
    return _imresize_jax(image, out_shape, scales, bool(antialias), edge)


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4))
def _imresize_jax(
    image: jax.Array, out_shape: tuple[int, int], scales: tuple[float, float], antialias: bool, edge: Edge
) -> jax.Array:
    # One compiled program per shape and scale (eager dispatch would compile every op).
    dtype = image.dtype
    axes = _spatial_axes(image.ndim)
    in_shape = (image.shape[axes[0]], image.shape[axes[1]])
    x = image if dtype != jnp.uint8 else image.astype(jnp.float32)
    for k in _pass_order(scales):
        args = (in_shape[k], out_shape[k], scales[k], antialias, edge)
        if dtype == jnp.uint8:
            x = _exact_pass_jax(x, _exact_split(*args), axes[k])
        else:
            x = _matmul_axis(x, jnp.asarray(_dense_weights(*args), dtype=x.dtype), axes[k])
    return x.astype(jnp.uint8) if dtype == jnp.uint8 else x


@functools.lru_cache(maxsize=256)
def _dense_weights(in_len: int, out_len: int, scale: float, antialias: bool, edge: Edge) -> np.ndarray:
    """The taps as a dense (out_len, in_len) float64 matrix (clamped taps merged)."""
    idx, w = resize_weights(in_len, out_len, scale, antialias, edge)
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), idx.shape[1]), idx.ravel()), w.ravel())
    matrix.setflags(write=False)
    return matrix


def _matmul_axis(x: jax.Array, matrix: jax.Array, axis: int) -> jax.Array:
    """Contracts ``axis`` of x with the matrix's input dimension, in full precision."""
    x = jnp.moveaxis(x, axis, -1)
    y = jnp.matmul(x, matrix.T, precision=jax.lax.Precision.HIGHEST)
    return jnp.moveaxis(y, -1, axis)


# float32 holds integers below 2**24 exactly; the exact pass keeps every partial
# sum of its matmuls below that bound.
_F32_EXACT = 2**24
_MAX_LEVELS = 16


@functools.lru_cache(maxsize=256)
def _exact_split(
    in_len: int, out_len: int, scale: float, antialias: bool, edge: Edge
) -> tuple[tuple[int, ...], tuple[np.ndarray, ...]]:
    """Splits weights into integer matrices q_k with w = sum_k q_k 2**-s_k.

    Every product (<= 255 * |q|) and every row sum stays below 2**24, so the
    float32 matmuls with integer-valued uint8 data are exact whatever the
    summation order. The weights lie on a 2**-36 grid, so a few levels
    represent them exactly (one level for the dyadic x2/x4/x8 weights).
    """
    w = _dense_weights(in_len, out_len, scale, antialias, edge)
    nnz = max(int((w != 0).sum(axis=1).max()), 1)
    budget = _F32_EXACT / 255.0  # allowed row sum of |q|
    abs_sum = float(np.abs(w).sum(axis=1).max())
    shift = int(math.floor(math.log2((budget - nnz / 2) / abs_sum)))
    step = int(math.floor(math.log2(budget / nnz))) - 1  # bits gained per level
    if step < 1 or shift < 1:
        raise ValueError(f"uint8 imresize_jax: {in_len} -> {out_len} shrinks too much for exact arithmetic; use float input")
    shifts, parts = [], []
    residual = w.copy()
    while residual.any():
        if len(parts) == _MAX_LEVELS:
            raise AssertionError("resize weights are not on the expected binary grid")
        q = np.round(residual * 2.0**shift)
        shifts.append(shift)
        parts.append(q.astype(np.float32))
        residual = residual - q * 2.0**-shift
        shift += step
    return tuple(shifts), tuple(parts)


def _exact_pass_jax(x: jax.Array, split: tuple[tuple[int, ...], tuple[np.ndarray, ...]], axis: int) -> jax.Array:
    """One 1-D pass on integer-valued float32 data with MATLAB rounding, exactly.

    The float64 weights are split into integer matrices on exact binary grids
    (``_exact_split``); each float32 matmul is then exact, the partial results
    are combined with int32 carries, and round-half-up is read off the integer
    sum. This reproduces the float64 NumPy pass without float64 on device.
    """
    shifts, parts = split
    sums = [_matmul_axis(x, jnp.asarray(q), axis).astype(jnp.int32) for q in parts]
    carry = jnp.zeros_like(sums[-1])
    for k in range(len(sums) - 1, 0, -1):
        total = sums[k] + carry
        carry = jnp.right_shift(total, shifts[k] - shifts[k - 1])  # floor division
    total = sums[0] + carry  # value in [total, total + 1) * 2**-shifts[0]
    rounded = jnp.right_shift(total + (1 << (shifts[0] - 1)), shifts[0])
    return jnp.clip(rounded, 0, 255).astype(jnp.float32)


def _pass_order(scales: tuple[float, float]) -> list[int]:
    """MATLAB resizes the axis with the smallest scale first (height on ties)."""
    return [0, 1] if scales[0] <= scales[1] else [1, 0]


def _spatial_axes(ndim: int) -> tuple[int, int]:
    if ndim == 2:
        return 0, 1
    if ndim >= 3:
        return ndim - 3, ndim - 2
    raise ValueError(f"image must be (H, W) or (..., H, W, C), got {ndim} dimension(s)")


def _pair(value, name: str) -> tuple:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{name} must be a number or a pair, got {value!r}")
    if isinstance(value, Sequence) or isinstance(value, np.ndarray):
        if len(value) != 2:
            raise ValueError(f"{name} must be a number or a pair (height, width), got {value!r}")
        return tuple(value)
    return (value, value)
