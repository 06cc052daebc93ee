"""Update norms (the paper's Eq. 3 and Fig. 7): how much each flux unit moves its state.

Everything here reads the ``update_norms`` values the networks *sow* into the
``intermediates`` collection, never the network's internals, so one code path
serves every architecture that sows them:

* BPP's ``FluxBlock`` sows an array ``(levels, B)`` per block (level 0 is 0);
* the ResNet baseline's ``ResBlock`` sows ``(B,)`` per block (one "level");
* the ODE model sows its update magnitudes sampled at the block times, either
  per block like the discrete network or as one ``(levels, blocks, B)`` array.

The result of :func:`update_norms` is a ``(levels, blocks, B)`` array, lowest
level first; :func:`mean_update_norms` averages it over a dataset and
:func:`normalise` scales the largest entry to 100, as in the paper.
"""

from __future__ import annotations

import functools
from typing import Any, Iterable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

SOW_NAME = "update_norms"


def _sown_values(tree: Any, name: str = SOW_NAME) -> list[Array]:
    """All values sown under ``name``, in call order (dicts keep insertion order)."""
    found: list[Array] = []
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            if key == name:
                found.extend(value if isinstance(value, (tuple, list)) else [value])
            else:
                found.extend(_sown_values(value, name))
    return found


def stack_update_norms(intermediates: Any) -> Array:
    """Arrange sown update norms as ``(levels, blocks, B)``, lowest level first.

    A 1-D value ``(B,)`` is one unit of a single-level network; a 2-D value
    ``(levels, B)`` is one block; a 3-D value is already ``(levels, blocks, B)``.
    Per-block values are stacked along the block axis in the order they were sown.
    """
    values = [jnp.asarray(v, jnp.float32) for v in _sown_values(intermediates)]
    if not values:
        raise ValueError(
            f"the model sowed no '{SOW_NAME}' into the 'intermediates' collection; "
            "update norms need FluxBlock/ResBlock (or the ODE model) to sow them"
        )
    ranks = {v.ndim for v in values}
    if ranks == {3}:
        return jnp.concatenate(values, axis=1)
    if not ranks <= {1, 2}:
        raise ValueError(f"cannot combine sown '{SOW_NAME}' of ranks {sorted(ranks)}; expected (B,), (levels, B) or (levels, blocks, B)")
    blocks = [v[None] if v.ndim == 1 else v for v in values]
    if len({b.shape for b in blocks}) != 1:
        raise ValueError(f"sown '{SOW_NAME}' have different shapes: {sorted({b.shape for b in blocks})}")
    return jnp.stack(blocks, axis=1)


@functools.partial(jax.jit, static_argnames="model")
def update_norms(model: nn.Module, params: Any, x: Array) -> Array:
    """Per-sample L2 norms of every flux unit's residual update, ``(levels, blocks, B)``.

    Jitted, keyed on the model: inputs of one shape compile once.

    Args:
      model: the ordinary (not frozen) network.
      params: its parameters.
      x: a batch ``(B, H, W, 3)`` of network inputs.
    """
    _, state = model.apply({"params": params}, x, mutable=["intermediates"])
    return stack_update_norms(state["intermediates"])


def normalise(norms: Array | np.ndarray, top: float = 100.0) -> np.ndarray:
    """Scale so the largest entry is exactly ``top`` (the paper reports percentages of the max)."""
    norms = np.asarray(norms, np.float64)
    peak = norms.max() if norms.size else 0.0
    if not peak > 0:
        return np.zeros_like(norms)
    out = norms / peak * top
    out[norms == peak] = top  # x / x * 100 can round to 99.99999999999999
    return out


def average(per_batch: Iterable[Array | np.ndarray]) -> np.ndarray:
    """Mean over every sample of ``(levels, blocks, B)`` arrays (batches may differ in B)."""
    total, count = None, 0
    for n in per_batch:
        n = np.asarray(n, np.float64)
        total = n.sum(-1) if total is None else total + n.sum(-1)
        count += n.shape[-1]
    if total is None:
        raise ValueError("cannot average update norms over zero images")
    return total / count


def mean_update_norms(model: nn.Module, params: Any, images: Iterable[Array], normalised: bool = True) -> np.ndarray:
    """Update norms averaged over a dataset: ``(levels, blocks)``, max 100 if ``normalised``.

    ``images`` yields batches ``(B, H, W, 3)`` or single images ``(H, W, 3)``;
    sizes may differ between items (each is run on its own), and every sample
    counts once in the average.
    """
    batches = (jnp.asarray(x, jnp.float32) for x in images)
    mean = average(update_norms(model, params, x[None] if x.ndim == 3 else x) for x in batches)
    return normalise(mean) if normalised else mean
