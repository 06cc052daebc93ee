"""``python -m bppjax.summary``: parameters, MACs per output pixel and state shapes.

The MAC count is the model's own (``model.macs_per_pixel()``) and can be
cross-checked against XLA's cost analysis of the compiled forward pass
(``--xla``); the test suite does that check. The library is
``bppjax.models.summary`` (``summarize``, ``format_summary``).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from bppjax.cli import command, usage_error
from bppjax.models.presets import PRESETS, preset
from bppjax.models.summary import format_summary, summarize
from bppjax.overrides import apply_overrides, split_overrides
from bppjax.training.config import load_config_file


@command
def main(argv: Sequence[str] | None = None) -> int:
    overrides, rest = split_overrides(sys.argv[1:] if argv is None else argv)
    ap = argparse.ArgumentParser(prog="python -m bppjax.summary", description=__doc__.splitlines()[0])
    src = ap.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help=f"model preset: {', '.join(PRESETS)} (default: paper)")
    src.add_argument("--config", default=None, help="config file, path.py[:variant] (its config.model is used)")
    ap.add_argument("--size", type=int, default=256, help="input size for state shapes and --xla")
    ap.add_argument("--xla", action="store_true", help="also compile the forward pass and print XLA's MAC estimate")
    ap.add_argument("--json", default=None, help="write the summary as JSON here")
    args = ap.parse_args(rest)
    try:
        if args.config:
            cfg = load_config_file(args.config)
            cfg = apply_overrides(cfg, overrides).model
            name = args.config
        else:
            name = args.preset or "paper"
            cfg = apply_overrides(preset(name), [o[len("model."):] if o.startswith("model.") else o for o in overrides])
        s = summarize(cfg, args.size, args.xla)
    except (ValueError, FileNotFoundError) as e:
        return usage_error(e)
    print(format_summary(name, s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"name": name, **s}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
