"""BPP conditioned on the SR factor (``model.factor_conditioning``, ``FactorFiLM``) and the tools that tell it the factor."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bppjax
from bppjax.analysis import linearscope as ls
from bppjax.inference import enhance
from bppjax.models import at_factor, build_model, conditioned_on_factor, preset
from bppjax.training import default_config, train_and_evaluate
from test_linearscope import random_params

SIZE = 16


def _conditioned(**kw):
    cfg = preset("tiny")
    cfg.factor_conditioning = True
    cfg.update(kw)
    return build_model(cfg)


def _image(batch: int = 1, seed: int = 0):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(batch, SIZE, SIZE, 3)), jnp.float32)


def test_parameters_and_a_new_conditioning_that_changes_nothing():
    x = _image()
    plain, cond = build_model(preset("tiny")), _conditioned()
    p_plain = plain.init(jax.random.key(0), x)["params"]
    p_cond = cond.init(jax.random.key(0), x)["params"]
    extra = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(p_cond["factor_film"]))
    assert extra == sum(2 * 2 * c + 2 * c for c in cond.features)  # Dense (z, z^2) -> (gamma, beta) per level
    assert {k: v for k, v in p_cond.items() if k != "factor_film"}.keys() == p_plain.keys()
    # Zero-initialised: the conditioned network with the plain one's weights is the plain network at every factor.
    p = dict(p_plain, factor_film=p_cond["factor_film"])
    y = plain.apply({"params": p_plain}, x)
    for s in (2.0, 3.0, 4.5):
        np.testing.assert_allclose(at_factor(cond, s).apply({"params": p}, x), y, atol=1e-6)


def test_the_factor_must_be_bound_and_reaches_each_sample():
    cond = _conditioned()
    x = _image(2)
    params = random_params(cond, x)
    with pytest.raises(ValueError, match="conditioned on the SR factor"):
        cond.apply({"params": params}, x)
    with pytest.raises(ValueError, match="scale"):
        at_factor(cond, None)
    with pytest.raises(ValueError, match="one per sample"):
        at_factor(cond, jnp.ones((3,))).apply({"params": params}, x)
    with pytest.raises(ValueError, match="> 0"):
        at_factor(cond, 0.0).apply({"params": params}, x)
    y2, y4 = (at_factor(cond, s).apply({"params": params}, x) for s in (2.0, 4.0))
    assert float(jnp.abs(y2 - y4).max()) > 1e-2  # the factor changes the output
    mixed = at_factor(cond, jnp.asarray([2.0, 4.0])).apply({"params": params}, x)
    np.testing.assert_allclose(mixed[0], y2[0], atol=1e-5)
    np.testing.assert_allclose(mixed[1], y4[1], atol=1e-5)
    # Unconditioned models ignore the binding.
    plain = build_model(preset("tiny"))
    assert at_factor(plain, 3.0) is plain and not conditioned_on_factor(plain)


def test_linearscope_ode_and_enhance_on_a_conditioned_model():
    cond = _conditioned()
    x = _image()
    params = random_params(cond, x)
    model = at_factor(cond, 3.0)
    d = ls.decompose(model, params, x)
    assert d.reconstruction_error[0] < 1e-5 and d.global_fraction[0] > 0.05
    ode = at_factor(_conditioned(kind="ode"), 3.0)  # causal Euler at dt = 1: the discrete network
    np.testing.assert_allclose(ode.apply({"params": params}, x), model.apply({"params": params}, x), atol=1e-5)
    lr = np.random.default_rng(1).uniform(size=(12, 12, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="--scale"):
        enhance(lr, cond, params)
    out3 = enhance(lr, cond, params, scale=3, mode="whole")
    out2 = enhance(lr, cond, params, scale=2, mode="whole")
    assert out3.shape == (36, 36, 3) and out2.shape == (24, 24, 3)


def test_training_sees_each_patch_factor_and_warm_starts_from_a_plain_model(tmp_path):
    def config(conditioned: bool, steps: int):
        cfg = default_config("tiny")
        cfg.model.factor_conditioning = conditioned
        cfg.data.scales = (2, 3)
        cfg.data.patch = 24
        cfg.data.val.source = ""
        cfg.train.update(steps=steps, log_every=steps, ckpt_every=steps, progress=False, curve=False)
        return cfg

    from bppjax.data.pipeline import build_sampler

    cfg = config(True, 4)
    with_factor, without = (build_sampler(cfg.data, 0, "upscaled", with_factor=w) for w in (True, False))
    batches = [with_factor.batch_at(k) for k in range(4)]
    for k, b in enumerate(batches):  # the same crops, plus each patch's factor
        ref = without.batch_at(k)
        assert set(ref) == {"input", "target"} and b["scale"].shape == (cfg.data.batch,) and b["scale"].dtype == np.float32
        np.testing.assert_array_equal(b["input"], ref["input"])
    assert set(np.concatenate([b["scale"] for b in batches]).tolist()) == {2.0, 3.0}

    plain = train_and_evaluate(config(False, 2), tmp_path / "plain")
    res = train_and_evaluate(cfg, tmp_path / "cond", init_from=tmp_path / "plain")
    film = res.state.params["factor_film"]
    assert max(float(jnp.abs(w).max()) for w in jax.tree.leaves(film)) > 0  # the conditioning learned something
    loaded = bppjax.load_model(tmp_path / "cond")
    assert conditioned_on_factor(loaded.model)
    with pytest.raises(ValueError, match="conditioned on the SR factor"):
        loaded.apply(np.zeros((1, 24, 24, 3), np.float32))
    x = np.random.default_rng(2).uniform(size=(1, 24, 24, 3)).astype(np.float32)
    a2, a3 = loaded.at_factor(2).apply(x), loaded.at_factor(3).apply(x)
    assert a2.shape == x.shape and float(np.abs(np.asarray(a2) - np.asarray(a3)).max()) > 0 and plain.step == 2
    # evaluate tells the model each factor it scores, also through the self-ensemble.
    from PIL import Image

    from bppjax.evaluation import evaluate, self_ensemble
    from bppjax.export import ExportError, export_model

    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray((255 * np.random.default_rng(3).uniform(size=(48, 48, 3))).astype(np.uint8)).save(folder / "a.png")
    for fn in (loaded, self_ensemble(loaded)):
        scores = evaluate(fn, [folder], scales=[2, 3], progress=False)["images"]
        assert set(scores) == {2, 3} and all(np.isfinite(v["psnr"]) for v in scores.values())
    with pytest.raises(ExportError, match="--scale"):
        export_model(str(tmp_path / "cond"), "stablehlo", tmp_path / "m.stablehlo")


def test_the_zoo_recipe_of_the_conditioned_multi_factor_model():
    from pathlib import Path

    from bppjax.training import load_config_file

    root = Path(__file__).resolve().parents[1]
    cfg = load_config_file(f"{root / 'configs' / 'zoo.py'}:multic")
    assert cfg.model.factor_conditioning and tuple(cfg.data.scales) == (2, 3, 4)
    assert conditioned_on_factor(build_model(cfg.model))
    plain = load_config_file(f"{root / 'configs' / 'zoo.py'}:multift")
    assert not plain.model.factor_conditioning  # the shipped recipes are unchanged
