"""Enhance real images: ``python -m bppjax.enhance INPUT... [--checkpoint WORKDIR|NAME] --out DIR``.

Examples::

    python -m bppjax.enhance photo.jpg --scale 2 --out enhanced/   # the shipped bpp-sr-x2
    python -m bppjax.enhance shots/ --checkpoint runs/sr_x2 --out big/ --scale 3.5
    python -m bppjax.enhance scan.png --checkpoint runs/sr_x2 --out out/ --mode paper --self-ensemble

Inputs are files or folders (their image files, not recursive). SR models
enlarge with MATLAB bicubic by ``--scale`` (default: the training scale; any
factor) and restore by overlapping tiles, so memory is bounded on any size.
Outputs keep the input's name, format and bit depth; failed inputs are listed
(exit status 1). The library is ``bppjax.files`` (``prepare_files``,
``enhance_files``) over ``bppjax.inference`` (``enhance`` for arrays); the
guide is docs/ENHANCE.md. The command keeps JAX's compiled programs in a
persistent cache (``compilation_cache_dir``), so a second run of the same
model and tiling compiles nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import jax

from bppjax import tiling
from bppjax.cli import EXIT_FAILED, EXIT_OK, command, debug_enabled, describe, usage_error
from bppjax.files import Outcome, check_options, collect_inputs, prepare_files, summary
from bppjax.inference import default_memory_budget_gb
from bppjax.overrides import split_overrides


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    overrides, rest = split_overrides(argv)
    p = argparse.ArgumentParser(
        prog="python -m bppjax.enhance",
        description="Enhance (or super-resolve) image files with a trained model, by overlapping tiles.",
        epilog="Also: --config.KEY=VALUE overrides the workdir's config (passed to load_model). Guide: docs/ENHANCE.md",
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("--checkpoint", metavar="WORKDIR|NAME", help="workdir written by bppjax.train or save_model, or a zoo model "
                   "name (default: the shipped bpp-sr-x<scale> model, bpp-sr-multi for other factors; see python -m bppjax.zoo)")
    p.add_argument("--out", required=True, type=Path, metavar="DIR", help="output folder (created)")
    p.add_argument("--scale", type=float, help="SR factor, fractional allowed (default: the training scale; 1: no resize)")
    p.add_argument("--mode", choices=tiling.MODES, default=tiling.ENHANCE_MODE,
                   help=f"tiling: {tiling.ENHANCE_MODE} (default), auto (the evaluation protocol), paper (training-size tiles, "
                   "stride 16), whole")
    p.add_argument("--tile", type=int, help="tile side in px (a multiple of the model's size multiple)")
    p.add_argument("--stride", type=int, help="px between tile origins (in fast mode with instance norm: at most, tiles spread evenly)")
    p.add_argument("--margin", type=int, help="px dropped at tile edges inside the image")
    p.add_argument("--batch", type=int, help="tiles per network call")
    p.add_argument("--streams", type=int, help="network calls in flight at once (default: one per CPU core)")
    p.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    p.add_argument("--ext", help="output format suffix (default: the input's)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality of the outputs, 1-100 (default 95)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), help="output bit depth (default: the input's)")
    p.add_argument("--suffix", default="", help="added to output file names, e.g. _x2")
    p.add_argument("--overwrite", action="store_true", help="allow an output to replace its input")
    p.add_argument("--which", choices=("best", "latest"), default="best", help="checkpoint to load")
    p.add_argument("--max-memory-gb", type=float, default=None, help="refuse outputs needing more memory than this "
                   f"(default: half of this machine's, {default_memory_budget_gb():.1f}; 0: no limit)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(rest), overrides


def compilation_cache_dir() -> Path:
    """Where the command keeps compiled programs: ``$BPPJAX_CACHE_DIR``, else ``$XDG_CACHE_HOME/bppjax/jax``
    (``~/.cache/bppjax/jax``)."""
    if os.environ.get("BPPJAX_CACHE_DIR"):
        return Path(os.environ["BPPJAX_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bppjax" / "jax"


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache in ``compilation_cache_dir()``, unless the process set one already."""
    if not jax.config.jax_compilation_cache_dir:
        jax.config.update("jax_compilation_cache_dir", str(compilation_cache_dir()))


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Exit status: 0 all written, 1 some inputs failed, 2 bad arguments, checkpoint or config."""
    try:
        args, overrides = parse_args(argv)
        check_options(quality=args.quality, scale=args.scale, tile=args.tile, stride=args.stride, batch=args.batch,
                      streams=args.streams)
    except ValueError as e:
        return usage_error(e)
    files, problems = collect_inputs(args.inputs)
    for path, msg in problems:
        print(f"error: {path}: {msg}", file=sys.stderr)
    try:
        run = prepare_files(files, args.out, overrides=overrides, log=lambda s: print(s, file=sys.stderr), **{
            k: getattr(args, k) for k in ("checkpoint", "which", "scale", "mode", "tile", "stride", "margin", "batch", "streams",
                                          "self_ensemble", "max_memory_gb", "ext", "suffix", "overwrite")})
    except (FileNotFoundError, ValueError) as e:
        return usage_error(e)
    print(run.describe(), file=sys.stderr)
    enable_compilation_cache()
    outcomes = [Outcome(p, p, error=msg) for p, msg in problems] + run.run(
        args.bit_depth, args.quality, not args.quiet, reraise=debug_enabled(), describe_error=describe)
    print(summary(outcomes))
    return EXIT_FAILED if any(o.error is not None for o in outcomes) else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
