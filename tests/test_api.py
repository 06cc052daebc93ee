"""``import bppjax``: the lazy public API resolves to library functions, never to command modules."""

from __future__ import annotations

import importlib

import jax
import numpy as np

import bppjax
from bppjax.__main__ import COMMANDS


def _target(name: str) -> tuple[str, str]:
    entry = bppjax._LAZY[name]
    return entry if isinstance(entry, tuple) else (entry, name)


def test_every_lazy_name_is_the_library_object():
    for name in bppjax._LAZY:
        module, attr = _target(name)
        assert getattr(bppjax, name) is getattr(importlib.import_module(module), attr), name
    assert set(bppjax._LAZY) <= set(dir(bppjax)) and set(bppjax._LAZY) <= set(bppjax.__all__)


def test_no_lazy_name_lives_in_a_command_module():
    commands = {module for module, _ in COMMANDS.values()}
    assert not {name for name in bppjax._LAZY if _target(name)[0] in commands}


def test_what_a_notebook_reaches_from_the_top_level():
    import bppjax.analysis.linearscope as linearscope
    import bppjax.evaluation as evaluation
    import bppjax.tiling as tiling

    assert bppjax.evaluate_method is evaluation.evaluate and bppjax.self_ensemble is evaluation.self_ensemble
    assert bppjax.tiled_inference is tiling.tiled_inference
    assert bppjax.frozen_twin is linearscope.frozen_twin and bppjax.filters is linearscope.filters
    cfg = bppjax.preset("tiny")
    params = bppjax.build_model(cfg).init(jax.random.key(0), np.zeros((1, 16, 16, 3), np.float32))["params"]
    assert bppjax.summarize(cfg)["params"] == bppjax.count_params(params) == 7_545
