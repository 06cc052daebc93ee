"""``python -m bppjax.summary``: parameters, MACs per output pixel and state shapes.

The MAC count is the model's own (``model.macs_per_pixel()``) and can be
cross-checked against XLA's cost analysis of the compiled forward pass
(``--xla``); the test suite does that check.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections

from bppjax.cli import command
from bppjax.overrides import apply_overrides, split_overrides
from bppjax.models.presets import PRESETS, build_model, preset
from bppjax.training.config import load_config_file


def count_params(params: Any) -> int:
    """Number of scalars in a parameter pytree."""
    return int(sum(x.size for x in jax.tree.leaves(params)))


def xla_macs_per_pixel(model: Any, size: int = 256) -> float:
    """Half of XLA's flop estimate of the compiled forward pass, per output pixel."""
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)
    cost = jax.jit(model.apply).lower(variables, x).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost["flops"]) / 2 / (size * size)


def state_shapes(cfg: ml_collections.ConfigDict, size: int) -> list[tuple[int, ...]]:
    """Shapes of the per-level states h_l for a (1, size, size, 3) input (BPP only).

    The input is reflect-padded to a multiple of 2^(L-1); level l holds that
    size divided by 2^(L-1-l).
    """
    if cfg.arch != "bpp":
        return []
    L = len(cfg.features)
    padded = -(-size // 2 ** (L - 1)) * 2 ** (L - 1)
    return [(1, padded >> (L - 1 - l), padded >> (L - 1 - l), int(c)) for l, c in enumerate(cfg.features)]


def summarize(cfg: ml_collections.ConfigDict, size: int = 256, xla: bool = False) -> dict[str, Any]:
    """Everything ``python -m bppjax.summary`` prints, as a dict."""
    model = build_model(cfg)
    probe = max(size, getattr(model, "min_size", 1))
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, probe, probe, 3)))
    params = variables["params"]
    out: dict[str, Any] = {
        "arch": cfg.arch,
        "kind": cfg.kind,
        "params": count_params(params),
        "params_by_part": {k: count_params(v) for k, v in params.items()},
        "macs_per_pixel": float(model.macs_per_pixel()),  # the ODE model counts as one evaluation per block
        "input_size": size,
        "state_shapes": [list(s) for s in state_shapes(cfg, size)],
    }
    if xla:
        out["xla_macs_per_pixel"] = xla_macs_per_pixel(model, size)
    return out


def format_summary(name: str, s: dict[str, Any]) -> str:
    lines = [f"model: {name} ({s['arch']}, {s['kind']})", f"parameters: {s['params']:,}"]
    parts = s["params_by_part"]
    blocks = {k: v for k, v in parts.items() if k.startswith("block_")}
    for k, v in parts.items():
        if k not in blocks:
            lines.append(f"  {k:<12} {v:>12,}")
    if blocks:
        lines.append(f"  {len(blocks)} blocks   {sum(blocks.values()):>12,}  ({', '.join(f'{v:,}' for v in list(blocks.values())[:2])}, ...)")
    lines.append(f"MACs per output pixel: {s['macs_per_pixel']:,.0f}  ({2 * s['macs_per_pixel'] / 1e6:.2f} MFLOP)")
    if "xla_macs_per_pixel" in s:
        lines.append(f"XLA cost analysis:     {s['xla_macs_per_pixel']:,.0f} MAC/px at {s['input_size']}x{s['input_size']} (borders skip padded taps)")
    if s["state_shapes"]:
        lines.append(f"states for a 1x{s['input_size']}x{s['input_size']}x3 input (lowest level first):")
        lines += [f"  h_{l}: {tuple(shape)}" for l, shape in enumerate(s["state_shapes"])]
    return "\n".join(lines)


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
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(format_summary(name, s))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"name": name, **s}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
