"""The paper's claims, measured on trained models.

    python benchmarks/claims.py [--part NAME ...] [--budget-minutes M] [--seeds N] [--scales 2 4]
    python benchmarks/claims.py --report          # docs/CLAIMS.md and its plots from the committed JSON

Parts (``--part``, default all, in this order):

* ``bpp_vs_resnet``: BPP against two baselines of the same parameter count
  (within 5%): the HR-space ResNet (EDSR-style blocks on the bicubic-upscaled
  image) and EDSR itself (``model.arch=edsr``: the same blocks on the LR image,
  pixel-shuffle upsampler), same data (T91 + BSDS200), patches, batches,
  optimizer and schedule, at x2 and x4, ``--seeds`` seeds each, scored on Set5,
  Set14 and B100 (Y_M). Fairness settings: equal wall-clock
  (``--budget-minutes`` of training each), equal steps (BPP given the ResNet's
  step count; the ResNet given BPP's, ``--resnet-bpp-steps-seeds`` seeds at
  x2), and equal MACs per output pixel (a ResNet of BPP's cost, and a BPP of
  the ResNet's cost, ``--macs-seeds`` seeds at ``--macs-scales``).
* ``update_norms``: the update-norm maps (Eq. 3, Fig. 7) of the shipped
  ``bpp-sr-x2`` and ``bpp-sr-x4``, averaged over B100.
* ``linearscope``: LinearScope ``y = F x + r`` (Fig. 8) global and local
  fractions of the trained BPP and ResNet (seed 0, x2, equal time) and of
  ``bpp-sr-x2``, on centre crops of Set5 and Set14.
* ``raindrop``: BPP trained on three of the four real raindrop pairs, the
  fourth decomposed; correlation of ``|r|`` with ``|rain - clean|``.
* ``ode_vs_discrete``: the same BPP trained as the discrete network and as a
  continuous-time model (Heun, dt = 1, weights linear in t) for equal
  wall-clock, x2; the trained ODE re-solved with other solvers and steps.
* ``paper_shaped``: the update-norm map of a paper-shaped (4 levels, 16
  blocks, narrow) BPP trained for the equal-time budget at x2.

Every training run goes through ``bppjax.train_and_evaluate`` in a workdir
under ``--runs`` (resumable: rerunning continues where it stopped), validates
on the embedded photos ten times (the curve and whether it had flattened go
into the run's record) and writes ``benchmarks/results/claims/<M>min/<run>.json``
when scored, one folder per budget; finished runs are skipped. Step counts for the equal-time budget come from a short calibration
run of each network through the same training loop, stored in
``calibration.json`` so that reruns train the same number of steps. The
summary is ``benchmarks/results/claims.json``; ``docs/CLAIMS.md`` and the PNGs
in ``docs/claims/`` are written from it by ``--report`` (also run at the end of
every study run).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results" / "claims"
SUMMARY = ROOT / "benchmarks" / "results" / "claims.json"
DOC = ROOT / "docs" / "CLAIMS.md"
FIGURES = ROOT / "docs" / "claims"
BENCHMARKS = ("Set5", "Set14", "B100")
PARTS = ("bpp_vs_resnet", "update_norms", "linearscope", "raindrop", "ode_vs_discrete", "paper_shaped")
PATCH, BATCH, LR = 96, 8, 1e-3
BUDGET = 20.0  # minutes per equal-time run; ``--budget-minutes`` sets it
VAL_POINTS = 10  # validations per run (embedded photos only)
FLAT_DB = 0.05  # a curve has flattened when the last quarter of the run gained less than this
CROP = 192  # LinearScope centre crops (pixels a side)
TRAIN_LIMIT = 0  # images per training folder (0: all); the tests use a few
CALIBRATION_STEPS = 40
ODE_TRAIN = {"solver": "heun", "dt": 1.0, "time": "linear"}
ODE_SOLVES = (  # (label, model.ode overrides) for re-solving the trained ODE
    ("causal_euler dt=1", {"solver": "causal_euler", "dt": 1.0}),
    ("euler dt=1", {"solver": "euler", "dt": 1.0}),
    ("heun dt=1 (trained)", {"solver": "heun", "dt": 1.0}),
    ("heun dt=0.5", {"solver": "heun", "dt": 0.5}),
    ("tsit5 adaptive", {"solver": "tsit5", "dt": 0.5, "adaptive": True, "rtol": 1e-4, "atol": 1e-5}),
)


def say(msg: str) -> None:
    print(f"[claims {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- models and configs


def models() -> dict[str, Any]:
    """The study's networks as model configs, sized from the zoo's ``medium`` BPP."""
    import bppjax
    from bppjax.models.edsr import edsr_width_for_params
    from bppjax.models.resnet import resnet_params

    bpp = bppjax.preset("medium")
    target_params, target_macs = facts(bpp)["params"], facts(bpp)["macs_per_pixel"]
    blocks = 8
    width = min(range(4, 256), key=lambda w: abs(resnet_params(w, blocks) - target_params))
    resnet = bppjax.model_config(arch="resnet", resnet=dict(width=width, blocks=blocks, res_scale=1.0))
    resnet_macs_target = facts(resnet)["macs_per_pixel"]
    small_width = min(range(4, 256), key=lambda w: abs(_resnet_macs(w, blocks) - target_macs))
    resnet_cheap = bppjax.model_config(arch="resnet", resnet=dict(width=small_width, blocks=blocks, res_scale=1.0))
    # A wider BPP of the ResNet's cost: medium's features scaled by k (MACs grow as k^2).
    k = min((i / 8 for i in range(8, 64)), key=lambda k: abs(facts(_scaled(bpp, k))["macs_per_pixel"] - resnet_macs_target))
    bpp_costly = _scaled(bpp, k)
    paper_shaped = bppjax.model_config(levels=4, features=(32, 24, 16, 12), depth=16)
    nets = {"bpp": bpp, "resnet": resnet, "resnet_macs": resnet_cheap, "bpp_macs": bpp_costly, "paper_shaped": paper_shaped}
    for scale in (2, 3, 4):  # EDSR's upsampler depends on the factor, so does its width at equal parameters
        nets[f"edsr_x{scale}"] = bppjax.model_config(arch="edsr", edsr=dict(
            width=edsr_width_for_params(target_params, blocks, scale), blocks=blocks, res_scale=1.0, scale=scale))
    return nets


def net_key(key: str, scale: int) -> str:
    """The ``models()`` entry of a network at a factor (EDSR has one per factor)."""
    return f"{key}_x{scale}" if key == "edsr" else key


def _resnet_macs(width: int, blocks: int) -> float:
    import bppjax

    return facts(bppjax.model_config(arch="resnet", resnet=dict(width=width, blocks=blocks, res_scale=1.0)))["macs_per_pixel"]


def _scaled(cfg, k: float):
    c = cfg.copy_and_resolve_references()
    c.features = tuple(max(1, int(round(f * k))) for f in cfg.features)
    return c


def facts(model_cfg) -> dict[str, Any]:
    """Parameter count, MACs per output pixel and shape of a model config, asked of the model."""
    import jax
    import jax.numpy as jnp

    import bppjax

    model = bppjax.build_model(model_cfg)
    shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3))))["params"]
    if model_cfg.arch in ("resnet", "edsr"):
        net = model_cfg[model_cfg.arch]
        shape = {"arch": model_cfg.arch, "width": int(net.width), "blocks": int(net.blocks)}
    else:
        shape = {"arch": "bpp", "levels": len(tuple(model_cfg.features)), "features": [int(f) for f in model_cfg.features], "depth": int(model_cfg.depth)}
    return {"params": int(sum(np.prod(s.shape) for s in jax.tree.leaves(shapes))),
            "macs_per_pixel": float(model.macs_per_pixel()), "shape": shape}


def sr_config(model_cfg, scale: int, seed: int, steps: int):
    """The study's SR recipe: the zoo's (T91 + BSDS200, 96 px, batch 8, L1, Adam 1e-3 cosine), any model."""
    from bppjax.data import embedded
    from bppjax.data.pipeline import source_config
    from bppjax.training.config import base_config

    c = base_config()
    c.model = model_cfg
    c.data.train = source_config(source="folder", dirs=(str(SHARED / "T91"), str(SHARED / "BSDS200")), limit=TRAIN_LIMIT)
    c.data.val = source_config(source="embedded", names=embedded.VAL_NAMES)
    c.data.update(scales=(scale,), patch=PATCH, batch=BATCH, min_std=3 / 255)
    c.optim.update(lr=LR, schedule="cosine", warmup_steps=min(100, steps // 10), final_lr=0.0)
    c.train.update(steps=steps, seed=seed, log_every=max(1, min(50, steps // 20)), val_every=max(1, steps // VAL_POINTS),
                   ckpt_every=max(1, steps // 4), keep=2, curve=True)
    c.eval.update(convention="Y_M", crop_border=-1)
    return c


# --------------------------------------------------------------------------- calibration and training


def seconds_per_step(workdir: Path) -> float:
    """Median seconds per step logged by the training loop (the first interval, with compilation, left out)."""
    from bppjax.training.writers import read_records

    rates = [r["steps_per_sec"] for r in read_records(workdir / "metrics.jsonl") if r.get("kind") == "train" and "steps_per_sec" in r]
    rates = rates[1:] or rates
    return 1.0 / statistics.median(rates)


def calibrate(name: str, model_cfg, runs: Path, scale: int = 2) -> float:
    """Seconds per training step of ``model_cfg`` with the study's recipe at ``scale``, measured once and stored."""
    path = RESULTS / "calibration.json"
    table = json.loads(path.read_text()) if path.exists() else {}
    if name not in table:
        measured = _measure_step(model_cfg, runs, scale)
        if name != "bpp" and "bpp" in table:
            # Side by side with BPP in this process, scaled to BPP's stored time: a busy machine changes both alike.
            bpp_now = _measure_step(models()["bpp"], runs, 2)
            table[f"{name}/measured_with_bpp"] = [measured, bpp_now]
            measured *= float(table["bpp"]) / bpp_now
        table[name] = measured
        write_json(path, table)
        say(f"calibration: {name} {table[name]:.3f} s/step")
    return float(table[name])


def _measure_step(model_cfg, runs: Path, scale: int) -> float:
    """Median seconds per step of a short run of the study's recipe (no validation)."""
    import bppjax

    steps = CALIBRATION_STEPS
    with tempfile.TemporaryDirectory(dir=runs) as d:
        c = sr_config(model_cfg, scale, 0, steps)
        c.train.update(log_every=10, ckpt_every=steps, keep=1, progress=False, curve=False)
        c.data.val.source = ""
        bppjax.train_and_evaluate(c, d)
        return seconds_per_step(Path(d))


def budget_dir(minutes: float | None = None) -> Path:
    """The results folder of one budget (``RESULTS/<M>min``)."""
    return RESULTS / f"{BUDGET if minutes is None else minutes:g}min"


def run_file(name: str) -> Path:
    return budget_dir() / f"{name}.json"


def figures_dir() -> Path:
    return FIGURES / f"{BUDGET:g}min"


def validation_curve(workdir: Path) -> dict[str, Any]:
    """The run's validation PSNR by step (embedded photos) and whether it had flattened by the end."""
    from bppjax.training.writers import read_records

    points = [(int(r["step"]), float(r["psnr"])) for r in read_records(workdir / "metrics.jsonl") if r.get("kind") == "val" and "psnr" in r]
    return validation_curve_facts(points)


def validation_curve_facts(points: Sequence[tuple[int, float]]) -> dict[str, Any]:
    """``val_curve`` (step, PSNR), ``last_quarter_gain_db`` and ``flattened`` (that gain below ``FLAT_DB``)."""
    points = sorted(dict(points).items())
    out: dict[str, Any] = {"val_curve": [list(p) for p in points]}
    if len(points) >= 2:
        last = points[-1][0]
        before = [p for p in points if p[0] <= 0.75 * last] or points[:1]
        gain = points[-1][1] - before[-1][1]
        out.update(last_quarter_gain_db=float(gain), flattened=bool(gain < FLAT_DB))
    return out


def machine() -> str:
    """What a run trained on: the accelerator's kind, or the CPU's model and core count."""
    import jax

    from bppjax.benchmark import cpu_features

    device = jax.devices()[0]
    if device.platform != "cpu":
        return f"{device.device_kind} (jax {jax.__version__})"
    return f"{os.cpu_count()} CPU cores, {cpu_features()['model_name'] or 'unknown CPU'}"


def train_run(name: str, config, runs: Path, what: dict[str, Any], init_from: str | None = None) -> Path:
    """Train (or resume) one run in ``runs/name``; returns its workdir."""
    import bppjax

    workdir = runs / name
    say(f"train {name}: {config.train.steps} steps")
    result = bppjax.train_and_evaluate(config, workdir, init_from=init_from)
    what.update(train_seconds=result.seconds, seconds_per_step=seconds_per_step(workdir), steps=int(result.step),
                machine=machine(), **validation_curve(workdir))
    return workdir


def score_sr(loaded, scale: int, datasets: Sequence[str] | None = None) -> dict[str, Any]:
    """Y_M PSNR/SSIM per dataset (mean and per image) of a loaded model, tiled as ``LoadedModel.enhance`` does."""
    from bppjax.evaluation import evaluate

    datasets = BENCHMARKS if datasets is None else datasets
    res = evaluate({scale: loaded}, [SHARED / d for d in datasets], [scale], progress=False, per_image=True)
    return {d: {"psnr": r[scale]["psnr"], "ssim": r[scale]["ssim"], "psnr_per_image": r[scale]["psnr_per_image"]}
            for d, r in res.items()}


def sr_run(name: str, key: str, model_cfg, scale: int, seed: int, steps: int, runs: Path, **extra) -> dict[str, Any]:
    """Train, score and record one SR run (skipped when its JSON exists)."""
    import bppjax

    if run_file(name).exists():
        return json.loads(run_file(name).read_text())
    what: dict[str, Any] = {"run": name, "model": key, "scale": scale, "seed": seed, **facts(model_cfg), **extra}
    workdir = train_run(name, sr_config(model_cfg, scale, seed, steps), runs, what)
    loaded = bppjax.load_model(workdir, which="latest")
    t = time.time()
    what["scores"] = score_sr(loaded, scale)
    what["eval_seconds"] = time.time() - t
    what["gflops_train"] = 3 * 2 * what["macs_per_pixel"] * BATCH * PATCH * PATCH / what["seconds_per_step"] / 1e9
    write_json(run_file(name), what)
    say(f"{name}: " + ", ".join(f"{d} {s['psnr']:.2f}" for d, s in what["scores"].items()))
    return what


def write_json(path: Path, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


# --------------------------------------------------------------------------- parts


def part_bpp_vs_resnet(args, runs: Path) -> None:
    """Seeds outermost (so that a first seed of every network finishes first), then factors, then networks."""
    nets = models()
    budget = args.budget_minutes * 60

    def steps(key: str, scale: int) -> int:  # the equal-time step count, from the calibrated s/step at this factor
        name = net_key(key, scale)
        return max(20, int(budget / calibrate(name if key == "edsr" else key, nets[name], runs, scale if key == "edsr" else 2)))

    def run(key: str, scale: int, seed: int, setting: str = "equal_time", n: int | None = None, tag: str = "time") -> dict | None:
        if key not in args.nets:
            return None
        return sr_run(f"x{scale}-{key}-{tag}-s{seed}", key, nets[net_key(key, scale)], steps=n or steps(key, scale), setting=setting,
                      scale=scale, seed=seed, runs=runs, budget_minutes=args.budget_minutes)

    for seed in range(args.seeds):
        for scale in args.scales:
            run("bpp", scale, seed)
            run("edsr", scale, seed)
            if (r := run("resnet", scale, seed)) is not None:
                run("bpp", scale, seed, "equal_steps", int(r["steps"]), "steps")
    for seed in range(args.resnet_bpp_steps_seeds if 2 in args.scales else 0):  # the longest runs last
        run("resnet", 2, seed, "equal_steps_bpp", steps("bpp", 2), "bppsteps")
    for scale in args.scales:
        for seed in range(min(args.macs_seeds, args.seeds) if scale in args.macs_scales else 0):
            common = dict(scale=scale, seed=seed, runs=runs, budget_minutes=args.budget_minutes)
            sr_run(f"x{scale}-resnet_macs-time-s{seed}", "resnet_macs", nets["resnet_macs"], steps=steps("resnet_macs", scale), setting="equal_macs", **common)
            sr_run(f"x{scale}-bpp_macs-time-s{seed}", "bpp_macs", nets["bpp_macs"], steps=steps("bpp_macs", scale), setting="equal_macs", **common)


def _benchmark_inputs(dataset: str, scale: int, crop: int | None = None, space: str = "upscaled"):
    """Network inputs (float32 HxWx3 in [0, 1]) of a benchmark folder, optionally centre-cropped.

    ``space`` is the model's input space: the bicubic-upscaled image, or ("lr")
    the LR image, whose crop covers the same HR region (crop / scale pixels).
    """
    from bppjax.evaluation import list_images
    from bppjax.image import degrade, io

    for path in list_images(SHARED / dataset):
        sample = degrade.sr_input(io.to_uint8(io.read_image(path, dtype="native")), scale)
        x, f = (sample.lr, scale) if space == "lr" else (sample.net_input, 1)
        x = x.astype(np.float32) / 255
        if crop:
            c = crop // f
            i, j = (x.shape[0] - c) // 2, (x.shape[1] - c) // 2
            x = x[max(i, 0):max(i, 0) + c, max(j, 0):max(j, 0) + c]
        yield path.stem, x


def part_update_norms(args, runs: Path) -> None:
    """Update-norm maps of the shipped ``bpp-sr-x2`` and ``bpp-sr-x4`` over B100."""
    sources = {"bpp-sr-x2": ("bpp-sr-x2", 2), "bpp-sr-x4": ("bpp-sr-x4", 4)}
    _update_norm_maps(sources)


def part_paper_shaped(args, runs: Path) -> None:
    """A paper-shaped BPP (4 levels, 16 blocks, narrow) trained for the budget, and its update-norm map."""
    net = models()["paper_shaped"]
    spp = calibrate("paper_shaped", net, runs)
    sr_run("x2-paper_shaped-time-s0", "paper_shaped", net, 2, 0, max(20, int(args.budget_minutes * 60 / spp)), runs,
           setting="equal_time", budget_minutes=args.budget_minutes)
    _update_norm_maps({"paper_shaped-x2": (str(runs / "x2-paper_shaped-time-s0"), 2)})


def _update_norm_maps(sources: dict[str, tuple[str, int]]) -> None:
    """Raw update norms (levels x blocks) averaged over B100, one JSON per model."""
    import bppjax
    from bppjax.analysis import mean_update_norms
    from bppjax.models import input_space

    for label, (where, scale) in sources.items():
        out = budget_dir() / f"update_norms-{label}.json"
        if out.exists():
            continue
        loaded = bppjax.load_model(where, which="latest")
        norms = mean_update_norms(loaded.model, loaded.params, (x for _, x in _benchmark_inputs("B100", scale, space=input_space(loaded.model))),
                                  normalised=False)
        write_json(out, {"model": label, "source": _source(where), "scale": scale, "dataset": "B100", "raw": np.asarray(norms).tolist(),
                         **facts(loaded.config.model)})
        say(f"update norms {label}: done")


def part_linearscope(args, runs: Path) -> None:
    import bppjax
    from bppjax.analysis import decompose, plots
    from bppjax.models import input_space

    models_ = {"bpp-sr-x2": "bpp-sr-x2", "bpp (x2, equal time, seed 0)": str(runs / "x2-bpp-time-s0"),
               "edsr (x2, equal time, seed 0)": str(runs / "x2-edsr-time-s0"),
               "resnet (x2, equal time, seed 0)": str(runs / "x2-resnet-time-s0")}
    for label, where in models_.items():
        key = label.split(" ")[0]
        out = budget_dir() / f"linearscope-{key}.json"
        if out.exists():
            continue
        if not (where.startswith("bpp-sr") or Path(where).is_dir()):
            say(f"linearscope {label}: {where} not trained yet (run --part bpp_vs_resnet first); skipped")
            continue
        loaded = bppjax.load_model(where, which="latest")
        rec: dict[str, Any] = {"model": label, "source": _source(where), "crop": CROP, **facts(loaded.config.model)}
        for dataset in ("Set5", "Set14"):
            rows = []
            for stem, x in _benchmark_inputs(dataset, 2, CROP, input_space(loaded.model)):
                d = decompose(loaded.model, loaded.params, x[None])
                rows.append({"image": stem, **d.summary()})
                if stem == "butterfly":  # Set5's figure image
                    figures_dir().mkdir(parents=True, exist_ok=True)
                    plots.plot_linearscope(d.x[0], d.y[0], d.fx[0], d.r[0], figures_dir() / f"linearscope_{key}.png",
                                           title=f"{label}: |r|/|y| = {d.global_fraction[0]:.4f}")
            rec[dataset] = {"global_fraction": float(np.mean([r["global_fraction"] for r in rows])),
                            "local_fraction": float(np.mean([r["local_fraction"] for r in rows])),
                            "max_reconstruction_error": float(max(r["reconstruction_error"] for r in rows)),
                            "images": rows}
        write_json(out, rec)
        say(f"linearscope {label}: Set5 |r|/|y| {rec['Set5']['global_fraction']:.4f}")


def raindrop_config(steps: int, seed: int = 0):
    import bppjax
    from bppjax.data.pipeline import source_config
    from bppjax.training.config import base_config

    c = base_config()
    c.model = models()["bpp"]
    root = SHARED / "RaindropSample"
    c.data.train = source_config(source="paired", input_dir=str(root / "rain"), target_dir=str(root / "clean"),
                                 strip_suffixes=("_rain", "_clean"), limit=3)
    c.data.val = source_config()
    c.data.update(scales=(), patch=PATCH, batch=BATCH, align_crops=False)
    c.optim.update(lr=LR, schedule="cosine", warmup_steps=min(100, steps // 10), final_lr=0.0)
    c.train.update(steps=steps, seed=seed, log_every=max(1, min(50, steps // 20)), val_every=0, ckpt_every=max(1, steps // 4), keep=2)
    c.eval.update(convention="Y_P", crop_border=0)
    return c


def part_raindrop(args, runs: Path) -> None:
    import bppjax
    from bppjax.analysis import decompose
    from bppjax.image import io
    from bppjax.metrics import psnr

    out = budget_dir() / "raindrop.json"
    if out.exists():
        return
    spp = calibrate("bpp", models()["bpp"], runs)
    steps = max(20, int(args.budget_minutes * 60 / spp))
    what: dict[str, Any] = {"run": "raindrop", "train_pairs": ["0", "1", "2"], "held_out": "3"}
    workdir = train_run("raindrop", raindrop_config(steps), runs, what)
    loaded = bppjax.load_model(workdir, which="latest")
    rain = io.read_image(SHARED / "RaindropSample" / "rain" / "3_rain.png")
    clean = io.read_image(SHARED / "RaindropSample" / "clean" / "3_clean.png")
    d = decompose(loaded.model, loaded.params, rain[None])
    r_mag = np.linalg.norm(d.r[0], axis=-1)
    drop = np.linalg.norm(rain - clean, axis=-1)
    fx_mag = np.linalg.norm(d.fx[0] - rain, axis=-1)
    what.update(
        r_vs_rain_correlation=float(np.corrcoef(r_mag.ravel(), drop.ravel())[0, 1]),
        fx_minus_x_vs_rain_correlation=float(np.corrcoef(fx_mag.ravel(), drop.ravel())[0, 1]),
        output_vs_rain_correction_correlation=float(np.corrcoef(np.linalg.norm(d.y[0] - rain, axis=-1).ravel(), drop.ravel())[0, 1]),
        psnr_input=psnr(clean, rain, convention="Y_P"),
        psnr_output=psnr(clean, np.clip(d.y[0], 0, 1), convention="Y_P"),
        **d.summary(), **facts(loaded.config.model))
    figures_dir().mkdir(parents=True, exist_ok=True)
    _raindrop_figure(rain, clean, d, figures_dir() / "raindrop_r.png")
    write_json(out, what)
    say(f"raindrop: corr(|r|, |rain - clean|) = {what['r_vs_rain_correlation']:.3f}")


def _raindrop_figure(rain, clean, d, path: Path) -> None:
    from matplotlib.figure import Figure

    from bppjax.analysis.plots import signed_to_unit

    fig = Figure(figsize=(14, 7))
    panels = [(rain, "input (rain)"), (clean, "clean"), (np.linalg.norm(rain - clean, axis=-1), "|rain - clean|"),
              (np.clip(d.y[0], 0, 1), "output y"), (signed_to_unit(d.r[0]), "global part r"),
              (np.linalg.norm(d.r[0], axis=-1), "|r|")]
    for k, (im, title) in enumerate(panels):
        ax = fig.add_subplot(2, 3, k + 1)
        ax.imshow(im, cmap="magma" if im.ndim == 2 else None)
        ax.set_title(title, fontsize=10)
        ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def part_ode_vs_discrete(args, runs: Path) -> None:
    import bppjax

    bpp = models()["bpp"]
    ode = bpp.copy_and_resolve_references()
    ode.kind = "ode"
    ode.ode.update(ODE_TRAIN)
    budget = args.budget_minutes * 60
    spp = {"bpp": calibrate("bpp", bpp, runs), "bpp_ode": calibrate("bpp_ode", ode, runs)}
    for seed in range(args.seeds):
        disc = sr_run(f"x2-bpp-time-s{seed}", "bpp", bpp, 2, seed, max(20, int(budget / spp["bpp"])), runs, setting="equal_time",
                      budget_minutes=args.budget_minutes)
        cont = sr_run(f"x2-bpp_ode-time-s{seed}", "bpp_ode", ode, 2, seed, max(20, int(budget / spp["bpp_ode"])), runs,
                      setting="equal_time", budget_minutes=args.budget_minutes, ode=dict(ODE_TRAIN))
        if seed == 0:
            disc0, cont0 = disc, cont
    disc, cont = disc0, cont0  # the trained ODE of seed 0 is re-solved
    out = budget_dir() / "ode_solvers.json"
    if out.exists():
        return
    ref = bppjax.load_model(str(runs / cont["run"]), which="latest")
    x = np.stack([x for _, x in _benchmark_inputs("Set5", 2, CROP)])
    y_ref = np.asarray(ref.apply(x))
    rows = []
    for label, over in ODE_SOLVES:
        loaded = bppjax.load_model(str(runs / cont["run"]), [f"model.ode.{k}={v}" for k, v in over.items()], which="latest")
        y = np.asarray(loaded.apply(x))
        t = time.time()
        scores = score_sr(loaded, 2, ("Set5",))
        rows.append({"solve": label, **over, "set5_psnr": scores["Set5"]["psnr"], "eval_seconds": time.time() - t,
                     "rel_change": float(np.linalg.norm(y - y_ref) / np.linalg.norm(y_ref - x))})
        say(f"ODE re-solved with {label}: Set5 {rows[-1]['set5_psnr']:.2f}, change {rows[-1]['rel_change']:.2e}")
    write_json(out, {"trained_with": ODE_TRAIN, "reference": "heun dt=1 (the training solver)", "crop": CROP, "rows": rows,
                     "discrete_run": disc["run"], "ode_run": cont["run"]})


PART_FUNCS: dict[str, Callable] = {
    "bpp_vs_resnet": part_bpp_vs_resnet, "update_norms": part_update_norms, "linearscope": part_linearscope,
    "raindrop": part_raindrop, "ode_vs_discrete": part_ode_vs_discrete, "paper_shaped": part_paper_shaped,
}


# --------------------------------------------------------------------------- summary and report


def load_runs(minutes: float | None = None) -> dict[str, dict[str, Any]]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(budget_dir(minutes).glob("*.json"))}


def budgets() -> list[float]:
    """The budgets (minutes) that have results, longest first."""
    return sorted((float(p.name[:-3]) for p in RESULTS.glob("*min") if p.is_dir() and any(p.glob("*.json"))), reverse=True)


#: Groups of runs compared in the bpp_vs_resnet part: (name, model key, setting).
GROUPS = (("bpp", "bpp", "equal_time"), ("edsr", "edsr", "equal_time"), ("resnet", "resnet", "equal_time"),
          ("bpp_equal_steps", "bpp", "equal_steps"), ("resnet_bpp_steps", "resnet", "equal_steps_bpp"),
          ("resnet_equal_macs", "resnet_macs", "equal_macs"), ("bpp_equal_macs", "bpp_macs", "equal_macs"))
#: Comparisons (label, first group, second group, what the row says).
TESTS = (("equal_time", "bpp", "resnet", "bpp - resnet (equal params, equal time)"),
         ("equal_time_edsr", "bpp", "edsr", "bpp - edsr (equal params, equal time)"),
         ("equal_steps", "bpp_equal_steps", "resnet", "bpp_equal_steps - resnet (equal params, the ResNet's steps)"),
         ("equal_steps_bpp_count", "bpp", "resnet_bpp_steps", "bpp - resnet_bpp_steps (equal params, BPP's steps)"),
         ("equal_params_macs_bpp_cost", "bpp", "resnet_equal_macs", "bpp - resnet_equal_macs (equal MACs and time, BPP's cost)"),
         ("equal_macs_resnet_cost", "bpp_equal_macs", "resnet", "bpp_equal_macs - resnet (equal MACs and time, ResNet's cost)"))


def _group(runs: dict[str, dict], scale: int, key: str, setting: str) -> dict[str, Any] | None:
    rs = sorted((r for r in runs.values() if r.get("scale") == scale and r.get("model") == key and r.get("setting") == setting
                 and "scores" in r), key=lambda r: r["seed"])
    if not rs:
        return None
    return {
        "params": rs[0]["params"], "macs_per_pixel": rs[0]["macs_per_pixel"], "shape": rs[0]["shape"],
        "seconds_per_step": float(np.mean([r["seconds_per_step"] for r in rs])),
        "gflops_train": float(np.mean([r["gflops_train"] for r in rs])),
        "steps": rs[0]["steps"], "seeds": [r["seed"] for r in rs], "budget_minutes": rs[0].get("budget_minutes"),
        "train_seconds": [r["train_seconds"] for r in rs],
        "flattened": [r.get("flattened") for r in rs], "last_quarter_gain_db": [r.get("last_quarter_gain_db") for r in rs],
        "val_curve": [r.get("val_curve", []) for r in rs],
        "psnr": {d: [r["scores"][d]["psnr"] for r in rs] for d in BENCHMARKS},
        "ssim": {d: [r["scores"][d]["ssim"] for r in rs] for d in BENCHMARKS},
        "_per_image": {d: [r["scores"][d]["psnr_per_image"] for r in rs] for d in BENCHMARKS},
    }


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """``a`` minus ``b`` per dataset: mean difference, and paired t-tests over seeds and over (seed, image) pairs."""
    from scipy import stats

    seeds = sorted(set(a["seeds"]) & set(b["seeds"]))
    ia, ib = [a["seeds"].index(s) for s in seeds], [b["seeds"].index(s) for s in seeds]
    out: dict[str, Any] = {}
    if not seeds:
        return out
    for d in BENCHMARKS:
        ma, mb = np.array(a["psnr"][d])[ia], np.array(b["psnr"][d])[ib]
        pa = np.concatenate([a["_per_image"][d][i] for i in ia])
        pb = np.concatenate([b["_per_image"][d][i] for i in ib])
        row = {"diff_db": float(np.mean(ma - mb)), "seeds": len(seeds), "images": int(pa.size)}
        if len(seeds) >= 2 and np.std(ma - mb) > 0:
            row["p_seeds"] = float(stats.ttest_rel(ma, mb).pvalue)
        if pa.size >= 2 and np.std(pa - pb) > 0:
            row["p_images"] = float(stats.ttest_rel(pa, pb).pvalue)
        out[d] = row
    return out


def _profile_facts(raw: np.ndarray) -> dict[str, Any]:
    """Depth profile (mean over moving levels) and where the updates concentrate."""
    moving = raw[1:]
    profile = moving.mean(axis=0)
    peaks = [t for t in range(len(profile)) if (t == 0 or profile[t] > profile[t - 1]) and (t == len(profile) - 1 or profile[t] >= profile[t + 1])]
    bimodal = False
    if len(peaks) >= 2:
        first, last = peaks[0], peaks[-1]
        dip = profile[first:last + 1].min()
        bimodal = bool(dip < 0.9 * min(profile[first], profile[last]))
    level_means = raw.mean(axis=1)
    return {"depth_profile": profile.tolist(), "peaks": peaks, "bimodal": bimodal,
            "level_means": level_means.tolist(), "largest_level": int(np.argmax(level_means))}


def summarize(minutes: float | None = None) -> dict[str, Any]:
    """The summary of one budget's runs (``budget_dir(minutes)``)."""
    runs = load_runs(minutes)
    s: dict[str, Any] = {"bpp_vs_resnet": {}, "update_norms": {}, "linearscope": {}, "raindrop": {}, "ode_vs_discrete": {}}
    for scale in (2, 3, 4, 8):
        groups = {name: _group(runs, scale, key, setting) for name, key, setting in GROUPS}
        groups = {k: v for k, v in groups.items() if v}
        if not groups:
            continue
        entry: dict[str, Any] = dict(groups)
        tests = {}
        for label, a, b, _ in TESTS:
            if a in groups and b in groups:
                tests[label] = compare(groups[a], groups[b])
        entry["tests"] = tests
        s["bpp_vs_resnet"][f"x{scale}"] = entry
    for name, r in runs.items():
        if name.startswith("update_norms-"):
            raw = np.asarray(r["raw"])
            s["update_norms"][r["model"]] = {"map": (100 * raw / raw.max()).round(2).tolist(), "scale": r["scale"],
                                             "dataset": r["dataset"], "shape": r["shape"], **_profile_facts(raw)}
        elif name.startswith("linearscope-"):
            s["linearscope"][r["model"]] = {d: {k: r[d][k] for k in ("global_fraction", "local_fraction", "max_reconstruction_error")}
                                            for d in ("Set5", "Set14")} | {"params": r["params"], "crop": r["crop"],
                                                                           "steps": _trained_steps(r["source"], runs)}
        elif name == "raindrop":
            s["raindrop"] = {k: v for k, v in r.items() if not isinstance(v, (list, dict)) or k == "train_pairs"}
        elif name == "ode_solvers":
            s["ode_vs_discrete"]["solvers"] = r["rows"]
            s["ode_vs_discrete"]["trained_with"] = r["trained_with"]
    ode = _group(runs, 2, "bpp_ode", "equal_time")
    disc = _group(runs, 2, "bpp", "equal_time")
    if ode and disc:
        seeds = [sd for sd in disc["seeds"] if sd in ode["seeds"]]
        for key, g in (("discrete", disc), ("ode", ode)):
            idx = [g["seeds"].index(sd) for sd in seeds]
            s["ode_vs_discrete"][key] = {"psnr": {d: float(np.mean([g["psnr"][d][i] for i in idx])) for d in BENCHMARKS},
                                         "psnr_seeds": {d: [g["psnr"][d][i] for i in idx] for d in BENCHMARKS},
                                         "steps": g["steps"], "seeds": seeds, "seconds_per_step": g["seconds_per_step"],
                                         "calibrated_seconds_per_step": _budgeted_seconds_per_step(g),
                                         "train_seconds": g["train_seconds"]}
        s["ode_vs_discrete"]["tests"] = compare(ode, disc)
    return s


def _source(where: str) -> str:
    """A zoo name as it is, a workdir by its run name (results carry no paths of the machine)."""
    return where if not Path(where).is_dir() else f"<runs>/{Path(where).name}"


def _budgeted_seconds_per_step(group: dict[str, Any]) -> float | None:
    """The calibrated seconds per step a group's runs were given: their budget over their step count."""
    minutes = group.get("budget_minutes")
    return 60 * minutes / group["steps"] if minutes else None


def _trained_steps(source: str, runs: dict[str, dict[str, Any]]) -> int | None:
    """Training steps of a zoo model (its card) or of one of the study's runs (its JSON)."""
    from bppjax import zoo

    if zoo.is_zoo_name(source):
        return int(zoo.pretrained()[source]["steps"])
    run = runs.get(Path(source).name)
    return int(run["steps"]) if run else None


def _strip_private(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_private(v) for k, v in obj.items() if not k.startswith("_")}
    return obj


def report() -> dict[str, Any]:
    """Write claims.json, docs/CLAIMS.md and its plots from the per-run JSON files, one section per budget.

    claims.json holds the longest budget's summary at the top level and every
    budget's under ``budgets`` (keyed by minutes).
    """
    global BUDGET
    chosen, summaries, figures = BUDGET, {}, {}
    try:
        for m in budgets() or [BUDGET]:
            BUDGET = m
            summaries[m] = summarize(m)
            figures_dir().mkdir(parents=True, exist_ok=True)
            figures[m] = _plots(summaries[m])
    finally:
        BUDGET = chosen
    main_budget = max(summaries)
    s = summaries[main_budget]
    write_json(SUMMARY, _strip_private({**s, "budget_minutes": main_budget,
                                        "budgets": {f"{m:g}": summaries[m] for m in sorted(summaries, reverse=True) if m != main_budget}}))
    DOC.write_text(_header() + "".join(_document(summaries[m], figures[m], m) for m in sorted(summaries, reverse=True)))
    say(f"wrote {SUMMARY}, {DOC} and {sum(map(len, figures.values()))} plots")
    return s


def _plots(s: dict[str, Any]) -> dict[str, str]:
    from matplotlib.figure import Figure

    from bppjax.analysis import plots

    out: dict[str, str] = {}
    cmp_ = s["bpp_vs_resnet"]
    if cmp_:
        fig = Figure(figsize=(5 * len(cmp_), 4))
        for k, (scale, entry) in enumerate(cmp_.items()):
            ax = fig.add_subplot(1, len(cmp_), k + 1)
            names = [n for n, _, _ in GROUPS if n in entry]
            width = 0.8 / len(names)
            for i, n in enumerate(names):
                means = [np.mean(entry[n]["psnr"][d]) for d in BENCHMARKS]
                errs = [np.std(entry[n]["psnr"][d]) for d in BENCHMARKS]
                ax.bar(np.arange(len(BENCHMARKS)) + i * width, means, width, yerr=errs, label=_label(n, entry[n]))
            lo = min(min(np.mean(entry[n]["psnr"][d]) for n in names) for d in BENCHMARKS)
            hi = max(max(np.mean(entry[n]["psnr"][d]) for n in names) for d in BENCHMARKS)
            ax.set_ylim(lo - 1.0, hi + 0.5)
            ax.set_xticks(np.arange(len(BENCHMARKS)) + 0.4 - width / 2, BENCHMARKS)
            ax.set_ylabel("Y_M PSNR (dB)")
            ax.set_title(f"SR {scale}")
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(figures_dir() / "bpp_vs_resnet.png", dpi=100)
        out["bpp_vs_resnet"] = f"claims/{figures_dir().name}/bpp_vs_resnet.png"
    curves = [(scale, n, e[n]) for scale, e in cmp_.items() for n in ("bpp", "edsr", "resnet") if n in e and any(e[n]["val_curve"])]
    if curves:
        fig = Figure(figsize=(6, 4))
        ax = fig.add_subplot(1, 1, 1)
        for scale, n, g in curves:
            for k, curve in enumerate(g["val_curve"]):
                if curve:
                    steps, psnr = zip(*curve)
                    ax.plot(np.asarray(steps) * g["seconds_per_step"] / 60, psnr, label=f"{n} {scale}" if k == 0 else None,
                            color=f"C{('bpp', 'edsr', 'resnet').index(n)}", ls="-" if scale == "x2" else "--", lw=1)
        ax.set_xlabel("training minutes (steps x measured s/step)")
        ax.set_ylabel("validation PSNR, embedded photos (dB)")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(figures_dir() / "val_curves.png", dpi=100)
        out["val_curves"] = f"claims/{figures_dir().name}/val_curves.png"
    if s["update_norms"]:
        items = list(s["update_norms"].items())
        plots.plot_update_norms_grid([np.asarray(v["map"]) for _, v in items], [f"{k} (B100)" for k, _ in items],
                                     figures_dir() / "update_norms.png")
        out["update_norms"] = f"claims/{figures_dir().name}/update_norms.png"
    for name in ("linearscope_bpp-sr-x2", "linearscope_bpp", "linearscope_edsr", "linearscope_resnet", "raindrop_r"):
        if (figures_dir() / f"{name}.png").exists():
            out[name] = f"claims/{figures_dir().name}/{name}.png"
    return out


def _label(name: str, g: dict[str, Any]) -> str:
    return f"{name} ({g['params'] / 1e3:.0f}k p, {g['macs_per_pixel'] / 1e3:.0f}k MAC/px, {g['steps']} st)"


def _fmt(xs: Sequence[float]) -> str:
    return f"{np.mean(xs):.2f} ± {np.std(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def _p(row: dict[str, Any]) -> str:
    parts = [f"p_seeds={row['p_seeds']:.3f}" if "p_seeds" in row else "", f"p_images={row['p_images']:.1e}" if "p_images" in row else ""]
    return ", ".join(p for p in parts if p) or "n/a"


def _verdict_rows(tests: dict[str, Any]) -> str:
    """holds / does not hold / cannot tell, per comparison, from the sign and significance of the differences."""
    if not tests:
        return "cannot tell (not measured)"
    words = []
    for label, rows in tests.items():
        signs = [np.sign(r["diff_db"]) for r in rows.values()]
        sig = all(r.get("p_seeds", 1.0) < 0.05 for r in rows.values())
        sig_img = all(r.get("p_images", 1.0) < 0.05 for r in rows.values())
        seeds = min(r["seeds"] for r in rows.values())
        how = " (significant over seeds)" if sig else " (significant over images, not over seeds)"
        other = label_of(label).split(" - ")[1].split(" ")[0]
        where = [d for d, r in rows.items() if min(r.get("p_seeds", 1.0), r.get("p_images", 1.0)) < 0.05]
        partly = f" (significant on {', '.join(where) or 'none of them'} only; {seeds} seed(s))"
        if all(x > 0 for x in signs) and (sig or sig_img):
            v = "**holds**: BPP better on all three sets" + how
        elif all(x < 0 for x in signs) and (sig or sig_img):
            v = f"**does not hold**: {other} better on all three sets" + how
        elif all(x < 0 for x in signs) and where:  # BPP behind everywhere: the claim fails whatever the significance
            v = f"**does not hold**: {other} better on all three sets" + partly
        elif all(x > 0 for x in signs) and where:
            v = "**cannot tell**: BPP better on all three sets" + partly
        elif seeds >= 3:
            v = "**does not hold**: no consistent, significant difference over 3 seeds"
        else:
            v = f"**cannot tell**: no consistent, significant difference with {seeds} seed(s)"
        words.append(f"{label}: {v}")
    return "; ".join(words)


def label_of(test: str) -> str:
    return next(t[3] for t in TESTS if t[0] == test)


def _header() -> str:
    L: list[str] = []
    add = L.append
    add("# The paper's claims, measured\n")
    add("Written by `python benchmarks/claims.py --report` from `benchmarks/results/claims.json` (itself made from the per-run "
        "files in `benchmarks/results/claims/`); the study is `python benchmarks/claims.py [--part NAME] [--budget-minutes M] "
        "[--seeds N]`. All scores are Y_M PSNR (dB) with the border shaved by the scale, on Set5, Set14 and B100, with the "
        "evaluation tiling of `LoadedModel.enhance`. Training: T91 + BSDS200, 96 px patches, batch 8, L1, Adam 1e-3 with a "
        "cosine decay, validation only on the embedded photos, last checkpoint scored. Timings are on this project's 2-core CPU. "
        "One section per training budget, longest first: the long budgets ask whether a claim holds for networks that "
        "have learned (each run's validation curve says whether it had flattened), the 2-minute one which network learns faster. "
        "A comparison's verdict: **holds** where BPP is better on all three sets and significantly so on all of them (p < "
        "0.05, paired t-test over seeds, or over seed x image pairs); **does not hold** where the other network is better on "
        "all three sets and significantly on at least one, or where 3 or more seeds show no consistent, significant "
        "difference; **cannot tell** otherwise.\n")
    return "\n".join(L) + "\n"


def _flat(g: dict[str, Any]) -> str:
    """Whether each seed's validation curve had flattened (last quarter gained < FLAT_DB), with the gains."""
    gains = [x for x in g.get("last_quarter_gain_db", []) if x is not None]
    if not gains:
        return "n/a"
    return f"{sum(x < FLAT_DB for x in gains)}/{len(gains)} (+{max(gains):.2f})"


def _document(s: dict[str, Any], figures: dict[str, str], minutes: float) -> str:
    L: list[str] = []
    add = L.append
    add(f"## Budget: {minutes:g} minutes of training per equal-time run\n")
    add("### 1. BPP against equal-size baselines: the HR-space ResNet and EDSR\n")
    add("The paper: the multi-resolution extension is *beneficial with respect to conventional ResNets*, EDSR among them. "
        "Networks: the zoo's `medium` BPP; an HR-space ResNet (8 EDSR-style residual blocks on the bicubic-upscaled image) "
        "and EDSR (`model.arch=edsr`: 8 residual blocks on the LR image, a pixel-shuffle upsampler per factor, bicubic "
        "global skip), both of BPP's parameter count; for the equal-MACs setting a ResNet of BPP's MACs per pixel and a BPP "
        "(features scaled up) of the ResNet's. Equal time is set through step counts: each network's seconds per step, "
        "calibrated once through the same training loop (`calibration.json`), times its steps makes the budget; the s/step "
        "column is what each run then measured, under whatever load the machine had and on whichever 2-core machine it "
        "ran (`machine` in a run's file, where recorded), and the GFLOP/s column shows that "
        f"each network ran at a reasonable speed for its shape. *flat*: seeds whose validation curve gained less than "
        f"{FLAT_DB} dB over the last quarter of the run (largest such gain in brackets).\n")
    for scale, e in s["bpp_vs_resnet"].items():
        add(f"#### SR {scale}\n")
        add("| run | params | MAC/px | s/step | train GFLOP/s | steps | seeds | flat | Set5 | Set14 | B100 |")
        add("|---|---|---|---|---|---|---|---|---|---|---|")
        for n, _, _ in GROUPS:
            if n in e:
                g = e[n]
                add(f"| `{n}` | {g['params']:,} | {g['macs_per_pixel']:,.0f} | {g['seconds_per_step']:.3f} | {g['gflops_train']:.1f} | "
                    f"{g['steps']} | {len(g['seeds'])} | {_flat(g)} | " + " | ".join(_fmt(g["psnr"][d]) for d in BENCHMARKS) + " |")
        add("\nDifferences (first minus second, dB, mean over seeds; paired t-tests over seeds and over seed x image pairs):\n")
        add("| comparison | Set5 | Set14 | B100 |")
        add("|---|---|---|---|")
        for label, rows in e["tests"].items():
            add(f"| {label_of(label)} | " + " | ".join(f"{rows[d]['diff_db']:+.2f} ({_p(rows[d])})" for d in BENCHMARKS) + " |")
        add(f"\n**Verdict ({scale})**: {_verdict_rows(e['tests'])}.{_scale_note(e, s['bpp_vs_resnet'])}\n")
    for key, alt in (("bpp_vs_resnet", "BPP vs baselines"), ("val_curves", "validation curves")):
        if key in figures:
            add(f"![{alt}]({figures[key]})\n")
    add("### 2. Update norms (Fig. 7)\n")
    add("The paper: update norms are bimodal along depth and concentrate on the middle levels. Maps averaged over B100 "
        "(level 0, the lowest resolution, never moves), normalised to a maximum of 100.\n")
    if s["update_norms"]:
        add("| model | shape | largest level | level means (0 = lowest) | depth profile (mean over levels >= 1) | bimodal in depth |")
        add("|---|---|---|---|---|---|")
        for k, v in s["update_norms"].items():
            sh = v["shape"]
            add(f"| `{k}` | {sh.get('levels')} levels {sh.get('features')}, {sh.get('depth')} blocks | {v['largest_level']} | "
                f"{', '.join(f'{m:.3g}' for m in v['level_means'])} | {', '.join(f'{m:.3g}' for m in v['depth_profile'])} | "
                f"{'yes' if v['bimodal'] else 'no'} |")
        add("")
        add(f"**Verdict**: {_norms_verdict(s['update_norms'])}\n")
    if "update_norms" in figures:
        add(f"![update norms]({figures['update_norms']})\n")
    add("### 3. LinearScope (Fig. 8)\n")
    add(f"The paper: BPP's global part r is much larger than EDSR's. Mean over {CROP}x{CROP} centre crops of the x2 inputs; "
        "global fraction |r|/|y|, local fraction |Fx|/|y| (every ReLU mask and instance-norm statistic frozen at the input's "
        "values; `max_reconstruction_error` is the largest |Fx + r - y|/|y|).\n")
    if s["linearscope"]:
        add("| model | params | steps | Set5 global | Set5 local | Set14 global | Set14 local | max rec. error |")
        add("|---|---|---|---|---|---|---|---|")
        for k, v in s["linearscope"].items():
            add(f"| {k} | {v['params']:,} | {v['steps'] or '?'} | {v['Set5']['global_fraction']:.4f} | {v['Set5']['local_fraction']:.4f} | "
                f"{v['Set14']['global_fraction']:.4f} | {v['Set14']['local_fraction']:.4f} | "
                f"{max(v['Set5']['max_reconstruction_error'], v['Set14']['max_reconstruction_error']):.1e} |")
        add("")
        add(f"**Verdict**: {_scope_verdict(s['linearscope'])}\n")
    for name in ("linearscope_bpp-sr-x2", "linearscope_bpp", "linearscope_edsr", "linearscope_resnet"):
        if name in figures:
            add(f"![{name}]({figures[name]})\n")
    r = s["raindrop"]
    add("#### Raindrops\n")
    if r:
        add(f"BPP (`medium`) trained on real pairs {', '.join(r['train_pairs'])} of `RaindropSample` ({r['steps']} steps, 96 px crops, "
            f"L1), pair {r['held_out']} decomposed whole. Input PSNR {r['psnr_input']:.2f} dB, output {r['psnr_output']:.2f} dB (Y_P). "
            f"Per-pixel correlation with |rain - clean|: |r| {r['r_vs_rain_correlation']:.3f}; |Fx - x| "
            f"{r['fx_minus_x_vs_rain_correlation']:.3f}; |y - x| {r['output_vs_rain_correction_correlation']:.3f}. "
            f"Global fraction |r|/|y| = {r['global_fraction']:.4f}.\n")
        add(f"**Verdict**: {_rain_verdict(r)}\n")
    if "raindrop_r" in figures:
        add(f"![raindrop]({figures['raindrop_r']})\n")
    add("### 4. Discrete vs continuous-time training at equal wall-clock\n")
    o = s["ode_vs_discrete"]
    if "discrete" in o and "ode" in o:
        tw = o.get("trained_with", ODE_TRAIN)
        seeds = o["discrete"].get("seeds", [0])
        add(f"The same `medium` BPP, x2, seeds {', '.join(map(str, seeds))}: the discrete network, and the ODE model (`model.kind=ode`, "
            f"solver {tw['solver']}, dt = {tw['dt']}, weights {tw['time']} in t, default adjoint), each trained for the same "
            "wall-clock budget (step counts from the calibrated s/step of each, measured side by side with BPP's).\n")
        add("| model | steps | calibrated s/step | s/step in the run | Set5 | Set14 | B100 |")
        add("|---|---|---|---|---|---|---|")
        for k in ("discrete", "ode"):
            v = o[k]
            cal = f"{v['calibrated_seconds_per_step']:.3f}" if v.get("calibrated_seconds_per_step") else "?"
            add(f"| {k} | {v['steps']} | {cal} | {v['seconds_per_step']:.3f} | "
                + " | ".join(_fmt(v.get("psnr_seeds", {}).get(d) or [v["psnr"][d]]) for d in BENCHMARKS) + " |")
        add("")
        if "solvers" in o:
            add("The trained ODE re-solved (Set5 x2; change = |y - y_train_solver| / |y_train_solver - x| on the crops):\n")
            add("| solve | Set5 | change |")
            add("|---|---|---|")
            for row in o["solvers"]:
                add(f"| {row['solve']} | {row['set5_psnr']:.2f} | {row['rel_change']:.2e} |")
            add("")
        d, c = o["discrete"]["psnr"], o["ode"]["psnr"]
        diff = {k: c[k] - d[k] for k in BENCHMARKS}
        tests = o.get("tests", {})
        p = (" (" + ", ".join(f"{k} {_p(tests[k])}" for k in BENCHMARKS if k in tests) + ")") if tests else ""
        add(f"**Verdict**: ODE minus discrete, mean over {len(seeds)} seed(s): {', '.join(f'{k} {v:+.2f} dB' for k, v in diff.items())} "
            f"at equal wall-clock{p}. {_ode_note(o)}\n")
    return "\n".join(L) + "\n"


def _scale_note(e: dict[str, Any], factors: dict[str, dict[str, Any]] | None = None) -> str:
    """What the budget allows the slower network, said next to the verdict (``factors``: every factor's entry)."""
    if "resnet" not in e or e["resnet"]["steps"] >= 1000:
        return ""
    note = (f" At this budget the equal-size ResNet completes only {e['resnet']['steps']} steps (BPP "
            f"{e['bpp']['steps'] if 'bpp' in e else '?'}): equal time mostly measures how much cheaper a BPP step is, and equal "
            "steps how fast each network starts to learn (a curve that flattens as the cosine rate reaches zero says that the "
            "schedule ended, not that the network converged).")
    if "resnet_bpp_steps" in e and "bpp" in e:
        r, b = e["resnet_bpp_steps"], e["bpp"]
        return note + (f" The ResNet trained for BPP's {r['steps']} steps ({r['macs_per_pixel'] / b['macs_per_pixel']:.1f}x BPP's "
                       "MACs per pixel) separates the architecture from the step cost: the bpp - resnet_bpp_steps row.")
    elsewhere = [k for k, v in (factors or {}).items() if "resnet_bpp_steps" in v]
    if elsewhere:
        return note + (f" The ResNet trained for BPP's step count was run at {', '.join(elsewhere)} only: see the "
                       "bpp - resnet_bpp_steps row there.")
    return note + (" Whether the paper's claim holds at equal steps for networks that have learned needs the ResNet trained "
                   "for BPP's step count (`--resnet-bpp-steps-seeds`).")


def _ode_note(o: dict[str, Any]) -> str:
    """Cost ratio and how well-resolved the trained ODE is, from the summary."""
    d, c = o["discrete"], o["ode"]
    ratio = (c.get("calibrated_seconds_per_step") or c["seconds_per_step"]) / (d.get("calibrated_seconds_per_step") or d["seconds_per_step"])
    text = (f"An ODE step costs {ratio:.1f}x a discrete one (calibrated), so the same time buys {c['steps']} steps against "
            f"{d['steps']}" + (": at this budget the comparison is about cost per step." if ratio > 3 else
                               f"; Heun evaluates the field twice per block, so about {ratio / 2:.1f}x per evaluation."))
    finer = [r for r in o.get("solvers", []) if r.get("adaptive") or r.get("dt", 1.0) < ODE_TRAIN["dt"]]
    if finer:
        worst = max(r["rel_change"] for r in finer)
        text += (f" Solving the trained ODE more accurately changes its output by up to {100 * worst:.0f}% of the residual it adds"
                 + (": these weights do not yet define a well-resolved flow, the trained solver is part of the model."
                    if worst > 0.1 else "."))
    return text


def _norms_verdict(norms: dict[str, Any]) -> str:
    parts = []
    for k, v in norms.items():
        L = len(v["level_means"])
        middle = 0 < v["largest_level"] < L - 1
        parts.append(f"`{k}`: largest updates on level {v['largest_level']} of 0-{L - 1} "
                     f"({'a middle level' if middle else 'not a middle level'}), depth profile {'bimodal' if v['bimodal'] else 'not bimodal'}")
    return "; ".join(parts) + "."


def _scope_verdict(scope: dict[str, Any]) -> str:
    bpp = {k: v for k, v in scope.items() if k.startswith("bpp")}
    res = {k: v for k, v in scope.items() if k.startswith(("edsr", "resnet"))}
    if not bpp or not res:
        return "cannot tell (no equal-size baseline decomposed yet)."
    rows = []
    for rk, rv in res.items():
        for bk, bv in bpp.items():
            ratio = {d: bv[d]["global_fraction"] / max(rv[d]["global_fraction"], 1e-12) for d in ("Set5", "Set14")}
            rows.append(f"{bk} / {rk}: |r|/|y| ratio Set5 {ratio['Set5']:.2f}x, Set14 {ratio['Set14']:.2f}x")
    steps = [v["steps"] for v in res.values() if v.get("steps")]
    note = (f" A baseline here trained for only {min(steps)} steps (its equal-time budget), so its small r may partly say that it "
            "is still close to its initial map: the ratio mixes the architecture with the training state."
            if steps and min(steps) < 1000 else "")
    edsr = [r for r in rows if "/ edsr" in r]
    word = ("cannot tell (EDSR, the network of the claim, not decomposed yet)" if not edsr else
            "**holds** against EDSR" if all(_ratios_above(bv, ev, 2.0) for bv in bpp.values() for k, ev in res.items() if k.startswith("edsr"))
            else "**does not hold** against EDSR (ratio not well above 1 on both sets)")
    return f"{word}: " + "; ".join(rows) + ". The claim holds where the ratio is well above 1 (here: at least 2) on both sets." + note


def _ratios_above(b: dict[str, Any], r: dict[str, Any], factor: float) -> bool:
    return all(b[d]["global_fraction"] >= factor * r[d]["global_fraction"] for d in ("Set5", "Set14"))


def _rain_verdict(r: dict[str, Any]) -> str:
    c = r["r_vs_rain_correlation"]
    if r["psnr_input"] < 20:
        return (f"cannot tell from the number: the correlation is {c:.2f}, but |rain - clean| is dominated by what else differs "
                f"between the two photographs of the pair (input PSNR {r['psnr_input']:.1f} dB: focus, exposure and a small "
                "misalignment), not by the drops alone. The figure shows drop-shaped structure in |r|; a drop mask drawn by hand "
                "would be needed for a per-pixel number.")
    if c > 0.5:
        return f"|r| follows the raindrops (correlation {c:.2f})."
    if c > 0.2:
        return f"|r| is weakly related to the raindrops (correlation {c:.2f}): partly a mask, mostly not."
    return f"|r| does not look like a raindrop mask (correlation {c:.2f})."


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    global BUDGET
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", action="append", choices=PARTS, help="run only these parts (repeatable; default all)")
    p.add_argument("--budget-minutes", type=float, default=BUDGET, help=f"training wall-clock per equal-time run (default {BUDGET:g}); "
                   "each budget has its own results folder")
    p.add_argument("--seeds", type=int, default=3, help="seeds per network and factor (default 3)")
    p.add_argument("--macs-seeds", type=int, default=1, help="seeds of the equal-MACs runs (default 1)")
    p.add_argument("--nets", nargs="+", default=["bpp", "edsr", "resnet"], choices=["bpp", "edsr", "resnet"],
                   help="networks of the bpp_vs_resnet part (default all three)")
    p.add_argument("--resnet-bpp-steps-seeds", type=int, default=1, help="seeds of the ResNet trained for BPP's steps at x2 (default 1)")
    p.add_argument("--scales", type=int, nargs="+", default=[2, 4], help="SR factors (default 2 4)")
    p.add_argument("--macs-scales", type=int, nargs="+", default=[2], help="factors of the equal-MACs runs (default 2)")
    p.add_argument("--runs", type=Path, default=ROOT.parent / "runs" / "claims", help="workdirs (outside the repo; resumable)")
    p.add_argument("--report", action="store_true", help="only regenerate claims.json, docs/CLAIMS.md and plots")
    args = p.parse_args(argv)
    BUDGET = args.budget_minutes
    if not args.report:
        missing = [d for d in ("T91", "BSDS200", *BENCHMARKS) if not (SHARED / d).is_dir()]
        if missing:
            print(f"error: {SHARED}: missing {', '.join(missing)} (the study trains on T91 + BSDS200 and scores on "
                  "Set5, Set14 and B100)", file=sys.stderr)
            return 2
        args.runs.mkdir(parents=True, exist_ok=True)
        for part in args.part or PARTS:
            say(f"part {part}")
            PART_FUNCS[part](args, args.runs)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
