"""PSNR/SSIM conventions, checked against scikit-image and closed forms; JAX versions against NumPy."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from bppjax.metrics import CONVENTIONS, psnr, psnr_jax, psnr_ssim, ssim, ssim_jax, ssim_loss, to_y_matlab, to_y_opencv


def _smooth(seed: int, shape=(40, 36)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    base = np.stack([np.sin(x / 5 + c) * np.cos(y / 7 - c) for c in range(3)], axis=-1)
    return np.clip(127 + 90 * base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def pair() -> tuple[np.ndarray, np.ndarray]:
    ref = _smooth(0)
    noisy = np.clip(ref.astype(int) + np.random.default_rng(1).integers(-12, 13, ref.shape), 0, 255).astype(np.uint8)
    return ref, noisy


def test_y_conversions():
    assert to_y_matlab(np.array([255, 255, 255])) == pytest.approx(235.0)
    assert to_y_matlab(np.array([0, 0, 0])) == pytest.approx(16.0)
    rgb = np.random.default_rng(2).integers(0, 256, (50, 50, 3), dtype=np.uint8)
    y = to_y_opencv(rgb)
    bt601 = rgb @ np.array([0.299, 0.587, 0.114])
    assert y.dtype == np.uint8 and np.abs(y - bt601).max() <= 0.51
    grey = np.repeat(rgb[..., :1], 3, axis=-1)
    assert np.array_equal(to_y_opencv(grey), rgb[..., 0])  # grey maps to itself


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_psnr_closed_form(convention):
    ref = np.full((20, 20, 3), 100, np.uint8)
    test = np.full((20, 20, 3), 110, np.uint8)
    diff = 10 * 219 / 255 if convention == "Y_M" else 10
    assert psnr(ref, test, convention=convention) == pytest.approx(10 * np.log10(255**2 / diff**2))
    assert psnr(ref, ref, convention=convention) == float("inf")
    assert ssim(ref, ref, convention=convention) == pytest.approx(1.0)


def test_y_m_matches_scikit_image(pair):
    ref, test = pair
    ya, yb = to_y_matlab(ref)[3:-3, 3:-3], to_y_matlab(test)[3:-3, 3:-3]
    expected_ssim = structural_similarity(
        ya, yb, data_range=255, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(ref, test, shave=3) == pytest.approx(expected_ssim, abs=1e-10)
    assert psnr(ref, test, shave=3) == pytest.approx(peak_signal_noise_ratio(ya, yb, data_range=255), abs=1e-10)


def test_y_p_matches_the_raindrop_code(pair):
    # DeRaindrop: OpenCV Y channel, then skimage compare_psnr / compare_ssim with defaults.
    ref, test = pair
    ya, yb = to_y_opencv(ref), to_y_opencv(test)
    assert ssim(ref, test, convention="Y_P") == pytest.approx(structural_similarity(ya, yb, data_range=255), abs=1e-10)
    assert psnr(ref, test, convention="Y_P") == pytest.approx(peak_signal_noise_ratio(ya, yb, data_range=255), abs=1e-10)


def test_rgb_matches_scikit_image(pair):
    ref, test = pair
    expected = structural_similarity(
        ref.astype(float), test.astype(float), data_range=255, channel_axis=-1,
        gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
    )
    assert ssim(ref, test, convention="RGB") == pytest.approx(expected, abs=1e-10)
    assert psnr(ref, test, convention="RGB") == pytest.approx(peak_signal_noise_ratio(ref, test, data_range=255), abs=1e-10)


def test_conventions_differ(pair):
    ref, test = pair
    values = {c: psnr_ssim(ref, test, convention=c) for c in CONVENTIONS}
    assert len({round(v[0], 6) for v in values.values()}) == 3
    assert len({round(v[1], 6) for v in values.values()}) == 3


def test_shave_ignores_the_border(pair):
    ref, _ = pair
    test = ref.copy()
    test[:2] = 0
    test[:, -2:] = 255
    assert psnr(ref, test, shave=1) < 40
    assert psnr(ref, test, shave=2) == float("inf")
    assert ssim(ref, test, shave=2) == pytest.approx(1.0)


def test_float_inputs_are_quantised_like_saved_images(pair):
    ref, test = pair
    as_float = test.astype(np.float32) / 255 + np.float32(0.4 / 255)  # within half a grey level
    assert psnr(ref, as_float) == psnr(ref, test)
    assert ssim(ref, as_float) == ssim(ref, test)


def test_grey_images_are_replicated(pair):
    ref, test = pair
    assert psnr(ref[..., 0], test[..., 0]) == psnr(np.repeat(ref[..., :1], 3, -1), np.repeat(test[..., :1], 3, -1))
    assert ssim(ref[..., :1], test[..., :1], convention="Y_P") == pytest.approx(
        structural_similarity(ref[..., 0], test[..., 0], data_range=255)
    )


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((np.zeros((20, 20, 3), np.uint8), np.zeros((20, 21, 3), np.uint8)), {}, "shape"),
        ((np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)), {"convention": "Y"}, "convention"),
        ((np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)), {"shave": -1}, "shave"),
        ((np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8)), {"shave": 5}, "too small"),
        ((np.zeros((20, 20, 3), np.uint8), np.full((20, 20, 3), 200.0)), {}, r"\[0, 1\]"),
        ((np.zeros((20, 20, 3), np.uint8), np.full((20, 20, 3), np.nan)), {}, "NaN"),
        ((np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint16)), {}, "dtype"),
        ((np.zeros((20, 20, 2), np.uint8), np.zeros((20, 20, 2), np.uint8)), {}, "shape"),
    ],
)
def test_bad_inputs(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ssim(*args, **kwargs)


# --------------------------------------------------------------------------- JAX


@pytest.mark.parametrize("convention", CONVENTIONS)
def test_jax_batch_agrees_with_numpy(pair, convention):
    ref, test = pair
    other = _smooth(3)
    refs = np.stack([ref, other]).astype(np.float32) / 255
    tests = np.stack([test, ref]).astype(np.float32) / 255
    p = np.asarray(psnr_jax(refs, tests, convention=convention, shave=2))
    s = np.asarray(ssim_jax(refs, tests, convention=convention, shave=2))
    assert p.shape == s.shape == (2,)
    for i, (a, b) in enumerate([(ref, test), (other, ref)]):
        assert p[i] == pytest.approx(psnr(a, b, convention=convention, shave=2), abs=1e-3)
        assert s[i] == pytest.approx(ssim(a, b, convention=convention, shave=2), abs=1e-5)


def test_jax_quantize_flag(pair):
    ref, test = pair
    r = ref[None].astype(np.float32) / 255
    t = test[None].astype(np.float32) / 255 + np.float32(0.3 / 255)
    quantised = float(psnr_jax(r, t)[0])
    assert quantised == pytest.approx(psnr(ref, test), abs=1e-3)
    assert float(psnr_jax(r, t, quantize=False)[0]) < quantised


def test_ssim_loss_is_differentiable_and_decreases(pair):
    ref, test = pair
    target = jnp.asarray(ref[None].astype(np.float32) / 255)
    pred = jnp.asarray(test[None].astype(np.float32) / 255)
    loss, grad = jax.value_and_grad(ssim_loss)(pred, target)
    expected = 1 - float(ssim_jax(target, pred, convention="RGB", quantize=False)[0])
    assert float(loss) == pytest.approx(expected, abs=1e-6)
    assert np.isfinite(np.asarray(grad)).all()
    step = 1e-3 * grad / jnp.abs(grad).max()
    assert float(ssim_loss(pred - step, target)) < float(loss)
    assert float(ssim_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    assert float(ssim_loss(pred, target, convention="Y_M")) != pytest.approx(float(loss))
