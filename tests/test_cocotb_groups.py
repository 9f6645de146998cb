"""cocotb regression of tile groups (generic max_group > 1, docs/architecture.md "Tile groups"):
the generated Verilog runs every layer class of the layer space (verification.cases'
coverage list), random layers, the four host combinations and resets, on configurations
whose groups hold several tiles. The scoreboard (rep_accel.verification.tb) compares every
output beat with the cycle-mode simulator and the golden model, the cycles with the
simulator's (and, without stalls, with layout.layer_cycles: one input pass per group), and
the port trace cycle by cycle, exactly as for max_group = 1 (tests/test_cocotb_layers.py).

Seeds: printed; replay with REP_ACCEL_SEED=<seed>.
"""

import numpy as np
import pytest

from cocotb_cases import G_1X1_K3, G_2X3_K4, G_4X4_K8, build, coverage_cases, main_sim, random_cases, run, seed
from rep_accel import layout, memory
from rep_accel.layout import LayerShape
from rep_accel.sim import cycle
from rep_accel.testing import vector_cases
from rep_accel.verification import cases as C
from test_cocotb_layers import _check_all, _check_faults, _fault_cases


def _grouped(g, cases) -> int:
    """How many of `cases` have a tile group of more than one tile on `g` (the point of these runs)."""
    return sum(max(j.count for j in layout.schedule_layer(c.layer.shape, g).groups) > 1 for c in cases)


def _layer_space(g, s, n_random, max_channels, fault_shape, tmp_path):
    rng = np.random.default_rng(s)
    cases = coverage_cases(g, rng) + random_cases(g, rng, n_random, max_channels=max_channels) + \
        _fault_cases(g, rng, s, fault_shape)
    grouped = _grouped(g, cases)
    print(f"{len(cases)} cases, {grouped} with groups of several tiles")
    assert grouped >= len(cases) // 3
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


def test_groups_layer_space_1x1(tmp_path):
    """1x1 array, groups of up to 3 tiles: the coverage list, 6 random layers, the fault runs
    (four host combinations, a reset while loading and one mid-scan) on a layer of two groups
    of 3 tiles."""
    g = G_1X1_K3
    shape = LayerShape(cin=2, cout=6, groups=1, stride=2, height=5, width=6)
    assert [j.count for j in layout.schedule_layer(shape, g).groups] == [3, 3]
    _layer_space(g, seed() + 11, 6, 6, shape, tmp_path)


def test_groups_layer_space_2x3(tmp_path):
    """2x3 array, groups of up to 4 tiles: the coverage list, 10 random layers, the fault runs
    on a layer of one group of 3 tiles of cg 3."""
    g = G_2X3_K4
    shape = LayerShape(cin=5, cout=7, groups=1, stride=1, height=6, width=9)
    assert [(j.count, j.cg) for j in layout.schedule_layer(shape, g).groups] == [(3, 3)]
    _layer_space(g, seed() + 12, 10, 12, shape, tmp_path)


def test_groups_memory_model_2x3(tmp_path):
    """Groups under the external-memory model's stall pattern (as tests/test_cocotb_memory.py):
    every cycle and port equal to the simulator's under that host, the count the memory
    model's own."""
    s = seed() + 13
    rng = np.random.default_rng(s)
    g = G_2X3_K4
    slow = "1.3,latency=5,fifo=27"
    base = [c for c in coverage_cases(g, rng, widths=False)
            if max(j.count for j in layout.schedule_layer(c.layer.shape, g).groups) > 1][:8]
    assert len(base) == 8
    cases = [C.LayerCase(f"{c.name}/slow", c.layer, c.x, C.Stall(memory=slow)) for c in base[:4]]
    cases += [C.LayerCase(f"{c.name}/slow+stalls", c.layer, c.x, C.Stall(0.8, 0.7, 0.6, s + k, memory=slow))
              for k, c in enumerate(base[4:])]
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    recs = outcome.results["records"]
    assert len(recs) == len(cases) and all(r["trace_compared"] and r["trace_equal"] for r in recs)
    for case, r in zip(cases, recs):
        params = cycle.layer_params(case.layer, g)
        want = cycle.run_layer(case.x, case.layer.shape, params, g, case.stall.stimulus(),
                               memory=memory.parse(slow, 150.0)).cycles
        assert r["stalled"] and r["rtl_cycles"] == r["sim_cycles"] == r["rtl_cycles_reported"] == want, case.name
        assert want > r["layer_cycles"], case.name


def test_groups_icarus_subset(tmp_path):
    """Tile groups on the other simulator (Icarus when $SIM is verilator), 1x1 with groups of 3:
    a few shapes, the four host combinations and the resets, with the same exact checks."""
    other = "icarus" if main_sim() == "verilator" else "verilator"
    s = seed() + 15
    rng = np.random.default_rng(s)
    g = G_1X1_K3
    keep = {"s1", "s2_odd_signed", "g2_span", "h1_w1", "extreme", "all255"}
    cases = [c for c in coverage_cases(g, rng, widths=False) if c.name in keep] + \
        _fault_cases(g, rng, s, LayerShape(cin=1, cout=6, groups=1, stride=1, height=3, width=4))
    assert _grouped(g, cases) == len(cases) - 1   # all but h1_w1 (C_out = PO: one tile)
    outcome = run(build(g, other), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


@pytest.mark.slow
def test_groups_4x4_layer_space_and_tflite(tmp_path):
    """4x4 array, groups of up to 8 tiles: the coverage list, the fault runs, and the ten
    TensorFlow Lite ConvPerChannel layers, whose outputs must equal TFLite's."""
    s = seed() + 14
    rng = np.random.default_rng(s)
    g = G_4X4_K8
    cases = coverage_cases(g, rng, widths=False) + \
        _fault_cases(g, rng, s, LayerShape(cin=9, cout=30, groups=1, stride=1, height=5, width=7))
    expected = []
    for v in vector_cases():
        for k in range(v.x.shape[0]):
            cases.append(C.LayerCase(f"vector{v.index}/{k}", v.layer, v.x[k]))
            expected.append(v.y[k])
    print(f"{len(cases)} cases, {_grouped(g, cases)} with groups of several tiles")
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)
    outs = C.read_outputs(tmp_path)
    first = len(cases) - len(expected)
    for k, y in enumerate(expected):
        assert np.array_equal(outs[f"out{first + k}"], y), f"{cases[first + k].name} differs from TFLite"
