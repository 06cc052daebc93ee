"""Faults and bad input: one clear message, nothing lost (training checkpoints, command lines)."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest

from bppjax import workdir as ckpt
from bppjax.cli import command, describe
from bppjax.training import loop
from bppjax.training.config import default_config


def _tiny(steps: int = 6, every: int = 2):
    c = default_config("tiny")
    c.train.update(steps=steps, ckpt_every=every, log_every=1)
    return c


def _steps(workdir: Path) -> list[int]:
    return loop._complete_steps(workdir)


def test_a_failed_checkpoint_write_names_the_step_keeps_the_earlier_ones_and_resumes(tmp_path, monkeypatch):
    real = ckpt.save_checkpoint

    def disk_full_at_4(manager, step, *args, **kwargs):
        if step == 4:
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "w" / "checkpoints" / "4"))
        return real(manager, step, *args, **kwargs)

    monkeypatch.setattr(ckpt, "save_checkpoint", disk_full_at_4)
    with pytest.raises(loop.CheckpointWriteError, match=r"step 4: .*No space left.*last complete checkpoint is step 2"):
        loop.train_and_evaluate(_tiny(), tmp_path / "w")
    assert _steps(tmp_path / "w") == [2]
    monkeypatch.setattr(ckpt, "save_checkpoint", real)
    resumed = loop.train_and_evaluate(_tiny(), tmp_path / "w")
    straight = loop.train_and_evaluate(_tiny(), tmp_path / "straight")
    assert resumed.step == 6
    for a, b in zip(jax_leaves(resumed.state.params), jax_leaves(straight.state.params)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def jax_leaves(tree):
    import jax

    return [np.asarray(x) for x in jax.tree.leaves(tree)]


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True).returncode == 0


@pytest.mark.slow
def test_a_real_full_disk_stops_training_with_one_message_and_rerun_resumes(tmp_path):
    disk = Path("/tmp") / f"bppjax-full-{uuid.uuid4().hex[:8]}"
    if not _small_tmpfs(disk, "1m"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        c = _tiny(steps=40, every=1)
        c.train.update(keep=100)
        proc = subprocess.run([sys.executable, "-m", "bppjax.train", "--workdir", str(disk / "w"),
                               "--config.train.steps=40", "--config.train.ckpt_every=1", "--config.train.keep=100",
                               "--config.model.features=(8,8,8)", "--config.model.depth=2", "--config.data.patch=32",
                               "--config.data.batch=4", "--config.train.val_every=0", "--config.train.progress=False",
                               "--config.data.train.names=('astronaut',)", "--config.data.val.names=('chelsea',)",
                               "--config.eval.max_images=1", "--config.train.curve=False"],
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 1, proc.stderr[-2000:]
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "No space left on device" in errors[0] and "last complete checkpoint is step" in errors[0]
        assert "Traceback" not in proc.stderr
        saved = _steps(disk / "w")
        assert saved and max(saved) < 40
        # Free the space: move the workdir to a roomy disk, then the same command resumes.
        shutil.copytree(disk / "w", tmp_path / "w")
        resumed = loop.train_and_evaluate(ckpt.load_config(tmp_path / "w"), tmp_path / "w")
        assert resumed.step == 40
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_late_callbacks_into_a_closed_event_loop_are_dropped_and_other_unraisables_kept():
    import asyncio
    import types

    def unraisable(fn):
        try:
            fn()
        except Exception as e:  # noqa: BLE001
            return types.SimpleNamespace(exc_type=type(e), exc_value=e, exc_traceback=e.__traceback__, err_msg=None, object=None)
        raise AssertionError("expected an exception")

    loop_ = asyncio.new_event_loop()
    loop_.close()
    late = unraisable(lambda: loop_.call_soon_threadsafe(print))
    other = unraisable(lambda: 1 / 0)
    seen = []
    for u in (late, other):
        loop._drop_closed_loop_callbacks(seen.append, u)
    assert seen == [other]


def test_a_non_finite_update_with_a_finite_loss_is_never_saved(tmp_path):
    c = _tiny(steps=3, every=1)
    c.optim.update(lr=1e39, warmup_steps=0, schedule="constant")  # finite in Python, inf in float32: step 1 blows up
    with pytest.raises(loop.NonFiniteLossError, match="not finite after step 1.*last good checkpoint is none"):
        loop.train_and_evaluate(c, tmp_path / "w")
    assert _steps(tmp_path / "w") == []


def test_training_worse_than_its_input_ends_with_a_warning(tmp_path, capsys):
    c = _tiny(steps=2, every=2)
    c.optim.update(lr=0.3)
    result = loop.train_and_evaluate(c, tmp_path / "w")
    err = capsys.readouterr().err
    assert result.val["psnr"] < result.val["input_psnr"]
    assert "warning: the trained model is worse than its input" in err


def test_train_refuses_a_workdir_that_is_a_file(tmp_path, capsys):
    from bppjax.train import main

    f = tmp_path / "afile"
    f.write_text("x")
    assert main(["--workdir", str(f)]) == 2
    err = capsys.readouterr().err
    assert f"--workdir {f} is a file" in err and "Traceback" not in err


def test_commands_print_one_line_and_debug_shows_the_traceback(capsys, monkeypatch):
    @command
    def boom(argv):
        raise OSError(errno.ENOSPC, "No space left on device", "/data/out.png")

    assert boom([]) == 1
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "error: /data/out.png: No space left on device (free disk space and run the same command again)"
    with pytest.raises(OSError):
        boom(["--debug"])
    monkeypatch.setenv("BPPJAX_DEBUG", "1")
    with pytest.raises(OSError):
        boom([])


def test_describe_names_the_problem():
    assert describe(FileNotFoundError("image file not found: a.png")) == "image file not found: a.png"
    assert describe(PermissionError(errno.EACCES, "Permission denied", "/x")).startswith("/x: Permission denied (check")


def test_analyze_skips_a_corrupt_image_and_reports_a_missing_folder(tmp_path, capsys):
    import bppjax
    from bppjax.analyze import main
    from bppjax.image.io import write_image

    c = default_config("tiny")
    model = bppjax.build_model(c.model)
    import jax

    params = model.init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))["params"]
    bppjax.save_model(tmp_path / "wd", c, params)
    images = tmp_path / "images"
    write_image(images / "good.png", np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    (images / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code = main(["--checkpoint", str(tmp_path / "wd"), "--images", str(images), "--out", str(tmp_path / "out"),
                 "--scale", "2", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and "bad.png" in err and "Traceback" not in err
    assert (tmp_path / "out" / "good" / "linearscope.png").is_file()
    code = main(["--checkpoint", str(tmp_path / "wd"), "--images", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o2")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --images") and "nowhere" in err


def test_evaluate_stops_on_a_bad_benchmark_file_with_one_line(tmp_path, capsys):
    from bppjax.evaluate import main
    from bppjax.image.io import write_image

    folder = tmp_path / "Bench"
    write_image(folder / "a.png", np.random.default_rng(0).integers(0, 256, (24, 24, 3), dtype=np.uint8))
    (folder / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert main(["--data", str(folder), "--scales", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "b.png" in err and "Traceback" not in err and err.count("error:") == 1
