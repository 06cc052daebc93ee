"""Preemption: real signals to real training processes, then resume, compared bit for bit with an uninterrupted run;
one writer per workdir; a second signal during the save leaves the previous checkpoint loadable."""

from __future__ import annotations

import logging
import os
import random
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
from bppjax.train import main
from bppjax.training.lock import LOCK_FILE
from bppjax.training.writers import METRICS_FILE, read_records

REPO = Path(__file__).resolve().parents[1]
TINY = str(REPO / "configs" / "default.py") + ":tiny"
STEPS, EVERY = 24, 8
ARGS = ["--config", TINY, f"--config.train.steps={STEPS}", f"--config.train.ckpt_every={EVERY}", "--config.train.log_every=2",
        "--config.train.val_every=0", "--config.data.val.source=''", "--config.train.progress=False"]

# Each batch is drawn PACE s late (the numbers are unchanged), so that a signal finds the run mid-training; batch STALL
# (when > 0) never comes. With HANG set, a checkpoint save that starts after a stop signal stalls once it is under way,
# writing its step to HANG first.
DRIVER = textwrap.dedent(
    """
    import sys, time
    from bppjax import workdir as ck
    from bppjax.data.sampler import PatchSampler
    from bppjax.training import signals
    pace, stall, hang = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    draw = PatchSampler.local_batch
    PatchSampler.local_batch = lambda self, step, *a: (time.sleep(3600 if 0 < stall <= step else pace), draw(self, step, *a))[1]
    if hang:
        handle, save, asked = signals.StopSignals._handle, ck.save_checkpoint, []
        signals.StopSignals._handle = lambda self, *a: (asked.append(1), handle(self, *a))[1]
        def stalled(manager, step, *args, **kwargs):
            save(manager, step, *args, **kwargs)
            if asked:
                open(hang, "w").write(str(step))
                time.sleep(3600)
        ck.save_checkpoint = stalled
    from bppjax.train import end_process, main
    end_process(main(sys.argv[4:]))
    """
)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """The training processes share one compilation cache: the first compiles, the others load (same executables)."""
    cache = tmp_path_factory.mktemp("jax_cache")
    return dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", XLA_FLAGS="", JAX_COMPILATION_CACHE_DIR=str(cache),
                JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1")


def _start(env: dict[str, str], workdir: Path, pace: float = 0.05, stall: int = 0, hang: str = "") -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(pace), str(stall), hang, *ARGS, "--workdir", str(workdir)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _train(env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bppjax.train", *ARGS, "--workdir", str(workdir)],
                          env=env, capture_output=True, text=True, timeout=300)


def _resume(env: dict[str, str], workdir: Path):
    """Run the same command again to the end; the parameters it reaches."""
    done = _train(env, workdir)
    assert done.returncode == 0 and "resumed from step" in done.stderr, done.stderr[-2000:]
    return ck.load_model(workdir, which="latest")


def _wait(proc: subprocess.Popen, ready, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not ready():
        if proc.poll() is not None:
            raise AssertionError(f"the run ended (status {proc.returncode}) before {what}: {proc.stderr.read()[-2000:]}")
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _training(workdir: Path) -> bool:
    return any(r["kind"] == "train" for r in read_records(workdir / METRICS_FILE))


def _complete(workdir: Path) -> list[int]:
    folder = workdir / ck.CHECKPOINT_DIR
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit() and (p / "_CHECKPOINT_METADATA").is_file()) if folder.is_dir() else []


def _assert_bit_identical(a, b) -> None:
    fa, fb = jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves_with_path(b)
    assert [k for k, _ in fa] == [k for k, _ in fb]
    for (k, x), (_, y) in zip(fa, fb):
        assert np.array_equal(np.asarray(x), np.asarray(y)), f"{jax.tree_util.keystr(k)} differs"


def _process_settings():
    import matplotlib

    loggers = {n: logging.getLogger(n).level for n in ("absl", "asyncio", "orbax", "orbax.checkpoint")}
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    return {"backend": matplotlib.get_backend(), "loggers": loggers, "hook": sys.unraisablehook, "signals": handlers}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, trained here the way a notebook would (a non-Agg plotting backend, curve drawn)."""
    import matplotlib

    workdir = tmp_path_factory.mktemp("reference")
    previous = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        before = _process_settings()
        assert main([*ARGS, "--workdir", str(workdir), "--config.train.curve=True"]) == 0
        after = _process_settings()
    finally:
        matplotlib.use(previous)
    return {"params": ck.load_model(workdir, which="latest").params, "before": before, "after": after, "workdir": workdir}


def test_training_leaves_the_process_alone(reference):
    assert reference["after"] == reference["before"]  # plotting backend, loggers, unraisable hook, signal handlers
    assert reference["before"]["backend"] == "svg"
    assert (reference["workdir"] / "training_curve.png").stat().st_size > 1000


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_saves_the_step_in_flight_and_resume_is_bit_identical(tmp_path, env, reference, signum):
    seed = random.randrange(10**6)
    delay = random.Random(seed).uniform(0.0, 0.8)
    workdir = tmp_path / "w"
    proc = _start(env, workdir)
    try:
        _wait(proc, lambda: _training(workdir), "the first training record")
        time.sleep(delay)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    where = f"(signal {signum.name} {delay:.2f} s after the first record, seed {seed})"
    assert proc.returncode == 128 + signum, f"{where}: status {proc.returncode}: {err[-2000:]}"
    lines = [line for line in err.splitlines() if line.startswith("stopped by")]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    step = int(lines[0].split("step ")[1].split()[0])
    assert 0 < step < STEPS, where
    assert f"stopped by {signum.name}: step {step} is saved in {workdir}; resume with: python -m bppjax.train " in lines[0]
    assert _complete(workdir)[-1] == step, where  # the step it reached, not only the periodic ones
    assert ck.load_model(workdir, which="latest").step == step

    resumed = _resume(env, workdir)
    assert resumed.step == STEPS
    _assert_bit_identical(resumed.params, reference["params"])


def test_a_second_run_on_a_busy_workdir_is_refused_and_runs_after_a_kill(tmp_path, env, reference):
    workdir = tmp_path / "w"
    first = _start(env, workdir, stall=EVERY + 2)  # stands still at step 10, past checkpoint 8
    try:
        _wait(first, lambda: EVERY in _complete(workdir), f"checkpoint {EVERY}")
        config_written = (workdir / ck.CONFIG_FILE).stat().st_mtime_ns
        second = _train(env, workdir)
        assert first.poll() is None
        assert second.returncode == 1, second.stderr[-2000:]
        errors = [line for line in second.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in second.stderr
        assert f"workdir {workdir} is in use by another training run (host " in errors[0]
        assert f", pid {first.pid}, since " in errors[0]
        assert "checkpoint" not in second.stderr and "resumed" not in second.stderr  # refused before reading anything
        assert (workdir / ck.CONFIG_FILE).stat().st_mtime_ns == config_written
        assert f'"pid": {first.pid}' in (workdir / LOCK_FILE).read_text()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert first.returncode == -signal.SIGKILL  # a kill -9 leaves the lock file, but no lock
    _assert_bit_identical(_resume(env, workdir).params, reference["params"])  # no stale lock to clean up


def test_a_second_signal_during_the_save_ends_the_run_and_the_previous_checkpoint_loads(tmp_path, env, reference):
    workdir, marker = tmp_path / "w", tmp_path / "saving"
    proc = _start(env, workdir, hang=str(marker))
    try:
        _wait(proc, lambda: EVERY in _complete(workdir), f"checkpoint {EVERY}")
        proc.send_signal(signal.SIGTERM)
        _wait(proc, marker.is_file, "the stop's checkpoint save")
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == -signal.SIGTERM  # the default action: at once, no clean-up
    stalled = int(marker.read_text())
    assert EVERY in _complete(workdir)
    latest = ck.load_model(workdir, which="latest")
    assert latest.step in (EVERY, stalled)  # the interrupted save either finished in the background or never appeared
    _assert_bit_identical(_resume(env, workdir).params, reference["params"])
