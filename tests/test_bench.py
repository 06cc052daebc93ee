"""``python -m bppjax.bench``: the FLOP count and the JSON it writes (tiny preset, one rep)."""

from __future__ import annotations

import json

import pytest

from bppjax import bench
from bppjax.models import model_config, preset


def test_macs_per_pixel_matches_the_spec():
    assert bench.macs_per_pixel(preset("paper")) == pytest.approx(762_200, abs=1)  # docs/ARCHITECTURE.md
    assert bench.macs_per_pixel(model_config(down_projection="eq2")) == pytest.approx(777_572, abs=1)


def test_json_has_the_documented_fields(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--reps", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["presets"]) == {"tiny"} and "paper" not in res
    r = res["tiny"]
    for key in ("forward_px_per_s", "train_step_s", "compile_s", "forward_fraction_of_peak"):
        assert r[key] > 0, key
    assert res["peak_gflops"] > 0
    assert r["remat"]["memory_ratio"] > 0 and r["remat"]["time_ratio"] > 0
    assert r["remat"]["checkpoint_memory_ratio"] > 0 and r["remat"]["checkpoint_time_ratio"] > 0
    assert "| tiny |" in capsys.readouterr().out


def test_unknown_preset_is_a_clear_error(capsys):
    assert bench.main(["--preset", "huge"]) == 2
    assert "error: unknown model preset 'huge'" in capsys.readouterr().err


def test_torch_ratios():
    res = {"presets": {"p": {"forward_px_per_s": 300.0, "train_step_s": 0.5}}}
    bench.add_torch_ratios(res, {"p": {"forward_px_per_s": 200.0, "train_step_s": 1.0}})
    assert res["presets"]["p"]["forward_speedup_vs_torch"] == 1.5
    assert res["presets"]["p"]["train_time_ratio_vs_torch"] == 0.5
