"""Parameter and MAC accounting, checked against the spec and XLA's cost analysis."""

from __future__ import annotations

import json

import pytest

from bppjax.models import build_model, model_config, preset
from bppjax.models.summary import xla_macs_per_pixel
from bppjax.summary import main


def test_paper_macs_match_spec():
    assert round(build_model(preset("paper")).macs_per_pixel()) == 762_200
    assert round(build_model(model_config(down_projection="eq2")).macs_per_pixel()) == 777_572


@pytest.mark.parametrize("name, size, tol", [("paper", 256, 0.015), ("small", 128, 0.03), ("resnet_small", 64, 0.03)])
def test_macs_agree_with_xla_cost_analysis(name, size, tol):
    cfg = preset(name)
    analytic = build_model(cfg).macs_per_pixel()
    xla = xla_macs_per_pixel(build_model(cfg), size)
    # XLA skips taps that fall on padding, so it sits slightly below; elementwise
    # work (IN, ReLU, additions) adds a little on top.
    assert abs(xla - analytic) / analytic < tol, (xla, analytic)


def test_summary_cli_json(tmp_path, capsys):
    out = tmp_path / "s.json"
    assert main(["--preset", "paper", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["params"] == 18_653_052
    assert round(data["macs_per_pixel"]) == 762_200
    assert data["state_shapes"][0] == [1, 32, 32, 256]
    assert "18,653,052" in capsys.readouterr().out


def test_summary_cli_overrides_and_errors(capsys):
    assert main(["--preset", "tiny", "--config.model.depth=3"]) == 0
    assert "tiny" in capsys.readouterr().out
    assert main(["--preset", "tiny", "--config.model.levels=4"]) == 2
    assert "model.levels" in capsys.readouterr().err
    assert main(["--preset", "nope"]) == 2
