"""bppjax: the Back-Projection Pipeline (BPP) in JAX/Flax.

Curated API::

    import bppjax
    cfg = bppjax.preset("paper")          # or "small", "tiny", "resnet_small", ...
    model = bppjax.build_model(cfg)        # a Flax module: model.init / model.apply
"""

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

__all__ = [
    "BPP", "PRESETS", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "ResNet", "Scaler",
    "Synthesis", "Upscale", "build_model", "model_config", "preset",
]
