"""List or export the shipped models: ``python -m bppjax.zoo [export WORKDIR NAME ...]``.

    python -m bppjax.zoo                         # the models, their sizes and scores
    python -m bppjax.zoo export ../runs/zoo_x2 bpp-sr-x2 --wall-seconds 2400 \\
        --command "python -m bppjax.train --config configs/zoo.py:x2 --workdir ../runs/zoo_x2" \\
        --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/B100
    python -m bppjax.zoo export ../runs/zoo_x3w12kh bpp-sr-x3 --stages stages.json --choices "..." \
        --command "..." --data ...               # a recipe of several stages: their records, their summed time
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from bppjax.cli import command, usage_error
from bppjax.zoo import ZooError, cards, format_cards


@command
def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "export":
        if argv and argv[0] in ("-h", "--help"):
            print(__doc__)
            return 0
        if argv:
            return usage_error(f"unknown arguments {argv}; run 'python -m bppjax.zoo --help'")
        try:
            print(format_cards(cards()))
        except ZooError as e:
            return usage_error(e)
        return 0
    p = argparse.ArgumentParser(prog="python -m bppjax.zoo export", description="Ship a trained workdir as a zoo model.")
    p.add_argument("workdir")
    p.add_argument("name")
    p.add_argument("--command", required=True, help="the training command, recorded in the model card")
    p.add_argument("--wall-seconds", type=float, help="measured wall time of the training run (default with --stages: their sum)")
    p.add_argument("--stages", help="JSON file: a list of the recipe's training runs, each {config, steps, wall_seconds[, init_from, "
                                    "machine, date, note]}, recorded in the card")
    p.add_argument("--choices", default="", help="how the recipe and the checkpoint were chosen, recorded in the card")
    p.add_argument("--data", nargs="+", required=True, help="benchmark folders scored for the card")
    p.add_argument("--scales", nargs="+", type=int, help="factors scored (default: the training scales)")
    p.add_argument("--description", default="")
    p.add_argument("--which", choices=("best", "latest"), default="latest")
    args = p.parse_args(argv[1:])
    from bppjax.zoo.export import check_stages, export_model

    try:
        stages = None
        if args.stages:
            try:
                stages = check_stages(json.loads(Path(args.stages).read_text()), source=args.stages)
            except json.JSONDecodeError as e:
                raise ValueError(f"{args.stages}: not JSON ({e})") from None
        card = export_model(args.workdir, args.name, command=args.command, wall_seconds=args.wall_seconds,
                            data_dirs=args.data, scales=args.scales, description=args.description, which=args.which,
                            stages=stages, choices=args.choices)
    except (FileNotFoundError, ValueError) as e:
        return usage_error(e)
    print(format_cards({card["name"]: card}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
