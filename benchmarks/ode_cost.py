"""Training cost of the continuous-time BPP against the discrete network, side by side in one process.

For each preset (default ``medium`` at batch 8 and ``paper`` at batch 4, 96x96
patches, float32) this compiles the training loop's own ``train_step`` (L1,
Adam; ``bppjax.benchmark.compile_train_step``) for the discrete network and for
``model.kind=ode`` under a list of solver / step / weight-in-time / adjoint
settings, then times them round-robin (one step of each in turn, ``--reps``
rounds; medians), so that a change of machine load hits every variant alike.

Per variant it reports: seconds per step, vector-field evaluations of one
forward solve (``nfe``, read from the model's ``intermediates``; the discrete
network makes one per block), the step time relative to the discrete step
(``x_discrete``) and per evaluation relative to the discrete step's per-block
cost (``x_per_evaluation`` = x_discrete * nfe_discrete / nfe), the compile time
(and relative to the discrete step's), and XLA's temp memory of the compiled
step (``memory_analysis``).

    python benchmarks/ode_cost.py                   # writes benchmarks/results/ode_cost.json
    python benchmarks/ode_cost.py --presets paper --groups fixed --only "causal_euler dt=1" "heun dt=1" --reps 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import jax

from bppjax.benchmark import compile_train_step, memory_stats
from bppjax.models import preset

RESULTS = Path(__file__).resolve().parent / "results" / "ode_cost.json"
BATCH = {"medium": 8, "paper": 4, "small": 8, "tiny": 8}
PATCH = 96

#: (label, model.ode settings): fixed steps with the default adjoint first (the issue's targets), then the
#: memory-saving adjoints and adaptive steps.
FIXED = (
    ("causal_euler dt=1", dict(solver="causal_euler", dt=1.0)),
    ("euler dt=1", dict(solver="euler", dt=1.0)),
    ("heun dt=1", dict(solver="heun", dt=1.0)),
    ("heun dt=1 linear", dict(solver="heun", dt=1.0, time="linear")),
    ("heun dt=0.5", dict(solver="heun", dt=0.5)),
    ("heun dt=0.5 linear", dict(solver="heun", dt=0.5, time="linear")),
)
UNROLL = (
    ("causal_euler dt=1 unroll", dict(solver="causal_euler", dt=1.0, loop="unroll")),
    ("heun dt=1 unroll", dict(solver="heun", dt=1.0, loop="unroll")),
    ("heun dt=0.5 unroll", dict(solver="heun", dt=0.5, loop="unroll")),
)
MEMORY = (
    ("causal_euler dt=1 checkpoint", dict(solver="causal_euler", dt=1.0, adjoint="checkpoint")),
    ("heun dt=0.5 checkpoint", dict(solver="heun", dt=0.5, adjoint="checkpoint")),
    ("causal_euler dt=1 binomial", dict(solver="causal_euler", dt=1.0, adjoint="binomial")),
    ("heun dt=0.5 binomial", dict(solver="heun", dt=0.5, adjoint="binomial")),
    ("heun dt=0.5 backsolve", dict(solver="heun", dt=0.5, adjoint="backsolve")),
)
#: Adaptive solves beside fixed steps of the same field (the per-evaluation reference, ``ADAPTIVE_REFERENCE``).
ADAPTIVE_REFERENCE = "tsit5 dt=1 linear"
ADAPTIVE = (
    ("tsit5 dt=1 linear", dict(solver="tsit5", dt=1.0, time="linear")),
    ("tsit5 adaptive linear", dict(solver="tsit5", adaptive=True, dt=0.5, time="linear", max_steps=64)),
    ("heun adaptive linear", dict(solver="heun", adaptive=True, dt=0.5, time="linear", max_steps=160)),
)


def variant_config(name: str, ode: dict[str, Any] | None):
    cfg = preset(name)
    if ode is not None:
        cfg.kind = "ode"
        cfg.ode.update(ode)
    return cfg


def forward_nfe(cfg, state, data) -> int:
    """Field evaluations of one forward solve at the state's parameters (the discrete network: its depth)."""
    from bppjax.models import build_model

    if cfg.kind != "ode":
        return int(cfg.depth)
    model = build_model(cfg)
    x = data["input"].astype(jax.numpy.float32) / 255.0
    _, st = jax.jit(lambda p, x: model.apply({"params": p}, x, mutable=["intermediates"]))(state.params, x)
    return int(st["intermediates"]["nfe"][0])


def run(presets: list[str], reps: int, groups: list[str], only: list[str] | None = None) -> dict[str, Any]:
    chosen = {"fixed": FIXED, "unroll": UNROLL, "memory": MEMORY, "adaptive": ADAPTIVE}
    out: dict[str, Any] = {"jax": jax.__version__, "backend": jax.default_backend(), "reps": reps, "patch": PATCH,
                           "load_average_start": os.getloadavg(), "presets": {}}
    for name in presets:
        batch = BATCH.get(name, 4)
        variants = [("discrete", None)] + [v for g in groups for v in chosen[g] if not only or v[0] in only]
        compiled = {}
        rows: dict[str, dict[str, Any]] = {}
        for label, ode in variants:
            cfg = variant_config(name, ode)
            step, (state, data), compile_s = compile_train_step(cfg, "float32", PATCH, batch)
            try:
                nfe = forward_nfe(cfg, state, data)
                state, _ = jax.block_until_ready(step(state, data))  # warm-up
            except Exception as e:  # e.g. an adaptive solve that needs more than max_steps here
                print(f"[ode_cost] {name} {label}: failed: {str(e).splitlines()[0]}", flush=True)
                continue
            rows[label] = {"ode": ode, "compile_s": compile_s, "temp_bytes": memory_stats(step)["temp_bytes"], "nfe": nfe}
            compiled[label] = [step, state, data, []]
            print(f"[ode_cost] {name} {label}: compiled in {compile_s:.1f} s", flush=True)
        for _ in range(reps):  # round-robin: one step of every variant per round
            for label, entry in compiled.items():
                step, state, data, times = entry
                t = time.perf_counter()
                entry[1], _ = jax.block_until_ready(step(state, data))
                times.append(time.perf_counter() - t)
        base = rows["discrete"]
        base["s_per_step"] = statistics.median(compiled["discrete"][3])
        for label, row in rows.items():
            row["s_per_step"] = statistics.median(compiled[label][3])
            row["discrete_s_per_step"] = base["s_per_step"]
            row["x_discrete"] = row["s_per_step"] / base["s_per_step"]
            row["x_per_evaluation"] = row["x_discrete"] * base["nfe"] / row["nfe"]
            row["compile_x_discrete"] = row["compile_s"] / base["compile_s"]
            row["temp_x_discrete"] = row["temp_bytes"] / base["temp_bytes"]
        for label, row in rows.items():  # adaptive: per evaluation against a fixed-step evaluation of the same field
            ref = rows.get(ADAPTIVE_REFERENCE)
            if (row["ode"] or {}).get("adaptive") and ref:
                row["x_fixed_per_evaluation"] = (row["s_per_step"] / row["nfe"]) / (ref["s_per_step"] / ref["nfe"])
        out["presets"][name] = {"batch": batch, "reps": reps, "groups": groups, "rows": rows,
                                "load_average_end": os.getloadavg()}
        del compiled
    out["load_average_end"] = os.getloadavg()
    return out


def merge_presets(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """``new`` over ``old``, preset by preset and variant by variant.

    Every ratio in a row is against the discrete step timed in the same run
    (``discrete_s_per_step``), so rows of different runs stay comparable; the
    ``discrete`` row itself is the earlier run's when both have one.
    """
    merged = dict(old)
    for name, p in new.items():
        if name not in old:
            merged[name] = p
            continue
        rows = old[name]["rows"] | {k: v for k, v in p["rows"].items() if k != "discrete"}
        merged[name] = {**old[name], "rows": rows, "groups": sorted(set(old[name]["groups"]) | set(p["groups"]))}
    return merged


def table(res: dict[str, Any]) -> str:
    lines = []
    for name, p in res["presets"].items():
        lines += [f"\n{name}, batch {p['batch']} x {res['patch']}x{res['patch']}:",
                  "| model | s/step | x discrete | NFE | x discrete per evaluation | compile s (x discrete) | temp MB |",
                  "|---|---|---|---|---|---|---|"]
        for label, r in p["rows"].items():
            fixed = f" ({r['x_fixed_per_evaluation']:.2f} x fixed)" if "x_fixed_per_evaluation" in r else ""
            lines.append(f"| {label} | {r['s_per_step']:.3f} | {r['x_discrete']:.2f} | {r['nfe']} | {r['x_per_evaluation']:.2f}{fixed} | "
                         f"{r['compile_s']:.1f} ({r['compile_x_discrete']:.2f}) | {r['temp_bytes'] / 2**20:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["medium", "paper"])
    ap.add_argument("--groups", nargs="+", default=["fixed", "unroll", "memory", "adaptive"],
                    choices=["fixed", "unroll", "memory", "adaptive"])
    ap.add_argument("--reps", type=int, default=5, help="timed rounds (median; default 5)")
    ap.add_argument("--only", nargs="+", help="only these variant labels (and the discrete network)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    res = run(args.presets, args.reps, args.groups, args.only)
    print(table(res))
    if args.out.exists():  # keep the other presets' and groups' results (e.g. medium and paper run separately)
        res["presets"] = merge_presets(json.loads(args.out.read_text()).get("presets", {}), res["presets"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1) + "\n")
    print(f"[ode_cost] wrote {args.out}")


if __name__ == "__main__":
    main()
