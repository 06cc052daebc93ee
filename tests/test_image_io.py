"""Image I/O: formats, bit depths, channel layouts, and clear errors."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from PIL import Image

from bppjax.image import io as image_io
from bppjax.image import read_image, to_float32, to_uint8, write_image


@pytest.fixture
def rgb8() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)


@pytest.fixture
def rgb16() -> np.ndarray:
    return np.random.default_rng(1).integers(0, 65536, (9, 7, 3), dtype=np.uint16)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif", ".tiff"])
def test_lossless_8bit_roundtrip(tmp_path, rgb8, suffix):
    path = write_image(tmp_path / f"a{suffix}", rgb8)
    assert np.array_equal(read_image(path, dtype="uint8"), rgb8)
    assert read_image(path, dtype="native").dtype == np.uint8


def test_jpeg_roundtrip_is_close_on_a_smooth_image(tmp_path):
    y, x = np.mgrid[0:32, 0:32]
    smooth = np.stack([4 * x, 4 * y, 2 * (x + y)], axis=-1).astype(np.uint8)
    back = read_image(write_image(tmp_path / "a.jpg", smooth, quality=95), dtype="uint8")
    assert back.shape == smooth.shape
    assert np.abs(back.astype(int) - smooth).mean() < 2


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_16bit_roundtrip_is_exact(tmp_path, rgb16, suffix, channels):
    image = rgb16[..., :channels]
    path = write_image(tmp_path / f"a{suffix}", image)
    native = read_image(path, dtype="native", channels=None)
    assert native.dtype == np.uint16
    assert np.array_equal(native, image)


def test_16bit_png_is_not_reduced_to_8_bits(tmp_path, rgb16):
    # Pillow alone keeps only the high byte of 16-bit colour PNGs.
    path = write_image(tmp_path / "a.png", rgb16)
    assert Image.open(path).mode == "RGB"
    native = read_image(path, dtype="native")
    assert np.array_equal(native, rgb16)
    assert not np.array_equal(native >> 8 << 8, rgb16)


def test_16bit_rgba_and_grey_alpha_png(tmp_path, rgb16):
    rgba = np.concatenate([rgb16, rgb16[..., :1]], axis=-1)
    with pytest.warns(UserWarning, match="alpha"):
        out = read_image(write_image(tmp_path / "rgba.png", rgba), dtype="native")
    assert np.array_equal(out, rgb16)
    la = rgb16[..., :2]
    (tmp_path / "la.png").write_bytes(image_io._encode_png16(la))
    with pytest.warns(UserWarning, match="la.png"):
        grey = read_image(tmp_path / "la.png", dtype="native", channels=None)
    assert np.array_equal(grey[..., 0], la[..., 0])


def test_big_endian_and_planar_16bit_tiff(tmp_path, rgb16):
    tifffile = pytest.importorskip("tifffile")
    tifffile.imwrite(tmp_path / "be.tif", rgb16[..., 0].astype(">u2"), byteorder=">")
    assert np.array_equal(read_image(tmp_path / "be.tif", dtype="native", channels=None)[..., 0], rgb16[..., 0])
    tifffile.imwrite(tmp_path / "planar.tif", np.moveaxis(rgb16, -1, 0), photometric="rgb", planarconfig="separate")
    assert np.array_equal(read_image(tmp_path / "planar.tif", dtype="native"), rgb16)


def test_dtype_conventions(tmp_path, rgb8, rgb16):
    p8 = write_image(tmp_path / "a8.png", rgb8)
    p16 = write_image(tmp_path / "a16.png", rgb16)
    f8 = read_image(p8)
    assert f8.dtype == np.float32 and f8.shape == (9, 7, 3)
    assert np.allclose(f8, rgb8 / 255.0, atol=1e-7)
    f16 = read_image(p16)
    assert f16.dtype == np.float32 and 0.0 <= f16.min() and f16.max() <= 1.0
    assert np.allclose(f16, rgb16 / 65535.0, atol=1e-7)
    u8 = read_image(p16, dtype="uint8")
    assert np.array_equal(u8, np.floor(rgb16 / 257.0 + 0.5).astype(np.uint8))


def test_greyscale_channels(tmp_path, rgb8):
    path = write_image(tmp_path / "g.png", rgb8[..., 0])
    three = read_image(path, dtype="uint8")
    assert three.shape == (9, 7, 3)
    assert all(np.array_equal(three[..., c], rgb8[..., 0]) for c in range(3))
    one = read_image(path, dtype="uint8", channels=None)
    assert one.shape == (9, 7, 1)


def test_rgba_drops_alpha_with_a_warning_naming_the_file(tmp_path, rgb8):
    rgba = np.concatenate([rgb8, np.full(rgb8.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    path = write_image(tmp_path / "withalpha.png", rgba)
    with pytest.warns(UserWarning, match="withalpha.png.*alpha"):
        out = read_image(path, dtype="uint8")
    assert np.array_equal(out, rgb8)


def test_palette_images(tmp_path, rgb8):
    pal = Image.fromarray(rgb8).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no alpha, no warning
        out = read_image(tmp_path / "p.png", dtype="uint8")
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    pal.save(tmp_path / "pt.png", transparency=0)
    with pytest.warns(UserWarning, match="alpha"):
        assert read_image(tmp_path / "pt.png", dtype="uint8").shape == (9, 7, 3)


def test_bilevel_and_cmyk(tmp_path, rgb8):
    Image.fromarray(rgb8[..., 0] > 127).save(tmp_path / "b.png")
    bilevel = read_image(tmp_path / "b.png", dtype="uint8")
    assert set(np.unique(bilevel)) <= {0, 255}
    Image.fromarray(rgb8).convert("CMYK").save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").shape == (9, 7, 3)


def test_float_tiff(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    data = np.linspace(0, 1, 30, dtype=np.float32).reshape(5, 6)
    tifffile.imwrite(tmp_path / "f.tif", data)
    out = read_image(tmp_path / "f.tif")
    assert out.dtype == np.float32 and out.shape == (5, 6, 3)
    assert np.allclose(out[..., 1], data)


def test_write_quantises_floats_half_up_and_clips(tmp_path):
    x = np.array([[[-0.2, 0.5 / 255, 127.5 / 255], [1.0, 1.3, 0.0]]], dtype=np.float64)
    out = read_image(write_image(tmp_path / "q.png", x), dtype="native")
    assert out[0, 0].tolist() == [0, 1, 128]
    assert out[0, 1].tolist() == [255, 255, 0]


def test_write_bit_depth_conversion(tmp_path, rgb8):
    out = read_image(write_image(tmp_path / "up.png", rgb8, bit_depth=16), dtype="native")
    assert out.dtype == np.uint16 and np.array_equal(out, rgb8.astype(np.uint16) * 257)
    f = rgb8 / 255.0
    assert np.array_equal(read_image(write_image(tmp_path / "f16.png", f, bit_depth=16), dtype="uint8"), rgb8)
    nested = write_image(tmp_path / "new" / "dir" / "x.png", rgb8)
    assert nested.is_file()


def test_to_uint8_and_to_float32():
    assert np.array_equal(to_uint8(np.array([0.0, 0.5, 1.0, 2.0, -1.0])), [0, 128, 255, 255, 0])
    assert to_float32(np.array([255], np.uint8))[0] == 1.0
    with pytest.raises(ValueError, match="dtype"):
        to_uint8(np.array([1], np.int32))


# --------------------------------------------------------------------------- bad inputs


def _expect(exc, path, **kwargs):
    with pytest.raises(exc) as info:
        read_image(path, **kwargs)
    assert str(path) in str(info.value)
    return str(info.value)


def test_missing_file(tmp_path):
    _expect(FileNotFoundError, tmp_path / "nope.png")


def test_directory(tmp_path):
    _expect(IsADirectoryError, tmp_path)


def test_empty_file(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert "empty" in _expect(ValueError, tmp_path / "empty.png")


def test_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels")
    assert "not a recognised image" in _expect(ValueError, tmp_path / "notes.png")


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp", ".tif"])
def test_truncated_file(tmp_path, suffix):
    image = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = write_image(tmp_path / f"full{suffix}", image).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in _expect(ValueError, cut)


def test_truncated_16bit_png(tmp_path, rgb16):
    data = write_image(tmp_path / "full.png", np.tile(rgb16, (8, 8, 1))).read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    _expect(ValueError, tmp_path / "cut.png")


def test_bad_read_arguments(tmp_path, rgb8):
    path = write_image(tmp_path / "a.png", rgb8)
    with pytest.raises(ValueError, match="dtype"):
        read_image(path, dtype="int16")
    with pytest.raises(ValueError, match="channels"):
        read_image(path, channels=2)


@pytest.mark.parametrize(
    ("name", "image", "kwargs", "match"),
    [
        ("a.jpg", np.zeros((4, 4, 3), np.uint16), {}, "8-bit"),
        ("a.bmp", np.zeros((4, 4, 3), np.uint8), {"bit_depth": 16}, "8-bit"),
        ("a.png", np.zeros((4, 4, 2), np.uint8), {}, "shape"),
        ("a.png", np.zeros((4,), np.uint8), {}, "shape"),
        ("a.png", np.zeros((0, 4, 3), np.uint8), {}, "shape"),
        ("a.gif", np.zeros((4, 4, 3), np.uint8), {}, "suffix"),
        ("a.png", np.zeros((4, 4, 3), np.uint8), {"bit_depth": 12}, "bit_depth"),
        ("a.jpg", np.zeros((4, 4, 4), np.uint8), {}, "alpha"),
        ("a.png", np.full((4, 4, 3), np.nan), {}, "NaN"),
        ("a.png", np.zeros((4, 4, 3), np.int32), {}, "dtype"),
    ],
)
def test_bad_write_arguments(tmp_path, name, image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        write_image(tmp_path / name, image, **kwargs)
    assert not (tmp_path / name).exists()
