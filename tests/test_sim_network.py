"""Whole networks: every layer of every zoo model (random weights) and of the default
model bit-exact with the golden model in both modes, cycle counts identical between
the modes; the report's figures against their definitions."""

import numpy as np
import pytest

from rep_accel import golden
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape
from rep_accel.models import MODEL_NAMES, PAPER_MODEL_NAMES
from rep_accel.sim import cycle, synthetic
from rep_accel.sim.network import MODES, NetworkSimulator, generics_for, schedule_report, simulate
from rep_accel.sim.report import format_table, layer_report, network_report
from sim_cases import default_build  # noqa: F401  (fixture)

SEED = 5151


def _run_both_modes(qnet, x, g):
    ref_logits, ref_acts = golden.run_network(qnet, x, return_activations=True)
    results = {}
    for mode in MODES:
        r = simulate(qnet, x, g, mode, return_activations=True, show_progress=False)
        for layer, a, b in zip(qnet.layers, r.activations, ref_acts):
            assert np.array_equal(a, b), f"{mode} mode: layer {layer.name} differs from golden"
        assert r.logits.dtype == np.int32 and np.array_equal(r.logits, ref_logits), f"{mode} mode: logits differ"
        results[mode] = r
    assert np.array_equal(results["fast"].cycles, results["cycle"].cycles)
    assert results["fast"].report.cycles == results["cycle"].report.cycles
    est = schedule_report(qnet, g, results["fast"].report.clock_mhz)
    assert [lr.cycles for lr in est.layers] == [lr.cycles for lr in results["cycle"].report.layers]
    return results


def _zoo_case(name, hw):
    in_ch = 1 if name == "mnist" else 3
    seed = SEED + MODEL_NAMES.index(name)
    print("seed", seed)
    qnet = synthetic.random_zoo_qnetwork(name, hw, seed=seed, in_channels=in_ch)
    return qnet, synthetic.random_input(qnet, 1, seed=seed)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_zoo_model_small_input(name):
    hw = {"mnist": 28, "nano": 16}.get(name, 32)
    qnet, x = _zoo_case(name, hw)
    _run_both_modes(qnet, x, generics_for(qnet, 8, 8))


@pytest.mark.slow
@pytest.mark.parametrize("name", PAPER_MODEL_NAMES)
def test_zoo_model_full_size(name):
    qnet, x = _zoo_case(name, 224)
    _run_both_modes(qnet, x, generics_for(qnet, 8, 8))


@pytest.mark.parametrize("pi,po", [(1, 1), (3, 5), (16, 4)], ids=str)
def test_other_arrays_and_stalls(pi, po):
    qnet, x = _zoo_case("tiny", 20)
    x = np.concatenate([x, synthetic.random_input(qnet, 1, seed=SEED)])
    g = generics_for(qnet, pi, po)
    base = _run_both_modes(qnet, x, g)["cycle"]
    stim = cycle.Stimulus.random(SEED + pi, 0.6, 0.7, 0.5)
    r = simulate(qnet, x, g, "cycle", stimulus=stim, trace=True, show_progress=False)
    assert np.array_equal(r.logits, base.logits)
    assert np.all(r.cycles >= base.cycles) and r.cycles.sum() > base.cycles.sum()
    assert np.array_equal(r.cycles[0], r.cycles[1])  # the engine's timing does not depend on the data
    assert r.trace.dtype.names[0] == "layer" and len(r.trace) == int(r.cycles[0].sum()) + len(qnet.layers)
    for k in range(len(qnet.layers)):
        t = r.trace[r.trace["layer"] == k]
        assert t["busy"].sum() == r.cycles[0, k] - 1 and t["done"][-1] == 1


def test_default_model_layers(default_build):
    """The bundled default model, compiled: both modes bit-exact with golden on its
    own build (cycle mode streams params.bin)."""
    build = default_build
    qnet = build.qnet
    x = golden.quantize_input(np.random.default_rng(SEED).normal(0, 1, (3,) + tuple(qnet.input_size)), qnet)
    ref_logits, ref_acts = golden.run_network(qnet, x, return_activations=True)
    params = [build.layer_params(i) for i in range(len(qnet.layers))]
    runs = {}
    for mode in MODES:
        sim = NetworkSimulator(qnet, build.generics, mode, params=params if mode == "cycle" else None)
        r = sim.run(x, return_activations=True, show_progress=False)
        assert np.array_equal(r.logits, ref_logits)
        for a, b in zip(r.activations, ref_acts):
            assert np.array_equal(a, b)
        runs[mode] = r
    assert np.array_equal(runs["fast"].cycles, runs["cycle"].cycles)


def test_layer_report_definitions():
    g = HardwareGenerics(max_group=1)  # 8 x 8, one tile at a time
    # 16 -> 16 channels, 8x8, stride 1: 2 tiles of cg = 2
    lr = layer_report("a", LayerShape(16, 16, 1, 1, 8, 8), g, 427)
    assert lr.tiles == 2 and lr.max_cg == 2
    assert lr.macs == 8 * 8 * 16 * 16 * 9
    assert lr.utilization == lr.macs / (9 * 8 * 8 * 427)
    assert (lr.compute_demand, lr.input_demand, lr.param_demand) == (2 * 2 * 64, 2 * 2 * 64, 2 * (1 + 8 + 16))
    assert lr.bottleneck == "compute"
    assert lr.line_buffer_bytes == 8 * 8 * 2 * 2 and lr.weight_buffer_bytes == 8 * 8 * 2 * 9
    assert lr.act_read_bytes == 2 * 2 * 64 * 8 and lr.weight_read_bytes == 50 * 72 and lr.act_write_bytes == 2 * 64 * 8
    # stride 2: the array waits for input beats
    assert layer_report("b", LayerShape(16, 16, 1, 2, 8, 8), g, 1000).bottleneck == "input"
    # a 1x1 map with many channels: the parameter stream dominates
    lr = layer_report("c", LayerShape(256, 64, 1, 1, 1, 1), g, 1000)
    assert lr.param_demand == 8 * (1 + 8 + 8 * 32) and lr.compute_demand == 8 * 32 and lr.bottleneck == "parameters"
    assert lr.act_write_bytes == 8 * 8
    # The same layer in one tile group of both tiles: one pass over the input, both tiles'
    # parameters in one group (1 + K*PO*(1 + cg) beats), both tiles' kernels in the buffer.
    lr = layer_report("a", LayerShape(16, 16, 1, 1, 8, 8), HardwareGenerics(max_group=2), 427)
    assert (lr.tiles, lr.tile_groups) == (2, 1)
    assert (lr.compute_demand, lr.input_demand, lr.param_demand) == (2 * 2 * 64, 2 * 64, 1 + 2 * 8 * (1 + 2))
    assert lr.weight_buffer_bytes == 8 * 8 * (2 * 2) * 9 and lr.act_read_bytes == 2 * 64 * 8
    assert lr.act_write_bytes == 2 * 64 * 8


def test_network_report_totals():
    g = HardwareGenerics(max_group=1)
    layers = [layer_report("a", LayerShape(16, 16, 1, 1, 8, 8), g, 400),
              layer_report("b", LayerShape(16, 32, 1, 2, 8, 8), g, 600)]
    r = network_report(layers, g, 200.0, "fast")
    assert r.cycles == 1000 and r.macs == layers[0].macs + layers[1].macs
    assert r.frames_per_second == 200e6 / 1000 and r.latency_ms == 1000 / 200e3
    assert r.bottleneck == "input" and r.extra["cycles_by_bottleneck"] == {"compute": 400, "input": 600, "parameters": 0}
    assert r.line_buffer_bytes == max(lr.line_buffer_bytes for lr in layers)
    assert r.act_read_bytes == sum(lr.act_read_bytes for lr in layers)
    d = r.to_dict()
    assert d["layers"][1]["name"] == "b" and d["frames_per_second"] == r.frames_per_second
    text = format_table(r)
    assert "total" in text and "200 MHz" in text and f"{r.frames_per_second:.2f} frames/s" in text


def test_refuses_what_does_not_fit():
    qnet, x = _zoo_case("tiny", 32)
    with pytest.raises(RepAccelError, match="stage0.0.*W_MAX=16"):
        NetworkSimulator(qnet, HardwareGenerics(w_max=16), "fast")
    with pytest.raises(RepAccelError, match="max_cg=1"):
        NetworkSimulator(qnet, HardwareGenerics(pi=4, max_cg=1), "cycle")
    with pytest.raises(RepAccelError, match="line_depth=20"):
        NetworkSimulator(qnet, HardwareGenerics(pi=4, line_depth=20), "cycle")
    sim = NetworkSimulator(qnet, generics_for(qnet), "fast")
    with pytest.raises(RepAccelError, match="does not match the network input"):
        sim.run(x[:, :, :-1])
    with pytest.raises(RepAccelError, match="int8"):
        sim.run(x.astype(np.float32))
    with pytest.raises(RepAccelError, match="cycle"):
        sim.run(x, trace=True)
    with pytest.raises(RepAccelError, match="mode"):
        NetworkSimulator(qnet, generics_for(qnet), "slow")


def test_the_tile_plan_is_computed_once_per_layer(monkeypatch):
    """The simulator schedules every layer once (layout.schedule_layer) and passes the
    ScheduledLayer to the fit check, the cycle formula, the reports and the parameter check."""
    from rep_accel import layout, streams
    from rep_accel.sim import synthetic

    qnet = synthetic.random_zoo_qnetwork("tiny", 16, seed=3)
    g = generics_for(qnet, 4, 4)
    calls = []
    real = layout.plan_tiles
    monkeypatch.setattr(layout, "plan_tiles", lambda s, gg: calls.append(s) or real(s, gg))
    for mode in ("fast", "cycle"):
        # Cycle mode takes the parameter beats as a build gives them, packed before counting.
        params = None if mode == "fast" else [streams.layer_params(l, g) for l in qnet.layers]
        calls.clear()
        sim = NetworkSimulator(qnet, g, mode, params=params)
        assert len(calls) == len(qnet.layers), (mode, len(calls))
        assert [s.cycles for s in sim.schedules] == [layout.layer_cycles(l.shape, g) for l in qnet.layers]
