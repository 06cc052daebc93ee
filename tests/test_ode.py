"""The continuous-time BPP (bppjax.models.ode, bppjax.models.solvers).

Compiling a diffeqsolve dominates these tests' time, so each test compiles as
few solves as it can: one block (or ``time="linear"``, a single solve) and
tiny images.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bppjax.models.ode as ode
from bppjax.models.bpp import BPP
from bppjax.models.ode import BPPODE
from bppjax.models.presets import build_model, model_config
from bppjax.models.solvers import ScaleCausalEuler, count_evaluations, fixed_step_evaluations, make_solver

FEATURES = (8, 6, 4)  # distinct widths catch level mix-ups


def _rel(a, b) -> float:
    fa = jnp.concatenate([jnp.ravel(l) for l in jax.tree.leaves(a)])
    fb = jnp.concatenate([jnp.ravel(l) for l in jax.tree.leaves(b)])
    return float(jnp.linalg.norm(fa - fb) / jnp.linalg.norm(fb))


def _image(shape=(1, 16, 16, 3), seed=1):
    return jax.random.uniform(jax.random.key(seed), shape)


def _params(depth: int, x, down_projection="carried"):
    return BPP(features=FEATURES, depth=depth, down_projection=down_projection).init(jax.random.key(0), x)["params"]


def _ode(depth: int, **kw) -> BPPODE:
    return BPPODE(features=FEATURES, depth=depth, **kw)


def _loss(model, x):
    return lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, x) - 0.5 * x))


@pytest.mark.parametrize("down_projection", ["carried", "eq2"])
def test_causal_euler_dt1_is_the_discrete_network(down_projection):
    # Odd sizes exercise the shared reflect padding; depth 2 the block switching
    # and (carried) the last block without R.
    x = _image((2, 18, 14, 3))
    depth = 2
    discrete = BPP(features=FEATURES, depth=depth, down_projection=down_projection)
    cont = _ode(depth, down_projection=down_projection, solver="causal_euler", dt=1.0)
    params = discrete.init(jax.random.key(0), x)["params"]
    y_d, st_d = discrete.apply({"params": params}, x, mutable=["intermediates"])
    y_c, st_c = cont.apply({"params": params}, x, mutable=["intermediates"])
    assert y_c.shape == x.shape
    assert _rel(y_c - x, y_d - x) < 1e-5
    assert int(st_c["intermediates"]["nfe"][0]) == depth
    for t in range(depth):
        n_d = st_d["intermediates"][f"block_{t:02d}"]["update_norms"][0]
        n_c = st_c["intermediates"][f"block_{t:02d}"]["update_norms"][0]
        assert n_c.shape == (len(FEATURES), 2)
        np.testing.assert_allclose(n_c, n_d, rtol=1e-5, atol=1e-6)
    # Plain Euler at dt = 1 is the Jacobi sweep: a different network.
    y_j = _ode(depth, down_projection=down_projection, solver="euler", dt=1.0).apply({"params": params}, x)
    assert _rel(y_j - x, y_d - x) > 1e-3
    # The ODE model's own parameters load into the discrete network: one tree.
    p_ode = cont.init(jax.random.key(0), x)["params"]
    assert jax.tree.structure(p_ode) == jax.tree.structure(params)
    assert all(a.shape == b.shape for a, b in zip(jax.tree.leaves(p_ode), jax.tree.leaves(params)))
    if down_projection == "carried":
        g_d = jax.grad(_loss(discrete, x))(params)
        g_c = jax.grad(_loss(cont, x))(params)
        assert _rel(g_c, g_d) < 1e-5


def test_euler_converges_at_first_order_to_tsit5():
    x = _image()
    depth = 2
    params = _params(depth, x)
    ref_model = _ode(depth, time="linear", solver="tsit5", adaptive=True, dt=0.25, rtol=1e-6, atol=1e-7)
    ref = ref_model.apply({"params": params}, x)
    errs = [float(jnp.linalg.norm(_ode(depth, time="linear", solver="euler", dt=dt).apply({"params": params}, x) - ref))
            for dt in (0.5, 0.25, 0.125)]
    ratios = [errs[i] / errs[i + 1] for i in range(len(errs) - 1)]
    assert all(1.6 < r < 2.4 for r in ratios), (errs, ratios)


def test_each_adjoint_matches_the_exact_gradient_of_the_solve():
    # The step loop (recursive, checkpoint, direct) and diffrax's binomial checkpointing both
    # differentiate the same discretisation exactly; backsolve solves the continuous adjoint.
    x = _image()
    depth = 2
    params = _params(depth, x)
    kw = dict(time="linear", solver="heun", dt=0.5)
    grads = {a: jax.grad(_loss(_ode(depth, adjoint=a, **kw), x))(params)
             for a in ("recursive", "checkpoint", "direct", "binomial", "backsolve")}
    ref = grads["binomial"]
    assert float(jnp.linalg.norm(ref["block_01"]["unit_2"]["upscale"]["conv"]["kernel"])) > 0
    for a in ("recursive", "checkpoint", "direct"):
        assert _rel(grads[a], ref) < 1e-5, a
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads["backsolve"]))
    assert 1e-6 < _rel(grads["backsolve"], ref) < 1e-2
    # The loop's gradient against a central difference of a smooth loss along a random direction
    # (float32, a step of 1e-3 of a unit-normal direction in every weight: agreement to a few %).
    model = _ode(depth, **kw)
    loss = lambda p: jnp.mean(jnp.square(model.apply({"params": p}, x) - 0.5 * x))  # noqa: E731
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(3), len(leaves))
    v = jax.tree.unflatten(tree, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
    eps = 1e-3
    shift = lambda s: jax.tree.map(lambda p, d: p + s * eps * d, params, v)  # noqa: E731
    fd = (float(loss(shift(1.0))) - float(loss(shift(-1.0)))) / (2 * eps)
    ad = sum(float(jnp.vdot(g, d)) for g, d in zip(jax.tree.leaves(jax.grad(loss)(params)), jax.tree.leaves(v)))
    assert abs(fd - ad) < 5e-2 * abs(ad), (fd, ad)


def _convolutions(model, params, x) -> int:
    """Convolutions in the optimised HLO of the training gradient (a loop body counts once)."""
    hlo = jax.jit(jax.value_and_grad(_loss(model, x))).lower(params).compile().as_text()
    return sum(line.count(" convolution(") for line in hlo.splitlines())


def test_ode_step_has_no_more_convolutions_per_evaluation_than_the_discrete_step():
    # Differences between depths 2 and 1 isolate one block of the discrete network (with its R)
    # and one step-loop body of the ODE (causal Euler: one evaluation, Heun: two). At depth 1
    # there is no loop: the ODE's single evaluation must drop the unread R as the discrete
    # network's last block does. With loop="scan" deeper models reuse the same loop body.
    x = _image((1, 16, 16, 3))
    n = {}
    for depth in (1, 2, 4):
        params = _params(depth, x)
        n["discrete", depth] = _convolutions(BPP(features=FEATURES, depth=depth), params, x)
        for solver in ("causal_euler", "heun"):
            if depth < 4:
                n[solver, depth] = _convolutions(_ode(depth, solver=solver), params, x)
        n["scan", depth] = _convolutions(_ode(depth, loop="scan"), params, x)
    block = n["discrete", 2] - n["discrete", 1]
    assert block > 0
    assert n["causal_euler", 1] <= n["discrete", 1], n
    assert 0 < n["causal_euler", 2] - n["causal_euler", 1] <= block, n
    # Heun: two evaluations, each with its P_l and R_l (the stage's carried projection); the
    # compiled step keeps 31 convolutions where two discrete blocks have 28 (FEATURES, depth 2).
    assert 0 < n["heun", 2] - n["heun", 1] <= 2 * block + 3, n
    # In a loop body R_l's weight gradient is nine GEMMs (layers.conv2d impl="loop"), not a convolution.
    assert 0 < n["scan", 2] - n["scan", 1] <= n["causal_euler", 2] - n["causal_euler", 1], n
    assert n["scan", 4] == n["scan", 2], n  # one traced body whatever the depth


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's convolution layouts")
@pytest.mark.parametrize("settings", [dict(loop="scan"), dict(adjoint="binomial")])
def test_convolutions_inside_loops_stay_canonical_on_cpu(settings):
    """Inside a while loop XLA:CPU leaves JAX's gradient of a strided convolution in a non-canonical
    layout (kernel ``01oi``, or batch as features), which it runs several times slower; the field
    evaluated in loops uses the hand-written VJP instead (docs/ODE.md). Every convolution of the
    compiled training gradient must have the canonical NHWC/HWIO labels, the loop bodies' included."""
    x = _image((1, 16, 16, 3))
    params = _params(2, x)
    hlo = jax.jit(jax.value_and_grad(_loss(_ode(2, time="linear", **settings), x))).lower(params).compile().as_text()
    labels = [line.split("dim_labels=")[1].split(",")[0].split()[0] for line in hlo.splitlines() if " convolution(" in line]
    assert labels and set(labels) == {"b01f_01io->b01f"}, sorted(set(labels))


def _null_space_perturbation(params, x, scale: float = 0.2):
    """A perturbation of x that the top scaler maps to zero (invisible to the coarser pyramid)."""
    from bppjax.models.bpp import Scaler

    top = f"scaler_{len(FEATURES) - 1}"
    shape = x.shape[1:]

    def down(v):
        return Scaler(3).apply({"params": params[top]}, v.reshape((1,) + shape)).ravel()

    jac = np.asarray(jax.jacfwd(down)(jnp.zeros(int(np.prod(shape)))), np.float64)
    _, s, vt = np.linalg.svd(jac)
    null = vt[len(s):]  # rows spanning the null space
    coef = np.random.default_rng(0).standard_normal(len(null))
    delta = (coef @ null).reshape((1,) + shape)
    delta *= scale * float(jnp.linalg.norm(x)) / np.linalg.norm(delta)
    assert np.linalg.norm(jac @ delta.ravel()) < 1e-5 * np.linalg.norm(delta)
    return jnp.asarray(delta, jnp.float32)


def test_scale_causality_and_fixed_lowest_level():
    x = _image()
    depth = 2
    params = _params(depth, x)
    ts = (0.0, 0.5, 1.0, 1.5, 2.0)
    model = _ode(depth, solver="heun", dt=0.5, trajectory_ts=ts)
    delta = _null_space_perturbation(params, x)

    def states(inp):
        _, st = model.apply({"params": params}, inp, mutable=["intermediates"])
        traj = st["intermediates"]["trajectory"][0]
        np.testing.assert_allclose(traj["t"], ts)
        return traj["h"]

    h, h_pert = states(x), states(x + delta)
    for level in range(len(FEATURES) - 1):
        assert _rel(h_pert[level], h[level]) < 1e-5, level
    assert _rel(h_pert[-1], h[-1]) > 1e-2
    # h_0 never moves; the levels above it do.
    np.testing.assert_allclose(h[0], jnp.broadcast_to(h[0][:1], h[0].shape), rtol=0, atol=1e-6)
    assert float(jnp.max(jnp.abs(h[1][-1] - h[1][0]))) > 1e-3


def test_evaluation_count_matches_the_vector_field_calls(monkeypatch):
    x = _image()
    params = _params(1, x)
    calls = [0]
    field_rates = ode.FluxField.rates

    def counted(self, y, theta):
        jax.debug.callback(lambda: calls.__setitem__(0, calls[0] + 1))
        return field_rates(self, y, theta)

    monkeypatch.setattr(ode.FluxField, "rates", counted)
    # Fixed steps: the step loop leaves out an FSAL method's last stage (6 evaluations a Tsit5 step);
    # adaptive: diffrax, and Heun is not FSAL, so its count is exact even with rejected steps.
    for kw, expected in [(dict(solver="tsit5", dt=0.5), 6 * 2), (dict(solver="heun", dt=0.25), 2 * 4),
                         (dict(solver="heun", adaptive=True, dt=0.5, rtol=1e-4, atol=1e-6), None)]:
        calls[0] = 0
        y, st = _ode(1, **kw).apply({"params": params}, x, mutable=["intermediates"])
        jax.block_until_ready(y)
        nfe = int(st["intermediates"]["nfe"][0])
        if expected is not None:
            assert nfe == calls[0] == expected
        else:  # Heun is not FSAL: exact even with rejected steps
            assert nfe == calls[0] and nfe > 4
    assert int(count_evaluations(make_solver("dopri5"), 10)) == 61
    assert int(count_evaluations(ScaleCausalEuler(), 10)) == 10
    assert [fixed_step_evaluations(s) for s in ("causal_euler", "euler", "heun", "bosh3", "tsit5")] == [1, 1, 2, 3, 6]


def test_scale_causal_sweep_costs_one_field_evaluation():
    # Through diffrax (adjoint="binomial") the ScaleCausalEuler solver evaluates the field once per
    # component and dead-code elimination must leave one evaluation's worth of work, as for plain
    # Euler. (The step loop evaluates each component's rate once: the convolution count test.)
    x = _image()
    params = _params(1, x)
    flops = {}
    for solver in ("euler", "causal_euler"):
        compiled = jax.jit(_ode(1, solver=solver, adjoint="binomial").apply).lower({"params": params}, x).compile()
        flops[solver] = float(compiled.cost_analysis()["flops"])
    assert abs(flops["causal_euler"] / flops["euler"] - 1) < 0.02, flops


def test_config_drives_the_ode_model_and_freeze_mode():
    cfg = model_config(levels=3, features=FEATURES, depth=1, kind="ode")
    cfg.ode.solver, cfg.ode.dt = "midpoint", 0.5
    model = build_model(cfg)
    assert isinstance(model, BPPODE) and model.solver == "midpoint" and model.dt == 0.5 and model.adjoint == "recursive"
    for key, value in [("solver", "rk99"), ("time", "cubic"), ("adjoint", "magic"), ("dt", 0.0)]:
        bad = model_config(levels=3, features=FEATURES, depth=1, kind="ode")
        bad.ode[key] = value
        with pytest.raises(ValueError, match=f"model.ode.{key}"):
            build_model(bad).init(jax.random.key(0), _image())
    bad = model_config(levels=3, features=FEATURES, depth=1, kind="ode")
    bad.ode.adaptive = True  # causal_euler has no error estimate
    with pytest.raises(ValueError, match="adaptive"):
        build_model(bad).init(jax.random.key(0), _image())

    x = _image()
    params = _params(1, x)
    frozen = build_model(cfg, freeze=True)
    y = model.apply({"params": params}, x)
    # Freeze mode changes only what gradients see, never the forward value.
    np.testing.assert_allclose(frozen.apply({"params": params}, x), y, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="'frozen'"):
        frozen.apply({"params": params}, x, mutable=["frozen"])
    with pytest.raises(ValueError, match="3 \\(RGB\\) channels"):
        model.apply({"params": params}, jnp.zeros((1, 16, 16, 4)))


def test_auto_loop_unrolls_one_evaluation_per_block_and_scans_the_rest():
    kind = lambda **kw: ode.loop_kind(ode.SolveSettings(**kw))  # noqa: E731
    assert ode.SolveSettings().loop == "auto" and model_config().ode.loop == "auto"
    assert kind(solver="causal_euler", dt=1.0) == "unroll" and kind(solver="euler", dt=1.0) == "unroll"
    assert kind(solver="causal_euler", dt=0.5) == "scan" and kind(solver="heun", dt=1.0) == "scan"
    assert kind(solver="tsit5", dt=1.0, loop="unroll") == "unroll" and kind(solver="euler", loop="scan") == "scan"
    with pytest.raises(ValueError, match="model.ode.loop"):
        BPPODE(features=FEATURES, depth=2, loop="while").validate()



def test_adaptive_replay_gradient_is_diffrax_gradient():
    # The default adjoint differentiates an adaptive solve by replaying its accepted steps
    # (bppjax.models.adaptive); diffrax's checkpointed adjoint ("binomial") is the reference.
    x = _image((1, 12, 12, 3))
    params = _params(2, x)
    kw = dict(solver="heun", time="linear", adaptive=True, dt=0.5, rtol=1e-3, atol=1e-5, max_steps=128)
    y_ref, g_ref = jax.value_and_grad(_loss(_ode(2, adjoint="binomial", **kw), x))(params)
    y, g = jax.value_and_grad(_loss(_ode(2, **kw), x))(params)
    assert float(y) == pytest.approx(float(y_ref), rel=1e-6)
    assert _rel(g, g_ref) < 1e-5
    # It is the gradient of this solve, not of another discretisation: a coarse fixed-step one is far off.
    g_fixed = jax.grad(_loss(_ode(2, solver="heun", time="linear", dt=1.0), x))(params)
    assert _rel(g_fixed, g_ref) > 100 * _rel(g, g_ref)
    # Only the differentiated solve stores the accepted states: a plain forward pass does not grow with max_steps.
    temp = {n: jax.jit(_ode(2, **(kw | {"max_steps": n})).apply).lower({"params": params}, x).compile()
            .memory_analysis().temp_size_in_bytes for n in (128, 4096)}
    assert temp[4096] < 1.1 * temp[128], temp
    # Where max_steps states would not fit in a quarter of the device's memory, diffrax's checkpointing takes over.
    import bppjax.models.adaptive as adaptive

    def replayed(*args, **kwargs):
        raise AssertionError("replayed")

    grad_shape = lambda: jax.eval_shape(jax.grad(_loss(_ode(2, **kw), x)), params)  # noqa: E731 - traced, not compiled
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ode, "solve_adaptive", replayed)
        with pytest.raises(AssertionError, match="replayed"):
            grad_shape()
        mp.setattr(adaptive, "device_memory_bytes", lambda: 4 * 127 * sum(a.size * 4 for a in jax.tree.leaves(x)))
        grad_shape()  # the state is larger than the image: 128 states do not fit
