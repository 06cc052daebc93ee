"""``notebooks/discrete_vs_ode.ipynb`` runs headless in its tiny setting and writes its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _notebook import code_cells_are_clean, execute

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "discrete_vs_ode.ipynb"
FIGURES = ("training.png", "solvers.png", "cost.png", "trajectories.png")


def test_notebook_is_committed_without_outputs():
    code = code_cells_are_clean(NOTEBOOK)
    assert "parameters" in code[0].metadata.get("tags", [])


@pytest.mark.slow
def test_notebook_executes_tiny_setting(tmp_path):
    execute(NOTEBOOK, {"SETTING": "tiny", "OUT_DIR": str(tmp_path)}, tmp_path)
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 5000, name
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["setting"] == "tiny"
    # The notebook's own numbers hold the invariants the figures rest on.
    for rows in r["sweep"].values():
        causal = next(x for x in rows if x["label"] == "causal_euler dt=1")
        assert causal["nfe"] == r["depth"]
    assert r["sweep"]["discrete-trained"][1]["rel_net"] < 1e-5  # causal Euler dt=1 is the network
    assert r["jacobi_vs_gauss_seidel"]["discrete-trained"]["jacobi_vs_net"] > 1e-4
    assert {c["adjoint"] for c in r["cost"]} >= {"recursive", "backsolve"}
    assert all(c["temp_mb"] > 0 and c["grad_s"] > 0 for c in r["cost"])
    assert all(t["lowest_level_change"] < 1e-5 for t in r["trajectories"].values())
    for t in ("discrete", "ode"):
        assert r["training"][t]["steps"] > 0 and r["training"][t]["val_psnr"] > 10
