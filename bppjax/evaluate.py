"""Evaluate an SR method on benchmark folders: ``python -m bppjax.evaluate`` (over ``bppjax.evaluation``).

Example (the bicubic rows of the paper's Table 1)::

    python -m bppjax.evaluate --method bicubic \\
        --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/B100 \\
        --scales 2 3 4 --json bicubic.json

Each folder holds HR images and is named after the folder. Per image and
scale: HR cropped to a multiple of the scale, MATLAB bicubic down and up
(``bppjax.image.sr_input``), the method enhances that input, its float output
is quantised to uint8, and PSNR/SSIM are taken in the chosen convention
(default ``Y_M``, shave = scale; docs/METRICS.md). A method is a built-in
(``--method``) or a trained model (``--checkpoint``); ``bppjax.evaluation``
has the same as functions (``evaluate``, ``method_for``, ``self_ensemble``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from bppjax.cli import arg_type, command
from bppjax.evaluation import METHODS, canonical_scale, evaluate, format_table, method_for
from bppjax.metrics import CONVENTIONS
from bppjax.overrides import split_overrides


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bppjax.evaluate",
        description="PSNR/SSIM of an SR method on folders of HR images (paper Table 1 layout).",
        epilog="Extra --config.KEY=VALUE arguments are passed to the checkpoint's config.",
    )
    parser.add_argument("--method", choices=sorted(METHODS), help="a built-in method (default: bicubic)")
    parser.add_argument("--checkpoint", metavar="WORKDIR|NAME", help="evaluate the model trained in WORKDIR, or a zoo model")
    parser.add_argument("--data", nargs="+", required=True, metavar="DIR", help="folders of HR images")
    parser.add_argument("--scales", nargs="+", type=arg_type(lambda t: canonical_scale(float(t)), "scale"), default=[2, 3, 4],
                        metavar="S")
    parser.add_argument("--convention", choices=CONVENTIONS, default="Y_M", help="metric convention (default Y_M)")
    parser.add_argument("--shave", type=int, default=None, help="border pixels ignored (default: the scale)")
    parser.add_argument("--self-ensemble", action="store_true", help="average over the 8 flips/rotations")
    parser.add_argument("--json", metavar="PATH", help="write {dataset: {scale: {psnr, ssim, n}}} here")
    parser.add_argument("--save-images", metavar="DIR", help="write outputs as PNG to DIR/<dataset>/x<scale>/")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


@command
def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _build_parser()
    try:
        overrides, rest = split_overrides(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        parser.error(str(e))
    args = parser.parse_args(rest)
    if args.method and args.checkpoint:
        parser.error("give either --method or --checkpoint, not both")
    if overrides and not args.checkpoint:
        parser.error("--config.KEY=VALUE overrides apply to --checkpoint only")
    try:
        fn, name = method_for(args.method, args.checkpoint, overrides, args.self_ensemble)
        results = evaluate(fn, args.data, args.scales, convention=args.convention, shave=args.shave,
                           save_dir=args.save_images, progress=not args.no_progress)
    except (ValueError, OSError) as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(format_table(results, name))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
