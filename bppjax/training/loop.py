"""``train_and_evaluate(config, workdir)``: the whole training run, resumable from its workdir.

Order of work: validate the config (no I/O), read and degrade the data, build
the model and optimizer, restore the latest checkpoint if the workdir has one,
then loop: draw batch k = f(seed, k), one jitted ``train_step``, and at the
configured cadence log, validate and checkpoint. A restarted command resumes
from the latest checkpoint with the same parameters, optimizer moments, RNG
and data position, so it continues exactly as the uninterrupted run would.

The run holds its workdir's lock (``training.lock``) from before it writes
anything until it returns, and SIGTERM / SIGINT during the loop save the step
in flight and raise ``TrainingInterrupted`` (``training.signals``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils
from tqdm.auto import tqdm

from bppjax import workdir as ckpt
from bppjax.data.pipeline import build_sampler, build_val, describe
from bppjax.data.sampler import PatchSampler, local_slice, validate_state
from bppjax.models.layers import compiler_options
from bppjax.models import conditioned_on_factor, input_space
from bppjax.models.bpp import FACTOR_FILM
from bppjax.models.presets import build_model
from bppjax.training import parallel
from bppjax.training.config import ConfigError, validate_config
from bppjax.training.curve import CURVE_FILE, plot_curve
from bppjax.training.data_identity import data_identity, identity_changes
from bppjax.training.lock import WorkdirBusyError, workdir_lock
from bppjax.training.signals import StopSignals, TrainingInterrupted
from bppjax.training.state import TrainState, create_train_state, make_optimizer
from bppjax.training.step import train_step
from bppjax.training.validation import Validator
from bppjax.training.writers import METRICS_FILE, MetricWriter, read_records


class NonFiniteLossError(FloatingPointError):
    """The loss, the parameters or the optimizer state became NaN or Inf; the run stopped without saving that state."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (disk full, permissions); earlier checkpoints are intact."""


def _complete_steps(workdir: Path) -> list[int]:
    """Steps with a finished checkpoint folder (Orbax renames a checkpoint into place when it is complete)."""
    folder = workdir / ckpt.CHECKPOINT_DIR
    return sorted(int(p.name) for p in folder.iterdir() if p.is_dir() and p.name.isdigit()) if folder.is_dir() else []


def _reason(error: BaseException) -> str:
    """An OS error as ``<file>: <what>``; anything else as its text (or its type, when it has none)."""
    if isinstance(error, OSError) and error.strerror:
        return f"{error.filename}: {error.strerror}" if error.filename else error.strerror
    return str(error).strip() or type(error).__name__


def _write_failed(workdir: Path, step: int, error: BaseException, what: str = "") -> CheckpointWriteError:
    """The one message of a run stopped by a failed write: what failed, at which step, and the last good checkpoint."""
    good = [s for s in _complete_steps(workdir) if s != step or what]
    last = f"step {good[-1]} in {workdir / ckpt.CHECKPOINT_DIR}" if good else "none (no checkpoint was written)"
    return CheckpointWriteError(
        f"could not {what or f'save the checkpoint of step {step}'}: {_reason(error)}. Training stopped; the last "
        f"complete checkpoint is {last}. Fix the cause (e.g. free disk space) and run the same command again to resume."
    )


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [jax.numpy.isfinite(x).all() for x in jax.tree.leaves(tree) if jax.numpy.issubdtype(x.dtype, jax.numpy.inexact)]
    return jax.numpy.all(jax.numpy.stack(leaves)) if leaves else jax.numpy.asarray(True)


class _Saver:
    """Checkpoints of one run: finite-state check first, then an (async) Orbax save; write errors name the step."""

    def __init__(self, manager: ocp.CheckpointManager, workdir: Path):
        self.manager, self.workdir, self.in_flight, self.failed = manager, workdir, None, False

    def finish(self) -> None:
        """Wait for the save in flight; a failure surfaces here (async saves fail in a background thread)."""
        step, self.in_flight = self.in_flight, None
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - Orbax re-raises the writer thread's error, whatever its type
            self.failed = True
            raise _write_failed(self.workdir, step, e) from None

    def save(self, step: int, state: TrainState, meta: dict[str, Any]) -> None:
        rest = {"step": state.step, "opt_state": state.opt_state}
        if not bool(_all_finite((state.params, state.opt_state))):
            raise NonFiniteLossError(f"parameters or optimizer state are not finite after step {step} (the loss was finite)")
        self.finish()
        try:
            ckpt.save_checkpoint(self.manager, step, state.params, rest, meta)
        except Exception as e:  # noqa: BLE001 - OSError, or Orbax's wrappers of it
            self.failed = True
            raise _write_failed(self.workdir, step, e) from None
        self.in_flight = step


@contextlib.contextmanager
def _quiet_checkpoint_errors():
    """Orbax and asyncio log every failed write at length; the run reports it once, in one message."""
    loggers = [logging.getLogger(n) for n in ("absl", "asyncio", "orbax", "orbax.checkpoint")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.CRITICAL)
    hook = sys.unraisablehook
    sys.unraisablehook = functools.partial(_drop_closed_loop_callbacks, hook)
    try:
        yield
    finally:
        sys.unraisablehook = hook
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _drop_closed_loop_callbacks(hook: Any, unraisable: Any) -> None:
    """Drop TensorStore's late callbacks into Orbax's closed event loop after a failed write.

    When a write fails, Orbax closes its event loop while TensorStore's other writes are still
    finishing; each of them then reports ``RuntimeError: Event loop is closed`` from a C++ thread
    as an unraisable exception. Everything else goes to ``hook``.
    """
    error, tb = unraisable.exc_value, unraisable.exc_traceback
    last = traceback.extract_tb(tb)[-1:] if tb is not None else []
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed" and last and "asyncio" in last[0].filename:
        return
    hook(unraisable)


def _close(manager: ocp.CheckpointManager, writer: MetricWriter, failed: bool) -> None:
    """Wait for the last save and close the run's files; after a failed write, close without reporting it again."""
    if not failed:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        return
    with contextlib.suppress(Exception):  # the failure was reported once already
        manager.close()
    with contextlib.suppress(Exception):
        writer.close()


@dataclasses.dataclass
class TrainResult:
    """What a finished run returns (the workdir holds the rest)."""

    state: TrainState
    step: int
    val: dict[str, float]
    workdir: Path
    seconds: float


def _say(msg: str) -> None:
    if jax.process_index() == 0:
        tqdm.write(msg, file=sys.stderr)


def _config_diff(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _config_diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, default=list) != json.dumps(b, default=list):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _record_config(workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Write config.json, warning when it changes the config of a run being resumed."""
    path = workdir / ckpt.CONFIG_FILE
    if path.is_file():
        old = json.loads(path.read_text())
        new = json.loads(json.dumps(config.to_dict(), default=list))
        diff = _config_diff(old, new)
        if diff:
            _say(f"note: config differs from {path}: " + "; ".join(diff[:6]) + (" ..." if len(diff) > 6 else ""))
    ckpt.save_config(workdir, config)


def _abstract(tree: Any) -> Any:
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def _restore(manager: ocp.CheckpointManager, step: int, state: TrainState, sampler: PatchSampler) -> tuple[TrainState, str]:
    """The state saved at ``step``; a params-only checkpoint (``save_model``) warm-starts from step 0.

    A checkpoint of a run on other data (images, their sizes, scales, patch or batch) is refused with a
    ``ConfigError`` naming what changed: its continuation would not be the run it claims to continue.
    """
    has_state = (Path(manager.directory) / str(step) / "state").is_dir()
    items: dict[str, Any] = {"params": ocp.args.StandardRestore(_abstract(state.params)), "meta": ocp.args.JsonRestore()}
    if has_state:
        rest = {"step": state.step, "opt_state": state.opt_state}
        items["state"] = ocp.args.StandardRestore(ckpt.state_target(manager, step, _abstract(rest)))
    try:
        out = manager.restore(step, args=ocp.args.Composite(**items))
    except (ValueError, KeyError) as e:
        raise ValueError(f"checkpoint {manager.directory}/{step} does not fit this config's model/optimizer: {e}") from e
    meta = dict(out["meta"] or {})
    if not has_state:
        return state.replace(params=out["params"]), f"initialised parameters from params-only checkpoint {step}"
    validate_state(meta.get("data", {}), sampler)
    changes = identity_changes(meta.get("data", {}).get("identity", {}), data_identity(sampler))
    if changes:
        workdir = Path(manager.directory).parent
        raise ConfigError(
            f"cannot resume {workdir}: its checkpoint {step} was trained on other data ({'; '.join(changes)}); "
            f"restore those settings, or train in a new workdir starting from its weights (--checkpoint {workdir})"
        )
    s = out["state"]
    return state.replace(step=s["step"], params=out["params"], opt_state=s["opt_state"]), f"resumed from step {step}"


def _flush(pending: list[tuple[int, dict[str, jax.Array]]]) -> list[tuple[int, dict[str, float]]]:
    """Fetch queued step metrics; stop at the first non-finite loss, naming its step."""
    rows = [(s, {k: float(v) for k, v in m.items()}) for s, m in jax.device_get(pending)]
    pending.clear()
    for s, m in rows:
        if not math.isfinite(m["loss"]):
            raise NonFiniteLossError(f"loss is {m['loss']} at step {s}")
    return rows


def _warm_start(state: TrainState, init_from: str | Path, model_cfg: ml_collections.ConfigDict) -> TrainState:
    """``state`` with the parameters of a workdir or zoo model (shapes checked against this config's model)."""
    from bppjax.workdir import check_param_shapes, load_model  # noqa: PLC0415

    try:
        loaded = load_model(init_from)
        source = dict(loaded.params)
        if FACTOR_FILM in state.params and FACTOR_FILM not in source:  # an unconditioned model: conditioning starts neutral
            source[FACTOR_FILM] = state.params[FACTOR_FILM]
            _say(f"note: {init_from} is not conditioned on the SR factor; its conditioning starts at zero (the model as loaded)")
        check_param_shapes(source, state.params, source=f"--checkpoint {init_from}")
    except (FileNotFoundError, ValueError) as e:
        raise ConfigError(f"cannot warm-start from {init_from}: {e}") from e
    if loaded.config.model.to_dict() != model_cfg.to_dict():
        _say(f"note: {init_from}'s model config differs from this run's; only the parameter shapes have to match")
    params = jax.tree.map(lambda new, old: jax.device_put(jax.numpy.asarray(new, old.dtype), old.sharding), source, state.params)
    return state.replace(params=params)


def train_and_evaluate(
    config: ml_collections.ConfigDict, workdir: str | Path, init_from: str | Path | None = None
) -> TrainResult:
    """Train ``config`` in ``workdir`` (resuming if it holds checkpoints) and validate.

    ``init_from`` (a workdir or a zoo model name such as ``"bpp-sr-x2"``)
    initialises the parameters of a fresh run (fine-tuning); a workdir that
    already holds checkpoints resumes from them instead.

    Raises:
      ConfigError: a config problem, found before anything is compiled; or a resume on other
        data than the checkpoint's (the message names what changed).
      WorkdirBusyError: another training run holds ``workdir`` (nothing was written).
      TrainingInterrupted: SIGTERM or SIGINT stopped the run; the step in flight was saved
        and the same call resumes from it.
      NonFiniteLossError: the loss, parameters or optimizer state became NaN/Inf
        (checked at every log step and before every save; such a state is never saved).
      CheckpointWriteError: a checkpoint could not be written (the earlier ones are intact;
        rerunning the same command resumes from the last complete one).
    """
    t0 = time.time()
    workdir = Path(workdir)
    parallel.maybe_initialize_distributed(bool(config.train.distributed), config.train)
    validate_config(config, jax.device_count(), jax.process_count())
    with contextlib.ExitStack() as scope:
        # One process locks the workdir; a single-process run on an existing workdir does so before
        # reading the data, so a second run is refused at once.
        locked = jax.process_count() == 1 and workdir.is_dir() and _lock(scope, workdir)
        try:  # data errors are config errors: reported before any compilation
            model = build_model(config.model)
            space = input_space(model)  # the image the model takes: upscaled or LR
            sampler = build_sampler(config.data, int(config.train.seed), space, with_factor=conditioned_on_factor(model))
            val_pairs = build_val(config.data, space)
        except (ValueError, FileNotFoundError, MemoryError, ImportError, RuntimeError) as e:
            raise ConfigError(str(e)) from e
        _say(f"data: train {describe(sampler.pairs)}; val {describe(val_pairs)}")
        workdir.mkdir(parents=True, exist_ok=True)
        if not locked:
            _lock(scope, workdir)
        return _train(config, workdir, sampler, val_pairs, init_from, t0)


def _lock(scope: contextlib.ExitStack, workdir: Path) -> bool:
    """Process 0 takes the workdir lock for the scope; every process raises if it could not."""
    busy: WorkdirBusyError | None = None
    if jax.process_index() == 0:
        try:
            scope.enter_context(workdir_lock(workdir))
        except WorkdirBusyError as e:
            busy = e
    if jax.process_count() > 1:
        if int(multihost_utils.broadcast_one_to_all(np.int32(busy is not None))):
            raise busy or WorkdirBusyError(f"workdir {workdir} is in use by another training run (process 0 could not lock it)")
    elif busy is not None:
        raise busy
    return True


def _train(
    config: ml_collections.ConfigDict, workdir: Path, sampler: PatchSampler, val_pairs: list, init_from: str | Path | None,
    t0: float,
) -> TrainResult:
    """The run once the data is read and the workdir is held: restore or initialise, then the loop."""
    tc, main_host = config.train, jax.process_index() == 0
    model = build_model(config.model)
    steps = int(tc.steps)
    tx, schedule = make_optimizer(config.optim, steps)
    mesh = parallel.data_mesh()
    rep, bsh = parallel.replicated(mesh), parallel.batch_sharded(mesh)
    init = jax.jit(functools.partial(create_train_state, model, tx, int(tc.seed), int(config.data.patch)), out_shardings=rep)
    state = init()

    manager = ckpt.checkpoint_manager(workdir, int(tc.keep), async_save=bool(tc.async_checkpoint))
    latest = manager.latest_step()
    if latest is not None:
        state, how = _restore(manager, latest, state, sampler)
        _say(f"{how} in {workdir}")
    elif init_from is not None:
        state = _warm_start(state, init_from, config.model)
        _say(f"initialised parameters from {init_from}")
    start = int(jax.device_get(state.step))
    if main_host:  # after a successful restore, so a config that does not fit leaves config.json alone
        _record_config(workdir, config)
    if start >= steps:
        _say(f"{workdir} is already at step {start} >= train.steps={steps}; raise train.steps to train further")

    step_fn = jax.jit(
        functools.partial(train_step, loss=tc.loss, schedule=schedule, peak=sampler.peak),
        in_shardings=(rep, bsh),
        out_shardings=(rep, rep),
        donate_argnums=(0,),
        compiler_options=compiler_options(config.model.remat),  # lets remat save memory on XLA:CPU
    )
    validator = Validator(val_pairs, model, config.eval.convention, int(config.eval.crop_border), int(config.eval.max_images),
                          patch=int(config.data.patch))
    writer = MetricWriter(workdir, enabled=main_host, resume_step=start)
    n_params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(state.params))
    _say(f"model: {config.model.arch}/{config.model.kind}, {n_params:,} parameters; {jax.device_count()} device(s) "
         f"({jax.devices()[0].platform}); steps {start} -> {steps}; workdir {workdir}")

    identity = data_identity(sampler)
    pending: list[tuple[int, dict[str, jax.Array]]] = []
    val: dict[str, float] = {}
    stopped: int | None = None
    bar = tqdm(total=steps, initial=start, unit="step", dynamic_ncols=True, disable=not (tc.progress and main_host))
    t_log, n_log = time.time(), 0
    saver = _Saver(manager, workdir)
    with _quiet_checkpoint_errors(), StopSignals() as signals:
        try:
            for step in range(start, steps):
                local = sampler.local_batch(step, jax.process_index(), jax.process_count())
                state, metrics = step_fn(state, parallel.to_global(local, bsh))
                done = step + 1
                pending.append((done, metrics))
                if len(pending) > 1:  # at most two steps in flight: an honest progress bar, still overlapped
                    pending[-2][1]["loss"].block_until_ready()
                bar.update(1)
                n_log += 1
                stopped = signals.requested()
                is_last = done == steps
                do_val = stopped is None and bool(val_pairs) and (is_last or (tc.val_every and done % tc.val_every == 0))
                do_ckpt = is_last or done % tc.ckpt_every == 0 or stopped is not None
                do_log = is_last or done % tc.log_every == 0 or do_val or done % tc.ckpt_every == 0
                if not (do_log or do_ckpt):
                    continue
                rows = _flush(pending)
                meta: dict[str, Any] = {"step": done, "data": {**sampler.state(done), "identity": identity}}
                if do_log:
                    now = time.time()
                    last = rows[-1][1]
                    rec = {**last, "loss": float(np.mean([m["loss"] for _, m in rows])), "steps_per_sec": n_log / max(now - t_log, 1e-9)}
                    writer.write(done, "train", rec)
                    bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{last['lr']:.2e}", refresh=False)
                    t_log, n_log = now, 0
                if do_val:
                    val = validator(state.params)
                    writer.write(done, "val", val)
                    meta[ckpt.BEST_METRIC] = val["psnr"]
                    _say(f"step {done}: val PSNR {val['psnr']:.3f} dB (input {val['input_psnr']:.3f}, "
                         f"gain {val['psnr_gain']:+.3f}), SSIM {val['ssim']:.4f} (input {val['input_ssim']:.4f})")
                    t_log = time.time()
                if do_ckpt:
                    saver.save(done, state, meta)
                if stopped is not None:
                    break
            saver.finish()
        except OSError as e:  # the metrics or TensorBoard files (checkpoint writes raise CheckpointWriteError)
            saver.failed = True
            raise _write_failed(workdir, int(jax.device_get(state.step)), e, what=f"write the training logs in {workdir}") from None
        except NonFiniteLossError as e:
            with contextlib.suppress(Exception):
                saver.finish()
            good = _complete_steps(workdir)
            raise NonFiniteLossError(
                f"{e}; training stopped. The last good checkpoint is "
                + (f"step {good[-1]} in {workdir / ckpt.CHECKPOINT_DIR}" if good else "none (no checkpoint was written)")
                + ". Lower optim.lr or set optim.clip_norm."
            ) from None
        finally:
            bar.close()
            _close(manager, writer, failed=saver.failed)
    if stopped is not None:
        raise TrainingInterrupted(stopped, int(jax.device_get(state.step)), workdir)
    seconds = time.time() - t0
    if main_host and tc.curve:
        plot_curve(read_records(workdir / METRICS_FILE), workdir / CURVE_FILE, title=str(workdir))
    if val:
        _say(f"done: {steps} steps in {seconds:.0f} s; val PSNR {val['psnr']:.3f} dB vs input {val['input_psnr']:.3f} dB "
             f"({val['psnr_gain']:+.3f} dB); workdir {workdir}")
        if val["psnr"] < val["input_psnr"]:
            _say(f"warning: the trained model is worse than its input on the validation images ({val['psnr']:.3f} < "
                 f"{val['input_psnr']:.3f} dB PSNR): train longer, lower optim.lr, or check the data")
    else:
        _say(f"done: {steps} steps in {seconds:.0f} s; workdir {workdir}")
    return TrainResult(state=state, step=int(jax.device_get(state.step)), val=val, workdir=workdir, seconds=seconds)
