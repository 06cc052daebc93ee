"""Single-resolution ResNet baseline (EDSR-style residual blocks, global residual).

The paper's central claim is that BPP beats a conventional ResNet of similar
size; ``width_for_params`` sizes this baseline to a given parameter count.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from bppjax.models.bpp import validate_input
from bppjax.models.layers import Conv, NormReLU

Array = jax.Array

#: ``remat`` values of the ResNet: "checkpoint" is ``jax.checkpoint`` per residual block. The
#: reversible sweep of BPP's ``remat: block`` does not apply: a residual block reads the state
#: it updates, so it cannot be run backwards from its output.
REMATS = ("none", "checkpoint")


class ResBlock(nn.Module):
    """conv -> ReLU -> conv, added back (EDSR: no batch norm, residual scaling)."""

    width: int
    res_scale: float = 1.0
    instance_norm: bool = False
    freeze: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        y = Conv(self.width, use_bias=True, dtype=self.dtype, name="conv1")(x)
        y = NormReLU(self.instance_norm, self.freeze, name="act")(y)
        y = Conv(self.width, use_bias=True, dtype=self.dtype, name="conv2")(y)
        self.sow("intermediates", "update_norms", jnp.sqrt(jnp.sum(jnp.square(y.astype(jnp.float32)), axis=(1, 2, 3))))
        return x + self.res_scale * y


class SingleResolution:
    """What the single-resolution baselines (``ResNet``, ``EDSR``) share: any input size, no per-level
    states, ReLU masks as their only decisions (LinearScope records and replays them)."""

    multiple = 1  # height and width need no padding
    min_size = 1
    can_replay_decisions = True

    def state_shapes(self, height: int, width: int, batch: int = 1) -> list[tuple[int, int, int, int]]:
        """A single-resolution network has no per-level states."""
        return []

    def frozen_twin(self):
        """The same network in LinearScope mode (decisions frozen); parameters are shared."""
        return self.clone(freeze=True)

    def check_residual_fields(self, arch: str) -> None:
        """Width, blocks and remat, with messages naming ``model.<arch>`` keys."""
        if self.width < 1 or self.blocks < 0:
            raise ValueError(f"model.{arch}.width must be >= 1 and model.{arch}.blocks >= 0; got {self.width}, {self.blocks}")
        if self.remat not in REMATS:
            raise ValueError(f"model.remat must be one of {REMATS} for model.arch={arch!r}; got {self.remat!r}")


class ResNet(SingleResolution, nn.Module):
    """Head conv (3 -> width), ``blocks`` residual blocks, tail conv (width -> 3), Y = X + tail."""

    width: int = 64
    blocks: int = 16
    res_scale: float = 1.0
    instance_norm: bool = False
    dtype: Any = jnp.float32
    #: One of ``REMATS``: "none", or "checkpoint" (``jax.checkpoint`` per residual block).
    remat: str = "none"
    freeze: bool = False

    def receptive_margin(self) -> int:
        """Radius (px) of an output pixel's input support: head, two 3x3 convs per block, tail."""
        return 2 * int(self.blocks) + 2

    def macs_per_pixel(self, channels: int = 3) -> float:
        """Multiply-accumulates per output pixel: head and tail 3x3 convs, two width x width convs per block."""
        w = int(self.width)
        return 9.0 * channels * w * 2 + int(self.blocks) * 2 * 9.0 * w * w

    def validate(self) -> None:
        """Check the hyper-parameters (the model's one validator; messages name the config key)."""
        self.check_residual_fields("resnet")

    @nn.compact
    def __call__(self, x: Array) -> Array:
        self.validate()
        validate_input(x)
        x = x.astype(jnp.float32)
        h = Conv(self.width, use_bias=True, dtype=self.dtype, name="head")(x.astype(self.dtype))
        block = nn.remat(ResBlock) if self.remat == "checkpoint" else ResBlock
        for i in range(self.blocks):
            h = block(self.width, self.res_scale, self.instance_norm, self.freeze, self.dtype, name=f"block_{i:02d}")(h)
        init = nn.initializers.variance_scaling(0.01, "fan_in", "truncated_normal")
        r = Conv(x.shape[-1], use_bias=True, dtype=self.dtype, kernel_init=init, name="tail")(h)
        return x + r.astype(jnp.float32)


def resnet_params(width: int, blocks: int, channels: int = 3) -> int:
    """Exact parameter count of ``ResNet(width, blocks)``."""
    head = 9 * channels * width + width
    body = blocks * 2 * (9 * width * width + width)
    tail = 9 * width * channels + channels
    return head + body + tail


def width_for_params(params: int, blocks: int, channels: int = 3) -> int:
    """Width whose ResNet with ``blocks`` blocks has the parameter count closest to ``params``."""
    a, b = 18 * blocks, 2 * blocks + 18 * channels + 1
    w = max(1, int((-b + math.sqrt(b * b + 4 * a * max(params - channels, 0))) / (2 * a))) if blocks else 1
    return min((w, w + 1), key=lambda c: abs(resnet_params(c, blocks, channels) - params))
