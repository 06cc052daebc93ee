"""ONNX and StableHLO export (bppjax.export): padding, platform-free tracing, parity for every zoo model, bad input."""

import json
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bppjax
from bppjax import export as ex
from bppjax import zoo
from bppjax.image.resize import imresize
from bppjax.models.padding import pad_batch_to_multiple

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
if EXAMPLES.is_dir() and str(EXAMPLES) not in sys.path:
    sys.path.append(str(EXAMPLES))

ZOO = zoo.names()


def _factor(name):
    """The factor a zoo model is exported at: 3 for one conditioned on the SR factor (bpp-sr-multi), else none."""
    from bppjax.models import conditioned_on_factor

    return 3.0 if conditioned_on_factor(bppjax.pretrained(name).model) else None


@pytest.mark.parametrize("size", [(8, 8), (9, 13), (15, 10), (4, 7)])
def test_pad_to_multiple_matches_the_model_padding(size):
    x = jnp.asarray(np.random.default_rng(0).random((2, *size, 3), dtype=np.float32))
    np.testing.assert_array_equal(ex.pad_to_multiple(x, 4), pad_batch_to_multiple(x, 4))


def test_platform_free_keeps_the_output_and_drops_platform_choices():
    m = bppjax.pretrained("bpp-sr-x2")
    fn = ex.network_function(m.model, m.params)
    spec = ex.input_spec(m.model)
    names = lambda f: {e.primitive.name for e in jax.make_jaxpr(f)(spec).jaxpr.eqns}  # noqa: E731
    plain = ex.platform_free(fn, spec)
    assert "platform_index" not in names(plain) and "cond" not in names(plain)
    x = np.random.default_rng(1).random((1, 21, 18, 3), dtype=np.float32)
    want = np.asarray(m.model.apply({"params": m.params}, x))
    got = jax.export.export(jax.jit(plain), platforms=["cpu"])(spec).call(x)  # the plain ops, run by XLA:CPU
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-5)


@pytest.mark.parametrize("name", ZOO)
def test_stablehlo_export_of_every_zoo_model_matches_jax(name, tmp_path):
    out = tmp_path / f"{name}.stablehlo"
    factor = _factor(name)
    result = ex.export_model(name, "stablehlo", out, scale=factor)  # checked against model.apply on odd and even sizes
    assert result.max_abs_diff <= ex.STABLEHLO_TOLERANCE
    assert result.metadata.get("factor") == (f"{factor:g}" if factor else None)  # a conditioned model says its factor
    assert any(s[1] % 2 and s[2] % 2 for s in result.checked_shapes) and len({s[1:3] for s in result.checked_shapes}) == 3
    card = json.loads(result.sidecar.read_text())
    assert card["weights_sha256"] == zoo.card(name)["sha256"] == zoo.sha256(zoo.weights_path(name))
    assert card["name"] == name and card["input_space"] == "upscaled" and card["layout"] == "NHWC"
    assert json.loads(card["scores"]) == zoo.card(name)["evaluation"]["results"]
    if name == "bpp-sr-x2":  # loads back with jax.export alone; a size the check did not use (odd, batch 3)
        exported = jax.export.deserialize(bytearray(out.read_bytes()))
        m = bppjax.pretrained(name)
        x = np.random.default_rng(2).random((3, 27, 31, 3), dtype=np.float32)
        got = np.asarray(exported.call(x))
        assert got.shape == x.shape
        assert np.max(np.abs(got - np.asarray(m.model.apply({"params": m.params}, x)))) <= ex.STABLEHLO_TOLERANCE


def _random_model(preset):
    cfg = bppjax.default_config()
    cfg.model = bppjax.preset(preset)
    model = bppjax.build_model(cfg.model)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 24, 24, 3)))["params"]
    rng = np.random.default_rng(0)  # fan-in scaled Gaussian weights: no compilation of the initialisers
    params = jax.tree.map(lambda a: (rng.standard_normal(a.shape) / np.sqrt(np.prod(a.shape[:-1]) or 1)).astype(np.float32), shapes)
    return bppjax.LoadedModel(model=model, params=params, config=cfg, step=0, which="random")


def test_other_architectures(tmp_path):
    res = ex.export_model(_random_model("resnet_tiny"), "stablehlo", tmp_path / "r.stablehlo")
    assert res.max_abs_diff <= ex.STABLEHLO_TOLERANCE and res.metadata["arch"] == "ResNet"
    edsr = _random_model("edsr_tiny")  # its bicubic skip needs concrete sizes: dynamic export asks for --tile
    with pytest.raises(ex.ExportError, match="--tile"):
        ex.export_model(edsr, "stablehlo", tmp_path / "e.stablehlo")
    res = ex.export_model(edsr, "stablehlo", tmp_path / "e.stablehlo", tile=12)
    assert res.max_abs_diff <= ex.STABLEHLO_TOLERANCE
    assert res.metadata["input_space"] == "lr" and res.metadata["output_scale"] == str(edsr.model.scale)
    exported = jax.export.deserialize(bytearray((tmp_path / "e.stablehlo").read_bytes()))
    assert exported.out_avals[0].shape[1:] == (12 * edsr.model.scale, 12 * edsr.model.scale, 3)


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO)
def test_onnx_export_of_every_zoo_model_matches_jax_in_onnxruntime(name, tmp_path):
    pytest.importorskip("jax2onnx", reason="jax2onnx is not installed (pip install 'bppjax[dev]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'bppjax[dev]')")
    out = tmp_path / f"{name}.onnx"
    factor = _factor(name)
    result = ex.export_model(name, "onnx", out, scale=factor)
    assert result.max_abs_diff <= ex.ONNX_TOLERANCE
    run = ex.onnx_runner(out)
    m = bppjax.pretrained(name).at_factor(factor or 2)
    x = np.random.default_rng(3).random((2, 27, 31, 3), dtype=np.float32)  # a size the export's check did not use
    got = run(x)
    assert got.shape == x.shape
    assert np.max(np.abs(got - np.asarray(m.model.apply({"params": m.params}, x)))) <= ex.ONNX_TOLERANCE
    meta = ex.read_onnx_metadata(out)
    assert meta["weights_sha256"] == zoo.card(name)["sha256"]
    assert meta["name"] == name and meta["layout"] == "NCHW" and meta["input_space"] == "upscaled"
    assert meta["training_data"] == "T91,BSDS200" and json.loads(meta["scores"]) == zoo.card(name)["evaluation"]["results"]
    assert int(meta["multiple"]) == m.model.multiple and int(meta["tile"]) > 0
    if name == "bpp-sr-x2":  # examples/onnx_enhance.py: ONNX Runtime by the library's tiles = LoadedModel.enhance
        example = pytest.importorskip("onnx_enhance", reason="examples/ is not next to tests/")
        import onnxruntime as ort

        image = np.random.default_rng(4).random((60, 70, 3), dtype=np.float32)
        got = example.enhance(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]), image)
        want = m.enhance(imresize(image, 2.0))
        assert got.shape == want.shape == (120, 140, 3) and np.max(np.abs(got - want)) <= ex.ONNX_TOLERANCE


def _cli(capsys, *argv):
    code = ex.main(list(argv))
    err = capsys.readouterr().err.strip().splitlines()
    return code, err


def test_cli_unknown_model_lists_the_valid_ones(capsys, tmp_path):
    code, err = _cli(capsys, "bpp-sr-x9", "--format", "onnx", "--out", str(tmp_path / "a.onnx"))
    assert code == 2 and len(err) == 1 and "bpp-sr-x9" in err[0] and all(n in err[0] for n in ZOO)
    code, err = _cli(capsys, str(tmp_path / "no_such_run"), "--format", "onnx", "--out", str(tmp_path / "a.onnx"))
    assert code == 2 and len(err) == 1 and "no_such_run" in err[0]


def test_cli_unsupported_format_and_architecture(capsys, tmp_path):
    code, err = _cli(capsys, "bpp-sr-x2", "--format", "tflite", "--out", str(tmp_path / "a.tflite"))
    assert code == 2 and len(err) == 1 and "'tflite'" in err[0] and "onnx" in err[0]
    code, err = _cli(capsys, "bpp-sr-x2", "--format", "onnx", "--out", str(tmp_path / "a.onnx"), "--config", "model.kind=ode")
    assert code == 2 and len(err) == 1 and "BPPODE" in err[0]
    assert not (tmp_path / "a.onnx").exists()


def test_cli_unwritable_output_names_the_path(capsys, tmp_path):
    bad = tmp_path / "missing_folder" / "x.onnx"
    code, err = _cli(capsys, "bpp-sr-x2", "--format", "onnx", "--out", str(bad))
    assert code == 2 and len(err) == 1 and str(bad) in err[0]
    code, err = _cli(capsys, "bpp-sr-x2", "--format", "stablehlo", "--out", str(tmp_path))
    assert code == 2 and len(err) == 1 and str(tmp_path) in err[0]


def test_cli_fixed_tile_reports_the_measured_difference(capsys, tmp_path):
    out = tmp_path / "x2.stablehlo"
    assert ex.main(["bpp-sr-x2", "--format", "stablehlo", "--out", str(out), "--tile", "16"]) == 0
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and str(out) in printed and "1x16x16, 2x16x16" in printed
    exported = jax.export.deserialize(bytearray(out.read_bytes()))
    assert exported.in_avals[0].shape[1:] == (16, 16, 3)
    assert json.loads((tmp_path / "x2.stablehlo.json").read_text())["shape"] == "fixed 16x16"
