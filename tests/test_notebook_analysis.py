"""``notebooks/analysis.ipynb`` runs headless, with its parameters cell overridden to a tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
TINY = {"STEPS": 3, "TRAIN_SECONDS": 60.0, "PATCH": 24, "BATCH": 2, "EVAL_SIZE": 24, "EVAL_CROPS": 2}


def with_parameters(nb: nbformat.NotebookNode, values: dict) -> nbformat.NotebookNode:
    """Insert a cell after the one tagged ``parameters`` (papermill's convention)."""
    index = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    nb.cells.insert(index + 1, nbformat.v4.new_code_cell(source, metadata={"tags": ["injected-parameters"]}))
    return nb


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


@pytest.mark.slow
def test_notebook_executes(tmp_path):
    nb = with_parameters(nbformat.read(NOTEBOOK, as_version=4), {**TINY, "OUT_DIR": str(tmp_path)})
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
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
