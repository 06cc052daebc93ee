"""Reflect padding to a size multiple: the JAX batch and the NumPy image pad alike."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from bppjax.models.padding import pad_batch_to_multiple, pad_image_to_multiple, reflect_padding


def test_batch_and_image_padding_agree():
    image = np.random.default_rng(0).random((13, 10, 3), dtype=np.float32)
    padded = pad_image_to_multiple(image, 8)
    assert padded.shape == (16, 16, 3)
    np.testing.assert_array_equal(padded[:13, :10], image)
    np.testing.assert_array_equal(padded[13, :10], image[11])  # reflection, not edge repetition
    np.testing.assert_array_equal(np.asarray(pad_batch_to_multiple(jnp.asarray(image)[None], 8))[0], padded)


def test_aligned_inputs_are_returned_as_they_are():
    image = np.zeros((8, 16, 3), np.float32)
    assert pad_image_to_multiple(image, 8) is image
    batch = jnp.zeros((2, 8, 8, 3))
    assert pad_batch_to_multiple(batch, 4) is batch


def test_too_small_to_reflect_names_the_array():
    assert reflect_padding(5, 9, 4) == (3, 3)
    with pytest.raises(ValueError, match="image of size 3x9 is too small to reflect-pad to a multiple of 8"):
        pad_image_to_multiple(np.zeros((3, 9, 3)), 8)
    with pytest.raises(ValueError, match="BPP input of size 2x2"):
        pad_batch_to_multiple(jnp.zeros((1, 2, 2, 3)), 4, "BPP input")
