"""Overlapping-tile inference with Hamming-window blending.

Why tiles: a whole 8K image does not fit in memory through BPP, and with
instance norm (IN) the output depends on the statistics of everything the
network sees, so the paper runs the network on overlapping patches the size
of the training patches, 16 px apart, and blends them with Hamming weights.
That is ~20-40x redundant; ``mode="auto"`` (the evaluation protocol) keeps
the training-size tiles (IN statistics over regions of the size the model was
trained on) with half the overlap, ~7x cheaper; ``mode="fast"`` (the default
of ``enhance``) overlaps them by 28 px of 96 at least, spaced evenly, in one
fixed shape for every image, ~2x cheaper again.

How: the image is reflect-padded to a multiple of ``model.multiple`` (as the
model itself would), tiles of one fixed shape are laid on a grid whose first
and last tiles touch the image borders, and batches of tiles go through one
jitted function (one compilation; the last batch is padded), ``streams``
calls in flight at once, each waited for on a thread of its own (one call
leaves cores idle on a CPU; ``default_streams``). Each tile's
output is weighted by a separable window (Hamming over the part of the tile
that is kept, raised to ``TileSpec.window_power``; zero over ``margin``
pixels at edges inside the image) and
accumulated in NumPy as batches return, so memory is the image, the output
and one batch of tiles. Tiles are generated lazily. For a network whose
output is ``scale`` times its input (one that takes the low-resolution image)
the grid is laid in input pixels and every output length is ``scale`` times larger.

Exactness: without IN, a pixel farther than ``receptive_margin(model)`` from
every tile edge inside the image sees exactly what it sees in the whole image
(tile origins are multiples of ``model.multiple``, so the pyramid aligns).
With ``margin >= receptive_margin(model)`` the tiled output equals the
whole-image output to float tolerance.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import functools
import os
from typing import Any, Callable, Iterator

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from bppjax.models import output_scale
from bppjax.models.padding import reflect_padding

PyTree = Any
ApplyFn = Callable[[np.ndarray], Any]

#: The paper's tile spacing (Sec. 5 of the spec): training-size patches 16 px apart.
PAPER_STRIDE = 16
#: Training patch side assumed when the config does not say (48 px LR patches, x2 SR).
DEFAULT_PATCH = 96
#: Tile side of ``mode="auto"``: big tiles make the overlap cheap (measured in docs/ENHANCE.md).
AUTO_TILE = 512
#: Overlap of neighbouring tiles in ``mode="auto"`` for models with IN, as a fraction of the tile.
AUTO_OVERLAP = 0.25
#: Overlap of training-size tiles in ``mode="auto"`` for models with IN whose training patch is known.
PATCH_OVERLAP = 0.5
#: Pixels per batch of tiles when ``batch`` is not given (bounds activation memory).
BATCH_PIXELS = 1 << 18
#: Tile side of ``mode="fast"`` for models with IN, in training patches. ``FAST_TILE_PATCHES``, ``FAST_OVERLAP``,
#: ``FAST_WINDOW_POWER`` and ``FAST_SPREAD`` are the cheapest setting measured on the embedded photographs for which
#: no single photo loses more than 0.01 dB against ``auto`` with the x2, x3 or x4 zoo model (``benchmarks/tiling.py
#: quality``; the rule and the figures, including the earlier rule it replaced, in docs/ENHANCE.md).
FAST_TILE_PATCHES = 1
#: Overlap of neighbouring tiles in ``mode="fast"`` for models with IN, as a fraction of the tile: 28 px of 96, at
#: least (stride 68; spread evenly, the seams of an image share the slack its flush last tile leaves).
FAST_OVERLAP = 7 / 24
#: Exponent of the Hamming window in ``mode="fast"`` (1: plain Hamming, as ``auto``).
FAST_WINDOW_POWER = 1
#: Whether ``mode="fast"`` spaces its tiles evenly (``TileSpec.spread``): as many tiles as the flush grid, no seam
#: overlapping less than ``FAST_OVERLAP``.
FAST_SPREAD = True
#: Tiles per network call in ``mode="fast"``: on the 2-core CPU, 96 px tiles one at a time ran 1.28x faster than
#: ``BATCH_PIXELS`` worth (28) side by side (the activations of one tile stay in cache), and no tile is padding.
FAST_BATCH = 1
MODES = ("auto", "fast", "paper", "whole")


def default_streams() -> int:
    """Network calls kept in flight at once by default: one per CPU core this process may use.

    One call of the network on a CPU leaves cores idle (XLA:CPU runs a small
    tile's operations one after another, each split over the cores only
    where it is large), so calls from several threads fill the machine: on the
    2-core CPU, 96 px tiles ran 1.5x faster with two in flight than with one
    (docs/ENHANCE.md).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, int(cores or 1))

#: The mode of ``bppjax.inference.enhance`` and ``python -m bppjax.enhance``.
ENHANCE_MODE = "fast"


# --------------------------------------------------------------------------- receptive field


def receptive_margin(model: nn.Module) -> int:
    """Radius (px) of the input region that can influence one output pixel, IN aside (``model.receptive_margin()``).

    BPP's is large because its coarse levels see 2^(L-1) px per step: 24 px for
    ``tiny``, 32 for ``small``, 164 for the paper's network. Instance norm adds
    a global dependence on top of this. Raises TypeError for a model without
    a bounded one (the ODE model with more than one step per block).
    """
    margin = model.receptive_margin() if hasattr(model, "receptive_margin") else None
    if margin is None:
        raise TypeError(
            f"no receptive margin is known for {type(model).__name__} "
            "(BPP, ResNet, and the ODE model with the causal Euler solver at dt=1 have one)"
        )
    return int(margin)


def probe_receptive_margin(model: nn.Module, params: PyTree | None = None, size: int | None = None, seed: int = 0) -> int:
    """Measured receptive radius: the farthest input pixel with a non-zero gradient of the centre output.

    Runs ``model`` (IN switched off, jittered random init unless ``params``) on
    a random image; a check of ``receptive_margin`` on small models (it can
    only under-estimate, where a path cancels or a ReLU is off).
    """
    if getattr(model, "instance_norm", False):
        model = model.clone(instance_norm=False)
    margin = receptive_margin(model)
    m = getattr(model, "multiple", 1)
    size = size or _round_up(2 * margin + 2 * m + 1, m)
    x = jnp.asarray(np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32))
    if params is None:
        # Gaussian weights scaled by fan-in, not the model's init: that one leaves
        # structural zeros (the Scalers' first bicubic tap), and compiling it is slow.
        shapes = jax.eval_shape(model.init, jax.random.key(seed), x)["params"]
        rng = np.random.default_rng(seed)
        params = jax.tree.map(lambda s: _fan_in_normal(rng, s.shape), shapes)
    c0 = _round_down(size // 2, m)

    def pixel(img, c):
        return jnp.sum(model.apply({"params": params}, img)[0, c, c])  # dynamic index: c stays traced

    grad = jax.jit(jax.grad(pixel))  # c traced: one compilation
    radius = 0
    for c in range(c0, c0 + m):  # the support depends on the position modulo the pyramid's step
        g = np.abs(np.asarray(grad(x, jnp.int32(c))[0])).sum(-1)
        ys, xs = np.nonzero(g)
        radius = max(radius, int(np.abs(ys - c).max()), int(np.abs(xs - c).max()))
    return radius


def _fan_in_normal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    return (rng.standard_normal(shape) / np.sqrt(fan_in)).astype(np.float32)


# --------------------------------------------------------------------------- tile grid


@dataclasses.dataclass(frozen=True)
class TileSpec:
    """How to tile one image.

    Attributes:
      tile: tile side in px, or None for the whole image in one pass.
      stride: distance between tile origins (px).
      margin: px dropped at tile edges that lie inside the image.
      batch: tiles per call of the network (None: ``BATCH_PIXELS`` worth).
      fixed_shape: every call of the network gets the same (batch, tile, tile, C)
        array, whatever the image size: an image smaller than the tile is
        reflect-padded up to it and the batch is not shrunk for images with
        fewer tiles, so a folder of images of any sizes compiles once.
      window_power: blending weights are the Hamming window raised to this
        power (1: Hamming; larger favours tile centres over tile edges).
      spread: lay the tiles evenly (``axis_starts(..., spread=True)``): the
        same number of tiles as the grid ``stride`` apart with its last tile
        flush with the end, but the slack shared by every seam instead of
        piled on the last one, so no two neighbours overlap by less than
        ``tile - stride``.
      streams: batches of tiles in the network at once, each called from a
        thread of its own (``default_streams``); the output does not depend
        on it (tiles are blended in order). Memory grows with it.
    """

    tile: int | None
    stride: int = 0
    margin: int = 0
    batch: int | None = None
    fixed_shape: bool = False
    window_power: float = 1
    spread: bool = False
    streams: int = 1


def axis_starts(length: int, tile: int, stride: int, spread: bool = False, multiple: int = 1) -> np.ndarray:
    """Tile origins along one axis: 0, stride, 2*stride, ..., and the last tile flush with the end.

    With ``spread``, as many tiles, their origins spaced evenly from 0 to ``length - tile``
    (each rounded down to a multiple of ``multiple`` when ``length - tile`` is one, as
    in ``tiled_apply``; ``stride`` should be one too): no step exceeds ``stride``, and
    the overlap the flush last tile adds is shared by all the seams.
    """
    if tile >= length:
        return np.zeros(1, np.int64)
    starts = list(range(0, length - tile, stride)) + [length - tile]
    if spread and len(starts) > 2:
        n, span = len(starts) - 1, length - tile
        m = multiple if span % multiple == 0 else 1
        starts = [i * span // n // m * m for i in range(n)] + [span]
    return np.asarray(sorted(set(starts)), np.int64)


def axis_window(start: int, tile: int, length: int, margin: int, power: float = 1) -> tuple[int, int, np.ndarray]:
    """Kept span [lo, hi) of a tile (tile coordinates) and its Hamming weights over it (raised to ``power``).

    Edges on the image border keep their pixels (the tile sees the same border
    as the whole image); edges inside the image drop ``margin`` px.
    """
    lo = 0 if start == 0 else margin
    hi = tile if start + tile >= length else tile - margin
    # np.hamming is 0.08 at its ends (positive), and [1.0] for a single pixel.
    window = np.hamming(hi - lo)
    return lo, hi, (window if power == 1 else window ** power).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class TilePlan:
    """Tile grid over a (padded) image; windows are separable, so are the weight sums."""

    height: int
    width: int
    tile_h: int
    tile_w: int
    ys: np.ndarray
    xs: np.ndarray
    margin: int
    window_power: float = 1

    @property
    def count(self) -> int:
        return len(self.ys) * len(self.xs)

    def positions(self) -> Iterator[tuple[int, int]]:
        """Tile origins in raster order, generated lazily."""
        for y in self.ys:
            for x in self.xs:
                yield int(y), int(x)

    def windows(self, axis: int) -> list[tuple[int, int, np.ndarray]]:
        starts, tile, length = (self.ys, self.tile_h, self.height) if axis == 0 else (self.xs, self.tile_w, self.width)
        return [axis_window(int(s), tile, length, self.margin, self.window_power) for s in starts]

    def scaled(self, scale: int) -> "TilePlan":
        """The same grid in the output of a network that enlarges ``scale`` times (every length multiplied)."""
        if scale == 1:
            return self
        return TilePlan(self.height * scale, self.width * scale, self.tile_h * scale, self.tile_w * scale,
                        self.ys * scale, self.xs * scale, self.margin * scale, self.window_power)

    def weight_sum(self, axis: int) -> np.ndarray:
        """Sum of the windows along one axis; the 2-D weight sum is the outer product."""
        starts, length = (self.ys, self.height) if axis == 0 else (self.xs, self.width)
        total = np.zeros(length, np.float32)
        for s, (lo, hi, w) in zip(starts, self.windows(axis)):
            total[s + lo : s + hi] += w
        return total


def plan_tiles(height: int, width: int, spec: TileSpec, multiple: int = 1) -> TilePlan:
    """Check a TileSpec against an image (already padded to ``multiple``) and lay the grid.

    Raises:
      ValueError: tile or stride not a multiple of ``multiple``, or a stride that
        leaves pixels uncovered once ``margin`` is dropped from each tile.
    """
    if spec.tile is None:
        return TilePlan(height, width, height, width, np.zeros(1, np.int64), np.zeros(1, np.int64), 0)
    tile, stride, margin = int(spec.tile), int(spec.stride), int(spec.margin)
    if tile < 1 or tile % multiple:
        raise ValueError(f"tile={tile} must be a positive multiple of {multiple} (the model's size multiple)")
    if stride < 1 or stride % multiple:
        raise ValueError(f"stride={stride} must be a positive multiple of {multiple} (the model's size multiple)")
    if margin < 0:
        raise ValueError(f"margin={margin} must be >= 0")
    th, tw = min(tile, height), min(tile, width)
    for name, t, n in (("height", th, height), ("width", tw, width)):
        if t < n and stride > t - 2 * margin:
            raise ValueError(
                f"stride={stride} leaves gaps along the image {name}: tiles of {t} px keep {t - 2 * margin} px "
                f"after dropping margin={margin} on each side; use stride <= {t - 2 * margin} or a larger tile"
            )
    spread = bool(spec.spread)
    return TilePlan(height, width, th, tw, axis_starts(height, th, stride, spread, multiple),
                    axis_starts(width, tw, stride, spread, multiple), margin, spec.window_power)


# --------------------------------------------------------------------------- specs and modes


def _round_up(n: int, m: int) -> int:
    return -(-int(n) // m) * m


def _round_down(n: int, m: int) -> int:
    return max(m, int(n) // m * m)


def _has_margin(model: nn.Module) -> bool:
    return hasattr(model, "receptive_margin") and model.receptive_margin() is not None


def has_instance_norm(model: nn.Module) -> bool:
    """Whether the output depends on global statistics (then tiles differ from the whole image)."""
    return bool(getattr(model, "instance_norm", False))


def resolve_spec(
    model: nn.Module,
    mode: str = "auto",
    *,
    tile: int | None = None,
    stride: int | None = None,
    margin: int | None = None,
    batch: int | None = None,
    patch: int | None = None,
    streams: int | None = None,
) -> TileSpec:
    """The TileSpec of a named mode, with explicit ``tile``/``stride``/``margin`` taking precedence.

    ``streams``: network calls in flight at once (``TileSpec.streams``; default
    ``default_streams()``, whatever the mode: it changes the speed, not the output).

    Modes:
      auto: without IN, big tiles with ``margin = receptive_margin`` (exactly the
        whole-image output, bounded memory); with IN, tiles of the training
        patch (``patch``) overlapping by half, so that the IN statistics are
        taken over regions of the size the model was trained on (for
        ``bpp-sr-x2`` on Set5 x2: 36.92 dB, against 36.61 on whole images and
        36.93 in ``paper`` mode at 7x the time), or ``AUTO_TILE`` px tiles
        overlapping by ``AUTO_OVERLAP`` when the patch is not known.
      fast: the default of ``enhance``. With IN, tiles of ``FAST_TILE_PATCHES``
        training patches overlapping by at least ``FAST_OVERLAP`` of their side,
        spread evenly (``FAST_SPREAD``), blended with the Hamming window to the
        power ``FAST_WINDOW_POWER``, in one fixed shape (``TileSpec.fixed_shape``: one compilation for images of any
        size); fewer network pixels per output pixel than ``auto`` (figures in
        docs/ENHANCE.md). Without IN, the same as ``auto`` (exact).
      paper: training-size tiles (``patch``, default 96), stride 16, no margin.
      whole: one pass over the whole image (unbounded memory).

    Raises:
      ValueError: unknown mode, or a tile smaller than the model allows.
    """
    if mode not in MODES:
        raise ValueError(f"unknown tiling mode {mode!r}; choose one of {MODES}")
    m = int(getattr(model, "multiple", 1))
    min_size = int(getattr(model, "min_size", 1))
    streams = default_streams() if streams is None else int(streams)
    if streams < 1:
        raise ValueError(f"streams={streams} must be >= 1")
    if mode == "whole" and tile is None:
        return TileSpec(None, batch=1)
    fixed, power, spread = False, 1, False
    if mode == "paper":
        t, s, mg = int(patch or DEFAULT_PATCH), PAPER_STRIDE, 0
    elif mode == "fast" and has_instance_norm(model):
        t = _round_up(FAST_TILE_PATCHES * int(patch or DEFAULT_PATCH), m) if tile is None else int(tile)
        s, mg, fixed, power, spread = _round_down(round(t * (1 - FAST_OVERLAP)), m), 0, True, FAST_WINDOW_POWER, FAST_SPREAD
        batch = FAST_BATCH if batch is None else batch
    elif has_instance_norm(model) or not _has_margin(model):  # blend overlaps; not exact
        t = (_round_up(int(patch), m) if patch else AUTO_TILE) if tile is None else int(tile)
        s, mg = _round_down(t * (1 - (PATCH_OVERLAP if patch and tile is None else AUTO_OVERLAP)), m), 0
    else:
        r = receptive_margin(model)
        t = max(AUTO_TILE, _round_up(6 * r, m)) if tile is None else int(tile)
        mg = r if margin is None else int(margin)
        s = _round_down(t - 2 * mg, m) if t - 2 * mg >= m else m
    t = t if tile is None else int(tile)
    s = s if stride is None else int(stride)
    mg = mg if margin is None else int(margin)
    if t < min_size or t % m:
        raise ValueError(f"tile={t} is too small or misaligned for this model: it needs a multiple of {m}, at least {_round_up(min_size, m)}")
    return TileSpec(t, s, mg, batch, fixed_shape=fixed, window_power=power, spread=spread, streams=streams)


# --------------------------------------------------------------------------- running


def make_apply_fn(model: nn.Module, params: PyTree) -> ApplyFn:
    """A jitted ``tiles (B, h, w, 3) -> output`` closure; compiled once per tile shape."""
    fn = _jitted_apply(model)
    variables = {"params": params} if not (isinstance(params, dict) and "params" in params) else params
    return lambda x: fn(variables, x)


@functools.lru_cache(maxsize=16)
def _jitted_apply(model: nn.Module) -> Callable:
    # Cached per module (Flax modules hash by their fields) so repeated calls
    # and images with the same tile shape reuse one compilation.
    return jax.jit(model.apply)


def tiled_apply(
    apply_fn: ApplyFn,
    image: np.ndarray,
    spec: TileSpec,
    *,
    multiple: int = 1,
    progress: Any = None,
    scale: int = 1,
) -> np.ndarray:
    """Run ``apply_fn`` over overlapping tiles of one HWC float image and blend the results.

    Args:
      apply_fn: maps a float32 batch (B, h, w, C) to a batch (B, scale*h, scale*w, C)
        (e.g. ``make_apply_fn(model, params)``).
      image: (H, W, C) float array, or an image still being written by bands
        (an object with the ``array`` and ``wait(rows)`` of ``bppjax.inference.StreamedImage``):
        each batch waits for the rows its tiles need.
      spec: tile, stride, margin and batch, in input pixels (see ``resolve_spec``).
      multiple: the model's size multiple; tiles start at multiples of it.
      progress: a tqdm-like object with ``update(n)`` (and ``total``), or None.
      scale: how many times larger than its input ``apply_fn``'s output is (an
        integer: 1 for networks that take the upscaled image, the SR factor for
        networks that take the low-resolution one). The grid is laid in input
        pixels; each tile's output, its window and its margin are ``scale`` times larger.

    Returns:
      (scale*H, scale*W, C) float32 blended output.
    """
    wait = getattr(image, "wait", None)  # an image still being written by bands (``inference.StreamedImage``)
    source = image.array if wait is not None else np.asarray(image, dtype=np.float32)
    if source.ndim != 3:
        raise ValueError(f"tiled_apply expects one (H, W, C) image; got shape {source.shape}")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale={scale} must be a positive integer (the network's output/input size ratio)")
    scale = int(scale)
    h, w, c = source.shape
    # Padding as indices into the image (reflect to the model's multiple, as the model pads itself,
    # then up to the tile for a fixed shape): border tiles gather through them, no padded copy is made.
    at_least = int(spec.tile) if spec.fixed_shape and spec.tile is not None else 0
    ph, pw = reflect_padding(h, w, multiple)
    rows, cols = _padded_index(h, ph, at_least), _padded_index(w, pw, at_least)
    plan = plan_tiles(len(rows), len(cols), spec, multiple)
    out_plan = plan.scaled(scale)
    batch = batch_size(spec, plan.tile_h, plan.tile_w)
    batch = batch if spec.fixed_shape else min(batch, plan.count)
    if progress is not None and hasattr(progress, "reset"):
        progress.reset(total=plan.count)

    out = np.zeros((out_plan.height, out_plan.width, c), np.float32)
    wy, wx = out_plan.windows(0), out_plan.windows(1)
    row_of = {int(s): i for i, s in enumerate(plan.ys)}
    col_of = {int(s): i for i, s in enumerate(plan.xs)}
    th, tw = out_plan.tile_h, out_plan.tile_w

    def accumulate(positions: list[tuple[int, int]], result: Any) -> None:
        pred = np.asarray(result)
        if pred.shape[1:] != (th, tw, c):
            raise ValueError(f"apply_fn returned tiles of shape {pred.shape[1:]}, expected {(th, tw, c)}")
        for k, (y, x) in enumerate(positions):
            ylo, yhi, wyk = wy[row_of[y]]
            xlo, xhi, wxk = wx[col_of[x]]
            oy, ox = y * scale, x * scale
            out[oy + ylo : oy + yhi, ox + xlo : ox + xhi] += pred[k, ylo:yhi, xlo:xhi] * wyk[:, None, None] * wxk[None, :, None]
        if progress is not None:
            progress.update(len(positions))

    def gather(y: int, x: int) -> np.ndarray:
        if y + plan.tile_h <= h and x + plan.tile_w <= w:
            return source[y : y + plan.tile_h, x : x + plan.tile_w]
        return source[np.ix_(rows[y : y + plan.tile_h], cols[x : x + plan.tile_w])]

    # ``streams`` calls in flight, each waited for on a thread of its own; blended in order as they come back.
    streams = max(1, int(spec.streams))
    pending: collections.deque = collections.deque()
    with concurrent.futures.ThreadPoolExecutor(streams, thread_name_prefix="bppjax-tiles") as pool:
        for positions in _batches(plan.positions(), batch):
            tiles = np.zeros((batch, plan.tile_h, plan.tile_w, c), np.float32)  # fresh: the device may still read the last one
            if wait is not None:
                wait(max(int(rows[y : y + plan.tile_h].max()) for y, _ in positions) + 1)
            for k, (y, x) in enumerate(positions):
                tiles[k] = gather(y, x)
            pending.append((positions, pool.submit(_run, apply_fn, tiles)))
            while len(pending) > streams:  # blend the oldest while the others run
                done = pending.popleft()
                accumulate(done[0], done[1].result())
        while pending:
            done = pending.popleft()
            accumulate(done[0], done[1].result())

    out /= out_plan.weight_sum(0)[:, None, None]
    out /= out_plan.weight_sum(1)[None, :, None]
    oh, ow = h * scale, w * scale
    return out[:oh, :ow] if out.shape[:2] != (oh, ow) else out


def _run(apply_fn: ApplyFn, tiles: np.ndarray) -> np.ndarray:
    return np.asarray(apply_fn(tiles))  # waits for the result on this thread


def batch_size(spec: TileSpec, tile_h: int, tile_w: int) -> int:
    """Tiles per network call: ``spec.batch``, else ``BATCH_PIXELS`` worth of tiles of this shape."""
    return int(spec.batch or max(1, BATCH_PIXELS // (tile_h * tile_w)))


def compile_tiles(model: nn.Module, params: PyTree, spec: TileSpec, channels: int = 3) -> bool:
    """Compiles the network for the one batch shape of a fixed-shape spec (running it once on zeros).

    Returns False, compiling nothing, for a spec without one fixed shape.
    Used to compile on one thread while another reads the first image.
    """
    if not spec.fixed_shape or spec.tile is None:
        return False
    t = int(spec.tile)
    jax.block_until_ready(make_apply_fn(model, params)(np.zeros((batch_size(spec, t, t), t, t, channels), np.float32)))
    return True


def _padded_index(length: int, pad: int, at_least: int = 0) -> np.ndarray:
    """Source index of each position along one padded axis: ``pad`` reflected, then reflected up to ``at_least``."""
    index = np.arange(length)
    index = np.pad(index, (0, pad), mode="reflect") if pad else index
    more = at_least - len(index)
    return np.pad(index, (0, more), mode="reflect" if len(index) > 1 else "edge") if more > 0 else index


def _batches(items: Iterator[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    chunk: list[tuple[int, int]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def tiled_inference(
    model: nn.Module,
    params: PyTree,
    image: np.ndarray,
    mode: str = "auto",
    *,
    tile: int | None = None,
    stride: int | None = None,
    margin: int | None = None,
    batch: int | None = None,
    patch: int | None = None,
    streams: int | None = None,
    progress: Any = None,
) -> np.ndarray:
    """Enhance one (H, W, 3) float image with ``model`` by tiles (see ``resolve_spec`` for the modes).

    For a model that takes the low-resolution image (``bppjax.models.input_space``)
    the tiles are laid in its pixels and the output is ``model.scale`` times larger.
    """
    spec = resolve_spec(model, mode, tile=tile, stride=stride, margin=margin, batch=batch, patch=patch, streams=streams)
    return tiled_apply(make_apply_fn(model, params), image, spec, multiple=int(getattr(model, "multiple", 1)), progress=progress,
                       scale=output_scale(model))


def tile_count(height: int, width: int, spec: TileSpec, multiple: int = 1) -> int:
    """Number of tiles (network calls per tile) an image of this size takes."""
    h, w = _round_up(height, multiple), _round_up(width, multiple)
    if spec.fixed_shape and spec.tile is not None:
        h, w = max(h, int(spec.tile)), max(w, int(spec.tile))
    return plan_tiles(h, w, spec, multiple).count


__all__ = [
    "AUTO_OVERLAP", "AUTO_TILE", "ENHANCE_MODE", "FAST_BATCH", "FAST_OVERLAP", "FAST_SPREAD", "FAST_TILE_PATCHES", "FAST_WINDOW_POWER", "PATCH_OVERLAP", "DEFAULT_PATCH", "MODES", "default_streams",
    "PAPER_STRIDE", "TilePlan", "TileSpec", "axis_starts", "axis_window", "batch_size", "compile_tiles", "has_instance_norm", "make_apply_fn", "plan_tiles", "probe_receptive_margin",
    "receptive_margin", "resolve_spec", "tile_count", "tiled_apply", "tiled_inference",
]
