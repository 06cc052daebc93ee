"""MATLAB bicubic resize by bands of output rows: each band equals the same rows of ``imresize``.

Why: enlarging a photo before the network takes seconds; produced band by
band, the network can start on the top rows while the rest is still being
resized (``bppjax.inference.network_input(..., stream=True)``). Each output
element is the same sparse sum as in ``imresize`` (the same weight matrices,
rows sliced), so the bands are bit-identical to the whole-image resize.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from bppjax.image.resize import ScaleArg, _apply_weights, _pass_order, _sparse_weights, output_shape_for

#: Output rows per band.
BAND_ROWS = 128


def imresize_bands(image: np.ndarray, scale: ScaleArg, rows: int = BAND_ROWS) -> tuple[tuple[int, int], Iterator[tuple[int, np.ndarray]]]:
    """``imresize(image, scale)`` (bicubic, antialiased, clamped edges) as bands of at most ``rows`` output rows.

    Args:
      image: (H, W) or (H, W, C); uint8, uint16 or float.
      scale: as ``imresize``'s.
      rows: output rows per band.

    Returns:
      The output (H', W') and an iterator of ``(first_row, band)``, bands top to
      bottom in the input's dtype, (rows, W') or (rows, W', C). Nothing is
      computed before the iterator is advanced.
    """
    image = np.asarray(image)
    dtype = image.dtype
    if not (dtype in (np.uint8, np.uint16) or np.issubdtype(dtype, np.floating)):
        raise ValueError(f"imresize_bands supports uint8, uint16 and float images, got dtype {dtype}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must be (H, W) or (H, W, C), got shape {image.shape}")
    (oh, ow), scales = output_shape_for(image.shape[:2], scale, None)
    return (oh, ow), _bands(image, (oh, ow), scales, int(rows))


def _bands(image: np.ndarray, out_shape: tuple[int, int], scales: tuple[float, float], rows: int) -> Iterator[tuple[int, np.ndarray]]:
    dtype, (h, w), (oh, ow) = image.dtype, image.shape[:2], out_shape
    peak = float(np.iinfo(dtype).max) if dtype in (np.uint8, np.uint16) else None
    tail = image.shape[2:]
    rows_matrix = _sparse_weights(h, oh, scales[0], True, "clamp")
    cols_matrix = _sparse_weights(w, ow, scales[1], True, "clamp")

    def rounded(x: np.ndarray) -> np.ndarray:
        return x if peak is None else np.clip(np.floor(x + 0.5), 0, peak)

    if _pass_order(scales)[0] == 0:  # height first, as imresize: each band from the whole (small) input
        x = image.astype(np.float64).reshape(h, -1)
        for a in range(0, oh, rows):
            b = min(a + rows, oh)
            band = rounded(rows_matrix[a:b] @ x).reshape((b - a, w, *tail))
            yield a, rounded(_apply_weights(band, cols_matrix, 1)).astype(dtype)
    else:  # width first: the whole width pass, then the height pass by bands
        x = rounded(_apply_weights(image.astype(np.float64), cols_matrix, 1)).reshape(h, -1)
        for a in range(0, oh, rows):
            b = min(a + rows, oh)
            yield a, rounded(rows_matrix[a:b] @ x).reshape((b - a, ow, *tail)).astype(dtype)


__all__ = ["BAND_ROWS", "imresize_bands"]
