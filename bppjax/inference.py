"""Enhance image arrays with a trained model: ``enhance`` and its two stages.

``enhance(image, model, params, scale=...)`` prepares the network's input
(``network_input``: for a model that takes the upscaled image, the MATLAB
bicubic enlargement by any factor; for one that takes the low-resolution image,
the image itself) and runs the network by overlapping tiles
(``restore``, ``bppjax.tiling``), so memory is bounded on any image size.
The enlargement is computed by bands on a worker thread while the network
starts on the top rows (``StreamedImage``), and the two stages are separate
so that a caller can prepare the next image while the network works on this
one (``bppjax.files`` does, for image files).
"""

from __future__ import annotations

import dataclasses
import os
import threading
from typing import Any, Iterator, Sequence

import flax.linen as nn
import numpy as np

from bppjax import tiling
from bppjax.image.io import to_float32
from bppjax.image.resize import imresize, output_shape_for
from bppjax.image.resize_bands import imresize_bands
from bppjax.models import at_factor, input_space, output_scale

PyTree = Any

#: Bytes held per output pixel while one image is enhanced: the resized input, the
#: float32 network input and output (3 channels each) and the quantised result.
BYTES_PER_OUTPUT_PIXEL = 3 * (2 + 4 + 4 + 2)


def default_memory_budget_gb() -> float:
    """Half of this machine's memory (8 GiB where it cannot be read)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2 / 2**30
    except (ValueError, OSError, AttributeError):
        return 8.0


def check_output_size(shape: Sequence[int], scale: float | None, max_memory_gb: float | None) -> tuple[int, int]:
    """The output (H, W) of an image of ``shape`` at ``scale``; ValueError if it would not fit the budget.

    Called before anything of the output size is allocated, so ``--scale 1000``
    is refused with the size, not met by an out-of-memory error.
    """
    h, w = int(shape[0]), int(shape[1])
    if scale is not None and scale != 1:
        (h, w), _ = output_shape_for((h, w), float(scale), None)
    budget = default_memory_budget_gb() if max_memory_gb is None else float(max_memory_gb)
    need = h * w * BYTES_PER_OUTPUT_PIXEL / 2**30
    if budget > 0 and need > budget:
        raise ValueError(
            f"the output would be {w}x{h} ({h * w / 1e6:,.0f} Mpx) at scale {scale or 1:g}, needing about {need:,.1f} GiB, "
            f"over the memory budget of {budget:,.1f} GiB (--max-memory-gb)"
        )
    return h, w


class StreamedImage:
    """An (H, W, C) float32 image written band by band on a worker thread; readers wait for the rows they need.

    ``bppjax.tiling.tiled_apply`` takes one: its first tiles go through the
    network while the rows below are still being computed (the bicubic
    pre-upscale, ``bppjax.image.resize_bands``). An error while writing is
    raised to the caller waiting for those rows.
    """

    def __init__(self, shape: tuple[int, int, int], bands: Iterator[tuple[int, np.ndarray]]):
        self.array = np.empty(shape, np.float32)
        self.shape = self.array.shape
        self._rows, self._error = 0, None
        self._written = threading.Condition()
        self._thread = threading.Thread(target=self._fill, args=(bands,), name="bppjax-upscale", daemon=True)
        self._thread.start()

    def _fill(self, bands: Iterator[tuple[int, np.ndarray]]) -> None:
        try:
            for first, band in bands:
                self.array[first : first + len(band)] = band
                with self._written:
                    self._rows = first + len(band)
                    self._written.notify_all()
        except BaseException as e:  # noqa: BLE001 - handed to the reader
            with self._written:
                self._error = e
                self._written.notify_all()

    def wait(self, rows: int) -> None:
        """Blocks until the first ``rows`` rows are written; raises the writer's error."""
        with self._written:
            self._written.wait_for(lambda: self._rows >= min(rows, self.shape[0]) or self._error is not None)
        if self._error is not None:
            raise self._error

    def result(self) -> np.ndarray:
        """The whole image, once written."""
        self.wait(self.shape[0])
        return self.array


@dataclasses.dataclass(frozen=True)
class NetworkInput:
    """One image as the network takes it.

    Attributes:
      pixels: (H, W, 3) float32 in [0, 1]: the bicubic-enlarged image for a model
        that takes the upscaled image, the image itself for one that takes the
        low-resolution image (``bppjax.models.input_space``); a ``StreamedImage``
        while the enlargement is still being computed.
      grey: the image had one channel (repeated to three; the output is averaged back).
      ndim: the number of dimensions of the image as given (2 or 3).
    """

    pixels: np.ndarray | StreamedImage
    grey: bool
    ndim: int


def network_input(image: np.ndarray, model: nn.Module, *, scale: float | None = None,
                  max_memory_gb: float | None = None, stream: bool = False) -> NetworkInput:
    """The first stage of ``enhance``: checks the image and prepares the network's input.

    With ``stream`` the bicubic enlargement is computed by bands on a worker
    thread (``StreamedImage``; bit-identical to the whole-image resize) and this
    returns at once.

    Raises:
      ValueError: a shape that is not an image, NaN/Inf values, a scale that is
        not a positive number (or, for a model that takes the low-resolution
        image, not its own factor), or an output over the memory budget.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3)) or 0 in arr.shape:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got shape {arr.shape}")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number; got {scale!r}")
    if input_space(model) == "lr" and scale is not None and float(scale) != output_scale(model):
        raise ValueError(f"scale {scale:g} differs from the model's own factor {output_scale(model)} "
                         "(a model that takes the low-resolution image enlarges by its training scale only)")
    check_output_size(arr.shape, scale if input_space(model) == "upscaled" else output_scale(model), max_memory_gb)
    resize = input_space(model) == "upscaled" and scale is not None and scale != 1
    floating = np.issubdtype(arr.dtype, np.floating)
    if resize and stream:
        (h, w), bands = imresize_bands(arr, float(scale))
        rgb = ((first, _rgb(band, floating)) for first, band in bands)
        return NetworkInput(StreamedImage((h, w, 3), rgb), arr.ndim == 2 or arr.shape[-1] == 1, arr.ndim)
    if resize:
        arr = imresize(arr, float(scale))
    x = to_float32(arr)
    grey = x.ndim == 2 or x.shape[-1] == 1
    x = np.repeat(x.reshape(x.shape[0], x.shape[1], 1), 3, axis=-1) if grey else x
    if np.issubdtype(np.asarray(image).dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError("image contains NaN or Inf values")
    return NetworkInput(np.ascontiguousarray(x), grey, np.asarray(image).ndim)


def _rgb(band: np.ndarray, floating: bool) -> np.ndarray:
    """A band of the enlarged image as float32 RGB (grey repeated); ValueError for NaN or Inf in a float image."""
    x = to_float32(band)
    x = np.repeat(x.reshape(x.shape[0], x.shape[1], 1), 3, axis=-1) if x.ndim == 2 or x.shape[-1] == 1 else x
    if floating and not np.isfinite(x).all():
        raise ValueError("image contains NaN or Inf values")
    return x


def restore(
    prepared: NetworkInput,
    model: nn.Module,
    params: PyTree,
    spec: tiling.TileSpec,
    *,
    self_ensemble: bool = False,
    progress: Any = None,
) -> np.ndarray:
    """The second stage of ``enhance``: the network by tiles, clipped to [0, 1], in the input's channels."""
    apply_fn = tiling.make_apply_fn(model, params)
    multiple, scale = int(getattr(model, "multiple", 1)), output_scale(model)

    def run(img: np.ndarray | StreamedImage) -> np.ndarray:
        img = img if isinstance(img, StreamedImage) else np.ascontiguousarray(img)
        return tiling.tiled_apply(apply_fn, img, spec, multiple=multiple, progress=progress, scale=scale)

    if self_ensemble:
        from bppjax.evaluation import self_ensemble as x8  # local: evaluation imports tqdm and the metrics

        run = x8(run)
    pixels = prepared.pixels.result() if self_ensemble and isinstance(prepared.pixels, StreamedImage) else prepared.pixels
    y = np.asarray(run(pixels), np.float32)
    y = y if y.flags.writeable else y.copy()
    np.clip(y, 0.0, 1.0, out=y)  # in place: an 8K float image is 400 MB
    if prepared.grey:
        y = y.mean(axis=-1)
        return y if prepared.ndim == 2 else y[..., None]
    return y


def enhance(
    image: np.ndarray,
    model: nn.Module,
    params: PyTree,
    *,
    scale: float | None = None,
    mode: str = tiling.ENHANCE_MODE,
    tile: int | None = None,
    stride: int | None = None,
    margin: int | None = None,
    batch: int | None = None,
    patch: int | None = None,
    streams: int | None = None,
    self_ensemble: bool = False,
    progress: Any = None,
    max_memory_gb: float | None = None,
) -> np.ndarray:
    """Enhance (and for SR, enlarge) one image.

    Args:
      image: (H, W), (H, W, 1) or (H, W, 3); uint8, uint16 or float in [0, 1].
      model, params: e.g. ``load_model(workdir).model`` and ``.params``.
      scale: SR factor (> 0, fractional allowed); for a model that takes the
        upscaled image, the image is bicubic-resized (MATLAB ``imresize``, in its
        integer dtype as the training data were) to ``ceil(scale * size)`` before
        the network. None or 1: no resize. A model that takes the
        low-resolution image enlarges by its own factor (``scale`` must be it or None).
      mode, tile, stride, margin, batch, patch, streams: tiling (``bppjax.tiling.resolve_spec``);
        ``patch`` is the training patch side the modes lay their tiles by,
        ``streams`` the network calls in flight at once (default: one per core).
      self_ensemble: average over the 8 flips/rotations (8x the time).
      progress: tqdm-like bar advanced per tile.
      max_memory_gb: refuse (ValueError, before allocating) an output needing
        more memory than this; default half the machine's memory, 0: no limit.

    Returns:
      float32 in [0, 1], (H', W') or (H', W', C) with the input's channel count.
    """
    model = at_factor(model, scale)  # a model conditioned on the SR factor is told it
    spec = tiling.resolve_spec(model, mode, tile=tile, stride=stride, margin=margin, batch=batch, patch=patch, streams=streams)
    prepared = network_input(image, model, scale=scale, max_memory_gb=max_memory_gb, stream=not self_ensemble)
    return restore(prepared, model, params, spec, self_ensemble=self_ensemble, progress=progress)


__all__ = ["BYTES_PER_OUTPUT_PIXEL", "NetworkInput", "StreamedImage", "check_output_size", "default_memory_budget_gb", "enhance",
           "network_input", "restore"]
