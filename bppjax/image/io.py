"""Read and write images with one array convention and clear errors.

Array convention (used everywhere in bppjax):

* Always 3-D, height x width x channels (HWC). Greyscale images have 1
  channel, or 3 identical ones when ``channels=3`` (the default, which is what
  the SR benchmarks expect: grey images are replicated to RGB).
* ``dtype="float32"`` (default): values in [0, 1]; 8-bit data divided by 255,
  16-bit data by 65535. This is what the network consumes.
* ``dtype="uint8"``: exact 8-bit values; 16-bit data are reduced with
  ``round(v / 257)`` (MATLAB's ``im2uint8``). Metrics and the MATLAB-exact
  resize work on this.
* ``dtype="native"``: the stored samples, ``uint8`` or ``uint16`` (or
  ``float32`` for floating-point TIFFs), for lossless round trips.

``read_image`` drops an alpha channel with a warning; ``read_photo`` keeps it
apart, with the ICC profile and EXIF data, for tools that write the image back
(``python -m bppjax.enhance``). Both turn the image upright by its EXIF
orientation tag, as viewers display it, and read the first frame of animated
GIF/WebP files. Palette images are expanded to their colours. Pillow does the
decoding; 16-bit colour PNGs (which Pillow would silently reduce to 8 bits),
16-bit colour TIFFs and float TIFFs are decoded at full precision. 16-bit PNGs
are written by pypng, 16-bit and float TIFFs by tifffile. Files that
declare more pixels than Pillow's decompression-bomb limit
(``PIL.Image.MAX_IMAGE_PIXELS``) are refused before any pixel is decoded.
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Literal

import numpy as np
import png
from PIL import Image, UnidentifiedImageError

__all__ = ["IMAGE_EXTENSIONS", "NoImagesError", "Photo", "image_files", "list_image_files", "quantise", "read_image", "read_photo", "write_image", "to_float32", "to_uint8", "bit_depth"]

#: File name suffixes treated as images (lower case).
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif")
#: Suffixes ``write_image`` writes (GIF's 256-colour palette would ruin an enhanced photo).
WRITE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_EXIF_ORIENTATION = 0x0112


@dataclasses.dataclass(frozen=True)
class Photo:
    """An image file as decoded, upright, with what a writer should carry over.

    Attributes:
      samples: (H, W, 1) or (H, W, 3) native samples (uint8, uint16 or float32), without alpha.
      alpha: (H, W, 1) alpha samples of the same dtype, or None.
      icc_profile: the embedded ICC colour profile, or None.
      exif: EXIF data with the orientation tag removed (the samples are upright), or None.
      notes: things the reader did that a user should hear of (first frame of an animation, ...).
    """

    samples: np.ndarray
    alpha: np.ndarray | None = None
    icc_profile: bytes | None = None
    exif: bytes | None = None
    notes: tuple[str, ...] = ()

Dtype = Literal["float32", "uint8", "native"]

class _UnsupportedImage(ValueError):
    """A decodable file whose kind bppjax does not handle (not a corrupt one)."""


# Errors Pillow's decoders raise on damaged data; all mean "corrupt file".
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error, IndexError)


def read_image(path: str | os.PathLike, *, dtype: Dtype = "float32", channels: int | None = 3) -> np.ndarray:
    """Reads an image file into an HWC array.

    Args:
      path: PNG, JPEG, BMP, TIFF (or anything else Pillow decodes), 8 or 16 bit,
        greyscale, RGB, RGBA or palette.
      dtype: ``"float32"`` (in [0, 1]), ``"uint8"`` or ``"native"`` (see module
        docstring).
      channels: 3 to always return RGB (grey replicated), or None to keep 1
        channel for greyscale files.

    Returns:
      Array of shape (H, W, 3), or (H, W, 1) for grey files with ``channels=None``.

    Raises:
      FileNotFoundError: the file does not exist.
      ValueError: the file is empty, truncated, not an image, or an argument is
        invalid. The message names the file.
    """
    if dtype not in ("float32", "uint8", "native"):
        raise ValueError(f"dtype must be 'float32', 'uint8' or 'native', got {dtype!r}")
    if channels not in (3, None):
        raise ValueError(f"channels must be 3 or None, got {channels!r}")
    photo = read_photo(path)
    samples = photo.samples
    if photo.alpha is not None:
        warnings.warn(f"{path}: alpha channel dropped", UserWarning, stacklevel=2)
    if channels == 3 and samples.shape[-1] == 1:
        samples = np.repeat(samples, 3, axis=-1)
    samples = np.ascontiguousarray(samples)
    if dtype == "native":
        return samples
    if dtype == "uint8":
        return to_uint8(samples)
    return to_float32(samples)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """Image files (by suffix, ``IMAGE_EXTENSIONS``) directly inside ``folder``, sorted by name; hidden files skipped.

    Returns [] for an empty folder; callers say what an empty or missing folder means for them.
    """
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def list_image_files(path: str | os.PathLike, what: str, *, allow_file: bool = False) -> list[Path]:
    """``image_files(path)``, or ``[path]`` for a file when ``allow_file``; errors name ``what`` (e.g. ``--data``).

    Raises FileNotFoundError for a missing path or a file where a folder is
    needed, and ``NoImagesError`` (both a FileNotFoundError and a ValueError)
    for a folder without images.
    """
    path = Path(path).expanduser()
    if allow_file and path.is_file():
        return [path]
    if not path.is_dir():
        kind = "is a file, not a folder" if path.is_file() else "does not exist"
        raise FileNotFoundError(f"{what}: folder {path} {kind}")
    files = image_files(path)
    if not files:
        raise NoImagesError(f"{what}: no images ({', '.join(IMAGE_EXTENSIONS)}) in {path}")
    return files


class NoImagesError(FileNotFoundError, ValueError):
    """A folder that holds no image files."""


def read_photo(path: str | os.PathLike) -> Photo:
    """Reads an image file with its alpha channel, ICC profile and EXIF data (see ``Photo``).

    Raises the same errors as ``read_image``; a file declaring more pixels
    than ``PIL.Image.MAX_IMAGE_PIXELS`` raises ValueError before decoding.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"image file not found: {path}")
    if path.is_dir():
        raise IsADirectoryError(f"expected an image file, got a directory: {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"empty file (0 bytes), not an image: {path}")
    samples, meta = _decode(path)  # (H, W, C) uint8 / uint16 / float32, C in 1..4
    samples = np.ascontiguousarray(_upright(samples, meta.pop("orientation", 1)))
    alpha = None
    if samples.shape[-1] in (2, 4):
        samples, alpha = np.ascontiguousarray(samples[..., :-1]), np.ascontiguousarray(samples[..., -1:])
    return Photo(samples, alpha, **meta)


def _upright(a: np.ndarray, orientation: int) -> np.ndarray:
    """Applies an EXIF orientation (1-8) to HWC samples, as viewers display the image."""
    flip_lr, rot_ccw = {1: (False, 0), 2: (True, 0), 3: (False, 2), 4: (True, 2),
                        5: (True, 1), 6: (False, 3), 7: (True, 3), 8: (False, 1)}.get(int(orientation), (False, 0))
    a = a[:, ::-1] if flip_lr else a
    return np.rot90(a, rot_ccw, axes=(0, 1)) if rot_ccw else a


def to_float32(image: np.ndarray) -> np.ndarray:
    """Converts uint8/uint16/float samples to float32 in [0, 1] (floats pass through)."""
    if image.dtype == np.uint8:
        return image.astype(np.float32) / np.float32(255)
    if image.dtype == np.uint16:
        return (image.astype(np.float64) / 65535).astype(np.float32)
    if np.issubdtype(image.dtype, np.floating):
        return image.astype(np.float32, copy=False)
    raise ValueError(f"unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Quantises to uint8: floats in [0, 1] are rounded half up and clipped.

    This is how a network's float output becomes an 8-bit image before it is
    scored or saved, as the published pipelines do. uint16 data use
    ``round(v / 257)``.
    """
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.uint16:
        return np.floor(image.astype(np.float64) / 257 + 0.5).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        return quantise(image, 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {image.dtype}; expected uint8, uint16 or float")


def bit_depth(image: np.ndarray) -> int:
    """Bits per sample of an integer image (8 or 16); raises for other dtypes."""
    if image.dtype == np.uint8:
        return 8
    if image.dtype == np.uint16:
        return 16
    raise ValueError(f"bit depth is defined for uint8/uint16 images, got {image.dtype}")


def write_image(
    path: str | os.PathLike,
    image: np.ndarray,
    *,
    bit_depth: int | None = None,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
) -> Path:
    """Writes an HWC (or HW) image; the format follows the file suffix.

    Args:
      path: ``.png``, ``.tif``/``.tiff`` (8 or 16 bit, or 32 for float32
        samples), ``.bmp``, ``.jpg``/``.jpeg``, ``.webp`` (8 bit). Missing
        parent folders are created.
      image: (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); uint8, uint16, or float
        in [0, 1] (rounded and clipped, except for 32-bit TIFFs).
      bit_depth: 8, 16, or 32 (float TIFF). Default: 8 for uint8 and float
        data, 16 for uint16, i.e. integer data keep their depth.
      quality: JPEG and WebP quality.
      icc_profile, exif: embedded as they are (``Photo.icc_profile`` / ``.exif``),
        where the format holds them (not BMP; EXIF not in TIFF).

    Returns:
      The path written.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in WRITE_EXTENSIONS:
        raise ValueError(f"cannot write {path}: unsupported suffix {suffix!r}; use one of {WRITE_EXTENSIONS}")
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4) or 0 in image.shape:
        raise ValueError(f"cannot write {path}: image shape {image.shape} is not (H, W) or (H, W, 1|3|4)")
    if bit_depth is None:
        bit_depth = 16 if image.dtype == np.uint16 else 8
    if bit_depth == 32:
        if suffix not in (".tif", ".tiff"):
            raise ValueError(f"cannot write {path}: 32-bit float samples need a .tif file")
        import tifffile  # noqa: PLC0415 - a scikit-image dependency

        path.parent.mkdir(parents=True, exist_ok=True)
        data = np.asarray(image, np.float32)
        extra = {"extrasamples": ["unassalpha"]} if data.shape[-1] == 4 else {}
        tifffile.imwrite(path, data[..., 0] if data.shape[-1] == 1 else data,
                         photometric="minisblack" if data.shape[-1] == 1 else "rgb", iccprofile=icc_profile, **extra)
        return path
    if bit_depth not in (8, 16):
        raise ValueError(f"cannot write {path}: bit_depth must be 8, 16 or 32 (float TIFF), got {bit_depth!r}")
    if bit_depth == 16 and suffix not in (".png", ".tif", ".tiff"):
        raise ValueError(f"cannot write {path}: {suffix} files hold 8-bit samples only; use .png or .tif for 16 bit")
    if image.shape[-1] == 4 and suffix in (".jpg", ".jpeg"):
        raise ValueError(f"cannot write {path}: JPEG has no alpha channel")
    samples = _to_depth(image, bit_depth, path)
    path.parent.mkdir(parents=True, exist_ok=True)

    if bit_depth == 16 and suffix == ".png":
        path.write_bytes(_encode_png16(samples, icc_profile, exif))
    elif bit_depth == 16:
        import tifffile  # a scikit-image dependency; Pillow cannot write 16-bit colour TIFFs

        photometric = "minisblack" if samples.shape[-1] == 1 else "rgb"
        data = samples[..., 0] if samples.shape[-1] == 1 else samples
        extra = {"extrasamples": ["unassalpha"]} if samples.shape[-1] == 4 else {}
        tifffile.imwrite(path, data, photometric=photometric, iccprofile=icc_profile, **extra)
    else:
        mode = {1: "L", 3: "RGB", 4: "RGBA"}[samples.shape[-1]]
        pil = Image.fromarray(samples[..., 0] if mode == "L" else samples, mode=mode)
        kwargs: dict = {"quality": quality} if suffix in (".jpg", ".jpeg", ".webp") else {}
        if suffix != ".bmp":
            kwargs.update({k: v for k, v in (("icc_profile", icc_profile), ("exif", exif)) if v})
            if suffix in (".tif", ".tiff"):
                kwargs.pop("exif", None)  # Pillow's TIFF writer takes EXIF as tags, not a blob
        pil.save(path, **kwargs)
    return path


# --------------------------------------------------------------------------- decoding


def _open(path: Path) -> Image.Image:
    """``Image.open`` that refuses decompression bombs with the declared size, before decoding."""
    limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except Image.DecompressionBombError as e:
        raise ValueError(f"{path}: refused before decoding: {e}") from None
    if limit and im.width * im.height > limit:
        size = f"{im.width}x{im.height} = {im.width * im.height / 1e6:,.0f} Mpx"
        im.close()
        raise ValueError(f"{path}: refused before decoding: it declares {size}, over the limit of {limit / 1e6:,.0f} Mpx "
                         "(PIL.Image.MAX_IMAGE_PIXELS; raise it only for files you trust)")
    return im


def _metadata(im: Image.Image, path: Path) -> dict:
    exif = im.getexif()
    orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    if _EXIF_ORIENTATION in exif:
        del exif[_EXIF_ORIENTATION]
    frames = int(getattr(im, "n_frames", 1) or 1)
    notes = (f"{path.name}: animated {im.format} with {frames} frames; only the first frame was used",) if frames > 1 else ()
    return dict(orientation=orientation, icc_profile=im.info.get("icc_profile") or None,
                exif=exif.tobytes() if len(exif) else None, notes=notes)


def _decode(path: Path) -> tuple[np.ndarray, dict]:
    """Decodes the first frame into (H, W, C) native samples, C in 1..4, and its metadata."""
    try:
        with _open(path) as im:
            rawmode = im.tile[0].args if im.tile else None  # before _metadata: reading PNG EXIF decodes the image
            meta = _metadata(im, path)
            if im.format == "PNG" and rawmode in ("RGB;16B", "RGBA;16B", "LA;16B"):
                return _decode_png16(path, im.mode, rawmode), meta
            if im.format == "TIFF" and im.mode in ("RGB", "RGBA", "LA") and _tiff_bits(im) > 8:
                return _decode_tiff(path), meta
            im.seek(0)
            im.load()
            return _pil_to_samples(im, path), meta
    except UnidentifiedImageError:
        if path.read_bytes()[:4] in (b"II*\x00", b"MM\x00*"):  # a TIFF Pillow cannot read, e.g. float RGB
            return _decode_tiff(path), {}
        raise ValueError(f"not a recognised image file (PNG, JPEG, BMP, TIFF, WebP, GIF, ...): {path}") from None
    except _DECODE_ERRORS as e:
        if isinstance(e, (_UnsupportedImage, FileNotFoundError, PermissionError)) or str(e).startswith(f"{path}: refused"):
            raise
        raise ValueError(f"truncated or corrupt image file: {path} ({type(e).__name__}: {e})") from e


def _pil_to_samples(im: Image.Image, path: Path) -> np.ndarray:
    """Maps every Pillow mode onto uint8/uint16/float32 samples."""
    mode = im.mode
    if mode == "P":
        mode_out = "RGBA" if "transparency" in im.info else "RGB"
        im, mode = im.convert(mode_out), mode_out
    elif mode == "PA":
        im, mode = im.convert("RGBA"), "RGBA"
    elif mode == "1":
        im, mode = im.convert("L"), "L"
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX", "RGBa", "La"):
        target = "RGBA" if mode == "RGBa" else ("LA" if mode == "La" else "RGB")
        im, mode = im.convert(target), target
    if mode in ("L", "LA", "RGB", "RGBA"):
        a = np.asarray(im, dtype=np.uint8)
    elif mode.startswith("I;16"):
        a = np.asarray(im).astype(np.uint16)  # also fixes big-endian storage
    elif mode == "I":
        a = np.asarray(im)
        if a.min() < 0 or a.max() > 65535:
            raise _UnsupportedImage(f"unsupported 32-bit integer image (values outside 0..65535): {path}")
        a = a.astype(np.uint16)
    elif mode == "F":
        a = np.asarray(im, dtype=np.float32)
    else:
        raise _UnsupportedImage(f"unsupported image mode {mode!r}: {path}")
    return a[..., None] if a.ndim == 2 else a


def _decode_png16(path: Path, mode: str, rawmode: str) -> np.ndarray:
    """Decodes a 16-bit colour PNG exactly.

    Pillow has no 16-bit colour mode: its unpacker keeps only the high byte.
    Both unpackers of the same row-filter width exist (";16B" keeps the high
    byte, ";16L" the byte after it, i.e. the low byte of big-endian data), so
    decoding twice gives both halves.
    """
    if rawmode == "LA;16B":  # no "LA;16L": read each (L, A) pair as one big-endian int32
        with Image.open(path) as im:
            im._mode = "I"
            im.tile = [im.tile[0]._replace(args="I;32B")]
            im.load()
            v = np.asarray(im).view(np.uint32)
        return np.stack([(v >> 16).astype(np.uint16), (v & 0xFFFF).astype(np.uint16)], axis=-1)
    halves = []
    for raw in (rawmode, rawmode[:-1] + "L"):
        with Image.open(path) as im:
            im.tile = [im.tile[0]._replace(args=raw)]
            im.load()
            halves.append(np.asarray(im, dtype=np.uint16))
    return (halves[0] << 8) | halves[1]


def _tiff_bits(im: Image.Image) -> int:
    bits = im.tag_v2.get(258, (8,))
    return int(max(bits) if isinstance(bits, tuple) else bits)


def _decode_tiff(path: Path) -> np.ndarray:
    """16-bit or float colour TIFF via tifffile (Pillow reduces the first to 8 bits and cannot read the second)."""
    import tifffile  # a scikit-image dependency

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        a = page.asarray()
        axes = page.axes
    if "S" in axes and axes.index("S") < axes.index("Y"):  # planar storage
        a = np.moveaxis(a, axes.index("S"), -1)
    if a.ndim == 2:
        a = a[..., None]
    if np.issubdtype(a.dtype, np.floating):
        return a.astype(np.float32)
    if a.dtype not in (np.uint8, np.uint16):
        raise _UnsupportedImage(f"unsupported TIFF sample type {a.dtype}: {path}")
    return a


# --------------------------------------------------------------------------- encoding


def quantise(image: np.ndarray, peak: int) -> np.ndarray:
    """Round half up and clip floats in [0, 1] to integers 0..peak (as float64): the one rounding rule of bppjax."""
    x = np.asarray(image, dtype=np.float64)
    if np.isnan(x).any():
        raise ValueError("image contains NaN values")
    return np.clip(np.floor(x * peak + 0.5), 0, peak)


def _to_depth(image: np.ndarray, depth: int, path: Path) -> np.ndarray:
    if image.dtype == np.uint8:
        return image if depth == 8 else image.astype(np.uint16) * np.uint16(257)
    if image.dtype == np.uint16:
        return image if depth == 16 else to_uint8(image)
    if np.issubdtype(image.dtype, np.floating):
        if np.isnan(image).any():
            raise ValueError(f"cannot write {path}: image contains NaN values")
        peak = 255 if depth == 8 else 65535
        return quantise(image, peak).astype(np.uint8 if depth == 8 else np.uint16)
    raise ValueError(f"cannot write {path}: unsupported dtype {image.dtype} (use uint8, uint16 or float)")


def _encode_png16(samples: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG by pypng (Pillow cannot write 16-bit colour PNGs), with optional iCCP and eXIf chunks."""
    h, w, c = samples.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=c in (1, 2), alpha=c in (2, 4), bitdepth=16, compression=6).write(buf, samples.reshape(h, w * c))
    if not (icc_profile or exif):
        return buf.getvalue()
    extra = []
    if icc_profile:  # profile name, its terminating NUL, compression method 0 (zlib)
        extra.append((b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    if exif:
        extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    out = io.BytesIO()
    png.write_chunks(out, chunks[:1] + extra + chunks[1:])  # after IHDR, before IDAT
    return out.getvalue()