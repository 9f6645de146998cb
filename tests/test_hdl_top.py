"""The whole accelerator (hdl/top.py) in the Amaranth simulator: small layers against a plain
numpy convolution + numerics.requantize_nchw and TensorFlow Lite's reference vectors, with
exactly layout.layer_cycles cycles when the host never stalls, and identical outputs under
random valid gaps and ready drops; with tile groups (max_group > 1) as well, outputs and
every port in every cycle equal to the cycle simulator's (rep_accel.sim.cycle)."""

import numpy as np
import pytest

from hdl_bench import (back_to_back_calm_and_stalled, check_against_cycle_simulator, random_input, random_layer,
                       reference_layer, run_layers)
from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl.layouts import DescriptorLayout
from rep_accel.hdl.top import pipeline_latency
from rep_accel.layout import LayerShape
from rep_accel.testing import vector_cases


@pytest.mark.parametrize("pi,po", [(1, 1), (2, 3), (3, 2), (8, 8)])
def test_rtl_latency_is_the_contract(pi, po):
    """The stages the RTL is built of add up to generics.pipeline_latency (PI + PO + LATENCY_FIXED)."""
    g = HardwareGenerics(pi=pi, po=po)
    assert pipeline_latency(g) == g.pipeline_latency


TOP_CASES = [
    # (pi, po, shape): a partial last tile and cg > 1; stride 2 with odd sizes and the int8 input;
    # groups with a tile spanning two groups; stride 2 with even sizes; a 1-row input; a 1-column input.
    (2, 2, LayerShape(cin=3, cout=3, groups=1, stride=1, height=3, width=4)),
    (2, 2, LayerShape(cin=2, cout=2, groups=1, stride=2, height=5, width=3, input_signed=True)),
    (1, 3, LayerShape(cin=4, cout=4, groups=2, stride=1, height=2, width=3)),
    (3, 1, LayerShape(cin=3, cout=1, groups=1, stride=2, height=4, width=4)),
    (2, 2, LayerShape(cin=2, cout=2, groups=1, stride=1, height=1, width=5)),
    (2, 1, LayerShape(cin=4, cout=1, groups=1, stride=1, height=4, width=1)),
]


def _generics(pi, po, shapes, max_group=1, max_cg=4):
    g = HardwareGenerics(pi=pi, po=po, w_max=8, max_cg=max_cg, line_depth=32, max_group=max_group)
    for s in shapes:
        layout.check_fits(s, g)
    return g


@pytest.mark.parametrize("case", range(len(TOP_CASES)))
def test_layer_matches_reference_with_exact_cycles(case):
    pi, po, shape = TOP_CASES[case]
    seed = 100 + case
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    g = _generics(pi, po, [shape])
    w, b, m0, n = random_layer(rng, shape)
    x = random_input(rng, shape)
    (run,) = run_layers(g, [(shape, x, w, b, m0, n)], seed=seed)
    ref = reference_layer(x, shape, w, b, m0, n)
    assert np.array_equal(run.out, ref), f"outputs differ at {np.argwhere(run.out != ref)[:5].tolist()}"
    assert 0 < np.count_nonzero(ref) < ref.size or ref.size < 4   # the case exercises ReLU and values
    expected = layout.layer_cycles(shape, g)
    assert run.cycles_measured == expected
    assert run.cycles_reported == expected
    assert run.done_pulses == 1


def test_back_to_back_layers_and_stalls_give_identical_outputs():
    """Two layers back to back (the second with a different shape, stride and cg), first with a
    host that never stalls, then with random input and parameter gaps and act_out ready drops:
    the outputs are identical, the stalled run only takes longer and reports its own count."""
    shapes = [LayerShape(cin=3, cout=3, groups=1, stride=1, height=3, width=3),
              LayerShape(cin=5, cout=2, groups=1, stride=2, height=3, width=4)]
    back_to_back_calm_and_stalled(_generics(2, 2, shapes), shapes, seed=7)


def _vector_run(index, pi, po, **kw):
    case = vector_cases()[index]
    layer = case.layer
    s = layer.shape
    g = HardwareGenerics(pi=pi, po=po, w_max=max(3, s.width), max_cg=64, line_depth=256)
    layout.check_fits(s, g)
    layers = [(s, case.x[b], layer.weight, layer.bias, layer.m0, layer.n) for b in range(case.x.shape[0])]
    runs = run_layers(g, layers, **kw)
    for b, run in enumerate(runs):
        assert np.array_equal(run.out, case.y[b]), f"vector case {index} image {b}: outputs differ"
        assert run.cycles_measured == run.cycles_reported == layout.layer_cycles(s, g)


def test_tflite_vector_one_column():
    """TFLite case 7: 8 -> 8 channels, 5 x 1 pixels (a one-pixel-wide row), two images."""
    _vector_run(7, 4, 4)


def test_tflite_vector_one_row_many_tiles():
    """TFLite case 5: 48 -> 20 channels on a 1 x 13 row, 5 tiles of 6 channel groups."""
    _vector_run(5, 8, 4)


@pytest.mark.slow
@pytest.mark.parametrize("index,pi,po", [(6, 4, 4), (0, 4, 4), (4, 8, 8), (3, 8, 8), (1, 8, 8), (2, 8, 8),
                                         (8, 8, 8), (9, 8, 8)])
def test_tflite_vectors_more(index, pi, po):
    """The other TFLite cases: groups 4 and 2, the int8 stride-2 network input, stride 1 and 2
    on 12 x 12 / 12 x 9, C_in 192 and 512 (cg 24 and 64)."""
    _vector_run(index, pi, po)


def test_descriptor_port_fields():
    """The Verilog-visible descriptor is layout.DESCRIPTOR_FIELDS from bit 0 up."""
    assert DescriptorLayout.size == sum(bits for _, bits in layout.DESCRIPTOR_FIELDS)
    pos = 0
    for name, bits in layout.DESCRIPTOR_FIELDS:
        assert (DescriptorLayout[name].offset, DescriptorLayout[name].shape.width) == (pos, bits)
        pos += bits


STALL_CASES = [
    # (pi, po, shape, stimulus seed or None for a host that never stalls)
    (2, 2, LayerShape(cin=3, cout=3, groups=1, stride=1, height=3, width=4), None),
    (2, 2, LayerShape(cin=3, cout=3, groups=1, stride=1, height=3, width=4), 31),
    (1, 3, LayerShape(cin=4, cout=4, groups=2, stride=2, height=5, width=3, input_signed=True), 32),
    (3, 2, LayerShape(cin=5, cout=2, groups=1, stride=1, height=2, width=2), 33),
]


@pytest.mark.parametrize("case", range(len(STALL_CASES)))
def test_port_trace_equals_the_cycle_simulator(case):
    """Under the same host patterns (random valid gaps and ready drops), every port of the
    RTL in every cycle equals the cycle simulator's trace (the global-stall model of
    docs/architecture.md), and so do the outputs."""
    pi, po, shape, stim_seed = STALL_CASES[case]
    check_against_cycle_simulator(_generics(pi, po, [shape]), shape, 300 + case, stim_seed)


GROUP_CASES = [
    # (pi, po, max_group, max_cg, shape, stimulus seed or None): tile groups of K tiles.
    # 4 tiles of cg 2 in one group (weight addresses up to 7); a partial last tile.
    (2, 2, 4, 8, LayerShape(cin=3, cout=7, groups=1, stride=1, height=3, width=4), None),
    # stride 2, odd sizes, int8 input: groups 3 + 2 of cg 1, under stalls.
    (1, 1, 3, 4, LayerShape(cin=1, cout=5, groups=1, stride=2, height=5, width=3, input_signed=True), 41),
    # conv groups 2: one tile group per input group (K = 2 each), under stalls.
    (2, 1, 4, 4, LayerShape(cin=4, cout=4, groups=2, stride=1, height=3, width=3), 42),
    # K limited by max_cg (6 // cg 3 = 2): groups 2 + 1, stride 2 even sizes, a 1-row input.
    (1, 2, 4, 6, LayerShape(cin=3, cout=6, groups=1, stride=2, height=2, width=4), 43),
    (3, 2, 2, 4, LayerShape(cin=5, cout=4, groups=1, stride=1, height=1, width=5), None),
]


@pytest.mark.parametrize("case", range(len(GROUP_CASES)))
def test_tile_groups_equal_reference_and_cycle_simulator(case):
    """Tile groups: outputs equal the numpy reference and the cycle simulator's, the port
    trace equals the simulator's in every cycle (under the simulator's host patterns), and
    without stalls the layer takes exactly layout.layer_cycles (one input pass per group)."""
    pi, po, max_group, max_cg, shape, stim_seed = GROUP_CASES[case]
    g = _generics(pi, po, [shape], max_group, max_cg)
    assert max(j.count for j in layout.schedule_layer(shape, g).groups) > 1   # a group of several tiles
    ref = check_against_cycle_simulator(g, shape, 400 + case, stim_seed)
    assert 0 < np.count_nonzero(ref) < ref.size      # the case exercises ReLU and values


def test_tile_groups_back_to_back_and_stalled():
    """Two grouped layers back to back (K = 3 then K = 2 with another cg), with a host that
    never stalls and with random gaps and ready drops: outputs equal the reference, the calm
    run takes exactly layout.layer_cycles and reports it, the stalled one reports its own."""
    shapes = [LayerShape(cin=2, cout=6, groups=1, stride=1, height=3, width=3),
              LayerShape(cin=5, cout=4, groups=1, stride=2, height=3, width=4)]
    g = _generics(2, 2, shapes, max_group=3, max_cg=6)
    assert [[j.count for j in layout.schedule_layer(s, g).groups] for s in shapes] == [[3], [2]]
    back_to_back_calm_and_stalled(g, shapes, seed=8)
