"""cocotb regression of the Verilog of arrays of Winograd units (unit kind `winograd`):
stride-1 layers as F(2x2,3x3) tiles, stride-2 layers in direct mode on the same units
(docs/architecture.md, "Winograd scan"). The same exact checks as the direct arrays'
(tests/test_cocotb_layers.py): every output beat against the cycle-mode simulator and the
golden model, cycles and the `cycles` port, the whole port trace cycle by cycle, the four
host combinations and resets; TensorFlow Lite's own outputs; the default model end to end.

Seeds: printed; replay with REP_ACCEL_SEED=<seed>.
"""

import numpy as np
import pytest

from cocotb_cases import (G_W1X1_K3, G_W2X3_K4, G_W4X4_K4, build, coverage_cases, main_sim, random_cases, run,
                          seed)
from rep_accel.layout import LayerShape, schedule_layer
from rep_accel.verification import cases as C
from test_cocotb_layers import _check_all, _check_faults, _check_vectors, _fault_cases, _vector_job


@pytest.mark.parametrize("g", [G_W1X1_K3, G_W2X3_K4], ids=["1x1_k3", "2x3_k4"])
def test_winograd_layer_space(g, tmp_path):
    """The coverage list (every layer class: stride 1 as Winograd tiles, stride 2 in direct
    mode, groups, odd and even sizes, 1-row and 1-column inputs, extreme values), random
    layers and the fault runs (the four host combinations, resets in load and mid-scan)."""
    s = seed() + 20
    rng = np.random.default_rng(s)
    cases = coverage_cases(g, rng) + random_cases(g, rng, 8, max_channels=8) + \
        _fault_cases(g, rng, s, LayerShape(cin=g.pi + 1, cout=g.po + 1, groups=1, stride=1, height=7, width=8),
                     reset_fraction=0.8)   # a Winograd layer's first beats come after two row pairs
    kinds = {schedule_layer(c.layer.shape, g).winograd for c in cases}
    assert kinds == {True, False}       # Winograd layers and direct-mode layers both ran
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
    _check_faults(outcome, tmp_path, g)


def test_winograd_tflite_vectors_4x4(tmp_path):
    """The ten TensorFlow Lite ConvPerChannel layers on a 4x4 Winograd array: outputs equal TFLite's exactly."""
    job, expected = _vector_job(G_W4X4_K4)
    outcome = run(build(G_W4X4_K4, main_sim()), job, tmp_path)
    _check_all(outcome, len(expected))
    _check_vectors(outcome, tmp_path, expected)


def test_winograd_default_model_4x4(tmp_path):
    """The default model end to end on the 4x4 Winograd array: logits equal the simulator's."""
    from cocotb_cases import default_model
    from test_cocotb_network import _run_network
    _run_network(default_model(), G_W4X4_K4, 2, tmp_path)


def test_winograd_lut_multipliers_ecp5_and_memory_2x3(tmp_path):
    """The 2x3 Winograd array with 40 of its 96 multipliers in logic (hdl/winograd.py's
    WideLutMultiplier) and the rest as ECP5 MULT18X18Ds (`--dsp ecp5`, simulated with their
    model), under a host that stalls and under the SDR-166 memory model's pattern: outputs,
    cycles and the port trace equal the simulator's."""
    import dataclasses
    s = seed() + 21
    rng = np.random.default_rng(s)
    g = dataclasses.replace(G_W2X3_K4, lut_multipliers=40)
    base = coverage_cases(g, rng, widths=False)
    cases = base[:8] + [C.LayerCase(f"{c.name}/sdr16-166", c.layer, c.x, C.Stall(memory="sdr16-166", clock_mhz=150.0))
                        for c in base[8:14]] + \
        [C.LayerCase(f"{c.name}/stalls", c.layer, c.x, C.Stall(0.7, 0.6, 0.5, s + k)) for k, c in enumerate(base[14:])]
    b = build(g, main_sim(), dsp="ecp5")
    text = b.verilog.read_text()
    assert text.count("MULT18X18D #(") == 2 * 3 * 16 - 40     # the others are in logic
    outcome = run(b, C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))
