"""Forward and training-step speed of model presets: the library behind ``python -m bppjax.bench``.

Measures, per preset (default ``paper`` and ``tiny``), float32 (and bfloat16 on
GPU):

* forward throughput: output pixels per second, one 256x256 image (batch 1);
* training-step time of the training loop's own ``train_step``: batch of 4 96x96 patches, L1 loss, Adam;
* compile times of both;
* GFLOP/s from the model's analytic MAC count (``model.macs_per_pixel()``) and
  its fraction of the machine's measured peak (a large matmul timed in the same
  process, a lower bound of the hardware ceiling) and of a given ceiling;
* with ``remat: block`` (and ``remat: checkpoint``): the compiled step's temp
  memory and its step time as ratios of the un-rematerialised step's.

``run_torch`` times the PyTorch implementation in ``benchmarks/torch_bpp.py``
(needs ``pip install -e .[bench]``) on the same network in a separate process
(two frameworks in one process halve every figure). Every figure is a median of
``reps`` runs, and ``run`` records the load average so that a contended run can
be spotted.
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
from bppjax.models import build_model, preset
from bppjax.models.presets import ARCH_REMATS
from bppjax.models.layers import compiler_options

#: FMA ceiling of this project's 2-core AVX-512 CPU machines (docs/PERFORMANCE.md).
FMA_CEILING_GFLOPS = 525.0
DEFAULT_PRESETS = ("paper", "tiny")
TORCH_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_bpp.py"


# --------------------------------------------------------------------------- timing


def median_time(fn: Callable[[], Any], reps: int) -> float:
    """Median wall time of ``fn()`` (blocking on its result) over ``reps`` runs."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def peak_gflops(n: int = 4096, reps: int = 5) -> float:
    """float32 n x n matmul rate in this process: a lower bound of the machine's peak."""
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul).lower(a, a).compile()
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


def _init(model, seed: int = 0):
    return jax.jit(model.init)(jax.random.key(seed), jnp.zeros((1, 32, 32, 3), jnp.float32))["params"]


def bench_forward(cfg: ml_collections.ConfigDict, dtype: str = "float32", size: int = 256, batch: int = 1, reps: int = 5) -> dict[str, float]:
    """Forward throughput (output px/s) and compile time of one config."""
    cfg, model = _model(cfg, dtype)
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
    state = jax.jit(functools.partial(create_train_state, model, tx, 0, patch))()
    kx, ky = jax.random.split(jax.random.key(2))
    data = {"input": jax.random.randint(kx, (batch, patch, patch, 3), 0, 256).astype(jnp.uint8),
            "target": jax.random.randint(ky, (batch, patch, patch, 3), 0, 256).astype(jnp.uint8)}
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


def run_torch(presets: Sequence[str], reps: int = 5, size: int = 256, patch: int = 96, batch: int = 4) -> dict[str, Any]:
    """Time ``benchmarks/torch_bpp.py`` on the same presets in a child process."""
    if not TORCH_SCRIPT.is_file():
        raise FileNotFoundError(f"{TORCH_SCRIPT} not found: --torch needs a source checkout of bppjax")
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "torch.json"
        cmd = [sys.executable, str(TORCH_SCRIPT), "--reps", str(reps), "--size", str(size), "--patch", str(patch),
               "--batch", str(batch), "--json", str(out)]
        for p in presets:
            cmd += ["--preset", p]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            hint = " (pip install -e .[bench])" if "No module named 'torch'" in proc.stderr else ""
            raise RuntimeError(f"PyTorch benchmark failed{hint}:\n{proc.stderr[-2000:]}")
        return json.loads(out.read_text())


def add_torch_ratios(results: dict[str, Any], torch_res: dict[str, Any]) -> None:
    """JAX/PyTorch ratios, per preset: forward throughput (higher is better), step time (lower is better)."""
    results["torch"] = torch_res
    for name, r in results["presets"].items():
        t = torch_res.get(name)
        if t:
            r["torch_forward_px_per_s"] = t["forward_px_per_s"]
            r["torch_train_step_s"] = t["train_step_s"]
            r["forward_speedup_vs_torch"] = r["forward_px_per_s"] / t["forward_px_per_s"]
            r["train_time_ratio_vs_torch"] = r["train_step_s"] / t["train_step_s"]


# --------------------------------------------------------------------------- driver


def remat_modes(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The ``remat`` settings the config's architecture implements, besides "none" (``ARCH_REMATS``)."""
    return tuple(m for m in ARCH_REMATS[cfg.arch] if m != "none")


def default_dtypes() -> list[str]:
    """float32, and bfloat16 too on a GPU."""
    return ["float32", "bfloat16"] if jax.default_backend() == "gpu" else ["float32"]


def run(presets: Sequence[str] = DEFAULT_PRESETS, dtypes: Sequence[str] | None = None, reps: int = 5, remat: bool = True,
        torch: bool = False, ceiling_gflops: float = FMA_CEILING_GFLOPS, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Every measurement for ``presets``; the returned dict is what ``--json`` writes.

    Top-level keys ``<preset>`` hold the float32 figures (bfloat16 ones under
    ``<preset>["bfloat16"]``); ``peak_gflops`` is the matmul rate.
    """
    torch_res = None
    if torch:
        # First, in a child process, while this one has run nothing: XLA's worker
        # threads stay busy for a while after a computation and would slow the child.
        log("PyTorch (separate process) ...")
        torch_res = run_torch(presets, reps)
    dtypes = list(dtypes or default_dtypes())
    env = {
        "jax": jax.__version__, "backend": jax.default_backend(), "device": str(jax.devices()[0].device_kind),
        "cpu_count": os.cpu_count(), "machine": platform.machine(), "loadavg_start": os.getloadavg(),
    }
    log(f"matmul peak ({env['backend']}) ...")
    peak = peak_gflops(reps=reps)
    out: dict[str, Any] = {"env": env, "peak_gflops": peak, "ceiling_gflops": ceiling_gflops, "presets": {}}
    for name in presets:
        cfg = preset(name)
        res: dict[str, Any] = {"macs_per_pixel": macs_per_pixel(cfg)}
        for dtype in dtypes:
            log(f"{name} {dtype}: forward ...")
            r = bench_forward(cfg, dtype, reps=reps)
            log(f"{name} {dtype}: train step ...")
            r.update(bench_train(cfg, dtype, reps=reps))
            r["compile_s"] = r["forward_compile_s"] + r["train_compile_s"]
            r["forward_fraction_of_peak"] = r["forward_gflops"] / peak
            r["forward_fraction_of_ceiling"] = r["forward_gflops"] / ceiling_gflops
            r["train_fraction_of_peak"] = r["train_gflops"] / peak
            if remat:
                modes = remat_modes(cfg)
                log(f"{name} {dtype}: remat {' and '.join(modes)} vs none ...")
                r["remat"] = remat_comparison(cfg, dtype, reps=reps, modes=modes)
            if dtype == "float32":
                res.update(r)
            else:
                res[dtype] = r
        out["presets"][name] = res
        out[name] = res
    out["peak_gflops_end"] = peak_gflops(reps=reps)
    out["peak_gflops"] = max(peak, out["peak_gflops_end"])
    for r in out["presets"].values():
        if "forward_gflops" in r:
            r["forward_fraction_of_peak"] = r["forward_gflops"] / out["peak_gflops"]
            r["train_fraction_of_peak"] = r["train_gflops"] / out["peak_gflops"]
    if torch_res is not None:
        add_torch_ratios(out, torch_res)
    env["loadavg_end"] = os.getloadavg()
    return out


def _cell(figures: dict[str, float], key: str, spec: str, unit: str = "") -> str:
    """``figures[key]`` formatted with ``spec``, or "-" where it was not measured."""
    return format(figures[key], spec) + unit if key in figures else "-"


def format_table(res: dict[str, Any]) -> str:
    """A Markdown table of ``run``'s results (as pasted into docs/PERFORMANCE.md)."""
    torch = "torch" in res
    head = ["preset", "forward px/s", "GFLOP/s", "of peak", "of ceiling", "train step s", "compile fwd/train s", "remat mem", "remat time",
            "checkpoint mem", "checkpoint time"]
    if torch:
        head += ["torch px/s", "torch step s", "fwd x torch", "step / torch"]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in res["presets"].items():
        rm = r.get("remat", {})
        cells = [name, f"{r['forward_px_per_s']:,.0f}", f"{r['forward_gflops']:.0f}", f"{r['forward_fraction_of_peak']:.0%}",
                 f"{r['forward_fraction_of_ceiling']:.0%}", f"{r['train_step_s']:.3f}",
                 f"{r['forward_compile_s']:.1f} / {r['train_compile_s']:.1f}",
                 _cell(rm, "memory_ratio", ".0%"), _cell(rm, "time_ratio", ".2f", "x"),
                 _cell(rm, "checkpoint_memory_ratio", ".0%"), _cell(rm, "checkpoint_time_ratio", ".2f", "x")]
        if torch:
            ok = "forward_speedup_vs_torch" in r
            cells += [f"{r['torch_forward_px_per_s']:,.0f}" if ok else "-", f"{r['torch_train_step_s']:.3f}" if ok else "-",
                      f"{r['forward_speedup_vs_torch']:.2f}x" if ok else "-", f"{r['train_time_ratio_vs_torch']:.2f}x" if ok else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    env = res["env"]
    rows.append("")
    rows.append(f"matmul peak {res['peak_gflops']:.0f} GFLOP/s (JAX)"
                + (f", {res['torch']['peak_gflops']:.0f} GFLOP/s (PyTorch)" if torch else "")
                + f"; ceiling {res['ceiling_gflops']:.0f} GFLOP/s; {env['device']}, {env['cpu_count']} cores, jax {env['jax']}"
                + f"; load average {env['loadavg_start'][0]:.1f} -> {env.get('loadavg_end', ('?',))[0]:.1f}")
    return "\n".join(rows)
