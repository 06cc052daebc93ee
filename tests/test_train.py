"""End to end: the CLI trains the tiny default, resumes after a crash, matches on 1/2/4 devices,
and refuses bad configs before compiling anything."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from bppjax import workdir as ck
from bppjax.train import main, resolve_config
from bppjax.training import ConfigError, NonFiniteLossError, default_config, load_config_file, train_and_evaluate, validate_config
from bppjax.training.writers import METRICS_FILE, read_records

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
TINY = str(CONFIGS / "default.py") + ":tiny"


def _flat(params) -> dict[str, np.ndarray]:
    return {jax.tree_util.keystr(k): np.asarray(v) for k, v in jax.tree_util.tree_leaves_with_path(params)}


def _assert_params_close(a, b, atol: float) -> None:
    fa, fb = _flat(a), _flat(b)
    assert fa.keys() == fb.keys()
    for k in fa:
        np.testing.assert_allclose(fa[k], fb[k], atol=atol, rtol=0, err_msg=k)


def _subprocess_env(devices: int = 1) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}".strip()
    return env


# --------------------------------------------------------------------------- training works


def test_cli_trains_tiny_default_and_loss_falls(tmp_path, capsys):
    workdir = tmp_path / "run"
    rc = main(["--config", TINY, "--workdir", str(workdir), "--config.train.val_every=15", "--config.train.curve=True"])
    assert rc == 0
    records = read_records(workdir / METRICS_FILE)
    losses = [r["loss"] for r in records if r["kind"] == "train"]
    assert len(losses) == 6 and np.mean(losses[-2:]) < 0.75 * np.mean(losses[:2]), losses
    train = [r for r in records if r["kind"] == "train"]
    assert {"grad_norm", "param_norm", "lr", "steps_per_sec"} <= train[-1].keys()
    val = [r for r in records if r["kind"] == "val"]
    assert [r["step"] for r in val] == [15, 30] and val[-1]["input_psnr"] > 30  # chelsea x2 bicubic
    assert json.loads((workdir / ck.CONFIG_FILE).read_text())["train"]["val_every"] == 15
    assert (workdir / "training_curve.png").stat().st_size > 1000
    assert any((workdir / "tensorboard").iterdir())
    best = ck.load_model(workdir)  # best-by-PSNR is one of the validated steps
    assert best.which == "best" and best.step in (15, 30)
    assert ck.load_model(workdir, which="latest").step == 30
    assert "val PSNR" in capsys.readouterr().err


def test_no_arguments_trains_embedded_default_into_runs_default(tmp_path, monkeypatch, capsys):
    seen = {}
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("bppjax.train.train_and_evaluate", lambda c, w, init_from=None: seen.update(config=c, workdir=w))
    assert main([]) == 0
    assert seen["workdir"] == Path("runs/default") and seen["config"].to_dict() == default_config().to_dict()
    err = capsys.readouterr().err
    assert "embedded default" in err and str(tmp_path / "runs" / "default") in err


def test_workdir_alone_resumes_with_its_config(tmp_path):
    config = default_config("tiny")
    config.train.steps = 17
    ck.save_config(tmp_path, config)
    resolved, origin = resolve_config(None, tmp_path, ["train.seed=5"])
    assert origin.endswith("config.json") and resolved.train.steps == 17 and resolved.train.seed == 5


# --------------------------------------------------------------------------- resume after a crash

CRASH_DRIVER = textwrap.dedent(
    """
    import sys, time
    from bppjax.data.sampler import PatchSampler
    hang_at = int(sys.argv[1])
    draw = PatchSampler.local_batch
    def local_batch(self, step, *args):
        if step >= hang_at:
            time.sleep(3600)  # stand still until the test SIGKILLs us
        return draw(self, step, *args)
    PatchSampler.local_batch = local_batch
    from bppjax.train import main
    sys.exit(main(sys.argv[2:]))
    """
)


def _finalised(workdir: Path, step: int) -> bool:
    d = workdir / ck.CHECKPOINT_DIR / str(step)
    return d.is_dir() and (d / "_CHECKPOINT_METADATA").is_file()


def test_killed_run_resumes_to_identical_parameters(tmp_path):
    n, k = 12, 4
    args = ["--config", TINY, f"--config.train.steps={n}", f"--config.train.ckpt_every={k}", "--config.train.log_every=2"]
    reference = tmp_path / "reference"
    assert main([*args, "--workdir", str(reference)]) == 0

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASH_DRIVER, str(k + 2), *args, "--workdir", str(crashed)],
        env=_subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.time() + 120
        while not _finalised(crashed, k):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.time() < deadline, "no checkpoint written in time"
            time.sleep(0.2)
        time.sleep(0.5)  # it is now stuck drawing batch k + 2, past the checkpoint
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert ck.load_model(crashed, which="latest").step == k

    assert main([*args, "--workdir", str(crashed)]) == 0
    resumed, uninterrupted = ck.load_model(crashed, which="latest"), ck.load_model(reference, which="latest")
    assert resumed.step == uninterrupted.step == n
    _assert_params_close(resumed.params, uninterrupted.params, atol=1e-6)
    steps = [r["step"] for r in read_records(crashed / METRICS_FILE) if r["kind"] == "train"]
    assert steps == list(range(2, n + 1, 2))  # the crashed run's records past step k were replaced


# --------------------------------------------------------------------------- 1, 2 and 4 devices

DEVICES_DRIVER = textwrap.dedent(
    """
    import sys, jax, numpy as np
    from bppjax.training import ConfigError, default_config, train_and_evaluate
    workdir, devices = sys.argv[1], int(sys.argv[2])
    assert jax.device_count() == devices, jax.devices()
    c = default_config("tiny")
    c.train.update(steps=2, ckpt_every=2, log_every=1)
    c.data.val.source = ""
    c.model.remat = sys.argv[3]  # the rematerialising sweep must shard like the plain network
    if devices == 4:  # a batch the devices cannot share is refused up front
        bad = default_config("tiny")
        bad.data.batch = 6
        try:
            train_and_evaluate(bad, workdir + "_bad")
        except ConfigError as e:
            print("CONFIG ERROR:", e)
    r = train_and_evaluate(c, workdir)
    leaves = jax.tree_util.tree_leaves_with_path(r.state.params)
    assert all(len(v.sharding.device_set) == devices for _, v in leaves)
    np.savez(workdir + "/params.npz", **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    """
)


def _train_records(workdir: Path) -> list[dict]:
    return [r for r in read_records(workdir / METRICS_FILE) if r["kind"] == "train"]


def test_two_and_four_devices_match_one(tmp_path):
    c = default_config("tiny")
    c.train.update(steps=2, ckpt_every=2, log_every=1)
    c.data.val.source = ""
    one = _flat(train_and_evaluate(c, tmp_path / "one").state.params)
    for devices in (2, 4):
        out = subprocess.run(
            [sys.executable, "-c", DEVICES_DRIVER, str(tmp_path / f"dev{devices}"), str(devices),
             "block" if devices == 2 else "none"],
            env=_subprocess_env(devices), capture_output=True, text=True, timeout=300,
        )
        assert out.returncode == 0, out.stderr[-3000:]
        many = dict(np.load(tmp_path / f"dev{devices}" / "params.npz"))
        assert many.keys() == one.keys()
        # Adam turns float noise in near-zero gradients into updates of up to lr (2e-3):
        # 1e-5 still catches any real data-parallel error, which moves most weights by ~lr.
        for key in one:
            np.testing.assert_allclose(many[key], one[key], atol=1e-5, rtol=0, err_msg=f"{devices} devices: {key}")
        # loss and gradient norm (Adam would hide a sum-instead-of-mean bug) agree tightly
        for a, b in zip(_train_records(tmp_path / f"dev{devices}"), _train_records(tmp_path / "one"), strict=True):
            np.testing.assert_allclose([a["loss"], a["grad_norm"]], [b["loss"], b["grad_norm"]], rtol=1e-5)
        # a checkpoint written on several devices loads on one
        loaded = _flat(ck.load_model(tmp_path / f"dev{devices}").params)
        assert all(np.array_equal(loaded[key], many[key]) for key in many)
        if devices == 4:
            assert "CONFIG ERROR: data.batch=6 is not divisible by the 4 devices" in out.stdout


# --------------------------------------------------------------------------- failures


@pytest.fixture
def no_compilation(monkeypatch):
    """Fail the test if anything gets jitted."""

    def boom(*a, **k):
        raise AssertionError("jax.jit was called before the config error was reported")

    monkeypatch.setattr(jax, "jit", boom)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.optim.learning_rate=1e-3"], "unknown config key 'optim.learning_rate'"),
        (["--config.data.train.source=folder", "--config.data.train.dirs=('/no/such/folder',)"], "data folder /no/such/folder does not exist"),
        (["--config.data.patch=640"], "data.patch=640 is larger than every training image"),
        (["--config.data.patch=30"], "data.patch=30 must be a multiple of 4"),
        (["--config.train.loss=l3"], "train.loss must be one of"),
    ],
)
def test_config_errors_stop_before_compiling(tmp_path, capsys, no_compilation, extra, message):
    assert main(["--config", TINY, "--workdir", str(tmp_path / "w"), *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("config error:") == 1 and message in err and "Traceback" not in err, err


def test_unknown_key_in_config_file(tmp_path, capsys, no_compilation):
    path = tmp_path / "typo.py"
    path.write_text(
        "from bppjax.training.config import default_config\n"
        "def get_config(variant=''):\n"
        "    c = default_config('tiny')\n"
        "    c.optim.learing_rate = 1e-3\n"
        "    return c\n"
    )
    assert main(["--config", str(path), "--workdir", str(tmp_path / "w")]) == 2
    assert "unknown config key(s): optim.learing_rate" in capsys.readouterr().err


def test_batch_must_divide_device_count():
    c = default_config("tiny")
    validate_config(c, device_count=4)
    with pytest.raises(ConfigError, match=r"data.batch=4 is not divisible by the 3 devices"):
        validate_config(c, device_count=3)


def test_non_finite_loss_stops_naming_the_step(tmp_path, monkeypatch):
    import jax.numpy as jnp

    from bppjax.data.sampler import PatchSampler
    from bppjax.training import step as step_module

    draw = PatchSampler.local_batch  # what the loop asks for (this host's share of batch k)

    def local_batch(self, k, index, count):
        b = draw(self, k, index, count)
        if k >= 5:  # the update producing step 6 sees an all-black target
            b["target"] = np.zeros_like(b["target"])
        return b

    monkeypatch.setattr(PatchSampler, "local_batch", local_batch)
    monkeypatch.setitem(step_module.LOSSES, "l1", lambda p, t: jnp.mean(jnp.abs(p - t)) / jnp.max(t))  # inf on black
    c = default_config("tiny")
    c.train.update(ckpt_every=2, log_every=10)
    c.data.val.source = ""
    with pytest.raises(NonFiniteLossError, match=r"loss is (inf|nan) at step 6.*last good checkpoint is step 4"):
        train_and_evaluate(c, tmp_path)
    assert ck.load_model(tmp_path, which="latest").step == 4


def test_resume_refuses_other_data_naming_what_changed(tmp_path, capsys):
    args = ["--config", TINY, "--config.train.steps=2", "--config.train.ckpt_every=2", "--config.train.val_every=0",
            "--config.data.val.source=''", "--workdir", str(tmp_path / "w")]
    assert main(args) == 0
    config_json = (tmp_path / "w" / ck.CONFIG_FILE).read_text()
    capsys.readouterr()
    assert main([*args, "--config.data.patch=24", "--config.data.batch=2", "--config.train.steps=4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") <= 3 and "Traceback" not in err
    assert "other data (data.patch 32 -> 24; data.batch 4 -> 2)" in err and f"--checkpoint {tmp_path / 'w'}" in err
    assert (tmp_path / "w" / ck.CONFIG_FILE).read_text() == config_json  # the refused run changed nothing


def test_data_identity_changes_name_images_sizes_and_scales():
    from bppjax.training.data_identity import identity_changes

    old = {"patch": 32, "batch": 4, "scales": [2], "images": {"a": [10, 20], "b": [30, 40], "c": [5, 5]}}
    new = {"patch": 32, "batch": 4, "scales": [2, 3], "images": {"a": [10, 20], "b": [30, 41], "d": [5, 5]}}
    assert identity_changes(old, old) == []
    assert identity_changes(old, new) == [
        "data.scales [2] -> [2, 3]", "3 -> 3 training images, added d, removed c, resized b 40x30 -> 41x30"]
    assert identity_changes({}, new) == []  # checkpoints written before identities were recorded resume as before


def test_every_config_and_variant_loads_and_validates():
    specs = ["default.py", "default.py:tiny", "t91.py", "t91.py:tiny", "raindrop.py", "raindrop.py:tiny",
             "dehaze.py", "dehaze.py:tiny", "dped.py", "dped.py:tiny", "hdr_sr.py", "hdr_sr.py:tiny"]
    specs += [f"sr.py:{v}" for v in ("x2", "x3", "x4", "x8", "multi", "x4,tfds", "multi,tfds", "x2,tiny", "multi,tiny")]
    specs += [f"zoo.py:{v}" for v in ("x2", "x3", "x3ft", "x3ft2", "x4", "multi", "multift", "x3w12k", "multic12k", "x3w12kh", "multic10k5", "x2,tiny", "multi,tiny")]
    for spec in specs:
        c = load_config_file(str(CONFIGS / spec))
        validate_config(c, device_count=1, check_data=False)
        if spec.endswith("tiny"):
            assert c.model.features == (8, 8, 8) and c.train.steps <= 30, spec
        else:
            expected = {"default.py": (32, 24, 16), "t91.py": (32, 24, 16)}.get(spec, (48, 32, 24) if "zoo" in spec else (256, 128, 64, 48))
            assert c.model.features == expected, spec
            assert not any(n in str(c.data.val.to_dict()) for n in ("Set5", "Set14", "B100")) or "sr.py" in spec, spec
    assert load_config_file(str(CONFIGS / "sr.py:x3")).data.patch == 144
    assert load_config_file(str(CONFIGS / "sr.py:x8")).data.patch == 192
    with pytest.raises(ConfigError, match="variant"):
        load_config_file(str(CONFIGS / "sr.py:x5"))
    with pytest.raises(ConfigError, match="variant"):
        load_config_file(str(CONFIGS / "zoo.py:x8"))
    assert load_config_file(str(CONFIGS / "zoo.py:multi")).data.scales == (2, 3, 4)
    x3ft = load_config_file(str(CONFIGS / "zoo.py:x3ft"))
    assert x3ft.data.scales == (3,) and x3ft.optim.lr == 5e-4 and load_config_file(str(CONFIGS / "zoo.py:x3")).optim.lr == 1e-3
    x3ft2, multift = (load_config_file(str(CONFIGS / f"zoo.py:{v}")) for v in ("x3ft2", "multift"))
    assert (x3ft2.data.scales, x3ft2.optim.lr, x3ft2.train.steps) == ((3,), 2.5e-4, 2_000)
    assert (multift.data.scales, multift.optim.lr, multift.train.steps) == ((2, 3, 4), 5e-4, 8_000)
    staged = {"x3w12k": ((3,), 5e-4, 12_000, False), "multic12k": ((2, 3, 4), 5e-4, 12_000, True),
              "x3w12kh": ((3,), 1e-3, 12_000, False), "multic10k5": ((2, 3, 4), 5e-4, 10_500, True)}
    for v, expected in staged.items():  # scales, peak rate, steps, factor conditioning
        c = load_config_file(str(CONFIGS / f"zoo.py:{v}"))
        assert (c.data.scales, c.optim.lr, c.train.steps, c.model.factor_conditioning) == expected, v
