"""How fast ``python -m bppjax.enhance`` is, against the network's own forward throughput, in one run.

    python benchmarks/enhance_speed.py                      # writes benchmarks/results/enhance_speed.json
    python benchmarks/enhance_speed.py --skip end_to_end breakdown folder --update   # redo one part

Measured side by side in this one process and its children (the machine may
be shared: compare the ratios, not the absolute seconds):

- ``forward_px_per_s``: ``python -m bppjax.bench --preset medium``'s forward
  figure (``bppjax.benchmark.bench_forward``, 256x256, batch 1): the network
  of ``bpp-sr-x2`` (the medium preset) on its own; measured again after the
  end-to-end runs (``forward_after_end_to_end``) to show how the load moved.
- ``end_to_end``: the command on a 1600x1200 JPEG (``skimage.data.astronaut``
  resized) at x2 with the shipped ``bpp-sr-x2``, as a user runs it, start-up
  included: the default mode with an empty compilation cache and again with
  the cache the first run filled, ``--mode auto`` (the evaluation protocol,
  the command's former default), the default with bfloat16 compute, and
  (``stride72_cold_cache``, not run unless named in ``--runs``) the default
  with ``--stride 72``: as many tiles as the first ``fast`` setting, and
  (``streams1_cold_cache``, likewise) the default with ``--streams 1``, one
  network call in flight at a time. Output px/s and its ratio to ``forward_px_per_s``.
- ``breakdown``: the default's stages in this process, one after the other:
  start-up (a child importing the command), model load, decode, bicubic
  pre-upscale (whole image, and by the bands the command streams), compile,
  network by tiles (gathering and blending included), blending alone (the same
  tiling with an identity network), quantise and encode; network pixels per
  output pixel.
- ``compile``: seconds to lower and compile the default's tile shape in a
  child with an empty persistent cache, and in a second child reading it.
- ``folder``: 20 photos of 20 sizes through ``enhance_files`` (reading,
  pre-upscale and writing on worker threads): wall time against the sum of the
  network's seconds, and the number of compiled tile shapes.
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
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "enhance_speed.json"
MODEL = "bpp-sr-x2"
PHOTO_SIZE = (1600, 1200)  # width, height: about 2 Mpx, 3200x2400 out at x2


def make_photo(path: Path, size: tuple[int, int] = PHOTO_SIZE, name: str = "astronaut") -> Path:
    """An RGB JPEG (quality 95) of ``size`` (W, H) from a scikit-image photograph, Lanczos-resized."""
    from PIL import Image

    from bppjax.data.embedded import load_embedded

    (_, image), = load_embedded([name])
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).resize(size, Image.LANCZOS).save(path, quality=95)
    return path


def run_command(args: Sequence[str], cache: Path) -> dict:
    """``python -m bppjax.enhance ARGS --quiet`` in a child with its compilation cache in ``cache``: wall seconds."""
    env = {**os.environ, "BPPJAX_CACHE_DIR": str(cache)}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "bppjax.enhance", *args, "--quiet"], capture_output=True, text=True, env=env,
                          cwd=REPO)
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise RuntimeError(f"enhance failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return {"wall_s": round(wall, 2), "stderr_first_line": proc.stderr.splitlines()[0] if proc.stderr else ""}


E2E_RUNS = ("default_cold_cache", "default_warm_cache", "auto_cold_cache", "default_bfloat16_cold_cache", "stride72_cold_cache",
            "streams1_cold_cache")


def end_to_end(photo: Path, out: Path, forward_px_per_s: float, which: Sequence[str] = E2E_RUNS) -> dict:
    from PIL import Image

    w, h = Image.open(photo).size
    out_px = 4 * w * h
    runs = {}
    with tempfile.TemporaryDirectory() as c1, tempfile.TemporaryDirectory() as c2, tempfile.TemporaryDirectory() as c3, \
            tempfile.TemporaryDirectory() as c4:
        base = [str(photo), "--scale", "2", "--out"]
        commands = {"default_cold_cache": ([*base, str(out / "a")], c1), "default_warm_cache": ([*base, str(out / "b")], c1),
                    "auto_cold_cache": ([*base, str(out / "c"), "--mode", "auto"], c2),
                    "default_bfloat16_cold_cache": ([*base, str(out / "d"), "--config.model.dtype=bfloat16"], c3),
                    # the default with --stride 72: the tile count (and so the speed) of the first fast setting (stride 72, flush)
                    "stride72_cold_cache": ([*base, str(out / "e"), "--stride", "72"], c3),
                    # the default with one network call in flight at a time (before --streams)
                    "streams1_cold_cache": ([*base, str(out / "f"), "--streams", "1"], c4)}
        for name in which:
            runs[name] = run_command(commands[name][0], Path(commands[name][1]))
    for r in runs.values():
        r["output_px_per_s"] = round(out_px / r["wall_s"])
        r["ratio_to_forward"] = round(out_px / r["wall_s"] / forward_px_per_s, 3)
    return {"output_px": out_px, **runs}


def breakdown(photo: Path, out: Path) -> dict:
    """The default mode's stages, timed one after the other in this process."""
    import jax

    from bppjax import tiling
    from bppjax.files import quantise
    from bppjax.image.io import read_photo, write_image
    from bppjax.image.resize_bands import imresize_bands
    from bppjax.inference import network_input
    from bppjax.zoo import pretrained

    t = {}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import bppjax.enhance"], check=True, cwd=REPO)
    t["startup_import_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = pretrained(MODEL)
    t["load_model_s"] = time.perf_counter() - t0
    model, params = loaded.model, loaded.params
    spec = tiling.resolve_spec(model, tiling.ENHANCE_MODE, patch=loaded.patch)
    t0 = time.perf_counter()
    photo_ = read_photo(photo)
    t["decode_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    x = network_input(photo_.samples, model, scale=2).pixels
    t["pre_upscale_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in imresize_bands(photo_.samples, 2.0)[1]:
        pass
    t["pre_upscale_by_bands_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiling.compile_tiles(model, params, spec)
    t["compile_s"] = time.perf_counter() - t0
    apply_fn = tiling.make_apply_fn(model, params)
    t0 = time.perf_counter()
    y = tiling.tiled_apply(apply_fn, x, spec, multiple=model.multiple)
    t["network_tiles_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    tiling.tiled_apply(lambda tiles: tiles, x, spec, multiple=model.multiple)
    t["blending_alone_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    q = quantise(np.clip(y, 0, 1), 8)
    write_image(out / "breakdown.jpg", q, bit_depth=8, quality=95)
    t["quantise_encode_s"] = time.perf_counter() - t0
    h, w = x.shape[:2]
    tiles = tiling.tile_count(h, w, spec, model.multiple)
    batch = tiling.batch_size(spec, spec.tile, spec.tile)
    res = {k: round(v, 3) for k, v in t.items()}
    res.update(spec=dict(tile=spec.tile, stride=spec.stride, batch=batch), tiles=tiles,
               network_px_per_output_px=round(tiles * spec.tile**2 / (h * w), 3),
               network_px_per_s=round(tiles * spec.tile**2 / t["network_tiles_s"]), backend=jax.default_backend())
    return res


def compile_child(cache: Path) -> float:
    """Seconds to compile (lower and compile, not run) the default's tile shape with the command's persistent cache in ``cache``."""
    code = ("import time, jax, numpy as np; from bppjax import tiling; from bppjax.enhance import enable_compilation_cache; "
            f"from bppjax.zoo import pretrained; m = pretrained({MODEL!r}); enable_compilation_cache(); "
            "s = tiling.resolve_spec(m.model, tiling.ENHANCE_MODE, patch=m.patch); "
            "x = np.zeros((tiling.batch_size(s, s.tile, s.tile), s.tile, s.tile, 3), np.float32); t = time.perf_counter(); "
            "jax.jit(m.model.apply).lower({'params': m.params}, x).compile(); print(time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO,
                          env={**os.environ, "BPPJAX_CACHE_DIR": str(cache)})
    return round(float(proc.stdout.split()[-1]), 3)


def folder(tmp: Path, count: int = 20) -> dict:
    """``count`` photos of as many sizes (about 0.09 Mpx each) through the pipelined ``enhance_files``."""
    import jax

    from bppjax import tiling
    from bppjax.data.embedded import NAMES
    from bppjax.files import enhance_files, plan_outputs
    from bppjax.zoo import pretrained

    photos = [make_photo(tmp / "folder" / f"{i:02d}.jpg", (320 + 8 * i, 280 - 4 * i), NAMES[i % len(NAMES)])
              for i in range(count)]
    loaded = pretrained(MODEL)
    jobs = plan_outputs(photos, tmp / "folder_out")
    before = tiling._jitted_apply(loaded.model)._cache_size()
    t0 = time.perf_counter()
    outcomes = enhance_files(jobs, loaded.model, loaded.params, progress=False, log=lambda s: None, scale=2.0,
                             patch=loaded.patch)
    wall = time.perf_counter() - t0
    failed = [o for o in outcomes if o.error]
    if failed:
        raise RuntimeError(f"folder run failed: {failed[0].error}")
    network = sum(o.network_seconds for o in outcomes)
    stages = sum(o.seconds for o in outcomes)
    return {"images": count, "sizes": len({o.size_in for o in outcomes}), "wall_s": round(wall, 2),
            "network_s": round(network, 2), "stage_seconds_sum": round(stages, 2),
            "network_share_of_wall": round(network / wall, 3),
            "compiled_shapes": tiling._jitted_apply(loaded.model)._cache_size() - before,
            "output_mpx": round(sum(o.size_out[0] * o.size_out[1] for o in outcomes) / 1e6, 2),
            "backend": jax.default_backend()}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", type=Path, default=RESULTS)
    p.add_argument("--skip", nargs="*", default=[], choices=["end_to_end", "breakdown", "compile", "folder"])
    p.add_argument("--runs", nargs="+", default=list(E2E_RUNS[:4]), choices=E2E_RUNS, help="end-to-end runs (the warm one needs the cold one first)")
    p.add_argument("--update", action="store_true", help="keep the figures of the skipped parts from an existing --json")
    a = p.parse_args(argv)
    from bppjax.benchmark import bench_forward, cpu_features
    from bppjax.models.presets import preset

    res: dict = {"command": "python benchmarks/enhance_speed.py", "model": MODEL, "photo": f"{PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} -> x2",
                 "cpu": cpu_features(), "load_average_at_start": os.getloadavg()}
    res["forward"] = bench_forward(preset("medium"), size=256, reps=5)
    fwd = res["forward"]["forward_px_per_s"]
    print(json.dumps(res["forward"]), flush=True)
    with tempfile.TemporaryDirectory(prefix="bpp_enh_") as tmp:
        tmp = Path(tmp)
        photo = make_photo(tmp / "photo.jpg")
        if "end_to_end" not in a.skip:
            res["end_to_end"] = end_to_end(photo, tmp, fwd, a.runs)
            res["forward_after_end_to_end"] = bench_forward(preset("medium"), size=256, reps=5)
            print(json.dumps(res["end_to_end"]), json.dumps(res["forward_after_end_to_end"]), flush=True)
        if "breakdown" not in a.skip:
            res["breakdown"] = breakdown(photo, tmp)
            print(json.dumps(res["breakdown"]), flush=True)
        if "compile" not in a.skip:
            with tempfile.TemporaryDirectory() as cache:
                res["compile"] = {"first_run_s": compile_child(Path(cache)), "second_run_s": compile_child(Path(cache))}
            print(json.dumps(res["compile"]), flush=True)
        if "folder" not in a.skip:
            res["folder"] = folder(tmp)
            print(json.dumps(res["folder"]), flush=True)
    res["load_average_at_end"] = os.getloadavg()
    if a.update and a.json.is_file():
        old = json.loads(a.json.read_text())
        parts = [k for k in ("end_to_end", "breakdown", "compile", "folder") if k not in a.skip]
        res = {**old, **{k: v for k, v in res.items() if k not in ("forward", "load_average_at_start")},
               "updated": {"parts": parts, "forward": res["forward"], "load_average_at_start": res["load_average_at_start"]},
               "before_update": {k: old[k] for k in parts if k in old}}
    a.json.parent.mkdir(parents=True, exist_ok=True)
    a.json.write_text(json.dumps(res, indent=1) + "\n")
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
