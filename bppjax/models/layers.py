"""Building blocks shared by BPP and the ResNet baseline.

Everything is NHWC. Kernels are stored in float32 and cast to the compute dtype
at use, so bfloat16 training keeps float32 master weights.

The stride-2 transposed convolution carries a custom VJP: XLA:CPU differentiates
``lhs_dilation`` convolutions very slowly (PERF_NOTES.md), so its gradients are
written as an ordinary stride-2 convolution (input gradient) and nine GEMMs
(weight gradient).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

_DN = ("NHWC", "HWIO", "NHWC")
IN_EPS = 1e-5


def conv2d(x: Array, kernel: Array, stride: int = 1) -> Array:
    """3x3 (or kxk) convolution with PyTorch-style symmetric 'same' padding k//2."""
    k = kernel.shape[0]
    pad = ((k // 2, k // 2), (k // 2, k // 2))
    return lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=_DN)


def _conv_up_impl(u: Array, kernel: Array) -> Array:
    # ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) written as a
    # conv over the zero-dilated input: output is exactly 2H x 2W.
    return lax.conv_general_dilated(
        u, kernel, (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2), dimension_numbers=_DN
    )


@jax.custom_vjp
def conv_up(u: Array, kernel: Array) -> Array:
    """Stride-2 3x3 transposed convolution (x2 upscale), kernel HWIO (3, 3, Cin, Cout)."""
    return _conv_up_impl(u, kernel)


def _conv_up_fwd(u: Array, kernel: Array):
    return _conv_up_impl(u, kernel), (u, kernel)


def _conv_up_bwd(res, g: Array):
    u, kernel = res
    # Along one axis: y[o] = sum_k D[o + k] K[k], D the input dilated by 2 and
    # padded (1, 2); so u[i] meets g[2i + 1 - k] through tap k.
    g_pad = jnp.pad(g, ((0, 0), (1, 0), (1, 0), (0, 0)))
    # Input gradient: du[i] = sum_m g[2i - 1 + m] K[2 - m]: a stride-2 conv.
    k_flip = jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2)
    du = lax.conv_general_dilated(g_pad, k_flip, (2, 2), "VALID", dimension_numbers=_DN)
    # Weight gradient: dK[k] = sum_i u[i] (x) g[2i + 1 - k]: one GEMM per tap.
    h, w = u.shape[1], u.shape[2]
    taps = []
    for ky in range(3):
        row = []
        for kx in range(3):
            gs = lax.slice(
                g_pad,
                (0, 2 - ky, 2 - kx, 0),
                (g.shape[0], 2 - ky + 2 * h - 1, 2 - kx + 2 * w - 1, g.shape[3]),
                (1, 2, 2, 1),
            )
            row.append(jnp.einsum("bhwi,bhwo->io", u, gs, preferred_element_type=jnp.float32))
        taps.append(jnp.stack(row))
    dk = jnp.stack(taps).astype(kernel.dtype)
    return du.astype(u.dtype), dk


conv_up.defvjp(_conv_up_fwd, _conv_up_bwd)


def instance_norm(x: Array, eps: float = IN_EPS) -> Array:
    """Per-sample, per-channel normalisation over H x W (biased variance, no affine)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.var(x32, axis=(1, 2), keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + eps)).astype(x.dtype)


class NormReLU(nn.Module):
    """``ReLU(IN(x))`` (or plain ReLU), with a LinearScope freezing switch.

    With ``freeze=True`` the non-linear decisions (IN mean/variance and the ReLU
    on/off mask) are treated as constants: they are read from the ``frozen``
    variable collection when present (replay), otherwise computed from ``x``
    under ``stop_gradient`` and stored there if the collection is mutable
    (record). The frozen map is affine in its input, which is exactly what
    LinearScope needs (``y = F x + r``).
    """

    instance_norm: bool = True
    freeze: bool = False
    eps: float = IN_EPS

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if not self.freeze:
            return nn.relu(instance_norm(x, self.eps) if self.instance_norm else x)
        x32 = x.astype(jnp.float32)
        if self.instance_norm:
            if self.has_variable("frozen", "mean"):
                mean = self.get_variable("frozen", "mean")
                inv_std = self.get_variable("frozen", "inv_std")
            else:
                mean = lax.stop_gradient(jnp.mean(x32, axis=(1, 2), keepdims=True))
                var = lax.stop_gradient(jnp.var(x32, axis=(1, 2), keepdims=True))
                inv_std = lax.rsqrt(var + self.eps)
                if self.is_mutable_collection("frozen"):
                    self.put_variable("frozen", "mean", mean)
                    self.put_variable("frozen", "inv_std", inv_std)
            x32 = (x32 - mean) * inv_std
        if self.has_variable("frozen", "mask"):
            mask = self.get_variable("frozen", "mask")
        else:
            mask = lax.stop_gradient((x32 > 0).astype(jnp.float32))
            if self.is_mutable_collection("frozen"):
                self.put_variable("frozen", "mask", mask)
        return (x32 * mask).astype(x.dtype)


def dirac_init(noise_std: float, transpose_center: bool = False) -> Initializer:
    """Identity ("Dirac") kernel plus Gaussian noise, for the network without IN.

    The centre tap maps input channel i to output channel i for i < min(Cin, Cout).
    """

    def init(key: Array, shape: tuple[int, ...], dtype: Dtype = jnp.float32) -> Array:
        kh, kw, cin, cout = shape
        eye = jnp.eye(cin, cout, dtype=dtype)
        k = jnp.zeros(shape, dtype).at[kh // 2, kw // 2].set(eye)
        return k + noise_std * jax.random.normal(key, shape, dtype)

    return init


class Conv(nn.Module):
    """Bias-free (optionally biased) kxk convolution, stride 1 or 2, pad k//2."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    use_bias: bool = False
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


class ConvUp(nn.Module):
    """Stride-2 3x3 transposed convolution (bias-free): H x W -> 2H x 2W."""

    features: int
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = self.param("kernel", self.kernel_init, (3, 3, x.shape[-1], self.features))
        return conv_up(x.astype(self.dtype), kernel.astype(self.dtype))
