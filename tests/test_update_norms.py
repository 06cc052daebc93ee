"""Update norms (Eq. 3, Fig. 7): levels x blocks, lowest level 0, max 100."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.analysis import plots
from bppjax.analysis.update_norms import average, mean_update_norms, normalise, stack_update_norms, update_norms
from bppjax.models.presets import build_model, preset

SIZE = 16


def setup(name: str, seed: int = 0):
    """Model, random parameters (shapes traced from ``init``, values from NumPy: fast) and a batch of 2."""
    model = build_model(preset(name))
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(size=(2, SIZE, SIZE, 3)), jnp.float32)
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    params = jax.tree.map(
        lambda s: jnp.asarray(rng.standard_normal(s.shape) * np.sqrt(1.0 / np.prod(s.shape[:-1])), jnp.float32), shapes
    )
    return model, params, x


def jitted_norms(model):
    return jax.jit(lambda p, z: update_norms(model, p, z))


def test_bpp_levels_by_blocks_lowest_level_zero():
    model, params, x = setup("tiny")  # 3 levels, 2 blocks
    norms = np.asarray(jitted_norms(model)(params, x))
    assert norms.shape == (3, 2, 2)
    assert np.all(norms[0] == 0.0)  # exactly: level 0 is never updated
    assert np.all(norms[1:] > 0)
    heat = mean_update_norms(model, params, [x, x[0]])  # a batch and a single HWC image
    assert heat.shape == (3, 2)
    assert heat.max() == 100.0 and np.all(heat[0] == 0.0)
    np.testing.assert_allclose(heat, normalise(norms.mean(-1) * 2 / 3 + norms[..., 0] / 3), rtol=1e-6)


def test_norms_land_on_their_level_and_block():
    """Silencing one flux unit's Upscale zeroes exactly its cell of the map."""
    model, params, x = setup("tiny")
    params["block_01"]["unit_2"]["upscale"]["conv"]["kernel"] = jnp.zeros_like(
        params["block_01"]["unit_2"]["upscale"]["conv"]["kernel"]
    )
    norms = np.asarray(jitted_norms(model)(params, x[:1]))[..., 0]
    assert norms[2, 1] == 0.0
    assert np.count_nonzero(norms == 0.0) == 3  # level 0 (two blocks) and the silenced unit


def test_norms_are_the_l2_norms_of_the_residual_updates():
    """Independent of the sown values: the top state's change across a block, from captured outputs."""
    model, params, x = setup("tiny")
    apply = jax.jit(lambda p, z: model.apply({"params": p}, z, capture_intermediates=True, mutable=["intermediates"])[1])
    inter = apply(params, x)["intermediates"]
    norms = np.asarray(stack_update_norms(inter))
    dh = inter["block_00"]["unit_2"]["__call__"][0][2]  # FluxUnit returns (h, p_next, dh)
    np.testing.assert_allclose(norms[2, 0], np.sqrt(np.sum(np.square(dh), axis=(1, 2, 3))), rtol=1e-6)


def test_resnet_is_one_level():
    model, params, x = setup("resnet_tiny")
    norms = np.asarray(jitted_norms(model)(params, x))
    assert norms.shape == (1, 2, 2) and np.all(norms > 0)
    assert mean_update_norms(model, params, [x]).max() == 100.0


def test_stacking_shapes_and_order():
    per_block = {f"block_{t:02d}": {"update_norms": (jnp.array([[0.0], [t + 1.0]]),)} for t in range(3)}
    np.testing.assert_array_equal(stack_update_norms(per_block)[:, :, 0], [[0, 0, 0], [1, 2, 3]])
    whole = {"ode": {"update_norms": (jnp.arange(12.0).reshape(2, 3, 2),)}}  # ODE style: (levels, blocks, B)
    assert stack_update_norms(whole).shape == (2, 3, 2)
    with pytest.raises(ValueError, match="sowed no 'update_norms'"):
        stack_update_norms({"block_00": {}})
    with pytest.raises(ValueError, match="different shapes"):
        stack_update_norms({"a": {"update_norms": (jnp.zeros((2, 1)),)}, "b": {"update_norms": (jnp.zeros((3, 1)),)}})


def test_normalise_and_average():
    assert normalise(np.array([[0.0, 2.0], [0.0, 0.5]])).tolist() == [[0.0, 100.0], [0.0, 25.0]]
    assert np.all(normalise(np.zeros((2, 3))) == 0)
    # Every sample counts once, whatever the batch it came in.
    a, b = np.ones((2, 1, 3)), 4 * np.ones((2, 1, 1))
    np.testing.assert_allclose(average([a, b]), np.full((2, 1), (3 + 4) / 4))
    with pytest.raises(ValueError):
        average([])


def test_heat_map_png(tmp_path):
    heat = normalise(np.array([[0, 0, 0], [10, 20, 30], [5, 40, 80.0]]))
    fig = plots.plot_update_norms(heat, tmp_path / "heat.png")
    assert (tmp_path / "heat.png").stat().st_size > 1000
    ax = fig.axes[0]
    assert "block" in ax.get_xlabel() and "level" in ax.get_ylabel()
    labels = [t.get_text() for t in ax.texts]
    assert labels.count("100") == 1 and labels.count("0") == 3 and len(labels) == 9
    with pytest.raises(ValueError, match="levels, blocks"):
        plots.plot_update_norms(np.zeros(3))


def test_ode_samples_the_discrete_updates_at_block_times():
    """Scale-causal Euler with dt = 1 is the discrete network: the same map, cell by cell."""
    model, params, x = setup("tiny")
    cfg = preset("tiny")
    cfg.kind = "ode"
    ode = build_model(cfg)
    np.testing.assert_allclose(jitted_norms(ode)(params, x), jitted_norms(model)(params, x), rtol=1e-4, atol=1e-6)
