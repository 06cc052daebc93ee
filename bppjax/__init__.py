"""bppjax: the Back-Projection Pipeline (BPP) in JAX/Flax.

Curated API::

    import bppjax
    cfg = bppjax.preset("paper")              # or "small", "tiny", "resnet_small", ...
    model = bppjax.build_model(cfg)            # a Flax module: model.init / model.apply
    m = bppjax.pretrained("bpp-sr-x2")         # a shipped model (bppjax.pretrained() lists them)
    m = bppjax.load_model("runs/default")      # a trained workdir: .model, .params, .config
    y = bppjax.enhance_image(image, m.model, m.params, scale=2)   # bppjax.inference.enhance
    scores = bppjax.evaluate_method(m.enhance, ["Set5"], [2])     # bppjax.evaluation.evaluate

Everything else lives in subpackages: ``bppjax.image`` (I/O, MATLAB bicubic,
degradations), ``bppjax.metrics``, ``bppjax.training``, ``bppjax.tiling``,
``bppjax.analysis`` and ``bppjax.models.ode``.
"""

import importlib
from typing import Any

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

__version__ = "0.1.0"

#: The rest of the public API, imported on first use: Orbax, optax, diffrax and
#: the file tools cost seconds that ``import bppjax`` should not.
_LAZY = {
    "LoadedModel": "bppjax.workdir", "load_model": "bppjax.workdir", "save_model": "bppjax.workdir",
    "pretrained": "bppjax.zoo",
    "export_model": "bppjax.export",
    "train_and_evaluate": "bppjax.training.loop", "default_config": "bppjax.training.config",
    "load_config_file": "bppjax.training.config",
    "BPPODE": "bppjax.models.ode",
    "read_image": "bppjax.image.io", "read_photo": "bppjax.image.io", "write_image": "bppjax.image.io",
    "imresize": "bppjax.image.resize", "sr_input": "bppjax.image.degrade",
    "psnr": "bppjax.metrics", "ssim": "bppjax.metrics",
    "enhance_image": ("bppjax.inference", "enhance"), "enhance_files": "bppjax.files", "tiled_inference": "bppjax.tiling",
    "evaluate_method": ("bppjax.evaluation", "evaluate"), "self_ensemble": "bppjax.evaluation",
    "summarize": "bppjax.models.summary", "count_params": "bppjax.models.summary",
    "update_norms": "bppjax.analysis.update_norms", "mean_update_norms": "bppjax.analysis.update_norms",
    "decompose": "bppjax.analysis.linearscope", "filters": "bppjax.analysis.linearscope",
    "frozen_twin": "bppjax.analysis.linearscope",
    "plot_update_norms": "bppjax.analysis.plots", "plot_linearscope": "bppjax.analysis.plots", "plot_filters": "bppjax.analysis.plots",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module, attr = _LAZY[name] if isinstance(_LAZY[name], tuple) else (_LAZY[name], name)
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value  # later lookups skip this hook
        return value
    raise AttributeError(f"module 'bppjax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BPP", "PRESETS", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "ResNet", "Scaler", "Synthesis", "Upscale",
    "build_model", "model_config", "preset", *_LAZY,
]
