"""Both analyses of a trained model over a folder of images, with their figures (``python -m bppjax.analyze``).

``analyze(checkpoint, images, out)`` writes the update-norm heat map (Fig. 7),
per image the LinearScope decomposition ``y = F x + r`` (Fig. 8) and rows of
F, and ``summary.json``; a file that cannot be read or analysed is recorded
in ``summary["failed"]`` and the others go on. For SR checkpoints the images
are HR, degraded as in training before they reach the network.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import jax.numpy as jnp
import ml_collections
import numpy as np
from tqdm.auto import tqdm

from bppjax.analysis import linearscope as ls
from bppjax.analysis import plots
from bppjax.analysis.update_norms import average, normalise, update_norms
from bppjax.image.degrade import sr_input
from bppjax.image.io import list_image_files, read_image, to_float32, write_image
from bppjax.models import at_factor, input_space, output_scale
from bppjax.workdir import load_model

SUMMARY_FILE = "summary.json"


def config_scale(config: ml_collections.ConfigDict) -> int | None:
    """The SR scale a training config declares, if any: the first of ``data.scales`` (or a ``scale`` key).

    Restoration configs (``data.scales=()``) have none: their images are used as they are.
    """
    for path in (("data", "scales"), ("data", "scale"), ("scale",)):
        node: Any = config
        for key in path:
            node = node.get(key) if hasattr(node, "get") else None
            if node is None:
                break
        if node is not None:
            value = node[0] if isinstance(node, (list, tuple)) and node else node
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 1:
                return int(value)
    return None


def list_images(images: str | Path) -> list[Path]:
    """Image files of a folder (sorted), or the one file given."""
    return list_image_files(images, "--images", allow_file=True)


def network_input(path: Path, scale: int | None, max_size: int | None = None, space: str = "upscaled") -> np.ndarray:
    """The float32 HWC network input for one file: SR-degraded when ``scale`` > 1, centre-cropped to ``max_size``.

    ``space`` is the model's input space (``bppjax.models.input_space``): the
    bicubic-upscaled image, or ("lr") the LR image, cropped to the same HR
    region (``max_size / scale`` pixels). Crop offsets are multiples of the
    scale, as in training (keeps the bicubic sampling phase).
    """
    image = read_image(path, dtype="uint8")
    step = int(scale) if scale and scale > 1 else 1
    lr = space == "lr" and step > 1
    if step > 1:
        sample = sr_input(image, scale)
        image = sample.lr if lr else sample.net_input
    if max_size:
        h, w = image.shape[:2]
        if lr:  # the same HR window, in LR pixels
            size = max(1, max_size // step)
            top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
            image = image[top : top + size, left : left + size]
        else:
            top, left = max(0, (h - max_size) // 2) // step * step, max(0, (w - max_size) // 2) // step * step
            image = image[top : top + max_size, left : left + max_size]
    return to_float32(image)


def default_pixels(height: int, width: int) -> list[tuple[int, int]]:
    """The image centre and a point halfway to the top-left corner."""
    return [(height // 2, width // 2), (height // 4, width // 4)]


def _write_image(path: Path, image: np.ndarray) -> None:
    write_image(path, np.clip(image, 0.0, 1.0))


def analyze_image(
    model, frozen_model, params: Any, x: np.ndarray, out: Path, pixels: Sequence[tuple[int, int]] | None = None, method: str = "auto"
) -> tuple[np.ndarray, dict[str, Any]]:
    """Update norms ``(levels, blocks, 1)`` and the LinearScope record of one HWC input; writes its figures to ``out``."""
    xb = jnp.asarray(x)[None]
    norms = np.asarray(update_norms(model, params, xb))
    d = ls.decompose(model, params, xb, frozen_model=frozen_model, method=method)
    h, w = d.y.shape[1:3]  # filter pixels are output pixels
    pixels = [(min(max(int(i), 0), h - 1), min(max(int(j), 0), w - 1)) for i, j in (pixels or default_pixels(h, w))]
    rows = ls.filters(frozen_model, params, xb, pixels)
    out.mkdir(parents=True, exist_ok=True)
    for name, a in (("input", d.x[0]), ("y", d.y[0]), ("fx", d.fx[0])):
        _write_image(out / f"{name}.png", a)
    _write_image(out / "r.png", plots.signed_to_unit(d.r[0]))
    plots.plot_linearscope(d.x[0], d.y[0], d.fx[0], d.r[0], out / "linearscope.png", title=out.name)
    plots.plot_filters(d.x[0], rows, pixels, out / "filters.png", title=out.name, scale=output_scale(model))
    np.save(out / "filters.npy", rows)
    record = {**d.summary(0), "r_max_abs": float(np.max(np.abs(d.r))), "filter_pixels": [list(p) for p in pixels]}
    return norms, record


def analyze(
    checkpoint: str | Path,
    images: str | Path,
    out: str | Path,
    overrides: Sequence[str] = (),
    scale: int | None = None,
    pixels: Sequence[tuple[int, int]] | None = None,
    max_size: int | None = None,
    method: str = "auto",
    progress: bool = True,
) -> dict[str, Any]:
    """Run both analyses of a checkpoint on a folder of images; returns what ``summary.json`` holds.

    Args:
      checkpoint: a workdir readable by ``bppjax.workdir.load_model``.
      images: a folder of images (or one file); HR images when ``scale`` > 1.
      out: output folder.
      overrides: ``KEY=VALUE`` config overrides for ``load_model`` (e.g. ``model.kind=ode``).
      scale: SR factor for the bicubic degradation; ``None`` takes the config's, 1 uses images as they are.
      pixels: output pixels ``(row, col)`` whose filters to draw; default: centre and upper-left quarter.
      max_size: centre-crop inputs to at most this size (LinearScope costs a few passes per image).
      method: how F x is computed (``linearscope.METHODS``).
    """
    loaded = load_model(checkpoint, overrides=list(overrides))
    scale = config_scale(loaded.config) if scale is None else int(scale)
    model, params = at_factor(loaded.model, scale), loaded.params  # a model conditioned on the factor is told it
    frozen_model = ls.frozen_twin(model)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    per_image, records, failed = [], [], []
    for path in tqdm(list_images(images), desc="analyze", unit="image", disable=not progress):
        try:
            x = network_input(path, scale, max_size, input_space(loaded.model))
            norms, record = analyze_image(model, frozen_model, params, x, out / path.stem, pixels, method)
        except (OSError, ValueError, MemoryError) as e:  # one bad file never stops the others
            tqdm.write(f"skipped {path}: {e}", file=sys.stderr)
            failed.append({"image": path.name, "error": str(e)})
            continue
        per_image.append(norms)
        records.append({"image": path.name, "shape": list(x.shape), **record})
    if not per_image:
        raise ValueError(f"no image in {images} could be analysed: " + "; ".join(f"{f['image']}: {f['error']}" for f in failed))

    mean = average(per_image)
    heat = normalise(mean)
    cfg = loaded.config.model
    name = f"{cfg.arch}" + (f" ({cfg.kind})" if cfg.arch == "bpp" else "")
    plots.plot_update_norms(heat, out / "update_norms.png", title=f"Update norms, {name}, step {loaded.step} (max = 100)")
    summary = {
        "checkpoint": str(checkpoint),
        "step": loaded.step,
        "model": {"arch": cfg.arch, "kind": cfg.get("kind", "discrete")},
        "scale": scale,
        "overrides": list(overrides),
        "update_norms": heat.round(4).tolist(),
        "update_norms_raw": mean.tolist(),
        "linearscope": records,
        "failed": failed,
    }
    (out / SUMMARY_FILE).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
