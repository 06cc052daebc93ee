"""TensorFlow Datasets as a source (e.g. ``div2k/bicubic_x4``); needs ``pip install 'bppjax[tfds]'``.

Images are read once into memory as uint8 arrays. Datasets with an LR key
(DIV2K's ``lr``) give LR/HR pairs, the LR bicubic-upscaled to the HR size
here; HR-only datasets are degraded like a folder of HR images.
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


def _rgb(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 2:
        x = x[..., None]
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x[..., :3].astype(np.uint8))
