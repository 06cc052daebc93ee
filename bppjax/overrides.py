"""Command-line config overrides shared by every entry point.

``train``, ``evaluate``, ``enhance`` and ``analyze`` all accept
``--config.KEY=VALUE`` (e.g. ``--config.model.kind=ode``); values are parsed as
Python literals and must keep the type of the key they replace.
"""

from __future__ import annotations

import ast
import contextlib
from typing import Any, Iterable, Sequence

import ml_collections

PREFIX = "--config."


def split_overrides(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """Separate ``--config.k=v`` / ``--config.k v`` arguments from the rest of ``argv``."""
    overrides, rest, i = [], [], 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        if a.startswith(PREFIX):
            body = a[len(PREFIX):]
            if "=" not in body:
                if i + 1 >= len(argv):
                    raise ValueError(f"config override {a!r} has no value")
                body, i = f"{body}={argv[i + 1]}", i + 1
            overrides.append(body)
        else:
            rest.append(a)
        i += 1
    return overrides, rest


def _parse(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _coerce(key: str, old: Any, new: Any) -> Any:
    if old is None or new is None:
        return new
    if isinstance(old, bool):
        if isinstance(new, bool):
            return new
        if isinstance(new, str) and new.lower() in ("true", "false"):
            return new.lower() == "true"
        raise ValueError(f"config key {key!r} expects a bool; got {new!r}")
    if isinstance(old, float) and isinstance(new, int) and not isinstance(new, bool):
        return float(new)
    if isinstance(old, (tuple, list)) and isinstance(new, (tuple, list)):
        return type(old)(new)
    if isinstance(old, ml_collections.ConfigDict):
        raise ValueError(f"config key {key!r} is a group; override its fields, e.g. {key}.<field>=...")
    if not isinstance(new, type(old)):
        raise ValueError(f"config key {key!r} expects {type(old).__name__}; got {new!r} ({type(new).__name__})")
    return new


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> ml_collections.ConfigDict:
    """Return a copy of ``config`` with ``KEY=VALUE`` overrides applied (dotted keys)."""
    config = ml_collections.ConfigDict(config.to_dict()) if not config.is_locked else config.copy_and_resolve_references()
    for item in overrides:
        item = item[len(PREFIX):] if item.startswith(PREFIX) else item
        if "=" not in item:
            raise ValueError(f"config override {item!r} must look like KEY=VALUE")
        key, text = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise ValueError(f"unknown config key {'.'.join(parents[: i + 1])!r} (in override {item!r})")
            node = node[part]
        if leaf not in node:
            raise ValueError(f"unknown config key {key!r}; known keys here: {sorted(node.keys())}")
        with node.unlocked() if node.is_locked else contextlib.nullcontext():
            node[leaf] = _coerce(key, node[leaf], _parse(text))
    return config


