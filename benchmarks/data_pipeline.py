"""Training-data pipeline: in-memory vs streaming on a folder of synthetic 2K images.

Command (writes benchmarks/results/data_pipeline.json; the images go to a
temporary folder and are deleted)::

    python benchmarks/data_pipeline.py --images 200 --workers 1 2 4

Streaming runs twice: from the PNGs, and from the same images converted to
``.npy`` (``bppjax.data.streaming.convert_to_npy``). For each configuration a child process builds the ``sr.py:x4`` sampler (HR
patch 192, batch 16) over the folder and draws ``--steps`` batches; the parent
reads the child's peak resident memory (``wait4``). Reported: start-up
seconds, patches/s and HR pixels/s of drawing, patches per CPU-second (all
threads: the measure least moved by other jobs on the machine), peak RSS. The streaming
configurations run one after another in the same parent, so their ratios are
side by side; absolute numbers depend on the machine and its load.

The GPU side is an estimate, not a measurement: the paper preset's training
step costs 3x its forward FLOPs (``model.macs_per_pixel()``, 2 FLOP a MAC) per
HR pixel, run at ``--gpu-tflops`` sustained (an assumption: the default 200
TFLOP/s is about a fifth of an H100/H200's dense bfloat16 peak). That gives the
patches/s one GPU consumes, and dividing by the measured patches per
CPU-second of streaming gives the host cores it keeps busy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULT = REPO / "benchmarks" / "results" / "data_pipeline.json"


def make_images(folder: Path, n: int, size: tuple[int, int], seed: int = 0, unique: int = 20) -> None:
    """``n`` photo-like PNGs (smooth colour fields plus texture, so PNG compresses them as it does photos).

    ``unique`` are drawn; the rest are copies of them (decoding and memory cost the same, writing is faster).
    """
    import shutil

    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    for i in range(n):
        if i >= unique:
            shutil.copyfile(folder / f"{i % unique:04d}.png", folder / f"{i:04d}.png")
            continue
        f = rng.uniform(0.002, 0.02, (3, 2))
        phase = rng.uniform(0, 6.3, 3)
        base = np.stack([np.sin(f[c, 0] * yy + f[c, 1] * xx + phase[c]) for c in range(3)], -1)
        im = 127.5 + 90 * base + rng.normal(0, 12, (h, w, 3)).astype(np.float32)
        Image.fromarray(np.clip(im, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png", compress_level=1)


def child(folder: str, stream: bool, workers: int, steps: int) -> dict:
    """Build the x4 sampler over ``folder`` and draw ``steps`` batches (run in its own process)."""
    sys.path.insert(0, str(REPO))
    from bppjax.data import build_sampler
    from bppjax.training.config import load_config_file

    c = load_config_file(str(REPO / "configs" / "sr.py") + ":x4").data
    c.train.dirs = (folder,)
    c.train.stream = stream
    c.workers = workers
    t0 = time.perf_counter()
    sampler = build_sampler(c, seed=0)
    setup = time.perf_counter() - t0
    sampler.batch_at(0)  # the first batch (pipeline fill) is not counted
    t1, cpu1 = time.perf_counter(), time.process_time()
    for _, b in zip(range(steps), sampler.iterate(1)):
        pass
    dt, cpu = time.perf_counter() - t1, time.process_time() - cpu1  # process_time: all threads
    patches = steps * int(c.batch)
    return dict(stream=stream, workers=workers, steps=steps, setup_s=setup, draw_s=dt, draw_cpu_s=cpu,
                patches_per_s=patches / dt, hr_mpx_per_s=patches * int(c.patch) ** 2 / dt / 1e6,
                patches_per_cpu_s=patches / cpu, batch=int(c.batch), patch=int(c.patch))


def run_child(folder: Path, stream: bool, workers: int, steps: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(folder), "--stream", str(int(stream)), "--child-workers", str(workers), "--steps", str(steps)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"child {' '.join(cmd)} failed with {proc.returncode}")
    rec = json.loads(out.strip().splitlines()[-1])
    rec["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    rec["format"] = "png"
    return rec


def gpu_estimate(tflops: float, patch: int, batch: int) -> dict:
    sys.path.insert(0, str(REPO))
    from bppjax.models.presets import build_model, preset

    macs = float(build_model(preset("paper")).macs_per_pixel())
    flop_step = 3 * 2 * macs * patch * patch * batch  # forward + backward ~ 3x forward
    steps_per_s = tflops * 1e12 / flop_step
    return dict(assumption=f"train step = 3 x forward FLOPs (2 FLOP/MAC), {tflops:g} TFLOP/s sustained on one GPU",
                macs_per_px=macs, tflop_per_step=flop_step / 1e12, steps_per_s=steps_per_s,
                patches_per_s=steps_per_s * batch, hr_mpx_per_s=steps_per_s * batch * patch * patch / 1e6)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, nargs=2, default=(1356, 2040), metavar=("H", "W"), help="DIV2K-like 2K images")
    ap.add_argument("--workers", type=int, nargs="+", default=(1, 2, 4))
    ap.add_argument("--steps", type=int, default=8, help="batches drawn per configuration (after the first)")
    ap.add_argument("--gpu-tflops", type=float, default=200.0)
    ap.add_argument("--skip-in-memory", action="store_true")
    ap.add_argument("--out", type=Path, default=RESULT)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--stream", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--child-workers", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child, bool(a.stream), a.child_workers, a.steps)))
        return 0
    with tempfile.TemporaryDirectory(prefix="bppjax_data_bench_") as tmp:
        folder = Path(tmp) / "hr"
        t0 = time.perf_counter()
        make_images(folder, a.images, tuple(a.size))
        print(f"wrote {a.images} images in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        runs = []
        for w in a.workers:
            runs.append(run_child(folder, True, w, a.steps))
            print(json.dumps(runs[-1]), file=sys.stderr)
        sys.path.insert(0, str(REPO))
        from bppjax.data.streaming import convert_to_npy

        t0 = time.perf_counter()
        convert_to_npy(folder, Path(tmp) / "npy", workers=2)
        convert_s = time.perf_counter() - t0
        for w in a.workers:
            runs.append(dict(run_child(Path(tmp) / "npy", True, w, a.steps), format="npy"))
            print(json.dumps(runs[-1]), file=sys.stderr)
        if not a.skip_in_memory:
            runs.append(run_child(folder, False, 2, a.steps))
            print(json.dumps(runs[-1]), file=sys.stderr)
        png_mb = sum(p.stat().st_size for p in folder.iterdir()) / 2**20
    one = next(r for r in runs if r["stream"] and r["workers"] == min(a.workers))
    one_npy = next(r for r in runs if r["format"] == "npy" and r["workers"] == min(a.workers))
    gpu = gpu_estimate(a.gpu_tflops, one["patch"], one["batch"])
    result = dict(
        command="python benchmarks/data_pipeline.py " + " ".join(sys.argv[1:]),
        machine=f"{os.cpu_count()} CPU cores, shared with other jobs while measured",
        images=a.images, size_hw=list(a.size), png_mb=png_mb, runs=runs,
        npy_convert_s=convert_s,
        stream_png_speedup_vs_1_worker={str(r["workers"]): r["patches_per_s"] / one["patches_per_s"] for r in runs if r["stream"] and r["format"] == "png"},
        stream_npy_speedup_vs_1_worker={str(r["workers"]): r["patches_per_s"] / one_npy["patches_per_s"] for r in runs if r["format"] == "npy"},
        npy_over_png_patches_per_s=one_npy["patches_per_s"] / one["patches_per_s"],
        gpu_estimate=gpu,
        # CPU seconds per patch (all threads, robust to the machine's other load) -> busy cores per GPU
        cores_per_gpu_estimate_png=gpu["patches_per_s"] / one["patches_per_cpu_s"],
        cores_per_gpu_estimate_npy=gpu["patches_per_s"] / one_npy["patches_per_cpu_s"],
    )
    mem = [r for r in runs if not r["stream"]]
    if mem:
        result["peak_rss_in_memory_over_stream"] = mem[0]["peak_rss_mb"] / max(r["peak_rss_mb"] for r in runs if r["stream"])
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
