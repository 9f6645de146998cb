"""cocotb regression of the Verilog with LUT multipliers (generic `lut_multipliers`,
hdl/lut_multiplier.py) against the simulator and the golden model: the same scoreboard as
tests/test_cocotb_layers.py (every output beat bit for bit, the measured and reported
cycles, the whole port trace cycle by cycle), on the non-square 2x3 array with some of its
54 multipliers in logic. The simulator knows nothing of LUT multipliers: equal results mean
the LUT multipliers give the DSP path's values with the DSP path's latency.

Seeds: printed; replay with REP_ACCEL_SEED=<seed>.
"""

import re

import numpy as np

from cocotb_cases import G_1X1, G_2X3, build, cache_dir, coverage_cases, main_sim, need_sim, random_cases, run, seed
from rep_accel.layout import LayerShape
from rep_accel.verification import cases as C
from rep_accel.verification import runner as R


def _check_all(outcome, n_cases: int) -> None:
    recs = outcome.results["records"]
    assert len(recs) == n_cases
    for r in recs:
        assert r["trace_compared"] and r["trace_equal"], r["name"]
        assert r["rtl_cycles"] == r["sim_cycles"] == r["rtl_cycles_reported"], r["name"]
        if not r["stalled"]:
            assert r["rtl_cycles"] == r["layer_cycles"], r["name"]


def test_lut_multipliers_2x3(tmp_path):
    """13 LUT multipliers (unit (0, 0) all nine, unit (0, 1) taps 0-3; the rest `*`): the
    coverage list (strides, groups, widths, signed input, extreme activations and weights)
    and 4 random layers."""
    s = seed() + 40
    rng = np.random.default_rng(s)
    g = G_2X3.replace(lut_multipliers=13)
    cases = coverage_cases(g, rng) + random_cases(g, rng, 4)
    b = build(g, main_sim())
    modules = re.findall(r"^module \\rep_accel_top\.array\.(unit\d_\d\.lut\d)", b.verilog.read_text(), re.M)
    assert modules == [f"unit0_0.lut{k}" for k in range(9)] + [f"unit0_1.lut{k}" for k in range(4)]
    outcome = run(b, C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))


def test_lut_multipliers_beside_ecp5_dsps_2x3(tmp_path):
    """`--dsp ecp5` with 27 LUT multipliers: units (0, 0)-(0, 2) in logic, the other three
    MULT18X18D instances (simulated with their model), in one array: the coverage list."""
    s = seed() + 42
    rng = np.random.default_rng(s)
    g = G_2X3.replace(lut_multipliers=27)
    b = build(g, main_sim(), dsp="ecp5")
    text = b.verilog.read_text()
    assert text.count("MULT18X18D ") == 27 and text.count("module \\rep_accel_top.array.unit0_2.lut8 ") == 1
    cases = coverage_cases(g, rng)
    outcome = run(b, C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))


def test_testbench_catches_a_wrong_lut_multiplier(tmp_path):
    """The 1x1 Verilog with all 9 multipliers in logic, and tap 8's LUT multiplier given its
    weight without the sign bit (Icarus): the scoreboard reports wrong outputs (the check
    above can fail), and only wrong outputs: cycles and port trace stay right. (A layer
    whose outputs all clamp to 0 may hide the bug, so not every run must fail.)"""
    need_sim("icarus")
    s = seed() + 41
    rng = np.random.default_rng(s)
    g = G_1X1.replace(lut_multipliers=9)
    mutation = R.Mutation("lut_sign", (("    .w(kernel[71:64])", "    .w(kernel[71:64] & 8'h7f)"),))
    cases = [C.layer_case(rng, "a", LayerShape(cin=2, cout=2, groups=1, stride=1, height=3, width=4)),
             C.layer_case(rng, "b", LayerShape(cin=3, cout=1, groups=1, stride=2, height=3, width=3))]
    b = R.build_rtl(g, "icarus", cache_dir=cache_dir(), mutation=mutation)
    C.write_job(tmp_path, C.Job(g, cases=cases))
    recs = R.run_job(b, tmp_path).results["records"]
    assert len(recs) == len(cases)
    assert any(not r["passed"] for r in recs)
    for r in recs:
        assert all("output differs from" in f for f in r["failures"]), r["failures"]
        assert any("differs from the simulator" in f for f in r["failures"]) == (not r["passed"])
        assert r["trace_equal"] and r["rtl_cycles"] == r["sim_cycles"]
