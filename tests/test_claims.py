"""benchmarks/claims.py: the study's bookkeeping (tests on made-up results) and one tiny end-to-end pass."""

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


@pytest.fixture()
def claims(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("claims", ROOT / "benchmarks" / "claims.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    monkeypatch.setattr(mod, "RESULTS", tmp_path / "results" / "claims")
    monkeypatch.setattr(mod, "SUMMARY", tmp_path / "results" / "claims.json")
    monkeypatch.setattr(mod, "DOC", tmp_path / "CLAIMS.md")
    monkeypatch.setattr(mod, "FIGURES", tmp_path / "claims")
    return mod


def _fake_run(mod, name, model, setting, seed, shift, scale=2, curve=((100, 30.0), (300, 30.2), (400, 30.21))):
    rng = np.random.default_rng([seed, int(shift * 10)])
    per = {d: (30 + shift + rng.normal(0, 0.05, n)).tolist() for d, n in (("Set5", 5), ("Set14", 14), ("B100", 100))}
    mod.write_json(mod.run_file(name), {
        "run": name, "model": model, "setting": setting, "scale": scale, "seed": seed, "params": 1000, "macs_per_pixel": 500.0,
        "shape": {"arch": "bpp"}, "steps": 10, "seconds_per_step": 0.5, "train_seconds": 5.0, "gflops_train": 1.0,
        **mod.validation_curve_facts(list(curve)),
        "scores": {d: {"psnr": float(np.mean(v)), "ssim": 0.9, "psnr_per_image": v} for d, v in per.items()}})


def test_report_from_made_up_runs(claims):
    for seed in range(3):
        _fake_run(claims, f"x2-bpp-time-s{seed}", "bpp", "equal_time", seed, 0.5)
        _fake_run(claims, f"x2-resnet-time-s{seed}", "resnet", "equal_time", seed, 0.0)
        _fake_run(claims, f"x2-edsr-time-s{seed}", "edsr", "equal_time", seed, 1.0, curve=((100, 30.0), (300, 30.1), (400, 30.3)))
    _fake_run(claims, "x2-resnet-bppsteps-s0", "resnet", "equal_steps_bpp", 0, 0.3)  # the ResNet given BPP's steps
    _fake_run(claims, "x4-bpp-time-s0", "bpp", "equal_time", 0, 0.5, scale=4)  # x4 has no ResNet at BPP's steps
    _fake_run(claims, "x4-resnet-time-s0", "resnet", "equal_time", 0, 0.0, scale=4)
    raw = np.array([[0, 0, 0, 0], [1, 3, 1, 3], [2, 5, 2, 5]], float)
    claims.write_json(claims.budget_dir() / "update_norms-m.json", {"model": "m", "scale": 2, "dataset": "B100", "raw": raw.tolist(),
                                                                    "shape": {"levels": 3, "features": [4, 4, 4], "depth": 4}})
    # A shorter budget's runs stay in their own folder and section.
    claims.write_json(claims.budget_dir(2) / "x2-bpp-time-s0.json", json.loads(claims.run_file("x2-resnet-time-s0").read_text()))
    s = claims.report()
    e = s["bpp_vs_resnet"]["x2"]
    assert e["bpp"]["seeds"] == [0, 1, 2] and len(e["bpp"]["psnr"]["Set14"]) == 3
    t = e["tests"]["equal_time"]
    assert all(abs(t[d]["diff_db"] - 0.5) < 0.1 and t[d]["p_seeds"] < 0.05 for d in claims.BENCHMARKS)
    assert all(abs(e["tests"]["equal_time_edsr"][d]["diff_db"] + 0.5) < 0.1 for d in claims.BENCHMARKS)
    assert "equal_steps" not in e["tests"]
    assert all(abs(e["tests"]["equal_steps_bpp_count"][d]["diff_db"] - 0.2) < 0.1 for d in claims.BENCHMARKS)
    # curves: bpp gained 0.01 dB over the last quarter (flat), edsr 0.2 (still learning)
    assert e["bpp"]["flattened"] == [True] * 3 and e["edsr"]["flattened"] == [False] * 3
    un = s["update_norms"]["m"]
    assert un["bimodal"] and un["largest_level"] == 2 and max(map(max, un["map"])) == 100
    written = json.loads(claims.SUMMARY.read_text())
    assert "_per_image" not in written["bpp_vs_resnet"]["x2"]["bpp"]
    doc = claims.DOC.read_text()
    assert "equal_time: **holds**: BPP better on all three sets" in doc
    assert "equal_time_edsr: **does not hold**: edsr better on all three sets" in doc
    assert "The ResNet trained for BPP's 10 steps (1.0x BPP's MACs per pixel)" in doc  # the verdict points at its row
    assert "cannot be told at this scale" not in doc
    x4 = doc[doc.index("#### SR x4"):doc.index("## Budget: 2 minutes")]
    assert "The ResNet trained for BPP's step count was run at x2 only" in x4 and "--resnet-bpp-steps-seeds" not in x4
    assert doc.index("## Budget: 20 minutes") < doc.index("## Budget: 2 minutes")
    assert written["budget_minutes"] == 20 and set(written["budgets"]) == {"2"}
    assert written["budgets"]["2"]["bpp_vs_resnet"]["x2"]["resnet"]["seeds"] == [0] and "edsr" not in written["budgets"]["2"]["bpp_vs_resnet"]["x2"]
    assert (claims.FIGURES / "20min" / "bpp_vs_resnet.png").stat().st_size > 1000
    assert (claims.FIGURES / "20min" / "val_curves.png").stat().st_size > 1000


def test_verdict_of_a_consistent_sign_significant_on_some_sets(claims):
    def rows(diff, p):
        return {d: {"diff_db": diff, "seeds": 1, "images": 10, "p_images": q} for d, q in zip(claims.BENCHMARKS, p)}

    behind = claims._verdict_rows({"equal_steps_bpp_count": rows(-0.1, (0.02, 0.2, 1e-9))})
    assert "**does not hold**: resnet_bpp_steps better on all three sets (significant on Set5, B100 only; 1 seed(s))" in behind
    ahead = claims._verdict_rows({"equal_steps_bpp_count": rows(0.1, (0.02, 0.2, 1e-9))})
    assert "**cannot tell**: BPP better on all three sets (significant on Set5, B100 only" in ahead
    assert "**cannot tell**: no consistent" in claims._verdict_rows({"equal_steps_bpp_count": rows(0.1, (0.2, 0.3, 0.4))})
    assert "**holds**" in claims._verdict_rows({"equal_steps_bpp_count": rows(0.1, (0.01, 0.01, 0.01))})


def test_profile_facts_unimodal(claims):
    f = claims._profile_facts(np.array([[0, 0, 0, 0], [1, 2, 3, 4], [1, 2, 3, 4.0]]))
    assert not f["bimodal"] and f["peaks"] == [3]


def test_machine_names_what_trained(claims):
    import jax

    m = claims.machine()
    if jax.devices()[0].platform == "cpu":
        assert m.startswith(f"{os.cpu_count()} CPU cores, ") and len(m) > len("1 CPU cores, ")
    else:
        assert jax.devices()[0].device_kind in m


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED / "T91").is_dir() or not (SHARED / "RaindropSample").is_dir(), reason="needs ../shared/data")
def test_tiny_study_end_to_end(claims, tmp_path, monkeypatch):
    import bppjax

    tiny = {"bpp": bppjax.preset("tiny"), "resnet": bppjax.preset("resnet_tiny"), "resnet_macs": bppjax.preset("resnet_tiny"),
            "bpp_macs": bppjax.preset("tiny"), "paper_shaped": bppjax.model_config(levels=4, features=(4, 4, 4, 4), depth=3),
            "edsr_x2": bppjax.preset("edsr_tiny")}
    monkeypatch.setattr(claims, "models", lambda: tiny)
    monkeypatch.setattr(claims, "TRAIN_LIMIT", 2)
    monkeypatch.setattr(claims, "CALIBRATION_STEPS", 4)
    monkeypatch.setattr(claims, "BENCHMARKS", ("Set5",))
    monkeypatch.setattr(claims, "PATCH", 32)
    monkeypatch.setattr(claims, "CROP", 32)
    monkeypatch.setattr(claims, "ODE_SOLVES", claims.ODE_SOLVES[:1])
    monkeypatch.setattr(claims, "VAL_POINTS", 2)  # a curve needs two points; each validation tiles two photos
    measure, measured = claims._measure_step, []

    def measure_once(model_cfg, runs, scale):  # one real calibration run; the other networks reuse its time
        if not measured:
            measured.append(measure(model_cfg, runs, scale))
        return measured[0]

    monkeypatch.setattr(claims, "_measure_step", measure_once)
    code = claims.main(["--part", "bpp_vs_resnet", "--part", "raindrop", "--part", "ode_vs_discrete", "--part", "linearscope",
                        "--budget-minutes", "0.001", "--seeds", "1", "--scales", "2", "--runs", str(tmp_path / "runs")])
    assert code == 0
    calibration = json.loads((claims.RESULTS / "calibration.json").read_text())
    assert measured and measured[0] > 0 and calibration["bpp"] == measured[0]
    assert {"edsr_x2", "resnet", "resnet_macs", "bpp_macs", "bpp_ode"} <= set(calibration)
    s = json.loads(claims.SUMMARY.read_text())
    e = s["bpp_vs_resnet"]["x2"]
    assert e["bpp"]["seeds"] == [0] and e["resnet"]["steps"] == 20 and e["bpp_equal_steps"]["steps"] == e["resnet"]["steps"]
    assert e["resnet_bpp_steps"]["steps"] == e["bpp"]["steps"] and e["edsr"]["steps"] == 20
    assert set(e["tests"]) == {"equal_time", "equal_time_edsr", "equal_steps", "equal_steps_bpp_count", "equal_params_macs_bpp_cost",
                               "equal_macs_resnet_cost"}
    assert len(e["bpp"]["val_curve"][0]) >= 2 and e["bpp"]["flattened"][0] in (True, False)
    assert all(len(e[k]["psnr"]["Set5"]) == 1 for k in ("bpp", "resnet", "resnet_equal_macs", "bpp_equal_macs"))
    assert json.loads(claims.run_file("x2-bpp-time-s0").read_text())["machine"] == claims.machine()
    assert -1 <= s["raindrop"]["r_vs_rain_correlation"] <= 1 and s["raindrop"]["reconstruction_error"] < 1e-4
    assert set(s["ode_vs_discrete"]) >= {"discrete", "ode", "solvers"}
    assert s["ode_vs_discrete"]["solvers"][0]["solve"].startswith("causal_euler")
    assert set(s["linearscope"]) == {"bpp-sr-x2", "bpp (x2, equal time, seed 0)", "edsr (x2, equal time, seed 0)", "resnet (x2, equal time, seed 0)"}
    assert all(v["Set5"]["max_reconstruction_error"] < 1e-5 for v in s["linearscope"].values())
    assert "## 4. Discrete vs continuous-time training" in claims.DOC.read_text()
    # finished runs are skipped: a second pass trains nothing and writes no new run
    before = sorted(str(p) for p in claims.RESULTS.glob("**/*.json"))
    assert len(before) > 8
    assert claims.main(["--part", "bpp_vs_resnet", "--budget-minutes", "0.001", "--seeds", "1", "--scales", "2",
                        "--runs", str(tmp_path / "runs")]) == 0
    assert sorted(str(p) for p in claims.RESULTS.glob("**/*.json")) == before
