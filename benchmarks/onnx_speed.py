"""Forward speed of the same model and tile in ONNX Runtime (CPU) and in XLA:CPU, float32, side by side in one process.

    python benchmarks/onnx_speed.py --json benchmarks/results/onnx_speed.json

For each model (``bpp-sr-x2`` from the zoo, the ``paper`` preset with random
weights) the network is exported with ``bppjax.export`` at a fixed tile
(``--tile``, batch 1) and checked against JAX there (the export's own parity
check); then ONNX Runtime and ``jax.jit(model.apply)`` run the same tile,
alternating, ``--reps`` times each after a warm-up. Reported: median seconds,
output pixels per second and the ratio ``ort_px_per_s / xla_px_per_s``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

import bppjax
from bppjax import export as ex


def paper_model(tile: int) -> bppjax.LoadedModel:
    cfg = bppjax.default_config()
    cfg.model = bppjax.preset("paper")
    model = bppjax.build_model(cfg.model)
    params = jax.jit(model.init)(jax.random.key(0), np.zeros((1, tile, tile, 3), np.float32))["params"]
    return bppjax.LoadedModel(model=model, params=params, config=cfg, step=0, which="random")


def measure(loaded: bppjax.LoadedModel, label: str, tile: int, reps: int, threads: int | None) -> dict:
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        result = ex.export_model(loaded, "onnx", Path(d) / "m.onnx", tile=tile)
        export_s = time.perf_counter() - t0
        ort_run = ex.onnx_runner(result.path, threads)
    xla_run = jax.jit(lambda x: loaded.model.apply({"params": loaded.params}, x))
    x = np.random.default_rng(0).random((1, tile, tile, 3), dtype=np.float32)
    ort_run(x), jax.block_until_ready(xla_run(x))  # warm-up (and compilation)
    times = {"ort": [], "xla": []}
    for _ in range(reps):  # alternating: both see the same load on a shared machine
        t = time.perf_counter(); ort_run(x); times["ort"].append(time.perf_counter() - t)
        t = time.perf_counter(); jax.block_until_ready(xla_run(x)); times["xla"].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    px = tile * tile
    return {
        "model": label, "tile": tile, "batch": 1, "reps": reps, "export_seconds": round(export_s, 1),
        "export_max_abs_diff": result.max_abs_diff,
        "ort_seconds": med["ort"], "xla_seconds": med["xla"],
        "ort_px_per_s": px / med["ort"], "xla_px_per_s": px / med["xla"],
        "ort_over_xla": med["xla"] / med["ort"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tile", type=int, default=96, help="tile side (px), batch 1")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--models", default="bpp-sr-x2,paper", help="comma-separated: zoo names and/or 'paper'")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads (default: its own choice)")
    p.add_argument("--json", default=None, help="write the results here")
    args = p.parse_args(argv)
    rows = []
    for name in args.models.split(","):
        loaded = paper_model(args.tile) if name == "paper" else bppjax.pretrained(name)
        row = measure(loaded, name, args.tile, args.reps, args.threads)
        print(json.dumps(row))
        rows.append(row)
    import onnxruntime

    out = {
        "command": "python benchmarks/onnx_speed.py " + " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "note": "medians of alternating runs in one process on a machine shared with other jobs; compare ratios",
        "machine": f"{platform.processor() or platform.machine()}, {__import__('os').cpu_count()} CPUs",
        "versions": {"jax": jax.__version__, "onnxruntime": onnxruntime.__version__},
        "results": rows,
    }
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
