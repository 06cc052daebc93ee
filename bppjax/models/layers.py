"""Building blocks shared by BPP and the ResNet baseline.

Everything is NHWC. Kernels are stored in float32 and cast to the compute dtype
at use, so bfloat16 training keeps float32 master weights.

Two operations have a CPU formulation with a hand-written VJP, both for speed
on XLA:CPU (measurements in ``docs/PERFORMANCE.md``):

* ``conv_up``, the stride-2 3x3 transposed convolution: XLA:CPU differentiates
  ``lhs_dilation`` convolutions very slowly (docs/PERFORMANCE.md), so the input
  gradient is an ordinary stride-2 convolution and the weight gradient nine
  GEMMs. Its forward pass is chosen by width: four stride-1 convolutions on the
  low-resolution grid (one per output phase, no multiplications by the zeros
  of the dilated input) for narrow outputs, the dilated convolution otherwise.
* ``norm_relu_conv_up``, the whole upscale ``conv_up(ReLU(IN(concat(parts))))``:
  instance-norm statistics are taken per part, the concatenation is fused into
  the normalisation, and the backward pass is written out by hand. Autodiff of
  the unfused chain spends more time moving memory than multiplying.

Convolutions take ``impl`` (``auto``, ``xla``, ``gemm``, ``loop``): under ``auto``
bfloat16 convolutions on CPU run as GEMMs (``bppjax/models/gemm_conv.py``), since
XLA:CPU has no bfloat16 convolution kernel but runs bfloat16 GEMMs on the CPU's
matrix units; everything else is a ``lax`` convolution. ``loop`` is ``auto`` with
a hand-written VJP on CPU, for convolutions inside a loop body (the ODE's
``lax.scan`` and diffrax's while loops): there XLA:CPU leaves JAX's gradient
convolutions in a non-canonical layout and runs them several times slower
(docs/ODE.md), while the hand-written one is a canonical convolution (input
gradient) and nine GEMMs (weight gradient).

The CPU formulations are selected per lowering platform (``bppjax.models.backend``):
a program lowered for any other platform runs the plain ops (the dilated
``lax`` convolution and the unfused chain, differentiated by JAX), where no
formulation was measured. ``impl="gemm"`` asks for the GEMM formulation on
every platform.

All backward passes are linear in the cotangent (``jax.linear_transpose``
works on them, which LinearScope relies on).
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from bppjax.models import gemm_conv
from bppjax.models.backend import on_cpu

Array = jax.Array
Dtype = Any
Initializer = Callable[..., Array]

_DN = ("NHWC", "HWIO", "NHWC")
IN_EPS = 1e-5
#: Below this many output channels ``conv_up`` on CPU uses the phase decomposition (measured on 2-core CPUs).
PHASES_BELOW_CHANNELS = 64


# --------------------------------------------------------------------------- convolution implementation

CONV_IMPLS = ("auto", "xla", "gemm", "loop")
#: Convolutions with fewer input or output channels stay ``lax`` convolutions on every path (an
#: im2col of 3 channels, or a GEMM to 3 outputs, runs far below a direct convolution).
GEMM_MIN_CHANNELS = 16


def _check_impl(impl: str) -> None:
    if impl not in CONV_IMPLS:
        raise ValueError(f"conv impl must be one of {CONV_IMPLS}; got {impl!r}")


def _gemm_shaped(kernel: Array) -> bool:
    """Whether a GEMM formulation applies: a 3x3 kernel with at least ``GEMM_MIN_CHANNELS`` channels on both sides."""
    kh, kw, cin, cout = kernel.shape
    return (kh, kw) == (3, 3) and min(cin, cout) >= GEMM_MIN_CHANNELS


def _lax_conv(x: Array, kernel: Array, stride: int) -> Array:
    k = kernel.shape[0]
    pad = ((k // 2, k // 2), (k // 2, k // 2))
    return lax.conv_general_dilated(x, kernel, (stride, stride), pad, dimension_numbers=_DN)


def _conv2d_grads(x: Array, kernel: Array, stride: int, g: Array) -> tuple[Array, Array]:
    """(dx, dkernel) of ``_lax_conv(x, kernel, stride)`` for the output cotangent ``g``, in canonical NHWC/HWIO form.

    Per axis y[o] = sum_j x[s o + j - p] K[j] (p = k // 2), so
    dx = g dilated by s, correlated with the flipped kernel (one ``lhs_dilation``
    convolution, kernel already in HWIO), and dK[j] = sum_o x[s o + j - p] (x) g[o]:
    one GEMM per tap over strided slices of the padded input.
    """
    k, p, s = kernel.shape[0], kernel.shape[0] // 2, stride
    (h, w), (ho, wo) = x.shape[1:3], g.shape[1:3]
    pad = ((k - 1 - p, h + p - s * (ho - 1) - 1), (k - 1 - p, w + p - s * (wo - 1) - 1))
    dx = lax.conv_general_dilated(g.astype(x.dtype), gemm_conv.flip_io(kernel), (1, 1), pad, lhs_dilation=(s, s),
                                  dimension_numbers=_DN)
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))
    taps = [[jnp.einsum("bhwi,bhwo->io",
                        lax.slice(xp, (0, a, b, 0), (x.shape[0], a + s * (ho - 1) + 1, b + s * (wo - 1) + 1, x.shape[3]),
                                  (1, s, s, 1)),
                        g, preferred_element_type=jnp.float32) for b in range(k)] for a in range(k)]
    return dx, jnp.stack([jnp.stack(row) for row in taps]).astype(kernel.dtype)


def _hand_vjp(forward: Callable[[Array, Array, Any], Array], grads: Callable[..., tuple[Array, Array]]):
    """``forward(x, kernel, static)`` with the VJP ``grads(x, kernel, static, g) -> (dx, dkernel)`` (``static``
    is not differentiated)."""
    f = jax.custom_vjp(forward, nondiff_argnums=(2,))
    f.defvjp(lambda x, k, static: (forward(x, k, static), (x, k)), lambda static, res, g: grads(*res, static, g))
    return f


#: ``_lax_conv`` with the hand-written VJP ``_conv2d_grads`` (``impl="loop"`` on CPU).
_conv2d_loop = _hand_vjp(_lax_conv, _conv2d_grads)


def conv2d(x: Array, kernel: Array, stride: int = 1, impl: str = "auto") -> Array:
    """3x3 (or kxk) convolution with PyTorch-style symmetric 'same' padding k//2.

    ``impl``: ``auto`` runs bfloat16 convolutions as GEMMs (``gemm_conv``) on CPU
    (XLA:CPU has no bfloat16 convolution kernel and converts them to float32
    ones, while it runs bfloat16 GEMMs on the CPU's matrix units) and everything
    else as a ``lax`` convolution; ``xla``: never GEMMs; ``gemm``: GEMMs in every
    dtype, on every platform. Either way only 3x3 kernels with at least
    ``GEMM_MIN_CHANNELS`` channels on both sides become GEMMs. ``loop``: as
    ``auto``, but a ``lax`` convolution gets the hand-written VJP
    ``_conv2d_grads`` on CPU (for convolutions inside a loop body; module docstring).
    """
    _check_impl(impl)
    if impl == "loop" and not (x.dtype == jnp.bfloat16 and _gemm_shaped(kernel)):
        return on_cpu(lambda a, k: _conv2d_loop(a, k, stride), lambda a, k: _lax_conv(a, k, stride), x, kernel)
    if impl == "xla" or not _gemm_shaped(kernel):
        return _lax_conv(x, kernel, stride)
    if impl == "gemm":
        return gemm_conv.conv2d(x, kernel, stride)
    if x.dtype != jnp.bfloat16:
        return _lax_conv(x, kernel, stride)
    return on_cpu(lambda a, k: gemm_conv.conv2d(a, k, stride), lambda a, k: _lax_conv(a, k, stride), x, kernel)


# --------------------------------------------------------------------------- transposed convolution


def conv_up_dilated(u: Array, kernel: Array) -> Array:
    """ConvTranspose2d(k=3, stride=2, padding=1, output_padding=1) as a conv over the zero-dilated input.

    This is the definition of ``kernel``'s layout: output ``y[o] = sum_j D[o + j] kernel[j]``
    per axis, ``D`` the input dilated by 2 and padded (1, 2). Output is exactly 2H x 2W.
    """
    return lax.conv_general_dilated(u, kernel, (1, 1), ((1, 2), (1, 2)), lhs_dilation=(2, 2), dimension_numbers=_DN)


def conv_up_phases(u: Array, kernel: Array) -> Array:
    """The same map as ``conv_up_dilated`` as four stride-1 convolutions on the input grid.

    Per axis, even outputs ``y[2m]`` see ``u[m]`` through tap 1, odd outputs
    ``y[2m+1]`` see ``u[m]`` and ``u[m+1]`` through taps 0 and 2. So each of the
    four output phases is a 1x1, 1x2, 2x1 or 2x2 convolution, and the results
    are interleaved: 9 multiply-adds per input pixel and channel pair, as in a
    transposed convolution that skips the zeros.
    """
    b, h, w, _ = u.shape
    conv = lambda k, pad: lax.conv_general_dilated(u, k, (1, 1), pad, dimension_numbers=_DN)  # noqa: E731
    ee = conv(kernel[1:2, 1:2], ((0, 0), (0, 0)))
    eo = conv(kernel[1:2, 0::2], ((0, 0), (0, 1)))
    oe = conv(kernel[0::2, 1:2], ((0, 1), (0, 0)))
    oo = conv(kernel[0::2, 0::2], ((0, 1), (0, 1)))
    y = jnp.stack([jnp.stack([ee, eo], 3), jnp.stack([oe, oo], 3)], 2)  # b, h, 2, w, 2, c
    return y.reshape(b, 2 * h, 2 * w, kernel.shape[-1])


def _cpu_gemm(x: Array, kernel: Array, impl: str) -> bool:
    """Whether the CPU formulation of ``conv_up`` runs this convolution as GEMMs (``conv2d``'s rule for ``impl``)."""
    return impl != "xla" and _gemm_shaped(kernel) and (impl == "gemm" or x.dtype == jnp.bfloat16)


def _conv_up_forward(u: Array, kernel: Array, impl: str = "auto") -> Array:
    if _cpu_gemm(u, kernel, impl):
        return gemm_conv.conv_up_forward(u, kernel)
    # Narrow outputs (the top level's 48 channels) waste most of a dilated conv's
    # work on XLA:CPU; wide ones run faster through its transposed-conv kernel.
    if kernel.shape[-1] < PHASES_BELOW_CHANNELS:
        return conv_up_phases(u, kernel)
    return conv_up_dilated(u, kernel)


def _conv_up_grads(u: Array, kernel: Array, g: Array, impl: str = "auto") -> tuple[Array, Array]:
    """(du, dkernel) of ``conv_up`` at ``(u, kernel)`` for the output cotangent ``g``."""
    # Per axis u[i] meets g[2i + 1 - k] through tap k.
    g_pad = jnp.pad(g, ((0, 0), (1, 0), (1, 0), (0, 0)))
    # Input gradient: du[i] = sum_m g[2i - 1 + m] K[2 - m]: a stride-2 conv.
    if _cpu_gemm(u, kernel, impl):
        du = gemm_conv.conv_up_input_grad(g.astype(u.dtype), kernel)
    else:
        du = lax.conv_general_dilated(g_pad, gemm_conv.flip_io(kernel), (2, 2), "VALID", dimension_numbers=_DN)
    # Weight gradient: dK[k] = sum_i u[i] (x) g[2i + 1 - k]: one GEMM per tap
    # (measured as fast as one GEMM on the nine taps concatenated, and leaner).
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
    return du.astype(u.dtype), jnp.stack(taps).astype(kernel.dtype)


#: ``conv_up``'s CPU formulation: forward by width (phases or dilated), hand-written VJP.
_conv_up_cpu = _hand_vjp(_conv_up_forward, lambda u, kernel, impl, g: _conv_up_grads(u, kernel, g, impl))


def conv_up(u: Array, kernel: Array, impl: str = "auto") -> Array:
    """Stride-2 3x3 transposed convolution (x2 upscale), kernel HWIO (3, 3, Cin, Cout).

    On CPU the tuned formulation (module docstring; ``impl`` as for ``conv2d``),
    elsewhere ``conv_up_dilated`` differentiated by JAX; ``impl="gemm"`` runs the
    GEMM formulation on every platform.
    """
    _check_impl(impl)
    if impl == "gemm":
        return _conv_up_cpu(u, kernel, impl)
    return on_cpu(lambda a, k: _conv_up_cpu(a, k, impl), conv_up_dilated, u, kernel)


# --------------------------------------------------------------------------- instance norm


def instance_norm(x: Array, eps: float = IN_EPS) -> Array:
    """Per-sample, per-channel normalisation over H x W (biased variance, no affine)."""
    x32 = x.astype(jnp.float32)
    mean = jnp.mean(x32, axis=(1, 2), keepdims=True)
    var = jnp.var(x32, axis=(1, 2), keepdims=True)
    return ((x32 - mean) * lax.rsqrt(var + eps)).astype(x.dtype)


def _stats_dtype(x: Array) -> Dtype:
    return jnp.promote_types(x.dtype, jnp.float32)  # float32 for bfloat16, float64 stays float64


def _in_stats(x: Array, eps: float) -> tuple[Array, Array]:
    """Mean and 1/std over H x W, two passes (as ``jnp.var``: no cancellation)."""
    xf = x.astype(_stats_dtype(x))
    mean = jnp.mean(xf, axis=(1, 2), keepdims=True)
    var = jnp.mean(jnp.square(xf - mean), axis=(1, 2), keepdims=True)
    return mean, lax.rsqrt(var + eps)


def _concat_channels(parts: Sequence[Array]) -> Array:
    """Channel concatenation as zero-pad + add: XLA:CPU fuses that into the producers' loop."""
    total = sum(a.shape[-1] for a in parts)
    out, offset = None, 0
    for a in parts:
        c = a.shape[-1]
        a = jnp.pad(a, ((0, 0),) * (a.ndim - 1) + ((offset, total - offset - c),))
        out = a if out is None else out + a
        offset += c
    return out


def _norm_relu(x: Array, stats: tuple[Array, Array] | None, dtype: Dtype) -> Array:
    xf = x.astype(_stats_dtype(x))
    if stats is not None:
        mean, rstd = stats
        # x*r - m*r rather than (x - m)*r: XLA would otherwise materialise x - m
        # once and share it with the variance reduction (an extra memory pass).
        xf = xf * rstd - mean * rstd
    return jnp.maximum(xf, 0).astype(dtype)


def _norm_relu_backward(x: Array, stats: tuple[Array, Array] | None, gu: Array) -> Array:
    """Gradient of ``ReLU(IN(x))`` (or ``ReLU(x)``) for the output cotangent ``gu``."""
    xf = x.astype(_stats_dtype(x))
    gu = gu.astype(xf.dtype)
    if stats is None:
        return jnp.where(xf > 0, gu, 0).astype(x.dtype)
    mean, rstd = stats
    xhat = (xf - mean) * rstd
    gm = jnp.where(xhat > 0, gu, 0)
    s1 = jnp.mean(gm, axis=(1, 2), keepdims=True)
    s2 = jnp.mean(gm * xhat, axis=(1, 2), keepdims=True)
    return (rstd * (gm - s1 - xhat * s2)).astype(x.dtype)


def _nrcu_forward(parts, kernel, instance_norm, eps, impl):
    stats = tuple(_in_stats(x, eps) if instance_norm else None for x in parts)
    u = _concat_channels([_norm_relu(x, s, kernel.dtype) for x, s in zip(parts, stats)])
    return _conv_up_forward(u, kernel, impl), (parts, stats, u, kernel)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _nrcu_cpu(parts: tuple[Array, ...], kernel: Array, instance_norm: bool, eps: float, impl: str) -> Array:
    """``norm_relu_conv_up``'s CPU formulation: per-part statistics, fused concatenation, hand-written VJP."""
    return _nrcu_forward(parts, kernel, instance_norm, eps, impl)[0]


def _nrcu_fwd(parts, kernel, instance_norm, eps, impl):
    return _nrcu_forward(parts, kernel, instance_norm, eps, impl)


def _nrcu_bwd(instance_norm, eps, impl, res, g):
    parts, stats, u, kernel = res
    du, dk = _conv_up_grads(u, kernel, g, impl)
    dparts, offset = [], 0
    for x, s in zip(parts, stats):
        c = x.shape[-1]
        dparts.append(_norm_relu_backward(x, s, du[..., offset:offset + c]))
        offset += c
    return tuple(dparts), dk


_nrcu_cpu.defvjp(_nrcu_fwd, _nrcu_bwd)


def _nrcu_plain(parts: tuple[Array, ...], kernel: Array, instance_norm: bool, eps: float) -> Array:
    """The same map as plain ops: normalise each part, concatenate, ``conv_up_dilated`` (JAX differentiates it)."""
    u = jnp.concatenate([_norm_relu(x, _in_stats(x, eps) if instance_norm else None, kernel.dtype) for x in parts], -1)
    return conv_up_dilated(u, kernel)


def norm_relu_conv_up(parts: tuple[Array, ...], kernel: Array, instance_norm: bool = True, eps: float = IN_EPS,
                      impl: str = "auto") -> Array:
    """``conv_up(ReLU(IN(concat(parts, -1))), kernel)`` in one fused op (IN optional).

    IN is per channel, so the statistics of each part are its own. On CPU the
    parts are never concatenated before normalisation, and the backward pass
    reuses the block states (``parts``) and the conv input ``u`` instead of the
    intermediates autodiff would keep; elsewhere it is the plain chain
    (``impl="gemm"``: the fused GEMM formulation on every platform).
    """
    _check_impl(impl)
    parts = tuple(parts)
    if impl == "gemm":
        return _nrcu_cpu(parts, kernel, instance_norm, eps, impl)
    return on_cpu(lambda ps, k: _nrcu_cpu(ps, k, instance_norm, eps, impl),
                  lambda ps, k: _nrcu_plain(ps, k, instance_norm, eps), parts, kernel)


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
    impl: str = "auto"  # conv2d's

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k, k, x.shape[-1], self.features))
        y = conv2d(x.astype(self.dtype), kernel.astype(self.dtype), self.stride, self.impl)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,)).astype(self.dtype)
        return y


class ConvUp(nn.Module):
    """Stride-2 3x3 transposed convolution (bias-free): H x W -> 2H x 2W.

    With ``prenorm`` set ("in": ReLU(IN(.)), "relu": ReLU) it takes the parts of
    its input separately and computes ``conv_up(prenorm(concat(xs)))`` as the
    fused ``norm_relu_conv_up``; the kernel (and the parameter tree) is the same.
    """

    features: int
    dtype: Dtype = jnp.float32
    kernel_init: Initializer = nn.initializers.lecun_normal()
    prenorm: str | None = None
    eps: float = IN_EPS

    @nn.compact
    def __call__(self, *xs: Array) -> Array:
        cin = sum(x.shape[-1] for x in xs)
        kernel = self.param("kernel", self.kernel_init, (3, 3, cin, self.features)).astype(self.dtype)
        if self.prenorm is None:
            x = xs[0] if len(xs) == 1 else jnp.concatenate(xs, axis=-1)
            return conv_up(x.astype(self.dtype), kernel)
        if self.prenorm not in ("in", "relu"):
            raise ValueError(f"ConvUp.prenorm must be None, 'in' or 'relu'; got {self.prenorm!r}")
        parts = tuple(x.astype(self.dtype) for x in xs)
        return norm_relu_conv_up(parts, kernel, self.prenorm == "in", self.eps)


def compiler_options(remat: str = "none") -> dict[str, str]:
    """XLA options for jitting a training step of a model with this ``remat`` setting.

    ``remat: checkpoint`` (``jax.checkpoint`` per block) saves no memory under
    XLA:CPU's default scheduler, which orders work for concurrency and runs the
    recomputations early; the memory-optimised scheduler recovers part of the
    saving. ``remat: block`` (``bppjax.models.reversible``) orders its own
    recomputation and runs faster under the default scheduler. Pass the result
    as ``jax.jit(..., compiler_options=...)``; it is empty where not needed.
    """
    if remat == "checkpoint" and jax.default_backend() == "cpu":
        return {"xla_cpu_scheduler_type": "CPU_SCHEDULER_TYPE_MEMORY_OPTIMIZED"}
    return {}
