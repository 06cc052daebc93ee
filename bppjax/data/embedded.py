"""Colour photographs that ship inside scikit-image: training data with no download.

These files are part of the scikit-image wheel (``skimage.data.data_dir``), so
the default config trains anywhere, offline, without ``../shared``.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

#: Name -> loader of an RGB uint8 photograph bundled with scikit-image.
def _loaders() -> dict[str, Callable[[], np.ndarray]]:
    import skimage.data as d

    return {
        "astronaut": d.astronaut,
        "coffee": d.coffee,
        "chelsea": d.chelsea,
        "rocket": d.rocket,
        "hubble_deep_field": d.hubble_deep_field,
        "retina": d.retina,
        "immunohistochemistry": d.immunohistochemistry,
        "motorcycle_left": lambda: d.stereo_motorcycle()[0],
        "motorcycle_right": lambda: d.stereo_motorcycle()[1],
        "colorwheel": d.colorwheel,
    }


#: The photographs used for training by default (8 images).
TRAIN_NAMES = (
    "astronaut", "coffee", "hubble_deep_field", "retina", "immunohistochemistry",
    "motorcycle_left", "motorcycle_right", "colorwheel",
)
#: Held out for validation.
VAL_NAMES = ("chelsea", "rocket")
NAMES = tuple(sorted(set(TRAIN_NAMES) | set(VAL_NAMES)))


def load_embedded(names: tuple[str, ...] | list[str]) -> list[tuple[str, np.ndarray]]:
    """(name, HxWx3 uint8) for each named scikit-image photograph."""
    loaders = _loaders()
    unknown = [n for n in names if n not in loaders]
    if unknown:
        raise ValueError(f"unknown embedded image(s) {unknown}; choose from {sorted(loaders)}")
    out = []
    for n in names:
        im = np.asarray(loaders[n]())
        if im.ndim == 2:
            im = np.repeat(im[..., None], 3, axis=-1)
        out.append((n, np.ascontiguousarray(im[..., :3].astype(np.uint8))))
    return out
