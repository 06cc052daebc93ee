"""Forward and training-step speed of model presets: the library behind ``python -m bppjax.bench``.

Measures, per preset (default ``paper`` and ``tiny``) and compute dtype (default
float32 and bfloat16, on every backend):

* forward throughput: output pixels per second, one 256x256 image (batch 1);
* training-step time of the training loop's own ``train_step``: batch of 4 96x96 patches, L1 loss, Adam;
* compile times of both;
* GFLOP/s from the model's analytic MAC count (``model.macs_per_pixel()``) and
  its fraction of the machine's measured peak (a large matmul in the same dtype
  timed in the same process, a lower bound of the hardware ceiling) and, when
  the caller gives one (``ceiling_gflops``), of a hardware FMA ceiling;
* with ``remat: block`` (and ``remat: checkpoint``): the compiled step's temp
  memory and its step time as ratios of the un-rematerialised step's.

``run_torch`` times a PyTorch implementation of the network (a script such as
a source checkout's ``benchmarks/torch_bpp.py``; needs ``pip install -e .[bench]``)
on the same presets in a separate process
(two frameworks in one process halve every figure), in float32 and under
``torch.autocast("cpu", dtype=torch.bfloat16)``; ``add_torch_ratios`` compares
matching dtypes and each framework's best. Every figure is a median of ``reps``
runs, and ``run`` records the load average and the CPU's bfloat16-relevant
features (``cpu_features``) so that a contended run, or a CPU without the fast
bfloat16 path, can be spotted.

Result layout (``run``'s dict, the JSON of ``--json``): per preset, the float32
figures at the top level of ``results["presets"][name]`` and every other dtype's
under its name (``results["presets"]["paper"]["bfloat16"]``); ``dtype_figures``
walks them. The same layout holds for the PyTorch results under ``"torch"``.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from bppjax.training.config import base_config
from bppjax.training.state import create_train_state, make_optimizer
from bppjax.training.step import train_step
from bppjax.models import at_factor, build_model, conditioned_on_factor, preset
from bppjax.models.bpp import DTYPES
from bppjax.models.presets import ARCH_REMATS
from bppjax.models.layers import compiler_options

DEFAULT_PRESETS = ("paper", "tiny")


# --------------------------------------------------------------------------- machine

#: /proc/cpuinfo flags that decide whether bfloat16 can be fast on a CPU (AMX tiles, AVX-512 BF16 dot products).
CPU_FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f", "avx2")


def cpu_features(cpuinfo: str | Path = "/proc/cpuinfo") -> dict[str, Any]:
    """The CPU's model name and, for each of ``CPU_FLAGS``, whether its first processor lists it.

    ``available`` is False (and the flags None: unknown) where ``cpuinfo`` cannot be read (not Linux).
    """
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return {"available": False, "model_name": platform.processor() or None, **{f: None for f in CPU_FLAGS}}
    model, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return {"available": True, "model_name": model, **{f: f in flags for f in CPU_FLAGS}}


# --------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time of ``fn()`` (blocking on its result) over ``reps`` runs."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def peak_gflops(n: int = 4096, reps: int = 5, dtype: str = "float32") -> float:
    """n x n matmul rate in this process: a lower bound of the machine's peak in ``dtype``.

    bfloat16 operands accumulate in float32 (``preferred_element_type``), as
    the model's bfloat16 GEMMs do.
    """
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32).astype(DTYPES[dtype])
    mm = functools.partial(jnp.matmul, preferred_element_type=jnp.float32)
    f = jax.jit(mm).lower(a, a).compile()
    jax.block_until_ready(f(a, a))
    return 2 * n**3 / median_time(lambda: f(a, a), reps) / 1e9


def _model(cfg: ml_collections.ConfigDict, dtype: str, remat: str | None = None):
    cfg = ml_collections.ConfigDict(cfg.to_dict())
    cfg.dtype = dtype
    if remat is not None:
        cfg.remat = remat
    return cfg, build_model(cfg)


def macs_per_pixel(cfg: ml_collections.ConfigDict) -> float:
    """Multiply-accumulates per output pixel of one forward pass, as the model counts them (``model.macs_per_pixel()``)."""
    return float(build_model(cfg).macs_per_pixel())


#: XLA options for programs that only make the parameters a benchmark times: on CPU, backend optimisation of
#: ``model.init`` costs ~10 s of compile time (more than the network's own forward pass) and changes only round-off.
_SETUP_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _init(model, seed: int = 0):
    init = jax.jit(model.init, compiler_options=_SETUP_COMPILER_OPTIONS)
    return init(jax.random.key(seed), jnp.zeros((1, 32, 32, 3), jnp.float32))["params"]


def bench_forward(cfg: ml_collections.ConfigDict, dtype: str = "float32", size: int = 256, batch: int = 1, reps: int = 5) -> dict[str, float]:
    """Forward throughput (output px/s) and compile time of one config."""
    cfg, model = _model(cfg, dtype)
    model = at_factor(model, 2.0)  # a model conditioned on the SR factor runs at x2
    params = _init(model)
    x = jax.random.uniform(jax.random.key(1), (batch, size, size, 3), jnp.float32)
    t = time.perf_counter()
    fwd = jax.jit(lambda p, x: model.apply({"params": p}, x)).lower(params, x).compile()
    compile_s = time.perf_counter() - t
    jax.block_until_ready(fwd(params, x))
    s = median_time(lambda: fwd(params, x), reps)
    px = batch * size * size
    return {
        "forward_s": s,
        "forward_px_per_s": px / s,
        "forward_gflops": 2 * float(model.macs_per_pixel()) * px / s / 1e9,
        "forward_compile_s": compile_s,
    }


def compile_train_step(cfg: ml_collections.ConfigDict, dtype: str = "float32", patch: int = 96, batch: int = 4, remat: str | None = None):
    """The training loop's own ``train_step`` (L1, Adam 1e-4), compiled with the state donated.

    Returns the compiled step, its arguments ``(state, batch)`` and the compile time.
    """
    cfg, model = _model(cfg, dtype, remat)
    optim = base_config().optim
    optim.update(lr=1e-4, schedule="constant")
    tx, schedule = make_optimizer(optim, 1)
    state = jax.jit(functools.partial(create_train_state, model, tx, 0, patch), compiler_options=_SETUP_COMPILER_OPTIONS)()
    kx, ky = jax.random.split(jax.random.key(2))
    data = {"input": jax.random.randint(kx, (batch, patch, patch, 3), 0, 256).astype(jnp.uint8),
            "target": jax.random.randint(ky, (batch, patch, patch, 3), 0, 256).astype(jnp.uint8)}
    if conditioned_on_factor(model):
        data["scale"] = jnp.full((batch,), 2.0, jnp.float32)
    step = functools.partial(train_step, loss="l1", schedule=schedule, peak=255.0)
    t = time.perf_counter()
    compiled = jax.jit(step, donate_argnums=(0,), compiler_options=compiler_options(cfg.remat)).lower(state, data).compile()
    return compiled, (state, data), time.perf_counter() - t


def time_train_step(compiled, args, reps: int = 5) -> float:
    """Median seconds per step, threading the donated state through the calls."""
    state, data = args
    state, _ = jax.block_until_ready(compiled(state, data))
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        state, _ = jax.block_until_ready(compiled(state, data))
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def memory_stats(compiled) -> dict[str, int]:
    """XLA's buffer assignment of a compiled step: temp (activations, gradients) and total."""
    m = compiled.memory_analysis()
    temp = int(m.temp_size_in_bytes)
    total = int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + temp)
    return {"temp_bytes": temp, "total_bytes": total}


def bench_train(cfg: ml_collections.ConfigDict, dtype: str = "float32", patch: int = 96, batch: int = 4, reps: int = 5) -> dict[str, float]:
    """Training-step time, compile time and memory of one config."""
    compiled, args, compile_s = compile_train_step(cfg, dtype, patch, batch)
    s = time_train_step(compiled, args, reps)
    px = batch * patch * patch
    mem = memory_stats(compiled)
    return {
        "train_step_s": s,
        # Forward + input gradient + weight gradient: 3x the forward's FLOPs.
        "train_gflops": 3 * 2 * macs_per_pixel(cfg) * px / s / 1e9,
        "train_compile_s": compile_s,
        "train_temp_bytes": mem["temp_bytes"],
    }


def remat_comparison(cfg: ml_collections.ConfigDict, dtype: str = "float32", patch: int = 96, batch: int = 4, reps: int = 5,
                     modes: Sequence[str] = ("block", "checkpoint")) -> dict[str, float]:
    """Rematerialised training steps against ``remat: none``: temp memory and step time, side by side.

    The steps are timed interleaved so that a change in machine load hits all
    of them. ``memory_ratio`` and ``time_ratio`` are ``remat: block``'s; the
    other modes' ratios carry their name as a prefix (``checkpoint_memory_ratio``).
    ``modes`` must be settings the architecture implements (``remat_modes``).
    """
    runs = {r: compile_train_step(cfg, dtype, patch, batch, remat=r) for r in ("none", *modes)}
    state = {r: run[1] for r, run in runs.items()}
    times: dict[str, list[float]] = {r: [] for r in runs}
    for i in range(reps + 1):
        for r, (compiled, _, _) in runs.items():
            st, data = state[r]
            t = time.perf_counter()
            st, _ = jax.block_until_ready(compiled(st, data))
            if i:  # the first call of each is a warm-up
                times[r].append(time.perf_counter() - t)
            state[r] = (st, data)
    mem = {r: memory_stats(run[0]) for r, run in runs.items()}
    t = {r: statistics.median(v) for r, v in times.items()}
    out = {"temp_bytes_none": mem["none"]["temp_bytes"], "step_s_none": t["none"]}
    for r in modes:
        prefix = "" if r == "block" else f"{r}_"
        out[f"temp_bytes_{r}"] = mem[r]["temp_bytes"]
        out[f"step_s_{r}"] = t[r]
        out[f"{prefix}memory_ratio"] = mem[r]["temp_bytes"] / mem["none"]["temp_bytes"]
        out[f"{prefix}total_memory_ratio"] = mem[r]["total_bytes"] / mem["none"]["total_bytes"]
        out[f"{prefix}time_ratio"] = t[r] / t["none"]
    return out


# --------------------------------------------------------------------------- PyTorch


def run_torch(script: str | Path, presets: Sequence[str], reps: int = 5, size: int = 256, patch: int = 96, batch: int = 4,
              dtypes: Sequence[str] = tuple(DTYPES), matmul_size: int = 4096) -> dict[str, Any]:
    """Time the PyTorch network of ``script`` (``benchmarks/torch_bpp.py`` of a source checkout) in a child process.

    bfloat16 is ``torch.autocast("cpu", dtype=torch.bfloat16)`` (float32 weights, bfloat16 convolutions).
    """
    script = Path(script)
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: the PyTorch comparison runs benchmarks/torch_bpp.py of a source checkout")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "torch.json"
        cmd = [sys.executable, str(script), "--reps", str(reps), "--size", str(size), "--patch", str(patch),
               "--batch", str(batch), "--matmul-size", str(matmul_size), "--json", str(out)]
        for p in presets:
            cmd += ["--preset", p]
        for dt in dtypes:
            cmd += ["--dtype", dt]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            hint = " (pip install -e .[bench])" if "No module named 'torch'" in proc.stderr else ""
            raise RuntimeError(f"PyTorch benchmark failed{hint}:\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def dtype_figures(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``{dtype: figures}`` of one preset's results (bppjax's or PyTorch's): float32 at the top level, others by name."""
    out = {}
    if "forward_px_per_s" in res:
        out["float32"] = res
    for dt in DTYPES:
        if dt != "float32" and isinstance(res.get(dt), dict):
            out[dt] = res[dt]
    return out


def add_dtype_ratios(res: dict[str, Any]) -> None:
    """Each non-float32 dtype's figures against float32's (same framework, same run).

    ``forward_speedup_vs_float32`` (throughput ratio, > 1: faster than float32)
    and ``train_time_ratio_vs_float32`` (step-time ratio, < 1: faster).
    """
    figs = dtype_figures(res)
    f32 = figs.get("float32")
    if f32 is None:
        return
    for dt, r in figs.items():
        if dt != "float32":
            r["forward_speedup_vs_float32"] = r["forward_px_per_s"] / f32["forward_px_per_s"]
            r["train_time_ratio_vs_float32"] = r["train_step_s"] / f32["train_step_s"]


def best_dtypes(res: dict[str, Any]) -> dict[str, Any]:
    """The dtype with the highest forward throughput and the one with the shortest training step, and their figures."""
    figs = dtype_figures(res)
    fwd = max(figs, key=lambda d: figs[d]["forward_px_per_s"])
    train = min(figs, key=lambda d: figs[d]["train_step_s"])
    return {"forward_dtype": fwd, "forward_px_per_s": figs[fwd]["forward_px_per_s"],
            "train_dtype": train, "train_step_s": figs[train]["train_step_s"]}


def add_torch_ratios(results: dict[str, Any], torch_res: dict[str, Any]) -> None:
    """bppjax/PyTorch ratios per preset: forward throughput (higher is better), step time (lower is better).

    For every dtype both measured, that dtype's figures get ``torch_forward_px_per_s``,
    ``torch_train_step_s``, ``forward_speedup_vs_torch`` and ``train_time_ratio_vs_torch``
    (float32's at the preset's top level, as before). ``best_vs_torch`` compares
    each framework's best dtype (``best_dtypes``), forward and step separately.
    """
    results["torch"] = torch_res
    for name, r in results["presets"].items():
        t = torch_res.get(name)
        if not t:
            continue
        tfigs = dtype_figures(t)
        for dt, f in dtype_figures(r).items():
            tf = tfigs.get(dt)
            if tf:
                f["torch_forward_px_per_s"] = tf["forward_px_per_s"]
                f["torch_train_step_s"] = tf["train_step_s"]
                f["forward_speedup_vs_torch"] = f["forward_px_per_s"] / tf["forward_px_per_s"]
                f["train_time_ratio_vs_torch"] = f["train_step_s"] / tf["train_step_s"]
        if tfigs and dtype_figures(r):
            ours, theirs = best_dtypes(r), best_dtypes(t)
            r["best_vs_torch"] = {
                "forward_dtype": ours["forward_dtype"], "forward_px_per_s": ours["forward_px_per_s"],
                "torch_forward_dtype": theirs["forward_dtype"], "torch_forward_px_per_s": theirs["forward_px_per_s"],
                "forward_speedup_vs_torch": ours["forward_px_per_s"] / theirs["forward_px_per_s"],
                "train_dtype": ours["train_dtype"], "train_step_s": ours["train_step_s"],
                "torch_train_dtype": theirs["train_dtype"], "torch_train_step_s": theirs["train_step_s"],
                "train_time_ratio_vs_torch": ours["train_step_s"] / theirs["train_step_s"],
            }


# --------------------------------------------------------------------------- driver


def remat_modes(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The ``remat`` settings the config's architecture implements, besides "none" (``ARCH_REMATS``)."""
    return tuple(m for m in ARCH_REMATS[cfg.arch] if m != "none")


def default_dtypes() -> list[str]:
    """float32 and bfloat16, on every backend (on a CPU, bfloat16's speed depends on ``cpu_features``)."""
    return list(DTYPES)


def run(presets: Sequence[str] = DEFAULT_PRESETS, dtypes: Sequence[str] | None = None, reps: int = 5, remat: bool = True,
        torch: str | Path | None = None, ceiling_gflops: float | None = None, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement for ``presets`` in ``dtypes``; the returned dict is what ``--json`` writes.

    ``torch``: the PyTorch script to compare with (``run_torch``), or None.
    ``ceiling_gflops``: a hardware FMA ceiling to report fractions of (this
    machine's, known to the caller), or None for the measured peak only.

    ``results["presets"][name]`` (also ``results[name]``) holds the float32
    figures, and each other dtype's under its name (``dtype_figures``);
    ``peak_gflops`` is the float32 matmul rate, ``peak_gflops_by_dtype`` every
    measured dtype's, against which each dtype's ``*_fraction_of_peak`` is taken.
    """
    dtypes = list(dict.fromkeys(dtypes or default_dtypes()))
    for dt in dtypes:
        if dt not in DTYPES:
            raise ValueError(f"unknown dtype {dt!r}; choose from {tuple(DTYPES)}")
    torch_res = None
    if torch:
        # First, in a child process, while this one has run nothing: XLA's worker
        # threads stay busy for a while after a computation and would slow the child.
        log("PyTorch (separate process) ...")
        torch_res = run_torch(torch, presets, reps, dtypes=dtypes)
    env = {
        "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "cpu": cpu_features(), "loadavg_start": os.getloadavg(),
    }
    peak_dtypes = list(dict.fromkeys(["float32", *dtypes]))
    log(f"matmul peak ({env['backend']}, {', '.join(peak_dtypes)}) ...")
    peaks = {dt: peak_gflops(reps=reps, dtype=dt) for dt in peak_dtypes}
    out: dict[str, Any] = {"env": env, "dtypes": dtypes, "peak_gflops": peaks["float32"], "ceiling_gflops": ceiling_gflops, "presets": {}}
    for name in presets:
        cfg = preset(name)
        res: dict[str, Any] = {"macs_per_pixel": macs_per_pixel(cfg)}
        for dtype in dtypes:
            log(f"{name} {dtype}: forward ...")
            r = bench_forward(cfg, dtype, reps=reps)
            log(f"{name} {dtype}: train step ...")
            r.update(bench_train(cfg, dtype, reps=reps))
            r["compile_s"] = r["forward_compile_s"] + r["train_compile_s"]
            if ceiling_gflops:
                r["forward_fraction_of_ceiling"] = r["forward_gflops"] / ceiling_gflops
            if remat:
                modes = remat_modes(cfg)
                log(f"{name} {dtype}: remat {' and '.join(modes)} vs none ...")
                r["remat"] = remat_comparison(cfg, dtype, reps=reps, modes=modes)
            if dtype == "float32":
                res.update(r)
            else:
                res[dtype] = r
        add_dtype_ratios(res)
        out["presets"][name] = res
        out[name] = res
    ends = {dt: peak_gflops(reps=reps, dtype=dt) for dt in peak_dtypes}
    out["peak_gflops_end"] = ends["float32"]
    out["peak_gflops_by_dtype"] = {dt: max(peaks[dt], ends[dt]) for dt in peak_dtypes}
    out["peak_gflops"] = out["peak_gflops_by_dtype"]["float32"]
    for res in out["presets"].values():
        for dt, r in dtype_figures(res).items():
            r["forward_fraction_of_peak"] = r["forward_gflops"] / out["peak_gflops_by_dtype"][dt]
            r["train_fraction_of_peak"] = r["train_gflops"] / out["peak_gflops_by_dtype"][dt]
    if torch_res is not None:
        for name in presets:
            if name in torch_res:
                add_dtype_ratios(torch_res[name])
        add_torch_ratios(out, torch_res)
    env["loadavg_end"] = os.getloadavg()
    return out


SHORT = {"float32": "f32", "bfloat16": "bf16"}


def _cell(figures: dict[str, float], key: str, spec: str, unit: str = "") -> str:
    """``figures[key]`` formatted with ``spec``, or "-" where it was not measured."""
    return format(figures[key], spec) + unit if key in figures else "-"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(head: Sequence[str]) -> list[str]:
    return [_row(head), "|" + "---|" * len(head)]


def format_table(res: dict[str, Any]) -> str:
    """Markdown tables of ``run``'s results (as pasted into docs/PERFORMANCE.md).

    One row per preset and dtype (float32's labelled with the preset alone, the
    PyTorch columns of the same dtype); then, where two dtypes were measured,
    bfloat16 against float32 side by side; with ``--torch``, bppjax against
    PyTorch for matching dtypes and for each framework's best.
    """
    torch = "torch" in res
    head = ["preset", "forward px/s", "GFLOP/s", "of peak", "of ceiling", "train step s", "compile fwd/train s", "remat mem", "remat time",
            "checkpoint mem", "checkpoint time"]
    if torch:
        head += ["torch px/s", "torch step s", "fwd x torch", "step / torch"]
    rows = _header(head)
    for name, res_p in res["presets"].items():
        for dt, r in dtype_figures(res_p).items():
            rm = r.get("remat", {})
            label = name if dt == "float32" else f"{name} {SHORT.get(dt, dt)}"
            cells = [label, f"{r['forward_px_per_s']:,.0f}", f"{r['forward_gflops']:.0f}", _cell(r, "forward_fraction_of_peak", ".0%"),
                     _cell(r, "forward_fraction_of_ceiling", ".0%"), f"{r['train_step_s']:.3f}",
                     f"{r['forward_compile_s']:.1f} / {r['train_compile_s']:.1f}",
                     _cell(rm, "memory_ratio", ".0%"), _cell(rm, "time_ratio", ".2f", "x"),
                     _cell(rm, "checkpoint_memory_ratio", ".0%"), _cell(rm, "checkpoint_time_ratio", ".2f", "x")]
            if torch:
                cells += [_cell(r, "torch_forward_px_per_s", ",.0f"), _cell(r, "torch_train_step_s", ".3f"),
                          _cell(r, "forward_speedup_vs_torch", ".2f", "x"), _cell(r, "train_time_ratio_vs_torch", ".2f", "x")]
            rows.append(_row(cells))

    def pair(figs: dict[str, dict[str, Any]], key: str, spec: str, ratio_key: str) -> list[str]:
        f32, bf16 = figs.get("float32", {}), figs.get("bfloat16", {})
        return [_cell(f32, key, spec), _cell(bf16, key, spec), _cell(bf16, ratio_key, ".2f", "x")]

    both = [n for n, r in res["presets"].items() if {"float32", "bfloat16"} <= set(dtype_figures(r))]
    if both:
        head = ["preset", "fwd px/s f32", "fwd px/s bf16", "fwd bf16/f32", "step s f32", "step s bf16", "step bf16/f32"]
        if torch:
            head += ["torch px/s f32", "torch px/s bf16", "torch fwd bf16/f32", "torch step s f32", "torch step s bf16",
                     "torch step bf16/f32"]
        rows += ["", "bfloat16 against float32 (fwd: throughput ratio, higher is faster; step: time ratio, lower is faster):", ""]
        rows += _header(head)
        for name in both:
            figs = dtype_figures(res["presets"][name])
            cells = [name, *pair(figs, "forward_px_per_s", ",.0f", "forward_speedup_vs_float32"),
                     *pair(figs, "train_step_s", ".3f", "train_time_ratio_vs_float32")]
            if torch:
                tfigs = dtype_figures(res["torch"].get(name, {}))
                cells += [*pair(tfigs, "forward_px_per_s", ",.0f", "forward_speedup_vs_float32"),
                          *pair(tfigs, "train_step_s", ".3f", "train_time_ratio_vs_float32")]
            rows.append(_row(cells))

    if torch:
        head = ["preset", "bppjax", "PyTorch", "fwd px/s bppjax", "fwd px/s torch", "fwd x torch", "step s bppjax", "step s torch",
                "step / torch"]
        rows += ["", "bppjax against PyTorch (bfloat16: `model.dtype=bfloat16` vs `torch.autocast`; "
                 "best: each framework's fastest dtype):", ""]
        rows += _header(head)
        for name, res_p in res["presets"].items():
            for dt, r in dtype_figures(res_p).items():
                if "forward_speedup_vs_torch" in r:
                    rows.append(_row([name, dt, dt, f"{r['forward_px_per_s']:,.0f}", f"{r['torch_forward_px_per_s']:,.0f}",
                                      f"{r['forward_speedup_vs_torch']:.2f}x", f"{r['train_step_s']:.3f}", f"{r['torch_train_step_s']:.3f}",
                                      f"{r['train_time_ratio_vs_torch']:.2f}x"]))
            b = res_p.get("best_vs_torch")
            if b:
                rows.append(_row([name, f"best (fwd {SHORT[b['forward_dtype']]}, step {SHORT[b['train_dtype']]})",
                                  f"best (fwd {SHORT[b['torch_forward_dtype']]}, step {SHORT[b['torch_train_dtype']]})",
                                  f"{b['forward_px_per_s']:,.0f}", f"{b['torch_forward_px_per_s']:,.0f}",
                                  f"{b['forward_speedup_vs_torch']:.2f}x", f"{b['train_step_s']:.3f}", f"{b['torch_train_step_s']:.3f}",
                                  f"{b['train_time_ratio_vs_torch']:.2f}x"]))

    env = res["env"]
    peaks = res.get("peak_gflops_by_dtype", {"float32": res["peak_gflops"]})
    peak_text = " / ".join(f"{SHORT.get(dt, dt)} {v:.0f}" for dt, v in peaks.items())
    torch_peaks = ""
    if torch:
        t = res["torch"]
        tp = {"float32": t.get("peak_gflops"), "bfloat16": t.get("peak_gflops_bfloat16")}
        torch_peaks = ", " + " / ".join(f"{SHORT[dt]} {v:.0f}" for dt, v in tp.items() if v is not None) + " GFLOP/s (PyTorch)"
    cpu = env.get("cpu") or {}
    flags = [f for f in CPU_FLAGS if cpu.get(f)]
    flag_text = ", ".join(flags) if flags else "none of " + ", ".join(CPU_FLAGS)
    cpu_text = f"{cpu['model_name']} ({flag_text}), " if cpu.get("model_name") else ""
    end = f"{env['loadavg_end'][0]:.1f}" if "loadavg_end" in env else "?"
    rows.append("")
    rows.append(f"matmul peak {peak_text} GFLOP/s (JAX){torch_peaks}"
                + (f"; ceiling {res['ceiling_gflops']:.0f} GFLOP/s" if res.get("ceiling_gflops") else "") + f"; {cpu_text}{env['device']}, {env['cpu_count']} cores, jax {env['jax']}"
                + f"; load average {env['loadavg_start'][0]:.1f} -> {end}")
    return "\n".join(rows)
