"""Networks: BPP (paper terms), the ResNet baseline, presets and ``build_model``."""

from bppjax.models.bpp import BPP, Analysis, Downscale, FluxBlock, FluxUnit, Scaler, Synthesis, Upscale
from bppjax.models.presets import PRESETS, build_model, model_config, preset, validate_model_config
from bppjax.models.resnet import ResNet, width_for_params

__all__ = [
    "BPP", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "Scaler", "Synthesis", "Upscale",
    "ResNet", "width_for_params", "PRESETS", "build_model", "model_config", "preset", "validate_model_config",
]
