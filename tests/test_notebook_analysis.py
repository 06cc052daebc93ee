"""``notebooks/analysis.ipynb``: committed with its full run, and re-executed here in its tiny setting."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _notebook import committed_run, displayed_json, execute, printed

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "analysis.ipynb"
FIGURES = ("update_norms.png", "linearscope_bpp-sr-x2.png", "linearscope_bpp-sr-x4.png", "filters_bpp-sr-x2.png",
           "filters_bpp-sr-x4.png", "update_norms_trained.png", "global_fractions.png", "global_parts.png")


def test_notebook_is_committed_with_its_full_run():
    """The committed outputs are one error-free run of the full setting, and its numbers hold the invariants."""
    nb = committed_run(NOTEBOOK)
    r = displayed_json(nb)
    assert r["setting"] == "full" and "setting full" in printed(nb)
    check_results(r, steps=400)


def check_results(r: dict, steps: int) -> None:
    assert set(r["zoo"]) == {"bpp-sr-x2", "bpp-sr-x4"}
    for name, z in r["zoo"].items():
        heat = np.asarray(z["update_norms"])
        assert heat.shape == (3, 4), name  # the medium preset: 3 levels, 4 flux blocks
        assert np.all(heat[0] == 0) and heat.max() == 100  # the lowest level never moves; normalised to 100
        assert z["largest_level"] in (1, 2) and len(z["depth_profile"]) == 4
    for name, m in {**r["zoo"], **r["trained"]}.items():
        for ds, s in m["linearscope"].items():
            assert s["reconstruction_error"] < 1e-5, (name, ds)  # F x + r = y, three independent computations
            assert 0 < s["global_fraction"] < 1 and 0.5 < s["local_fraction"] < 1.5, (name, ds)
            assert len(s["per_image"]) == len(r["images"][ds])
    assert r["zoo"]["bpp-sr-x2"]["linearscope"][next(iter(r["images"]))]["method"] == "vjp"
    assert r["trained"]["ResNet"]["linearscope"][next(iter(r["images"]))]["method"] == "jvp"
    assert np.asarray(r["trained"]["ResNet"]["update_norms"]).shape[0] == 1
    for t in r["trained"].values():
        assert t["steps"] == steps and t["val_psnr"] > 10 and t["s_per_step"] > 0


@pytest.mark.slow
def test_notebook_executes_tiny_setting(tmp_path):
    execute(NOTEBOOK, {"SETTING": "tiny", "OUT_DIR": str(tmp_path)}, tmp_path)
    r = json.loads((tmp_path / "results.json").read_text())
    assert r["setting"] == "tiny"
    check_results(r, steps=3)
    for f in FIGURES:
        assert (tmp_path / f).stat().st_size > 1000, f
    for label in ("BPP", "ResNet"):
        assert (tmp_path / label / "config.json").is_file() and (tmp_path / label / "checkpoints").is_dir()
