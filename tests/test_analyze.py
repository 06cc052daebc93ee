"""``python -m bppjax.analyze`` end to end on tiny saved checkpoints."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from skimage import data

from bppjax import analyze as cli
from bppjax.workdir import save_model
from bppjax.image.io import write_image
from bppjax.models.presets import build_model, preset


def save_tiny(workdir, name: str, scale: int = 2, seed: int = 0):
    """A loadable workdir holding a tiny model with random (non-trivial) parameters."""
    config = ml_collections.ConfigDict({"model": preset(name).to_dict(), "data": {"scales": (scale,)}})
    model = build_model(config.model)
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))["params"]
    rng = np.random.default_rng(seed)
    params = jax.tree.map(lambda s: (rng.standard_normal(s.shape) * np.sqrt(1.0 / np.prod(s.shape[:-1]))).astype(np.float32), shapes)
    save_model(workdir, config, params, step=7)
    return workdir


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    write_image(folder / "astronaut.png", data.astronaut()[100:133, 180:213])  # 33 x 33: odd, gets cropped
    write_image(folder / "coffee.png", data.coffee()[150:183, 250:282])  # 33 x 32 (one compile for both)
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_bpp_checkpoint(tmp_path, images, capsys):
    workdir = save_tiny(tmp_path / "bpp", "tiny")
    out = tmp_path / "out"
    assert cli.main(["--checkpoint", str(workdir), "--images", str(images), "--out", str(out), "--pixels", "4,6", "40,3"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["step"] == 7 and summary["scale"] == 2  # scale from the checkpoint's config
    heat = np.array(summary["update_norms"])
    assert heat.shape == (3, 2) and np.all(heat[0] == 0) and heat.max() == 100
    entries = {e["image"]: e for e in summary["linearscope"]}
    assert sorted(entries) == ["astronaut.png", "coffee.png"]
    assert entries["astronaut.png"]["shape"] == [32, 32, 3]  # cropped to a multiple of 2
    for stem, e in (("astronaut", entries["astronaut.png"]), ("coffee", entries["coffee.png"])):
        assert e["reconstruction_error"] < 1e-5
        assert 0 < e["global_fraction"] and 0 < e["local_fraction"]
        assert e["filter_pixels"] == [[4, 6], [31, 3]]  # clamped inside the image
        for f in ("input.png", "y.png", "fx.png", "r.png", "linearscope.png", "filters.png"):
            assert (out / stem / f).stat().st_size > 100, f
        assert np.load(out / stem / "filters.npy").shape[0] == 2
    assert (out / "update_norms.png").stat().st_size > 1000
    captured = capsys.readouterr()
    assert "analyze" in captured.err and "2/2" in captured.err  # the tqdm bar
    assert "summary.json" in captured.out


def test_resnet_checkpoint_with_overrides(tmp_path, images):
    workdir = save_tiny(tmp_path / "resnet", "resnet_tiny")
    out = tmp_path / "out"
    summary = cli.analyze(workdir, images / "coffee.png", out, overrides=["data.scales=(3,)"], progress=False)
    assert summary["scale"] == 3 and summary["model"]["arch"] == "resnet"
    assert summary["linearscope"][0]["shape"] == [33, 30, 3]
    assert np.array(summary["update_norms"]).shape == (1, 2)
    assert summary["linearscope"][0]["reconstruction_error"] < 1e-5
    plain = cli.analyze(workdir, images / "coffee.png", out, scale=1, max_size=16, progress=False)
    assert plain["linearscope"][0]["shape"] == [16, 16, 3]


def test_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        cli.list_images(tmp_path)
    with pytest.raises(SystemExit):
        cli.parse_args(["--checkpoint", "w", "--images", "i", "--out", "o", "--pixels", "3"])
    args, overrides = cli.parse_args(["--checkpoint", "w", "--images", "i", "--out", "o", "--config.model.kind=ode"])
    assert overrides == ["model.kind=ode"] and args.scale is None
    assert cli.config_scale(ml_collections.ConfigDict({"model": {}})) is None
    assert cli.config_scale(ml_collections.ConfigDict({"data": {"scales": ()}})) is None  # restoration task
    assert cli.config_scale(ml_collections.ConfigDict({"data": {"scales": [4, 2]}})) == 4
