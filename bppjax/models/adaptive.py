"""Adaptive-step solves with a gradient that replays the accepted steps (the ``recursive`` adjoint).

The forward pass is diffrax's adaptive solve (PID step-size control, any
solver with an error estimate), saving the state after every accepted step
(``SaveAt(steps=True)``). Nothing of it is differentiated. The backward pass
walks the accepted steps in reverse: for step k it re-runs the explicit
Runge-Kutta step from the stored state y_k over [t_k, t_{k+1}] and pulls the
cotangent through it with ``jax.vjp``. This is the exact gradient of the
computed solution with the step grid held fixed, which is also what diffrax's
own discretise-then-optimise adjoints return (its PID controller stops
gradients through the step sizes). Rejected steps cost one forward attempt
and nothing in the backward pass.

Cost per accepted evaluation: forward once, recompute once, backward once,
with no while-loop bookkeeping in the backward loop. Memory under
differentiation: the stored states, ``max_steps`` x the state (the buffer
diffrax allocates for ``SaveAt(steps=True)``), plus one step's residuals at a
time; ``replay_fits`` says whether that buffer fits (the ODE model otherwise
keeps diffrax's checkpointed adjoint). Without differentiation it is a plain
adaptive solve that keeps only the current state.
"""

from __future__ import annotations

from typing import Any, Callable

import os

import diffrax
import jax
import jax.numpy as jnp
from jax import lax

from bppjax.models.solvers import Tableau, count_evaluations, fixed_step_tableau, make_solver, runge_kutta_step

Array = jax.Array
#: ``rate(t, y, args)``: the vector field as a tuple like ``y``, None for components that never change.
Rate = Callable[[Array, tuple, Any], tuple]


#: The share of the device's memory the replay's stored states may take (``replay_fits``).
REPLAY_MEMORY_FRACTION = 0.25


def device_memory_bytes() -> int:
    """Memory of the default device: its allocator's limit where it reports one, else the host's physical memory."""
    try:
        stats = jax.local_devices()[0].memory_stats() or {}
    except Exception:  # noqa: BLE001 - backends without memory statistics
        stats = {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def replay_fits(y0: tuple, max_steps: int) -> bool:
    """Whether ``max_steps`` copies of the state ``y0`` fit in ``REPLAY_MEMORY_FRACTION`` of the device's memory."""
    state = sum(int(a.size) * a.dtype.itemsize for a in jax.tree.leaves(y0))
    return int(max_steps) * state <= REPLAY_MEMORY_FRACTION * device_memory_bytes()


def _accepted_step(rate: Rate, tableau: Tableau, args: Any, t0: Array, t1: Array, y: tuple) -> tuple:
    """The Runge-Kutta step the adaptive solve accepted over [t0, t1] (its solution weights, no error estimate)."""
    return runge_kutta_step(lambda t, z: rate(t, z, args), tableau, t0, t1 - t0, y)


def solve_adaptive(term_fn: Callable, rate: Rate, solver_name: str, y0: tuple, args: Any, t0: float, t1: float, *,
                   dt0: float, rtol: float, atol: float, max_steps: int) -> tuple[tuple, Array]:
    """Adaptive solve of dy/dt = f(t, y, args) over [t0, t1]: (y(t1), vector-field evaluations).

    ``term_fn(t, y, args)`` is the field as diffrax calls it (zeros for
    constant components); ``rate`` is the same field for the replayed steps.
    Differentiable in reverse mode with respect to ``y0`` and ``args`` (not in
    forward mode: use ``adjoint="direct"`` for JVPs).
    """
    solver = make_solver(solver_name)
    tableau = fixed_step_tableau(solver_name)

    def forward(y0, args, steps: bool):
        """The adaptive solve; with ``steps``, also every accepted step's end time and state (``max_steps`` slots)."""
        sol = diffrax.diffeqsolve(
            diffrax.ODETerm(term_fn), solver, t0, t1, dt0, y0, args=args,
            saveat=diffrax.SaveAt(steps=steps, t1=not steps), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            adjoint=diffrax.DirectAdjoint(), max_steps=max_steps,
        )
        n = sol.stats["num_accepted_steps"].astype(jnp.int32)
        y1 = jax.tree.map(lambda v: v[n - 1] if steps else v[0], sol.ys)
        nfe = count_evaluations(solver, sol.stats["num_steps"])
        return (y1, nfe), (sol.ts, sol.ys, n)

    @jax.custom_vjp
    def solve(y0, args):  # not differentiated: no buffer of states
        return forward(y0, args, steps=False)[0]

    def solve_fwd(y0, args):
        out, (ts, ys, n) = forward(y0, args, steps=True)
        return out, (y0, args, ts, ys, n)

    def solve_bwd(res, cotangents):
        y0, args, ts, ys, n = res
        y_bar = cotangents[0]

        def body(i, carry):
            y_bar, args_bar = carry
            k = n - 1 - i  # step k goes from (t_k, y_k) to t_{k+1}; ys[k] is y_{k+1}
            ya = jax.tree.map(lambda a, b: jnp.where(k == 0, a, b[jnp.maximum(k - 1, 0)]), y0, ys)
            ta = jnp.where(k == 0, jnp.asarray(t0, ts.dtype), ts[jnp.maximum(k - 1, 0)])
            _, pull = jax.vjp(lambda y, a: _accepted_step(rate, tableau, a, ta, ts[k], y), ya, args)
            dy, da = pull(y_bar)
            return dy, jax.tree.map(jnp.add, args_bar, da)

        zeros = jax.tree.map(jnp.zeros_like, args)
        y_bar, args_bar = lax.fori_loop(0, n, body, (tuple(y_bar), zeros))
        return y_bar, args_bar

    solve.defvjp(solve_fwd, solve_bwd)
    y1, nfe = solve(tuple(y0), args)
    return y1, nfe


__all__ = ["REPLAY_MEMORY_FRACTION", "device_memory_bytes", "replay_fits", "solve_adaptive"]
