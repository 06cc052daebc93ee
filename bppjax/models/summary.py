"""What a model config amounts to: parameters, MACs per output pixel, state shapes (``python -m bppjax.summary``).

The MAC count is the model's own (``model.macs_per_pixel()``) and can be
cross-checked against XLA's cost analysis of the compiled forward pass
(``xla_macs_per_pixel``); the test suite does that check.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from bppjax.models.presets import build_model


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
    """Shapes of the per-level states h_l for a (1, size, size, 3) input, as the model gives them (none for a ResNet)."""
    return [tuple(s) for s in build_model(cfg).state_shapes(size, size)]


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
        "state_shapes": [list(s) for s in model.state_shapes(size, size)],
    }
    if xla:
        out["xla_macs_per_pixel"] = xla_macs_per_pixel(model, size)
    return out


def format_summary(name: str, s: dict[str, Any]) -> str:
    """The text ``python -m bppjax.summary`` prints for ``summarize``'s dict."""
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


__all__ = ["count_params", "format_summary", "state_shapes", "summarize", "xla_macs_per_pixel"]
