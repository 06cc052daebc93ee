"""Decode time of a 16-bit RGB PNG: bppjax's Pillow-based reader against pypng (why decoding stays on Pillow).

    python benchmarks/png16_decode.py [--side 1024] [--reps 5]

The test image (768 x SIDE, smooth content plus noise) is stored with row
filter "Up" on every row, as encoders that filter rows store photographs
(pypng itself writes unfiltered rows, which any reader undoes at no cost). Both readers must return the same samples; the
JSON gives the medians of ``reps`` alternating runs in this one process and
their ratio.
"""
import argparse
import io
import json
import statistics
import struct
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import png

from bppjax.image.io import read_image


def pypng_read(path: Path) -> np.ndarray:
    w, h, rows, info = png.Reader(filename=str(path)).asDirect()
    return np.vstack([np.asarray(r, np.uint16) for r in rows]).reshape(h, w, info["planes"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:768, 0 : a.side]
    smooth = np.stack([np.sin(x / 30 + c) * np.cos(y / 40) for c in range(3)], -1)
    img = np.clip(smooth * 30000 + 32768 + rng.normal(0, 200, smooth.shape), 0, 65535).astype(np.uint16)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "rgb16.png"
        rows = img.astype(">u2").reshape(768, -1).view(np.uint8)
        up = np.vstack([rows[:1], rows[1:] - rows[:-1]])
        idat = zlib.compress(np.hstack([np.full((768, 1), 2, np.uint8), up]).tobytes(), 6)
        buf = io.BytesIO()
        png.write_chunks(buf, [(b"IHDR", struct.pack(">IIBBBBB", a.side, 768, 16, 2, 0, 0, 0)), (b"IDAT", idat), (b"IEND", b"")])
        path.write_bytes(buf.getvalue())
        readers = {"pillow": lambda: read_image(path, dtype="native"), "pypng": lambda: pypng_read(path)}
        assert all(np.array_equal(f(), img) for f in readers.values())
        times: dict[str, list[float]] = {k: [] for k in readers}
        for _ in range(a.reps):
            for k, f in readers.items():
                t = time.perf_counter()
                f()
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(json.dumps({"shape": list(img.shape), "median_s": med, "pypng_over_pillow": med["pypng"] / med["pillow"]}, indent=1))


if __name__ == "__main__":
    main()
