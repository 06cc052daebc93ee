"""The workdir: ``config.json``, Orbax checkpoints, and ``load_model``.

A workdir written by ``python -m bppjax.train`` (or by ``save_model``) holds::

    config.json          the full training config (model, data, optim, train, eval)
    checkpoints/<step>/  Orbax items: params, state (step, optimizer), meta (JSON)
    metrics.jsonl        one JSON object per logged step (training only)

Evaluation, enhancement and analysis start from ``load_model(workdir)``. The
parameters are restored as a plain pytree (no target structure), so a config
override that keeps parameter shapes (e.g. ``model.kind=ode``) just works, and
one that does not is reported by parameter path.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as ocp_policies

from bppjax import zoo
from bppjax.loaded_model import LoadedModel, check_param_shapes, param_shapes
from bppjax.models.presets import build_model
from bppjax.overrides import apply_overrides

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
#: Key of the validation metric ranking checkpoints (in ``meta`` and Orbax metrics).
BEST_METRIC = "val_psnr"
#: Entries of the ``state`` item that checkpoints of earlier versions hold and training no longer reads.
RETIRED_STATE = ("rng",)

PyTree = Any


# --------------------------------------------------------------------------- config.json


def save_config(workdir: str | Path, config: ml_collections.ConfigDict) -> Path:
    """Write ``config.json`` (sorted, indented) so the workdir describes itself."""
    path = Path(workdir) / CONFIG_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(config.to_dict(), indent=2, sort_keys=True, default=_json_default) + "\n")
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def _json_default(x: Any) -> Any:
    if isinstance(x, (np.generic,)):
        return x.item()
    if isinstance(x, (tuple, set)):
        return list(x)
    raise TypeError(f"config value {x!r} of type {type(x).__name__} is not JSON-serialisable")


def load_config(workdir: str | Path, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
    """The workdir's ``config.json`` as a ConfigDict, with ``KEY=VALUE`` overrides applied."""
    workdir = _existing_workdir(workdir)
    path = workdir / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: {workdir} was not written by bppjax.train or bppjax.workdir.save_model")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path} is not valid JSON: {e}") from e
    return apply_overrides(ml_collections.ConfigDict(data), overrides)


def _existing_workdir(workdir: str | Path) -> Path:
    path = Path(workdir)
    if not path.is_dir():
        if path.is_file():
            raise FileNotFoundError(f"{path} is a file, not a workdir written by bppjax.train or save_model")
        shipped = ", ".join(zoo.names()) or "none"
        if "/" not in str(workdir) and str(workdir).startswith("bpp-"):
            raise zoo.ZooError(f"unknown zoo model {workdir!r}; the shipped models are: {shipped}")
        raise FileNotFoundError(f"workdir {path} does not exist (nor is it a zoo model name: {shipped})")
    return path


# --------------------------------------------------------------------------- manager


def checkpoint_manager(
    workdir: str | Path, keep: int = 3, *, keep_best: bool = True, async_save: bool = True, read_only: bool = False
) -> ocp.CheckpointManager:
    """Orbax manager of ``workdir/checkpoints``: keeps the last ``keep`` steps plus the best by val PSNR.

    Saves are atomic (Orbax writes to a temporary directory and renames it), so a
    crash mid-save leaves the previous checkpoints intact. The manager ranks
    steps by ``BEST_METRIC`` (``best_fn``), so Orbax stores each step's metrics
    with it and ``manager.best_step()`` reads them back without restoring anything.
    """
    policies: list[Any] = [ocp_policies.LatestN(max(int(keep), 1))]
    if keep_best:
        policies.append(
            ocp_policies.BestN(get_metric_fn=lambda m: m[BEST_METRIC], n=1, keep_checkpoints_without_metrics=False)
        )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=ocp_policies.AnyPreservationPolicy(policies),
        best_fn=_best_metric,
        best_mode="max",
        enable_async_checkpointing=async_save,
        read_only=read_only,
        create=not read_only,
    )
    handlers = {
        "params": ocp.StandardCheckpointHandler(),
        "state": ocp.StandardCheckpointHandler(),
        "meta": ocp.JsonCheckpointHandler(),
    }
    return ocp.CheckpointManager(Path(workdir).absolute() / CHECKPOINT_DIR, options=options, item_handlers=handlers)


def _best_metric(metrics: Mapping[str, float]) -> float:
    return float(metrics[BEST_METRIC])


def save_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    params: PyTree,
    state: PyTree | None = None,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Save one step. ``state`` (step, optimizer state) is needed to resume; ``meta`` is JSON.

    ``meta[BEST_METRIC]``, when present and finite, ranks the checkpoint for ``which="best"``.
    """
    meta = dict(meta or {})
    meta.setdefault("step", int(step))
    items: dict[str, Any] = {"params": ocp.args.StandardSave(params), "meta": ocp.args.JsonSave(meta)}
    if state is not None:
        items["state"] = ocp.args.StandardSave(state)
    score = meta.get(BEST_METRIC)
    metrics = {BEST_METRIC: float(score)} if score is not None and math.isfinite(float(score)) else None
    manager.save(int(step), args=ocp.args.Composite(**items), metrics=metrics)


def _read_manager(workdir: str | Path) -> ocp.CheckpointManager:
    workdir = _existing_workdir(workdir)
    if not (workdir / CHECKPOINT_DIR).is_dir():
        raise FileNotFoundError(f"no checkpoint in {workdir} (no {CHECKPOINT_DIR}/ folder)")
    manager = checkpoint_manager(workdir, read_only=True)
    if not manager.all_steps():
        raise FileNotFoundError(f"no checkpoint in {workdir / CHECKPOINT_DIR}")
    return manager


def read_meta(manager: ocp.CheckpointManager, step: int) -> dict[str, Any]:
    """The JSON ``meta`` item of a step ({} for checkpoints without one)."""
    try:
        return dict(manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"] or {})
    except (FileNotFoundError, KeyError, ValueError):
        return {}


def select_step(manager: ocp.CheckpointManager, which: str = "best") -> tuple[int, str]:
    """Step to load: the best by ``BEST_METRIC`` (if any step has one) or the latest.

    The best is Orbax's ``best_step()``, from the metrics stored with each step.
    Workdirs written before the manager ranked steps (``best_fn``) have no stored
    metrics; for them the score is read from each step's ``meta`` item.
    """
    if which not in ("best", "latest"):
        raise ValueError(f"which must be 'best' or 'latest'; got {which!r}")
    steps = manager.all_steps()
    if which == "best":
        best = manager.best_step()
        if best is not None and best in steps and _has_metrics(manager, best):
            return int(best), "best"
        scored = []
        for s in steps:
            v = read_meta(manager, s).get(BEST_METRIC)
            if v is not None and math.isfinite(float(v)):
                scored.append((float(v), s))
        if scored:
            return max(scored)[1], "best"
    return max(steps), "latest"


def _has_metrics(manager: ocp.CheckpointManager, step: int) -> bool:
    """Whether Orbax stored ``BEST_METRIC`` with ``step`` (``best_step`` falls back to the latest otherwise)."""
    metrics = manager.metrics(step) if hasattr(manager, "metrics") else None
    return bool(metrics) and BEST_METRIC in metrics


def state_target(manager: ocp.CheckpointManager, step: int, target: Mapping[str, Any]) -> dict[str, Any]:
    """The abstract ``state`` item to restore ``step`` with: ``target`` plus the ``RETIRED_STATE`` entries it holds.

    Orbax restores a tree only whole, so a checkpoint that still holds the
    retired step RNG restores it (as saved, on this process's first device),
    and the caller ignores it.
    """
    tree = manager.item_metadata(step)["state"]
    tree = getattr(tree, "tree", tree)
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    extra = {k: jax.ShapeDtypeStruct(tuple(tree[k].shape), tree[k].dtype, sharding=device)
             for k in RETIRED_STATE if isinstance(tree, Mapping) and k in tree}
    return {**target, **extra}


def restore_params(manager: ocp.CheckpointManager, step: int) -> PyTree:
    """Parameters of ``step`` as a plain pytree on this process's first device.

    The target is built from the saved shapes and dtypes, not from the saved
    sharding, so a checkpoint written on N devices loads on one (and vice versa).
    """
    tree = manager.item_metadata(step)["params"]
    tree = getattr(tree, "tree", tree)
    if tree is None:
        raise FileNotFoundError(f"checkpoint {manager.directory}/{step} has no params item")
    device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device), tree)
    out = manager.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(target)))
    return out["params"]


# --------------------------------------------------------------------------- public API


def load_model(workdir: str | Path, overrides: Sequence[str] = (), which: str = "best", step: int | None = None) -> LoadedModel:
    """Model, parameters and config of a workdir or of a shipped zoo model.

    Args:
      workdir: a folder written by ``bppjax.train`` or ``save_model``, or the
        name of a zoo model (``bppjax.zoo.names()``, e.g. ``"bpp-sr-x2"``).
      overrides: ``KEY=VALUE`` config overrides (e.g. ``"model.kind=ode"``).
      which: ``"best"`` (by validation PSNR; falls back to the latest when no
        checkpoint has a validation score) or ``"latest"``.
      step: load this step instead (one of the workdir's kept checkpoints).

    Raises:
      FileNotFoundError: missing workdir, ``config.json`` or checkpoint.
      ValueError: the checkpoint's parameter shapes do not fit the (overridden) model config,
        or a zoo name is unknown or its weights fail the SHA-256 check (``bppjax.zoo.ZooError``).
    """
    if zoo.is_zoo_name(workdir):
        return zoo.pretrained(str(workdir), overrides)
    config = load_config(workdir, overrides)
    manager = _read_manager(workdir)
    try:
        if step is None:
            step, used = select_step(manager, which)
        elif int(step) in manager.all_steps():
            step, used = int(step), f"step {step}"
        else:
            raise FileNotFoundError(f"no checkpoint of step {step} in {Path(workdir) / CHECKPOINT_DIR}; kept: {sorted(manager.all_steps())}")
        params = restore_params(manager, step)
    finally:
        manager.close()
    model = build_model(config.model)
    check_param_shapes(params, param_shapes(model, config.model), source=f"checkpoint {Path(workdir) / CHECKPOINT_DIR / str(step)}")
    return LoadedModel(model=model, params=params, config=config, step=int(step), which=used)


def save_model(workdir: str | Path, config: ml_collections.ConfigDict, params: PyTree, step: int = 0) -> Path:
    """Write a loadable workdir (``config.json`` + one params checkpoint) without training.

    ``params`` is the ``params`` collection (``variables["params"]``); its shapes are
    checked against ``config.model`` so a broken port fails here, not at load time.
    """
    if "model" not in config:
        raise ValueError("config has no 'model' group; pass a full training config (e.g. configs/default.py)")
    model = build_model(config.model)
    if isinstance(params, Mapping) and set(params.keys()) == {"params"}:
        params = params["params"]
    check_param_shapes(params, param_shapes(model, config.model), source="params")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    save_config(workdir, config)
    manager = checkpoint_manager(workdir, async_save=False)
    try:
        save_checkpoint(manager, step, jax.tree.map(np.asarray, params), meta={"step": int(step), "source": "save_model"})
        manager.wait_until_finished()
    finally:
        manager.close()
    return workdir


__all__ = [
    "BEST_METRIC", "CHECKPOINT_DIR", "CONFIG_FILE", "LoadedModel", "check_param_shapes", "checkpoint_manager",
    "load_config", "load_model", "param_shapes", "read_meta", "restore_params", "save_checkpoint", "save_config",
    "save_model", "select_step", "state_target", "RETIRED_STATE",
]
