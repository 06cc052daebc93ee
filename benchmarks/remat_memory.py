"""Memory of the rematerialisation modes; figures recorded in docs/PERFORMANCE.md ("Remat").

Commands (any machine; compiles only, nothing is timed)::

    python benchmarks/remat_memory.py                    # paper preset, 4 x 96x96, gradients only
    python benchmarks/remat_memory.py --preset small --batch 16 --patch 48

Prints XLA's temp memory (``memory_analysis()``) of the compiled gradient of
an L1 loss for ``remat: none | block | checkpoint``, each with the compiler
options the train loop uses (``layers.compiler_options``). Expected for the
paper preset: ``block`` about a quarter of ``none``, ``checkpoint`` close to
``none``. To see what a step keeps, dump XLA's buffer assignment
(``XLA_FLAGS=--xla_dump_to=DIR``, files ``*-live-range.txt`` and
``*-memory-usage-report.txt``).
The full training step (with Adam) is measured by ``python -m bppjax.bench``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

import jax
import jax.numpy as jnp

from bppjax.models import build_model, preset
from bppjax.models.layers import compiler_options

MODES = ("none", "block", "checkpoint")


def compiled_gradient(preset_name: str, remat: str, batch: int, patch: int):
    """The compiled ``grad`` of a mean-L1 loss for one preset and remat mode (parameters abstract)."""
    cfg = preset(preset_name)
    cfg.remat = remat
    model = build_model(cfg)
    x = jax.ShapeDtypeStruct((batch, patch, patch, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.key(0, impl="rbg"), x)["params"]
    loss = lambda p, x: jnp.mean(jnp.abs(model.apply({"params": p}, x) - x))  # noqa: E731
    return jax.jit(jax.grad(loss), compiler_options=compiler_options(remat)).lower(params, x).compile()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--patch", type=int, default=96)
    a = ap.parse_args(argv)
    temp = {}
    for mode in MODES:
        c = compiled_gradient(a.preset, mode, a.batch, a.patch)
        temp[mode] = c.memory_analysis().temp_size_in_bytes
        print(f"{mode:10s} temp {temp[mode] / 1e6:8.1f} MB  ({temp[mode] / temp['none']:.0%} of none)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
