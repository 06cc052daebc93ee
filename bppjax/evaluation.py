"""Scoring SR methods on benchmark folders: ``evaluate``, ``self_ensemble``, the border rule.

Per image and scale: HR cropped to a multiple of the scale, MATLAB bicubic
down and up (``bppjax.image.sr_input``), the method enhances that input, its
float output is quantised to uint8, and PSNR/SSIM are taken in the chosen
convention (default ``Y_M``) with ``border_for(scale)`` pixels shaved
(docs/METRICS.md). Training validation (``bppjax.training.validation``) scores
with the same ``score`` and ``border_for``. ``python -m bppjax.evaluate`` is
the command line over these functions.

A method is an ``EnhanceFn``: ``f(x) -> y`` with x and y float32 (H, W, 3)
arrays in [0, 1], no batch axis, y the same shape as x. Bicubic is the
identity (its output is the network input itself); a trained model plugs in
the same way, and ``self_ensemble(f)`` averages f over the 8 flips/rotations.
A method with ``f.input_space == "lr"`` (a ``LoadedModel`` of a model that
takes the LR image, ``bppjax.models.input_space``) is given the LR image
instead and returns the HR-sized output.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
from tqdm import tqdm

from bppjax.data.sampler import dihedral
from bppjax.image.degrade import scale_ratio, sr_input
from bppjax.image.io import list_image_files, read_image, to_float32, to_uint8, write_image
from bppjax.metrics import CONVENTIONS, psnr_ssim


def border_for(scale: float, crop_border: int = -1) -> int:
    """Pixels shaved from each border before scoring: ``crop_border`` if >= 0, else the scale rounded up (0 at scale 1)."""
    if crop_border >= 0:
        return int(crop_border)
    return math.ceil(scale) if scale > 1 else 0


def score(reference: np.ndarray, output: np.ndarray, convention: str, shave: int) -> tuple[float, float]:
    """``(psnr, ssim)`` of an output against its reference: the one scoring function of evaluation and validation."""
    return psnr_ssim(reference, output, convention=convention, shave=shave)


__all__ = [
    "EnhanceFn",
    "METHODS",
    "bicubic",
    "self_ensemble",
    "method_at_scale",
    "canonical_scale",
    "list_images",
    "method_for",
    "border_for",
    "evaluate",
    "score",
    "format_table",
]

EnhanceFn = Callable[[np.ndarray], np.ndarray]
Results = dict[str, dict[float, dict[str, float]]]


def bicubic(x: np.ndarray) -> np.ndarray:
    """The bicubic baseline: the network input already is the bicubic result."""
    return x


METHODS: dict[str, EnhanceFn] = {"bicubic": bicubic}


def self_ensemble(enhance_fn: EnhanceFn) -> EnhanceFn:
    """x8 geometric self-ensemble: run f on the 8 flips/rot90s (``dihedral``), undo each, average.

    Valid for any method that accepts both orientations of the image (a fully
    convolutional network does). Output is float32.
    """

    space = method_input_space(enhance_fn)

    def ensembled(x: np.ndarray) -> np.ndarray:
        total = None
        for t in range(8):
            xt = np.ascontiguousarray(dihedral(x, t))
            y = np.asarray(enhance_fn(xt))
            if space == "upscaled" and y.shape != xt.shape:
                raise ValueError(f"enhance_fn returned shape {y.shape} for an input of shape {xt.shape}")
            y = undo_dihedral(y, t).astype(np.float64)
            total = y if total is None else total + y
        return (total / 8).astype(np.float32)

    ensembled.__name__ = f"self_ensemble({getattr(enhance_fn, '__name__', 'enhance_fn')})"
    ensembled.input_space = space  # type: ignore[attr-defined]
    if callable(getattr(enhance_fn, "at_factor", None)):  # the ensemble of the method told its factor
        ensembled.at_factor = lambda scale: self_ensemble(enhance_fn.at_factor(scale))  # type: ignore[attr-defined]
    return ensembled


def method_at_scale(enhance_fn: EnhanceFn, scale: float) -> EnhanceFn:
    """The method told the SR factor it runs at, where it can be (``f.at_factor``, e.g. a ``LoadedModel``)."""
    bind = getattr(enhance_fn, "at_factor", None)
    return bind(scale) if callable(bind) else enhance_fn


def method_input_space(enhance_fn: EnhanceFn) -> str:
    """What an ``EnhanceFn`` takes: ``"lr"`` if it says so (``f.input_space``), else the bicubic-upscaled image."""
    return getattr(enhance_fn, "input_space", "upscaled")


def undo_dihedral(y: np.ndarray, t: int) -> np.ndarray:
    """The inverse of ``dihedral(., t)``: the same flips in reverse order."""
    if t & 1:
        y = y[:, ::-1]
    if t & 2:
        y = y[::-1]
    if t & 4:
        y = y.transpose(1, 0, 2)
    return y


def method_for(
    method: str | None = None, checkpoint: str | Path | None = None, overrides: Sequence[str] = (), ensemble: bool = False
) -> tuple[EnhanceFn, str]:
    """The ``EnhanceFn`` to score and its name in the table.

    ``checkpoint``: a workdir or a zoo name, loaded with the ``--config.KEY=VALUE``
    strings ``overrides`` (large images tiled inside, ``LoadedModel.enhance``),
    named after the folder; else the built-in ``method`` (default bicubic).
    ``ensemble`` wraps it in ``self_ensemble`` and adds "+" to the name.
    """
    if checkpoint:
        from bppjax.workdir import load_model  # local: Orbax

        fn, name = load_model(checkpoint, overrides), Path(checkpoint).name  # a LoadedModel is an EnhanceFn
    else:
        name = method or "bicubic"
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; choose one of {sorted(METHODS)}")
        fn = METHODS[name]
    return (self_ensemble(fn), name + "+") if ensemble else (fn, name)


def list_images(folder: str | Path) -> list[Path]:
    """Sorted image files (by suffix) directly inside a benchmark folder; hidden files skipped."""
    return list_image_files(folder, "--data")


def evaluate(
    enhance_fn: EnhanceFn | Mapping[float, EnhanceFn],
    data_dirs: Sequence[str | Path],
    scales: Sequence[float],
    *,
    convention: str = "Y_M",
    shave: int | None = None,
    save_dir: str | Path | None = None,
    progress: bool = True,
    per_image: bool = False,
) -> Results:
    """Mean PSNR/SSIM of a method per dataset and scale.

    Args:
      enhance_fn: an ``EnhanceFn``, or a mapping scale -> ``EnhanceFn`` for
        methods with one model per scale.
      data_dirs: folders of HR images; each dataset is named after its folder.
      scales: SR factors (2, 3, 4, 8, or ratios like 1.5).
      convention: "Y_M" (paper's SR tables), "Y_P" or "RGB".
      shave: border pixels ignored; default: the scale (rounded up).
      save_dir: if given, outputs are written as PNG to
        ``save_dir/<dataset>/x<scale>/<name>.png`` at the source bit depth.
      progress: show a tqdm bar per dataset.
      per_image: also return ``"psnr_per_image"`` and ``"ssim_per_image"``
        (lists in file order), e.g. for paired significance tests.

    Returns:
      ``{dataset: {scale: {"psnr": mean, "ssim": mean, "n": images}}}``.
    """
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if not scales:
        raise ValueError("scales must list at least one scale")
    scales = [canonical_scale(s) for s in scales]
    if isinstance(enhance_fn, Mapping):
        missing = [s for s in scales if s not in enhance_fn]
        if missing:
            raise ValueError(f"enhance_fn mapping has no method for scale(s) {missing}")
    elif not callable(enhance_fn):
        raise ValueError(f"enhance_fn must be callable or a mapping scale -> callable, got {type(enhance_fn).__name__}")
    datasets = _dataset_names(data_dirs)

    results: Results = {}
    for name, folder in datasets.items():
        files = list_images(folder)
        scores = {s: [] for s in scales}
        with tqdm(total=len(files) * len(scales), desc=name, unit="img", disable=not progress, file=sys.stderr) as bar:
            for path in files:
                native = read_image(path, dtype="native")
                depth = 16 if native.dtype == np.uint16 else 8
                hr = to_uint8(native)
                for s in scales:
                    fn = method_at_scale(enhance_fn[s] if isinstance(enhance_fn, Mapping) else enhance_fn, s)
                    border = border_for(s) if shave is None else shave
                    output, score = _score_image(fn, hr, s, convention, border, path)
                    scores[s].append(score)
                    if save_dir is not None:
                        write_image(Path(save_dir) / name / f"x{s}" / f"{path.stem}.png", output, bit_depth=depth)
                    bar.update(1)
        results[name] = {
            s: {
                "psnr": float(np.mean([p for p, _ in scores[s]])),
                "ssim": float(np.mean([q for _, q in scores[s]])),
                "n": len(scores[s]),
                **({"psnr_per_image": [p for p, _ in scores[s]], "ssim_per_image": [q for _, q in scores[s]]} if per_image else {}),
            }
            for s in scales
        }
    return results


def _score_image(
    fn: EnhanceFn, hr: np.ndarray, scale: float, convention: str, shave: int, path: Path
) -> tuple[np.ndarray, tuple[float, float]]:
    """Degrades, enhances and scores one image; returns the float output too."""
    sample = sr_input(hr, scale)
    lr = method_input_space(fn) == "lr"
    x = to_float32(sample.lr if lr else sample.net_input)
    y = np.asarray(fn(x))
    if y.shape != sample.hr.shape:
        raise ValueError(f"{path}: method returned shape {y.shape}, expected {sample.hr.shape} (the {'HR' if lr else 'input'} shape)")
    if not np.issubdtype(y.dtype, np.floating):
        raise ValueError(f"{path}: method must return float32 in [0, 1], got dtype {y.dtype}")
    if not np.isfinite(y).all():
        raise ValueError(f"{path}: method output contains NaN or inf at scale {scale}")
    scored = to_uint8(y)  # the 8-bit image the published pipelines score
    return y, score(sample.hr, scored, convention, shave)


def canonical_scale(scale: float) -> float:
    """2.0 -> 2 (so results and folders read x2); validates the value."""
    ratio = scale_ratio(scale)
    return int(ratio) if ratio.denominator == 1 else float(scale)


def _dataset_names(data_dirs: Sequence[str | Path]) -> dict[str, Path]:
    if isinstance(data_dirs, (str, Path)):
        data_dirs = [data_dirs]
    if not data_dirs:
        raise ValueError("data_dirs must list at least one folder")
    names: dict[str, Path] = {}
    for d in data_dirs:
        path = Path(d)
        name = path.resolve().name
        if name in names:
            raise ValueError(f"two data folders share the name {name!r}: {names[name]} and {path}")
        names[name] = path
    return names


def format_table(results: Results, method: str) -> str:
    """A Markdown table laid out like the paper's Table 1 (PSNR / SSIM per dataset)."""
    datasets = list(results)
    scales = list(dict.fromkeys(s for d in datasets for s in results[d]))
    header = "| Method | Scale | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) + " |"
    rule = "|---|---|" + "---|" * len(datasets)
    rows = [header, rule]
    for s in scales:
        cells = []
        for d in datasets:
            r = results[d].get(s)
            cells.append("-" if r is None else f"{r['psnr']:.2f} / {r['ssim']:.4f}")
        rows.append(f"| {method} | x{s} | " + " | ".join(cells) + " |")
    return "\n".join(rows)
