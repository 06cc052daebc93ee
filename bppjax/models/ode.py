"""The continuous-time BPP (docs/ODE.md): depth is time, solved with diffrax.

State h = (h_0, ..., h_{L-1}); the lowest level is constant::

    dh_0/dt = 0,    dh_l/dt = P_l(h_{l-1}, p_l; theta(t))    for l >= 1

where p_l is the down-projection R_l(h_l), read in one of two ways
(``down_projection``, as in the discrete network):

- ``"eq2"``: p_l = R_l(h_l; theta(t)) computed fresh (Eq. 2 literally); the state is h.
- ``"carried"``: p_l is part of the state. It starts at the Analysis p_l and
  relaxes towards R_l(h_l) with unit time constant, dp_l/dt = R_l(h_l) - p_l.
  A scale-causal Euler step of size 1 then gives p_l <- R_l(h_l^{t+1}), the
  discrete network's carried projection. The discrete net has no R in its last
  block; there the ODE keeps using block D-2's R (it only affects p in the
  last unit of time, which nothing reads when dt = 1).

theta(t) (``time``):

- ``"piecewise"``: block floor(t)'s own weights. The field jumps at every
  integer t, so the solve restarts at each block boundary: every stage of a
  step in [k, k + 1] sees block k's weights, also the last stage at t = k + 1.
- ``"linear"``: block k's weights sit at t = k + 1/2 and are linearly
  interpolated between (held constant before 1/2 and after D - 1/2): a
  continuous field.

How it is solved (``integrate``): fixed steps with an exact adjoint run the
step loop of ``integrate_fixed``, differentiated by JAX like the discrete
network (no more convolutions per field evaluation than a discrete block), as
a ``lax.scan`` over blocks with the blocks' weights stacked (``loop="scan"``:
one traced step whatever the depth) or unrolled (``loop="unroll"``); the
default ``"auto"`` unrolls a solve of one evaluation per block and scans the
others (``loop_kind``). Adaptive steps, and the memory-saving adjoints
``binomial`` and ``backsolve``, go through ``diffrax.diffeqsolve``: one solve
per block (piecewise) or one over [0, D] (linear). Under the ``recursive`` and
``checkpoint`` adjoints an adaptive solve is differentiated by replaying its
accepted steps (``bppjax.models.adaptive.solve_adaptive``) when ``max_steps``
states fit in a quarter of the device's memory (``replay_fits``), else by
diffrax's checkpointing. Inside a loop body the
field runs R_l's convolution with a hand-written VJP (``looped``), which keeps
its gradient at the unrolled speed on XLA:CPU.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, NamedTuple, Sequence

import diffrax
import equinox as eqx
import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax
from jaxtyping import Array, Float, Int

from bppjax.models.adaptive import replay_fits, solve_adaptive
from bppjax.models.bpp import BPP, FluxBlock
from bppjax.models.reversible import ProjectFn, UpdateFn
from bppjax.models.solvers import (
    ADAPTIVE, ADJOINTS, LOOP_ADJOINTS, SOLVERS, causal_euler_step, count_evaluations, fixed_step_evaluations, fixed_step_tableau,
    make_adjoint, make_solver, runge_kutta_step,
)

TIMES = ("piecewise", "linear")

#: Components in causal (bottom-up) order: (h_0, h_1, p_1, ..., h_{L-1}, p_{L-1})
#: for "carried", (h_0, ..., h_{L-1}) for "eq2".
State = tuple[Float[Array, "b h w c"], ...]
Weights = Mapping[str, Any]  # {'unit_l': {'upscale': ..., 'downscale': ...}}, a block's subtree


def pack_state(h: Sequence[Array], p: Sequence[Array | None], eq2: bool) -> State:
    """Interleave states and carried projections in causal order."""
    if eq2:
        return tuple(h)
    y = [h[0]]
    for l in range(1, len(h)):
        y += [h[l], p[l]]
    return tuple(y)


def unpack_state(y: State, levels: int, eq2: bool) -> tuple[list[Array], list[Array | None]]:
    """Inverse of ``pack_state``: (h, p) lists indexed by level (p[0] is None)."""
    if eq2:
        return list(y), [None] * levels
    return [y[0]] + [y[2 * l - 1] for l in range(1, levels)], [None] + [y[2 * l] for l in range(1, levels)]


def block_weights(params: Mapping[str, Any], depth: int) -> list[dict]:
    """Each block's flux-unit weights from a BPP parameter tree.

    In the "carried" reading the last block has no R; it borrows the previous
    block's, so that every block has the same structure (stackable) and the
    carried projection keeps a defined dynamics in the last unit of time.
    """
    blocks: list[dict] = []
    for t in range(depth):
        block = {u: dict(w) for u, w in params[f"block_{t:02d}"].items()}
        for u, w in block.items():
            if "downscale" not in w and t > 0 and "downscale" in blocks[-1][u]:
                w["downscale"] = blocks[-1][u]["downscale"]
        blocks.append(block)
    return blocks


def stack_blocks(blocks: Sequence[Weights]) -> Weights:
    """Stack per-block weights along a leading block axis (for interpolation in t)."""
    return jax.tree.map(lambda *w: jnp.stack(w), *blocks)


def interpolate_weights(stacked: Weights, t: Float[Array, ""], depth: int) -> Weights:
    """Linear interpolation of block weights placed at t = k + 1/2, clamped at the ends."""
    if depth == 1:
        return jax.tree.map(lambda w: w[0], stacked)
    s = jnp.clip(jnp.asarray(t, jnp.float32) - 0.5, 0.0, depth - 1.0)
    k = jnp.minimum(jnp.floor(s), depth - 2).astype(jnp.int32)
    a = s - k
    return jax.tree.map(lambda w: ((1 - a) * w[k] + a * w[k + 1]).astype(w.dtype), stacked)


class FluxField(eqx.Module):
    """The BPP vector field ``f(t, y, args)``; ``args`` holds the flux-unit weights.

    ``args`` is one block's weights (``time="piecewise"``, constant within a
    solve) or all blocks' weights stacked (``time="linear"``). Only static
    hyper-parameters live on the module, so it carries no arrays and no tracers.
    """

    features: tuple[int, ...] = eqx.field(static=True)
    depth: int = eqx.field(static=True)
    down_projection: str = eqx.field(static=True, default="carried")
    time: str = eqx.field(static=True, default="piecewise")
    instance_norm: bool = eqx.field(static=True, default=True)
    freeze: bool = eqx.field(static=True, default=False)
    dtype: Any = eqx.field(static=True, default=jnp.float32)
    conv_impl: str = eqx.field(static=True, default="auto")

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def eq2(self) -> bool:
        return self.down_projection == "eq2"

    def unit_functions(self) -> tuple[UpdateFn, ProjectFn]:
        """P_l and R_l as pure functions of their parameters: the flux units the discrete network runs."""
        block = FluxBlock(self.features, eq2=self.eq2, instance_norm=self.instance_norm, freeze=self.freeze, dtype=self.dtype,
                          conv_impl=self.conv_impl, parent=None)
        return block.unit_functions()

    def weights(self, t: Float[Array, ""], args: Weights) -> Weights:
        """theta(t)."""
        return args if self.time == "piecewise" else interpolate_weights(args, t, self.depth)

    def component_rate(self, i: int, y: State, theta: Weights) -> Array | None:
        """Component ``i`` of f(y; theta) (state layout of ``pack_state``); None for h_0, which never moves.

        Only that component's flux-unit functions run: P_l for h_l (and R_l
        first in the "eq2" reading), R_l for a carried p_l.
        """
        if i == 0:
            return None
        update, project = self.unit_functions()
        if self.eq2:
            w = theta[f"unit_{i}"]
            return update(i, w["upscale"], y[i - 1], project(i, w["downscale"], y[i])).astype(y[i].dtype)
        l, is_p = (i + 1) // 2, i % 2 == 0
        w = theta[f"unit_{l}"]
        h_l, p_l = y[2 * l - 1], y[2 * l]
        if not is_p:
            h_lower = y[2 * l - 3] if l > 1 else y[0]
            return update(l, w["upscale"], h_lower, p_l).astype(h_l.dtype)
        if "downscale" not in w:
            return None
        return project(l, w["downscale"], h_l).astype(p_l.dtype) - p_l

    def rates(self, y: State, theta: Weights) -> tuple[Array | None, ...]:
        """f(y; theta), component by component (None where a component never moves)."""
        return tuple(self.component_rate(i, y, theta) for i in range(len(y)))

    def __call__(self, t: Float[Array, ""], y: State, args: Weights) -> State:
        """diffrax's vector field: f(y; theta(t)) with zeros for the components that never move."""
        r = self.rates(y, self.weights(t, args))
        return tuple(jnp.zeros_like(yi) if ri is None else ri for yi, ri in zip(y, r))


@dataclasses.dataclass(frozen=True)
class SolveSettings:
    """How to integrate (the ``model.ode`` config group).

    ``dt`` is the fixed step, or the first step when ``adaptive``. Fixed steps
    split each solve into ceil(length / dt) equal steps, so the grid always
    lands on block boundaries (a dt that does not divide 1 is rounded down).
    """

    solver: str = "causal_euler"
    dt: float = 1.0
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-4
    max_steps: int = 4096
    adjoint: str = "recursive"
    checkpoints: int | None = None
    loop: str = "auto"


class Solution(NamedTuple):
    """Result of ``integrate``: final state, states at the requested times, evaluation count."""

    y1: State
    ts: tuple[float, ...]
    ys: list[State]
    nfe: Int[Array, ""]


def steps_per_unit(dt: float) -> int:
    """Fixed steps per unit of time: ceil(1 / dt), so that the step grid lands on every block boundary."""
    return max(1, math.ceil(1.0 / dt - 1e-9))


def solve_span(field: FluxField, y0: State, args: Weights, t0: float, t1: float,
               save_ts: Sequence[float], s: SolveSettings) -> diffrax.Solution:
    """One ``diffeqsolve`` over [t0, t1], saving at ``save_ts`` (which ends at t1)."""
    solver = make_solver(s.solver)
    length = t1 - t0
    if s.adaptive:
        controller: diffrax.AbstractStepSizeController = diffrax.PIDController(rtol=s.rtol, atol=s.atol)
        dt0, max_steps = min(s.dt, length), s.max_steps
    else:
        n = max(1, round(length)) * steps_per_unit(s.dt)
        controller, dt0, max_steps = diffrax.ConstantStepSize(), length / n, n
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0, t1, dt0, y0, args=args,
        saveat=diffrax.SaveAt(ts=jnp.asarray(save_ts, jnp.float32)),
        stepsize_controller=controller,
        adjoint=make_adjoint(s.adjoint, solver, s.checkpoints),
        max_steps=max_steps,
    )


def uses_step_loop(settings: SolveSettings, save_ts: Sequence[float] = ()) -> bool:
    """Whether ``integrate`` runs the fixed-step loop (``integrate_fixed``) rather than ``diffeqsolve``.

    Fixed steps with an exact discretise-then-optimise adjoint (``LOOP_ADJOINTS``)
    and save times on the step grid do; adaptive steps, ``binomial`` and
    ``backsolve`` go through diffrax.
    """
    if settings.adaptive or settings.adjoint not in LOOP_ADJOINTS:
        return False
    n = steps_per_unit(settings.dt)
    return all(abs(t * n - round(t * n)) < 1e-6 for t in save_ts)


def weight_windows(blocks: Sequence[Weights], time: str) -> Weights:
    """What step loop's unit k reads of the weights: block k's (piecewise), or blocks (k-1, k, k+1) clamped (linear)."""
    stacked = stack_blocks(blocks)
    if time == "piecewise":
        return stacked
    depth = len(blocks)
    prev = jnp.asarray([max(k - 1, 0) for k in range(depth)])
    nxt = jnp.asarray([min(k + 1, depth - 1) for k in range(depth)])
    return jax.tree.map(lambda w: (w[prev], w, w[nxt]), stacked, is_leaf=lambda x: isinstance(x, jax.Array))


def window_theta(window: Weights, s: Float[Array, ""], time: str) -> Weights:
    """theta at local time s in [0, 1] of a unit from its ``weight_windows`` entry.

    Linear: block k's weights sit at s = 1/2, block k-1's at s = -1/2 and block
    k+1's at s = 3/2 (``interpolate_weights``, read locally).
    """
    if time == "piecewise":
        return window
    first = s < 0.5
    frac = jnp.where(first, s + 0.5, s - 0.5)

    def mix(w):
        prev, cur, nxt = w
        lo, hi = jnp.where(first, prev, cur), jnp.where(first, cur, nxt)
        return (lo + frac * (hi - lo)).astype(cur.dtype)

    return jax.tree.map(mix, window, is_leaf=lambda x: isinstance(x, tuple))


LOOPS = ("auto", "scan", "unroll")


def loop_kind(settings: SolveSettings) -> str:
    """The step loop's structure: ``settings.loop``, with ``"auto"`` resolved as measured (docs/ODE.md).

    A solve of one evaluation per block (``causal_euler``/``euler`` at dt = 1:
    the discrete network's own structure) unrolls: it then runs at the
    discrete speed and compiles like the discrete network. Anything with more
    evaluations per block scans: one traced step whatever the depth and steps,
    at the discrete network's cost per evaluation.
    """
    if settings.loop != "auto":
        return settings.loop
    one = steps_per_unit(settings.dt) == 1 and fixed_step_evaluations(settings.solver) == 1
    return "unroll" if one else "scan"


def _loop(body, carry, xs, kind: str):
    """``lax.scan(body, carry, xs)`` (``kind="scan"``), or the same steps unrolled in Python (``"unroll"``)."""
    if kind == "scan":
        return lax.scan(body, carry, xs)
    ys = []
    for i in range(jax.tree.leaves(xs)[0].shape[0]):
        carry, y = body(carry, jax.tree.map(lambda v: v[i], xs))
        ys.append(y)
    return carry, (None if not ys or ys[0] is None else jax.tree.map(lambda *v: jnp.stack(v), *ys))


def integrate_fixed(field: FluxField, y0: State, blocks: Sequence[Weights], settings: SolveSettings,
                    save_ts: Sequence[float] = ()) -> Solution:
    """Fixed-step solve from t = 0 to t = depth as a loop over steps, differentiated by JAX itself.

    One unit of time per block, n = ceil(1/dt) steps per unit: one loop over
    the first D n - 1 steps (step i in unit i // n, reading that unit's
    ``weight_windows`` entry), then the last step outside the loop, so that XLA
    drops what nothing reads (the carried projections after the last update,
    as the discrete network's last block has no R). ``settings.loop``
    (``"auto"``, the default: ``loop_kind``): ``"scan"`` makes the loop a ``lax.scan``, so the step body is
    traced and compiled twice whatever the depth and step (the field is
    ``looped``: JAX's gradient of R_l's strided convolution inside a loop body
    compiles to a slow non-canonical convolution on XLA:CPU, 3.5x the discrete
    step for ``medium``; docs/ODE.md); ``"unroll"`` unrolls them in Python, one
    copy of the step per step in the compiled program, as the discrete network
    has one block per block. Reverse mode stores
    each step's residuals, as the discrete network does (``adjoint`` =
    ``recursive`` or ``direct``), or only the state at each step and recomputes
    the step (``checkpoint``: ``jax.checkpoint`` per step). ``save_ts`` must lie
    on the step grid (``uses_step_loop``).
    """
    depth, time = field.depth, field.time
    kind = loop_kind(settings)
    if kind == "scan":
        field = looped(field)
    n = steps_per_unit(settings.dt)
    h = 1.0 / n
    windows = weight_windows(blocks, time)
    if settings.solver == "causal_euler":
        def advance(y, window, s0):
            return causal_euler_step(lambda i, s, z: field.component_rate(i, z, window_theta(window, s, time)), s0, h, y)
    else:
        tableau = fixed_step_tableau(settings.solver)

        def advance(y, window, s0):
            return runge_kutta_step(lambda s, z: field.rates(z, window_theta(window, s, time)), tableau, s0, h, y)
    if settings.adjoint == "checkpoint":
        advance = jax.checkpoint(advance)
    record = bool(save_ts)

    def body(y, xs):
        window, s0 = xs
        y = advance(y, window, s0)
        return y, (y if record else None)

    # Every step but the last, as one loop over (unit, step) pairs: step i runs in unit i // n with
    # unit k's weights (repeated n times along the loop axis) from local time (i % n) h.
    steps = depth * n - 1
    per_step = jax.tree.map(lambda w: jnp.repeat(w, n, axis=0)[:steps] if n > 1 else w[:steps], windows)
    local = jnp.asarray([(i % n) * h for i in range(steps)], jnp.float32)
    trail: list[State] = [y0]  # states at every step boundary, when recording
    y = y0
    if steps:
        y, ys = _loop(body, y0, (per_step, local), kind)
        if record:
            trail += [jax.tree.map(lambda v, i=i: v[i], ys) for i in range(steps)]
    y = advance(y, jax.tree.map(lambda w: w[depth - 1], windows), jnp.float32(1.0 - h))
    trail.append(y)
    want = sorted({float(t) for t in save_ts})
    ys_out = [trail[round(t * n)] for t in want] if record else []
    nfe = jnp.asarray(depth * n * fixed_step_evaluations(settings.solver), jnp.int32)
    return Solution(y, tuple(want), ys_out, nfe)


def looped(field: FluxField) -> FluxField:
    """The field for evaluation inside a loop body: R_l's convolution with ``conv_impl="loop"`` (``layers.conv2d``).

    Same numbers up to rounding; on XLA:CPU its gradient runs at the unrolled
    speed inside ``lax.scan`` and diffrax's while loops (docs/ODE.md).
    """
    return dataclasses.replace(field, conv_impl="loop")


#: Adjoints under which an adaptive solve is differentiated by replaying its accepted steps (``solve_adaptive``).
REPLAY_ADJOINTS = ("recursive", "checkpoint")


def _rate_fn(field: FluxField):
    """f(t, y; args) component by component (None where a component never moves), for replayed steps."""
    return lambda t, y, args: field.rates(y, field.weights(t, args))


def integrate(field: FluxField, y0: State, blocks: Sequence[Weights], settings: SolveSettings,
              save_ts: Sequence[float] = ()) -> Solution:
    """Solve the BPP ODE from t = 0 to t = depth; also return the states at ``save_ts``.

    Fixed steps with an exact adjoint: the step loop (``integrate_fixed``).
    Otherwise diffrax: with piecewise-constant weights one solve per block (the
    field jumps at integer t), with linear weights one solve over [0, depth].
    """
    depth = field.depth
    want = sorted({float(t) for t in save_ts})
    if want and (want[0] < 0 or want[-1] > depth):
        raise ValueError(f"save times must lie in [0, {depth}]; got {want[0]}..{want[-1]}")
    if uses_step_loop(settings, want):
        return integrate_fixed(field, y0, blocks, settings, want)
    if field.time == "piecewise":
        spans = [((float(k), float(k + 1)), blocks[k]) for k in range(depth)]
    else:
        spans = [((0.0, float(depth)), stack_blocks(blocks))]
    ts_out: list[float] = []
    ys_out: list[State] = []
    if want and want[0] == 0.0:
        ts_out.append(0.0)
        ys_out.append(y0)
    y, nfe = y0, jnp.zeros((), jnp.int32)
    solver = make_solver(settings.solver)
    field = looped(field)
    # Replaying needs max_steps stored states; where they would not fit, diffrax's checkpointing takes over.
    replay = settings.adaptive and settings.adjoint in REPLAY_ADJOINTS and replay_fits(y0, settings.max_steps)
    for (a, b), args in spans:
        inner = [t for t in want if a < t < b]
        if replay and not inner:
            y, n = solve_adaptive(field, _rate_fn(field), settings.solver, y, args, a, b, dt0=min(settings.dt, b - a),
                                  rtol=settings.rtol, atol=settings.atol, max_steps=settings.max_steps)
            nfe = nfe + n
            if b in want:
                ts_out.append(b)
                ys_out.append(y)
            continue
        sol = solve_span(field, y, args, a, b, inner + [b], settings)
        states = [jax.tree.map(lambda v, i=i: v[i], sol.ys) for i in range(len(inner) + 1)]
        ts_out += inner
        ys_out += states[:-1]
        if b in want:
            ts_out.append(b)
            ys_out.append(states[-1])
        y = states[-1]
        nfe = nfe + count_evaluations(solver, sol.stats["num_steps"])
    return Solution(y, tuple(ts_out), ys_out, nfe)


def state_change_norms(h_prev: Sequence[Array], h_next: Sequence[Array]) -> Float[Array, "levels b"]:
    """Per-level, per-sample L2 norm of a block's state change h(t+1) - h(t): what FluxBlock sows as ``update_norms``."""
    rows = [jnp.sqrt(jnp.sum(jnp.square((b - a).astype(jnp.float32)), axis=(1, 2, 3))) for a, b in zip(h_prev, h_next)]
    return jnp.stack(rows)


class _BlockProbe(nn.Module):
    """Sows a block's update norms where FluxBlock would (``intermediates/block_XX``)."""

    @nn.compact
    def __call__(self, norms: Array) -> None:
        self.sow("intermediates", "update_norms", norms)


class BPPODE(BPP):
    """BPP as a Neural ODE: same parameters, same inputs and outputs, an ODE solve for the blocks.

    Extra attributes (the ``model.ode`` config group): ``solver`` (see
    ``bppjax.models.solvers.SOLVERS``), ``dt``, ``time`` ("piecewise" |
    "linear"), ``adaptive``, ``rtol``, ``atol``, ``max_steps``, ``adjoint``
    (``bppjax.models.solvers.ADJOINTS``, docs/ODE.md); ``trajectory_ts``: times
    at which to sow the states (``intermediates/trajectory``; times off the
    fixed-step grid make the solve go through diffrax, which interpolates).

    With ``intermediates`` mutable it sows ``nfe`` (vector-field evaluations)
    and, per block, ``block_XX/update_norms`` = ||h_l(t+1) - h_l(t)|| shaped
    (levels, B), as the discrete FluxBlocks do. Adaptive step control uses a
    norm over the whole batch, so samples in a batch share step sizes.
    """

    solver: str = "causal_euler"
    dt: float = 1.0
    time: str = "piecewise"
    adaptive: bool = False
    rtol: float = 1e-3
    atol: float = 1e-4
    max_steps: int = 4096
    adjoint: str = "recursive"
    loop: str = "auto"
    trajectory_ts: tuple[float, ...] = ()

    @property
    def settings(self) -> SolveSettings:
        return SolveSettings(self.solver, float(self.dt), bool(self.adaptive), float(self.rtol), float(self.atol),
                             int(self.max_steps), self.adjoint, loop=self.loop)

    def receptive_margin(self) -> int | None:
        """The discrete network's radius when the solve takes one causal Euler step per block; else None
        (more or adaptive steps widen the support)."""
        if self.solver == "causal_euler" and float(self.dt) == 1.0 and not self.adaptive:
            return super().receptive_margin()
        return None

    @property
    def can_replay_decisions(self) -> bool:
        """False: the solver evaluates the field at input-dependent times, so decisions are recomputed, not replayed."""
        return False

    def frozen_twin(self) -> "BPPODE":
        """LinearScope mode with diffrax's ``DirectAdjoint`` (F x differentiates the solve twice)."""
        return self.clone(freeze=True, adjoint="direct")

    def field(self) -> FluxField:
        return FluxField(tuple(int(c) for c in self.features), int(self.depth), self.down_projection, self.time,
                         self.instance_norm, self.freeze, self.dtype)

    def _create_block_params(self, h: list[Array], p: list[Array | None]) -> None:
        # The discrete blocks create the parameters, so the tree is BPP's by construction.
        # freeze=False: LinearScope decisions must not be recorded into a 'frozen' collection.
        for t in range(self.depth):
            h, p = FluxBlock(
                self.features, carries_r=self.carries_r(t), eq2=self.down_projection == "eq2",
                instance_norm=self.instance_norm, freeze=False, dtype=self.dtype,
                kernel_init=self._kernel_init(), name=f"block_{t:02d}",
            )(h, p)

    def _check_frozen(self) -> None:
        if self.freeze and not self.is_initializing() and (self.is_mutable_collection("frozen") or "frozen" in self.variables):
            raise ValueError(
                "the ODE BPP in freeze (LinearScope) mode cannot record or replay a 'frozen' collection: "
                "diffeqsolve evaluates the field at many times, so the decisions are recomputed under "
                "stop_gradient at every evaluation. Apply it without the 'frozen' collection "
                "(non-mutable) and take JVPs/VJPs at the input."
            )

    def validate(self) -> None:
        super().validate()
        check_ode_config(self)

    def check(self) -> None:
        self.validate()
        self._check_frozen()

    def evolve(self, h: list[Array], p: list[Array | None]) -> list[Array]:
        """The flux blocks replaced by an ODE solve over t in [0, D] (same parameters)."""
        if self.is_initializing():
            self._create_block_params(h, p)
        eq2 = self.down_projection == "eq2"
        record = self.is_mutable_collection("intermediates") and not self.is_initializing()
        save = set(self.trajectory_ts) | set(range(self.depth + 1)) if record else set()
        blocks = block_weights(self.variables["params"], self.depth)
        sol = integrate(self.field(), pack_state(h, p, eq2), blocks, self.settings, sorted(save))
        if record:
            self._sow(sol, eq2)
        return unpack_state(sol.y1, self.levels, eq2)[0]

    def _sow(self, sol: Solution, eq2: bool) -> None:
        self.sow("intermediates", "nfe", sol.nfe)
        hs = {t: unpack_state(y, self.levels, eq2)[0] for t, y in zip(sol.ts, sol.ys)}
        for t in range(self.depth):
            _BlockProbe(name=f"block_{t:02d}")(state_change_norms(hs[float(t)], hs[float(t + 1)]))
        if self.trajectory_ts:
            ts = sorted({float(t) for t in self.trajectory_ts})
            levels = tuple(jnp.stack([hs[t][l] for t in ts]) for l in range(self.levels))
            self.sow("intermediates", "trajectory", {"t": jnp.asarray(ts, jnp.float32), "h": levels})


def check_ode_config(m: BPPODE) -> None:
    """Validate the ODE settings with messages naming the config key."""
    if m.solver not in SOLVERS:
        raise ValueError(f"model.ode.solver must be one of {tuple(SOLVERS)}; got {m.solver!r}")
    if m.time not in TIMES:
        raise ValueError(f"model.ode.time must be one of {TIMES}; got {m.time!r}")
    if m.adjoint not in ADJOINTS:
        raise ValueError(f"model.ode.adjoint must be one of {ADJOINTS}; got {m.adjoint!r}")
    if m.loop not in LOOPS:
        raise ValueError(f"model.ode.loop must be one of {LOOPS}; got {m.loop!r}")
    if not m.dt > 0:
        raise ValueError(f"model.ode.dt must be > 0; got {m.dt}")
    if m.adaptive and m.solver not in ADAPTIVE:
        raise ValueError(f"model.ode.adaptive=True needs a solver with an error estimate {ADAPTIVE}; got {m.solver!r}")
    if m.adaptive and not (m.rtol > 0 and m.atol > 0):
        raise ValueError(f"model.ode.rtol and model.ode.atol must be > 0; got {m.rtol}, {m.atol}")
    if int(m.max_steps) < 1:
        raise ValueError(f"model.ode.max_steps must be >= 1; got {m.max_steps}")
    if any(not 0 <= t <= m.depth for t in m.trajectory_ts):
        raise ValueError(f"trajectory_ts must lie in [0, depth={m.depth}]; got {m.trajectory_ts}")


__all__ = [
    "BPPODE", "FluxField", "LOOPS", "Solution", "SolveSettings", "TIMES", "block_weights",
    "check_ode_config", "integrate", "integrate_fixed", "loop_kind", "interpolate_weights", "pack_state", "stack_blocks", "state_change_norms",
    "steps_per_unit", "unpack_state", "uses_step_loop", "weight_windows", "window_theta",
]
