"""The Flax BPP against an independent PyTorch implementation (``benchmarks/torch_bpp.py``).

Same weights, same input: the outputs must agree to float32 round-off. Skipped
without PyTorch (``pip install -e .[bench]``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import torch_bpp  # noqa: E402

from bppjax.models import build_model, model_config, preset  # noqa: E402

CASES = {
    "tiny": preset("tiny"),
    "tiny_no_in": model_config(levels=3, features=(8, 8, 8), depth=2, instance_norm=False, dirac_noise=0.1),
    "3level": model_config(levels=3, features=(24, 16, 12), depth=3),
    "3level_no_in": model_config(levels=3, features=(24, 16, 12), depth=3, instance_norm=False, dirac_noise=0.1),
    "3level_eq2": model_config(levels=3, features=(24, 16, 12), depth=3, down_projection="eq2"),
}


def _outputs(cfg, hw=(40, 36), batch=2, seed=0):
    model = build_model(cfg)
    x = jax.random.uniform(jax.random.key(seed), (batch, *hw, 3))
    params = model.init(jax.random.key(seed + 1), x)["params"]
    # Perturb the scalers so that their layout is tested too (they start symmetric).
    params = jax.tree_util.tree_map_with_path(
        lambda path, a: a + 0.01 * jax.random.normal(jax.random.key(7), a.shape) if "scaler" in str(path[0]) else a, params
    )
    y = np.asarray(model.apply({"params": params}, x))
    tm = torch_bpp.TorchBPP(cfg.features, cfg.depth, cfg.instance_norm, cfg.down_projection)
    torch_bpp.load_flax_params(tm, jax.tree.map(np.asarray, params))
    with torch.no_grad():
        yt = tm(torch.from_numpy(np.asarray(x).transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
    return y, yt, x


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_outputs_as_torch(name):
    y, yt, x = _outputs(CASES[name])
    assert y.shape == yt.shape
    # The residual is what the network computes; compare it at its own scale.
    r, rt = y - np.asarray(x), yt - np.asarray(x)
    scale = max(float(np.abs(r).max()), 1e-3)
    np.testing.assert_allclose(r / scale, rt / scale, atol=1e-4)


def test_same_outputs_odd_size():
    y, yt, _ = _outputs(CASES["3level"], hw=(27, 33), batch=1)
    np.testing.assert_allclose(y, yt, atol=1e-4)


@pytest.mark.parametrize("name", ["paper", "small", "tiny"])
def test_same_parameter_count(name):
    cfg = preset(name)
    assert dict(features=tuple(cfg.features), depth=cfg.depth) == torch_bpp.PRESETS[name]
    shapes = jax.eval_shape(build_model(cfg).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    n = sum(a.size for a in jax.tree.leaves(shapes["params"]))
    assert n == torch_bpp.count_params(torch_bpp.TorchBPP(**torch_bpp.PRESETS[name]))


def test_same_gradients_as_torch():
    """L1-loss gradients agree too: an independent check of the custom VJPs in ``layers.py``."""
    cfg = CASES["3level"]
    model = build_model(cfg)
    x = jax.random.uniform(jax.random.key(0), (2, 32, 32, 3))
    target = jax.random.uniform(jax.random.key(2), x.shape)
    params = model.init(jax.random.key(1), x)["params"]
    g = jax.grad(lambda p: jnp.mean(jnp.abs(model.apply({"params": p}, x) - target)))(params)
    tm = torch_bpp.load_flax_params(torch_bpp.TorchBPP(cfg.features, cfg.depth), jax.tree.map(np.asarray, params))
    nchw = lambda a: torch.from_numpy(np.asarray(a).transpose(0, 3, 1, 2).copy())  # noqa: E731
    torch.nn.functional.l1_loss(tm(nchw(x)), nchw(target)).backward()
    pairs = [
        (g["block_00"]["unit_2"]["upscale"]["conv"]["kernel"], tm.blocks[0][1].upscale.weight.grad, torch_bpp._conv_transpose_weight),
        (g["block_01"]["unit_1"]["downscale"]["conv"]["kernel"], tm.blocks[1][0].downscale.weight.grad, torch_bpp._conv_weight),
        (g["analysis"]["h_0"]["kernel"], tm.analysis_h[0].weight.grad, torch_bpp._conv_weight),
        (g["scaler_2"]["kernel"], tm.scalers[1].weight.grad, torch_bpp._conv_weight),
    ]
    for gj, gt, to_torch in pairs:
        a, b = to_torch(gj).numpy(), gt.numpy()
        np.testing.assert_allclose(a, b, atol=1e-4 * float(np.abs(b).max()) + 1e-7)


# --------------------------------------------------------------------------- the bench's dtypes (bfloat16 autocast)


def _conv_output_dtypes(model, x, dtype):
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(o.dtype)) for m in model.modules()
             if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d))]
    try:
        with torch.no_grad(), torch_bpp.autocast(dtype):
            y = model(x)
    finally:
        for h in hooks:
            h.remove()
    return set(seen), y


def test_autocast_runs_the_convolutions_in_the_asked_dtype():
    model = torch_bpp.TorchBPP(**torch_bpp.PRESETS["tiny"])
    x = torch.rand(1, 3, 16, 16)
    seen, y = _conv_output_dtypes(model, x, "bfloat16")
    assert seen == {torch.bfloat16} and y.dtype == torch.float32  # the residual adds to the float32 input
    seen, y32 = _conv_output_dtypes(model, x, "float32")
    assert seen == {torch.float32}
    assert torch.allclose(y, y32, atol=0.05)  # bfloat16 rounding, not a different network
    with pytest.raises(ValueError, match="unknown dtype 'float16'"):
        torch_bpp.autocast("float16")


def test_bfloat16_training_step_keeps_float32_weights():
    torch.manual_seed(0)
    model = torch_bpp.TorchBPP(**torch_bpp.PRESETS["tiny"])
    before = [p.detach().clone() for p in model.parameters()]
    r = torch_bpp.time_train_step(model, patch=16, batch=1, reps=1, dtype="bfloat16")
    assert r["train_step_s"] > 0
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))  # Adam did update them


def test_bench_times_each_dtype_from_the_same_weights():
    res = torch_bpp.bench("tiny", reps=1, size=16, patch=16, batch=1, dtypes=("float32", "bfloat16"))
    assert res["dtypes"] == ["float32", "bfloat16"]
    assert res["params"] == torch_bpp.count_params(torch_bpp.TorchBPP(**torch_bpp.PRESETS["tiny"]))
    for r in (res, res["bfloat16"]):
        assert r["forward_px_per_s"] > 0 and r["train_step_s"] > 0
