"""Periodic validation: full-image PSNR/SSIM of the model and of its input (bicubic for SR).

Scores follow ``config.eval`` (the Y_M convention and crop border = scale by
default, docs/METRICS.md) through ``bppjax.metrics``' NumPy reference,
on the 8-bit image the model would write, with the scoring function and
border rule of ``bppjax.evaluation``.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import jax
import numpy as np

from bppjax.evaluation import border_for, score
from bppjax.image.io import to_float32
from bppjax.data.pairs import ImagePair


def shave_for(pair: ImagePair, crop_border: int) -> int:
    """Border removed before scoring: ``bppjax.evaluation.border_for`` (``crop_border``, or the SR scale when -1)."""
    return border_for(pair.scale, crop_border)


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
    """Scores parameters on full validation images; the input baseline is computed once."""

    def __init__(
        self, pairs: Sequence[ImagePair], apply_fn: Callable, convention: str = "Y_M", crop_border: int = -1, max_images: int = 0
    ) -> None:
        self.pairs = list(pairs)[: max_images or None]
        self.convention = convention
        self.crop_border = crop_border
        self._forward = jax.jit(lambda params, x: apply_fn({"params": params}, x))  # one compile per image shape
        self._baseline: dict[str, float] | None = None

    def _score(self, pair: ImagePair, output: np.ndarray) -> tuple[float, float]:
        return score(to_float32(pair.target), output, self.convention, shave_for(pair, self.crop_border))

    def baseline(self) -> dict[str, float]:
        """Scores of the unprocessed inputs (the bicubic row of an SR table)."""
        if self._baseline is None:
            scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
            for p in self.pairs:
                scores[p.tag].append(self._score(p, to_float32(p.input)))
            self._baseline = _summarise(scores, "input_")
        return self._baseline

    def __call__(self, params: Any) -> dict[str, float]:
        """``psnr``, ``ssim``, ``input_psnr``, ``input_ssim``, their gains, and per-set ``<set>_x<s>/...``."""
        if not self.pairs:
            return {}
        scores: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for p in self.pairs:
            out = self._forward(params, to_float32(p.input)[None])
            out = np.clip(np.asarray(jax.device_get(out), np.float32)[0], 0.0, 1.0)
            scores[p.tag].append(self._score(p, out))
        res = {**_summarise(scores, ""), **self.baseline()}
        res["psnr_gain"] = res["psnr"] - res["input_psnr"]
        res["ssim_gain"] = res["ssim"] - res["input_ssim"]
        return res
