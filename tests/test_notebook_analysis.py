"""``notebooks/analysis.ipynb`` runs headless, with its parameters cell overridden to a tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _notebook import code_cells_are_clean, execute

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
TINY = {"STEPS": 3, "TRAIN_SECONDS": 60.0, "PATCH": 24, "BATCH": 2, "EVAL_SIZE": 24, "EVAL_CROPS": 2}


def test_notebook_is_committed_without_outputs():
    assert code_cells_are_clean(NOTEBOOK)


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    execute(NOTEBOOK, {**TINY, "OUT_DIR": str(tmp_path)}, tmp_path)
    results = json.loads((tmp_path / "results.json").read_text())
    for name in ("BPP", "ResNet"):
        r = results[name]
        assert r["steps"] == TINY["STEPS"]
        assert r["linearscope"]["reconstruction_error"] < 1e-5
        assert r["linearscope"]["global_fraction"] > 0
    assert results["BPP"]["update_norms"][0] == [0.0, 0.0]
    for f in ("update_norms.png", "linearscope_BPP.png", "linearscope_ResNet.png", "global_parts.png", "filters_BPP.png"):
        assert (tmp_path / f).stat().st_size > 1000, f
    assert (tmp_path / "BPP" / "config.json").is_file() and (tmp_path / "ResNet" / "checkpoints").is_dir()
