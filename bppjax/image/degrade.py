"""Degradations that turn a clean image into the network's input.

Super-resolution (docs/METRICS.md): the HR image is cropped to a
multiple of the scale (top-left crop, as the benchmark toolboxes do), shrunk
with MATLAB bicubic and enlarged back to the cropped size; the network sees the
enlarged image and predicts the HR one. Everything stays uint8 so the LR image
is bit-identical to the MATLAB-made benchmark LR images.

Paired-data tasks (raindrops, haze, DPED) need no synthetic degradation: the
impaired image is read as given (``read_pair``).
"""

from __future__ import annotations

import os
from fractions import Fraction
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bppjax.image.io import read_image
from bppjax.image.resize import imresize, imresize_jax

__all__ = ["SRSample", "scale_ratio", "modcrop", "sr_input", "random_sr_input", "sr_input_jax", "read_pair"]


class SRSample(NamedTuple):
    """One SR example: all three arrays are HWC uint8 with the input's channels."""

    hr: np.ndarray  # cropped high-resolution target, (H, W, C)
    lr: np.ndarray  # bicubic-downscaled, (H / s, W / s, C)
    net_input: np.ndarray  # lr enlarged back to (H, W, C): what the network sees


def scale_ratio(scale: float) -> Fraction:
    """The scale as a ratio p/q (denominator <= 100), e.g. 1.5 -> 3/2.

    HR sizes are cropped to multiples of p so that the LR size ``H * q / p`` is
    an integer; for integer scales this is the usual mod-crop.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise ValueError(f"scale must be a number >= 1, got {scale!r}")
    if not np.isfinite(scale) or scale < 1:
        raise ValueError(f"scale must be a finite number >= 1 (the SR enlargement factor), got {scale!r}")
    ratio = Fraction(float(scale)).limit_denominator(100)
    if abs(float(ratio) - float(scale)) > 1e-9:
        raise ValueError(f"scale {scale!r} is not a ratio p/q with q <= 100")
    return ratio


def modcrop(image: np.ndarray, multiple: int) -> np.ndarray:
    """Crops height and width (top-left) to multiples of ``multiple``."""
    if image.ndim < 2:
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    h, w = image.shape[0], image.shape[1]
    return image[: h - h % multiple, : w - w % multiple]


def sr_input(hr: np.ndarray, scale: float) -> SRSample:
    """Makes the SR triplet (cropped HR, LR, network input) for one image.

    Args:
      hr: (H, W) or (H, W, C) uint8 image (grey images should already be
        replicated to 3 channels for the paper's evaluation convention).
      scale: enlargement factor, an integer (2, 3, 4, 8) or a ratio like 1.5.

    Returns:
      ``SRSample(hr, lr, net_input)``, uint8. With exact MATLAB bicubic both
      ways, ``net_input`` is also the bicubic baseline's output.
    """
    hr = np.asarray(hr)
    if hr.dtype != np.uint8:
        raise ValueError(f"sr_input expects a uint8 image (exact MATLAB rounding), got dtype {hr.dtype}")
    ratio = scale_ratio(scale)
    cropped = modcrop(hr, ratio.numerator)
    h, w = cropped.shape[:2]
    if h == 0 or w == 0:
        raise ValueError(f"image of shape {hr.shape} is smaller than one LR pixel at scale {scale}")
    lr_shape = (h * ratio.denominator // ratio.numerator, w * ratio.denominator // ratio.numerator)
    lr = imresize(cropped, output_shape=lr_shape)
    net_input = imresize(lr, output_shape=(h, w))
    return SRSample(cropped, lr, net_input)


def random_sr_input(
    hr: np.ndarray, scales: tuple[float, ...], rng: np.random.Generator
) -> tuple[float, SRSample]:
    """Mixed-scale training: draws one scale uniformly from ``scales``.

    A single network trained this way handles unknown scales, because its
    input is always at the HR size.

    Returns:
      ``(scale, sr_input(hr, scale))``.
    """
    if len(scales) == 0:
        raise ValueError("scales must list at least one scale")
    scale = scales[int(rng.integers(len(scales)))]
    return scale, sr_input(hr, scale)


def sr_input_jax(hr: jax.Array, scale: float, *, quantize: bool = True) -> tuple[jax.Array, jax.Array, jax.Array]:
    """On-device SR degradation of a float batch (jit-able; ``scale`` static).

    Args:
      hr: (..., H, W, C) float in [0, 1].
      scale: enlargement factor (integer or ratio p/q).
      quantize: reproduce the uint8 pipeline exactly (8-bit input, rounding
        after every pass, as ``sr_input``); False keeps float precision and is
        differentiable.

    Returns:
      ``(hr_cropped, lr, net_input)`` as floats in [0, 1].
    """
    hr = jnp.asarray(hr)
    if hr.ndim < 3:
        raise ValueError(f"hr must be (..., H, W, C), got shape {hr.shape}")
    ratio = scale_ratio(scale)
    h, w = hr.shape[-3], hr.shape[-2]
    h, w = h - h % ratio.numerator, w - w % ratio.numerator
    cropped = hr[..., :h, :w, :]
    lr_shape = (h * ratio.denominator // ratio.numerator, w * ratio.denominator // ratio.numerator)
    if quantize:
        x = jnp.clip(jnp.floor(cropped * 255 + 0.5), 0, 255).astype(jnp.uint8)
        lr = imresize_jax(x, output_shape=lr_shape)
        up = imresize_jax(lr, output_shape=(h, w))
        return x.astype(jnp.float32) / 255, lr.astype(jnp.float32) / 255, up.astype(jnp.float32) / 255
    lr = imresize_jax(cropped, output_shape=lr_shape)
    return cropped, lr, imresize_jax(lr, output_shape=(h, w))


def read_pair(
    impaired_path: str | os.PathLike, clean_path: str | os.PathLike, *, dtype: str = "float32"
) -> tuple[np.ndarray, np.ndarray]:
    """Reads an (impaired, clean) pair as given and checks that they align.

    Raises:
      ValueError: the two images differ in size; the message names both files.
    """
    impaired = read_image(impaired_path, dtype=dtype)
    clean = read_image(clean_path, dtype=dtype)
    if impaired.shape != clean.shape:
        raise ValueError(
            f"paired images differ in shape: {impaired_path} is {impaired.shape}, {clean_path} is {clean.shape}"
        )
    return impaired, clean
