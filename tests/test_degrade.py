"""SR degradation (crop, bicubic down, bicubic up), mixed scales, and paired data."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.image import imresize, modcrop, random_sr_input, read_pair, scale_ratio, sr_input, sr_input_jax, write_image


@pytest.fixture
def hr() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (37, 50, 3), dtype=np.uint8)


@pytest.mark.parametrize(("scale", "crop", "lr"), [(2, (36, 50), (18, 25)), (3, (36, 48), (12, 16)),
                                                    (4, (36, 48), (9, 12)), (8, (32, 48), (4, 6))])
def test_sr_input_shapes(hr, scale, crop, lr):
    sample = sr_input(hr, scale)
    assert sample.hr.shape[:2] == crop and sample.lr.shape[:2] == lr and sample.net_input.shape[:2] == crop
    assert all(a.dtype == np.uint8 for a in sample)
    assert np.array_equal(sample.hr, hr[: crop[0], : crop[1]])  # top-left crop


def test_sr_input_is_bicubic_down_then_up(hr):
    sample = sr_input(hr, 3)
    assert np.array_equal(sample.lr, imresize(modcrop(hr, 3), 1 / 3))
    assert np.array_equal(sample.net_input, imresize(sample.lr, 3.0))
    assert not np.array_equal(sample.net_input, sample.hr)


def test_fractional_and_grey(hr):
    sample = sr_input(hr, 1.5)  # 3/2: crop to multiples of 3, LR is 2/3 of that
    assert sample.hr.shape == (36, 48, 3) and sample.lr.shape == (24, 32, 3)
    grey = sr_input(hr[..., 0], 2)
    assert grey.net_input.shape == (36, 50)
    assert scale_ratio(2.5).numerator == 5 and scale_ratio(2.5).denominator == 2


@pytest.mark.parametrize("scale", [0.5, 0, -2, float("nan"), 1.2345678, "2", True])
def test_bad_scales(hr, scale):
    with pytest.raises(ValueError, match="scale"):
        sr_input(hr, scale)


def test_bad_images(hr):
    with pytest.raises(ValueError, match="uint8"):
        sr_input(hr.astype(np.float32) / 255, 2)
    with pytest.raises(ValueError, match="smaller"):
        sr_input(hr[:3, :3], 4)


def test_random_sr_input_mixes_scales(hr):
    rng = np.random.default_rng(1)
    draws = [random_sr_input(hr, (2, 3, 4), rng) for _ in range(30)]
    assert {s for s, _ in draws} == {2, 3, 4}
    for s, sample in draws[:3]:
        assert np.array_equal(sample.net_input, sr_input(hr, s).net_input)
    again = [s for s, _ in (random_sr_input(hr, (2, 3, 4), np.random.default_rng(1)) for _ in range(1))]
    assert again[0] == draws[0][0]  # reproducible from the seed
    with pytest.raises(ValueError, match="scales"):
        random_sr_input(hr, (), rng)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_jax_degradation_matches_numpy(hr, scale):
    batch = np.stack([hr, hr[::-1]]).astype(np.float32) / 255
    h, lr, up = jax.jit(sr_input_jax, static_argnames=("scale", "quantize"))(batch, scale=scale)
    ref = sr_input(hr[::-1], scale)
    assert np.array_equal(np.round(np.asarray(up[1]) * 255).astype(np.uint8), ref.net_input)
    assert np.array_equal(np.round(np.asarray(lr[1]) * 255).astype(np.uint8), ref.lr)
    assert h.shape[1:3] == ref.hr.shape[:2]


def test_jax_degradation_float_is_differentiable(hr):
    x = jnp.asarray(hr[None].astype(np.float32) / 255)
    _, _, up = sr_input_jax(x, 2, quantize=False)
    diff = np.abs(np.asarray(up[0]) * 255 - sr_input(hr, 2).net_input)
    assert diff.mean() < 0.5 and diff.max() < 2.5  # only the per-pass rounding differs
    grad = jax.grad(lambda z: jnp.sum(sr_input_jax(z, 2, quantize=False)[2] ** 2))(x)
    assert np.isfinite(np.asarray(grad)).all() and float(jnp.abs(grad).sum()) > 0
    with pytest.raises(ValueError, match="shape"):
        sr_input_jax(x[0, ..., 0], 2)


def test_read_pair(tmp_path, hr):
    a = write_image(tmp_path / "rain.png", hr)
    b = write_image(tmp_path / "clean.png", hr[::-1])
    impaired, clean = read_pair(a, b, dtype="uint8")
    assert np.array_equal(impaired, hr) and np.array_equal(clean, hr[::-1])
    c = write_image(tmp_path / "small.png", hr[:20])
    with pytest.raises(ValueError) as info:
        read_pair(a, c)
    assert "rain.png" in str(info.value) and "small.png" in str(info.value)
