"""Enhance real images: ``python -m bppjax.enhance INPUT... [--checkpoint WORKDIR|NAME] --out DIR``.

Examples::

    python -m bppjax.enhance photo.jpg --scale 2 --out enhanced/   # the shipped bpp-sr-x2
    python -m bppjax.enhance photo.jpg --checkpoint runs/sr_x2 --out enhanced/
    python -m bppjax.enhance shots/ --checkpoint runs/sr_x2 --out big/ --scale 3.5
    python -m bppjax.enhance scan.png --checkpoint runs/sr_x2 --out out/ --mode paper --self-ensemble

Inputs are files or folders (their image files, not recursive). For SR models
the image is first enlarged with MATLAB bicubic by ``--scale`` (default: the
training scale in the workdir's config; any factor, fractional too) and the
network restores it; ``--scale 1`` only enhances. Images go through the
network by overlapping tiles (``bppjax.tiling``), so memory is bounded on any
image size. Each output keeps its input's name, format and bit depth unless
``--ext`` / ``--bit-depth`` say otherwise. Unreadable inputs are reported and
skipped (exit status 1 at the end); an output never replaces an input unless
``--overwrite``. The logic lives in ``bppjax.inference``: ``enhance(image,
model, params)`` for arrays, ``enhance_files`` for files. Full guide: docs/ENHANCE.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from bppjax import tiling
from bppjax.cli import command
from bppjax.overrides import split_overrides
from bppjax.inference import Outcome, collect_inputs, default_memory_budget_gb, enhance_files, plan_outputs, summary, training_scale


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    overrides, rest = split_overrides(argv)
    p = argparse.ArgumentParser(
        prog="python -m bppjax.enhance",
        description="Enhance (or super-resolve) image files with a trained model, by overlapping tiles.",
        epilog="Also: --config.KEY=VALUE overrides the workdir's config (passed to load_model). Guide: docs/ENHANCE.md",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--checkpoint", metavar="WORKDIR|NAME",
                   help="workdir written by bppjax.train or save_model, or a zoo model name (default: the shipped "
                        "bpp-sr-x<scale> model, bpp-sr-multi for other factors; see python -m bppjax.zoo)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument("--scale", type=float, help="SR factor, fractional allowed (default: the training scale; 1: no resize)")
    p.add_argument("--mode", choices=tiling.MODES, default="auto", help="tiling: auto (default), paper (training-size tiles, stride 16), whole")
    p.add_argument("--tile", type=int, help="tile side in px (a multiple of the model's size multiple)")
    p.add_argument("--stride", type=int, help="px between tile origins")
    p.add_argument("--margin", type=int, help="px dropped at tile edges inside the image")
    p.add_argument("--batch", type=int, help="tiles per network call")
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--ext", help="output format suffix (default: the input's)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality of the outputs, 1-100 (default 95)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="output bit depth (default: the input's)")
    p.add_argument("--suffix", default="", help="added to output file names, e.g. _x2")
    p.add_argument("--overwrite", action="store_true", help="allow an output to replace its input")
    p.add_argument("--which", choices=("best", "latest"), default="best", help="checkpoint to load")
    p.add_argument("--max-memory-gb", type=float, default=None,
                   help=f"refuse outputs needing more memory than this (default: half of this machine's, "
                        f"{default_memory_budget_gb():.1f}; 0: no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(rest), overrides


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all written, 1 some inputs failed, 2 bad arguments, checkpoint or config."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args, overrides = parse_args(argv)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if not 1 <= args.quality <= 100:
        print(f"error: --quality must be between 1 and 100; got {args.quality}", file=sys.stderr)
        return 2
    for name in ("tile", "stride", "batch"):
        v = getattr(args, name)
        if v is not None and v < 1:
            print(f"error: --{name} must be >= 1; got {v}", file=sys.stderr)
            return 2
    if args.scale is not None and not (np.isfinite(args.scale) and args.scale > 0):
        print(f"error: --scale must be a positive number; got {args.scale}", file=sys.stderr)
        return 2

    files, problems = collect_inputs(args.inputs)
    for path, msg in problems:
        print(f"error: {path}: {msg}", file=sys.stderr)
    try:
        jobs = plan_outputs(files, args.out, ext=args.ext, suffix=args.suffix, overwrite=args.overwrite)
        from bppjax.workdir import load_model  # after argument checks: imports Orbax

        if args.checkpoint is None:
            from bppjax import zoo

            args.checkpoint = zoo.model_for_scale(args.scale)
            if args.scale is None:
                args.scale = 2.0
            print(f"no --checkpoint: using the shipped model {args.checkpoint} for scale {args.scale:g}", file=sys.stderr)
        loaded = load_model(args.checkpoint, overrides, which=args.which)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    scale = args.scale if args.scale is not None else training_scale(loaded.config)
    patch = loaded.config.get("data", {}).get("patch") if hasattr(loaded.config, "get") else None
    options = dict(scale=scale, mode=args.mode, tile=args.tile, stride=args.stride, margin=args.margin, batch=args.batch,
                   patch=int(patch) if patch else None, self_ensemble=args.self_ensemble,
                   max_memory_gb=args.max_memory_gb)
    try:  # a bad tile/stride is an argument error, found before any image is read
        spec = tiling.resolve_spec(loaded.model, args.mode, tile=args.tile, stride=args.stride, margin=args.margin,
                                   batch=args.batch, patch=options["patch"])
        if spec.tile is not None:
            big = 4 * spec.tile
            tiling.plan_tiles(big, big, spec, int(getattr(loaded.model, "multiple", 1)))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    tile_desc = "whole image" if spec.tile is None else f"tile {spec.tile}, stride {spec.stride}, margin {spec.margin}"
    print(f"{loaded.config.model.get('arch', 'bpp')} from {args.checkpoint} (step {loaded.step}); "
          f"scale {scale or 1:g}; {args.mode} tiling: {tile_desc}", file=sys.stderr)

    outcomes = enhance_files(jobs, loaded.model, loaded.params, depth=args.bit_depth, quality=args.quality,
                             progress=not args.quiet, **options)
    missing = [Outcome(path, path, error=msg) for path, msg in problems]
    print(summary(missing + outcomes))
    return 1 if any(o.error is not None for o in missing + outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
