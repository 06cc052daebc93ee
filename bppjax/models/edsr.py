"""EDSR: the residual network of Lim et al. (2017), working on the low-resolution image.

The paper's Fig. 8 and Table 3 compare BPP with EDSR. Unlike BPP and the
HR-space ``ResNet`` baseline, EDSR never sees the bicubic-upscaled image: its
head, residual blocks and body convolution run at the low resolution, and a
pixel-shuffle upsampler (sub-pixel convolution) per factor brings the features
to the output size, where a tail convolution maps them to RGB. At equal
parameters it therefore costs about 1/s^2 of the HR-space ResNet per output
pixel. As in this package's other networks, the result is a residual on the
MATLAB-bicubic upscaling of the input (``imresize_jax``, differentiable), so
an untrained EDSR starts at bicubic.

Layout (width w, B blocks, factor s)::

    LR -> head conv(3 -> w) -> B x ResBlock(w) -> body conv(w -> w) (+ head)
       -> upsampler: s = 2, 3: conv(w -> s^2 w), shuffle(s);  s = 4: two x2 stages
       -> tail conv(w -> 3)   (+ bicubic(LR, s))

The model states its input with ``input_space = "lr"``: callers hand it the
low-resolution image and get an image ``scale`` times larger.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bppjax.image.resize import imresize_jax
from bppjax.models.bpp import validate_input
from bppjax.models.layers import Conv
from bppjax.models.resnet import ResBlock, SingleResolution

Array = jax.Array

#: Factors with a pixel-shuffle upsampler (EDSR's: one x2 or x3 stage, two x2 stages for x4).
SCALES = (2, 3, 4)


def upsampler_stages(scale: int) -> tuple[int, ...]:
    """Pixel-shuffle factors of EDSR's upsampler for ``scale``."""
    if scale not in SCALES:
        raise ValueError(f"model.edsr.scale must be one of {SCALES}; got {scale!r}")
    return (2, 2) if scale == 4 else (scale,)


def pixel_shuffle(x: Array, r: int) -> Array:
    """(B, H, W, r*r*C) -> (B, r*H, r*W, C): channel (i*r + j)*C + c goes to sub-pixel (i, j)."""
    b, h, w, c = x.shape
    out = c // (r * r)
    x = x.reshape(b, h, w, r, r, out)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h * r, w * r, out)


class EDSR(SingleResolution, nn.Module):
    """EDSR without batch norm: LR-space residual blocks, pixel-shuffle upsampler, bicubic global skip."""

    width: int = 64
    blocks: int = 16
    scale: int = 2
    res_scale: float = 1.0
    dtype: Any = jnp.float32
    #: One of ``REMATS``: "none", or "checkpoint" (``jax.checkpoint`` per residual block).
    remat: str = "none"
    freeze: bool = False

    #: The model takes the low-resolution image; its output is ``scale`` times larger.
    input_space = "lr"

    def receptive_margin(self) -> int:
        """Radius in LR pixels of an output pixel's input support.

        Head, two 3x3 convolutions per block, the body conv and the first
        upsampler conv run in LR pixels; later convolutions (the second x2
        stage, the tail) cover at most one more LR pixel; the bicubic skip
        reads 2 LR pixels either side.
        """
        return 1 + 2 * int(self.blocks) + 1 + 1 + 1 + 2

    def macs_per_pixel(self, channels: int = 3) -> float:
        """Multiply-accumulates per output (HR) pixel, convolutions only."""
        w, s = int(self.width), int(self.scale)
        lr = 9.0 * channels * w + int(self.blocks) * 2 * 9.0 * w * w + 9.0 * w * w  # head, blocks, body conv
        at, ups = 1, 0.0  # MACs of the upsampler per LR pixel
        for r in upsampler_stages(s):
            ups += at * at * 9.0 * w * (r * r * w)
            at *= r
        return (lr + ups) / (s * s) + 9.0 * w * channels

    def validate(self) -> None:
        """Check the hyper-parameters (the model's one validator; messages name the config key)."""
        self.check_residual_fields("edsr")
        upsampler_stages(int(self.scale))

    @nn.compact
    def __call__(self, x: Array) -> Array:
        self.validate()
        stages = upsampler_stages(int(self.scale))
        validate_input(x)
        x = x.astype(jnp.float32)
        head = Conv(self.width, use_bias=True, dtype=self.dtype, name="head")(x.astype(self.dtype))
        h = head
        block = nn.remat(ResBlock) if self.remat == "checkpoint" else ResBlock
        for i in range(self.blocks):
            h = block(self.width, self.res_scale, False, self.freeze, self.dtype, name=f"block_{i:02d}")(h)
        h = head + Conv(self.width, use_bias=True, dtype=self.dtype, name="body")(h)
        for k, r in enumerate(stages):
            h = pixel_shuffle(Conv(r * r * self.width, use_bias=True, dtype=self.dtype, name=f"upsample_{k}")(h), r)
        init = nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal")
        residual = Conv(x.shape[-1], use_bias=True, dtype=self.dtype, kernel_init=init, name="tail")(h)
        base = imresize_jax(x, float(self.scale))
        return base + residual.astype(jnp.float32)


def edsr_params(width: int, blocks: int, scale: int, channels: int = 3) -> int:
    """Exact parameter count of ``EDSR(width, blocks, scale)``."""
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    ups = sum(conv(width, r * r * width) for r in upsampler_stages(scale))
    return conv(channels, width) + blocks * 2 * conv(width, width) + conv(width, width) + ups + conv(width, channels)


def edsr_width_for_params(params: int, blocks: int, scale: int, channels: int = 3) -> int:
    """Width whose EDSR with ``blocks`` blocks at ``scale`` has the parameter count closest to ``params``."""
    # edsr_params is a quadratic a w^2 + b w + c in the width.
    a = 18 * blocks + 9 + 9 * sum(r * r for r in upsampler_stages(scale))
    b = 2 * blocks + 1 + sum(r * r for r in upsampler_stages(scale)) + 18 * channels + 1
    w = max(1, int((-b + math.sqrt(b * b + 4 * a * max(params - channels, 0))) / (2 * a)))
    return min((w, w + 1), key=lambda c: abs(edsr_params(c, blocks, scale, channels) - params))
