"""TensorFlow Datasets as a source (e.g. ``div2k/bicubic_x4``); needs ``pip install 'bppjax[tfds]'``.

``load_tfds`` reads the images once into memory as uint8 arrays. Datasets
with an LR key (DIV2K's ``lr``) give LR/HR pairs, the LR bicubic-upscaled to
the HR size here; HR-only datasets are degraded like a folder of HR images.
``open_source`` opens the random-access ``tfds.data_source`` instead, for the
streaming sampler, and keeps only the HR sizes.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _import_tfds() -> Any:
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415
    except ImportError as e:
        raise ImportError(
            "data source 'tfds' needs TensorFlow Datasets: pip install 'bppjax[tfds]' "
            "(tensorflow-datasets and tensorflow-cpu)"
        ) from e
    return tfds


def load_tfds(
    name: str, split: str, hr_key: str = "hr", lr_key: str = "", limit: int = 0, data_dir: str = "", key: str = "data"
) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
    """(name, HR uint8, LR uint8 or None) for each example of ``name``/``split``.

    Raises:
      ImportError: tensorflow-datasets is not installed.
      RuntimeError: the dataset could not be downloaded or prepared (the message says where it looked).
    """
    tfds = _import_tfds()
    if limit > 0:
        split = f"{split}[:{limit}]"
    try:
        ds = tfds.load(name, split=split, data_dir=data_dir or None, shuffle_files=False)
    except Exception as e:  # tfds raises many types for download / registry problems
        raise RuntimeError(
            f"{key}.tfds: could not load {name!r} split {split!r} ({type(e).__name__}: {e}). "
            "Check the name, your network connection, or download it beforehand and set "
            f"{key}.tfds_data_dir to the folder holding it."
        ) from e
    out = []
    for i, ex in enumerate(tfds.as_numpy(ds)):
        if hr_key not in ex:
            raise KeyError(f"{key}.tfds_hr_key={hr_key!r} is not a feature of {name}; features: {sorted(ex)}")
        hr = _rgb(ex[hr_key])
        lr = _rgb(ex[lr_key]) if lr_key else None
        out.append((f"{name}:{i:05d}", hr, lr))
    if not out:
        raise RuntimeError(f"{key}.tfds: {name!r} split {split!r} is empty")
    return out


def open_source(
    name: str, split: str, hr_key: str = "hr", limit: int = 0, data_dir: str = "", key: str = "data"
) -> tuple[Any, list[tuple[str, int, tuple[int, int]]]]:
    """The random-access data source of ``name``/``split`` and (name, index, HR (H, W)) of its first ``limit`` examples.

    Sizes are found by decoding each example once (nothing is kept). Needs the
    dataset in ArrayRecord format (``tfds.data_source``'s requirement).
    """
    tfds = _import_tfds()
    try:
        source = tfds.data_source(name, split=split, data_dir=data_dir or None)
    except Exception as e:  # noqa: BLE001 - as in load_tfds
        raise RuntimeError(
            f"{key}.tfds: could not open {name!r} split {split!r} for random access ({type(e).__name__}: {e}). "
            f"Streaming needs the dataset prepared in ArrayRecord format (tfds build {name} --file_format=array_record) "
            f"in {key}.tfds_data_dir, or set {key}.stream=False."
        ) from e
    n = len(source) if limit <= 0 else min(limit, len(source))
    if n == 0:
        raise RuntimeError(f"{key}.tfds: {name!r} split {split!r} is empty")
    sizes = []
    for i in range(n):
        ex = source[i]
        if hr_key not in ex:
            raise KeyError(f"{key}.tfds_hr_key={hr_key!r} is not a feature of {name}; features: {sorted(ex)}")
        sizes.append((f"{name}:{i:05d}", i, tuple(np.shape(ex[hr_key])[:2])))
    return source, sizes


def read_hr(source: Any, hr_key: str, index: int) -> np.ndarray:
    """HR image (H, W, 3) uint8 of example ``index`` of an ``open_source`` source."""
    return _rgb(source[int(index)][hr_key])


def _rgb(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3].astype(np.uint8))
