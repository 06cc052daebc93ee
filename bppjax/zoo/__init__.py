"""Trained BPP models shipped inside the package: ``bppjax.pretrained("bpp-sr-x2")``.

Each model is two files in this folder:

* ``<name>.msgpack``: the parameter pytree (``flax.serialization`` msgpack, float32);
* ``<name>.json``: its model card: the full training config, the command that
  trained it, steps, wall time, seed, the SHA-256 of the weights file, and the
  evaluation table with the command that produced it.

``pretrained(name)`` checks the SHA-256 before it deserialises anything and
returns the same ``LoadedModel`` as ``bppjax.load_model(workdir)``; every
``--checkpoint`` option of the command lines accepts a zoo name too.
``python -m bppjax.zoo`` lists the models with their scores.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any, Sequence

import jax
import ml_collections
from flax import serialization

from bppjax.loaded_model import LoadedModel, check_param_shapes, param_shapes
from bppjax.models.presets import build_model, model_config
from bppjax.overrides import apply_overrides

ZOO_DIR = Path(__file__).resolve().parent
WEIGHTS_SUFFIX = ".msgpack"
CARD_SUFFIX = ".json"
#: Model used by ``enhance`` for a factor without a per-factor model.
MULTI_SCALE_MODEL = "bpp-sr-multi"


class ZooError(ValueError):
    """An unknown zoo name, or a shipped file that is missing or corrupted."""


@functools.cache
def _cards(folder: str) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted(Path(folder).glob(f"*{CARD_SUFFIX}")):
        try:
            card = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ZooError(f"model card {path} cannot be read: {e}") from None
        out[str(card.get("name", path.stem))] = card
    return out


def cards(folder: str | Path = ZOO_DIR) -> dict[str, dict[str, Any]]:
    """Every model card in ``folder`` (default: the package's zoo), by model name."""
    return _cards(str(Path(folder).resolve()))


def names(folder: str | Path = ZOO_DIR) -> tuple[str, ...]:
    """Names of the shipped models, sorted."""
    return tuple(sorted(cards(folder)))


def is_zoo_name(spec: Any, folder: str | Path = ZOO_DIR) -> bool:
    """True when ``spec`` names a shipped model and no file or folder of that name exists here."""
    return isinstance(spec, (str, Path)) and str(spec) in cards(folder) and not Path(spec).exists()


def card(name: str, folder: str | Path = ZOO_DIR) -> dict[str, Any]:
    """The model card of ``name``; ZooError lists the valid names for an unknown one."""
    known = cards(folder)
    if name not in known:
        valid = ", ".join(sorted(known)) or "none (no model cards in this installation)"
        raise ZooError(f"unknown zoo model {name!r}; the shipped models are: {valid}")
    return known[name]


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_path(name: str, folder: str | Path = ZOO_DIR) -> Path:
    """Where the weights of ``name`` live."""
    return Path(folder) / card(name, folder).get("weights", f"{name}{WEIGHTS_SUFFIX}")


def read_params(name: str, folder: str | Path = ZOO_DIR) -> Any:
    """The parameter pytree of ``name`` (NumPy arrays), after the SHA-256 check."""
    meta = card(name, folder)
    path = weights_path(name, folder)
    if not path.is_file():
        raise ZooError(f"weights of zoo model {name!r} are missing: {path} (reinstall bppjax)")
    got, want = sha256(path), meta.get("sha256")
    if got != want:
        raise ZooError(
            f"weights of zoo model {name!r} are corrupted: {path} has SHA-256 {got}, its model card says {want} "
            "(reinstall bppjax)"
        )
    try:
        return serialization.msgpack_restore(path.read_bytes())
    except Exception as e:  # noqa: BLE001 - msgpack raises several types; the checksum matched, so the card is wrong
        raise ZooError(f"weights of zoo model {name!r} cannot be decoded ({path}): {e}") from None


def pretrained(name: str | None = None, overrides: Sequence[str] = (), folder: str | Path = ZOO_DIR):
    """A shipped model as a ``LoadedModel`` (``.model``, ``.params``, ``.config``, ``.step``).

    With no name, returns the model cards by name instead (what ``python -m
    bppjax.zoo`` lists). ``overrides`` are ``KEY=VALUE`` config overrides, as
    for ``load_model`` (e.g. ``"model.kind=ode"``).
    """
    if name is None:
        return cards(folder)
    meta = card(name, folder)
    config = ml_collections.ConfigDict(meta["config"])
    # A card records the model settings of its day; settings added since take their defaults.
    full = model_config()
    full.update(config.model)
    config.model = full
    config = apply_overrides(config, overrides)
    model = build_model(config.model)
    params = read_params(name, folder)
    check_param_shapes(params, param_shapes(model, config.model), source=f"zoo model {name!r}")
    params = jax.tree.map(jax.numpy.asarray, params)
    return LoadedModel(model=model, params=params, config=config, step=int(meta.get("steps", 0)), which="pretrained")


def model_for_scale(scale: float | None, folder: str | Path = ZOO_DIR) -> str:
    """The zoo model ``enhance`` uses for an SR factor: the per-factor model, else the multi-scale one."""
    known = cards(folder)
    factor = 2.0 if scale is None else float(scale)
    if factor.is_integer():
        name = f"bpp-sr-x{int(factor)}"
        if name in known:
            return name
    if MULTI_SCALE_MODEL in known:
        return MULTI_SCALE_MODEL
    raise ZooError(f"no shipped model for scale {factor:g}; the shipped models are: {', '.join(sorted(known)) or 'none'}")


def format_cards(known: dict[str, dict[str, Any]]) -> str:
    """A Markdown table of the models: parameters, training time, PSNR/SSIM per dataset and factor."""
    datasets = list(dict.fromkeys(d for c in known.values() for d in c.get("evaluation", {}).get("results", {})))
    rows = ["| model | params | train time | factor | " + " | ".join(f"{d} PSNR / SSIM" for d in datasets) + " |",
            "|---|---|---|---|" + "---|" * len(datasets)]
    for name, c in known.items():
        results = c.get("evaluation", {}).get("results", {})
        factors = list(dict.fromkeys(s for d in results.values() for s in d))
        for i, s in enumerate(factors or ["-"]):
            cells = [f"{results[d][s]['psnr']:.2f} / {results[d][s]['ssim']:.4f}" if s in results.get(d, {}) else "-"
                     for d in datasets]
            head = (f"`{name}`", f"{c.get('params', 0):,}", f"{c.get('wall_seconds', 0) / 60:.0f} min") if i == 0 else ("", "", "")
            rows.append(f"| {head[0]} | {head[1]} | {head[2]} | x{s} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


__all__ = [
    "MULTI_SCALE_MODEL", "ZOO_DIR", "ZooError", "card", "cards", "format_cards", "is_zoo_name", "model_for_scale",
    "names", "pretrained", "read_params", "sha256", "weights_path",
]
