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


def conditioned_on_factor(model: Any) -> bool:
    """Whether a model must be told the SR factor it runs at (``at_factor``)."""
    return bool(getattr(model, "factor_conditioning", False))


def at_factor(model: Any, scale: Any) -> Any:
    """The model bound to the SR factor ``scale`` (a number or one per sample) if it is conditioned on it; else itself.

    ValueError for a conditioned model without a factor (``scale`` None).
    """
    if not conditioned_on_factor(model):
        return model
    if scale is None:
        raise ValueError("this model is conditioned on the SR factor (model.factor_conditioning=True): give the scale "
                         "it enhances at (--scale)")
    return model.clone(factor=scale)


__all__ = [
    "at_factor", "conditioned_on_factor",
    "BPP", "Analysis", "Downscale", "FluxBlock", "FluxUnit", "Scaler", "Synthesis", "Upscale",
    "ResNet", "EDSR", "INPUT_SPACES", "input_space", "output_scale", "width_for_params", "PRESETS", "build_model", "model_config", "preset", "validate_model_config",
]
