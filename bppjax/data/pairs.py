"""Aligned (input, target) image pairs held in memory, degraded once up front.

SR inputs are the paper's: HR cropped to a multiple of the scale, MATLAB
bicubic down, MATLAB bicubic back up (docs/METRICS.md). Degrading
each whole image once and cropping aligned patches from both arrays is much
cheaper than resizing every patch, and gives the same pixels the benchmarks use.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Sequence

import numpy as np

from bppjax.image.degrade import sr_input
from bppjax.image.resize import imresize


@dataclasses.dataclass(frozen=True)
class ImagePair:
    """One aligned training or validation pair.

    Attributes:
      name: file stem or embedded name.
      input: network input, HxWx3 uint8 (or uint16): the same size as ``target``
        for a model that takes the upscaled image, ``scale`` times smaller for
        one that takes the LR image (``input_space="lr"``).
      target: ground truth, HxWx3, same dtype as ``input``.
      scale: SR factor (1 for restoration tasks); crops are aligned to it.
      group: validation set name (e.g. ``Set5``) for per-set reporting.
    """

    name: str
    input: np.ndarray
    target: np.ndarray
    scale: int = 1
    group: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return self.target.shape[0], self.target.shape[1]

    @property
    def tag(self) -> str:
        """Per-set, per-scale label used in logs, e.g. ``Set5_x2``."""
        return f"{self.group or 'val'}_x{self.scale}" if self.scale > 1 else (self.group or "val")


INPUT_SPACES = ("upscaled", "lr")


def check_input_space(input_space: str) -> None:
    if input_space not in INPUT_SPACES:
        raise ValueError(f"input_space must be one of {INPUT_SPACES} (the model's input_space); got {input_space!r}")


def sr_pairs(
    images: Iterable[tuple[str, np.ndarray]], scales: Sequence[int], group: str = "", workers: int = 1,
    input_space: str = "upscaled",
) -> list[ImagePair]:
    """SR pairs (``bppjax.image.degrade.sr_input``) for every image at every scale.

    ``input_space``: ``"upscaled"`` (the input is the LR image bicubic-enlarged
    back to the HR size) or ``"lr"`` (the LR image itself).
    """
    check_input_space(input_space)
    jobs = [(name, hr, int(s)) for name, hr in images for s in scales]

    def make(job: tuple[str, np.ndarray, int]) -> ImagePair:
        name, hr, s = job
        sample = sr_input(hr, s)
        inp = sample.lr if input_space == "lr" else sample.net_input
        return ImagePair(name, np.ascontiguousarray(inp), sample.hr, s, group)

    if workers > 1 and len(jobs) > 1:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(make, jobs))
    return [make(j) for j in jobs]


def paired(
    name: str, inp: np.ndarray, target: np.ndarray, group: str = "", source: str = "", input_space: str = "upscaled"
) -> ImagePair:
    """A restoration pair; an input smaller by an integer factor is bicubic-upscaled (HDR-SR), or kept for ``input_space="lr"``."""
    check_input_space(input_space)
    if inp.dtype != target.dtype:
        inp = _match_depth(inp, target.dtype)
    if inp.shape == target.shape:
        return ImagePair(name, inp, target, 1, group)
    (h, w), (H, W) = inp.shape[:2], target.shape[:2]
    f = H // h if h else 0
    if f > 1 and H == f * h and W == f * w:
        return ImagePair(name, inp if input_space == "lr" else imresize(inp, output_shape=(H, W)), target, f, group)
    raise ValueError(f"{source or name}: input is {w}x{h} but target is {W}x{H}; they must match or differ by an integer factor")


def _match_depth(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    if np.dtype(dtype) == np.uint16 and x.dtype == np.uint8:
        return x.astype(np.uint16) * 257
    if np.dtype(dtype) == np.uint8 and x.dtype == np.uint16:
        return np.round(x / 257.0).astype(np.uint8)
    return x.astype(dtype)


def nbytes(pairs: Sequence[ImagePair]) -> int:
    """Memory held by the pairs (shared HR arrays counted once)."""
    seen: dict[int, int] = {}
    for p in pairs:
        for a in (p.input, p.target):
            seen[id(a)] = a.nbytes
    return sum(seen.values())
