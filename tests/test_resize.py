"""MATLAB-compatible bicubic imresize: NumPy against a literal reference, and JAX against NumPy."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.image import imresize, imresize_jax, output_shape_for, resize_weights
from bppjax.image.resize import cubic


def _reference_1d(x: np.ndarray, out_len: int, scale: float, peak: float | None) -> np.ndarray:
    """MATLAB's algorithm transcribed pixel by pixel (1-based), clamping taps at the edges."""
    in_len = x.shape[0]
    width = 4.0 / scale if scale < 1 else 4.0
    out = np.zeros((out_len,) + x.shape[1:])
    for i in range(1, out_len + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + k for k in range(math.ceil(width) + 2)]
        if scale < 1:
            w = [scale * float(cubic(np.array(scale * (u - j)))) for j in taps]
        else:
            w = [float(cubic(np.array(u - j))) for j in taps]
        total = sum(w)
        value = sum((wk / total) * x[min(max(j, 1), in_len) - 1] for wk, j in zip(w, taps))
        out[i - 1] = value if peak is None else np.clip(np.floor(value + 0.5), 0, peak)
    return out


def _reference(image: np.ndarray, scale: float) -> np.ndarray:
    peak = 255.0 if image.dtype == np.uint8 else None
    out_h, out_w = math.ceil(scale * image.shape[0]), math.ceil(scale * image.shape[1])
    x = _reference_1d(image.astype(np.float64), out_h, scale, peak)
    x = np.moveaxis(_reference_1d(np.moveaxis(x, 1, 0), out_w, scale, peak), 0, 1)
    return x.astype(image.dtype)


@pytest.fixture
def img8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (23, 17, 3), dtype=np.uint8)


def test_keys_kernel_properties():
    t = np.random.default_rng(1).uniform(0, 1, 100)
    assert cubic(np.array(0.0)) == 1.0
    assert cubic(np.array(1.0)) == 0.0 and cubic(np.array(2.0)) == 0.0 and cubic(np.array(2.5)) == 0.0
    assert np.allclose(cubic(t), cubic(-t))
    assert np.allclose(sum(cubic(t + k) for k in range(-2, 3)), 1.0)  # partition of unity
    assert np.allclose(sum((t + k) * cubic(t + k) for k in range(-2, 3)), 0.0)  # reproduces linear functions
    assert cubic(np.array(1.5)) < 0  # a = -0.5 lobe


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 2.0, 3.0, 4.0])
def test_uint8_matches_literal_reference(img8, scale):
    assert np.array_equal(imresize(img8, scale), _reference(img8, scale))


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.7, 1.5, 2.0, 3.0, 2.5])
def test_float_matches_literal_reference(img8, scale):
    x = img8.astype(np.float64) / 255
    assert np.allclose(imresize(x, scale), _reference(x, scale), atol=1e-9)


def test_weights_rows_sum_to_one_and_clamp(img8):
    for in_len, out_len, scale in [(17, 34, 2.0), (17, 6, 1 / 3), (17, 9, 0.5)]:
        idx, w = resize_weights(in_len, out_len, scale)
        assert np.allclose(w.sum(axis=1), 1.0, atol=1e-10)
        assert idx.min() == 0 and idx.max() == in_len - 1
        assert w.shape[1] <= math.ceil(4 / min(scale, 1)) + 2


def test_output_size_follows_matlab():
    assert output_shape_for((481, 321), 0.5)[0] == (241, 161)
    assert output_shape_for((480, 321), 1 / 3)[0] == (160, 107)
    assert output_shape_for((10, 20), output_shape=(5, None)) == ((5, 10), (0.5, 0.5))
    assert output_shape_for((10, 20), output_shape=(None, 30))[0] == (15, 30)
    assert output_shape_for((10, 20), (2.0, 0.5))[0] == (20, 10)


def test_constant_image_stays_constant():
    for scale in [0.3, 0.5, 1.7, 3.0]:
        assert np.all(imresize(np.full((13, 11, 3), 77, np.uint8), scale) == 77)
        assert np.allclose(imresize(np.full((13, 11), 0.25), scale), 0.25)


def test_height_first_with_equal_scales_and_smallest_scale_first(img8):
    h_then_w = imresize(imresize(img8, (0.5, 1.0)), (1.0, 0.5))
    assert np.array_equal(imresize(img8, 0.5), h_then_w)
    # Mixed scales: the shrinking axis goes first, whichever it is.
    assert np.array_equal(imresize(img8, (2.0, 0.5)), imresize(imresize(img8, (1.0, 0.5)), (2.0, 1.0)))
    assert np.array_equal(imresize(img8, (0.5, 2.0)), imresize(imresize(img8, (0.5, 1.0)), (1.0, 2.0)))


def test_uint8_rounds_and_clips_floats_overshoot():
    step = np.zeros((8, 8), np.uint8)
    step[:, 4:] = 255
    up8 = imresize(step, 3.0)
    upf = imresize(step / 255.0, 3.0)
    assert upf.max() > 1.0 and upf.min() < 0.0  # bicubic ringing
    assert up8.max() == 255 and up8.min() == 0
    assert np.array_equal(up8, np.clip(np.floor(upf * 255 + 0.5), 0, 255))  # single pass along width


def test_uint16_and_dtypes_preserved():
    x16 = np.random.default_rng(3).integers(0, 65536, (12, 10), dtype=np.uint16)
    out = imresize(x16, 0.5)
    assert out.dtype == np.uint16 and out.shape == (6, 5)
    assert imresize(x16.astype(np.float32) / 65535, 2.0).dtype == np.float32


def test_symmetric_edges_only_change_the_border(img8):
    x = img8.astype(np.float64)
    a, b = imresize(x, 2.0), imresize(x, 2.0, edge="symmetric")
    assert not np.allclose(a, b)
    assert np.allclose(a[4:-4, 4:-4], b[4:-4, 4:-4])


def test_batched_input_equals_per_image(img8):
    batch = np.stack([img8, img8[::-1]])
    out = imresize(batch, 1 / 3)
    assert np.array_equal(out[1], imresize(img8[::-1], 1 / 3))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, "exactly one"),
        ({"scale": 2.0, "output_shape": (4, 4)}, "exactly one"),
        ({"scale": 0}, "scale"),
        ({"scale": -2.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": "2"}, "scale"),
        ({"scale": (1.0, 2.0, 3.0)}, "scale"),
        ({"output_shape": (0, 4)}, "output_shape"),
        ({"output_shape": (None, None)}, "output_shape"),
        ({"output_shape": (2.5, 4)}, "output_shape"),
        ({"scale": 2.0, "edge": "wrap"}, "edge"),
    ],
)
def test_bad_arguments_raise_clear_errors(img8, kwargs, match):
    with pytest.raises(ValueError, match=match):
        imresize(img8, **kwargs)
    with pytest.raises(ValueError, match=match):
        imresize_jax(img8, **kwargs)


def test_bad_images_raise_clear_errors():
    with pytest.raises(ValueError, match="dimension"):
        imresize(np.zeros(5, np.uint8), 2.0)
    with pytest.raises(ValueError, match="dtype"):
        imresize(np.zeros((4, 4), np.int32), 2.0)
    with pytest.raises(ValueError, match="empty"):
        imresize(np.zeros((0, 4), np.uint8), 2.0)
    with pytest.raises(ValueError, match="dtype"):
        imresize_jax(np.zeros((4, 4), np.uint16), 2.0)


# --------------------------------------------------------------------------- JAX


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 0.125, 2.0, 3.0, 4.0, 8.0, 1.5, 2.5, 0.7, (0.5, 2.0)])
def test_jax_uint8_is_bit_identical(scale):
    x = np.random.default_rng(4).integers(0, 256, (37, 29, 3), dtype=np.uint8)
    out = imresize_jax(x, scale)
    assert out.dtype == jnp.uint8
    assert np.array_equal(np.asarray(out), imresize(x, scale))


def test_jax_uint8_exact_on_structured_data_with_ties():
    # x1.5 weights are multiples of 1/432: exact .5 ties occur on real images.
    y, x = np.mgrid[0:40, 0:40]
    img = ((y * 7 + x * 13) % 256).astype(np.uint8)
    first_pass = imresize(img.astype(np.float64), output_shape=(60, 40))
    assert np.any(first_pass - np.floor(first_pass) == 0.5)  # the data does hit exact ties
    for shape in [(60, 60), (20, 20), (41, 17)]:
        assert np.array_equal(np.asarray(imresize_jax(img, output_shape=shape)), imresize(img, output_shape=shape))


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 2.0, 3.0, 1.5, 0.7])
def test_jax_float_agrees_to_1e5(scale):
    x = np.random.default_rng(5).random((31, 26, 3)).astype(np.float32)
    out = np.asarray(imresize_jax(x, scale))
    assert out.dtype == np.float32
    assert np.abs(out - imresize(x, scale)).max() < 1e-5


def test_jax_jit_batch_and_grad():
    rng = np.random.default_rng(6)
    x = rng.random((2, 12, 10, 3)).astype(np.float32)
    fn = jax.jit(imresize_jax, static_argnames=("scale", "output_shape", "antialias", "edge"))
    out = fn(x, scale=0.5)
    assert out.shape == (2, 6, 5, 3)
    assert np.abs(np.asarray(out[1]) - imresize(x[1], 0.5)).max() < 1e-5
    # Linear in x: the gradient of <resize(x), y> is the adjoint applied to y.
    y = rng.random((2, 24, 20, 3)).astype(np.float32)
    v = rng.random(x.shape).astype(np.float32)
    f = lambda z: jnp.sum(imresize_jax(z, 2.0) * y)  # noqa: E731
    g = jax.grad(f)(jnp.asarray(x))
    assert np.isfinite(np.asarray(g)).all()
    directional = float(jnp.sum(imresize_jax(jnp.asarray(v), 2.0) * y))
    assert np.isclose(float(jnp.sum(g * v)), directional, rtol=1e-4)


def test_jax_uint8_under_jit():
    x = np.random.default_rng(7).integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    fn = jax.jit(lambda z: imresize_jax(imresize_jax(z, 1 / 3), 3.0))
    expected = np.stack([imresize(imresize(i, 1 / 3), 3.0) for i in x])
    assert np.array_equal(np.asarray(fn(x)), expected)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_bit_exact_against_matlab_made_lr_images(shared_data, dataset, scale):
    """Every MATLAB ``imresize(HR, 1/s, 'bicubic')`` file in MATLAB_LR is reproduced exactly, NumPy and JAX."""
    from bppjax.image.io import read_image
    from bppjax.image.resize import imresize_jax

    folder = shared_data / "MATLAB_LR" / dataset / f"x{scale}"
    files = sorted(folder.glob("*.png"))
    assert files, f"no MATLAB-made LR images in {folder}"
    for lr_path in files:
        hr = read_image(shared_data / dataset / lr_path.name, dtype="uint8", channels=None)
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]
        matlab = read_image(lr_path, dtype="uint8", channels=None)
        if matlab.shape[-1] != hr.shape[-1]:  # a grey file stored as RGB (or the reverse)
            matlab, hr = read_image(lr_path, dtype="uint8"), np.repeat(hr, 3 // hr.shape[-1], axis=-1)
        ours = imresize(hr, 1 / scale)
        np.testing.assert_array_equal(ours, matlab, err_msg=f"{lr_path}")
        np.testing.assert_array_equal(np.asarray(imresize_jax(hr, 1 / scale)), matlab, err_msg=f"JAX {lr_path}")
