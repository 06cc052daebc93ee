"""A folder of images (HR photographs for SR, or one side of a paired dataset)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bppjax.image.io import list_image_files, read_image


def list_images(folder: str | Path, key: str = "data") -> list[Path]:
    """Image files directly in ``folder``, sorted by name; ``key`` names the config entry in errors."""
    return list_image_files(folder, key)


def read_uint(path: Path) -> np.ndarray:
    """HxWx3 image at its stored bit depth (uint8, or uint16 for 16-bit files such as HDR targets)."""
    im = read_image(path, dtype="native", channels=3)
    if im.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: floating-point images are not supported for training (dtype {im.dtype})")
    return im


def load_folder(folder: str | Path, limit: int = 0, key: str = "data") -> list[tuple[str, np.ndarray]]:
    """(file stem, HxWx3 array) for the images in ``folder`` (the first ``limit`` if > 0)."""
    files = list_images(folder, key)
    if limit > 0:
        files = files[:limit]
    return [(p.stem, read_uint(p)) for p in files]
