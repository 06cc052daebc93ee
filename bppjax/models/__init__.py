"""Networks: BPP (paper terms), the ResNet baseline, presets and ``build_model``."""

from typing import Any

from bppjax.models.bpp import BPP, Analysis, Downscale, FluxBlock, FluxUnit, Scaler, Synthesis, Upscale
from bppjax.models.presets import PRESETS, build_model, model_config, preset, validate_model_config
from bppjax.models.edsr import EDSR
from bppjax.models.resnet import ResNet, width_for_params

#: What a model takes: the MATLAB-bicubic-upscaled image (output of the same size) or the LR image.
INPUT_SPACES = ("upscaled", "lr")


def input_space(model: Any) -> str:
    """The input a model takes: ``"lr"`` (output ``model.scale`` times larger) or ``"upscaled"`` (the default)."""
    return getattr(model, "input_space", "upscaled")


def output_scale(model: Any) -> int:
    """How many times larger than its input a model's output is (1 for upscaled-input models)."""
    return int(model.scale) if input_space(model) == "lr" else 1


__all__ = [
    "BPP", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "Scaler", "Synthesis", "Upscale",
    "ResNet", "EDSR", "INPUT_SPACES", "input_space", "output_scale", "width_for_params", "PRESETS", "build_model", "model_config", "preset", "validate_model_config",
]
