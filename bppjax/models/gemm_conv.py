"""3x3 convolutions as GEMMs: im2col by strided slices, one ``dot_general`` per pass.

XLA:CPU has no bfloat16 convolution kernel: it compiles a bfloat16
``lax.conv_general_dilated`` as a float32 convolution between converts, while a
bfloat16 ``dot_general`` runs on the CPU's bfloat16 matrix units (AMX,
AVX-512 BF16). Written as GEMMs, BPP's convolutions reach those units in the
forward pass and in both gradients:

* ``conv2d``: a stride-1 or stride-2 3x3 convolution (pad 1) as
  ``im2col(x) @ W``; input gradient ``im2col(g) @ flip(W)`` (stride 1) or the
  sub-pixel form below (stride 2); weight gradient ``im2col(x)^T g``.
* ``conv_up_forward`` / ``conv_up_input_grad``: the stride-2 3x3 transposed
  convolution of ``layers.conv_up`` (kernel layout as there). Its forward pass
  is the sub-pixel form: a 2x2 window on the low-resolution grid, one GEMM to
  4 x C channels (one group per output phase; a phase's missing taps are zero
  rows), then depth-to-space. Its input gradient is a stride-2 convolution.

Every GEMM takes operands in the compute dtype and accumulates in float32
(``preferred_element_type``); outputs and input gradients come back in the
compute dtype, weight gradients in float32.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array
F32 = jnp.float32

#: Sub-pixel tables of a stride-2 3x3 transposed convolution, per axis: output phase -> {window offset: kernel tap}.
#: ``UP`` is ``layers.conv_up``'s kernel layout; ``DOWN_GRAD`` the input gradient of a stride-2 conv padded by 1.
UP = {0: {0: 1}, 1: {0: 0, 1: 2}}
DOWN_GRAD = {0: {0: 1}, 1: {0: 2, 1: 0}}


def gemm(a: Array, b: Array) -> Array:
    """``a[..., K] @ b[K, N]`` accumulated (and returned) in float32."""
    return lax.dot_general(a, b, (((a.ndim - 1,), (0,)), ((), ())), preferred_element_type=F32)


def gemm_t(a: Array, b: Array) -> Array:
    """``sum over leading axes of a[..., K] (x) b[..., N]`` -> (K, N), float32 accumulation."""
    lead = tuple(range(a.ndim - 1))
    return lax.dot_general(a, b, ((lead, lead), ((), ())), preferred_element_type=F32)


def im2col(x: Array, k: int, stride: int, pad: tuple[tuple[int, int], tuple[int, int]]) -> Array:
    """kxk patches of NHWC ``x`` by strided slices + one concatenate; features ordered (ky, kx, c) like HWIO."""
    (pt, pb), (pl, pr) = pad
    b, h, w, c = x.shape
    ho, wo = (h + pt + pb - k) // stride + 1, (w + pl + pr - k) // stride + 1
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    cols = [
        lax.slice(xp, (0, ky, kx, 0), (b, ky + stride * (ho - 1) + 1, kx + stride * (wo - 1) + 1, c), (1, stride, stride, 1))
        for ky in range(k) for kx in range(k)
    ]
    return jnp.concatenate(cols, axis=-1)


def kernel_matrix(w: Array) -> Array:
    """HWIO kernel (k, k, I, O) as the (k*k*I, O) matrix matching ``im2col``'s feature order."""
    k1, k2, i, o = w.shape
    return w.reshape(k1 * k2 * i, o)


def flip_io(w: Array) -> Array:
    """The kernel of a convolution's input gradient: spatially flipped, input and output swapped."""
    return jnp.flip(w, (0, 1)).transpose(0, 1, 3, 2)


def phase_kernel(w: Array, table: dict[int, dict[int, int]]) -> Array:
    """(3, 3, I, O) -> (2, 2, I, 2, 2, O): window offset (a, b), input, output phase (py, px), output."""
    zero = jnp.zeros(w.shape[2:], w.dtype)
    rows = []
    for a in range(2):
        cols = []
        for b in range(2):
            phases = [[w[table[py][a], table[px][b]] if a in table[py] and b in table[px] else zero for px in range(2)]
                      for py in range(2)]
            cols.append(jnp.stack([jnp.stack(r, 1) for r in phases], 1))  # I, 2, 2, O
        rows.append(jnp.stack(cols))
    return jnp.stack(rows)


def depth_to_space(y: Array, cout: int) -> Array:
    """(B, h, w, 2*2*C) ordered (py, px, c) -> (B, 2h, 2w, C)."""
    b, h, w, _ = y.shape
    return y.reshape(b, h, w, 2, 2, cout).transpose(0, 1, 3, 2, 4, 5).reshape(b, 2 * h, 2 * w, cout)


def subpixel(u: Array, w: Array, table: dict[int, dict[int, int]]) -> Array:
    """A stride-2 3x3 transposed convolution of ``u`` (h x w -> 2h x 2w) as one GEMM + depth-to-space (float32)."""
    cin, cout = w.shape[2], w.shape[3]
    cols = im2col(u, 2, 1, ((0, 1), (0, 1)))
    return depth_to_space(gemm(cols, phase_kernel(w, table).reshape(4 * cin, 4 * cout)), cout)


_SAME = ((1, 1), (1, 1))


def _conv3x3(x: Array, w: Array, stride: int) -> Array:
    """3x3 convolution with padding 1 as ``im2col(x) @ W`` (float32 result)."""
    return gemm(im2col(x, 3, stride, _SAME), kernel_matrix(w))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv2d(x: Array, w: Array, stride: int = 1) -> Array:
    """3x3 convolution, stride 1 or 2, padding 1 (``layers.conv2d``'s map), kernel HWIO."""
    return _conv3x3(x, w, stride).astype(x.dtype)


def _conv2d_fwd(x: Array, w: Array, stride: int):
    return conv2d(x, w, stride), (x, w)


def _conv2d_bwd(stride: int, res, g: Array):
    x, w = res
    g = g.astype(x.dtype)
    if stride == 1:
        dx = _conv3x3(g, flip_io(w), 1)
    else:  # the stride-2 conv's transpose; an odd input side gets one row/column too many
        dx = subpixel(g, w.transpose(0, 1, 3, 2), DOWN_GRAD)[:, : x.shape[1], : x.shape[2]]
    dw = gemm_t(im2col(x, 3, stride, _SAME), g).reshape(w.shape)
    return dx.astype(x.dtype), dw.astype(w.dtype)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv_up_forward(u: Array, w: Array) -> Array:
    """``layers.conv_up``'s map (H x W -> 2H x 2W) in the sub-pixel form, returned in ``u``'s dtype."""
    return subpixel(u, w, UP).astype(u.dtype)


def conv_up_input_grad(g: Array, w: Array) -> Array:
    """The input gradient of ``conv_up`` for output cotangent ``g``: a stride-2 3x3 convolution by ``flip_io(w)``."""
    return _conv3x3(g, flip_io(w), 2)
