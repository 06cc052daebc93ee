"""The jitted training step and the losses."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from bppjax.metrics import ssim_loss
from bppjax.training.state import TrainState

Batch = dict[str, jax.Array]


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(pred - target))


def l2(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(pred - target))


def neg_ssim(pred: jax.Array, target: jax.Array) -> jax.Array:
    """1 - SSIM over RGB (the paper's DPED objective, shifted to be >= 0)."""
    return ssim_loss(pred, target, convention="RGB")


LOSSES: dict[str, Callable[[jax.Array, jax.Array], jax.Array]] = {"l1": l1, "l2": l2, "neg_ssim": neg_ssim}


def to_float(x: jax.Array, peak: float) -> jax.Array:
    """uint8/uint16 batch -> float32 in [0, 1] (on device: the host sends integers)."""
    return x.astype(jnp.float32) * (1.0 / peak)


def train_step(
    state: TrainState, batch: Batch, *, loss: str, schedule: optax.Schedule, peak: float
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer update on a (sharded) batch: pure, so ``jax.jit`` partitions it.

    Returns the new state and scalar metrics: loss, grad_norm, param_norm, lr
    (the rate applied at this step).
    """
    x, y = to_float(batch["input"], peak), to_float(batch["target"], peak)
    factor = batch.get("scale")  # each patch's SR factor, for a model conditioned on it
    loss_fn = LOSSES[loss]

    def objective(params):
        variables = {"params": params}
        out = state.apply_fn(variables, x) if factor is None else state.apply_fn(variables, x, factor)
        return loss_fn(out.astype(jnp.float32), y)

    value, grads = jax.value_and_grad(objective)(state.params)
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {
        "loss": value,
        "grad_norm": optax.tree.norm(grads),
        "param_norm": optax.tree.norm(params),
        "lr": jnp.asarray(schedule(state.step), jnp.float32),
    }
    new = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
    return new, metrics
