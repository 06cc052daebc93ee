"""``python -m bppjax.bench`` over ``bppjax.benchmark``: the FLOP count, the JSON it writes (tiny preset, one rep), the table,
bfloat16 on the CPU, the CPU features it records and the PyTorch comparison by dtype."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from bppjax import bench, benchmark
from bppjax.models import model_config, preset


def test_macs_per_pixel_matches_the_spec():
    assert benchmark.macs_per_pixel(preset("paper")) == pytest.approx(762_200, abs=1)  # docs/ARCHITECTURE.md
    assert benchmark.macs_per_pixel(model_config(down_projection="eq2")) == pytest.approx(777_572, abs=1)


def test_json_has_the_documented_fields(tmp_path, capsys, monkeypatch):
    _small_peak(monkeypatch)
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--dtypes", "float32", "--reps", "1", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res["presets"]) == {"tiny"} and "paper" not in res
    assert res["dtypes"] == ["float32"] and set(res["env"]["cpu"]) >= {"model_name", *benchmark.CPU_FLAGS}
    r = res["tiny"]
    assert "bfloat16" not in r
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


# --------------------------------------------------------------------------- bfloat16, CPU features, PyTorch by dtype


def _small_peak(monkeypatch):
    """A 256^2 matmul as the peak: the 4096^2 one takes seconds and is not what these tests check."""
    peak = benchmark.peak_gflops
    monkeypatch.setattr(benchmark, "peak_gflops", lambda n=256, reps=1, dtype="float32": peak(256, reps, dtype))


def test_bfloat16_runs_on_cpu_and_the_json_records_the_cpu(tmp_path, capsys, monkeypatch):
    _small_peak(monkeypatch)
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny", "--dtypes", "bfloat16", "--reps", "1", "--no-remat", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dtypes"] == ["bfloat16"]
    r = res["presets"]["tiny"]
    assert "forward_px_per_s" not in r  # float32 was not asked for
    bf = r["bfloat16"]
    assert bf["forward_px_per_s"] > 0 and bf["train_step_s"] > 0 and bf["forward_fraction_of_peak"] > 0
    assert set(res["peak_gflops_by_dtype"]) == {"float32", "bfloat16"}
    cpu = res["env"]["cpu"]
    assert cpu == benchmark.cpu_features()  # this machine's /proc/cpuinfo, as parsed
    assert all(isinstance(cpu[f], bool) for f in benchmark.CPU_FLAGS) == cpu["available"]
    assert "| tiny bf16 |" in capsys.readouterr().out


def test_default_dtypes_are_float32_and_bfloat16_on_every_backend():
    assert benchmark.default_dtypes() == ["float32", "bfloat16"]


def test_dtypes_flag_rejects_unknown_names(capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--dtypes", "float32,float16"])
    assert e.value.code == 2
    assert "invalid --dtypes 'float32,float16'" in capsys.readouterr().err


def test_cpu_features_parses_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Test CPU @ 2GHz\nflags\t\t: fpu sse avx2 avx512f amx_tile avx512_bf16x\n\n"
                    "processor\t: 1\nmodel name\t: Other\nflags\t\t: amx_bf16\n")
    f = benchmark.cpu_features(info)
    assert f["available"] and f["model_name"] == "Test CPU @ 2GHz"
    # First processor only, whole words only (avx512_bf16x is not avx512_bf16).
    assert (f["avx2"], f["avx512f"], f["amx_tile"], f["avx512_bf16"], f["amx_bf16"]) == (True, True, True, False, False)
    missing = benchmark.cpu_features(tmp_path / "absent")
    assert not missing["available"] and missing["amx_bf16"] is None


def _figs(px: float, step: float) -> dict[str, float]:
    return {"forward_px_per_s": px, "train_step_s": step}


def test_dtype_ratios():
    r = {**_figs(100.0, 1.0), "bfloat16": _figs(250.0, 0.4)}
    benchmark.add_dtype_ratios(r)
    assert r["bfloat16"]["forward_speedup_vs_float32"] == 2.5
    assert r["bfloat16"]["train_time_ratio_vs_float32"] == pytest.approx(0.4)
    only_bf16 = {"bfloat16": _figs(250.0, 0.4)}
    benchmark.add_dtype_ratios(only_bf16)  # nothing to compare with
    assert "forward_speedup_vs_float32" not in only_bf16["bfloat16"]


def test_torch_ratios_by_dtype_and_best_of_each():
    res = {"presets": {"p": {**_figs(300.0, 0.5), "bfloat16": _figs(200.0, 0.6)}}}
    torch_res = {"p": {**_figs(200.0, 1.0), "bfloat16": _figs(400.0, 0.25)}}
    benchmark.add_torch_ratios(res, torch_res)
    r = res["presets"]["p"]
    assert (r["forward_speedup_vs_torch"], r["train_time_ratio_vs_torch"]) == (1.5, 0.5)  # float32 vs float32
    assert (r["bfloat16"]["forward_speedup_vs_torch"], r["bfloat16"]["train_time_ratio_vs_torch"]) == (0.5, 2.4)
    best = r["best_vs_torch"]  # bppjax float32 (its fastest) against PyTorch bfloat16 (its fastest)
    assert (best["forward_dtype"], best["torch_forward_dtype"], best["train_dtype"], best["torch_train_dtype"]) == (
        "float32", "bfloat16", "float32", "bfloat16")
    assert (best["forward_speedup_vs_torch"], best["train_time_ratio_vs_torch"]) == (0.75, 2.0)


def test_table_puts_bfloat16_beside_float32_and_compares_with_torch():
    def figs(px, step):
        return {**_figs(px, step), "forward_gflops": 1.0, "forward_fraction_of_peak": 0.5, "forward_fraction_of_ceiling": 0.25,
                "forward_compile_s": 1.0, "train_compile_s": 2.0}

    res = {"presets": {"tiny": {**figs(1000.0, 0.1), "bfloat16": figs(1500.0, 0.08)}}, "peak_gflops": 4.0, "ceiling_gflops": 8.0,
           "peak_gflops_by_dtype": {"float32": 4.0, "bfloat16": 16.0},
           "env": {"device": "cpu", "cpu_count": 2, "jax": "x", "loadavg_start": (0.0,), "loadavg_end": (0.0,),
                   "cpu": {"model_name": "Test CPU", "amx_bf16": True, "avx2": True}}}
    torch_res = {"tiny": {**_figs(500.0, 0.2), "bfloat16": _figs(2000.0, 0.05)}, "peak_gflops": 3.0, "peak_gflops_bfloat16": 9.0}
    for r in (res["presets"]["tiny"], torch_res["tiny"]):
        benchmark.add_dtype_ratios(r)
    benchmark.add_torch_ratios(res, torch_res)
    table = benchmark.format_table(res)
    assert "| tiny bf16 | 1,500 | 1 | 50% | 25% | 0.080 | 1.0 / 2.0 | - | - | - | - | 2,000 | 0.050 | 0.75x | 1.60x |" in table
    assert "| tiny | 1,000 | 1,500 | 1.50x | 0.100 | 0.080 | 0.80x | 500 | 2,000 | 4.00x | 0.200 | 0.050 | 0.25x |" in table
    assert "| tiny | best (fwd bf16, step bf16) | best (fwd bf16, step bf16) | 1,500 | 2,000 | 0.75x | 0.080 | 0.050 | 1.60x |" in table
    assert "f32 4 / bf16 16 GFLOP/s (JAX), f32 3 / bf16 9 GFLOP/s (PyTorch)" in table and "Test CPU (amx_bf16, avx2)" in table


@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="PyTorch not installed (pip install -e .[bench])")
def test_run_torch_times_float32_and_bfloat16_autocast():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_bpp.py"
    res = benchmark.run_torch(script, ["tiny"], reps=1, size=16, patch=16, batch=1, dtypes=["float32", "bfloat16"], matmul_size=128)
    t = res["tiny"]
    assert t["dtypes"] == ["float32", "bfloat16"]
    assert t["forward_px_per_s"] > 0 and t["bfloat16"]["forward_px_per_s"] > 0 and t["bfloat16"]["train_step_s"] > 0
    assert res["peak_gflops_bfloat16"] > 0


def test_the_benchmark_library_ships_no_machine_constant_or_checkout_path():
    import inspect

    src = inspect.getsource(benchmark)
    assert "525" not in src and "parents[1]" not in src and not hasattr(benchmark, "FMA_CEILING_GFLOPS")
    with pytest.raises(FileNotFoundError, match="torch_bpp.py of a source checkout"):
        benchmark.run_torch(Path("no/such/torch_bpp.py"), ["tiny"])
    # Without a ceiling the table reports the measured peak only.
    r = {"forward_px_per_s": 1000.0, "forward_gflops": 2.0, "forward_fraction_of_peak": 0.5,
         "train_step_s": 0.1, "forward_compile_s": 1.0, "train_compile_s": 2.0}
    env = {"device": "cpu", "cpu_count": 2, "jax": "x", "loadavg_start": (0.0,), "loadavg_end": (0.0,)}
    table = benchmark.format_table({"presets": {"tiny": r}, "env": env, "peak_gflops": 4.0, "ceiling_gflops": None})
    assert "| tiny | 1,000 | 2 | 50% | - | 0.100 |" in table and "ceiling" not in table.splitlines()[-1]
