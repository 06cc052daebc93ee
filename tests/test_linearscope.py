"""LinearScope: y = F x + r with frozen masks and IN statistics (docs/ANALYSIS.md)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.analysis import linearscope as ls
from bppjax.models.presets import build_model, model_config, preset

SIZE = 16  # tiny BPP (3 levels) needs >= 10 px; 16 keeps every Jacobian small


def random_params(model, x, seed: int = 0):
    """He-scaled random kernels and sizeable biases, so every non-linearity and bias matters.

    At initialisation the synthesis conv is tiny (y ~ x) and the biases are 0
    (r ~ 0), which would make any decomposition look right. Only the shapes
    come from ``init`` (traced, not run), which keeps the tests fast.
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    rng = np.random.default_rng(seed)

    def draw(path, s):
        if str(getattr(path[-1], "key", path[-1])) == "bias":
            return jnp.asarray(0.2 * rng.standard_normal(s.shape), jnp.float32)
        return jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(2.0 / np.prod(s.shape[:-1])), jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def setup(cfg, seed: int = 0, size: int = SIZE):
    model = build_model(cfg)
    x = jnp.asarray(np.random.default_rng(seed + 100).uniform(size=(1, size, size, 3)), jnp.float32)
    return model, random_params(model, x, seed), x


CONFIGS = {
    "bpp_in": lambda: preset("tiny"),
    "bpp_no_in": lambda: model_config(levels=3, features=(8, 8, 8), depth=2, instance_norm=False),
    "resnet": lambda: preset("resnet_tiny"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fx_plus_r_reproduces_y(name):
    model, params, x = setup(CONFIGS[name]())
    d = ls.decompose(model, params, x)
    assert d.reconstruction_error[0] < 1e-5, (d.method, d.reconstruction_error)
    # Non-trivial case: a large residual and a large global part, so 1e-5 is a real bound.
    assert np.linalg.norm(d.y - d.x) / np.linalg.norm(d.y) > 0.1
    assert d.global_fraction[0] > 0.05
    frozen = ls.record(ls.frozen_twin(model), params, x)
    masks = [m for p, m in jax.tree_util.tree_flatten_with_path(frozen)[0] if "mask" in str(p[-1])]
    assert masks and all(0.05 < float(m.mean()) < 0.95 for m in masks)  # ReLUs really switch


def test_bpp_uses_transposed_vjp_and_methods_agree():
    model, params, x = setup(CONFIGS["bpp_in"]())
    auto = ls.decompose(model, params, x)
    assert auto.method == "vjp"  # jax.jvp refuses BPP's custom_vjp transposed conv
    diff = ls.decompose(model, params, x, method="difference")
    np.testing.assert_allclose(auto.fx, diff.fx, atol=1e-5 * np.abs(auto.y).max())
    np.testing.assert_array_equal(auto.r, diff.r)


def test_resnet_forward_mode_matches_transposed_vjp():
    model, params, x = setup(CONFIGS["resnet"]())
    jvp = ls.decompose(model, params, x)
    assert jvp.method == "jvp"
    vjp = ls.decompose(model, params, x, method="vjp")
    np.testing.assert_allclose(jvp.fx, vjp.fx, rtol=1e-5, atol=1e-6)


def test_without_freezing_the_check_fails():
    """The ordinary network's own linearisation does not reproduce y: the freeze is what makes it exact."""
    model, params, x = setup(CONFIGS["bpp_in"]())
    d = ls.decompose(model, params, x, frozen_model=model)
    assert d.reconstruction_error[0] > 1e-2


def test_batch_is_decomposed_per_sample():
    model, params, _ = setup(CONFIGS["bpp_in"]())
    xs = jnp.asarray(np.random.default_rng(7).uniform(size=(2, SIZE, SIZE, 3)), jnp.float32)
    both = ls.decompose(model, params, xs)
    one = ls.decompose(model, params, xs[1:])
    assert np.all(both.reconstruction_error < 1e-5)
    np.testing.assert_allclose(both.r[1], one.r[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(both.global_fraction[1], one.global_fraction[0], rtol=1e-5)


def _all_ones_masks(frozen):
    return jax.tree_util.tree_map_with_path(
        lambda p, v: jnp.ones_like(v) if "mask" in str(p[-1]) else v, frozen
    )


def test_purely_linear_network():
    """Masks all on, no IN: the frozen BPP is linear plus the synthesis bias.

    r must be exactly the bias-only response (the synthesis bias at every
    pixel, as nothing else in BPP has a bias) and F x the Jacobian times x.
    """
    cfg = CONFIGS["bpp_no_in"]()
    model, params, x = setup(cfg)
    frozen_model = ls.frozen_twin(model)
    frozen = _all_ones_masks(ls.record(frozen_model, params, x))
    f = jax.jit(ls.replay(frozen_model, params, frozen))
    parts = jax.jit(lambda z: ls.affine_parts(f, z, method="vjp"))
    fx, r = parts(x)
    bias = params["synthesis"]["conv"]["bias"]
    assert float(jnp.abs(bias).min()) > 1e-3
    np.testing.assert_allclose(r, jnp.broadcast_to(bias, x.shape), rtol=1e-6, atol=1e-7)
    jac = jax.jit(jax.jacrev(f))(x).reshape(x.size, x.size)
    np.testing.assert_allclose(fx.reshape(-1), jac @ x.reshape(-1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(fx + r, f(x), rtol=1e-5, atol=1e-5)
    # Linear means homogeneous: F (3x) = 3 F x.
    fx3, _ = parts(3.0 * x)
    np.testing.assert_allclose(fx3, 3.0 * fx, rtol=1e-5, atol=1e-5)


def finite_difference_row(f, x, pixel, weights):
    """One row of F, entry by entry, by central differences of the frozen (affine) map.

    Affine means the step can be large (here 1): the only error is rounding.
    """
    n = x.size
    steps = jnp.eye(n, dtype=x.dtype).reshape((n,) + x.shape[1:])
    diff = (f(x + steps) - f(x - steps)) / 2.0  # the replayed decisions broadcast over the batch
    return np.asarray(diff[:, pixel[0], pixel[1], :] @ weights).reshape(x.shape[1:])


@pytest.mark.parametrize("name,channel", [("bpp_in", None), ("bpp_no_in", 1), ("resnet", None)])
def test_filter_row_matches_finite_differences(name, channel):
    model, params, x = setup(CONFIGS[name]())
    frozen_model = ls.frozen_twin(model)
    pixels = [(5, 9), (0, 15)]
    rows = ls.filters(frozen_model, params, x, pixels, channel=channel)
    assert rows.shape == (2, SIZE, SIZE, 3)
    f = jax.jit(ls.replay(frozen_model, params, ls.record(frozen_model, params, x)))
    weights = jnp.full((3,), 1 / 3) if channel is None else jax.nn.one_hot(channel, 3)
    for row, p in zip(rows, pixels):
        fd = finite_difference_row(f, x, p, weights)
        np.testing.assert_allclose(row, fd, atol=1e-5 * np.abs(fd).max())
        assert np.count_nonzero(np.abs(fd) > 1e-3 * np.abs(fd).max()) > 9  # wider than one 3x3 tap


def test_frozen_twin_needs_a_freeze_field():
    import flax.linen as nn

    with pytest.raises(TypeError, match="freeze"):
        ls.frozen_twin(nn.Dense(3))
    with pytest.raises(ValueError, match="method"):
        ls.decompose(build_model(preset("tiny")), {}, jnp.zeros((1, SIZE, SIZE, 3)), method="newton")


def test_ode_model_matches_the_discrete_network():
    """Scale-causal Euler with dt = 1 is the discrete network, so LinearScope must agree.

    The ODE cannot replay decisions, so its r is frozen(x) - F x; the discrete
    network's r comes from replaying at a zero input: an independent check of both.
    """
    cfg = CONFIGS["bpp_in"]()
    model, params, x = setup(cfg)
    cfg.kind = "ode"
    ode = build_model(cfg)
    assert not ls.can_replay(ls.frozen_twin(ode), params, x)
    d_ode = ls.decompose(ode, params, x)
    d_bpp = ls.decompose(model, params, x)
    assert d_ode.r_source == "residual" and d_bpp.r_source == "replay"
    assert d_ode.reconstruction_error[0] < 1e-5
    scale = np.abs(d_bpp.y).max()
    np.testing.assert_allclose(d_ode.fx, d_bpp.fx, atol=1e-5 * scale)
    np.testing.assert_allclose(d_ode.r, d_bpp.r, atol=1e-5 * scale)
    rows = ls.filters(ls.frozen_twin(ode), params, x, [(5, 9)])
    np.testing.assert_allclose(rows, ls.filters(ls.frozen_twin(model), params, x, [(5, 9)]), atol=1e-5 * np.abs(rows).max())
