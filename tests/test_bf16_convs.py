"""``benchmarks/bf16_convs.py``: its shapes are the paper network's, its formulations compute the same convolutions
(forward, input and weight gradient, float32 and bfloat16), and the command writes its JSON. Small shapes only."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bf16_convs as bc  # noqa: E402

from bppjax import benchmark  # noqa: E402

SMALL = (16, 12, 8)  # three levels, lowest resolution first, as the paper's features


def test_cases_are_the_paper_networks_convolutions():
    cs = {c.name: c for c in bc.cases()}
    assert (cs["R_3"].h, cs["R_3"].cin, cs["R_3"].cout, cs["R_3"].out_hw) == (96, 48, 64, (48, 48))
    assert (cs["P_3"].h, cs["P_3"].cin, cs["P_3"].cout, cs["P_3"].out_hw) == (48, 2 * 64, 48, (96, 96))
    assert (cs["P_1"].h, cs["P_1"].cin, cs["P_1"].cout) == (12, 2 * 256, 128)
    assert (cs["analysis_h3"].cin, cs["analysis_h3"].cout, cs["synthesis"].cin, cs["synthesis"].cout) == (3, 48, 48, 3)
    # One P_l and one R_l per level: their MACs per output pixel are the flux block's (docs/ARCHITECTURE.md).
    px = 4 * 96 * 96
    p_macs = sum(c.flops() for c in cs.values() if c.kind == "up") / 2 / px
    r_macs = sum(c.flops() for c in cs.values() if c.kind == "down") / 2 / px
    assert p_macs == pytest.approx(9 * 2 * (256 * 128 / 64 + 128 * 64 / 16 + 64 * 48 / 4))
    assert r_macs == pytest.approx(p_macs / 2)
    # --scale shrinks the spatial sizes to a multiple of 2^(L-1), never below it.
    assert bc.cases(scale=0.25)[0].h == 24 and bc.cases(scale=0.01)[0].h == 8


CHECKS = [
    bc.Case("s1", "analysis", 2, 16, 16, 3, 8),
    bc.Case("down", "R", 2, 16, 16, 8, 12),
    bc.Case("up", "P_narrow", 2, 8, 8, 24, 8),  # conv_up's four-phase forward (< 64 outputs)
    bc.Case("up", "P_wide", 1, 4, 4, 8, 64),  # conv_up's dilated forward
]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("case", CHECKS, ids=lambda c: c.name)
def test_formulations_agree_with_the_float32_reference(case, dtype):
    errs = bc.check(case, dtype)
    expected = {"xla", "patches", "taps", "model_gemm"} | ({"phases", "s2d"} if case.kind == "up" else set())
    assert set(errs) == expected | ({"xla_f32acc"} if dtype == "bfloat16" else set())
    for name, per_pass in errs.items():
        for p, err in per_pass.items():
            assert err <= bc.TOLERANCE[dtype], (name, p, err)


def test_the_check_catches_a_wrong_formulation():
    """The sub-pixel tables are not interchangeable: using the down-projection's gradient table for ``up`` is caught."""
    case = CHECKS[2]
    x, w, g = bc.operands(case, "float32")
    ref = bc.reference(case, x, w, g)[0]
    assert bc.max_rel_err(bc.subpixel_gemm(x, w, bc.UP, "taps"), ref) < 1e-5
    assert bc.max_rel_err(bc.subpixel_gemm(x, w, bc.DOWN_GRAD, "taps"), ref) > 0.1


def test_bfloat16_gemms_accumulate_in_float32():
    """Weight gradients of the GEMM formulations come back in float32 and closer than one bfloat16 rounding."""
    case = CHECKS[1]
    x, w, g = bc.operands(case, "bfloat16")
    dw = bc.formulations("down", "bfloat16")["taps"][2](x, w, g)
    assert dw.dtype == bc.F32
    assert bc.max_rel_err(dw, bc.reference(case, x, w, g)[2]) < 1e-5


def test_command_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "convs.json"
    argv = ["--scale", "0.05", "--reps", "1", "--conv", "R_3", "--formulation", "xla", "--formulation", "taps", "--json", str(out)]
    assert bc.main(argv) == 0
    res = json.loads(out.read_text())
    assert [c["name"] for c in res["cases"]] == ["R_3"] and res["cases"][0]["h"] == 8
    assert res["env"]["cpu"] == benchmark.cpu_features()
    for c in res["cases"]:
        assert set(c["float32"]) == {"xla", "taps"} and set(c["bfloat16"]) == {"xla", "taps"}  # --formulation filters
        for dt in ("float32", "bfloat16"):
            for name, r in c[dt].items():
                assert set(r) == set(bc.PASSES)
                assert all(r[p]["gflops"] > 0 and r[p]["max_rel_err"] <= bc.TOLERANCE[dt] for p in bc.PASSES), (dt, name)
    table = capsys.readouterr().out
    assert "| down | R_3 | 4x8x8x48 -> 64 | taps |" in table and "fwd bf16/f32" in table
