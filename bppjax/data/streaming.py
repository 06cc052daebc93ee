"""Training patches read on demand: for SR sets larger than memory.

``StreamingSampler`` draws exactly the patches ``PatchSampler`` draws from the
same images (same random numbers, same crop, same augmentation), but holds
only the images' sizes: each patch decodes its HR image, crops the target and
degrades just the window the input needs (``bppjax.data.region``), bit for bit
the pixels of the whole-image MATLAB bicubic. Batch k stays a pure function of
(seed, k), so exact resume works as with the in-memory sampler.

Decoding a PNG costs far more than degrading a patch, so a folder may instead
hold the HR images as ``.npy`` arrays (``convert_to_npy``): those are
memory-mapped and only the window a patch needs is read.

Decoding runs in ``workers`` threads, each computing whole future batches
(``prefetch`` ahead of the one asked for); Pillow and the NumPy matmuls
release the GIL. Host memory is bounded by the workers and the prefetch depth,
not by the dataset: about ``workers`` decoded images plus ``prefetch + 1``
batches.
"""

from __future__ import annotations

import dataclasses
import threading
import weakref
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from bppjax.data.pairs import check_input_space
from bppjax.data.region import degrade_window, plan
from bppjax.data.sampler import Batch, PatchSampler

__all__ = ["StreamPair", "StreamingSampler", "convert_to_npy", "folder_pairs", "image_size", "list_stream_files", "read_stream_file", "tfds_pairs"]


@dataclasses.dataclass(frozen=True)
class StreamPair:
    """One (image, scale) of a streamed SR set: what the sampler needs without the pixels.

    Attributes:
      name: file stem or dataset example name.
      key: what the sampler's ``read`` takes to decode the HR image (a path, an index).
      scale: SR factor.
      shape: (H, W) of the HR image mod-cropped to the scale: the target's size.
      group: set name, as ``ImagePair.group``.
      input_space: ``"upscaled"`` or ``"lr"`` (see ``bppjax.data.pairs.sr_pairs``).
    """

    name: str
    key: Any
    scale: int
    shape: tuple[int, int]
    group: str = ""
    input_space: str = "upscaled"

    @property
    def ratio(self) -> int:
        """Target size over input size."""
        return self.scale if self.input_space == "lr" else 1


def image_size(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file as ``read_image`` returns it (EXIF orientation applied), read from its header."""
    from PIL import Image  # noqa: PLC0415

    if Path(path).suffix == ".npy":
        return tuple(np.load(path, mmap_mode="r").shape[:2])
    with Image.open(path) as im:
        w, h = im.size
        # JPEG/TIFF EXIF is in the header; a PNG's eXIf chunk is in ``info`` only when it precedes
        # the pixels (asking Pillow for a later one would decode the image). The reader checks the
        # decoded size against this one either way.
        exif = im.getexif() if im.format != "PNG" or "exif" in im.info else {}
        orientation = int(exif.get(0x0112, 1) or 1)
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def list_stream_files(folder: str | Path, key: str = "data") -> list[Path]:
    """The ``.npy`` arrays in ``folder`` if it holds any (``convert_to_npy``), else its images, sorted by name."""
    npy = sorted(p for p in Path(folder).expanduser().glob("*.npy") if not p.name.startswith("."))
    if npy:
        return npy
    from bppjax.data.folder import list_images  # noqa: PLC0415

    return list_images(folder, key)


def read_stream_file(path: str | Path) -> np.ndarray:
    """An HR image: ``.npy`` memory-mapped (nothing read until sliced), other files decoded (``folder.read_uint``)."""
    if Path(path).suffix == ".npy":
        im = np.load(path, mmap_mode="r")
        if im.ndim != 3 or im.shape[-1] != 3:
            raise ValueError(f"{path}: expected an (H, W, 3) array, got shape {im.shape}")
        return im
    from bppjax.data.folder import read_uint  # noqa: PLC0415

    return read_uint(Path(path))


def convert_to_npy(folder: str | Path, out: str | Path, workers: int = 2) -> list[Path]:
    """Write each image of ``folder`` as ``out/<stem>.npy`` (HxWx3 uint8/uint16, as read for training).

    Streaming from such a folder reads only each patch's window instead of
    decoding the whole image: uncompressed, so about 3 bytes a pixel on disk.
    """
    from bppjax.data.folder import list_images, read_uint  # noqa: PLC0415

    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)

    def one(path: Path) -> Path:
        dst = out / f"{path.stem}.npy"
        tmp = out / f".{path.stem}.npy.partial"
        with open(tmp, "wb") as f:
            np.save(f, read_uint(path))
        tmp.replace(dst)  # a stopped conversion leaves no truncated array behind
        return dst

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return list(pool.map(one, list_images(folder, "folder")))


def _modcrop(shape: tuple[int, int], s: int) -> tuple[int, int]:
    return shape[0] - shape[0] % s, shape[1] - shape[1] % s


def folder_pairs(
    files: Sequence[tuple[str, Path]], scales: Sequence[int], group: str, input_space: str = "upscaled"
) -> list[StreamPair]:
    """Streamed pairs of (name, path) HR files at every scale, in ``sr_pairs``'s order."""
    check_input_space(input_space)
    out = []
    for name, path in files:
        size = image_size(path)
        out += [StreamPair(name, str(path), int(s), _modcrop(size, int(s)), group, input_space) for s in scales]
    return out


def tfds_pairs(
    sizes: Sequence[tuple[str, int, tuple[int, int]]], scales: Sequence[int], group: str, input_space: str = "upscaled"
) -> list[StreamPair]:
    """Streamed pairs of (name, index, HR size) dataset examples at every scale."""
    check_input_space(input_space)
    return [StreamPair(n, i, int(s), _modcrop(hw, int(s)), group, input_space) for n, i, hw in sizes for s in scales]


@dataclasses.dataclass(frozen=True)
class StreamingSampler(PatchSampler):
    """``PatchSampler`` over ``StreamPair`` s, decoding and degrading each patch on demand.

    Attributes (beyond ``PatchSampler``'s):
      read: key -> HR image (H, W, 3) uint8, the whole stored image; called from worker threads.
      workers: threads computing batches ahead.
      prefetch: batches computed ahead of the one asked for (0: none, all work in the caller).
    """

    read: Callable[[Any], np.ndarray] | None = None
    workers: int = 2
    prefetch: int = 4
    _state: dict = dataclasses.field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.pairs:
            raise ValueError("StreamingSampler needs at least one image")
        if self.read is None:
            raise ValueError("StreamingSampler needs a read function")
        small = [p.name for p in self.pairs if min(p.shape) < self.patch]
        if small:
            raise ValueError(f"data.patch={self.patch} is larger than image(s) {small[:5]}")
        self._check_ratios()
        self._state.update(local=threading.local(), futures={}, lock=threading.Lock(), pool=None)

    @property
    def peak(self) -> float:
        return 255.0  # the MATLAB-exact degradation is defined on uint8 images

    def _ratio(self, pair: Any) -> int:
        return pair.ratio

    def _image(self, pair: StreamPair) -> np.ndarray:
        """The HR image of ``pair`` (the last one this thread decoded is kept)."""
        local = self._state["local"]
        if getattr(local, "key", None) != pair.key:
            local.key, local.image = None, None  # release the previous image before decoding the next
            im = np.asarray(self.read(pair.key))
            if im.dtype != np.uint8:
                raise ValueError(f"{pair.key}: SR training degrades 8-bit images; this one is {im.dtype}")
            got = _modcrop(im.shape[:2], pair.scale)
            if got != tuple(pair.shape):
                raise ValueError(f"{pair.key}: decoded as {im.shape[1]}x{im.shape[0]}, but its header said "
                                 f"{pair.shape[1]}x{pair.shape[0]} (after cropping to the scale)")
            local.key, local.image = pair.key, im
        return local.image

    def _target(self, pair: Any, y: int, x: int) -> np.ndarray:
        return self._image(pair)[y : y + self.patch, x : x + self.patch]

    def _input(self, pair: Any, y: int, x: int) -> np.ndarray:
        p = plan(pair.shape, pair.scale, y, x, self.patch, lr_input=pair.input_space == "lr")
        (y0, y1), (x0, x1) = p.window
        return degrade_window(self._image(pair)[y0:y1, x0:x1], p)

    def _pool(self) -> ThreadPoolExecutor:
        st = self._state
        if st["pool"] is None:
            st["pool"] = ThreadPoolExecutor(max(1, int(self.workers)), thread_name_prefix="bppjax-data")
            weakref.finalize(self, _shutdown, st)
        return st["pool"]

    def batch_at(self, step: int) -> Batch:
        """Global batch number ``step`` (as ``PatchSampler.batch_at``); starts computing the next ``prefetch``."""
        return self.local_batch(step, 0, 1)

    def local_batch(self, step: int, process_index: int, process_count: int) -> Batch:
        """This host's share of batch ``step`` (as ``PatchSampler.local_batch``), computed ahead in the workers."""
        step, part = int(step), (int(process_index), int(process_count))
        if self.prefetch <= 0:
            return self._make(step, *part)
        st = self._state
        with st["lock"]:
            futures: dict[tuple[int, tuple[int, int]], Future] = st["futures"]
            wanted = {(k, part) for k in range(step, step + int(self.prefetch) + 1)}
            for key in [key for key in futures if key not in wanted]:
                futures.pop(key).cancel()
            pool = self._pool()
            for k in range(step, step + int(self.prefetch) + 1):
                if (k, part) not in futures:
                    futures[k, part] = pool.submit(self._make, k, *part)
            mine = futures.pop((step, part))
        return mine.result()

    def close(self) -> None:
        """Stop the workers (batches computed ahead are dropped); ``batch_at`` starts them again."""
        _shutdown(self._state)


def _shutdown(state: dict) -> None:
    with state["lock"]:
        for f in state["futures"].values():
            f.cancel()
        state["futures"].clear()
        pool, state["pool"] = state["pool"], None
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
