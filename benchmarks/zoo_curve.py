"""Quality against training time of a zoo run: its kept checkpoints scored on the benchmark sets.

    python benchmarks/zoo_curve.py ../runs/zoo_x2 --minutes 15 30 45 \\
        --data ../shared/data/Set5 ../shared/data/Set14 ../shared/data/B100 --json benchmarks/results/zoo_x2_curve.json

The wall time of a checkpoint is its folder's modification time minus that of
the run's ``config.json`` (written when training starts), so it includes
start-up, compilation and validation. The checkpoint nearest each requested
minute is scored (Y_M, border = scale; ``--mode`` is the tiling, as for
``bppjax.tiling``). These are points of one cosine
schedule, not separate shorter runs, whose learning rate would have annealed
sooner: a run planned for 15 minutes would score somewhat higher than the
15-minute point of a longer one.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bppjax.workdir import CHECKPOINT_DIR, CONFIG_FILE, load_model
from bppjax.evaluate import evaluate


def checkpoint_minutes(workdir: Path) -> dict[int, float]:
    """Step -> wall minutes since the run started, for every kept checkpoint."""
    start = (workdir / CONFIG_FILE).stat().st_mtime
    out = {}
    for d in (workdir / CHECKPOINT_DIR).iterdir():
        if d.is_dir() and d.name.isdigit():
            out[int(d.name)] = (max(f.stat().st_mtime for f in d.rglob("*")) - start) / 60
    return dict(sorted(out.items()))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workdir", type=Path)
    p.add_argument("--minutes", type=float, nargs="+", required=True)
    p.add_argument("--data", nargs="+", required=True)
    p.add_argument("--mode", default="auto", help="tiling mode of the scoring (bppjax.tiling.MODES)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    minutes = checkpoint_minutes(args.workdir)
    rows = []
    for want in args.minutes:
        step = min(minutes, key=lambda s: abs(minutes[s] - want))
        m = load_model(args.workdir, step=step)
        scales = list(m.config.data.scales)
        res = evaluate(lambda x, m=m: m.enhance(x, mode=args.mode), args.data, scales, progress=False)
        rows.append({"minutes": round(minutes[step], 1), "step": step,
                     "psnr": {d: {str(s): round(v["psnr"], 3) for s, v in r.items()} for d, r in res.items()},
                     "ssim": {d: {str(s): round(v["ssim"], 4) for s, v in r.items()} for d, r in res.items()}})
        print(f"{minutes[step]:5.1f} min  step {step:6d}  " + "  ".join(
            f"{d} x{s}: {v['psnr']:.2f}" for d, r in res.items() for s, v in r.items()), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"workdir": str(args.workdir), "mode": args.mode, "points": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
