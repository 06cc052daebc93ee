"""``bppjax.inference`` (arrays), ``bppjax.files`` (files) and ``python -m bppjax.enhance``, end to end on a tiny model."""

from __future__ import annotations

import math

import jax
import ml_collections
import numpy as np
import pytest

from bppjax.workdir import save_model
from bppjax.enhance import main
from bppjax.files import plan_outputs, prepare_files, quantise, summary, training_scale
from bppjax.inference import enhance
from bppjax.image.io import read_image, write_image
from bppjax.models.presets import build_model, preset


def random_params(model, seed: int = 0):
    shapes = jax.eval_shape(model.init, jax.random.key(0), np.zeros((1, 32, 32, 3), np.float32))["params"]
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: (0.3 * rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1]))).astype(np.float32), shapes)


@pytest.fixture(scope="module")
def tiny():
    model = build_model(preset("tiny"))
    return model, random_params(model)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, tiny):
    """A loadable x2 SR workdir holding the tiny model (training patch 32)."""
    path = tmp_path_factory.mktemp("ckpt")
    config = ml_collections.ConfigDict(dict(model=preset("tiny"), data=dict(scales=(2,), patch=32)))
    return save_model(path, config, tiny[1])


@pytest.fixture
def images(tmp_path):
    """A folder with an 8-bit RGB PNG, a 16-bit grey PNG, a JPEG and a corrupt file."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "in"
    write_image(folder / "rgb.png", rng.integers(0, 256, (20, 28, 3), dtype=np.uint8))
    write_image(folder / "grey16.png", rng.integers(0, 65536, (18, 22, 1), dtype=np.uint16))
    write_image(folder / "photo.jpg", rng.integers(0, 256, (16, 24, 3), dtype=np.uint8))
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return folder


def test_enhance_array_sr_keeps_channels_and_takes_fractional_scales(tiny):
    model, params = tiny
    grey = np.random.default_rng(1).integers(0, 256, (17, 23), dtype=np.uint8)
    out = enhance(grey, model, params, scale=1.5, tile=16, stride=8)
    assert out.shape == (math.ceil(1.5 * 17), math.ceil(1.5 * 23)) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    rgb = np.random.default_rng(2).random((20, 20, 3), dtype=np.float32)
    same = enhance(rgb, model, params, mode="whole")
    assert same.shape == rgb.shape and np.abs(same - rgb).max() > 1e-3  # the network did something


def test_enhance_self_ensemble_averages_eight_orientations(tiny):
    model, params = tiny
    x = np.random.default_rng(3).random((16, 24, 3), dtype=np.float32)
    plain = enhance(x, model, params, mode="whole")
    ens = enhance(x, model, params, mode="whole", self_ensemble=True)
    assert ens.shape == plain.shape and 1e-6 < np.abs(ens - plain).max() < 0.5


def test_enhance_rejects_bad_arrays(tiny):
    model, params = tiny
    with pytest.raises(ValueError, match="shape"):
        enhance(np.zeros((8, 8, 2)), model, params)
    with pytest.raises(ValueError, match="NaN"):
        enhance(np.full((16, 16, 3), np.nan, np.float32), model, params)


def test_cli_writes_each_image_in_its_format_and_skips_unreadable_ones(workdir, images, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main([str(images), "--checkpoint", str(workdir), "--out", str(out), "--quiet", "--tile", "16", "--stride", "8"])
    assert rc == 1  # broken.png failed, the rest were written
    err = capsys.readouterr()
    assert "skipped" in err.err and "broken.png" in err.err
    rgb = read_image(out / "rgb.png", dtype="native", channels=None)
    assert rgb.shape == (40, 56, 3) and rgb.dtype == np.uint8  # x2: the workdir's training scale
    grey = read_image(out / "grey16.png", dtype="native", channels=None)
    assert grey.shape == (36, 44, 1) and grey.dtype == np.uint16
    assert (out / "photo.jpg").is_file() and not (out / "broken.png").exists()
    assert "3 written, 1 failed" in err.out and "s/image" in err.out


def test_cli_scale_one_and_explicit_format(workdir, images, tmp_path):
    out = tmp_path / "o"
    rc = main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(out), "--quiet", "--scale", "1", "--ext", "tif", "--bit-depth", "16"])
    assert rc == 0
    y = read_image(out / "rgb.tif", dtype="native")
    assert y.shape == (20, 28, 3) and y.dtype == np.uint16


def test_cli_never_overwrites_an_input_unless_asked(workdir, images, capsys):
    before = (images / "rgb.png").read_bytes()
    rc = main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(images), "--quiet"])
    assert rc == 2 and "overwrite an input" in capsys.readouterr().err
    assert (images / "rgb.png").read_bytes() == before
    assert main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(images), "--quiet", "--overwrite"]) == 0
    assert read_image(images / "rgb.png").shape == (40, 56, 3)


def test_cli_reports_a_checkpoint_that_does_not_match_the_config(workdir, images, tmp_path, capsys):
    rc = main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(tmp_path / "x"), "--config.model.features=(8, 8, 16)"])
    assert rc == 2 and "do not match the model config" in capsys.readouterr().err


def test_cli_reports_a_tile_too_small_for_the_model(workdir, images, tmp_path, capsys):
    rc = main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(tmp_path / "x"), "--tile", "8"])
    assert rc == 2 and "tile=8" in capsys.readouterr().err
    rc = main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(tmp_path / "x"), "--tile", "32", "--stride", "40"])
    assert rc == 2 and "leaves gaps" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--quality", "0"], "error: --quality must be between 1 and 100; got 0"),
        (["--tile", "0"], "error: --tile must be >= 1; got 0"),
        (["--batch", "-2"], "error: --batch must be >= 1; got -2"),
        (["--streams", "0"], "error: --streams must be >= 1; got 0"),
        (["--scale", "nan"], "error: --scale must be a positive number; got nan"),
        (["--scale", "-1"], "error: --scale must be a positive number; got -1.0"),
    ],
)
def test_cli_bad_option_values_are_one_line_and_exit_2(images, tmp_path, capsys, argv, message):
    assert main([str(images / "rgb.png"), "--out", str(tmp_path / "x"), *argv]) == 2
    assert capsys.readouterr().err == message + "\n"


def test_cli_missing_inputs_are_listed_and_the_rest_written(workdir, images, tmp_path, capsys):
    rc = main([str(images / "rgb.png"), str(tmp_path / "nope.png"), "--checkpoint", str(workdir), "--out", str(tmp_path / "o"), "--quiet"])
    out = capsys.readouterr()
    assert rc == 1 and f"error: {tmp_path / 'nope.png'}: no such file or folder" in out.err
    assert "nope.png" in out.out and "FAILED: no such file or folder" in out.out and "1 written, 1 failed" in out.out
    assert (tmp_path / "o" / "rgb.png").is_file()


def test_prepare_files_checks_everything_before_reading_an_image(workdir, tmp_path):
    files = [tmp_path / "a.png"]  # never read by prepare_files
    run = prepare_files(files, tmp_path / "out", checkpoint=str(workdir), tile=16, stride=8, log=pytest.fail)
    assert [j.target for j in run.jobs] == [tmp_path / "out" / "a.png"]
    assert run.options["scale"] == 2.0 and run.options["patch"] == 32  # from the workdir's config
    assert run.spec.spread  # the workdir's model has instance norm: fast spreads its tiles evenly
    assert run.describe() == f"bpp from {workdir} (step 0); scale 2; fast tiling: tile 16, stride at most 8, spread evenly, margin {run.spec.margin}, {run.spec.streams} in flight"
    auto = prepare_files(files, tmp_path / "out", checkpoint=str(workdir), mode="auto", log=pytest.fail)
    assert not auto.spec.spread and auto.describe().endswith(f"auto tiling: tile 32, stride 16, margin 0, {auto.spec.streams} in flight")
    with pytest.raises(ValueError, match="tile=8"):
        prepare_files(files, tmp_path / "out", checkpoint=str(workdir), tile=8)
    logged = []
    with pytest.raises((ValueError, FileNotFoundError)):
        prepare_files(files, tmp_path / "out", scale=2, log=logged.append, overrides=["model.depth=0"])
    assert logged == ["no --checkpoint: using the shipped model bpp-sr-x2 for scale 2"]


def test_plan_outputs_detects_name_clashes(tmp_path):
    a, b = tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"
    with pytest.raises(ValueError, match="both be written"):
        plan_outputs([a, b], tmp_path / "out")
    jobs = plan_outputs([a], tmp_path / "out", ext="jpg", suffix="_x2")
    assert jobs[0].target == tmp_path / "out" / "x_x2.jpg"


def test_quantise_matches_write_image_rounding():
    x = np.array([[[0.0, 0.5, 1 / 255], [0.999, 1.2, -0.1]]], np.float32)
    np.testing.assert_array_equal(quantise(x, 8), [[[0, 128, 1], [255, 255, 0]]])
    assert quantise(x, 16).dtype == np.uint16


def test_training_scale_reads_the_config():
    assert training_scale(ml_collections.ConfigDict(dict(data=dict(scales=(3,))))) == 3.0
    assert training_scale(ml_collections.ConfigDict(dict(data=dict(scales=(2, 3))))) is None
    assert training_scale(ml_collections.ConfigDict(dict(model=dict()))) is None
    assert summary([]).endswith("0 written, 0 failed")


# --------------------------------------------------------------------------- damaged files and photographers' files


def _bomb_png(path, side=60_000):
    """A PNG whose header declares side x side pixels (Pillow's decompression-bomb check refuses it)."""
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_cli_a_decompression_bomb_is_reported_and_the_other_images_written(workdir, images, tmp_path, capsys):
    _bomb_png(images / "bomb.png")
    _bomb_png(images / "big.png", side=12_000)  # over the limit, under twice it (Pillow only warns there)
    out = tmp_path / "out"
    assert main([str(images), "--checkpoint", str(workdir), "--out", str(out), "--quiet"]) == 1
    res = capsys.readouterr()
    assert "Traceback" not in res.err
    assert "bomb.png" in res.out and "big.png" in res.out and "12000x12000" in res.out
    assert (out / "rgb.png").is_file() and (out / "photo.jpg").is_file()
    assert "3 written, 3 failed" in res.out


def test_an_output_over_the_memory_budget_is_refused_before_allocating(workdir, images, tmp_path, capsys, tiny):
    out = tmp_path / "out"
    assert main([str(images / "rgb.png"), "--checkpoint", str(workdir), "--out", str(out), "--quiet", "--scale", "1000"]) == 1
    res = capsys.readouterr()
    assert "28000x20000" in res.out and "GiB" in res.out and "--max-memory-gb" in res.out
    with pytest.raises(ValueError, match="memory budget of 0.1 GiB"):
        enhance(np.zeros((100, 100, 3), np.uint8), *tiny, scale=50, max_memory_gb=0.1)


def test_exif_orientation_is_honoured_and_metadata_kept(workdir, tmp_path):
    from PIL import Image, ImageCms, ImageOps

    rng = np.random.default_rng(1)
    stored = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    im = Image.fromarray(stored)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "bppjax test camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    im.save(tmp_path / "phone.jpg", exif=exif.tobytes(), icc_profile=icc, quality=95)
    shown = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "phone.jpg")))
    assert main([str(tmp_path / "phone.jpg"), "--checkpoint", str(workdir), "--out", str(tmp_path / "o"), "--quiet",
                 "--scale", "1"]) == 0
    with Image.open(tmp_path / "o" / "phone.jpg") as o:
        assert o.size == (shown.shape[1], shown.shape[0])  # upright: 16 wide, 24 high
        assert o.info.get("icc_profile") == icc
        assert o.getexif().get(0x010F) == "bppjax test camera" and 0x0112 not in o.getexif()


def test_alpha_is_resized_like_the_colour_and_written_back(workdir, tmp_path):
    from bppjax.image.resize import imresize

    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (20, 28, 4), dtype=np.uint8)
    write_image(tmp_path / "logo.png", rgba)
    assert main([str(tmp_path / "logo.png"), "--checkpoint", str(workdir), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    from bppjax.image.io import read_photo

    out = read_photo(tmp_path / "o" / "logo.png")
    assert out.samples.shape == (40, 56, 3) and out.alpha is not None
    np.testing.assert_array_equal(out.alpha, imresize(rgba[..., 3:], 2.0))


def test_webp_gif_and_float_tiff_inputs(workdir, tmp_path, capsys):
    from PIL import Image

    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)
    folder = tmp_path / "in"
    folder.mkdir()
    Image.fromarray(a).save(folder / "w.webp", lossless=True)
    Image.fromarray(a).save(folder / "anim.gif", save_all=True, append_images=[Image.fromarray(255 - a)])
    tifffile.imwrite(folder / "hdr.tif", rng.random((16, 20, 3)).astype(np.float32) * 1.5, photometric="rgb")
    assert main([str(folder), "--checkpoint", str(workdir), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    res = capsys.readouterr()
    assert "anim.gif: animated GIF with 2 frames; only the first frame was used" in res.err + res.out
    assert read_image(tmp_path / "o" / "w.webp", dtype="native").shape == (32, 40, 3)
    assert read_image(tmp_path / "o" / "anim.png", dtype="native").shape == (32, 40, 3)  # GIF is written as PNG
    hdr = read_image(tmp_path / "o" / "hdr.tif", dtype="native")
    assert hdr.dtype == np.float32 and hdr.shape == (32, 40, 3)


def test_the_function_and_the_command_module_do_not_clash():
    import importlib

    import bppjax
    import bppjax.inference

    importlib.import_module("bppjax.enhance")  # what python -m bppjax.enhance imports
    assert bppjax.enhance_image is bppjax.inference.enhance
    assert callable(bppjax.enhance.main) and not callable(bppjax.enhance)


def test_jpeg_quality_is_an_option(workdir, tmp_path):
    rng = np.random.default_rng(4)
    write_image(tmp_path / "p.jpg", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    sizes = {}
    for q in (30, 95):
        assert main([str(tmp_path / "p.jpg"), "--checkpoint", str(workdir), "--out", str(tmp_path / f"q{q}"), "--quiet",
                     "--quality", str(q)]) == 0
        sizes[q] = (tmp_path / f"q{q}" / "p.jpg").stat().st_size
    assert sizes[30] < sizes[95]
    assert main([str(tmp_path / "p.jpg"), "--checkpoint", str(workdir), "--out", str(tmp_path / "x"), "--quality", "0"]) == 2


def test_files_of_any_size_go_through_one_compiled_shape_in_order(workdir, images, tmp_path, monkeypatch):
    """The default (fast) tiling has one batch shape; outcomes come back in input order with the network's share."""
    from bppjax import tiling

    shapes, real = set(), tiling.make_apply_fn

    def spy(model, params):
        fn = real(model, params)
        return lambda x: (shapes.add(x.shape), fn(x))[1]

    monkeypatch.setattr(tiling, "make_apply_fn", spy)
    files = [images / "rgb.png", images / "broken.png", images / "grey16.png", images / "photo.jpg"]
    run = prepare_files(files, tmp_path / "o", checkpoint=str(workdir), log=lambda s: None)
    assert run.spec.fixed_shape
    outcomes = run.run(progress=False, log=lambda s: None)
    assert [o.source for o in outcomes] == files
    assert [o.error is None for o in outcomes] == [True, False, True, True]
    assert len(shapes) == 1  # images of three sizes, one compiled shape
    assert all(0 < o.network_seconds <= o.seconds for o in outcomes if o.error is None)
    assert read_image(tmp_path / "o" / "grey16.png", dtype="native", channels=None).shape == (36, 44, 1)


def test_unexpected_errors_are_described_by_the_caller_or_raised(workdir, images, tmp_path, monkeypatch):
    import bppjax.files

    def boom(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(bppjax.files, "write_image", boom)
    run = prepare_files([images / "rgb.png"], tmp_path / "o", checkpoint=str(workdir), log=lambda s: None)
    (outcome,) = run.run(progress=False, log=lambda s: None, describe_error=lambda e: f"described: {e}")
    assert outcome.error == "described: disk on fire"
    with pytest.raises(RuntimeError, match="disk on fire"):
        run.run(progress=False, log=lambda s: None, reraise=True)


def test_the_command_caches_compiled_programs_in_a_user_cache_dir(monkeypatch, tmp_path):
    from bppjax.enhance import compilation_cache_dir

    monkeypatch.delenv("BPPJAX_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compilation_cache_dir() == tmp_path / "xdg" / "bppjax" / "jax"
    monkeypatch.setenv("BPPJAX_CACHE_DIR", str(tmp_path / "mine"))
    assert compilation_cache_dir() == tmp_path / "mine"


def test_the_library_does_not_import_the_command_layer():
    import ast
    from pathlib import Path

    import bppjax.files
    import bppjax.inference

    for module in (bppjax.inference, bppjax.files):
        tree = ast.parse(Path(module.__file__).read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"bppjax.cli", "bppjax.enhance"}, module.__name__
