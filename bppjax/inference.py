"""Enhance images with a trained model: arrays (``enhance``) and files (``enhance_files``).

``enhance(image, model, params, scale=...)`` enlarges an image with MATLAB
bicubic by any factor (for SR models) and runs the network by overlapping
tiles (``bppjax.tiling``), so memory is bounded on any image size.
``enhance_files`` does the same for files: each read with its orientation,
alpha, ICC profile and EXIF data (``bppjax.image.read_photo``), written in its
own format and bit depth, every failure of one file recorded in its
``Outcome`` while the others go on. ``prepare_files`` loads a checkpoint
and checks the outputs and the tiling before any image is read; ``python -m
bppjax.enhance`` is the command line over it (docs/ENHANCE.md).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import flax.linen as nn
import numpy as np

from bppjax import tiling
from bppjax.cli import debug_enabled, describe
from bppjax.image.io import IMAGE_EXTENSIONS, WRITE_EXTENSIONS, bit_depth, image_files, read_photo, to_float32, write_image
from bppjax.image.io import quantise as quantise_samples
from bppjax.image.resize import imresize, output_shape_for

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


# --------------------------------------------------------------------------- arrays


def enhance(
    image: np.ndarray,
    model: nn.Module,
    params: PyTree,
    *,
    scale: float | None = None,
    mode: str = "auto",
    tile: int | None = None,
    stride: int | None = None,
    margin: int | None = None,
    batch: int | None = None,
    patch: int | None = None,
    self_ensemble: bool = False,
    progress: Any = None,
    max_memory_gb: float | None = None,
) -> np.ndarray:
    """Enhance (and for SR, enlarge) one image.

    Args:
      image: (H, W), (H, W, 1) or (H, W, 3); uint8, uint16 or float in [0, 1].
      model, params: e.g. ``load_model(workdir).model`` and ``.params``.
      scale: SR factor (> 0, fractional allowed); the image is bicubic-resized
        (MATLAB ``imresize``, in its integer dtype as the training data were) to
        ``ceil(scale * size)`` before the network. None or 1: no resize.
      mode, tile, stride, margin, batch, patch: tiling (``bppjax.tiling.resolve_spec``);
        ``patch`` is the training patch side used by ``mode="paper"``.
      self_ensemble: average over the 8 flips/rotations (8x the time).
      progress: tqdm-like bar advanced per tile.
      max_memory_gb: refuse (ValueError, before allocating) an output needing
        more memory than this; default half the machine's memory, 0: no limit.

    Returns:
      float32 in [0, 1], (H', W') or (H', W', C) with the input's channel count.
    """
    arr = np.asarray(image)
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[-1] not in (1, 3)) or 0 in arr.shape:
        raise ValueError(f"image must be (H, W), (H, W, 1) or (H, W, 3); got shape {arr.shape}")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"scale must be a positive number; got {scale!r}")
    check_output_size(arr.shape, scale, max_memory_gb)
    if scale is not None and scale != 1:
        arr = imresize(arr, float(scale))
    x = to_float32(arr)
    grey = x.ndim == 2 or x.shape[-1] == 1
    x = np.repeat(x.reshape(x.shape[0], x.shape[1], 1), 3, axis=-1) if grey else x
    if np.issubdtype(np.asarray(image).dtype, np.floating) and not np.isfinite(x).all():
        raise ValueError("image contains NaN or Inf values")

    spec = tiling.resolve_spec(model, mode, tile=tile, stride=stride, margin=margin, batch=batch, patch=patch)
    apply_fn = tiling.make_apply_fn(model, params)
    multiple = int(getattr(model, "multiple", 1))

    def run(img: np.ndarray) -> np.ndarray:
        return tiling.tiled_apply(apply_fn, np.ascontiguousarray(img), spec, multiple=multiple, progress=progress)

    if self_ensemble:
        from bppjax.evaluation import self_ensemble as x8  # local: evaluation imports tqdm and the metrics

        run = x8(run)
    y = run(x)
    y = np.asarray(y, np.float32)
    y = y if y.flags.writeable else y.copy()
    np.clip(y, 0.0, 1.0, out=y)  # in place: an 8K float image is 400 MB
    if grey:
        y = y.mean(axis=-1)
        return y if np.asarray(image).ndim == 2 else y[..., None]
    return y


# --------------------------------------------------------------------------- files


@dataclasses.dataclass(frozen=True)
class Job:
    """One input file and where its output goes."""

    source: Path
    target: Path


@dataclasses.dataclass
class Outcome:
    """What happened to one input (``error`` is None on success)."""

    source: Path
    target: Path
    seconds: float = 0.0
    size_in: tuple[int, int] | None = None
    size_out: tuple[int, int] | None = None
    tiles: int = 0
    error: str | None = None
    notes: tuple[str, ...] = ()


def collect_inputs(inputs: Sequence[str | Path]) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Image files named directly or found in the named folders, and problems with the names.

    A named file is kept whatever its suffix (reading it reports a non-image);
    folders contribute their files with an image suffix (``IMAGE_EXTENSIONS``), sorted.
    """
    files, problems = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = image_files(p)
            if not found:
                problems.append((p, f"folder holds no image files ({', '.join(IMAGE_EXTENSIONS)})"))
            files.extend(found)
        elif p.exists():
            files.append(p)
        else:
            problems.append((p, "no such file or folder"))
    return files, problems


def plan_outputs(
    files: Sequence[Path], out_dir: Path, *, ext: str | None = None, suffix: str = "", overwrite: bool = False
) -> list[Job]:
    """Output path for each input: ``out_dir/<stem><suffix><ext>``.

    Raises:
      ValueError: two inputs would write the same output, or an output is one of
        the inputs (unless ``overwrite``).
    """
    if ext is not None:
        ext = ext if ext.startswith(".") else "." + ext
        if ext.lower() not in WRITE_EXTENSIONS:
            raise ValueError(f"--ext {ext!r} is not a supported output format; use one of {WRITE_EXTENSIONS}")
    inputs = {f.resolve() for f in files}
    jobs, seen = [], {}
    for f in files:
        own = f.suffix if f.suffix.lower() in WRITE_EXTENSIONS else ".png"  # GIF (256 colours) is written as PNG
        target = out_dir / f"{f.stem}{suffix}{ext or own}"
        key = target.resolve()
        if key in seen:
            raise ValueError(f"{f} and {seen[key]} would both be written to {target}; use separate runs or --suffix")
        if key in inputs and not overwrite:
            raise ValueError(f"output {target} would overwrite an input; choose another --out, add --suffix, or pass --overwrite")
        seen[key] = f
        jobs.append(Job(f, target))
    return jobs


def output_depth(native: np.ndarray, requested: int | None, target: Path) -> int:
    """Bit depth to write: the requested one, else the input's (8 for JPEG/BMP/WebP targets; 32 for float TIFFs)."""
    if requested is not None:
        return requested
    if target.suffix.lower() in (".jpg", ".jpeg", ".bmp", ".webp"):
        return 8
    if native.dtype in (np.uint8, np.uint16):
        return bit_depth(native)
    return 32 if target.suffix.lower() in (".tif", ".tiff") else 16


def enhance_files(
    jobs: Sequence[Job],
    model: nn.Module,
    params: PyTree,
    *,
    depth: int | None = None,
    quality: int = 95,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    **options: Any,
) -> list[Outcome]:
    """Read, enhance and write each job; a failing image is recorded and skipped.

    ``quality`` is the JPEG/WebP quality of the outputs; ``options`` go to
    ``enhance`` (scale, mode, tile, ...). Every failure of one
    file (unreadable, too small, too large an output, unwritable target, or any
    other error) is recorded in its ``Outcome`` and the next file is processed;
    with ``BPPJAX_DEBUG=1`` an unexpected error raises instead.
    """
    from tqdm.auto import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))  # printed above the bars, not through them
    outcomes = []
    images = tqdm(jobs, desc="images", unit="img", disable=not progress)
    tiles_bar = tqdm(desc="tiles", unit="tile", leave=False, disable=not progress, position=1)
    try:
        for job in images:
            images.set_postfix_str(job.source.name)
            try:
                outcomes.append(_enhance_one(job, model, params, depth, quality, tiles_bar, log, options))
            except Exception as e:  # noqa: BLE001 - one bad file never stops the others
                if debug_enabled():
                    raise
                log(f"failed {job.source}: {describe(e)}")
                outcomes.append(Outcome(job.source, job.target, error=describe(e)))
    finally:
        tiles_bar.close()
        images.close()
    return outcomes


def check_options(*, quality: int = 95, scale: float | None = None, tile: int | None = None, stride: int | None = None,
                  batch: int | None = None) -> None:
    """ValueError, naming the command-line flag, for a JPEG/WebP quality outside 1-100, a tile,
    stride or batch below 1, or a scale that is not a positive number."""
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be between 1 and 100; got {quality}")
    for name, v in (("tile", tile), ("stride", stride), ("batch", batch)):
        if v is not None and v < 1:
            raise ValueError(f"--{name} must be >= 1; got {v}")
    if scale is not None and not (np.isfinite(scale) and scale > 0):
        raise ValueError(f"--scale must be a positive number; got {scale}")


@dataclasses.dataclass
class FileRun:
    """Image files, a loaded model and the options to enhance them with, all checked (``prepare_files``)."""

    jobs: list[Job]
    loaded: Any  # bppjax.workdir.LoadedModel
    checkpoint: str
    spec: tiling.TileSpec
    options: dict[str, Any]  # keyword arguments of ``enhance``: scale, mode, tile, ..., max_memory_gb

    def describe(self) -> str:
        """One line: the network, its checkpoint and step, the scale and the tiling."""
        s = self.spec
        tiles = "whole image" if s.tile is None else f"tile {s.tile}, stride {s.stride}, margin {s.margin}"
        return (f"{self.loaded.config.model.get('arch', 'bpp')} from {self.checkpoint} (step {self.loaded.step}); "
                f"scale {self.options['scale'] or 1:g}; {self.options['mode']} tiling: {tiles}")

    def run(self, depth: int | None = None, quality: int = 95, progress: bool = True) -> list[Outcome]:
        """``enhance_files`` over the jobs: one ``Outcome`` per file."""
        return enhance_files(self.jobs, self.loaded.model, self.loaded.params, depth=depth, quality=quality,
                             progress=progress, **self.options)


def prepare_files(
    files: Sequence[Path],
    out_dir: Path,
    *,
    checkpoint: str | None = None,
    overrides: Sequence[str] = (),
    which: str = "best",
    scale: float | None = None,
    ext: str | None = None,
    suffix: str = "",
    overwrite: bool = False,
    log: Callable[[str], None] = print,
    **options: Any,
) -> FileRun:
    """Output paths, the model and the tiling for enhancing ``files`` into ``out_dir``, before any image is read.

    ``checkpoint`` is a workdir or a zoo name; without one the shipped model for
    ``scale`` is used (``zoo.model_for_scale``, scale 2 by default) and ``log``
    says which. ``scale`` defaults to the training scale of the checkpoint's
    config, ``overrides`` are ``KEY=VALUE`` strings for that config, and
    ``options`` are ``enhance``'s (mode, tile, stride, margin, batch,
    self_ensemble, max_memory_gb; ``patch`` defaults to the config's).

    Raises:
      ValueError, FileNotFoundError: clashing outputs (``plan_outputs``), a
        checkpoint or config that cannot be loaded, or a tiling the model cannot take.
    """
    from bppjax.workdir import load_model  # local: Orbax

    jobs = plan_outputs(files, out_dir, ext=ext, suffix=suffix, overwrite=overwrite)
    if checkpoint is None:
        from bppjax import zoo

        checkpoint = zoo.model_for_scale(scale)
        scale = 2.0 if scale is None else scale
        log(f"no --checkpoint: using the shipped model {checkpoint} for scale {scale:g}")
    loaded = load_model(checkpoint, overrides, which=which)
    patch = loaded.config.get("data", {}).get("patch") if hasattr(loaded.config, "get") else None
    options = {"mode": "auto", "patch": int(patch) if patch else None, **options,
               "scale": scale if scale is not None else training_scale(loaded.config)}
    spec = tiling.resolve_spec(loaded.model, options["mode"], **{k: options.get(k) for k in ("tile", "stride", "margin", "batch", "patch")})
    if spec.tile is not None:  # a tile/stride the model cannot take fails here, not at the first image
        big = 4 * spec.tile
        tiling.plan_tiles(big, big, spec, int(getattr(loaded.model, "multiple", 1)))
    return FileRun(jobs, loaded, str(checkpoint), spec, options)


def _enhance_one(job: Job, model, params, depth, quality, bar, log, options) -> Outcome:
    t0 = time.perf_counter()
    try:
        photo = read_photo(job.source)
    except (OSError, ValueError) as e:
        log(f"skipped {job.source}: {e}")
        return Outcome(job.source, job.target, error=str(e))
    native, notes = photo.samples, list(photo.notes)
    counter = _TileCounter(bar)
    try:
        out = enhance(native, model, params, progress=counter, **options)
        alpha = None if photo.alpha is None else _resized_alpha(photo.alpha, out.shape[:2], options.get("scale"))
    except (ValueError, MemoryError) as e:  # e.g. an image smaller than the model allows, or too large an output
        log(f"skipped {job.source}: {e}")
        return Outcome(job.source, job.target, size_in=native.shape[:2], error=str(e))
    depth = output_depth(native, depth, job.target)
    if alpha is not None and job.target.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
        notes.append(f"{job.source.name}: {job.target.suffix} has no alpha channel; transparency dropped")
        alpha = None
    colour = out.reshape(*out.shape[:2], -1)
    if alpha is not None and colour.shape[-1] == 1:  # grey + alpha is written as RGBA
        colour = np.repeat(colour, 3, axis=-1)
    image = out if alpha is None else np.concatenate([colour, alpha], axis=-1)
    for note in notes:
        log(f"note: {note}")
    try:
        write_image(job.target, image if depth == 32 else quantise(image, depth), bit_depth=depth, quality=quality,
                    icc_profile=photo.icc_profile, exif=photo.exif)
    except (OSError, ValueError) as e:  # e.g. an unwritable folder: the other images still get written
        log(f"could not write {job.target}: {e}")
        return Outcome(job.source, job.target, size_in=native.shape[:2], error=f"write failed: {e}")
    return Outcome(job.source, job.target, time.perf_counter() - t0, native.shape[:2], out.shape[:2], counter.count,
                   notes=tuple(notes))


def _resized_alpha(alpha: np.ndarray, shape: tuple[int, int], scale: float | None) -> np.ndarray:
    """The alpha channel at the output size: resized like the colour (MATLAB bicubic), not run through the network."""
    a = imresize(alpha, float(scale)) if scale is not None and scale != 1 else alpha
    if a.shape[:2] != tuple(shape):
        raise ValueError(f"alpha channel resized to {a.shape[:2]}, colour to {tuple(shape)}")
    return np.clip(to_float32(a), 0.0, 1.0).reshape(*shape, 1)


def quantise(image: np.ndarray, depth: int, rows: int = 256) -> np.ndarray:
    """Float [0, 1] -> uint8/uint16, rounding half up as ``write_image`` does, a band of rows at a time.

    Why here: converting a whole 8K float image at once takes several float64
    copies (over 2 GB); by bands the extra memory is a few tens of MB.
    """
    peak = 255 if depth == 8 else 65535
    out = np.empty(image.shape, np.uint8 if depth == 8 else np.uint16)
    for i in range(0, image.shape[0], rows):
        out[i : i + rows] = quantise_samples(image[i : i + rows], peak)
    return out


class _TileCounter:
    """Forwards tile progress to a tqdm bar and counts the tiles."""

    def __init__(self, bar: Any):
        self.bar, self.count = bar, 0

    def reset(self, total: int | None = None) -> None:
        self.bar.reset(total=total)

    def update(self, n: int = 1) -> None:
        self.count += n
        self.bar.update(n)


def summary(outcomes: Sequence[Outcome]) -> str:
    """Per-image size, tiles and time, then totals.

    The first image of each tile shape includes the network's compilation.
    """
    lines = [f"{'image':30s} {'in (WxH)':>11s} {'out (WxH)':>11s} {'tiles':>6s} {'seconds':>8s}"]
    for o in outcomes:
        if o.error:
            lines.append(f"{o.source.name[:30]:30s} FAILED: {o.error}")
            continue
        size = lambda s: f"{s[1]}x{s[0]}"  # noqa: E731
        lines.append(f"{o.source.name[:30]:30s} {size(o.size_in):>11s} {size(o.size_out):>11s} {o.tiles:6d} {o.seconds:8.2f}")
        lines += [f"{'':30s} note: {n}" for n in o.notes]
    done = [o for o in outcomes if not o.error]
    if done:
        total = sum(o.seconds for o in done)
        mpx = sum(o.size_out[0] * o.size_out[1] for o in done) / 1e6
        lines.append(f"{len(done)} written, {len(outcomes) - len(done)} failed; {total:.1f} s, {total / len(done):.2f} s/image, {mpx / max(total, 1e-9):.3f} Mpx/s")
    else:
        lines.append(f"0 written, {len(outcomes)} failed")
    return "\n".join(lines)


def training_scale(config: Any) -> float | None:
    """The SR factor a workdir was trained for (``data.scales`` or ``data.scale``), if it has one."""
    data = config.get("data") if hasattr(config, "get") else None
    if not data:
        return None
    scales = data.get("scales") or ([data.get("scale")] if data.get("scale") else [])
    return float(scales[0]) if len(scales) == 1 else None
