"""Images in and out, MATLAB-exact bicubic resize, and degradations.

Arrays are HWC (batched: BHWC); float32 in [0, 1] for the network, uint8
where exactness needs it (see ``bppjax.image.io``).
"""

from bppjax.image.degrade import (
    SRSample,
    modcrop,
    random_sr_input,
    read_pair,
    scale_ratio,
    sr_input,
    sr_input_jax,
)
from bppjax.image.io import IMAGE_EXTENSIONS, Photo, bit_depth, image_files, read_image, read_photo, to_float32, to_uint8, write_image
from bppjax.image.resize import imresize, imresize_jax, output_shape_for, resize_weights

__all__ = [
    "IMAGE_EXTENSIONS",
    "Photo",
    "image_files",
    "read_photo",
    "SRSample",
    "bit_depth",
    "imresize",
    "imresize_jax",
    "modcrop",
    "output_shape_for",
    "random_sr_input",
    "read_image",
    "read_pair",
    "resize_weights",
    "scale_ratio",
    "sr_input",
    "sr_input_jax",
    "to_float32",
    "to_uint8",
    "write_image",
]
