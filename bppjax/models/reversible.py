"""The flux blocks with a backward pass that recomputes their states (``remat: block``).

Why not ``jax.checkpoint`` around each block: a checkpoint keeps every block's
input states (h and p, ~15 MB per block for 4 x 96 x 96 patches of the paper
model), so even a perfect schedule stays near half of the un-rematerialised
step's memory, and on XLA:CPU the recomputations end up merged with the forward
pass, which saves nothing (``docs/PERFORMANCE.md``).

This sweep uses the structure of a flux unit instead. The update is additive,

    h_l^{t+1} = h_l^t + P_l(h_{l-1}^{t+1}, p_l^t),

and its inputs are the *new* lower state and the down-projection. So block t
can be run backwards from its outputs: keep only the down-projections each
update read (a quarter of the state, at the lower level's resolution), and in
the backward pass recompute ``dh = P_l(h_{l-1}^{t+1}, p_l^t)`` once, which
gives both the block's input state ``h_l^t = h_l^{t+1} - dh`` and the
residuals of P's VJP. Level 0 never changes, so the reconstruction starts
from exact values at the bottom. Each block's recomputation is made to depend
on the cotangents of the block after it (``_after``: a conditional on CPU,
an optimization barrier on other platforms, ``bppjax.models.backend``), so XLA
can neither run the recomputations ahead and keep them all alive nor merge
them with the forward pass.

The reconstruction is exact in real arithmetic; in floating point it adds one
rounding per block and level: gradients agree with the plain blocks to about
1e-6 relative in float32 (``tests/test_reversible.py``), and to bfloat16's rounding
level in bfloat16.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
from jax import lax

from bppjax.models.backend import on_cpu
from bppjax.models.flux import flux_unit_step

Array = jax.Array
Params = Any
#: ``update(l, params_of_P_l, h_lower, p) -> dh``: the upscale P_l of level l as a pure function.
UpdateFn = Callable[[int, Params, Array, Array], Array]
#: ``project(l, params_of_R_l, h) -> p``: the downscale R_l of level l as a pure function.
ProjectFn = Callable[[int, Params, Array], Array]


def _unit(params: Params, l: int) -> Params:
    return params[f"unit_{l}"]


def block_forward(update: UpdateFn, project: ProjectFn, params: Params, h: Sequence[Array], p: Sequence[Array | None],
                  eq2: bool) -> tuple[list[Array], list[Array | None], list[Array | None]]:
    """One flux block: the new states, the new down-projections and the ones each update read.

    ``params`` is the block's parameter tree (``unit_l/{upscale,downscale}``);
    a unit without ``downscale`` (the last block, "carried" reading) leaves no
    down-projection behind.
    """
    h, p = list(h), list(p)
    used: list[Array | None] = [None] * len(h)
    for l in range(1, len(h)):
        unit = _unit(params, l)
        h[l], p[l], _, used[l] = flux_unit_step(
            lambda a, b, l=l, w=unit: update(l, w["upscale"], a, b),
            lambda x, l=l, w=unit: project(l, w["downscale"], x),
            h[l - 1], h[l], p[l], eq2=eq2, carries_r="downscale" in unit,
        )
    return h, p, used


def _block_backward(update: UpdateFn, project: ProjectFn, params: Params, h_next: list[Array],
                    used: Sequence[Array | None], gh: list[Array], gp: list[Array | None], eq2: bool):
    """Reconstruct block t's input states from its outputs and pull the cotangents through it.

    Returns ``(h, gh, gp, gparams)``: the block's input states, the cotangents of
    its input states and down-projections, and of its parameters.
    """
    levels = len(h_next)
    h_prev = list(h_next)
    gh, gp_prev = list(gh), [None] * levels
    gparams: dict[str, dict[str, Params]] = {}
    for l in reversed(range(1, levels)):  # top-down: level l+1's update adds to the cotangent of h_l^{t+1}
        unit, g_unit = _unit(params, l), {}
        if not eq2 and "downscale" in unit:  # p_l^{t+1} = R_l(h_l^{t+1})
            _, r_vjp = jax.vjp(lambda th, x, l=l: project(l, th, x), unit["downscale"], h_next[l])
            g_unit["downscale"], gx = r_vjp(gp[l])
            gh[l] = gh[l] + gx
        # One evaluation of P_l: the block's input state and the residuals of P_l's VJP.
        dh, p_vjp = jax.vjp(lambda th, a, b, l=l: update(l, th, a, b), unit["upscale"], h_next[l - 1], used[l])
        h_prev[l] = _after(h_next[l] - dh.astype(h_next[l].dtype))
        g_unit["upscale"], g_lower, g_used = p_vjp(gh[l].astype(dh.dtype))
        gh[l - 1] = gh[l - 1] + g_lower
        if eq2:  # the update read p = R_l(h_l^t)
            _, r_vjp = jax.vjp(lambda th, x, l=l: project(l, th, x), unit["downscale"], h_prev[l])
            g_unit["downscale"], gx = r_vjp(g_used)
            gh[l] = gh[l] + gx
        else:
            gp_prev[l] = g_used
        gparams[f"unit_{l}"] = g_unit
    return h_prev, gh, gp_prev, gparams


def _after(tree: Any, deps: Any = None) -> Any:
    """``tree`` unchanged in value, computed after ``deps`` (after ``tree`` itself when ``deps`` is None).

    On other platforms this is ``lax.optimization_barrier`` over both. On
    CPU, two XLA:CPU habits defeat rematerialisation, and ``_after_cpu`` undoes both.
    """
    return on_cpu(_after_cpu, _after_barrier, tree, deps)


def _after_barrier(tree: Any, deps: Any) -> Any:
    return lax.optimization_barrier((tree, deps))[0]


def _after_cpu(tree: Any, deps: Any) -> Any:
    """``tree`` in buffers of its own, computed after ``deps`` as far as XLA:CPU can tell.

    * ``lax.optimization_barrier`` is expanded away before common-subexpression
      elimination, which then merges the backward pass's recomputation with the
      forward pass and keeps the forward's intermediates alive;
    * a chain of additions such as ``h^{t+1} = h^t + dh^t`` is fused into every
      consumer instead of being stored, which keeps every ``dh`` alive for as
      long as any state is read.

    A conditional's results are buffers that no fusion sees through, and its
    predicate here is a data dependency on ``deps`` (on ``tree`` itself when
    ``deps`` is None) that XLA cannot fold: both branches return the operand.
    The sums cover whole arrays, since XLA would compute just the one element
    of a stack or concatenation that a slice reads.
    """
    leaves = [x for x in jax.tree.leaves(tree if deps is None else deps) if x.size]
    s = sum(jnp.sum(x, dtype=jnp.float32) for x in leaves)
    return lax.cond(s == s, lambda y: y, lambda y: jax.tree.map(lambda a: a * 1, y), tree)


def reversible_blocks(update: UpdateFn, project: ProjectFn, params: Sequence[Params], h: Sequence[Array],
                      p: Sequence[Array | None], eq2: bool = False) -> tuple[Array, ...]:
    """Run the flux blocks ``params[0], params[1], ...`` and return the final states.

    Same values as running the blocks one after another; the VJP stores only
    the down-projections each update read and recomputes everything else,
    block by block, from the outputs back (module docstring).
    """
    params = tuple(params)

    @jax.custom_vjp
    def sweep(params, h, p):
        for theta in params:
            h, p, _ = block_forward(update, project, theta, h, p, eq2)
        return tuple(h)

    def fwd(params, h, p):
        used_all = []
        for theta in params:
            h, p, used = block_forward(update, project, theta, h, p, eq2)
            h = [h[0], *_after(h[1:])]
            used_all.append(tuple(used))
        h = tuple(h)
        return h, (params, h, tuple(used_all))

    def bwd(res, gh):
        params, h, used_all = res
        h, gh = list(h), list(gh)
        gp: list[Array | None] = [None] * len(h)
        grads: list[Params] = [None] * len(params)
        for t in reversed(range(len(params))):
            # Block t's recomputation reads block t+1's cotangents (module docstring). Its stored
            # down-projections are tied too: what depends on them alone would be merged with
            # the forward pass.
            h, used = _after((h, used_all[t]), (gh, grads[t + 1] if t + 1 < len(params) else None))
            h, gh, gp, grads[t] = _block_backward(update, project, params[t], h, used, gh, gp, eq2)
        return tuple(grads), tuple(gh), tuple(gp)  # gp is all None in the eq2 reading

    sweep.defvjp(fwd, bwd)
    return sweep(params, tuple(h), tuple(p))
