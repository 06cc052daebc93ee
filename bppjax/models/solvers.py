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

For fixed steps the ODE model does not go through ``diffeqsolve``: it loops
over steps itself (``bppjax.models.ode.integrate_fixed``) with the step
functions here, ``runge_kutta_step`` (any registered Runge-Kutta method, from
diffrax's Butcher tableau) and ``causal_euler_step`` (the sweep above, one
component rate at a time, so no work is left for dead-code elimination).

Also here: the solver registry by name, the adjoints by name and the exact
number of vector-field evaluations a solve made (``count_evaluations``,
``fixed_step_evaluations``).
"""

from __future__ import annotations

from typing import Callable, ClassVar, NamedTuple, Sequence

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

#: ``model.ode.adjoint``: how the gradient goes through the solve (``make_adjoint``, docs/ODE.md).
ADJOINTS = ("recursive", "checkpoint", "binomial", "backsolve", "direct")
#: The adjoints that the fixed-step loop implements; the others go through ``diffeqsolve``.
LOOP_ADJOINTS = ("recursive", "checkpoint", "direct")


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
    """The backpropagation method through ``diffeqsolve`` (adaptive steps, or ``binomial``/``backsolve``).

    - ``binomial`` (and ``recursive``/``checkpoint`` where they reach here):
      discretise-then-optimise with diffrax's binomial checkpointing; the exact
      gradient of the solve, memory O(log steps) states. (Fixed-step solves with
      ``recursive`` or ``checkpoint`` never get here: the step loop
      differentiates itself; adaptive ones replay their accepted steps,
      ``bppjax.models.adaptive``, unless states are saved inside a solve.)
    - ``backsolve``: the continuous adjoint solved backwards in time; memory
      O(1) in the number of steps, gradients only approximate the solve's.
    - ``direct``: discretise-then-optimise through a bounded loop (memory grows
      with ``max_steps``); differentiable twice and in forward mode
      (LinearScope's JVPs).

    The scale-causal sweep only applies to the forward state's component
    layout, so its backward adjoint solve uses plain Euler.
    """
    if name in ("recursive", "checkpoint", "binomial"):
        return diffrax.RecursiveCheckpointAdjoint(checkpoints=checkpoints)
    if name == "direct":  # differentiable twice (LinearScope); memory O(max_steps)
        return diffrax.DirectAdjoint()
    if name == "backsolve":
        back = diffrax.Euler() if isinstance(solver, ScaleCausalEuler) else solver
        return diffrax.BacksolveAdjoint(solver=back)
    raise ValueError(f"model.ode.adjoint must be one of {ADJOINTS}; got {name!r}")


class Tableau(NamedTuple):
    """The stages a fixed step evaluates: nodes ``c``, coefficients ``a`` (row i: stages < i), weights ``b``."""

    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]


def fixed_step_tableau(name: str) -> Tableau:
    """The explicit Runge-Kutta method ``name`` as the stages one fixed step needs.

    Read from diffrax's Butcher tableau. A first-same-as-last (FSAL) method's
    last stage is f(t1, y1), which only an error estimate or the next step
    reads; a fixed step leaves it out (the next step evaluates it as its first
    stage), so Tsit5 costs 6 evaluations a step, not 7.
    """
    solver = make_solver(name)
    if isinstance(solver, (diffrax.Euler, ScaleCausalEuler)):
        return Tableau((0.0,), ((),), (1.0,))
    t = solver.tableau
    c = (0.0,) + tuple(float(x) for x in t.c)
    a = ((),) + tuple(tuple(float(x) for x in row) for row in t.a_lower)
    b = tuple(float(x) for x in t.b_sol)
    if t.fsal and b[-1] == 0.0:
        c, a, b = c[:-1], a[:-1], b[:-1]
    return Tableau(c, a, b)


def fixed_step_evaluations(name: str) -> int:
    """Vector-field evaluations of one fixed step of ``name`` (``fixed_step_tableau``)."""
    return len(fixed_step_tableau(name).c)


def _axpy(y: Sequence[Array], dt: float, coeffs: Sequence[float], ks: Sequence[Sequence[Array]]) -> tuple[Array, ...]:
    """y + dt * sum_j coeffs[j] * ks[j], per component, skipping zero coefficients and constant
    components (rate None); in y's dtypes."""
    out = []
    for i, yi in enumerate(y):
        terms = [cj * ks[j][i].astype(jnp.float32) for j, cj in enumerate(coeffs) if cj != 0.0 and ks[j][i] is not None]
        out.append(yi if not terms else yi + (dt * sum(terms[1:], terms[0])).astype(yi.dtype))
    return tuple(out)


def runge_kutta_step(rate: Callable[[Array, tuple[Array, ...]], tuple[Array, ...]], tableau: Tableau,
                     t0: Array, dt: float, y: tuple[Array, ...]) -> tuple[Array, ...]:
    """One explicit Runge-Kutta step of size ``dt`` from ``(t0, y)``.

    ``rate(t, y)`` is the vector field, a tuple like ``y`` with None for
    components that never change.
    """
    ks: list[tuple[Array, ...]] = []
    for c, a in zip(tableau.c, tableau.a):
        ks.append(rate(t0 + c * dt, _axpy(y, dt, a, ks) if ks else tuple(y)))
    return _axpy(y, dt, tableau.b, ks)


def causal_euler_step(component_rate: Callable[[int, Array, tuple[Array, ...]], Array], t0: Array, dt: float,
                      y: tuple[Array, ...]) -> tuple[Array, ...]:
    """One scale-causal (Gauss-Seidel) Euler step: component i moves by its rate on the partly updated state.

    ``component_rate(i, t, y)`` is component i of the vector field (None for
    a component that never changes). The same step as ``ScaleCausalEuler``,
    evaluating each component's rate once.
    """
    y = list(y)
    for i in range(len(y)):
        r = component_rate(i, t0, tuple(y))
        if r is not None:
            y[i] = y[i] + (dt * r.astype(jnp.float32)).astype(y[i].dtype)
    return tuple(y)


__all__ = [
    "ADAPTIVE", "ADJOINTS", "LOOP_ADJOINTS", "SOLVERS", "ScaleCausalEuler", "Tableau", "causal_euler_step", "count_evaluations",
    "fixed_step_evaluations", "fixed_step_tableau", "make_adjoint", "make_solver", "runge_kutta_step", "stages",
]
