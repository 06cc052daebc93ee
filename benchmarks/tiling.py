"""Tiled inference benchmarks; figures recorded in docs/ENHANCE.md.

Commands (2-core CPU; each prints its figures)::

    # 0. a briefly trained `small` x2 SR model (random init makes PSNR meaningless)
    python benchmarks/tiling.py train --workdir runs/tiling_small_x2 --steps 700
    # 1. tiled == whole image without instance norm, at the receptive margin
    python benchmarks/tiling.py exact
    # 2. Set5 x2, Y_M PSNR and time: paper mode (tile 96, stride 16) vs the default
    python benchmarks/tiling.py set5 --checkpoint runs/tiling_small_x2
    # 3. peak resident memory enhancing a 7680x4320 image (`small` preset)
    python benchmarks/tiling.py memory --checkpoint runs/tiling_small_x2

Expected: (1) max |tiled - whole| ~1e-7; (2) default within 0.02 dB of paper
mode at >= 20x its speed; (3) peak RSS < 4 GB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


# --------------------------------------------------------------------------- 0. train


def train(workdir: Path, steps: int, patch: int = 96, batch: int = 16, lr: float = 1e-3, seed: int = 0, save_every: int = 100) -> None:
    """Minimal optax L1 loop: `small` BPP (with IN), x2 SR on T91; saved with ``save_model``."""
    import jax
    import jax.numpy as jnp
    import ml_collections
    import optax

    from bppjax.workdir import save_model
    from bppjax.data.pairs import sr_pairs
    from bppjax.image.io import read_image
    from bppjax.models.presets import build_model, preset

    files = sorted((DATA / "T91").iterdir())
    pairs = sr_pairs(((f.stem, read_image(f, dtype="uint8")) for f in files), scales=(2,))
    pairs = [p for p in pairs if min(p.shape) >= patch]
    cfg = ml_collections.ConfigDict(dict(model=preset("small"), data=dict(scales=(2,), patch=patch, batch=batch)))
    model = build_model(cfg.model)
    rng = np.random.default_rng(seed)
    params = model.init(jax.random.key(seed), jnp.zeros((1, patch, patch, 3)))["params"]
    sched = optax.cosine_decay_schedule(lr, steps, alpha=0.1)
    opt = optax.adam(sched)
    state = opt.init(params)

    def loss_fn(p, x, y):
        return jnp.mean(jnp.abs(model.apply({"params": p}, x) - y))

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        upd, s = opt.update(g, s, p)
        return optax.apply_updates(p, upd), s, loss

    def sample() -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for _ in range(batch):
            pr = pairs[rng.integers(len(pairs))]
            h, w = pr.shape
            i, j = 2 * rng.integers((h - patch) // 2 + 1), 2 * rng.integers((w - patch) // 2 + 1)
            x, y = pr.input[i : i + patch, j : j + patch], pr.target[i : i + patch, j : j + patch]
            k = rng.integers(8)
            x, y = np.rot90(x, k % 4), np.rot90(y, k % 4)
            if k >= 4:
                x, y = x[:, ::-1], y[:, ::-1]
            xs.append(x), ys.append(y)
        return np.stack(xs).astype(np.float32) / 255, np.stack(ys).astype(np.float32) / 255

    t0 = time.time()
    for i in range(steps):
        params, state, loss = step(params, state, *sample())
        if i % 100 == 0 or i == steps - 1:
            print(f"step {i:5d}  l1 {float(loss):.5f}  {time.time() - t0:6.0f} s", flush=True)
        if (i + 1) % save_every == 0 and i + 1 < steps:
            save_model(workdir, cfg, params, step=i + 1)  # usable if the run is cut short
    save_model(workdir, cfg, params, step=steps)
    print(f"saved {workdir} ({steps} steps, {time.time() - t0:.0f} s)")


# --------------------------------------------------------------------------- 1. exact


def exact(size: tuple[int, int] = (150, 190), tile: int = 96) -> dict:
    """Tiled vs whole-image output of a no-IN `small` model (random weights), by margin."""
    import jax

    from bppjax.models.presets import build_model, preset
    from bppjax.tiling import probe_receptive_margin, receptive_margin, tiled_inference

    cfg = preset("small")
    cfg.instance_norm = False
    model = build_model(cfg)
    x = np.random.default_rng(0).random((*size, 3), dtype=np.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x[None])["params"]
    rng = np.random.default_rng(1)  # Gaussian weights, std 1/sqrt(fan-in): every path live
    params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32), shapes)
    whole = np.asarray(jax.jit(model.apply)({"params": params}, x[None]))[0]
    r = receptive_margin(model)
    rows = {"receptive_margin": r, "probe": probe_receptive_margin(model)}
    for margin in (0, r // 2, r):
        stride = (tile - 2 * r) // model.multiple * model.multiple
        out = tiled_inference(model, params, x, tile=tile, stride=stride, margin=margin)
        rows[f"max_abs_err_margin_{margin}"] = float(np.abs(out - whole).max())
    print(json.dumps(rows, indent=1))
    return rows


# --------------------------------------------------------------------------- 2. set5


def set5(checkpoint: Path, modes: Sequence[str], repeats: int = 1) -> list[dict]:
    """Y_M PSNR (shave 2) and warm wall time per tiling setting on Set5 x2."""
    from bppjax.workdir import load_model
    from bppjax.data.pairs import sr_pairs
    from bppjax.image.io import read_image
    from bppjax.metrics import psnr
    from bppjax.tiling import BATCH_PIXELS, make_apply_fn, plan_tiles, resolve_spec, tile_count, tiled_apply

    loaded = load_model(checkpoint)
    model, patch = loaded.model, int(loaded.config.data.patch)
    pairs = sr_pairs(((f.stem, read_image(f, dtype="uint8")) for f in sorted((DATA / "Set5").glob("*.png"))), scales=(2,))
    apply_fn = make_apply_fn(model, loaded.params)
    results = []
    base = float(np.mean([psnr(p.target, p.input, shave=2) for p in pairs]))
    print(f"bicubic: {base:.3f} dB")
    for name in modes:
        mode, kw = _parse_setting(name)
        spec = resolve_spec(model, mode, patch=patch, **kw)
        outs, times, tiles, compiled = [], [], 0, set()
        for p in pairs:
            x = p.input.astype(np.float32) / 255
            plan = plan_tiles(*(-(-n // model.multiple) * model.multiple for n in x.shape[:2]), spec, model.multiple)
            shape = (plan.tile_h, plan.tile_w, min(spec.batch or BATCH_PIXELS // (plan.tile_h * plan.tile_w) or 1, plan.count))
            if shape not in compiled:  # time warm runs only
                tiled_apply(apply_fn, x, spec, multiple=model.multiple)
                compiled.add(shape)
            best = float("inf")
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = tiled_apply(apply_fn, x, spec, multiple=model.multiple)
                best = min(best, time.perf_counter() - t0)
            outs.append(np.clip(y, 0, 1)), times.append(best)
            tiles += tile_count(*x.shape[:2], spec, model.multiple)
        score = float(np.mean([psnr(p.target, y, shave=2) for p, y in zip(pairs, outs)]))
        row = dict(setting=name, tile=spec.tile, stride=spec.stride, margin=spec.margin, tiles=tiles, psnr=score, seconds=sum(times))
        results.append(row)
        print(f"{name:28s} tiles {tiles:5d}  PSNR {score:.4f} dB  time {sum(times):7.2f} s", flush=True)
    ref = next((r for r in results if r["setting"] == "paper"), None)
    if ref:
        for r in results:
            print(f"{r['setting']:28s} dPSNR vs paper {r['psnr'] - ref['psnr']:+.4f} dB  speed-up {ref['seconds'] / r['seconds']:6.1f}x")
    return results


def _parse_setting(name: str) -> tuple[str, dict]:
    """``auto``, ``paper``, ``whole`` or ``MODE:tile=T,stride=S,margin=M,window=P,spread=0|1``.

    ``window=P``: the Hamming window's power (``TileSpec.window_power``); ``spread=1``:
    tiles spaced evenly (``TileSpec.spread``); both for ``quality`` only.
    """
    mode, _, rest = name.partition(":")
    kw = {k: (float(v) if "." in v else int(v)) for k, v in (item.split("=") for item in rest.split(",") if item)}
    return mode, kw


# --------------------------------------------------------------------------- 2b. quality by setting, every zoo model


ZOO_SR = ("bpp-sr-x2", "bpp-sr-x3", "bpp-sr-x4")
#: Every SR model of the zoo; ``bpp-sr-multi`` is scored at each of ``MULTI_SCALES``.
ZOO_ALL = (*ZOO_SR, "bpp-sr-multi")
MULTI_SCALES = (2, 3, 4)


#: The embedded photographs settings are chosen on (the held-out two and three of the training ones; not the largest).
CHOOSE_ON = ("chelsea", "rocket", "coffee", "astronaut", "motorcycle_left")


class TileCache:
    """``apply_fn`` memoised per tile: settings that share tile positions compute each tile once.

    Keyed by the tile's bytes and the batch size of the call (outputs are those of
    the same call shape, so a cached result is what ``apply_fn`` returns for it).
    """

    def __init__(self, apply_fn):
        self.apply_fn, self.store, self.computed, self.hits = apply_fn, {}, 0, 0

    def __call__(self, tiles: np.ndarray) -> np.ndarray:
        import hashlib

        keys = [(len(tiles), hashlib.blake2b(t.tobytes(), digest_size=16).digest()) for t in tiles]
        if all(k in self.store for k in keys):
            self.hits += len(keys)
            return np.stack([self.store[k] for k in keys])
        out = np.asarray(self.apply_fn(tiles))
        self.computed += len(keys)
        for k, o in zip(keys, out):
            self.store[k] = o
        return out


def quality(data: Sequence[str], settings: Sequence[str], models: Sequence[str] = ZOO_SR, json_path: Path | None = None,
            overrides: Sequence[str] = (), scales: Sequence[int] = MULTI_SCALES) -> list[dict]:
    """Y_M PSNR (shave = scale) and network pixels per output pixel, per zoo model, image set and tiling setting.

    ``data`` names image sets: ``embedded`` (``CHOOSE_ON``, scikit-image photographs
    of ``bppjax.data.embedded``, on which settings are chosen) or folders of
    ``../shared/data`` (``Set5``, ``Set14``: reporting only). A model trained on
    several factors (``bpp-sr-multi``) is scored at each of ``scales``. Network
    pixels count every tile once (a padded last batch aside). Each row has the
    per-image scores and, against ``auto`` of the same model, factor and data, the
    mean difference (``dpsnr_vs_auto``) and the worst single image's (``worst_image_dpsnr_vs_auto``).
    """
    from bppjax.data.embedded import load_embedded
    from bppjax.image.degrade import sr_input
    from bppjax.image.io import read_image
    from bppjax.metrics import psnr
    from bppjax.tiling import make_apply_fn, resolve_spec, tile_count, tiled_apply
    from bppjax.zoo import pretrained

    rows = []
    for name in models:
        loaded = pretrained(name, overrides)
        patch, trained = loaded.patch, [int(s) for s in loaded.config.data.scales]
        for scale in (trained if len(trained) == 1 else [s for s in scales if s in trained]):
            model = loaded.at_factor(scale).model  # a model conditioned on the factor is told it
            for dataset in data:
                apply_fn = TileCache(make_apply_fn(model, loaded.params))  # per model, factor and set: bounded memory
                if dataset == "embedded":
                    images = load_embedded(CHOOSE_ON)
                else:
                    images = [(f.stem, read_image(f, dtype="uint8")) for f in sorted((DATA / dataset).glob("*.png"))]
                samples = [(n, sr_input(hr, scale)) for n, hr in images]
                for setting in settings:
                    mode, kw = _parse_setting(setting)
                    extra = {k: kw.pop(k) for k in ("window", "spread") if k in kw}
                    spec = resolve_spec(model, mode, patch=patch, **kw)
                    if "window" in extra:
                        spec = dataclasses.replace(spec, window_power=extra["window"])
                    if "spread" in extra:
                        spec = dataclasses.replace(spec, spread=bool(extra["spread"]))
                    scores, net_px, out_px, t0 = {}, 0, 0, time.perf_counter()
                    for n, sample in samples:
                        x = sample.net_input.astype(np.float32) / 255
                        y = np.clip(tiled_apply(apply_fn, x, spec, multiple=model.multiple), 0, 1)
                        scores[n] = round(float(psnr(sample.hr, y, shave=scale)), 4)
                        h, w = x.shape[:2]
                        tiles = tile_count(h, w, spec, model.multiple)
                        net_px += tiles * (spec.tile or 0) ** 2 if spec.tile else h * w
                        out_px += h * w
                    row = dict(model=name, scale=scale, overrides=list(overrides), data=dataset, setting=setting, tile=spec.tile,
                               stride=spec.stride, margin=spec.margin, window_power=spec.window_power, spread=spec.spread,
                               psnr=round(float(np.mean(list(scores.values()))), 4), network_px_per_output_px=round(net_px / out_px, 3),
                               per_image=scores)
                    rows.append(row)
                    print(json.dumps(row), f"({time.perf_counter() - t0:.0f} s)", flush=True)
    for r in rows:  # difference to the evaluation protocol (`auto`) of the same model, factor and data
        ref = next((q for q in rows if q["model"] == r["model"] and q["scale"] == r["scale"] and q["data"] == r["data"]
                    and q["setting"] == "auto" and q["overrides"] == r["overrides"]), None)
        r["dpsnr_vs_auto"] = None if ref is None else round(r["psnr"] - ref["psnr"], 4)
        r["worst_image_dpsnr_vs_auto"] = None if ref is None else round(min(r["per_image"][n] - ref["per_image"][n] for n in r["per_image"]), 4)
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(rows, indent=1) + "\n")
    return rows


# --------------------------------------------------------------------------- 3. memory


def memory(checkpoint: Path, size: tuple[int, int] = (4320, 7680), scale: float = 1.0, extra: Sequence[str] = ()) -> dict:
    """Enhance a synthetic 8K PNG with ``python -m bppjax.enhance`` in a child; its peak RSS."""
    import tempfile

    from PIL import Image

    tmp = Path(tempfile.mkdtemp(prefix="bpp_8k_"))
    src = sorted((DATA / "B100").glob("*.png"))[0]
    h, w = int(round(size[0] / scale)), int(round(size[1] / scale))
    Image.open(src).convert("RGB").resize((w, h), Image.BICUBIC).save(tmp / "big.png", compress_level=1)
    cmd = [sys.executable, "-m", "bppjax.enhance", str(tmp / "big.png"), "--checkpoint", str(checkpoint), "--out", str(tmp / "out"), "--scale", str(scale), *extra]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB on Linux
    out = Image.open(tmp / "out" / "big.png") if proc.returncode == 0 else None
    row = dict(input=f"{w}x{h}", output=f"{out.size[0]}x{out.size[1]}" if out else None, rc=proc.returncode, wall_s=round(wall, 1), peak_rss_gb=round(peak_gb, 3))
    print(proc.stdout[-2000:], proc.stderr[-2000:] if proc.returncode else "", sep="\n")
    print(json.dumps(row))
    return row


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--workdir", type=Path, default=Path("runs/tiling_small_x2"))
    t.add_argument("--steps", type=int, default=700)
    t.add_argument("--patch", type=int, default=96)
    t.add_argument("--batch", type=int, default=16)
    sub.add_parser("exact")
    s = sub.add_parser("set5")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--modes", nargs="+", default=["paper", "auto"])
    s.add_argument("--repeats", type=int, default=1)
    q = sub.add_parser("quality")
    q.add_argument("--data", nargs="+", default=["embedded"], help="embedded (choose settings) or Set5 Set14 (report)")
    q.add_argument("--settings", nargs="+", default=["auto", "fast", "whole"])
    q.add_argument("--models", nargs="+", default=list(ZOO_ALL))
    q.add_argument("--scales", nargs="+", type=int, default=list(MULTI_SCALES), help="factors for a multi-factor model")
    q.add_argument("--json", type=Path)
    q.add_argument("--overrides", nargs="*", default=[], help="config overrides, e.g. model.dtype=bfloat16")
    m = sub.add_parser("memory")
    m.add_argument("--checkpoint", type=Path, required=True)
    m.add_argument("--scale", type=float, default=1.0, help="SR factor: the input is 7680x4320 / scale")
    m.add_argument("extra", nargs="*", help="more enhance arguments, after --")
    a = p.parse_args(argv)
    if a.cmd == "train":
        train(a.workdir, a.steps, a.patch, a.batch)
    elif a.cmd == "exact":
        exact()
    elif a.cmd == "set5":
        set5(a.checkpoint, a.modes, a.repeats)
    elif a.cmd == "quality":
        quality(a.data, a.settings, a.models, a.json, a.overrides, a.scales)
    else:
        memory(a.checkpoint, scale=a.scale, extra=a.extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
