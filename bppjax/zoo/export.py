"""Turn a trained workdir into a shipped zoo model: weights, SHA-256 and model card.

``export_model`` writes ``<name>.msgpack`` (float32 parameters) and
``<name>.json`` (the model card) atomically into the zoo folder, then scores the
*written* weights with ``bppjax.evaluation.evaluate`` on the benchmark folders
given, so the card's table is the table of the file that ships.

A model trained in several stages (a warm start from another run) is
exported with its ``stages``: one record per training run, first to last,
each with its ``config``, ``steps`` and measured ``wall_seconds`` (and, as
known, ``init_from``, ``machine``, ``date``, ``note``); the card's wall time
is then their sum, the cost of the whole recipe. ``choices`` says how the
recipe and the checkpoint were chosen.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import jax
import numpy as np
from flax import serialization

from bppjax.evaluation import evaluate
from bppjax.workdir import load_model
from bppjax.zoo import CARD_SUFFIX, WEIGHTS_SUFFIX, ZOO_DIR, _cards, pretrained, sha256

#: Published SRCNN PSNR (Y_M) of the paper's Table 3 (Set14, B100) and SRCNN's own Set5 figures.
SRCNN = {
    2: {"Set5": 36.66, "Set14": 32.29, "B100": 31.36},
    3: {"Set5": 32.75, "Set14": 29.30, "B100": 28.41},
    4: {"Set5": 30.48, "Set14": 27.61, "B100": 26.91},
}


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def portable(value: Any) -> Any:
    """``value`` (a card's config, a command line) with the machine's absolute paths taken out.

    A path inside a ``shared`` folder is written as a user beside the repository
    runs it (``/x/y/shared/data/T91`` -> ``../shared/data/T91``); any other
    absolute path as a placeholder naming its last part (``<T91 folder>``).
    Dicts and lists are mapped; in a string every space-separated word is.
    """
    if isinstance(value, dict):
        return {k: portable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable(v) for v in value]
    if not isinstance(value, str):
        return value
    if " " in value:
        return " ".join(portable(word) for word in value.split(" "))
    if not os.path.isabs(value):
        return value
    parts = Path(value).parts
    if "shared" in parts:
        i = len(parts) - 1 - parts[::-1].index("shared")
        return str(Path("..", *parts[i:]))
    return f"<{Path(value).name} folder>"


#: Keys every stage record must have, and the ones it may have.
STAGE_KEYS = ("config", "steps", "wall_seconds")
STAGE_OPTIONAL = ("init_from", "machine", "date", "note")


def check_stages(stages: Any, source: str = "stages") -> list[dict[str, Any]]:
    """``stages`` as a list of stage records; ValueError naming ``source``, the stage and the key that is wrong."""
    if not isinstance(stages, (list, tuple)) or not stages:
        raise ValueError(f"{source}: expected a non-empty list of stages, got {type(stages).__name__}")
    out = []
    for i, stage in enumerate(stages):
        where = f"{source}: stage {i + 1}"
        if not isinstance(stage, dict):
            raise ValueError(f"{where}: expected an object with {', '.join(STAGE_KEYS)}, got {type(stage).__name__}")
        missing = [k for k in STAGE_KEYS if k not in stage]
        unknown = [k for k in stage if k not in STAGE_KEYS + STAGE_OPTIONAL]
        if missing or unknown:
            raise ValueError(f"{where}: " + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                                       + ([f"unknown keys {', '.join(unknown)}"] if unknown else [])))
        for key, kind in (("steps", int), ("wall_seconds", (int, float))):
            if isinstance(stage[key], bool) or not isinstance(stage[key], kind) or stage[key] <= 0:
                raise ValueError(f"{where}: {key} must be a positive number, got {stage[key]!r}")
        out.append(portable(dict(stage)))
    return out


def _training_data(config: Any) -> list[str]:
    src = config.data.train
    if src.source == "folder":
        return [Path(d).name for d in src.dirs]
    if src.source == "embedded":
        return [f"embedded:{n}" for n in src.names]
    return [str(src.get(src.source, src.source))]


def export_model(
    workdir: str | Path,
    name: str,
    *,
    command: str,
    wall_seconds: float | None = None,
    data_dirs: Sequence[str | Path],
    scales: Sequence[float] | None = None,
    description: str = "",
    which: str = "latest",
    folder: str | Path = ZOO_DIR,
    progress: bool = True,
    stages: Sequence[dict[str, Any]] | None = None,
    choices: str = "",
) -> dict[str, Any]:
    """Write the weights and model card of ``workdir``'s checkpoint as zoo model ``name``; returns the card.

    ``scales`` default to the training config's ``data.scales``; the card's
    evaluation is of the weights as written (loaded back through ``pretrained``).
    ``wall_seconds`` is the measured training time; with ``stages`` it defaults
    to their sum (and must equal it if given), and the card's ``steps`` count
    every stage.
    """
    if stages is not None:
        stages = check_stages(stages)
        total = round(sum(float(s["wall_seconds"]) for s in stages), 1)
        if wall_seconds is not None and abs(float(wall_seconds) - total) > 1.0:
            raise ValueError(f"wall_seconds {wall_seconds} is not the sum of the stages' wall_seconds ({total})")
        wall_seconds = total
    if wall_seconds is None:
        raise ValueError("give the measured wall_seconds of the training, or its stages")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    loaded = load_model(workdir, which=which)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), loaded.params)
    weights = folder / f"{name}{WEIGHTS_SUFFIX}"
    _atomic_write(weights, serialization.msgpack_serialize(params))
    config = loaded.config
    scales = list(scales or config.data.scales)
    machine = f"{os.cpu_count()} CPU cores, {_cpu_name()}"
    steps = int(loaded.step) if stages is None else sum(int(s["steps"]) for s in stages)
    if stages is not None and int(stages[-1]["steps"]) != int(loaded.step):
        raise ValueError(f"the last stage has {stages[-1]['steps']} steps, {workdir}'s checkpoint is at step {loaded.step}")
    card: dict[str, Any] = {
        "name": name,
        "description": description,
        "weights": weights.name,
        "sha256": sha256(weights),
        "params": int(sum(np.size(a) for a in jax.tree.leaves(params))),
        "preset_shape": {"levels": len(tuple(config.model.features)), "features": list(config.model.features), "depth": int(config.model.depth)},
        "training": {
            "data": _training_data(config),
            "validation": _training_data(type(config)({"data": {"train": config.data.val}})) if config.data.val.source else [],
            "command": portable(command),
            "steps": steps,
            "checkpoint": f"{which} (step {loaded.step})",
            "seed": int(config.train.seed),
            "wall_seconds": float(wall_seconds),
            "machine": machine,
            "date": datetime.date.today().isoformat(),
            **({"stages": stages} if stages is not None else {}),
            **({"choices": choices} if choices else {}),
        },
        "steps": steps,
        "wall_seconds": float(wall_seconds),
        "config": portable(json.loads(json.dumps(config.to_dict(), default=list))),
    }
    _atomic_write(folder / f"{name}{CARD_SUFFIX}", (json.dumps(card, indent=2) + "\n").encode())
    _cards.cache_clear()

    shipped = pretrained(name, folder=folder)
    # the LoadedModel itself, so that evaluate tells a factor-conditioned model each factor it scores
    results = evaluate(shipped, data_dirs, scales, convention="Y_M", progress=progress)
    data_args = " ".join(portable(str(d)) for d in data_dirs)
    card["evaluation"] = {
        "convention": "Y_M",
        "command": f"python -m bppjax.evaluate --checkpoint {name} --data {data_args} --scales {' '.join(map(str, scales))}",
        "results": {d: {f"{s}": v for s, v in r.items()} for d, r in results.items()},
        "srcnn_psnr": {f"{s}": SRCNN[s] for s in scales if s in SRCNN},
    }
    _atomic_write(folder / f"{name}{CARD_SUFFIX}", (json.dumps(card, indent=2) + "\n").encode())
    _cards.cache_clear()
    return card


__all__ = ["SRCNN", "STAGE_KEYS", "check_stages", "export_model", "portable"]
