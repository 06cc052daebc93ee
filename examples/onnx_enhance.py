"""Enhance a photo with an exported bppjax ONNX model; the network runs in ONNX Runtime only.

    python -m bppjax.export bpp-sr-x2 --format onnx --out bpp-sr-x2.onnx
    python examples/onnx_enhance.py bpp-sr-x2.onnx photo.jpg --out photo_x2.png

Everything the script needs to know about the model comes from the file's
metadata (written by ``bppjax.export``): the scale, what the network takes
(``input_space``), the size multiple and the tiling the library uses for the
model (``tile``, ``stride``, ``margin``). The tiles are laid and blended by the
library's own plan (``bppjax.tiling.tiled_apply``, NumPy), the bicubic
pre-upscale is the library's MATLAB-compatible ``imresize`` (NumPy); JAX runs
no part of the network.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

from bppjax.image.resize import imresize
from bppjax.tiling import TileSpec, tiled_apply


def ort_apply(session: ort.InferenceSession):
    """NHWC float32 batch -> NHWC output through the session (the file is NCHW)."""
    name = session.get_inputs()[0].name

    def apply(tiles: np.ndarray) -> np.ndarray:
        y = session.run(None, {name: np.ascontiguousarray(tiles.transpose(0, 3, 1, 2), np.float32)})[0]
        return y.transpose(0, 2, 3, 1)

    return apply


def enhance(session: ort.InferenceSession, image: np.ndarray, scale: float | None = None) -> np.ndarray:
    """One (H, W, 3) float image in [0, 1] through the ONNX model, by the library's tiles."""
    meta = session.get_modelmeta().custom_metadata_map
    multiple, out_scale = int(meta["multiple"]), int(meta["output_scale"])
    if meta["shape"].startswith("fixed"):  # the file takes one tile size: half-overlapping tiles of it
        tile = int(meta["shape"].split()[1].split("x")[0])
        spec = TileSpec(tile, max(multiple, tile // 2 // multiple * multiple), 0)
    else:  # the tiling the library uses for this model (bppjax.tiling.resolve_spec, in input pixels)
        spec = TileSpec(int(meta["tile"]) or None, int(meta["stride"]), int(meta["margin"]))
    if meta["input_space"] == "lr":  # the network takes the LR image; its output is out_scale times larger
        x = image
    else:
        factor = float(scale or meta["scales"].split(",")[0])
        x = imresize(image, factor) if factor != 1 else image
    return tiled_apply(ort_apply(session), x, spec, multiple=multiple, scale=out_scale)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="an ONNX file written by python -m bppjax.export")
    p.add_argument("photo")
    p.add_argument("--out", required=True)
    p.add_argument("--scale", type=float, default=None, help="SR factor (default: the model's first)")
    args = p.parse_args(argv)
    session = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    image = np.asarray(Image.open(args.photo).convert("RGB"), np.float32) / 255.0
    out = enhance(session, image, args.scale)
    Image.fromarray(np.round(np.clip(out, 0, 1) * 255).astype(np.uint8)).save(args.out)
    meta = session.get_modelmeta().custom_metadata_map
    print(f"{args.photo} {image.shape[1]}x{image.shape[0]} -> {args.out} {out.shape[1]}x{out.shape[0]} ({meta.get('name')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
