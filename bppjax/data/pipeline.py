"""From ``config.data`` to a training sampler and validation pairs.

A source block (``config.data.train`` / ``config.data.val``) has a ``source``:

* ``embedded``: scikit-image photographs listed in ``names`` (no download);
* ``folder``: HR images in each of ``dirs`` (one validation set per folder),
  degraded with the MATLAB bicubic at every ``data.scales`` entry;
* ``paired``: ``input_dir`` / ``target_dir`` matched by name (restoration tasks);
* ``tfds``: a TensorFlow Datasets name such as ``div2k/bicubic_x4``.

Images are read and degraded once into memory, unless the training block sets
``stream=True`` (``folder`` and HR-only ``tfds`` sources): then only their
sizes are read up front and every patch is decoded and degraded on demand in
``data.workers`` threads, with the same pixels (``bppjax.data.streaming``).
"""

from __future__ import annotations

import functools
import warnings
from pathlib import Path
from typing import Sequence

import ml_collections

from bppjax.data import embedded, folder, paired_folder, streaming, tfds_source
from bppjax.data.pairs import ImagePair, check_input_space, nbytes, paired as make_paired, sr_pairs
from bppjax.data.sampler import PatchSampler

SOURCES = ("embedded", "folder", "paired", "tfds")


def source_config(**overrides) -> ml_collections.ConfigDict:
    """A data source block with every field (unused ones stay empty)."""
    cfg = ml_collections.ConfigDict(
        dict(
            source="",  # embedded | folder | paired | tfds ("" : none, e.g. no validation)
            names=(),
            dirs=(),
            input_dir="",
            target_dir="",
            strip_suffixes=(),
            tfds="",
            tfds_split="train",
            tfds_hr_key="hr",
            tfds_lr_key="",
            tfds_data_dir="",
            limit=0,
            stream=False,  # training only: decode and degrade each patch on demand (sets larger than memory)
        )
    )
    cfg.update(overrides)
    return cfg


def check_source(src: ml_collections.ConfigDict, key: str) -> None:
    """Cheap checks (no image read): source kind, required fields, folders exist."""
    if src.source not in SOURCES:
        raise ValueError(f"{key}.source must be one of {SOURCES}; got {src.source!r}")
    if src.source == "embedded":
        if not src.names:
            raise ValueError(f"{key}.names is empty; list scikit-image photos, e.g. {embedded.TRAIN_NAMES[:3]}")
        unknown = [n for n in src.names if n not in embedded.NAMES]
        if unknown:
            raise ValueError(f"{key}.names has unknown embedded image(s) {unknown}; choose from {list(embedded.NAMES)}")
    elif src.source == "folder":
        if not src.dirs:
            raise ValueError(f"{key}.dirs is empty; give one or more folders of HR images")
        for d in src.dirs:
            if not Path(d).expanduser().is_dir():
                raise FileNotFoundError(f"{key}.dirs: data folder {d} does not exist")
    elif src.source == "paired":
        for field in ("input_dir", "target_dir"):
            d = src[field]
            if not d:
                raise ValueError(f"{key}.{field} is empty")
            if not Path(d).expanduser().is_dir():
                raise FileNotFoundError(f"{key}.{field}: data folder {d} does not exist")
    elif not src.tfds:
        raise ValueError(f"{key}.tfds is empty; give a dataset name such as 'div2k/bicubic_x4'")
    if src.get("stream", False):
        if src.source not in ("folder", "tfds"):
            raise ValueError(f"{key}.stream=True needs source 'folder' or 'tfds' (HR images degraded here); got {src.source!r}")
        if src.source == "tfds" and src.tfds_lr_key:
            raise ValueError(f"{key}.stream=True degrades the HR images itself; set {key}.tfds_lr_key='' "
                             "(streaming reads only the HR feature)")


def _paired_group(target_dir: str) -> str:
    """Set name of a paired folder, e.g. ``test_a_gt`` for ``.../test_a/gt``."""
    p = Path(target_dir).expanduser().absolute()
    return f"{p.parent.name}_{p.name}" if p.parent.name else p.name


def load_pairs(
    src: ml_collections.ConfigDict, scales: Sequence[int], key: str, workers: int = 1, max_gb: float = 0.0,
    input_space: str = "upscaled",
) -> list[ImagePair]:
    """Read and degrade the images of one source block.

    ``input_space`` is the model's (``bppjax.models.input_space``): ``"lr"``
    keeps the LR image as the input instead of its bicubic enlargement.
    """
    check_source(src, key)
    check_input_space(input_space)
    if src.source == "paired":
        return [
            make_paired(n, folder.read_uint(a), folder.read_uint(b), group=_paired_group(src.target_dir), source=str(a),
                        input_space=input_space)
            for n, a, b in paired_folder.match_pairs(src.input_dir, src.target_dir, tuple(src.strip_suffixes), key)[: src.limit or None]
        ]
    if not scales:
        raise ValueError(f"data.scales is empty but {key}.source={src.source!r} needs SR scales, e.g. (2,)")
    if src.source == "tfds":
        rows = tfds_source.load_tfds(src.tfds, src.tfds_split, src.tfds_hr_key, src.tfds_lr_key, src.limit, src.tfds_data_dir, key)
        if src.tfds_lr_key:
            group = src.tfds.split("/")[0]
            return [make_paired(n, lr, hr, group=group, source=f"{src.tfds}:{n}", input_space=input_space) for n, hr, lr in rows]
        groups = [(src.tfds.split("/")[0], [(n, hr) for n, hr, _ in rows])]
    elif src.source == "embedded":
        groups = [("embedded", embedded.load_embedded(tuple(src.names)))]
    else:
        groups = [(Path(d).name, folder.load_folder(d, src.limit, f"{key}.dirs")) for d in src.dirs]
    if max_gb > 0:
        need = sum(im.nbytes for _, ims in groups for _, im in ims) * (1 + len(scales)) / 2**30
        if need > max_gb:
            raise MemoryError(
                f"{key}: holding these images degraded at scales {tuple(scales)} needs ~{need:.1f} GiB "
                f"(> data.max_memory_gb={max_gb}); set {key}.limit or raise data.max_memory_gb"
            )
    out: list[ImagePair] = []
    for group, ims in groups:
        out += sr_pairs(ims, [int(s) for s in scales], group, workers, input_space)
    return out


def stream_pairs(src: ml_collections.ConfigDict, scales: Sequence[int], key: str, input_space: str = "upscaled"):
    """(``StreamPair`` s, read function) of a ``folder`` or HR-only ``tfds`` block: sizes only, no pixels held."""
    check_source(src, key)
    if not scales:
        raise ValueError(f"data.scales is empty but {key}.stream=True needs SR scales, e.g. (4,)")
    scales = [int(s) for s in scales]
    if src.source == "tfds":
        source, sizes = tfds_source.open_source(src.tfds, src.tfds_split, src.tfds_hr_key, src.limit, src.tfds_data_dir, key)
        pairs = streaming.tfds_pairs(sizes, scales, src.tfds.split("/")[0], input_space)
        return pairs, functools.partial(tfds_source.read_hr, source, src.tfds_hr_key)
    if src.source != "folder":
        raise ValueError(f"{key}.stream=True needs source 'folder' or 'tfds'; got {src.source!r}")
    pairs = []
    for d in src.dirs:
        files = streaming.list_stream_files(d, f"{key}.dirs")[: src.limit or None]
        pairs += streaming.folder_pairs([(p.stem, p) for p in files], scales, Path(d).name, input_space)
    return pairs, streaming.read_stream_file


def build_sampler(data: ml_collections.ConfigDict, seed: int, input_space: str = "upscaled", with_factor: bool = False) -> PatchSampler:
    """Training sampler of ``config.data``: images read and degraded once, here, or streamed (``data.train.stream``).

    ``input_space`` is the model's (``bppjax.models.input_space``); ``with_factor``:
    batches carry each patch's SR factor (a model conditioned on it,
    ``bppjax.models.conditioned_on_factor``).
    """
    stream = bool(data.train.get("stream", False))
    if stream:
        pairs, read = stream_pairs(data.train, tuple(data.scales), "data.train", input_space)
    else:
        pairs = load_pairs(data.train, tuple(data.scales), "data.train", int(data.workers), float(data.max_memory_gb), input_space)
    small = [f"{p.name} ({p.shape[1]}x{p.shape[0]})" for p in pairs if min(p.shape) < int(data.patch)]
    if small:
        if len(small) == len(pairs):
            raise ValueError(f"data.patch={data.patch} is larger than every training image, e.g. {small[:3]}")
        warnings.warn(f"data.patch={data.patch}: skipping {len(small)} training image(s) smaller than a patch: {small[:5]}", stacklevel=2)
        pairs = [p for p in pairs if min(p.shape) >= int(data.patch)]
    common = dict(
        pairs=tuple(pairs),
        patch=int(data.patch),
        batch=int(data.batch),
        seed=int(seed),
        augment=bool(data.augment),
        align=bool(data.align_crops),
        min_std=float(data.min_std),
        with_factor=bool(with_factor),
    )
    if stream:
        workers = int(data.workers)
        return streaming.StreamingSampler(**common, read=read, workers=workers, prefetch=2 * workers)
    return PatchSampler(**common)


def build_val(data: ml_collections.ConfigDict, input_space: str = "upscaled") -> list[ImagePair]:
    """Validation pairs (full images, in memory) of ``config.data.val``; [] if ``data.val.source`` is empty."""
    if not data.val.source:
        return []
    return load_pairs(data.val, tuple(data.scales), "data.val", int(data.workers), input_space=input_space)


def describe(pairs: Sequence[ImagePair | streaming.StreamPair]) -> str:
    """One line: how many pairs, their sizes and memory (or that they are streamed)."""
    if not pairs:
        return "no images"
    areas = [p.shape[0] * p.shape[1] for p in pairs]
    if isinstance(pairs[0], streaming.StreamPair):
        return f"{len(pairs)} pairs, {min(areas) / 1e6:.2f}-{max(areas) / 1e6:.2f} MPix, streamed (read and degraded per patch)"
    return f"{len(pairs)} pairs, {min(areas) / 1e6:.2f}-{max(areas) / 1e6:.2f} MPix, {nbytes(pairs) / 2**20:.0f} MiB in memory"


__all__ = ["SOURCES", "build_sampler", "build_val", "check_source", "describe", "load_pairs", "source_config", "stream_pairs"]
