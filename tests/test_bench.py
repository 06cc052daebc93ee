"""``python -m bppjax.bench`` over ``bppjax.benchmark``: the FLOP count, the JSON it writes (tiny preset, one rep), the table."""

from __future__ import annotations

import json

import pytest

from bppjax import bench, benchmark
from bppjax.models import model_config, preset


def test_macs_per_pixel_matches_the_spec():
    assert benchmark.macs_per_pixel(preset("paper")) == pytest.approx(762_200, abs=1)  # docs/ARCHITECTURE.md
    assert benchmark.macs_per_pixel(model_config(down_projection="eq2")) == pytest.approx(777_572, abs=1)


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
    benchmark.add_torch_ratios(res, {"p": {"forward_px_per_s": 200.0, "train_step_s": 1.0}})
    assert res["presets"]["p"]["forward_speedup_vs_torch"] == 1.5
    assert res["presets"]["p"]["train_time_ratio_vs_torch"] == 0.5


def test_remat_modes_are_the_ones_each_architecture_implements():
    assert benchmark.remat_modes(preset("tiny")) == ("block", "checkpoint")
    assert benchmark.remat_modes(preset("resnet_tiny")) == ("checkpoint",)


def test_table_marks_unmeasured_remat_modes():
    r = {"forward_px_per_s": 1000.0, "forward_gflops": 2.0, "forward_fraction_of_peak": 0.5, "forward_fraction_of_ceiling": 0.25,
         "train_step_s": 0.1, "forward_compile_s": 1.0, "train_compile_s": 2.0,
         "remat": {"checkpoint_memory_ratio": 0.8, "checkpoint_time_ratio": 1.5}}
    env = {"device": "cpu", "cpu_count": 2, "jax": "x", "loadavg_start": (0.0,), "loadavg_end": (0.0,)}
    table = benchmark.format_table({"presets": {"resnet_tiny": r}, "env": env, "peak_gflops": 4.0, "ceiling_gflops": 8.0})
    assert "| resnet_tiny | 1,000 | 2 | 50% | 25% | 0.100 | 1.0 / 2.0 | - | - | 80% | 1.50x |" in table
