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
  integer t, so the solve restarts at each block boundary (one diffeqsolve per
  block). This is what passing the jump times to an adaptive controller
  achieves, and it is also exact for fixed-step solvers whose last stage sits
  at the end of the step (no stage ever sees the next block's weights).
- ``"linear"``: block k's weights sit at t = k + 1/2 and are linearly
  interpolated between (held constant before 1/2 and after D - 1/2): a
  continuous field, one diffeqsolve over [0, D].

The vector field calls the very ``FluxUnit.update`` (P_l) and
``FluxUnit.project`` (R_l) of ``bppjax.models.bpp`` with the blocks'
parameters, which travel through diffrax's ``args`` (never a closure), so
``BacksolveAdjoint`` differentiates them and the ODE model has exactly the
discrete network's parameter tree.
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
import ml_collections
from jaxtyping import Array, Float, Int

from bppjax.models.bpp import BPP, DTYPES, FluxBlock, check_config
from bppjax.models.reversible import ProjectFn, UpdateFn
from bppjax.models.solvers import ADAPTIVE, ADJOINTS, SOLVERS, count_evaluations, make_adjoint, make_solver

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

    @property
    def levels(self) -> int:
        return len(self.features)

    @property
    def eq2(self) -> bool:
        return self.down_projection == "eq2"

    def unit_functions(self) -> tuple[UpdateFn, ProjectFn]:
        """P_l and R_l as pure functions of their parameters: the flux units the discrete network runs."""
        block = FluxBlock(self.features, eq2=self.eq2, instance_norm=self.instance_norm, freeze=self.freeze, dtype=self.dtype,
                          parent=None)
        return block.unit_functions()

    def weights(self, t: Float[Array, ""], args: Weights) -> Weights:
        """theta(t)."""
        return args if self.time == "piecewise" else interpolate_weights(args, t, self.depth)

    def __call__(self, t: Float[Array, ""], y: State, args: Weights) -> State:
        theta = self.weights(t, args)
        h, p = unpack_state(y, self.levels, self.eq2)
        dh: list[Array] = [jnp.zeros_like(h[0])]
        dp: list[Array | None] = [None]
        update, project = self.unit_functions()
        for l in range(1, self.levels):
            w = theta[f"unit_{l}"]
            p_l = project(l, w["downscale"], h[l]) if self.eq2 else p[l]
            dh.append(update(l, w["upscale"], h[l - 1], p_l).astype(h[l].dtype))
            if not self.eq2:
                has_r = "downscale" in w
                dp.append(project(l, w["downscale"], h[l]).astype(p[l].dtype) - p[l] if has_r else jnp.zeros_like(p[l]))
        return pack_state(dh, dp, self.eq2)


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


class Solution(NamedTuple):
    """Result of ``integrate``: final state, states at the requested times, evaluation count."""

    y1: State
    ts: tuple[float, ...]
    ys: list[State]
    nfe: Int[Array, ""]


def solve_span(field: FluxField, y0: State, args: Weights, t0: float, t1: float,
               save_ts: Sequence[float], s: SolveSettings) -> diffrax.Solution:
    """One ``diffeqsolve`` over [t0, t1], saving at ``save_ts`` (which ends at t1)."""
    solver = make_solver(s.solver)
    length = t1 - t0
    if s.adaptive:
        controller: diffrax.AbstractStepSizeController = diffrax.PIDController(rtol=s.rtol, atol=s.atol)
        dt0, max_steps = min(s.dt, length), s.max_steps
    else:
        n = max(1, math.ceil(length / s.dt - 1e-9))
        controller, dt0, max_steps = diffrax.ConstantStepSize(), length / n, n
    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), solver, t0, t1, dt0, y0, args=args,
        saveat=diffrax.SaveAt(ts=jnp.asarray(save_ts, jnp.float32)),
        stepsize_controller=controller,
        adjoint=make_adjoint(s.adjoint, solver, s.checkpoints),
        max_steps=max_steps,
    )


def integrate(field: FluxField, y0: State, blocks: Sequence[Weights], settings: SolveSettings,
              save_ts: Sequence[float] = ()) -> Solution:
    """Solve the BPP ODE from t = 0 to t = depth; also return the states at ``save_ts``.

    Piecewise-constant weights: one solve per block (the field jumps at integer
    t). Linear: one solve over [0, depth].
    """
    depth = field.depth
    want = sorted({float(t) for t in save_ts})
    if want and (want[0] < 0 or want[-1] > depth):
        raise ValueError(f"save times must lie in [0, {depth}]; got {want[0]}..{want[-1]}")
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
    for (a, b), args in spans:
        inner = [t for t in want if a < t < b]
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
    ("recursive" | "backsolve"); ``trajectory_ts``: times at which to sow the
    states (``intermediates/trajectory``).

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
    trajectory_ts: tuple[float, ...] = ()

    @property
    def settings(self) -> SolveSettings:
        return SolveSettings(self.solver, float(self.dt), bool(self.adaptive), float(self.rtol), float(self.atol),
                             int(self.max_steps), self.adjoint)

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

    def check(self) -> None:
        check_config(self)
        check_ode_config(self)
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


def build_ode_model(cfg: ml_collections.ConfigDict, freeze: bool = False) -> BPPODE:
    """The ODE model for a ``model`` config with ``kind="ode"`` (reads the ``ode`` group).

    The ``ode`` settings are validated here, before anything is compiled.
    """
    o = cfg.ode
    model = BPPODE(
        features=tuple(int(c) for c in cfg.features),
        depth=int(cfg.depth),
        instance_norm=bool(cfg.instance_norm),
        down_projection=cfg.down_projection,
        dtype=DTYPES[cfg.dtype],
        remat=cfg.remat,
        dirac_noise=float(cfg.dirac_noise),
        freeze=freeze,
        solver=str(o.solver),
        dt=float(o.dt),
        time=str(o.time),
        adaptive=bool(o.get("adaptive", False)),
        rtol=float(o.rtol),
        atol=float(o.atol),
        max_steps=int(o.max_steps),
        adjoint=str(o.adjoint),
    )
    check_ode_config(model)
    return model


__all__ = [
    "BPPODE", "FluxField", "Solution", "SolveSettings", "TIMES", "block_weights", "build_ode_model",
    "check_ode_config", "integrate", "interpolate_weights", "pack_state", "stack_blocks", "state_change_norms", "unpack_state",
]
