"""``notebooks/discrete_vs_ode.ipynb``: committed with its full run, and re-executed here in its tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _notebook import committed_run, displayed_json, execute, printed

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "discrete_vs_ode.ipynb"
FIGURES = ("training.png", "solvers.png", "cost.png", "trajectories.png")


def check_results(r: dict) -> None:
    """The invariants the notebook's figures and conclusions rest on."""
    assert {"bpp-sr-x2", "ode-trained"} <= set(r["sweep"])
    for name, rows in r["sweep"].items():
        causal = next(x for x in rows if x["label"] == "causal_euler dt=1")
        assert causal["nfe"] == r["weights"][name]["depth"]  # one field evaluation per block
        assert rows[0]["label"] == "discrete network" and rows[-1]["solver"] == "reference"
        if r["weights"][name]["reading"] == "piecewise":  # then causal Euler with dt=1 is the network
            assert r["jacobi_vs_gauss_seidel"][name]["gauss_seidel_vs_net"] < 1e-5, name
            assert r["jacobi_vs_gauss_seidel"][name]["jacobi_vs_net"] > 1e-4, name  # Jacobi Euler is another network
    assert {c["adjoint"] for c in r["cost"]} >= {"recursive", "backsolve"}
    assert all(c["temp_mb"] > 0 and c["grad_s"] > 0 for c in r["cost"])
    assert all(c["grad_rel"] == 0 for c in r["cost"] if c["adjoint"] == "recursive")
    assert all(t["lowest_level_change"] < 1e-5 for t in r["trajectories"].values())
    for kind in ("discrete", "ode"):
        assert r["training"][kind]["steps"] > 0 and r["training"][kind]["val_psnr"] > 10
    assert "model.kind=ode" in r["training"]["ode"]["overrides"]


def test_notebook_is_committed_with_its_full_run():
    """The committed outputs are one error-free run of the full setting, and its numbers hold the invariants."""
    nb = committed_run(NOTEBOOK)
    r = displayed_json(nb)
    assert r["setting"] == "full" and "setting full" in printed(nb)
    check_results(r)
    assert set(r["sweep"]) == {"bpp-sr-x2", "discrete-trained", "ode-trained"}
    assert r["training"]["ode"]["steps"] == r["training"]["discrete"]["steps"] == 200


@pytest.mark.slow
def test_notebook_executes_tiny_setting(tmp_path):
    execute(NOTEBOOK, {"SETTING": "tiny", "OUT_DIR": str(tmp_path)}, tmp_path)
    for name in FIGURES:
        assert (tmp_path / name).stat().st_size > 5000, name
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["setting"] == "tiny"
    check_results(r)
    for kind in ("discrete", "ode"):
        assert (tmp_path / kind / "config.json").is_file()
