"""``bppjax.evaluation`` and ``python -m bppjax.evaluate``: the bicubic rows (docs/METRICS.md), self-ensemble, saving, and CLI errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bppjax import evaluation as ev
from bppjax.evaluate import main
from bppjax.image import read_image, sr_input, write_image

# Y_M bicubic references (PSNR, SSIM), docs/METRICS.md.
REFERENCE = {
    "Set5": {2: (33.67, 0.9303), 3: (30.40, 0.8689), 4: (28.43, 0.8111)},
    "Set14": {2: (30.33, 0.8699), 3: (27.63, 0.7759), 4: (26.09, 0.7048), 8: (23.19, 0.5666)},
    "B100": {2: (29.56, 0.8434), 3: (27.21, 0.7391), 4: (25.96, 0.6681), 8: (23.67, 0.5443)},
}


def _check(results: dict, scales: list[int]) -> None:
    for name, per_scale in results.items():
        for s in scales:
            ref_psnr, ref_ssim = REFERENCE[name][s]
            got = per_scale[str(s)] if str(s) in per_scale else per_scale[s]
            assert abs(got["psnr"] - ref_psnr) <= 0.01, (name, s, got)
            assert abs(got["ssim"] - ref_ssim) <= 0.0005, (name, s, got)


@pytest.mark.slow
def test_bicubic_reproduces_the_reference_table(shared_data, tmp_path, capsys):
    folders = [shared_data / n for n in ("Set5", "Set14", "B100") if (shared_data / n).is_dir()]
    if not folders:
        pytest.skip("none of Set5, Set14, B100 in ../shared/data")
    out = tmp_path / "bicubic.json"
    argv = ["--method", "bicubic", "--data", *map(str, folders), "--scales", "2", "3", "4", "--json", str(out)]
    assert main([*argv, "--no-progress"]) == 0
    results = json.loads(out.read_text())
    assert set(results) == {f.name for f in folders}
    _check(results, [2, 3, 4])
    expected_n = {"Set5": 5, "Set14": 14, "B100": 100}
    assert all(results[n]["2"]["n"] == expected_n[n] for n in results)
    table = capsys.readouterr().out
    assert "| bicubic | x3 |" in table and all(f"{f.name} PSNR / SSIM" in table for f in folders)


@pytest.mark.slow
def test_bicubic_x8(shared_data):
    folders = [shared_data / n for n in ("Set14", "B100") if (shared_data / n).is_dir()]
    if not folders:
        pytest.skip("Set14 / B100 not in ../shared/data")
    _check(ev.evaluate(ev.bicubic, folders, [8], progress=False), [8])


# --------------------------------------------------------------------------- small synthetic data


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A 3-image dataset: two RGB (one odd-sized) and one greyscale."""
    folder = tmp_path / "Tiny"
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:50, 0:45]
    for i, shape in enumerate([(50, 45), (37, 41)]):
        base = 127 + 100 * np.sin(x[: shape[0], : shape[1]] / (4 + i))[..., None] * np.cos(y[: shape[0], : shape[1]] / 6)[..., None]
        img = np.clip(base + rng.normal(0, 5, shape + (3,)), 0, 255).astype(np.uint8)
        write_image(folder / f"img{i}.png", img)
    write_image(folder / "grey.png", np.clip(127 + 100 * np.sin(x / 3), 0, 255).astype(np.uint8))
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_evaluate_returns_means_over_images(tiny):
    results = ev.evaluate(ev.bicubic, [tiny], [2, 3], progress=False)
    assert set(results) == {"Tiny"} and set(results["Tiny"]) == {2, 3}
    from bppjax.metrics import psnr

    per_image = []
    for path in sorted(tiny.glob("*.png")):
        sample = sr_input(read_image(path, dtype="uint8"), 2)
        per_image.append(psnr(sample.hr, sample.net_input, shave=2))
    assert results["Tiny"][2]["n"] == 3
    assert results["Tiny"][2]["psnr"] == pytest.approx(np.mean(per_image), abs=1e-9)
    assert results["Tiny"][2]["psnr"] > results["Tiny"][3]["psnr"]


def test_a_better_method_scores_higher(tiny):
    base = ev.evaluate(ev.bicubic, [tiny], [2], progress=False)["Tiny"][2]
    blurred = ev.evaluate(lambda x: (x + np.roll(x, 1, axis=0)) / 2, [tiny], [2], progress=False)["Tiny"][2]
    assert blurred["psnr"] < base["psnr"] and blurred["ssim"] < base["ssim"]


def test_per_scale_methods_and_convention(tiny):
    calls = []

    def make(s):
        def fn(x):
            calls.append((s, x.shape))
            return x

        return fn

    ev.evaluate({2: make(2), 4: make(4)}, [tiny], [2, 4], convention="RGB", progress=False)
    assert {s for s, _ in calls} == {2, 4} and len(calls) == 6
    assert all(shape[-1] == 3 for _, shape in calls)
    with pytest.raises(ValueError, match="scale"):
        ev.evaluate({2: make(2)}, [tiny], [2, 3], progress=False)


@pytest.mark.parametrize(
    ("fn", "match"),
    [
        (lambda x: x[:-1], "shape"),
        (lambda x: np.full(x.shape, np.nan, np.float32), "NaN"),
        (lambda x: (x * 255).astype(np.uint8), "float32"),
    ],
)
def test_bad_method_outputs_name_the_image(tiny, fn, match):
    with pytest.raises(ValueError, match=match) as info:
        ev.evaluate(fn, [tiny], [2], progress=False)
    assert "Tiny" in str(info.value) and ".png" in str(info.value)


def test_bad_evaluate_arguments(tiny, tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        ev.evaluate(ev.bicubic, [tmp_path / "missing"], [2], progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        ev.evaluate(ev.bicubic, [tmp_path / "empty"], [2], progress=False)
    other = tmp_path / "elsewhere" / "Tiny"
    other.mkdir(parents=True)
    with pytest.raises(ValueError, match="share the name"):
        ev.evaluate(ev.bicubic, [tiny, other], [2], progress=False)
    with pytest.raises(ValueError, match="convention"):
        ev.evaluate(ev.bicubic, [tiny], [2], convention="YCbCr", progress=False)
    with pytest.raises(ValueError, match="scale"):
        ev.evaluate(ev.bicubic, [tiny], [0.5], progress=False)
    with pytest.raises(ValueError, match="callable"):
        ev.evaluate("bicubic", [tiny], [2], progress=False)


def test_save_images_keeps_bit_depth(tiny, tmp_path):
    img16 = (read_image(tiny / "img0.png", dtype="uint8").astype(np.uint16) * 257)
    write_image(tiny / "deep.png", img16)
    out = tmp_path / "out"
    ev.evaluate(ev.bicubic, [tiny], [3], save_dir=out, progress=False)
    saved = out / "Tiny" / "x3" / "img0.png"
    assert saved.is_file() and read_image(saved, dtype="native").dtype == np.uint8
    expected = sr_input(read_image(tiny / "img0.png", dtype="uint8"), 3).net_input
    assert np.array_equal(read_image(saved, dtype="uint8"), expected)
    deep = read_image(out / "Tiny" / "x3" / "deep.png", dtype="native")
    assert deep.dtype == np.uint16 and np.array_equal(deep, expected.astype(np.uint16) * 257)


def test_progress_bar_reports_rate(tiny, capsys):
    ev.evaluate(ev.bicubic, [tiny], [2], progress=True)
    err = capsys.readouterr().err
    assert "Tiny" in err and "img" in err and "3/3" in err


# --------------------------------------------------------------------------- self-ensemble


def test_self_ensemble_of_an_equivariant_method_is_unchanged():
    x = np.random.default_rng(1).random((6, 9, 3)).astype(np.float32)
    out = ev.self_ensemble(lambda z: z**2)(x)
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.allclose(out, x**2, atol=1e-6)


def test_self_ensemble_averages_the_eight_transforms():
    x = np.random.default_rng(2).random((6, 9, 3)).astype(np.float32) * 0.5
    seen = []

    def mark_top_left(z):
        seen.append(z.copy())
        y = z.copy()
        y[0, 0] = 1.0
        return y

    out = ev.self_ensemble(mark_top_left)(x)
    assert len(seen) == 8
    assert len({a.tobytes() for a in seen}) == 8  # eight distinct orientations
    assert {a.shape for a in seen} == {(6, 9, 3), (9, 6, 3)}
    corners = [(0, 0), (0, -1), (-1, 0), (-1, -1)]
    for c in corners:  # each corner is the top-left of two of the eight views
        assert np.allclose(out[c], 0.75 * x[c] + 0.25)
    interior = np.ones(x.shape[:2], bool)
    for c in corners:
        interior[c] = False
    assert np.allclose(out[interior], x[interior])


def test_self_ensemble_rejects_shape_changes():
    with pytest.raises(ValueError, match="shape"):
        ev.self_ensemble(lambda z: z[:, :-1])(np.zeros((4, 5, 3), np.float32))


def test_format_table_layout():
    results = {"A": {2: {"psnr": 30.123, "ssim": 0.91234, "n": 3}}, "B": {2: {"psnr": 28.0, "ssim": 0.8, "n": 1}}}
    lines = ev.format_table(results, "bicubic").splitlines()
    assert lines[0] == "| Method | Scale | A PSNR / SSIM | B PSNR / SSIM |"
    assert lines[2] == "| bicubic | x2 | 30.12 / 0.9123 | 28.00 / 0.8000 |"


# --------------------------------------------------------------------------- command line


def test_cli_json_save_and_ensemble(tiny, tmp_path, capsys):
    out, saved = tmp_path / "r.json", tmp_path / "imgs"
    code = main(["--data", str(tiny), "--scales", "2", "1.5", "--json", str(out),
                 "--save-images", str(saved), "--self-ensemble", "--no-progress"])
    assert code == 0
    results = json.loads(out.read_text())
    assert set(results["Tiny"]) == {"2", "1.5"} and results["Tiny"]["2"]["n"] == 3
    assert (saved / "Tiny" / "x1.5" / "grey.png").is_file()
    assert "| bicubic+ | x2 |" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--data", "/no/such/folder"], "/no/such/folder"),
        (["--data", "{tiny}", "--convention", "RGB", "--shave", "-1"], "shave"),
    ],
)
def test_cli_errors_exit_2_with_a_message(tiny, capsys, argv, match):
    argv = [a.format(tiny=tiny) for a in argv]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and match in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["--data", "{tiny}", "--scales", "0.5"],
        ["--data", "{tiny}", "--scales", "two"],
        ["--data", "{tiny}", "--method", "nearest"],
        ["--data", "{tiny}", "--method", "bicubic", "--checkpoint", "wd"],
        ["--data", "{tiny}", "--config.model.depth=2"],
        ["--data", "{tiny}", "--bogus"],
        [],
    ],
)
def test_cli_usage_errors(tiny, capsys, argv):
    with pytest.raises(SystemExit) as info:
        main([a.format(tiny=tiny) for a in argv])
    assert info.value.code == 2
    assert "usage" in capsys.readouterr().err


def test_cli_names_a_bad_scale(tiny, capsys):
    with pytest.raises(SystemExit):
        main(["--data", str(tiny), "--scales", "two"])
    assert "argument --scales: invalid scale 'two': could not convert string to float: 'two'" in capsys.readouterr().err


def test_method_for_builtin_methods_and_ensemble():
    x = np.random.default_rng(3).random((4, 6, 3)).astype(np.float32)
    fn, name = ev.method_for()
    assert fn is ev.bicubic and name == "bicubic"
    fn, name = ev.method_for("bicubic", ensemble=True)
    assert name == "bicubic+" and fn is not ev.bicubic and np.allclose(fn(x), x)
    with pytest.raises(ValueError, match="unknown method 'nearest'"):
        ev.method_for("nearest")


def test_checkpoint_receives_config_overrides(tiny, monkeypatch, capsys):
    checkpoint = pytest.importorskip("bppjax.workdir")
    received = {}

    def fake_load_model(workdir, overrides=(), which="best"):
        received.update(workdir=workdir, overrides=list(overrides))
        raise FileNotFoundError(f"no workdir {workdir}")

    monkeypatch.setattr(checkpoint, "load_model", fake_load_model)
    code = main(["--checkpoint", "wd", "--data", str(tiny), "--config.model.kind=ode", "--config.eval.batch", "2"])
    assert code == 2 and "no workdir wd" in capsys.readouterr().err
    assert received == {"workdir": "wd", "overrides": ["model.kind=ode", "eval.batch=2"]}


def test_python_dash_m_entry_point(tiny):
    proc = subprocess.run(
        [sys.executable, "-m", "bppjax.evaluate", "--data", str(tiny), "--scales", "4", "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "| bicubic | x4 |" in proc.stdout


# --------------------------------------------------------------------------- training validation: the same protocol


def _val_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "Val"
    rng = np.random.default_rng(3)
    for i, shape in enumerate([(48, 56), (44, 40)]):
        y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
        base = 127 + 90 * np.sin(x / (3 + i))[..., None] * np.cos(y / 5)[..., None]
        write_image(folder / f"v{i}.png", np.clip(base + rng.normal(0, 6, shape + (3,)), 0, 255).astype(np.uint8))
    return folder


def _random_params(model, side: int):
    import jax
    import jax.numpy as jnp

    return model.init(jax.random.key(0), jnp.zeros((1, side, side, 3), jnp.float32))["params"]


def test_training_validation_scores_what_evaluate_scores(tmp_path):
    """Validation runs the shipped tiled protocol (``auto``, training patch): the scores equal ``evaluate``'s."""
    from bppjax.data.pairs import ImagePair
    from bppjax.models import build_model, preset
    from bppjax.tiling import tiled_inference
    from bppjax.training.validation import Validator

    folder, patch = _val_folder(tmp_path), 16
    model = build_model(preset("tiny"))
    params = _random_params(model, patch)
    samples = [(p.stem, sr_input(read_image(p, dtype="uint8"), 2)) for p in sorted(folder.glob("*.png"))]
    pairs = [ImagePair(name, s.net_input, s.hr, 2, "Val") for name, s in samples]
    validator = Validator(pairs, model, patch=patch)
    assert validator.spec.tile == patch and validator.spec.fixed_shape  # one tile shape, one batch shape
    got = validator(params)
    ref = ev.evaluate(lambda x: tiled_inference(model, params, x, "auto", patch=patch), [folder], [2], progress=False)["Val"][2]
    assert got["Val_x2/psnr"] == pytest.approx(ref["psnr"], abs=1e-9)
    assert got["Val_x2/ssim"] == pytest.approx(ref["ssim"], abs=1e-9)
    bicubic = ev.evaluate(ev.bicubic, [folder], [2], progress=False)["Val"][2]
    assert got["input_psnr"] == pytest.approx(bicubic["psnr"], abs=1e-9)
    assert got["psnr_gain"] == pytest.approx(got["psnr"] - got["input_psnr"])
    # Whole-image inference is another protocol (IN statistics over the whole image): another score.
    whole = ev.evaluate(lambda x: tiled_inference(model, params, x, "whole"), [folder], [2], progress=False)["Val"][2]
    assert abs(whole["psnr"] - got["psnr"]) > 1e-6


def test_validation_feeds_an_lr_input_model_the_lr_image(tmp_path):
    from bppjax.data.pairs import ImagePair
    from bppjax.metrics import psnr
    from bppjax.models import build_model, output_scale, preset
    from bppjax.tiling import tiled_inference
    from bppjax.training.validation import Validator

    folder = _val_folder(tmp_path)
    model = build_model(preset("edsr_tiny"))
    assert output_scale(model) == 2
    params = _random_params(model, 16)
    samples = [sr_input(read_image(p, dtype="uint8"), 2) for p in sorted(folder.glob("*.png"))]
    pairs = [ImagePair(f"v{i}", s.lr, s.hr, 2, "Val") for i, s in enumerate(samples)]
    got = Validator(pairs, model, patch=32)(params)
    # config.data.patch=32 (target pixels) is 16 LR pixels, as for LoadedModel.patch.
    outs = [tiled_inference(model, params, s.lr.astype(np.float32) / 255, "auto", patch=16) for s in samples]
    assert all(o.shape == s.hr.shape for o, s in zip(outs, samples))
    assert got["psnr"] == pytest.approx(np.mean([psnr(s.hr, o, shave=2) for o, s in zip(outs, samples)]), abs=1e-9)
    # The baseline is bicubic from the LR image: the upscaled input of the same pairs.
    assert got["input_psnr"] == pytest.approx(np.mean([psnr(s.hr, s.net_input, shave=2) for s in samples]), abs=1e-9)
