"""Benchmark: ``python -m bppjax.bench [--preset NAME] [--dtypes float32,bfloat16] [--torch [SCRIPT]] [--json PATH]``.

Measures, per preset (default ``paper`` and ``tiny``) and compute dtype
(``--dtypes``, default float32 and bfloat16 on every backend): forward
throughput (output px/s, one 256x256 image), the training loop's own
``train_step`` (4 x 96x96 patches, L1, Adam), compile times, GFLOP/s from the
model's MAC count as a fraction of a matmul peak of the same dtype measured in
the same process (and of ``--ceiling-gflops``, this machine's FMA ceiling, when
given), and the ``remat`` settings' temp
memory and step time against ``remat: none``. Figures are medians of
``--reps`` runs; the tables put bfloat16 beside float32 with their ratio.

With ``--torch`` (needs ``pip install -e .[bench]``) ``benchmarks/torch_bpp.py``
of the source checkout (or the script given) times the same network in PyTorch, in a separate process, in the same dtypes
(bfloat16 by ``torch.autocast``), and the ratios are printed for matching
dtypes and for each framework's best. Run it on a quiet machine: the JSON
records the load average and the CPU's AMX / AVX-512 BF16 flags. The
measurements are ``bppjax.benchmark``'s (``run``, ``bench_forward``,
``bench_train``, ``remat_comparison``, ``run_torch``, ``cpu_features``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

from bppjax.benchmark import DEFAULT_PRESETS, format_table, run
from bppjax.cli import arg_type, command
from bppjax.models import preset
from bppjax.models.bpp import DTYPES


def dtype_list(text: str) -> list[str]:
    """``--dtypes``: comma-separated compute dtypes, each one of ``DTYPES``."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in DTYPES]
    if bad or not names:
        raise ValueError(f"choose from {', '.join(DTYPES)}")
    return names


@command
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bppjax.bench", description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", action="append", help=f"repeatable (default: {', '.join(DEFAULT_PRESETS)})")
    ap.add_argument("--dtypes", type=arg_type(dtype_list, "--dtypes"), help=f"comma-separated (default: {','.join(DTYPES)})")
    ap.add_argument("--dtype", action="append", choices=list(DTYPES), help="repeatable; the same as listing it in --dtypes")
    ap.add_argument("--torch", nargs="?", const="benchmarks/torch_bpp.py", metavar="SCRIPT", type=Path,
                    help="also time the PyTorch network of SCRIPT (default benchmarks/torch_bpp.py, from a source checkout) "
                         "in a separate process")
    ap.add_argument("--json", type=Path, help="write all results here")
    ap.add_argument("--reps", type=int, default=5, help="timed runs per figure (median)")
    ap.add_argument("--no-remat", action="store_true", help="skip the remat memory/time comparison")
    ap.add_argument("--ceiling-gflops", type=float, help="this machine's hardware FMA ceiling, to report fractions of it too")
    a = ap.parse_args(argv)
    presets = a.preset or list(DEFAULT_PRESETS)
    for p in presets:
        preset(p)  # a clear error for an unknown name before anything is compiled
    dtypes = list(dict.fromkeys((a.dtypes or []) + (a.dtype or []))) or None
    res = run(presets, dtypes, a.reps, not a.no_remat, a.torch, a.ceiling_gflops, log=lambda s: print(s, file=sys.stderr, flush=True))
    print(format_table(res))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(res, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
