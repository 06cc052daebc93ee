"""Train state, optimizer and learning-rate schedule.

The state is a plain pytree (step, params, opt_state) so that it shards
with one ``NamedSharding``, donates, and checkpoints with Orbax as is. It
holds no random key: the training step draws nothing at random (the batches
are drawn on the host from ``(seed, step)``, ``bppjax.data.sampler``).
"""

from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import ml_collections
import optax

from bppjax.models import at_factor, conditioned_on_factor

PyTree = Any


@flax.struct.dataclass
class TrainState:
    """Everything a training step changes (and a checkpoint must hold)."""

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    apply_fn: Callable = flax.struct.field(pytree_node=False)
    tx: optax.GradientTransformation = flax.struct.field(pytree_node=False)


def make_schedule(optim: ml_collections.ConfigDict, steps: int) -> optax.Schedule:
    """Learning rate per step: ``constant``, ``cosine`` (to ``final_lr`` at ``steps``) or ``step`` (paper: halve every 200k)."""
    lr, warm = float(optim.lr), int(optim.warmup_steps)
    if optim.schedule == "cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=lr / max(warm, 1) if warm else lr,
            peak_value=lr,
            warmup_steps=warm,
            decay_steps=max(int(steps), warm + 1),
            end_value=float(optim.final_lr),
        )
    if optim.schedule == "step":
        main = optax.exponential_decay(lr, int(optim.decay_every), float(optim.decay_factor), staircase=True)
    else:
        main = optax.constant_schedule(lr)
    if not warm:
        return main
    return optax.join_schedules([optax.linear_schedule(lr / warm, lr, warm), main], [warm])


def make_optimizer(optim: ml_collections.ConfigDict, steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """Adam (AdamW if ``weight_decay``), optional global-norm clipping."""
    schedule = make_schedule(optim, steps)
    if float(optim.weight_decay) > 0:
        opt = optax.adamw(schedule, float(optim.b1), float(optim.b2), float(optim.eps), weight_decay=float(optim.weight_decay))
    else:
        opt = optax.adam(schedule, float(optim.b1), float(optim.b2), float(optim.eps))
    if float(optim.clip_norm) > 0:
        opt = optax.chain(optax.clip_by_global_norm(float(optim.clip_norm)), opt)
    return opt, schedule


def factor_apply(model: nn.Module) -> Callable:
    """``model.apply``; for a model conditioned on the SR factor, ``(variables, x, factor)`` with the batch's factors."""
    if not conditioned_on_factor(model):
        return model.apply
    return lambda variables, x, factor: at_factor(model, factor).apply(variables, x)


def create_train_state(
    model: nn.Module, tx: optax.GradientTransformation, seed: int, patch: int
) -> TrainState:
    """Initial state: parameters from ``key(seed)``, step 0, fresh optimizer state.

    The key uses the ``rbg`` generator: the same seed gives the same parameters
    on a given backend, and XLA:CPU compiles the initialisers in ~2.6 s instead
    of ~14 s with the default (partitionable threefry) for the tiny model.
    """
    root = jax.random.key(int(seed), impl="rbg")
    params = model.init(root, jnp.zeros((1, patch, patch, 3), jnp.float32))["params"]
    return TrainState(
        step=jnp.asarray(0, jnp.int32),
        params=params,
        opt_state=tx.init(params),
        apply_fn=factor_apply(model),
        tx=tx,
    )
