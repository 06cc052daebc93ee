"""float32 vs bfloat16 for BPP's three convolution kinds, formulation by formulation.

For each convolution of the paper preset at the training step's shapes
(``python -m bppjax.bench``: 4 patches of 96x96; ``--batch``/``--size`` change
them, ``--scale`` shrinks the spatial sizes for a quick check), this times the
forward pass, the input gradient and the weight gradient, in float32 and in
bfloat16 (bfloat16 inputs, weights and cotangents; float32 accumulation through
``preferred_element_type`` wherever a formulation allows it), and reports
GFLOP/s on the nominal count (9 * Cin * Cout multiply-adds per output pixel of
a convolution, per input pixel of the transposed one; the same for each pass):

* ``s1``: 3x3 stride-1 convolutions (the analysis conv of the top level, 3 -> 48
  channels, and the synthesis conv, 48 -> 3);
* ``down``: R_l, the stride-2 3x3 convolution C_l -> C_{l-1} (levels 1..3);
* ``up``: P_l's stride-2 3x3 transposed convolution 2C_{l-1} -> C_l (levels 1..3).

Formulations (not all exist for every kind):

* ``xla``: ``lax.conv_general_dilated`` as the model calls it with
  ``impl="xla"`` (``layers.conv2d``; ``layers.conv_up`` with its
  custom VJP for ``up``), gradients as the model gets them (autodiff, or
  ``conv_up``'s VJP);
* ``xla_f32acc`` (bfloat16 only): the same convolutions with
  ``preferred_element_type=float32`` in all three passes, written out by hand
  (autodiff of such a conv would upcast the gradients' operands to float32);
* ``patches``: im2col by ``lax.conv_general_dilated_patches`` and one
  ``dot_general`` per pass. The stride-2 transposed convolution (``up``'s
  forward and ``down``'s input gradient) becomes the sub-pixel form: a 2x2
  window on the low-resolution grid, one GEMM to 4 * C channels (16/9 of the
  nominal work: the phases' zero taps are multiplied too), depth-to-space;
* ``taps``: the same GEMMs over an im2col built from strided slices and one
  concatenate (pure data movement, no convolution at all);
* ``phases`` (``up`` only): four stride-1 convolutions, one per output phase
  (``layers.conv_up_phases``), gradients by autodiff;
* ``s2d`` (``up`` only): one 2x2 convolution to 4 * C channels + depth-to-space
  (``lax.conv_general_dilated``), gradients by autodiff.
* ``model_gemm``: the model's own layers (``layers.conv2d``, ``layers.conv_up``)
  with ``impl="gemm"``, the path ``model.dtype=bfloat16`` takes on
  CPU (``bppjax/models/gemm_conv.py``): ``taps`` for the forward pass and the
  input gradient, and for ``up`` the weight gradient of ``xla`` (``conv_up``'s
  nine GEMMs).

Each alternative is checked against a float32 reference computed from the same
(bfloat16-rounded) operands: ``max_rel_err`` is max |a - ref| / max |ref|.

    python benchmarks/bf16_convs.py --json bf16_convs.json            # full size
    python benchmarks/bf16_convs.py --scale 0.25 --reps 1             # quick check
    python benchmarks/bf16_convs.py --batch 1 --size 256              # forward-bench shapes
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from bppjax import benchmark
from bppjax.models import gemm_conv, layers
from bppjax.models.gemm_conv import DOWN_GRAD, UP, depth_to_space, flip_io, gemm, gemm_t, phase_kernel

Array = jax.Array
DN = ("NHWC", "HWIO", "NHWC")
PAPER_FEATURES = (256, 128, 64, 48)
KINDS = ("s1", "down", "up")
PASSES = ("fwd", "dx", "dw")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
SHORT = {"float32": "f32", "bfloat16": "bf16"}
#: Largest acceptable max relative error against the float32 reference, per compute dtype
#: (a bfloat16 output or input gradient is rounded to 8 bits of mantissa: 2^-9 relative).
TOLERANCE = {"float32": 1e-4, "bfloat16": 1e-2}
F32 = jnp.float32


# --------------------------------------------------------------------------- shapes


@dataclasses.dataclass(frozen=True)
class Case:
    """One convolution: ``kind``, its input (batch, h, w, cin) and cout; ``name`` says where it sits."""

    kind: str
    name: str
    batch: int
    h: int
    w: int
    cin: int
    cout: int

    @property
    def out_hw(self) -> tuple[int, int]:
        if self.kind == "s1":
            return self.h, self.w
        if self.kind == "down":
            return self.h // 2, self.w // 2
        return 2 * self.h, 2 * self.w

    def flops(self) -> float:
        """Nominal FLOPs of one pass (2 * 9 * Cin * Cout per output pixel; per input pixel for ``up``)."""
        h, w = (self.h, self.w) if self.kind == "up" else self.out_hw
        return 2.0 * 9 * self.cin * self.cout * self.batch * h * w


def cases(features: Sequence[int] = PAPER_FEATURES, batch: int = 4, size: int = 96, scale: float = 1.0,
          kinds: Sequence[str] = KINDS) -> list[Case]:
    """The convolutions of a BPP with ``features`` (lowest level first) on ``batch`` images of ``size``^2.

    ``scale`` shrinks the top level's size (rounded to a multiple of 2^(L-1), at least that).
    """
    L = len(features)
    m = 2 ** (L - 1)
    top = max(m, int(round(size * scale / m)) * m)
    hw = [top // 2 ** (L - 1 - l) for l in range(L)]
    out: list[Case] = []
    if "s1" in kinds:
        out.append(Case("s1", f"analysis_h{L - 1}", batch, top, top, 3, features[-1]))
        out.append(Case("s1", "synthesis", batch, top, top, features[-1], 3))
    for l in range(L - 1, 0, -1):
        if "down" in kinds:
            out.append(Case("down", f"R_{l}", batch, hw[l], hw[l], features[l], features[l - 1]))
        if "up" in kinds:
            out.append(Case("up", f"P_{l}", batch, hw[l - 1], hw[l - 1], 2 * features[l - 1], features[l]))
    return out


# --------------------------------------------------------------------------- building blocks


def _pad2(pad: int | tuple[tuple[int, int], tuple[int, int]]) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((pad, pad), (pad, pad)) if isinstance(pad, int) else pad


def im2col_patches(x: Array, k: int, stride: int, pad) -> Array:
    """kxk patches by ``lax.conv_general_dilated_patches``; features ordered (c, ky, kx)."""
    return lax.conv_general_dilated_patches(x, (k, k), (stride, stride), _pad2(pad), dimension_numbers=DN)


def im2col_taps(x: Array, k: int, stride: int, pad) -> Array:
    """``gemm_conv.im2col`` (the model's GEMM path); features ordered (ky, kx, c) like an HWIO kernel."""
    return gemm_conv.im2col(x, k, stride, _pad2(pad))


IM2COL = {"taps": im2col_taps, "patches": im2col_patches}


def kernel_matrix(w: Array, order: str) -> Array:
    """HWIO kernel (k, k, I, O) as the (k*k*I, O) matrix matching ``IM2COL[order]``'s feature order."""
    k1, k2, i, o = w.shape
    if order == "patches":
        w = w.transpose(2, 0, 1, 3)
    return w.reshape(k1 * k2 * i, o)


def kernel_from_matrix(m: Array, k: int, cin: int, order: str) -> Array:
    """Inverse of ``kernel_matrix``: (k*k*cin, O) -> HWIO."""
    o = m.shape[-1]
    if order == "patches":
        return m.reshape(cin, k, k, o).transpose(1, 2, 0, 3)
    return m.reshape(k, k, cin, o)


def subpixel_gemm(u: Array, w: Array, table, order: str) -> Array:
    """A stride-2 3x3 transposed convolution as 2x2 im2col + one GEMM to 4 * O channels + depth-to-space (float32)."""
    cin, cout = w.shape[2], w.shape[3]
    pk = phase_kernel(w, table)  # 2, 2, I, 2, 2, O
    if order == "patches":
        pk = pk.transpose(2, 0, 1, 3, 4, 5)
    cols = IM2COL[order](u, 2, 1, ((0, 1), (0, 1)))
    return depth_to_space(gemm(cols, pk.reshape(4 * cin, 4 * cout)), cout)


def subpixel_conv(u: Array, w: Array, table, preferred=None) -> Array:
    """The same as one 2x2 ``lax.conv_general_dilated`` to 4 * O channels + depth-to-space."""
    cin, cout = w.shape[2], w.shape[3]
    pk = phase_kernel(w, table).reshape(2, 2, cin, 4 * cout)
    y = lax.conv_general_dilated(u, pk, (1, 1), ((0, 1), (0, 1)), dimension_numbers=DN, preferred_element_type=preferred)
    return depth_to_space(y, cout)


# --------------------------------------------------------------------------- formulations
#
# A formulation of a kind is three functions of (x, w, g): the forward pass,
# the input gradient and the weight gradient (g: the output cotangent). x, w
# and g come in the compute dtype; outputs and input gradients are returned in
# it, weight gradients in float32 (the master weights' dtype).

Passes = tuple[Callable[..., Array], Callable[..., Array], Callable[..., Array]]


def _autodiff(f: Callable[[Array, Array], Array]) -> Passes:
    return (lambda x, w, g: f(x, w),
            lambda x, w, g: jax.vjp(lambda x_: f(x_, w), x)[1](g)[0],
            lambda x, w, g: jax.vjp(lambda w_: f(x, w_), w)[1](g)[0].astype(F32))


def _layer(kind: str, impl: str) -> Callable[[Array, Array], Array]:
    """The model's layer of ``kind`` (``layers.conv2d`` or ``layers.conv_up``) with convolution ``impl``."""
    if kind == "up":
        return lambda u, w: layers.conv_up(u, w, impl)
    return lambda x, w: layers.conv2d(x, w, 1 if kind == "s1" else 2, impl)


def _xla_f32acc(kind: str) -> Passes:
    """lax convolutions with float32 accumulation in every pass, transposes written out."""
    s = 1 if kind == "s1" else 2

    def conv(x, w, stride=1, pad=((1, 1), (1, 1)), **kw):
        return lax.conv_general_dilated(x, w, (stride, stride), pad, dimension_numbers=DN, preferred_element_type=F32, **kw)

    def weight_grad(x, g, stride):
        # dW[k] = sum_i x[stride*i - 1 + k] g[i]: x as (C, H, W, N), g as the (N, H, W, O) kernel, dilated by stride.
        pad = ((1, 2 - stride), (1, 2 - stride))
        return lax.conv_general_dilated(x, g, (1, 1), pad, rhs_dilation=(stride, stride), preferred_element_type=F32,
                                        dimension_numbers=("CHWN", "IHWO", "HWNC"))

    if kind in ("s1", "down"):
        def fwd(x, w, g):
            return conv(x, w, s).astype(x.dtype)

        def dx(x, w, g):
            if s == 1:
                return conv(g, flip_io(w)).astype(x.dtype)
            return conv(g, flip_io(w), pad=((1, 2), (1, 2)), lhs_dilation=(2, 2)).astype(x.dtype)

        def dw(x, w, g):
            return weight_grad(x, g, s)
        return fwd, dx, dw

    def fwd_up(u, w, g):
        # As layers.conv_up: four phase convolutions for narrow outputs, the dilated one otherwise.
        if w.shape[-1] < layers.PHASES_BELOW_CHANNELS:
            b, h, wd, _ = u.shape
            ee = conv(u, w[1:2, 1:2], pad=((0, 0), (0, 0)))
            eo = conv(u, w[1:2, 0::2], pad=((0, 0), (0, 1)))
            oe = conv(u, w[0::2, 1:2], pad=((0, 1), (0, 0)))
            oo = conv(u, w[0::2, 0::2], pad=((0, 1), (0, 1)))
            y = jnp.stack([jnp.stack([ee, eo], 3), jnp.stack([oe, oo], 3)], 2)
            return y.reshape(b, 2 * h, 2 * wd, w.shape[-1]).astype(u.dtype)
        return conv(u, w, pad=((1, 2), (1, 2)), lhs_dilation=(2, 2)).astype(u.dtype)

    def dx_up(u, w, g):
        return conv(g, flip_io(w), 2).astype(u.dtype)

    def dw_up(u, w, g):
        # dK[k] = sum_i u[i] g[2i + 1 - k]: the weight gradient of the stride-2 conv g -> u, flipped.
        return flip_io(weight_grad(g, u, 2))
    return fwd_up, dx_up, dw_up


def _gemm_formulation(kind: str, order: str) -> Passes:
    im2col = IM2COL[order]
    if kind in ("s1", "down"):
        s = 1 if kind == "s1" else 2

        def fwd(x, w, g):
            return gemm(im2col(x, 3, s, 1), kernel_matrix(w, order)).astype(x.dtype)

        def dx(x, w, g):
            if s == 1:
                return gemm(im2col(g, 3, 1, 1), kernel_matrix(flip_io(w), order)).astype(x.dtype)
            return subpixel_gemm(g, w.transpose(0, 1, 3, 2), DOWN_GRAD, order).astype(x.dtype)

        def dw(x, w, g):
            return kernel_from_matrix(gemm_t(im2col(x, 3, s, 1), g), 3, x.shape[-1], order)
        return fwd, dx, dw

    def fwd_up(u, w, g):
        return subpixel_gemm(u, w, UP, order).astype(u.dtype)

    def dx_up(u, w, g):
        return gemm(im2col(g, 3, 2, 1), kernel_matrix(flip_io(w), order)).astype(u.dtype)

    def dw_up(u, w, g):
        # Tap t of the stride-2 im2col of g reads g[2i - 1 + t] = g[2i + 1 - k] for kernel tap k = 2 - t.
        m = gemm_t(im2col(g, 3, 2, 1), u)  # (9 * O, I)
        return flip_io(kernel_from_matrix(m, 3, w.shape[-1], order))
    return fwd_up, dx_up, dw_up


def formulations(kind: str, dtype: str) -> dict[str, Passes]:
    """Every formulation of ``kind`` measured in ``dtype`` (``xla_f32acc`` only where it differs from ``xla``)."""
    out: dict[str, Passes] = {}
    out["xla"] = _autodiff(_layer(kind, "xla"))
    if dtype != "float32":
        out["xla_f32acc"] = _xla_f32acc(kind)
    out["patches"] = _gemm_formulation(kind, "patches")
    out["taps"] = _gemm_formulation(kind, "taps")
    if kind == "up":
        out["phases"] = _autodiff(layers.conv_up_phases)
        out["s2d"] = _autodiff(lambda u, w: subpixel_conv(u, w, UP))
    out["model_gemm"] = _autodiff(_layer(kind, "gemm"))
    return out


def reference(case: Case, x: Array, w: Array, g: Array) -> tuple[Array, Array, Array]:
    """float32 forward, input and weight gradient of ``case`` at (x, w, g) (upcast), by autodiff of the plain conv."""
    f = layers.conv_up_dilated if case.kind == "up" else _layer(case.kind, "xla")
    x, w, g = (a.astype(F32) for a in (x, w, g))
    y, vjp = jax.vjp(f, x, w)
    return (y, *vjp(g))


def operands(case: Case, dtype: str, seed: int = 0) -> tuple[Array, Array, Array]:
    """Random x, w (He-scaled) and output cotangent g of ``case``, in ``dtype``."""
    # numpy's generator: jax.random would compile a sampler per shape, which costs more than these checks.
    rng = np.random.default_rng(seed)
    dt = DTYPES[dtype]

    def normal(shape, scale=1.0):
        return jnp.asarray((rng.standard_normal(shape) * scale).astype(np.float32)).astype(dt)

    x = normal((case.batch, case.h, case.w, case.cin))
    w = normal((3, 3, case.cin, case.cout), 1 / np.sqrt(9 * case.cin))
    g = normal((case.batch, *case.out_hw, case.cout))
    return x, w, g


def max_rel_err(a: Array, ref: Array) -> float:
    a, ref = np.asarray(a, np.float32), np.asarray(ref, np.float32)
    if a.shape != ref.shape:
        raise ValueError(f"shape {a.shape} != reference {ref.shape}")
    return float(np.abs(a - ref).max() / max(float(np.abs(ref).max()), 1e-30))


def check(case: Case, dtype: str, names: Sequence[str] | None = None) -> dict[str, dict[str, float]]:
    """``max_rel_err`` of each formulation's three passes against the float32 reference (one compiled program)."""
    x, w, g = operands(case, dtype)
    forms = {n: f for n, f in formulations(case.kind, dtype).items() if names is None or n in names}
    ref, got = jax.jit(lambda x, w, g: (reference(case, x, w, g), {n: tuple(f(x, w, g) for f in fs) for n, fs in forms.items()}))(x, w, g)
    return {n: {p: max_rel_err(a, r) for p, a, r in zip(PASSES, got[n], ref)} for n in forms}


# --------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], Any], reps: int) -> float:
    """``bppjax.benchmark.median_time`` after one warm-up call."""
    jax.block_until_ready(fn())
    return benchmark.median_time(fn, reps)


def measure(case: Case, dtype: str, reps: int = 5, names: Sequence[str] | None = None,
            log: Callable[[str], None] = lambda s: None) -> dict[str, dict[str, Any]]:
    """Per formulation and pass: median seconds, GFLOP/s (nominal) and max relative error."""
    x, w, g = operands(case, dtype)
    ref = jax.jit(functools.partial(reference, case))(x, w, g)
    out: dict[str, dict[str, Any]] = {}
    for name, passes in formulations(case.kind, dtype).items():
        if names is not None and name not in names:
            continue
        log(f"{case.kind} {case.name} {dtype} {name}")
        r: dict[str, Any] = {}
        for p, f, rf in zip(PASSES, passes, ref):
            fn = jax.jit(f).lower(x, w, g).compile()
            s = median_time(lambda: fn(x, w, g), reps)
            r[p] = {"s": s, "gflops": case.flops() / s / 1e9, "max_rel_err": max_rel_err(fn(x, w, g), rf)}
        out[name] = r
    return out


def cpu_features() -> dict[str, Any]:
    """The CPU model and the bfloat16-relevant flags of /proc/cpuinfo (as ``python -m bppjax.bench`` records them)."""
    from bppjax.benchmark import cpu_features as bench_cpu_features

    return bench_cpu_features()


def run(case_list: Sequence[Case], dtypes: Sequence[str] = tuple(DTYPES), reps: int = 5, names: Sequence[str] | None = None,
        log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    env = {"jax": jax.__version__, "backend": jax.default_backend(), "cpu_count": os.cpu_count(), "machine": platform.machine(),
           "cpu": cpu_features(), "loadavg_start": os.getloadavg()}
    results = []
    for case in case_list:
        entry: dict[str, Any] = {**dataclasses.asdict(case), "gflop": case.flops() / 1e9}
        for dt in dtypes:
            entry[dt] = measure(case, dt, reps, names, log)
        results.append(entry)
    env["loadavg_end"] = os.getloadavg()
    return {"env": env, "reps": reps, "tolerance": TOLERANCE, "cases": results}


def format_table(res: dict[str, Any]) -> str:
    """Markdown: one row per case and formulation, GFLOP/s of each pass in float32 and bfloat16, bf16/f32 speed-up."""
    dtypes = [d for d in DTYPES if any(d in c for c in res["cases"])]
    head = ["kind", "conv", "shape", "formulation"]
    for p in PASSES:
        head += [f"{p} {SHORT[d]}" for d in dtypes]
        if len(dtypes) == 2:
            head.append(f"{p} bf16/f32")
    head.append("max rel err")
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in res["cases"]:
        names = list(dict.fromkeys(n for d in dtypes for n in c[d]))
        shape = f"{c['batch']}x{c['h']}x{c['w']}x{c['cin']} -> {c['cout']}"
        for n in names:
            cells = [c["kind"], c["name"], shape, n]
            for p in PASSES:
                vals = [c[d][n][p]["gflops"] if n in c[d] else None for d in dtypes]
                cells += [f"{v:.0f}" if v is not None else "-" for v in vals]
                if len(dtypes) == 2:
                    # Against float32 XLA, the model's float32 path.
                    f32 = c["float32"].get("xla", {}).get(p, {}).get("gflops")
                    cells.append(f"{vals[1] / f32:.2f}x" if vals[1] is not None and f32 else "-")
            err = max(c[d][n][p]["max_rel_err"] for d in dtypes if n in c[d] for p in PASSES)
            cells.append(f"{err:.1e}")
            rows.append("| " + " | ".join(cells) + " |")
    env = res["env"]
    cpu = env["cpu"]
    flags = ", ".join(f for f in ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2") if cpu.get(f))
    rows.append("")
    rows.append(f"GFLOP/s on the nominal count, median of {res['reps']}; bf16/f32: bfloat16 of that formulation over "
                f"float32 `xla`. {cpu.get('model_name', '?')} ({flags or 'no listed flags'}), {env['cpu_count']} cores, "
                f"jax {env['jax']}; load average {env['loadavg_start'][0]:.1f} -> {env['loadavg_end'][0]:.1f}")
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--reps", type=int, default=5, help="timed runs per figure (median), after one warm-up")
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the spatial sizes by this factor (quick check)")
    ap.add_argument("--batch", type=int, default=4, help="batch (default: the bench's training step, 4)")
    ap.add_argument("--size", type=int, default=96, help="top-level height and width (default: the training patch, 96)")
    ap.add_argument("--kind", action="append", choices=KINDS, help="repeatable (default: all)")
    ap.add_argument("--conv", action="append", help="repeatable: only these convolutions (analysis_h3, synthesis, R_1..R_3, P_1..P_3)")
    ap.add_argument("--formulation", action="append", help="repeatable (default: all)")
    ap.add_argument("--dtype", action="append", choices=list(DTYPES), help="repeatable (default: float32 and bfloat16)")
    ap.add_argument("--json", type=Path, help="write the results here")
    a = ap.parse_args(argv)
    if a.reps < 1 or a.scale <= 0:
        ap.error("--reps must be >= 1 and --scale > 0")
    case_list = [c for c in cases(batch=a.batch, size=a.size, scale=a.scale, kinds=a.kind or KINDS) if not a.conv or c.name in a.conv]
    if not case_list:
        ap.error("--kind and --conv leave no convolution to measure")
    res = run(case_list, a.dtype or list(DTYPES), a.reps, a.formulation, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
