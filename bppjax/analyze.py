"""``python -m bppjax.analyze``: update-norm heat map and LinearScope of a trained model.

Usage::

    python -m bppjax.analyze --checkpoint runs/sr_tiny --images ../shared/data/Set5/HR \\
        --out runs/sr_tiny/analysis [--scale 2] [--pixels 40,40 80,120] [--config.model.kind=ode]

Writes to ``--out``:

* ``update_norms.png``: the levels x blocks heat map (Fig. 7), max 100;
* ``<image>/linearscope.png`` and ``<image>/{input,y,fx,r}.png``: the input,
  the output y, the local part F x and the global part r (Fig. 8); ``r.png``
  maps r symmetrically to [0, 1] (grey = 0; the scale is in ``summary.json``);
* ``<image>/filters.png`` and ``<image>/filters.npy``: rows of F for the chosen
  output pixels, next to the input patch;
* ``summary.json``: ``update_norms`` (levels x blocks, lowest level first, max
  100), the unnormalised means, and per image the LinearScope scalars.

For SR checkpoints the images are HR: they are cropped to a multiple of the
scale, bicubic-downscaled and bicubic-upscaled (the training pipeline) before
they reach the network. ``--scale`` defaults to the checkpoint config's. The
library behind it is ``bppjax.analysis.report``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from bppjax.analysis import linearscope as ls
from bppjax.analysis.report import SUMMARY_FILE, analyze, config_scale, list_images, network_input  # noqa: F401
from bppjax.cli import EXIT_FAILED, EXIT_OK, command
from bppjax.overrides import split_overrides


def _pixel(text: str) -> tuple[int, int]:
    try:
        i, j = (int(v) for v in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"pixel {text!r} must look like ROW,COL") from e
    return i, j


def parse_args(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    overrides, rest = split_overrides(argv)
    p = argparse.ArgumentParser(prog="python -m bppjax.analyze", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="workdir written by bppjax.train or save_model, or a zoo model name")
    p.add_argument("--images", required=True, help="folder of images (HR for SR models) or one image")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--scale", type=int, default=None, help="SR factor for the bicubic degradation (default: the config's; 1: none)")
    p.add_argument("--pixels", type=_pixel, nargs="+", default=None, metavar="ROW,COL", help="output pixels whose filters to draw")
    p.add_argument("--max-size", type=int, default=None, help="centre-crop inputs to at most this many pixels a side")
    p.add_argument("--method", choices=ls.METHODS, default="auto", help="how F x is computed")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p.parse_args(rest), overrides


@command
def main(argv: Sequence[str]) -> int:
    args, overrides = parse_args(argv)
    summary = analyze(
        args.checkpoint, args.images, args.out, overrides, args.scale, args.pixels, args.max_size, args.method, not args.no_progress
    )
    worst = max(r["reconstruction_error"] for r in summary["linearscope"])
    mean_global = float(np.mean([r["global_fraction"] for r in summary["linearscope"]]))
    print(f"wrote {Path(args.out) / SUMMARY_FILE}: {len(summary['linearscope'])} images, "
          f"max |Fx + r - y|/|y| = {worst:.2e}, mean ||r||/||y|| = {mean_global:.4f}")
    for f in summary["failed"]:
        print(f"FAILED {f['image']}: {f['error']}", file=sys.stderr)
    return EXIT_FAILED if summary["failed"] else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
