"""PSNR and SSIM in the three conventions the BPP paper reports.

Published numbers are only comparable under the exact definition that made
them, so the convention is an explicit argument (docs/METRICS.md):

``"Y_M"`` (default; SR tables, MATLAB/RDN style)
    Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255 with R, G, B in 0..255,
    kept as float (not rounded). SSIM: 11x11 Gaussian window, sigma 1.5,
    'valid' filtering, population statistics.
``"Y_P"`` (raindrop benchmark, OpenCV + scikit-image style)
    Y of OpenCV's ``cvtColor(..., COLOR_RGB2YCrCb)`` on uint8: the integer
    ``(4899 R + 9617 G + 1868 B + 8192) >> 14``. SSIM: 7x7 uniform window,
    sample covariance (N / (N - 1)), 'valid' (scikit-image's old defaults).
``"RGB"`` (dehaze / DPED)
    PSNR from the MSE over all pixels and the three channels; SSIM as for Y_M
    computed per channel and averaged over R, G, B.

All use peak 255 and C1 = (0.01 * 255)**2, C2 = (0.03 * 255)**2; ``shave``
pixels are removed from every border first (SR convention: shave = scale).
Grey images (H, W) or (H, W, 1) are replicated to three channels.

Inputs are 8-bit images. A float image (a network output, in [0, 1]) is first
quantised to uint8 by rounding half up and clipping, as the published
pipelines save and score 8-bit images; so the scores are those of the image
you would write to disk.

NumPy versions (``psnr``, ``ssim``) convert and shave per convention, then
score the float64 planes with ``skimage.metrics`` (``peak_signal_noise_ratio``,
``structural_similarity`` with each convention's window); they are the
reference for evaluation. ``psnr_jax`` / ``ssim_jax`` take (B, H, W, C) float batches in
[0, 1] and return per-image scores for validation during training;
``ssim_loss`` is the differentiable SSIM objective (the paper trains DPED with
negative SSIM).
"""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bppjax.image.io import quantise

__all__ = [
    "CONVENTIONS",
    "Convention",
    "to_y_matlab",
    "to_y_opencv",
    "quantize_uint8",
    "psnr",
    "ssim",
    "psnr_ssim",
    "psnr_jax",
    "ssim_jax",
    "ssim_loss",
]

Convention = Literal["Y_M", "Y_P", "RGB"]
CONVENTIONS: tuple[str, ...] = ("Y_M", "Y_P", "RGB")

PEAK = 255.0
_C1 = (0.01 * PEAK) ** 2
_C2 = (0.03 * PEAK) ** 2
_MATLAB_Y = (65.481, 128.553, 24.966)
_OPENCV_Y = (4899, 9617, 1868)  # BT.601 weights in OpenCV's 14-bit fixed point


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    t = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(t**2) / (2 * sigma**2))
    return g / g.sum()  # outer(g, g) equals MATLAB's normalised fspecial('gaussian')


# (1-D window, sample-covariance correction) per SSIM flavour
_WINDOWS = {
    "gaussian": (_gaussian_1d(), 1.0),
    "uniform": (np.full(7, 1 / 7), 49 / 48),
}
_SSIM_WINDOW = {"Y_M": "gaussian", "Y_P": "uniform", "RGB": "gaussian"}
#: The same windows as ``structural_similarity`` options: 11x11 Gaussian (sigma 1.5, truncated at
#: 3.5 sigma) with population statistics, or 7x7 uniform with sample statistics.
_SKIMAGE_SSIM = {
    "gaussian": {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False},
    "uniform": {"win_size": 7, "use_sample_covariance": True},
}


# --------------------------------------------------------------------------- colour conversions


def to_y_matlab(rgb: np.ndarray) -> np.ndarray:
    """Float Y (16..235) of MATLAB's ``rgb2ycbcr`` on 0..255 RGB, not rounded."""
    rgb = np.asarray(rgb, dtype=np.float64)
    r, g, b = _MATLAB_Y
    return 16.0 + (r * rgb[..., 0] + g * rgb[..., 1] + b * rgb[..., 2]) / 255.0


def to_y_opencv(rgb: np.ndarray) -> np.ndarray:
    """uint8 Y of OpenCV's RGB->YCrCb conversion (bit-exact fixed point)."""
    x = np.asarray(rgb).astype(np.int64)
    r, g, b = _OPENCV_Y
    return ((r * x[..., 0] + g * x[..., 1] + b * x[..., 2] + (1 << 13)) >> 14).astype(np.uint8)


def quantize_uint8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """uint8 passes through; float in [0, 1] is rounded half up and clipped.

    Raises:
      ValueError: NaNs, floats that are clearly not in [0, 1] (e.g. 0..255
        data), or another dtype; the message names the argument.
    """
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image
    if not np.issubdtype(image.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float in [0, 1], got dtype {image.dtype}")
    if image.size and np.isnan(image).any():
        raise ValueError(f"{name} contains NaN")
    if image.size and (image.max() > 2.0 or image.min() < -1.0):
        raise ValueError(
            f"{name}: float images must be in [0, 1], got range [{image.min():.3g}, {image.max():.3g}]"
            " (pass uint8 for 0..255 data)"
        )
    return quantise(image, PEAK).astype(np.uint8)


# --------------------------------------------------------------------------- NumPy (evaluation)


def psnr(reference: np.ndarray, test: np.ndarray, *, convention: Convention = "Y_M", shave: int = 0) -> float:
    """PSNR in dB (peak 255) of one image pair; ``inf`` for identical images.

    Args:
      reference: ground truth, (H, W), (H, W, 1) or (H, W, 3); uint8, or float
        in [0, 1] (quantised to uint8 first).
      test: the image to score, same shape.
      convention: "Y_M", "Y_P" or "RGB" (module docstring).
      shave: pixels removed from each border before scoring.
    """
    ref, out = _planes(reference, test, convention, shave, min_size=1)
    if np.array_equal(ref, out):
        return float("inf")
    return float(peak_signal_noise_ratio(ref, out, data_range=PEAK))


def ssim(reference: np.ndarray, test: np.ndarray, *, convention: Convention = "Y_M", shave: int = 0) -> float:
    """Mean SSIM of one image pair (arguments as ``psnr``)."""
    kind = _SSIM_WINDOW[_check_convention(convention)]
    ref, out = _planes(reference, test, convention, shave, min_size=len(_WINDOWS[kind][0]))
    return float(np.mean([structural_similarity(a, b, data_range=PEAK, **_SKIMAGE_SSIM[kind]) for a, b in zip(ref, out)]))


def psnr_ssim(
    reference: np.ndarray, test: np.ndarray, *, convention: Convention = "Y_M", shave: int = 0
) -> tuple[float, float]:
    """``(psnr, ssim)`` of one image pair (arguments as ``psnr``)."""
    return (
        psnr(reference, test, convention=convention, shave=shave),
        ssim(reference, test, convention=convention, shave=shave),
    )


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def _as_rgb(image: np.ndarray, name: str) -> np.ndarray:
    image = quantize_uint8(image, name)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"{name} must be (H, W), (H, W, 1) or (H, W, 3), got shape {image.shape}")
    return np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image


def _planes(
    reference: np.ndarray, test: np.ndarray, convention: str, shave: int, min_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Converts both images to (planes, H, W) float64 per convention, shaved."""
    _check_convention(convention)
    ref, out = _as_rgb(reference, "reference"), _as_rgb(test, "test")
    if ref.shape != out.shape:
        raise ValueError(f"reference and test differ in shape: {np.shape(reference)} vs {np.shape(test)}")
    h, w = ref.shape[:2]
    _check_shave(shave, h, w, min_size)
    ref, out = ref[shave : h - shave, shave : w - shave], out[shave : h - shave, shave : w - shave]
    if convention == "Y_M":
        return to_y_matlab(ref)[None], to_y_matlab(out)[None]
    if convention == "Y_P":
        return to_y_opencv(ref)[None].astype(np.float64), to_y_opencv(out)[None].astype(np.float64)
    return np.moveaxis(ref, -1, 0).astype(np.float64), np.moveaxis(out, -1, 0).astype(np.float64)


def _check_shave(shave: int, h: int, w: int, min_size: int) -> None:
    if isinstance(shave, bool) or not isinstance(shave, (int, np.integer)) or shave < 0:
        raise ValueError(f"shave must be a non-negative integer, got {shave!r}")
    if h - 2 * shave < min_size or w - 2 * shave < min_size:
        raise ValueError(
            f"image of size {h}x{w} is too small for shave={shave} (needs at least {min_size}x{min_size} left)"
        )


# --------------------------------------------------------------------------- JAX (training)


def _planes_jax(x: jax.Array, convention: str, quantize: bool) -> jax.Array:
    """(B, H, W, C) float in [0, 1] -> (B, H, W, planes) on the 0..255 scale."""
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise ValueError(f"expected a (B, H, W, 1|3) batch, got shape {x.shape}")
    if x.shape[-1] == 1:
        x = jnp.repeat(x, 3, axis=-1)
    x = x.astype(jnp.float32) * PEAK
    if quantize:
        x = jnp.clip(jnp.floor(x + 0.5), 0, PEAK)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]  # elementwise: no reduced-precision matmul on GPUs
    if convention == "Y_M":
        wr, wg, wb = _MATLAB_Y
        return (16.0 + (wr * r + wg * g + wb * b) / PEAK)[..., None]
    if convention == "Y_P":
        wr, wg, wb = _OPENCV_Y
        if quantize:
            ri, gi, bi = r.astype(jnp.int32), g.astype(jnp.int32), b.astype(jnp.int32)
            y = (wr * ri + wg * gi + wb * bi + (1 << 13)) >> 14
            return y.astype(jnp.float32)[..., None]
        return ((wr * r + wg * g + wb * b) / 2**14)[..., None]
    return x


def _batch_planes(reference, test, convention, shave, quantize, min_size):
    _check_convention(convention)
    reference, test = jnp.asarray(reference), jnp.asarray(test)
    if reference.shape != test.shape:
        raise ValueError(f"reference and test differ in shape: {reference.shape} vs {test.shape}")
    ref = _planes_jax(reference, convention, quantize)
    out = _planes_jax(test, convention, quantize)
    h, w = ref.shape[1:3]
    _check_shave(shave, h, w, min_size)
    return ref[:, shave : h - shave, shave : w - shave], out[:, shave : h - shave, shave : w - shave]


@functools.partial(jax.jit, static_argnames=("convention", "shave", "quantize"))
def psnr_jax(
    reference: jax.Array, test: jax.Array, *, convention: Convention = "Y_M", shave: int = 0, quantize: bool = True
) -> jax.Array:
    """Per-image PSNR (B,) of (B, H, W, C) float batches in [0, 1].

    ``quantize=True`` rounds to 8 bits first, matching ``psnr`` on the saved
    uint8 images (to float32 precision).
    """
    ref, out = _batch_planes(reference, test, convention, shave, quantize, 1)
    mse = jnp.mean((ref - out) ** 2, axis=(1, 2, 3))
    return 10 * jnp.log10(PEAK**2 / mse)


@functools.partial(jax.jit, static_argnames=("convention", "shave", "quantize"))
def ssim_jax(
    reference: jax.Array, test: jax.Array, *, convention: Convention = "Y_M", shave: int = 0, quantize: bool = True
) -> jax.Array:
    """Per-image SSIM (B,) of (B, H, W, C) float batches in [0, 1] (see ``psnr_jax``)."""
    window, correction = _WINDOWS[_SSIM_WINDOW[_check_convention(convention)]]
    ref, out = _batch_planes(reference, test, convention, shave, quantize, len(window))
    return _ssim_map_jax(ref, out, window, correction).mean(axis=(1, 2, 3))


@functools.partial(jax.jit, static_argnames=("convention",))
def ssim_loss(prediction: jax.Array, target: jax.Array, *, convention: Convention = "RGB") -> jax.Array:
    """Differentiable SSIM loss, ``1 - mean SSIM`` over the batch (no quantisation).

    Its gradient is that of the paper's negative-SSIM objective; the constant
    keeps the loss non-negative (0 for a perfect prediction). Inputs are
    (B, H, W, C) floats in [0, 1]; no border is shaved.
    """
    window, correction = _WINDOWS[_SSIM_WINDOW[_check_convention(convention)]]
    ref, out = _batch_planes(target, prediction, convention, 0, False, len(window))
    return 1.0 - _ssim_map_jax(out, ref, window, correction).mean()


def _filter_valid_jax(x: jax.Array, k: np.ndarray) -> jax.Array:
    """Separable 'valid' correlation over axes 1 and 2 of (B, H, W, P), per plane.

    Two depthwise convolutions: cheaper to compile (and differentiate) than a
    sum of shifted slices; full float32 precision on every backend.
    """
    n, planes = len(k), x.shape[-1]
    dims = ("NHWC", "HWIO", "NHWC")
    for shape in ((n, 1, 1, 1), (1, n, 1, 1)):
        kernel = jnp.asarray(np.tile(k.reshape(shape), (1, 1, 1, planes)), x.dtype)
        x = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), "VALID", dimension_numbers=dims, feature_group_count=planes,
            precision=jax.lax.Precision.HIGHEST,
        )
    return x


def _ssim_map_jax(a: jax.Array, b: jax.Array, window: np.ndarray, correction: float) -> jax.Array:
    # Second moments about a fixed offset: less float32 cancellation, same result.
    c = 0.5 * PEAK
    ac, bc = a - c, b - c
    mu_a, mu_b = _filter_valid_jax(a, window), _filter_valid_jax(b, window)
    mac, mbc = mu_a - c, mu_b - c
    var_a = correction * (_filter_valid_jax(ac * ac, window) - mac**2)
    var_b = correction * (_filter_valid_jax(bc * bc, window) - mbc**2)
    cov = correction * (_filter_valid_jax(ac * bc, window) - mac * mbc)
    num = (2 * mu_a * mu_b + _C1) * (2 * cov + _C2)
    den = (mu_a**2 + mu_b**2 + _C1) * (var_a + var_b + _C2)
    return num / den
