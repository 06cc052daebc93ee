"""Reflect padding at the bottom and right to a size multiple: a JAX batch (what BPP does to its input) and one NumPy image.

Both pad by the same rule, so a tile or image padded on the host holds what the
network would have padded itself.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def reflect_padding(height: int, width: int, multiple: int, what: str = "image") -> tuple[int, int]:
    """Rows and columns to add so that both sides are multiples of ``multiple``.

    Raises ValueError where reflection cannot supply them (a side no longer than
    its padding); ``what`` names the array in the message.
    """
    ph, pw = (-height) % multiple, (-width) % multiple
    if (ph or pw) and (ph >= height or pw >= width):
        raise ValueError(f"{what} of size {height}x{width} is too small to reflect-pad to a multiple of {multiple}")
    return ph, pw


def pad_batch_to_multiple(x: jax.Array, multiple: int, what: str = "image batch") -> jax.Array:
    """A (B, H, W, C) batch reflect-padded at the bottom/right to multiples of ``multiple`` (``x`` itself when aligned)."""
    ph, pw = reflect_padding(x.shape[1], x.shape[2], multiple, what)
    return jnp.pad(x, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else x


def pad_image_to_multiple(image: np.ndarray, multiple: int) -> np.ndarray:
    """One (H, W, C) NumPy image padded as ``pad_batch_to_multiple`` pads a batch (no copy when aligned)."""
    ph, pw = reflect_padding(image.shape[0], image.shape[1], multiple)
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="reflect") if ph or pw else image


__all__ = ["pad_batch_to_multiple", "pad_image_to_multiple", "reflect_padding"]
