"""``imresize_bands`` equals ``imresize`` bit for bit, and a streamed network input equals the whole one."""

from __future__ import annotations

import numpy as np
import pytest

from bppjax.image.resize import imresize
from bppjax.image.resize_bands import imresize_bands


@pytest.mark.parametrize(
    "shape, dtype, scale",
    [((37, 50, 3), np.uint8, 2.0), ((20, 31), np.uint16, 3.0), ((33, 40, 1), np.uint8, 1.5), ((40, 30, 3), np.float32, 2.5),
     ((50, 60, 3), np.uint8, (2.0, 1.5)), ((50, 60, 3), np.uint8, (1.5, 2.0)), ((64, 64, 3), np.uint8, 0.5)],
)
def test_bands_are_the_rows_of_imresize(shape, dtype, scale):
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(dtype) if dtype == np.float32 else rng.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    whole = imresize(image, scale)
    size, bands = imresize_bands(image, scale, rows=7)
    bands = list(bands)
    assert [first for first, _ in bands] == list(range(0, whole.shape[0], 7))
    out = np.concatenate([band for _, band in bands])
    assert size == whole.shape[:2] and out.dtype == whole.dtype
    np.testing.assert_array_equal(out, whole)


def test_bands_reject_what_imresize_rejects():
    with pytest.raises(ValueError, match="dtype int32"):
        imresize_bands(np.zeros((4, 4), np.int32), 2)


def test_a_streamed_network_input_gives_the_same_output_and_reports_errors():
    import jax

    from bppjax.inference import StreamedImage, network_input, restore
    from bppjax.models.presets import build_model, preset
    from bppjax.tiling import resolve_spec

    model = build_model(preset("tiny"))
    params = model.init(jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
    image = np.random.default_rng(1).integers(0, 256, (30, 41), dtype=np.uint8)
    streamed = network_input(image, model, scale=2, stream=True)
    whole = network_input(image, model, scale=2)
    assert isinstance(streamed.pixels, StreamedImage) and isinstance(whole.pixels, np.ndarray)
    spec = resolve_spec(model, "fast", patch=32)
    np.testing.assert_array_equal(restore(streamed, model, params, spec), restore(whole, model, params, spec))
    np.testing.assert_array_equal(streamed.pixels.result(), whole.pixels)
    bad = np.full((12, 12, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN"):
        restore(network_input(bad, model, scale=2, stream=True), model, params, spec)
