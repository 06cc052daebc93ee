"""The LR-space EDSR baseline: shapes, parameter count, cost, input space, LinearScope, training."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.analysis import linearscope as ls
from bppjax.image.resize import imresize
from bppjax.models import input_space, output_scale
from bppjax.models.edsr import EDSR, edsr_params, edsr_width_for_params, pixel_shuffle, upsampler_stages
from bppjax.models.presets import build_model, model_config, preset
from test_linearscope import random_params  # He-scaled kernels and sizeable biases: every decision matters


def edsr_cfg(width: int, blocks: int, scale: int):
    return model_config(arch="edsr", edsr=dict(width=width, blocks=blocks, res_scale=1.0, scale=scale))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_shape_and_parameter_count_by_formula(scale):
    width, blocks = 6, 3
    model = build_model(edsr_cfg(width, blocks, scale))
    x = jnp.zeros((2, 7, 9, 3))  # odd sizes
    shapes = jax.eval_shape(model.init, jax.random.key(0), x)["params"]
    n = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    # By hand: head 3->w, blocks x two w->w, body w->w, upsampler w->r^2 w per stage, tail w->3 (3x3, biased).
    conv = lambda cin, cout: 9 * cin * cout + cout  # noqa: E731
    stages = [2, 2] if scale == 4 else [scale]
    expected = conv(3, width) + blocks * 2 * conv(width, width) + conv(width, width) + sum(conv(width, r * r * width) for r in stages) + conv(width, 3)
    assert n == expected == edsr_params(width, blocks, scale)
    y = jax.eval_shape(model.apply, {"params": shapes}, x)
    assert y.shape == (2, 7 * scale, 9 * scale, 3)
    assert input_space(model) == "lr" and output_scale(model) == scale
    assert input_space(build_model(preset("tiny"))) == "upscaled" and output_scale(build_model(preset("tiny"))) == 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_width_for_params_is_the_closest_width(scale):
    w = edsr_width_for_params(234_201, 8, scale)
    best = min(range(1, 200), key=lambda c: abs(edsr_params(c, 8, scale) - 234_201))
    assert w == best


def test_macs_per_pixel_counts_lr_convs_once_per_s_squared_output_pixels():
    w, b = 10, 2
    m2, m4 = EDSR(w, b, 2), EDSR(w, b, 4)
    lr = 9 * 3 * w + b * 2 * 9 * w * w + 9 * w * w
    assert m2.macs_per_pixel() == pytest.approx((lr + 9 * w * 4 * w) / 4 + 9 * w * 3)
    # x4: first x2 stage on LR pixels, second on 2x pixels (4 per LR pixel).
    assert m4.macs_per_pixel() == pytest.approx((lr + 9 * w * 4 * w + 4 * 9 * w * 4 * w) / 16 + 9 * w * 3)
    # At equal width and depth the HR-space ResNet pays its body at every output pixel.
    from bppjax.models.resnet import ResNet

    assert ResNet(64, 16).macs_per_pixel() > 3 * EDSR(64, 16, 2).macs_per_pixel()


def test_pixel_shuffle_places_channels_on_the_subpixel_grid():
    r, c = 3, 2
    x = jnp.arange(1 * 2 * 2 * r * r * c, dtype=jnp.float32).reshape(1, 2, 2, r * r * c)
    y = pixel_shuffle(x, r)
    assert y.shape == (1, 2 * r, 2 * r, c)
    for i in range(r):
        for j in range(r):
            np.testing.assert_array_equal(y[0, i::r, j::r, :], x[0, :, :, (i * r + j) * c : (i * r + j + 1) * c])
    assert upsampler_stages(4) == (2, 2) and upsampler_stages(3) == (3,)
    with pytest.raises(ValueError, match="model.edsr.scale"):
        upsampler_stages(5)


def test_untrained_tail_leaves_the_matlab_bicubic_skip():
    """With the tail zeroed the network is exactly the MATLAB bicubic upscaling of its input."""
    model = build_model(edsr_cfg(4, 1, 3))
    lr = np.random.default_rng(0).uniform(size=(1, 10, 13, 3)).astype(np.float32)
    params = model.init(jax.random.key(0), lr)["params"]
    params = jax.tree.map(lambda a: a, params)
    params["tail"] = jax.tree.map(jnp.zeros_like, params["tail"])
    y = np.asarray(model.apply({"params": params}, lr))[0]
    np.testing.assert_allclose(y, imresize(lr[0].astype(np.float64), 3.0), atol=2e-6)


def test_bad_scale_is_one_clear_config_error():
    from bppjax.models.presets import validate_model_config

    with pytest.raises(ValueError, match=r"model.edsr.scale must be one of \(2, 3, 4\)"):
        validate_model_config(edsr_cfg(8, 1, 5))
    with pytest.raises(ValueError, match="model.kind='ode'"):
        validate_model_config(model_config(arch="edsr", kind="ode"))


def test_linearscope_reconstructs_edsr():
    model = build_model(preset("edsr_tiny"))
    x = jnp.asarray(np.random.default_rng(3).uniform(size=(1, 8, 8, 3)), jnp.float32)
    params = random_params(model, x)
    d = ls.decompose(model, params, x)
    assert d.y.shape[1:3] == (16, 16)
    assert d.reconstruction_error[0] < 1e-5, (d.method, d.reconstruction_error)
    assert d.global_fraction[0] > 0.05  # the biases and ReLUs make r large: 1e-5 is a real bound


def test_analysis_of_an_edsr_takes_lr_input_and_output_pixels(tmp_path):
    from bppjax.analysis.report import analyze_image

    model = build_model(preset("edsr_tiny"))
    x = np.random.default_rng(4).uniform(size=(10, 12, 3)).astype(np.float32)
    params = random_params(model, jnp.asarray(x)[None])
    norms, record = analyze_image(model, ls.frozen_twin(model), params, x, tmp_path / "a", pixels=[(19, 23), (0, 0)])
    assert np.asarray(norms).shape == (1, 2, 1)  # one level, two residual blocks, one image
    assert record["reconstruction_error"] < 1e-5 and record["filter_pixels"] == [[19, 23], [0, 0]]
    rows = np.load(tmp_path / "a" / "filters.npy")
    assert rows.shape == (2, 10, 12, 3)  # a row of F lives on the LR input
    # The output pixel (19, 23) sits over LR pixel (9, 11): its filter's largest tap is near there.
    peak = np.unravel_index(np.abs(rows[0].sum(-1)).argmax(), rows.shape[1:3])
    assert abs(peak[0] - 9) <= 2 and abs(peak[1] - 11) <= 2
    assert (tmp_path / "a" / "filters.png").stat().st_size > 1000


def test_tiny_edsr_trains_on_lr_patches_validates_and_tiles(tmp_path):
    """Training gives the EDSR LR patches (the loop asks the model), its loss falls, and tiled == whole."""
    import bppjax
    from bppjax.tiling import tiled_inference
    from bppjax.training.config import default_config
    from bppjax.training.writers import read_records

    c = default_config("tiny")
    c.model = preset("edsr_tiny")
    c.train.update(steps=40, val_every=20, log_every=10, ckpt_every=20, curve=False, progress=False)
    bppjax.train_and_evaluate(c, tmp_path / "w")
    records = read_records(tmp_path / "w" / "metrics.jsonl")
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert np.mean(losses[-2:]) < 0.8 * np.mean(losses[:2]), losses
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [20, 40] and val[-1]["input_psnr"] > 30  # the bicubic row, from the LR images
    m = bppjax.load_model(tmp_path / "w", which="latest")
    lr = np.random.default_rng(5).uniform(size=(37, 29, 3)).astype(np.float32)  # odd sizes
    whole = np.asarray(m.apply(jnp.asarray(lr)[None]))[0]
    tiled = np.asarray(tiled_inference(m.model, m.params, lr, "fast", tile=24))  # margin 10: 4 px kept per tile
    assert tiled.shape == whole.shape == (74, 58, 3)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


def test_evaluate_gives_an_lr_model_the_lr_image(tmp_path):
    """A LoadedModel of an EDSR is an EnhanceFn that says it takes the LR image; evaluate feeds it that."""
    import bppjax
    from bppjax.evaluation import evaluate, method_input_space, self_ensemble
    from bppjax.image.io import write_image
    from bppjax.workdir import save_model

    model = build_model(preset("edsr_tiny"))
    params = model.init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))["params"]
    params["tail"] = jax.tree.map(jnp.zeros_like, params["tail"])  # the network is then exactly bicubic
    cfg = bppjax.default_config()
    cfg.model = preset("edsr_tiny")
    save_model(tmp_path / "w", cfg, params)
    m = bppjax.load_model(tmp_path / "w")
    assert m.input_space == "lr" and method_input_space(m) == "lr" and method_input_space(self_ensemble(m)) == "lr"
    folder = tmp_path / "set"
    rng = np.random.default_rng(0)
    for k in range(2):
        write_image(folder / f"im{k}.png", rng.uniform(size=(30 + k, 41, 3)).astype(np.float32))
    ours = evaluate(m, [folder], [2], progress=False)["set"][2]
    bicubic = evaluate(lambda x: x, [folder], [2], progress=False)["set"][2]
    assert abs(ours["psnr"] - bicubic["psnr"]) < 0.05  # float bicubic vs the uint8 bicubic baseline
    x8 = evaluate(self_ensemble(m), [folder], [2], progress=False)["set"][2]
    assert abs(x8["psnr"] - bicubic["psnr"]) < 0.05
