"""Tiled inference: grid, weights, receptive margin, and exactness without instance norm."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from bppjax.models.presets import build_model, preset
from bppjax.tiling import (
    ENHANCE_MODE,
    MODES,
    PAPER_STRIDE,
    TileSpec,
    axis_starts,
    plan_tiles,
    probe_receptive_margin,
    receptive_margin,
    resolve_spec,
    tile_count,
    tiled_apply,
    tiled_inference,
)


def _no_in_tiny():
    cfg = preset("tiny")
    cfg.instance_norm = False
    return build_model(cfg)


def random_params(model, seed: int = 0, size: int = 32):
    """Gaussian weights (std 1/sqrt(fan-in)): every path of the receptive field is live, and no slow init."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, size, size, 3), np.float32))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def tiny_no_in():
    model = _no_in_tiny()
    return model, random_params(model)


@pytest.mark.parametrize("length,tile,stride", [(75, 32, 8), (64, 64, 16), (40, 64, 16), (100, 24, 24), (97, 32, 12)])
def test_axis_starts_cover_the_axis_flush_with_both_borders(length, tile, stride):
    starts = axis_starts(length, tile, stride)
    assert starts[0] == 0
    assert starts[-1] == max(length - tile, 0)
    assert np.all(np.diff(starts) > 0) and np.all(np.diff(starts) <= stride)


@pytest.mark.parametrize("length,tile,stride", [(256, 96, 68), (512, 96, 68), (3200, 96, 68), (344, 96, 72), (100, 96, 68), (97, 32, 12), (40, 64, 16), (301, 32, 20)])
def test_spread_starts_are_as_many_as_the_flush_grid_evenly_spaced(length, tile, stride):
    """Spread: the same tile count, both borders touched, no step over the stride, steps within ``multiple`` of each other."""
    flush, spread = axis_starts(length, tile, stride), axis_starts(length, tile, stride, spread=True, multiple=4)
    assert len(spread) == len(flush) and spread[0] == 0 and spread[-1] == flush[-1]
    steps = np.diff(spread)
    if len(steps):
        assert np.all(steps > 0) and steps.max() <= stride
        assert steps.max() - steps.min() <= (4 if (length - tile) % 4 == 0 else 1)
    if (length - tile) % 4 == 0:
        assert np.all(spread % 4 == 0)  # origins on the model's size multiple
    if len(flush) > 2:  # the flush grid piles the slack on its last seam; spread shares it
        assert steps.min() >= np.diff(flush).min()


def test_every_pixel_gets_positive_weight_with_and_without_margin():
    for spec in (TileSpec(96, PAPER_STRIDE, 0), TileSpec(64, 16, 24), TileSpec(32, 32, 0)):
        plan = plan_tiles(232, 348, spec, multiple=4)
        wy, wx = plan.weight_sum(0), plan.weight_sum(1)
        assert wy.shape == (232,) and wx.shape == (348,)
        assert wy.min() >= 0.08 - 1e-6 and wx.min() >= 0.08 - 1e-6  # Hamming's end value


def test_stride_that_leaves_gaps_after_the_margin_is_an_error():
    with pytest.raises(ValueError, match="stride=24 leaves gaps"):
        plan_tiles(200, 200, TileSpec(64, 24, 24), multiple=4)
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_tiles(200, 200, TileSpec(62, 16, 0), multiple=4)


@pytest.mark.parametrize("spec", [TileSpec(32, 8, 0), TileSpec(32, 16, 8, batch=5), TileSpec(32, 24, 0, window_power=2),
                                  TileSpec(32, 20, 0, spread=True), TileSpec(32, 16, 4, batch=2, spread=True), TileSpec(None)])
def test_identity_network_reconstructs_the_image_and_batches_have_one_shape(spec):
    """Weights are normalised: blending copies of the input gives the input back, on any size."""
    img = np.random.default_rng(0).random((45, 70, 3), dtype=np.float32)
    shapes = []

    def identity(tiles):
        shapes.append(tiles.shape)
        return tiles

    out = tiled_apply(identity, img, spec, multiple=4)
    np.testing.assert_allclose(out, img, atol=1e-6)
    assert len(set(shapes)) == 1  # fixed shape, last batch padded: one compilation
    if spec.batch:
        plan = plan_tiles(48, 72, spec, multiple=4)
        assert len(shapes) == -(-plan.count // spec.batch) and shapes[0][0] == spec.batch


@pytest.mark.parametrize("power", [1, 2])
def test_blending_uses_hamming_weights(power):
    """Two tiles returning constants 0 and 1: the blend follows their Hamming windows (to ``window_power``)."""
    img = np.zeros((16, 48, 1), np.float32)
    calls = iter([0.0, 1.0])
    spec = TileSpec(32, 16, 0, batch=1, window_power=power)
    out = tiled_apply(lambda t: np.stack([np.full(t.shape[1:], next(calls), np.float32) for _ in t]), img, spec)
    w = np.hamming(32) ** power
    expected_mid = w[:16] / (w[:16] + w[16:])  # column 16+k: tile 0 weight w[16+k], tile 1 weight w[k]
    np.testing.assert_allclose(out[0, 16:32, 0], expected_mid, atol=1e-6)
    np.testing.assert_allclose(out[:, :16], 0, atol=1e-6)
    np.testing.assert_allclose(out[:, 32:], 1, atol=1e-6)


def test_receptive_margin_is_the_measured_one():
    """The derived bound equals the gradient probe (so it is tight), for BPP and ResNet."""
    model = _no_in_tiny()
    assert receptive_margin(model) == probe_receptive_margin(model) == 24
    resnet = build_model(preset("resnet_tiny"))
    assert receptive_margin(resnet) == probe_receptive_margin(resnet) == 6
    assert receptive_margin(build_model(preset("paper"))) == 164


def test_tiled_equals_whole_image_without_instance_norm(tiny_no_in):
    """Odd size, many tiles, a padded last batch: equal to float tolerance at the receptive margin."""
    model, params = tiny_no_in
    x = np.random.default_rng(2).random((75, 93, 3), dtype=np.float32)
    whole = np.asarray(model.apply({"params": params}, x[None]))[0]
    r = receptive_margin(model)
    tiled = tiled_inference(model, params, x, tile=64, stride=16, margin=r, batch=3)
    assert np.abs(whole - x).max() > 0.1  # the network does change the image
    np.testing.assert_allclose(tiled, whole, atol=2e-6)
    # The margin is what makes it exact: a third of it leaves visible seams.
    rough = tiled_inference(model, params, x, tile=64, stride=16, margin=r // 3, batch=3)
    assert np.abs(rough - whole).max() > 1e-3


def test_auto_mode_is_exact_without_in_and_overlapping_with_in():
    no_in = resolve_spec(_no_in_tiny())
    assert no_in.margin == 24 and no_in.stride <= no_in.tile - 2 * no_in.margin
    with_in = resolve_spec(build_model(preset("tiny")))
    assert with_in.margin == 0 and with_in.stride < with_in.tile
    paper = resolve_spec(build_model(preset("tiny")), "paper", patch=48)
    assert (paper.tile, paper.stride, paper.margin) == (48, PAPER_STRIDE, 0)
    assert resolve_spec(build_model(preset("tiny")), "whole").tile is None


def test_ode_model_is_exact_only_when_it_steps_like_the_blocks():
    cfg = preset("tiny")
    cfg.instance_norm, cfg.kind = False, "ode"
    assert resolve_spec(build_model(cfg)).margin == 24  # causal Euler, dt=1: the discrete network
    cfg.ode.dt = 0.5  # twice the steps: a wider support, no known margin -> overlapping blend
    with pytest.raises(TypeError, match="no receptive margin"):
        receptive_margin(build_model(cfg))
    assert resolve_spec(build_model(cfg)).margin == 0


def test_tile_smaller_than_the_model_allows_is_a_clear_error():
    model = build_model(preset("tiny"))  # 3 levels: multiple 4, min size 10
    with pytest.raises(ValueError, match="tile=8 .*at least 12"):
        resolve_spec(model, tile=8)
    with pytest.raises(ValueError, match="unknown tiling mode"):
        resolve_spec(model, "quick")


def _box3(tiles: np.ndarray) -> np.ndarray:
    """A local filter: 3x3 mean with edge padding (each output pixel sees 1 px around it)."""
    p = np.pad(tiles, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
    h, w = tiles.shape[1:3]
    return sum(p[:, i : i + h, j : j + w] for i in range(3) for j in range(3)) / 9


def _up2(tiles: np.ndarray) -> np.ndarray:
    """A toy network whose output is twice its input's size: local filter, then nearest-neighbour x2."""
    return np.repeat(np.repeat(_box3(tiles), 2, axis=1), 2, axis=2)


@pytest.mark.parametrize("spec", [TileSpec(16, 12, 1, batch=3), TileSpec(20, 8, 1), TileSpec(16, 12, 1, batch=4, fixed_shape=True)])
def test_tiled_equals_whole_for_a_network_that_enlarges_twice(spec):
    """Tiles laid in input pixels, outputs and margins twice as large: equal to the whole-image output."""
    img = np.random.default_rng(5).random((37, 50, 3), dtype=np.float32)
    whole = _up2(img[None])[0]
    shapes = []

    def fn(tiles):
        shapes.append(tiles.shape)
        return _up2(tiles)

    out = tiled_apply(fn, img, spec, scale=2)
    assert out.shape == (74, 100, 3)
    np.testing.assert_allclose(out, whole, atol=1e-6)
    assert len(set(shapes)) == 1
    rough = tiled_apply(_up2, img, TileSpec(spec.tile, spec.stride, 0, batch=spec.batch), scale=2)  # no margin: seams
    assert np.abs(rough - whole).max() > 1e-3


def test_output_scale_must_be_a_positive_integer():
    with pytest.raises(ValueError, match="scale=1.5 must be a positive integer"):
        tiled_apply(_up2, np.zeros((8, 8, 3), np.float32), TileSpec(8, 8), scale=1.5)


def test_fixed_shape_is_one_call_shape_for_images_of_any_size():
    """Images smaller and larger than the tile, odd sizes: one (batch, tile, tile, C) shape; the input comes back."""
    spec = TileSpec(32, 24, 0, batch=4, fixed_shape=True)
    shapes = set()

    def identity(tiles):
        shapes.add(tiles.shape)
        return tiles

    for size in ((9, 13), (20, 45), (45, 70), (130, 97)):
        img = np.random.default_rng(sum(size)).random((*size, 3), dtype=np.float32)
        np.testing.assert_allclose(tiled_apply(identity, img, spec, multiple=4), img, atol=1e-6)
    assert shapes == {(4, 32, 32, 3)}
    assert tile_count(9, 13, spec, multiple=4) == 1 and tile_count(130, 97, spec, multiple=4) == 6 * 4


def test_fast_mode_is_fixed_shape_with_in_and_auto_without():
    with_in = resolve_spec(build_model(preset("tiny")), "fast", patch=48)
    assert with_in.fixed_shape and with_in.tile == 48 and with_in.stride < with_in.tile and with_in.margin == 0
    auto = resolve_spec(build_model(preset("tiny")), "auto", patch=48)
    assert with_in.stride > auto.stride  # fewer tiles than auto
    assert with_in.spread and not auto.spread  # auto (the evaluation protocol) keeps its flush grid
    assert with_in.window_power == auto.window_power == 1
    no_in = _no_in_tiny()
    assert resolve_spec(no_in, "fast") == resolve_spec(no_in, "auto")  # exact, as auto
    assert ENHANCE_MODE in MODES


def test_fast_mode_of_the_zoo_models_is_stride_68_spread_plain_hamming():
    """The chosen setting (docs/ENHANCE.md): 96 px tiles, at least 28 px of overlap, spread evenly, Hamming weights."""
    from bppjax.zoo import pretrained

    loaded = pretrained("bpp-sr-x2")
    spec = resolve_spec(loaded.model, "fast", patch=loaded.patch)
    assert (spec.tile, spec.stride, spec.margin, spec.window_power, spec.spread, spec.fixed_shape) == (96, 68, 0, 1, True, True)
    # a 3200x2400 output: 47 x 35 tiles, 1.97 network pixels per output pixel (auto: 3,234 tiles, 3.88)
    assert tile_count(2400, 3200, spec, multiple=4) == 47 * 35
    assert tile_count(2400, 3200, resolve_spec(loaded.model, "auto", patch=loaded.patch), multiple=4) == 3234


def test_streams_keep_calls_in_flight_and_do_not_change_the_output():
    """``streams`` network calls run at once on their own threads; tiles are blended in order, so the output is the same."""
    import threading
    import time

    model = build_model(preset("tiny"))  # with instance norm: every tile's output is its own
    params = random_params(model)
    img = np.random.default_rng(1).random((70, 90, 3), dtype=np.float32)
    base = resolve_spec(model, "fast", patch=32, streams=1)
    one = tiled_inference(model, params, img, "fast", patch=32, streams=1)
    for streams in (2, 3):
        assert np.array_equal(tiled_inference(model, params, img, "fast", patch=32, streams=streams), one)

    lock, running, most = threading.Lock(), [0], [0]

    def slow_identity(tiles):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.02)
        with lock:
            running[0] -= 1
        return tiles

    for streams in (1, 2):
        most[0] = 0
        out = tiled_apply(slow_identity, img, TileSpec(base.tile, base.stride, streams=streams, batch=1), multiple=4)
        np.testing.assert_allclose(out, img, atol=1e-6)
        assert most[0] == streams


def test_streams_default_to_the_cores_and_must_be_positive():
    from bppjax.tiling import default_streams

    model = build_model(preset("tiny"))
    assert resolve_spec(model, "auto", patch=32).streams == default_streams() >= 1
    assert resolve_spec(model, "whole").tile is None
    with pytest.raises(ValueError, match="streams=0"):
        resolve_spec(model, "fast", patch=32, streams=0)
