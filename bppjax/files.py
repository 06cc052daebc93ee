"""Enhance image files: ``prepare_files`` checks everything, ``enhance_files`` reads, enhances and writes.

Each file is read with its orientation, alpha, ICC profile and EXIF data
(``bppjax.image.read_photo``), enhanced by ``bppjax.inference`` and written in
its own format and bit depth; every failure of one file is recorded in its
``Outcome`` while the others go on. The files go through three stages on
their own threads, so that reading and the bicubic pre-upscale of the next
image and the encoding of the previous one overlap the network's work on the
current one; at most three images are held at once. ``python -m
bppjax.enhance`` is the command line over this module (docs/ENHANCE.md).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import flax.linen as nn
import numpy as np

from bppjax import tiling
from bppjax.image.io import IMAGE_EXTENSIONS, WRITE_EXTENSIONS, Photo, bit_depth, image_files, read_photo, to_float32, write_image
from bppjax.image.io import quantise as quantise_samples
from bppjax.image.resize import imresize
from bppjax.inference import NetworkInput, network_input, restore
from bppjax.models import at_factor, input_space, output_scale

PyTree = Any


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
    network_seconds: float = 0.0  # of ``seconds``, the network's (the rest is reading, pre-upscale and writing)


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
    reraise: bool = False,
    describe_error: Callable[[BaseException], str] | None = None,
    **options: Any,
) -> list[Outcome]:
    """Read, enhance and write each job; a failing image is recorded and skipped.

    ``quality`` is the JPEG/WebP quality of the outputs; ``options`` go to
    ``enhance`` (scale, mode, tile, ...). Every failure of one file
    (unreadable, too small, too large an output, unwritable target, or any
    other error) is recorded in its ``Outcome`` (its message by
    ``describe_error``, default ``Type: message``) and the next file is
    processed; with ``reraise`` an unexpected error raises instead.

    Reading image i+1 (its bicubic pre-upscale computed by bands on a thread of
    its own, ``inference.StreamedImage``) and writing image i-1 run on worker
    threads while the network runs on image i; when the tiling has one fixed
    shape (``TileSpec.fixed_shape``) the network is compiled on a worker
    thread while the first image is read. The outcomes are in the order of ``jobs``.
    """
    from tqdm.auto import tqdm

    log = log or (lambda msg: tqdm.write(msg, file=sys.stderr))  # printed above the bars, not through them
    describe_error = describe_error or _one_line
    opts = dict(options)
    scale, max_memory_gb = opts.pop("scale", None), opts.pop("max_memory_gb", None)
    self_ensemble = bool(opts.pop("self_ensemble", False))
    model = at_factor(model, scale)  # a model conditioned on the SR factor is told it
    spec = tiling.resolve_spec(model, opts.pop("mode", tiling.ENHANCE_MODE), **opts)
    factor = output_scale(model) if input_space(model) == "lr" else scale

    def guarded(job: Job, stage: Callable[[], Any], size_in: tuple[int, int] | None = None) -> Any:
        try:
            return stage()
        except Exception as e:  # noqa: BLE001 - one bad file never stops the others
            if reraise:
                raise
            log(f"failed {job.source}: {describe_error(e)}")
            return Outcome(job.source, job.target, size_in=size_in, error=describe_error(e))

    def read(job: Job) -> _Read | Outcome:
        return guarded(job, lambda: _read_one(job, model, scale, max_memory_gb, not self_ensemble, log))

    def write(item: _Read, out: np.ndarray, seconds: float, tiles: int, network_seconds: float) -> Outcome:
        outcome = guarded(item.job, lambda: _write_one(item, out, factor, depth, quality, seconds, tiles, log),
                          item.photo.samples.shape[:2])
        return dataclasses.replace(outcome, network_seconds=network_seconds) if outcome.error is None else outcome

    outcomes: list[concurrent.futures.Future] = []
    images = tqdm(jobs, desc="images", unit="img", disable=not progress)
    tiles_bar = tqdm(desc="tiles", unit="tile", leave=False, disable=not progress, position=1)
    reader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bppjax-read")
    writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="bppjax-write")
    try:
        # The writer is idle until the first image is through the network: it compiles meanwhile.
        compiled = writer.submit(tiling.compile_tiles, model, params, spec) if jobs and spec.fixed_shape else None
        ahead = reader.submit(read, jobs[0]) if jobs else None
        for i, job in enumerate(images):
            images.set_postfix_str(job.source.name)
            item = ahead.result()
            ahead = reader.submit(read, jobs[i + 1]) if i + 1 < len(jobs) else None
            if isinstance(item, Outcome):
                outcomes.append(_done(item))
                continue
            if compiled is not None:
                compiled.result()
                compiled = None
            counter = _TileCounter(tiles_bar)
            t0 = time.perf_counter()
            out = guarded(job, lambda: _network(item, model, params, spec, self_ensemble, counter, log),
                          item.photo.samples.shape[:2])
            network_seconds = time.perf_counter() - t0
            seconds = item.seconds + network_seconds
            item = dataclasses.replace(item, prepared=None)  # the network input is no longer needed
            if isinstance(out, Outcome):
                outcomes.append(_done(out))
                continue
            if outcomes:
                outcomes[-1].result()  # one image being written at a time: memory stays bounded
            outcomes.append(writer.submit(write, item, out, seconds, counter.count, network_seconds))
        return [f.result() for f in outcomes]
    finally:
        reader.shutdown(wait=True, cancel_futures=True)
        writer.shutdown(wait=True, cancel_futures=True)
        tiles_bar.close()
        images.close()


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _done(outcome: Outcome) -> concurrent.futures.Future:
    future: concurrent.futures.Future = concurrent.futures.Future()
    future.set_result(outcome)
    return future


@dataclasses.dataclass(frozen=True)
class _Read:
    """An image file read and prepared for the network, and the seconds that took."""

    job: Job
    photo: Photo
    prepared: NetworkInput | None
    notes: tuple[str, ...]
    seconds: float


def _read_one(job: Job, model: nn.Module, scale: float | None, max_memory_gb: float | None, stream: bool,
              log: Callable[[str], None]) -> _Read | Outcome:
    t0 = time.perf_counter()
    try:
        photo = read_photo(job.source)
    except (OSError, ValueError) as e:
        log(f"skipped {job.source}: {e}")
        return Outcome(job.source, job.target, error=str(e))
    try:
        prepared = network_input(photo.samples, model, scale=scale, max_memory_gb=max_memory_gb, stream=stream)
    except (ValueError, MemoryError) as e:  # e.g. too large an output
        log(f"skipped {job.source}: {e}")
        return Outcome(job.source, job.target, size_in=photo.samples.shape[:2], error=str(e))
    return _Read(job, photo, prepared, tuple(photo.notes), time.perf_counter() - t0)


def _network(item: _Read, model: nn.Module, params: PyTree, spec: tiling.TileSpec, self_ensemble: bool, counter: Any,
             log: Callable[[str], None]) -> np.ndarray | Outcome:
    try:
        return restore(item.prepared, model, params, spec, self_ensemble=self_ensemble, progress=counter)
    except (ValueError, MemoryError) as e:  # e.g. an image smaller than the model allows
        log(f"skipped {item.job.source}: {e}")
        return Outcome(item.job.source, item.job.target, size_in=item.photo.samples.shape[:2], error=str(e))


def _write_one(item: _Read, out: np.ndarray, factor: float | None, depth: int | None, quality: int, seconds: float,
               tiles: int, log: Callable[[str], None]) -> Outcome:
    t0 = time.perf_counter()
    job, photo, notes = item.job, item.photo, list(item.notes)
    native = photo.samples
    alpha = None if photo.alpha is None else _resized_alpha(photo.alpha, out.shape[:2], factor)
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
    return Outcome(job.source, job.target, seconds + time.perf_counter() - t0, native.shape[:2], out.shape[:2], tiles,
                   notes=tuple(notes))


def check_options(*, quality: int = 95, scale: float | None = None, tile: int | None = None, stride: int | None = None,
                  batch: int | None = None, streams: int | None = None) -> None:
    """ValueError, naming the command-line flag, for a JPEG/WebP quality outside 1-100, a tile,
    stride, batch or streams below 1, or a scale that is not a positive number."""
    if not 1 <= quality <= 100:
        raise ValueError(f"--quality must be between 1 and 100; got {quality}")
    for name, v in (("tile", tile), ("stride", stride), ("batch", batch), ("streams", streams)):
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
        stride = f"at most {s.stride}, spread evenly" if s.spread else f"{s.stride}"
        tiles = "whole image" if s.tile is None else f"tile {s.tile}, stride {stride}, margin {s.margin}, {s.streams} in flight"
        return (f"{self.loaded.config.model.get('arch', 'bpp')} from {self.checkpoint} (step {self.loaded.step}); "
                f"scale {self.options['scale'] or 1:g}; {self.options['mode']} tiling: {tiles}")

    def run(self, depth: int | None = None, quality: int = 95, progress: bool = True, **kwargs: Any) -> list[Outcome]:
        """``enhance_files`` over the jobs: one ``Outcome`` per file (``kwargs``: its ``log``, ``reraise``, ``describe_error``)."""
        return enhance_files(self.jobs, self.loaded.model, self.loaded.params, depth=depth, quality=quality,
                             progress=progress, **kwargs, **self.options)


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
    ``options`` are ``enhance``'s (mode, tile, stride, margin, batch, streams,
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
    options = {"mode": tiling.ENHANCE_MODE, "patch": int(patch) if patch else None, **options,
               "scale": scale if scale is not None else training_scale(loaded.config)}
    spec = tiling.resolve_spec(loaded.model, options["mode"],
                               **{k: options.get(k) for k in ("tile", "stride", "margin", "batch", "patch", "streams")})
    if spec.tile is not None:  # a tile/stride the model cannot take fails here, not at the first image
        big = 4 * spec.tile
        tiling.plan_tiles(big, big, spec, int(getattr(loaded.model, "multiple", 1)))
    return FileRun(jobs, loaded, str(checkpoint), spec, options)


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

    An image's seconds are its own reading, network and writing time; the stages
    of neighbouring images overlap, so their sum can exceed the run's wall time.
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
