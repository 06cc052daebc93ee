"""The workdir API: save_model / load_model, best vs latest, clear errors."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bppjax import workdir as ck
from bppjax.models.presets import build_model
from bppjax.training.config import default_config


@pytest.fixture(scope="module")
def tiny():
    """A full tiny training config and freshly initialised parameters."""
    config = default_config("tiny")
    key = jax.random.key(0, impl="rbg")  # compiles ~5x faster than threefry on XLA:CPU
    params = build_model(config.model).init(key, jnp.zeros((1, 16, 16, 3)))["params"]
    return config, params


def _close(a, b) -> bool:
    return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))), a, b)))


def test_save_then_load_round_trip(tmp_path, tiny):
    config, params = tiny
    ck.save_model(tmp_path / "w", config, params, step=7)
    loaded = ck.load_model(tmp_path / "w")
    assert loaded.step == 7 and loaded.which == "latest"  # no validation score -> latest
    assert _close(loaded.params, params)
    assert tuple(loaded.config.model.features) == tuple(config.model.features)
    assert json.loads((tmp_path / "w" / ck.CONFIG_FILE).read_text())["data"]["patch"] == config.data.patch
    x = jnp.full((1, 16, 16, 3), 0.5)
    np.testing.assert_allclose(loaded.apply(x), build_model(config.model).apply({"params": params}, x), atol=1e-6)


def test_save_model_accepts_variables_dict(tmp_path, tiny):
    config, params = tiny
    ck.save_model(tmp_path, config, {"params": params})
    assert _close(ck.load_model(tmp_path).params, params)


def test_override_with_other_shapes_names_parameter(tmp_path, tiny):
    config, params = tiny
    ck.save_model(tmp_path, config, params)
    with pytest.raises(ValueError, match=r"analysis/h_2/kernel: saved \(3, 3, 3, 8\), model expects \(3, 3, 3, 16\)"):
        ck.load_model(tmp_path, ["model.features=(8, 8, 16)"])


def test_override_keeps_shapes(tmp_path, tiny):
    config, params = tiny
    ck.save_model(tmp_path, config, params)
    loaded = ck.load_model(tmp_path, ["--config.model.dtype=bfloat16"])
    assert loaded.config.model.dtype == "bfloat16" and _close(loaded.params, params)


def test_override_kind_ode_shares_parameters(tmp_path, tiny):
    pytest.importorskip("bppjax.models.ode")
    config, params = tiny
    ck.save_model(tmp_path, config, params)
    loaded = ck.load_model(tmp_path, ["model.kind=ode"])
    assert loaded.config.model.kind == "ode" and _close(loaded.params, params)


def test_save_model_rejects_wrong_shapes(tmp_path, tiny):
    config, params = tiny
    bad = jax.tree.map(lambda x: x, params)
    bad["synthesis"]["conv"]["kernel"] = jnp.zeros((3, 3, 8, 4))
    with pytest.raises(ValueError, match="synthesis/conv/kernel"):
        ck.save_model(tmp_path, config, bad)


def test_best_and_latest(tmp_path, tiny):
    config, params = tiny
    ck.save_config(tmp_path, config)
    manager = ck.checkpoint_manager(tmp_path, keep=1, async_save=False)
    for step, score in [(1, 30.0), (2, 32.0), (3, 31.0), (4, None)]:
        p = jax.tree.map(lambda x: np.asarray(x) + step, params)
        meta = {} if score is None else {ck.BEST_METRIC: score}
        ck.save_checkpoint(manager, step, p, meta=meta)
    manager.wait_until_finished()
    manager.close()
    assert sorted(int(p.name) for p in (tmp_path / ck.CHECKPOINT_DIR).iterdir() if p.name.isdigit()) == [2, 4]
    best, latest = ck.load_model(tmp_path), ck.load_model(tmp_path, which="latest")
    assert (best.step, best.which) == (2, "best") and (latest.step, latest.which) == (4, "latest")
    assert _close(best.params, jax.tree.map(lambda x: np.asarray(x) + 2, params))


def test_best_step_comes_from_orbax_metrics_and_older_workdirs_from_meta(tmp_path, tiny, monkeypatch):
    import orbax.checkpoint as ocp

    config, params = tiny
    new, old = tmp_path / "new", tmp_path / "old"
    for folder in (new, old):
        ck.save_config(folder, config)
    manager = ck.checkpoint_manager(new, keep=3, async_save=False)
    # An older workdir: a manager that did not rank steps, so no metrics stored with them.
    plain = ocp.CheckpointManager(old.absolute() / ck.CHECKPOINT_DIR, options=ocp.CheckpointManagerOptions(
        enable_async_checkpointing=False), item_handlers={"params": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()})
    for step, score in [(1, 30.0), (2, 32.0), (3, 31.0)]:
        ck.save_checkpoint(manager, step, params, meta={ck.BEST_METRIC: score})
        ck.save_checkpoint(plain, step, params, meta={ck.BEST_METRIC: score})
    for m in (manager, plain):
        m.wait_until_finished()
        m.close()
    real_read_meta = ck.read_meta
    reads = []
    monkeypatch.setattr(ck, "read_meta", lambda m, s: reads.append(s) or real_read_meta(m, s))
    assert ck.load_model(new).step == 2 and reads == []  # no step restored to rank them
    assert ck.load_model(old).step == 2 and sorted(reads) == [1, 2, 3]


def test_clear_errors(tmp_path, tiny):
    config, params = tiny
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ck.load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        ck.load_model(tmp_path / "empty")
    ck.save_config(tmp_path / "empty", config)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.load_model(tmp_path / "empty")
    with pytest.raises(ValueError, match="which must be"):
        ck.save_model(tmp_path / "w", config, params)
        ck.load_model(tmp_path / "w", which="newest")
    with pytest.raises(ValueError, match="unknown config key"):
        ck.load_model(tmp_path / "w", ["model.widht=3"])


def test_a_checkpoint_with_the_retired_step_rng_still_restores(tmp_path):
    """Checkpoints written while the train state held an (unused) RNG restore into the state without one."""
    import orbax.checkpoint as ocp

    manager = ck.checkpoint_manager(tmp_path, async_save=False)
    params = {"w": jnp.arange(6.0).reshape(2, 3)}
    old_state = {"step": jnp.asarray(7, jnp.int32), "opt_state": {"mu": jnp.ones(3)}, "rng": jnp.asarray([1, 2], jnp.uint32)}
    ck.save_checkpoint(manager, 7, params, old_state, {"val_psnr": 30.0})
    manager.wait_until_finished()
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, {"step": old_state["step"], "opt_state": old_state["opt_state"]})
    with pytest.raises(ValueError):  # Orbax restores only whole trees
        manager.restore(7, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
    out = manager.restore(7, args=ocp.args.Composite(state=ocp.args.StandardRestore(ck.state_target(manager, 7, target))))
    assert int(out["state"]["step"]) == 7 and np.array_equal(out["state"]["opt_state"]["mu"], np.ones(3))
    # A checkpoint without it needs no extra entry.
    ck.save_checkpoint(manager, 8, params, {"step": old_state["step"], "opt_state": old_state["opt_state"]})
    manager.wait_until_finished()
    assert set(ck.state_target(manager, 8, target)) == {"step", "opt_state"}
    manager.close()


def test_the_train_state_holds_no_rng():
    from bppjax.training.state import TrainState

    assert [f for f in TrainState.__dataclass_fields__ if f not in ("apply_fn", "tx")] == ["step", "params", "opt_state"]


def test_workdir_and_zoo_do_not_import_each_other():
    """``zoo`` builds its LoadedModel from ``bppjax.loaded_model``; only ``workdir`` reads the zoo."""
    import subprocess
    import sys

    code = "import sys, bppjax.zoo; print('bppjax.workdir' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
    assert ck.LoadedModel is __import__("bppjax.zoo", fromlist=["LoadedModel"]).LoadedModel
