"""cocotb regression of the generated Verilog (`rep_accel_top`) against the simulator and the golden model.

Each test builds (or finds in the cache) the RTL of one array configuration and runs many
layers on it through the runtime descriptor, in one HDL simulation. The testbench's
scoreboard (rep_accel.verification.tb) compares every output beat with the cycle-mode
simulator run with the same host, bit for bit, and with the golden model; the measured
cycles and the `cycles` port with the simulator's count (and, without stalls, with
layout.layer_cycles); and the whole port trace (valid/ready of the four streams, busy, done)
with the simulator's trace, cycle by cycle, for every run. The tests below then check what
spans several runs: identical outputs under the four host combinations, longer runs only,
reset recovery, and TensorFlow Lite's own outputs.

Simulators: $SIM (default verilator) for the main runs; a subset always runs on the other one.
Seeds: printed; replay with REP_ACCEL_SEED=<seed>.
"""

import numpy as np
import pytest

from cocotb_cases import (G_1X1, G_2X3, G_4X4, G_8X8, build, cache_dir, coverage_cases, main_sim, need_sim,
                          random_cases, run, seed, stall_cases, stall_combinations)
from rep_accel.layout import LayerShape, layer_cycles
from rep_accel.testing import vector_cases
from rep_accel.verification import cases as C
from rep_accel.verification import runner as R


def _fault_cases(g, rng, s, shape, reset_fraction=0.5):
    """One layer under the four host combinations, then interrupted by a reset (once while
    loading parameters, once mid-scan under stalls, at `reset_fraction` of the calm run's
    cycles) and run again."""
    base = C.layer_case(rng, "faults", shape)
    half = int(layer_cycles(shape, g) * reset_fraction)
    return stall_cases(base, s) + [
        C.LayerCase("faults/reset_in_load", base.layer, base.x, reset_at=3),
        C.LayerCase("faults/reset_mid_scan", base.layer, base.x, C.Stall(0.8, 0.8, 0.6, s + 4), reset_at=half),
    ]


def _check_faults(outcome, folder, g) -> None:
    """Across the fault runs: outputs identical to the calm run, nothing lost or duplicated
    (the scoreboard counted the beats), only the cycle count grows; a reset leaves the
    engine idle and the layer then runs exactly as without it."""
    recs = {r["name"]: (k, r) for k, r in enumerate(outcome.results["records"])}
    outs = C.read_outputs(folder)
    k0, calm = recs["faults/calm"]
    assert calm["rtl_cycles"] == calm["layer_cycles"] == calm["sim_cycles"]
    for name, stall in stall_combinations(0)[1:]:
        k, r = recs[f"faults/{name}"]
        assert r["stalled"]
        assert np.array_equal(outs[f"out{k}"], outs[f"out{k0}"]), name
        assert r["beats_compared"] == calm["beats_compared"]
        assert r["rtl_cycles"] == r["sim_cycles"] > calm["rtl_cycles"], name
        print(f"{name}: {r['rtl_cycles']} cycles (calm {calm['rtl_cycles']})")
    for name in ("faults/reset_in_load", "faults/reset_mid_scan"):
        k, r = recs[name]
        assert r["state_after_reset"] == {"desc_ready": 1, "busy": 0, "done": 0, "act_out_valid": 0,
                                          "params_ready": 0, "act_in_ready": 0}
        assert np.array_equal(outs[f"out{k}"], outs[f"out{k0}"]), name
        assert r["rtl_cycles"] == calm["rtl_cycles"] and r["trace_equal"]
    assert recs["faults/reset_mid_scan"][1]["outputs_before_reset"] > 0  # the reset hit a layer with outputs in flight


def _check_all(outcome, n_cases: int) -> None:
    recs = outcome.results["records"]
    assert len(recs) == n_cases
    assert all(r["trace_compared"] and r["trace_equal"] for r in recs)
    for r in recs:
        assert r["rtl_cycles"] == r["sim_cycles"] == r["rtl_cycles_reported"]
        if not r["stalled"]:
            assert r["rtl_cycles"] == r["layer_cycles"], r["name"]


def test_layer_space_2x3(tmp_path):
    """Non-square 2x3 array: the coverage list, 12 random layers, the fault runs."""
    s = seed()
    rng = np.random.default_rng(s)
    g = G_2X3
    cases = coverage_cases(g, rng) + random_cases(g, rng, 12) + \
        _fault_cases(g, rng, s, LayerShape(cin=5, cout=7, groups=1, stride=1, height=6, width=9))
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


def test_layer_space_1x1(tmp_path):
    """1x1 array (one unit): every tile is one output channel, every group one input channel."""
    s = seed() + 1
    rng = np.random.default_rng(s)
    g = G_1X1
    cases = coverage_cases(g, rng) + random_cases(g, rng, 6, max_channels=6) + \
        _fault_cases(g, rng, s, LayerShape(cin=2, cout=3, groups=1, stride=2, height=5, width=6))
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


def test_ecp5_dsp_style_2x3(tmp_path):
    """The `--dsp ecp5` Verilog (MULT18X18D instances, simulated with hdl/models/MULT18X18D.v)
    on the 2x3 array: the coverage list (extreme activations and weights included) and 6
    random layers; outputs, cycles and the port trace equal the simulator's, as for the
    generic multipliers."""
    s = seed() + 3
    rng = np.random.default_rng(s)
    g = G_2X3
    cases = coverage_cases(g, rng) + random_cases(g, rng, 6)
    b = build(g, main_sim(), dsp="ecp5")
    assert "MULT18X18D" in b.verilog.read_text()
    outcome = run(b, C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))


@pytest.mark.parametrize("g", [G_1X1, G_2X3], ids=["1x1", "2x3"])
def test_other_simulator_subset(g, tmp_path):
    """A subset on the other simulator (Icarus when $SIM is verilator): a few shapes, the four
    host combinations and a reset, with the same exact checks."""
    other = "icarus" if main_sim() == "verilator" else "verilator"
    s = seed() + 2
    rng = np.random.default_rng(s)
    keep = {"s1", "s2_odd_signed", "g2_span", "h1_w1", "extreme", "all255"}
    cases = [c for c in coverage_cases(g, rng, widths=False) if c.name in keep] + \
        _fault_cases(g, rng, s, LayerShape(cin=g.pi + 1, cout=g.po + 1, groups=1, stride=1, height=3, width=4))
    outcome = run(build(g, other), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


def _vector_job(g):
    cases, expected = [], []
    for v in vector_cases():
        for k in range(v.x.shape[0]):
            cases.append(C.LayerCase(f"vector{v.index}/{k}", v.layer, v.x[k]))
            expected.append(v.y[k])
    return C.Job(g, cases=cases), expected


def _check_vectors(outcome, folder, expected) -> None:
    outs = C.read_outputs(folder)
    total = 0
    for k, y in enumerate(expected):
        assert np.array_equal(outs[f"out{k}"], y), f"{outcome.results['records'][k]['name']} differs from TFLite"
        total += y.size
    assert total == 11100  # every output of the ten reference layers
    print(f"TensorFlow Lite vectors: {len(expected)} layer runs, {total} outputs equal")


def test_tflite_vectors_4x4(tmp_path):
    """The ten TensorFlow Lite ConvPerChannel layers on a 4x4 array: outputs equal TFLite's exactly."""
    job, expected = _vector_job(G_4X4)
    outcome = run(build(G_4X4, main_sim()), job, tmp_path)
    _check_all(outcome, len(expected))
    _check_vectors(outcome, tmp_path, expected)


@pytest.mark.slow
def test_tflite_vectors_8x8(tmp_path):
    """The ten TensorFlow Lite layers on the default 8x8 array."""
    job, expected = _vector_job(G_8X8)
    outcome = run(build(G_8X8, main_sim()), job, tmp_path)
    _check_all(outcome, len(expected))
    _check_vectors(outcome, tmp_path, expected)


@pytest.mark.slow
def test_layer_space_8x8(tmp_path):
    """The coverage list, 20 random layers (up to 40 channels) and the fault runs on the 8x8 array."""
    s = seed() + 3
    rng = np.random.default_rng(s)
    g = G_8X8
    cases = coverage_cases(g, rng, widths=False) + random_cases(g, rng, 20, max_channels=40) + \
        _fault_cases(g, rng, s, LayerShape(cin=20, cout=19, groups=1, stride=1, height=5, width=7))
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


@pytest.mark.slow
@pytest.mark.parametrize("g", [G_1X1, G_2X3], ids=["1x1", "2x3"])
def test_layer_space_icarus_full(g, tmp_path):
    """The whole coverage list and the fault runs on Icarus."""
    s = seed() + 4
    rng = np.random.default_rng(s)
    cases = coverage_cases(g, rng) + \
        _fault_cases(g, rng, s, LayerShape(cin=g.pi + 2, cout=g.po + 2, groups=1, stride=1, height=5, width=6))
    outcome = run(build(g, "icarus"), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


@pytest.mark.slow
@pytest.mark.parametrize("g", [G_1X1, G_2X3], ids=["1x1", "2x3"])
def test_random_stress(g, tmp_path):
    """200 random layers, each with a random host (valid gaps and ready drops of random
    density, or none) and one in ten interrupted by a reset at a random cycle."""
    s = seed() + 5
    rng = np.random.default_rng(s)
    cases = []
    for k, c in enumerate(random_cases(g, rng, 200, max_channels=10)):
        if rng.random() < 0.6:
            p = rng.uniform(0.3, 1.0, size=3)
            c.stall = C.Stall(float(p[0]), float(p[1]), float(p[2]), seed=s * 1000 + k)
        if rng.random() < 0.1:
            c.reset_at = int(rng.integers(1, layer_cycles(c.layer.shape, g)))
        cases.append(c)
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))


#: Deliberate bugs at the top level's ports (tests of the testbench): the scoreboard must
#: catch each one with the right message, and nothing else must be reported.
MUTATIONS = {
    # every input beat's lane 0 with its lowest bit flipped: wrong outputs, right timing
    "data": (R.Mutation("data", (("    .pixels(act_in__payload),", "    .pixels(act_in__payload ^ 1),"),)),
             "differs from the simulator", ("differs from the golden model",)),
    # the `cycles` port one too high: outputs and trace right
    "cycles": (R.Mutation("cycles", (("    .cycles(cycles),", "    .cycles(cycles_mutated),"),
                                     ("  wire [31:0] cycles;",
                                      "  wire [31:0] cycles;\n  wire [31:0] cycles_mutated;\n"
                                      "  assign cycles = cycles_mutated + 32'd1;"))),
               "`cycles` port reports", ()),
    # busy also high while idle: outputs and cycle counts right, the port trace wrong
    "busy": (R.Mutation("busy", (("    .busy(busy),", "    .busy(busy_mutated),"),
                                 ("  wire busy;", "  wire busy;\n  wire busy_mutated;\n"
                                                  "  assign busy = busy_mutated | desc__ready;"))),
             "port trace differs from the simulator's: first difference in cycle 0: busy rtl=1 sim=0",
             ("the cycle after done",)),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_testbench_catches_mutations(name, tmp_path):
    """The generated Verilog with one deliberate bug (Icarus, 1x1): every run fails, with the
    expected message and only the expected kinds of messages."""
    mutation, first, others = MUTATIONS[name]
    s = seed() + 6
    rng = np.random.default_rng(s)
    g = G_1X1
    cases = [C.layer_case(rng, "a", LayerShape(cin=2, cout=2, groups=1, stride=1, height=3, width=4)),
             C.layer_case(rng, "b", LayerShape(cin=3, cout=1, groups=1, stride=2, height=3, width=3),
                          stall=C.Stall(0.7, 0.7, 0.7, s))]
    need_sim("icarus")
    b = R.build_rtl(g, "icarus", cache_dir=cache_dir(), mutation=mutation)
    C.write_job(tmp_path, C.Job(g, cases=cases))
    outcome = R.run_job(b, tmp_path)
    recs = outcome.results["records"]
    assert outcome.results["complete"] and outcome.tests == 1 and outcome.failed == 1
    assert len(recs) == len(cases)
    for r in recs:
        assert not r["passed"]
        assert any(first in f for f in r["failures"]), r["failures"]
        assert all(any(m in f for m in (first, *others)) for f in r["failures"]), r["failures"]
        print(f"{name}: {r['name']}: {r['failures']}")
