"""bppjax: the Back-Projection Pipeline (BPP) in JAX/Flax.

Curated API::

    import bppjax
    cfg = bppjax.preset("paper")              # or "small", "tiny", "resnet_small", ...
    model = bppjax.build_model(cfg)            # a Flax module: model.init / model.apply
    m = bppjax.pretrained("bpp-sr-x2")         # a shipped model (bppjax.pretrained() lists them)
    m = bppjax.load_model("runs/default")      # a trained workdir: .model, .params, .config
    y = bppjax.enhance_image(image, m.model, m.params, scale=2)   # bppjax.inference.enhance

Everything else lives in subpackages: ``bppjax.image`` (I/O, MATLAB bicubic,
degradations), ``bppjax.metrics``, ``bppjax.training``, ``bppjax.tiling``,
``bppjax.analysis`` and ``bppjax.models.ode``.
"""

import importlib
from typing import Any

from bppjax.workdir import LoadedModel, load_model, save_model
from bppjax.models import (
    BPP,
    PRESETS,
    Analysis,
    Downscale,
    FluxBlock,
    FluxUnit,
    ResNet,
    Scaler,
    Synthesis,
    Upscale,
    build_model,
    model_config,
    preset,
)
from bppjax.training import train_and_evaluate
from bppjax.zoo import pretrained

__version__ = "0.1.0"


#: Names loaded on first use (tiling and file handling import more than a notebook may need).
_LAZY = {"enhance_image": ("bppjax.inference", "enhance"), "enhance_files": ("bppjax.inference", "enhance_files")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'bppjax' has no attribute {name!r}")


__all__ = [
    "BPP", "PRESETS", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "LoadedModel", "ResNet", "Scaler",
    "Synthesis", "Upscale", "build_model", "enhance_files", "enhance_image", "load_model", "model_config", "preset", "pretrained", "save_model",
    "train_and_evaluate",
]
