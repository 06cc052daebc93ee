"""ODE solvers for the continuous-time BPP: a scale-causal Euler method for diffrax.

The discrete network is not forward Euler of its ODE (docs/ODE.md):
Euler with dt = 1 updates every level from the old state (a Jacobi sweep),
while the network updates level l from the already-updated level l-1 (a
Gauss-Seidel sweep). ``ScaleCausalEuler`` is that Gauss-Seidel sweep written
as a diffrax solver, so with dt = 1 and piecewise-constant weights it is the
discrete network.

The solver is generic: it needs only that the state is a tuple of components
in causal order (component i's derivative depends on components <= i). Each
component's update evaluates the whole vector field on the partly-updated
state and keeps component i; the other components' work is dead code that
XLA removes, so a step costs one field evaluation (checked by a test with the
compiled FLOP count).

Also here: the solver registry by name and the exact number of vector-field
evaluations a solve made (``count_evaluations``).
"""

from __future__ import annotations

from typing import Callable, ClassVar

import diffrax
import jax
import jax.numpy as jnp
from diffrax import AbstractSolver, AbstractTerm, LocalLinearInterpolation, RESULTS

Array = jax.Array


class ScaleCausalEuler(AbstractSolver):
    """Euler's method with a bottom-up (Gauss-Seidel) sweep over state components.

    For ``y = (y_0, ..., y_n)`` one step is, for i = 0..n in order,
    ``y_i <- y_i + dt * f_i(t0, (y_0', ..., y_{i-1}', y_i, ..., y_n))`` where
    primes mark components already updated in this step. For a field that is
    lower-triangular in its components (scale causality) this is a consistent
    first-order method; with dt = 1 it is exactly the discrete BPP's in-place
    level sweep. No error estimate: fixed steps only.
    """

    term_structure: ClassVar = AbstractTerm
    interpolation_cls: ClassVar[Callable[..., LocalLinearInterpolation]] = LocalLinearInterpolation

    def order(self, terms) -> int:
        return 1

    def init(self, terms, t0, t1, y0, args) -> None:
        if not isinstance(y0, (tuple, list)):
            raise TypeError(
                "ScaleCausalEuler needs the state as a tuple of components in causal order; "
                f"got {type(y0).__name__}"
            )
        return None

    def step(self, terms, t0, t1, y0, args, solver_state, made_jump):
        del solver_state, made_jump
        control = terms.contr(t0, t1)
        y = list(y0)
        for i in range(len(y)):
            # Only component i of this evaluation is live; XLA drops the rest.
            dy_i = terms.vf_prod(t0, tuple(y), args, control)[i]
            y[i] = jax.tree.map(lambda a, d: a + d.astype(a.dtype), y[i], dy_i)
        y1 = type(y0)(y)
        return y1, None, dict(y0=y0, y1=y1), None, RESULTS.successful

    def func(self, terms, t0, y0, args):
        return terms.vf(t0, y0, args)


#: Solvers by config name (``model.ode.solver``).
SOLVERS: dict[str, Callable[[], AbstractSolver]] = {
    "causal_euler": ScaleCausalEuler,
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "ralston": diffrax.Ralston,
    "bosh3": diffrax.Bosh3,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
}

#: Solvers with an embedded error estimate (usable with adaptive steps).
ADAPTIVE = ("heun", "bosh3", "tsit5", "dopri5")

ADJOINTS = ("recursive", "backsolve", "direct")


def make_solver(name: str) -> AbstractSolver:
    """The diffrax solver called ``name`` (see ``SOLVERS``)."""
    if name not in SOLVERS:
        raise ValueError(f"model.ode.solver must be one of {tuple(SOLVERS)}; got {name!r}")
    return SOLVERS[name]()


def stages(solver: AbstractSolver) -> tuple[int, bool]:
    """(vector-field evaluations per step, first-same-as-last) of a one-step solver."""
    tableau = getattr(solver, "tableau", None)
    if tableau is not None:
        return len(tableau.c) + 1, bool(tableau.fsal)
    if isinstance(solver, (diffrax.Euler, ScaleCausalEuler)):
        return 1, False
    raise ValueError(f"unknown evaluation count for solver {type(solver).__name__}")


def count_evaluations(solver: AbstractSolver, num_steps: Array | int) -> Array:
    """Vector-field evaluations made by one ``diffeqsolve`` of ``num_steps`` steps.

    ``num_steps`` is diffrax's ``sol.stats['num_steps']`` (accepted and rejected
    steps). An FSAL solver evaluates all its stages on the first step and reuses
    the last stage afterwards (a rejected step keeps the reusable stage), so it
    costs ``1 + (s - 1) * steps``. Exact for fixed steps. With adaptive steps
    this is a lower bound: each rejected attempt at the very first step
    re-evaluates the first stage, one evaluation more (at most
    ``num_rejected_steps`` in all; typically 0-3 per solve). Assumes ``dt0`` is
    given (no initial step-size search) and no jump times inside the solve
    (the ODE model restarts the solve at each block boundary instead).
    """
    s, fsal = stages(solver)
    n = jnp.asarray(num_steps, jnp.int32)
    return 1 + (s - 1) * n if fsal else s * n


def make_adjoint(name: str, solver: AbstractSolver, checkpoints: int | None = None) -> diffrax.AbstractAdjoint:
    """The backpropagation method through ``diffeqsolve``.

    - ``recursive``: discretise-then-optimise with binomial checkpointing; the
      exact gradient of the solve, memory O(log steps) states.
    - ``backsolve``: the continuous adjoint solved backwards in time; memory
      O(1) in the number of steps, gradients only approximate the solve's.
    - ``direct``: discretise-then-optimise through a bounded loop (memory grows
      with ``max_steps``); differentiable twice and in forward mode
      (LinearScope's JVPs). On XLA:CPU the fastest for one-step solves
      (``time="piecewise"``, dt = 1), slower than ``recursive`` beyond a few
      steps (docs/ODE.md).

    The scale-causal sweep only applies to the forward state's component
    layout, so its backward adjoint solve uses plain Euler.
    """
    if name == "recursive":
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    if name == "direct":  # differentiable twice (LinearScope); memory O(max_steps)
        return diffrax.DirectAdjoint()
    if name == "backsolve":
        back = diffrax.Euler() if isinstance(solver, ScaleCausalEuler) else solver
        return diffrax.BacksolveAdjoint(solver=back)
    raise ValueError(f"model.ode.adjoint must be one of {ADJOINTS}; got {name!r}")


__all__ = [
    "ADAPTIVE", "ADJOINTS", "SOLVERS", "ScaleCausalEuler", "count_evaluations", "make_adjoint", "make_solver", "stages",
]
