"""Periodic validation: PSNR/SSIM of the model and of its input (bicubic for SR) on whole validation images.

The model runs through the tiled path that ``evaluate``, ``enhance`` and the
model cards use (``bppjax.tiling`` in ``auto`` mode with the training patch,
as ``LoadedModel.enhance``), so the checkpoint ranked best is the best as
shipped. Tiles have one shape: when every validation input is at least one
tile large, the tile batch is fixed too (``TileSpec.fixed_shape``, which then
changes no output), so the network compiles once; memory is one batch of
tiles. Scores follow ``config.eval`` (the Y_M convention and crop border =
scale by default, docs/METRICS.md) through ``bppjax.metrics``' NumPy
reference, on the 8-bit image the model would write, with the scoring
function and border rule of ``bppjax.evaluation``.

Each model is fed the input it takes (``bppjax.models.input_space``): the
pair's ``input`` is the upscaled image or the low-resolution one, and the
output (``model.scale`` times larger for the latter) is scored against the
pair's target.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any, Sequence

import flax.linen as nn
import numpy as np

from bppjax.data.pairs import ImagePair
from bppjax.evaluation import border_for, score
from bppjax.image.io import to_float32
from bppjax.image.resize import imresize
from bppjax.models import at_factor, output_scale
from bppjax.tiling import TileSpec, make_apply_fn, resolve_spec, tiled_apply


def shave_for(pair: ImagePair, crop_border: int) -> int:
    """Border removed before scoring: ``bppjax.evaluation.border_for`` (``crop_border``, or the SR scale when -1)."""
    return border_for(pair.scale, crop_border)


def upscaled_input(pair: ImagePair) -> np.ndarray:
    """The pair's input at the target's size: itself, or the LR input upscaled by MATLAB bicubic (``imresize``)."""
    if pair.input.shape[:2] == pair.target.shape[:2]:
        return pair.input
    return imresize(pair.input, output_shape=pair.target.shape[:2])


def validation_spec(model: nn.Module, pairs: Sequence[ImagePair], patch: int | None) -> TileSpec:
    """The tiling of ``evaluate`` (``auto`` mode, training ``patch``), fixed-shape when no input is smaller than a tile.

    ``patch`` is ``config.data.patch`` (target pixels); tiles are laid in the
    model's input pixels, as ``LoadedModel.patch`` does.
    """
    if patch:
        patch = max(1, int(patch) // output_scale(model))
    spec = resolve_spec(model, "auto", patch=patch)
    fits = spec.tile is not None and all(min(p.input.shape[:2]) >= spec.tile for p in pairs)
    return dataclasses.replace(spec, fixed_shape=True) if fits else spec


def _summarise(scores: dict[str, list[tuple[float, float]]], prefix: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for tag, vals in scores.items():
        out[f"{tag}/{prefix}psnr"] = float(np.mean([v[0] for v in vals]))
        out[f"{tag}/{prefix}ssim"] = float(np.mean([v[1] for v in vals]))
    # headline: mean over sets (each set weighted equally, as papers report per set)
    out[f"{prefix}psnr"] = float(np.mean([out[f"{t}/{prefix}psnr"] for t in scores]))
    out[f"{prefix}ssim"] = float(np.mean([out[f"{t}/{prefix}ssim"] for t in scores]))
    return out


class Validator:
    """Scores parameters on whole validation images by tiles; the input baseline is computed once.

    Args:
      pairs: validation pairs (``input`` as the model takes it, see the module docstring).
      model: the Flax module being trained.
      convention, crop_border: ``config.eval``'s scoring convention and border (-1: the scale).
      max_images: score only the first this many pairs (0: all).
      patch: the training patch side (``config.data.patch``), which sets the tiles of IN models.
    """

    def __init__(
        self, pairs: Sequence[ImagePair], model: nn.Module, convention: str = "Y_M", crop_border: int = -1,
        max_images: int = 0, *, patch: int | None = None
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Validator takes the Flax module being trained; got {type(model).__name__}")
        self.pairs = list(pairs)[: max_images or None]
        self.model = model
        self.convention = convention
        self.crop_border = crop_border
        self.spec = validation_spec(model, self.pairs, patch)
        self._baseline: dict[str, float] | None = None

    def _score(self, pair: ImagePair, output: np.ndarray) -> tuple[float, float]:
        return score(to_float32(pair.target), output, self.convention, shave_for(pair, self.crop_border))

    def baseline(self) -> dict[str, float]:
        """Scores of the bicubic-upscaled inputs (the bicubic row of an SR table; the input itself when upscaled)."""
        if self._baseline is None:
            scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for p in self.pairs:
                scores[p.tag].append(self._score(p, to_float32(upscaled_input(p))))
            self._baseline = _summarise(scores, "input_")
        return self._baseline

    def enhance(self, params: Any, pair: ImagePair) -> np.ndarray:
        """The model's float output for one pair, by the tiles of ``self.spec``."""
        apply_fn = make_apply_fn(at_factor(self.model, float(pair.scale)), params)
        multiple = int(getattr(self.model, "multiple", 1))
        return tiled_apply(apply_fn, to_float32(pair.input), self.spec, multiple=multiple, scale=output_scale(self.model))

    def __call__(self, params: Any) -> dict[str, float]:
        """``psnr``, ``ssim``, ``input_psnr``, ``input_ssim``, their gains, and per-set ``<set>_x<s>/...``."""
        if not self.pairs:
            return {}
        scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for p in self.pairs:
            scores[p.tag].append(self._score(p, np.clip(self.enhance(params, p), 0.0, 1.0)))  # what the model would write
        res = {**_summarise(scores, ""), **self.baseline()}
        res["psnr_gain"] = res["psnr"] - res["input_psnr"]
        res["ssim_gain"] = res["ssim"] - res["input_ssim"]
        return res
