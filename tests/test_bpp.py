"""The BPP network: size, shapes, scale causality, remat, dtypes, bad input."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bppjax.models import FluxBlock, Scaler, build_model, model_config, preset
from bppjax.models.bpp import BICUBIC_HALF_TAPS


def _init(model, shape=(1, 24, 24, 3), seed=0):
    x = jax.random.uniform(jax.random.key(seed), shape)
    # The "rbg" generator: XLA:CPU compiles threefry initialisers ~6x slower.
    return model.init(jax.random.key(1, impl="rbg"), x)["params"], x


def _n(params) -> int:
    return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize(
    "overrides, expected",
    [({}, 18_653_052), ({"down_projection": "eq2"}, 19_037_244)],
)
def test_paper_parameter_count(overrides, expected):
    model = build_model(model_config(**overrides))
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    assert _n(shapes["params"]) == expected


def test_paper_block_structure():
    model = build_model(preset("paper"))
    p = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert p["block_00"]["unit_3"]["upscale"]["conv"]["kernel"].shape == (3, 3, 128, 48)
    assert p["block_00"]["unit_1"]["downscale"]["conv"]["kernel"].shape == (3, 3, 128, 256)
    assert "downscale" not in p["block_15"]["unit_2"]  # no dead R in the last block
    assert p["scaler_3"]["kernel"].shape == (9, 9, 1, 3)


@pytest.mark.parametrize("hw", [(24, 24), (25, 31), (37, 20), (17, 64)])
def test_output_shape_any_size(hw):
    model = build_model(preset("tiny"))
    params, x = _init(model, (2, *hw, 3))
    y = model.apply({"params": params}, x)
    assert y.shape == x.shape
    assert bool(jnp.all(jnp.isfinite(y)))


def test_scalers_start_as_bicubic():
    taps = BICUBIC_HALF_TAPS
    assert abs(taps.sum() - 1.0) < 1e-6
    model = build_model(preset("tiny"))
    params, _ = _init(model)
    k = np.asarray(params["scaler_2"]["kernel"])[:, :, 0, 0]
    np.testing.assert_allclose(k, np.outer(taps, taps), atol=1e-7)
    # A constant image stays constant through the pyramid (taps sum to one).
    pyramid = _scaler_outputs(model, params, jnp.full((1, 32, 32, 3), 0.3))
    assert [p.shape[1] for p in pyramid] == [16, 8]
    for level in pyramid:
        np.testing.assert_allclose(level, 0.3, atol=1e-6)


def _scaler_outputs(model, params, x):
    """Pyramid levels below the input, finest first, captured from the Scalers."""
    _, inter = model.apply({"params": params}, x, capture_intermediates=lambda mdl, _: isinstance(mdl, Scaler))
    inter = inter["intermediates"]
    return [inter[f"scaler_{l}"]["__call__"][0] for l in range(model.levels - 1, 0, -1)]


def _block_states(model, params, x):
    """Per-block level states, captured from every FluxBlock's output."""
    _, inter = model.apply(
        {"params": params}, x, capture_intermediates=lambda mdl, _: isinstance(mdl, FluxBlock)
    )
    inter = inter["intermediates"]
    return [inter[f"block_{t:02d}"]["__call__"][0][0] for t in range(model.depth)]


def _fine_scale_perturbation(shape, seed=3):
    """(-1)^row times a random field: the symmetric bicubic scaler maps it to exactly 0."""
    b, h, w, c = shape
    sign = (-1.0) ** np.arange(h)
    field = np.asarray(jax.random.normal(jax.random.key(seed), (b, 1, w, c)))
    return jnp.asarray(sign[None, :, None, None] * field, jnp.float32)


@pytest.mark.parametrize("down_projection", ["carried", "eq2"])
def test_scale_causality(down_projection):
    model = build_model(model_config(levels=3, features=(8, 8, 8), depth=3, down_projection=down_projection))
    params, x = _init(model, (1, 32, 32, 3))
    dx = 0.1 * _fine_scale_perturbation(x.shape)
    # The perturbation is invisible to the pyramid ...
    for a, b in zip(_scaler_outputs(model, params, x), _scaler_outputs(model, params, x + dx)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    base, pert = _block_states(model, params, x), _block_states(model, params, x + dx)
    for t, (hb, hp) in enumerate(zip(base, pert)):
        for l in range(model.levels - 1):
            np.testing.assert_allclose(hp[l], hb[l], atol=1e-5, err_msg=f"block {t} level {l}")
        # ... but the finest level sees it.
        assert float(jnp.max(jnp.abs(hp[-1] - hb[-1]))) > 1e-3


def test_lowest_level_never_changes():
    model = build_model(model_config(levels=3, features=(8, 8, 8), depth=3))
    params, x = _init(model, (1, 32, 32, 3))
    states = _block_states(model, params, x)
    for t in range(1, len(states)):
        np.testing.assert_array_equal(states[t][0], states[0][0])
        assert float(jnp.max(jnp.abs(states[t][1] - states[t - 1][1]))) > 0


def _loss_and_grad(model, params, x):
    return jax.jit(jax.value_and_grad(lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, x) - 0.5))))(params)


# remat on/off: tests/test_reversible.py


def test_bfloat16_runs_close_to_float32():
    cfg = preset("tiny")
    f32 = build_model(cfg)
    cfg.dtype = "bfloat16"
    bf16 = build_model(cfg)
    params, x = _init(f32, (1, 24, 24, 3))
    y32 = f32.apply({"params": params}, x)
    y16 = bf16.apply({"params": params}, x)
    assert y16.dtype == jnp.float32
    assert jax.tree.leaves(params)[0].dtype == jnp.float32
    err = float(jnp.max(jnp.abs(y16 - y32)))
    assert 0 < err < 0.05
    _, g = _loss_and_grad(bf16, params, x)
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(g))


def test_no_instance_norm_trains_a_step():
    cfg = preset("tiny")
    cfg.instance_norm = False
    model = build_model(cfg)
    params, x = _init(model, (2, 24, 24, 3))
    # Dirac init: centre taps are close to identity.
    k = params["block_00"]["unit_1"]["downscale"]["conv"]["kernel"]
    assert abs(float(k[1, 1, 0, 0]) - 1.0) < 0.01
    opt = optax.adam(1e-3)
    state = opt.init(params)
    loss, g = _loss_and_grad(model, params, x)
    updates, state = opt.update(g, state, params)
    new = optax.apply_updates(params, updates)
    loss2, _ = _loss_and_grad(model, new, x)
    assert np.isfinite(float(loss)) and np.isfinite(float(loss2))
    assert all(bool(jnp.all(jnp.isfinite(l))) for l in jax.tree.leaves(new))


@pytest.mark.parametrize(
    "x, match",
    [
        (np.zeros((24, 24, 3), np.float32), "shaped"),
        (np.zeros((1, 24, 24, 4), np.float32), "3 \\(RGB\\) channels"),
        (np.full((1, 24, 24, 3), np.nan, np.float32), "NaN or Inf"),
        (np.zeros((1, 6, 6, 3), np.float32), "too small"),
    ],
)
def test_bad_input_raises_clear_error(x, match):
    model = build_model(preset("tiny"))
    params, _ = _init(model)
    with pytest.raises(ValueError, match=match):
        model.apply({"params": params}, x)


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"levels": 4}, "model.levels"),
        ({"down_projection": "diff"}, "model.down_projection"),
        ({"remat": "all"}, "model.remat"),
        ({"dtype": "float16"}, "model.dtype"),
        ({"depth": 0}, "model.depth"),
    ],
)
def test_bad_config_raises_clear_error(overrides, match):
    cfg = preset("tiny")
    for k, v in overrides.items():
        cfg[k] = v
    with pytest.raises(ValueError, match=match):
        build_model(cfg)


def test_resnet_rejects_the_flux_block_remat():
    cfg = preset("resnet_tiny")
    cfg.remat = "block"  # BPP's reversible sweep; a residual block cannot be run backwards
    with pytest.raises(ValueError, match=r"model.remat must be one of \('none', 'checkpoint'\) for model.arch='resnet'"):
        build_model(cfg)
    cfg.remat = "checkpoint"
    assert build_model(cfg).remat == "checkpoint"

