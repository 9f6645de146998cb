"""The accelerator on an array of Winograd units (unit kind `winograd`) in the Amaranth
simulator: stride-1 layers as F(2x2,3x3) tiles (docs/architecture.md, "Winograd scan") and
stride-2 layers in direct mode, against the numpy reference and the cycle simulator
(rep_accel.sim.cycle): outputs, and every port in every cycle under the simulator's host
patterns; without stalls exactly layout.layer_cycles."""

import numpy as np
import pytest

from hdl_bench import back_to_back_calm_and_stalled, check_against_cycle_simulator
from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl.top import pipeline_latency
from rep_accel.layout import LayerShape


def _generics(pi, po, shapes, max_group=1, max_cg=4):
    g = HardwareGenerics(pi=pi, po=po, w_max=8, max_cg=max_cg, line_depth=40, max_group=max_group, unit="winograd")
    for s in shapes:
        layout.check_fits(s, g)
    return g


@pytest.mark.parametrize("pi,po", [(1, 1), (2, 3), (4, 4)])
def test_rtl_latency_is_the_contract(pi, po):
    """The Winograd array's stages add up to generics.pipeline_latency (PI + PO + 27)."""
    g = HardwareGenerics(pi=pi, po=po, unit="winograd")
    assert pipeline_latency(g) == g.pipeline_latency == pi + po + 27


WINOGRAD_CASES = [
    # (pi, po, max_group, max_cg, shape, stimulus seed or None)
    # even sizes, one tile, cg 1, a host that never stalls
    (1, 1, 1, 4, LayerShape(cin=1, cout=1, groups=1, stride=1, height=4, width=4), None),
    # odd sizes (padding STOREs of row H, blocks with 1 or 2 pixels), cg 2, int8 input
    (2, 2, 1, 4, LayerShape(cin=3, cout=2, groups=1, stride=1, height=5, width=3, input_signed=True), None),
    # tile groups: K = 3 tiles of cg 2 (beats outlast a slot's own steps: extra steps), stalls
    (1, 2, 3, 6, LayerShape(cin=2, cout=6, groups=1, stride=1, height=3, width=4), 51),
    # a 1-row and a 1-column input
    (2, 1, 2, 4, LayerShape(cin=2, cout=2, groups=1, stride=1, height=1, width=5), 52),
    (1, 1, 2, 4, LayerShape(cin=1, cout=2, groups=1, stride=1, height=4, width=1), None),
    # conv groups, stalls
    (2, 1, 2, 4, LayerShape(cin=4, cout=4, groups=2, stride=1, height=3, width=3), 53),
    # stride 2 in direct mode on the Winograd units: odd sizes, tile groups, stalls
    (1, 1, 3, 4, LayerShape(cin=1, cout=5, groups=1, stride=2, height=5, width=3, input_signed=True), 54),
    (2, 2, 2, 4, LayerShape(cin=3, cout=4, groups=1, stride=2, height=4, width=4), None),
]


@pytest.mark.parametrize("case", range(len(WINOGRAD_CASES)))
def test_winograd_layers_equal_reference_and_cycle_simulator(case):
    pi, po, max_group, max_cg, shape, stim_seed = WINOGRAD_CASES[case]
    g = _generics(pi, po, [shape], max_group, max_cg)
    assert layout.schedule_layer(shape, g).winograd == (shape.stride == 1)
    ref = check_against_cycle_simulator(g, shape, 600 + case, stim_seed)
    assert 0 < np.count_nonzero(ref) < ref.size or ref.size < 4   # the case exercises ReLU and values


def test_winograd_and_direct_mode_back_to_back_and_stalled():
    """A Winograd layer, then a stride-2 layer (direct mode), then a Winograd layer of
    another shape: with a host that never stalls (exactly layout.layer_cycles) and with
    random gaps and ready drops, outputs equal to the reference."""
    shapes = [LayerShape(cin=2, cout=3, groups=1, stride=1, height=3, width=3),
              LayerShape(cin=3, cout=2, groups=1, stride=2, height=3, width=4),
              LayerShape(cin=2, cout=2, groups=1, stride=1, height=2, width=5)]
    back_to_back_calm_and_stalled(_generics(2, 2, shapes, max_group=2), shapes, seed=9)
