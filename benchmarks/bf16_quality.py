"""bfloat16 against float32 in quality: inference of the same weights, and training at equal steps.

* ``inference``: each per-factor zoo model (``bpp-sr-x2``, ``-x3``, ``-x4``) scored
  on Set5 at its factor (Y_M, border = scale, tiled as ``LoadedModel.enhance``)
  with its float32 weights computed in float32 and in bfloat16
  (``model.dtype=bfloat16``: bfloat16 activations and convolutions, which on CPU
  run as GEMMs). Goal: |delta| <= 0.01 dB.
* ``training``: the embedded default (``python -m bppjax.train``: ``small``
  preset, SR x2, 2,000 steps) trained from the same seed once with
  ``model.dtype=float32`` and once with ``model.dtype=bfloat16`` (float32 master
  weights and Adam state either way), both scored on Set5 x2 at the last step.
  Goal: the bfloat16 run within 0.05 dB of the float32 run. Wall time and
  seconds per step of both runs are recorded (run them on a quiet machine).

Runs resume from their workdirs (``--runs``); results go to
``benchmarks/results/bf16_quality.json``.

    python benchmarks/bf16_quality.py --runs ../runs/bf16_quality
    python benchmarks/bf16_quality.py --part inference
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import jax

import bppjax
from bppjax import benchmark
from bppjax.evaluation import evaluate
from bppjax.training.config import default_config
from bppjax.training.writers import METRICS_FILE, read_records

SET5 = Path(__file__).resolve().parents[2] / "shared" / "data" / "Set5"
RESULTS = Path(__file__).resolve().parent / "results" / "bf16_quality.json"
ZOO = {"bpp-sr-x2": 2, "bpp-sr-x3": 3, "bpp-sr-x4": 4}
DTYPES = ("float32", "bfloat16")


def set5_psnr(loaded, scale: int) -> dict[str, Any]:
    """Y_M PSNR/SSIM on Set5 at ``scale``, with the seconds it took."""
    t = time.time()
    r = evaluate({scale: loaded.enhance}, [SET5], [scale], progress=False, per_image=True)["Set5"][scale]
    return {"psnr": r["psnr"], "ssim": r["ssim"], "psnr_per_image": r["psnr_per_image"], "seconds": time.time() - t}


def part_inference() -> dict[str, Any]:
    out = {}
    for name, scale in ZOO.items():
        res = {dt: set5_psnr(bppjax.pretrained(name, [f"model.dtype={dt}"]), scale) for dt in DTYPES}
        res["delta_db"] = res["bfloat16"]["psnr"] - res["float32"]["psnr"]
        res["max_abs_delta_per_image_db"] = max(abs(a - b) for a, b in zip(res["bfloat16"]["psnr_per_image"],
                                                                            res["float32"]["psnr_per_image"]))
        out[name] = res
        print(f"{name} x{scale}: float32 {res['float32']['psnr']:.4f}, bfloat16 {res['bfloat16']['psnr']:.4f} dB "
              f"(delta {res['delta_db']:+.4f})", flush=True)
    return out


def part_training(runs: Path, steps: int | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dt in DTYPES:
        c = default_config()
        c.model.dtype = dt
        if steps:
            c.train.steps = steps
        workdir = runs / f"default-{dt}"
        result = bppjax.train_and_evaluate(c, workdir)
        records = read_records(workdir / METRICS_FILE)
        sps = [r["steps_per_sec"] for r in records if r.get("kind") == "train" and r["step"] > 1]  # step 1 compiles
        out[dt] = {"steps": result.step, "train_seconds": result.seconds,
                   "median_seconds_per_step": 1 / sorted(sps)[len(sps) // 2] if sps else None,
                   "set5_x2": set5_psnr(bppjax.load_model(workdir, which="latest"), 2)}
        print(f"default {dt}: {result.step} steps in {result.seconds:.0f} s, Set5 x2 {out[dt]['set5_x2']['psnr']:.4f} dB", flush=True)
    out["delta_db"] = out["bfloat16"]["set5_x2"]["psnr"] - out["float32"]["set5_x2"]["psnr"]
    out["step_time_ratio"] = out["bfloat16"]["median_seconds_per_step"] / out["float32"]["median_seconds_per_step"]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", choices=("inference", "training", "all"), default="all")
    ap.add_argument("--runs", type=Path, default=Path("../runs/bf16_quality"), help="workdirs of the training part")
    ap.add_argument("--steps", type=int, default=0, help="training steps (default: the default config's)")
    ap.add_argument("--json", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if not SET5.is_dir():
        print(f"error: Set5 not found at {SET5}", file=sys.stderr)
        return 2
    res: dict[str, Any] = json.loads(args.json.read_text()) if args.json.is_file() else {}
    res["env"] = {"jax": jax.__version__, "backend": jax.default_backend(), "cpu_count": os.cpu_count(),
                  "cpu": benchmark.cpu_features(), "loadavg": os.getloadavg()}
    if args.part in ("inference", "all"):
        res["inference"] = part_inference()
    if args.part in ("training", "all"):
        res["training"] = part_training(args.runs, args.steps)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
