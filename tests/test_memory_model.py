"""The external-memory model (rep_accel.memory): its presets and parsing, the stall
pattern it puts on the host streams in cycle mode (checked cycle by cycle against a
plain-Python model of the credit counter), and fast mode's cycle count under it, which
must equal cycle mode's exactly."""

import json

import numpy as np
import pytest

from rep_accel import memory
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape, group_param_beats, layer_cycles, plan_tiles, schedule_layer
from rep_accel.sim import cycle, fast, synthetic
from rep_accel.sim.network import NetworkSimulator, schedule_report
from rep_accel.sim.report import format_table
from sim_cases import LAYER_CASES, case_id, random_input, random_layer

SEED = 20261201


def _generics(pi, po, shape):
    g = HardwareGenerics(pi=pi, po=po, w_max=max(3, shape.width))
    cg = max(t.cg for t in plan_tiles(shape, g))
    return g.replace(max_cg=cg, line_depth=shape.width * cg)


def _random_memory(rng, generics):
    """A memory from very slow to faster than the engine, with latency and a small or large FIFO."""
    largest = max(9 * generics.pi, generics.pi, generics.po)
    return memory.model(float(rng.choice([0.37, 1.0, 2.5, 5.3, 9.0, 40.0, 1000.0])),
                        float(rng.choice([1.0, 0.7, 0.55])), int(rng.integers(0, 40)),
                        int(rng.choice([largest, largest + 13, 2048])))


def reference_host(trace, model, generics, n_params, n_in):
    """The host signals the memory model gives, recomputed from the engine's side of the
    trace in plain Python (docs/architecture.md, "External memory"): returns the expected
    (params_valid, act_in_valid, act_out_ready) columns."""
    num, den, cap, latency = model.engine_args()
    p_cost, in_cost, out_cost = 9 * generics.pi * den, generics.pi * den, generics.po * den
    credit, p_held, in_held, p_sent, in_sent = 0, False, False, 0, 0
    want = np.zeros((len(trace), 3), dtype=np.uint8)
    for c, row in enumerate(trace):
        if c >= latency:
            credit = min(credit + num, cap)
        oready = credit >= out_cost
        if row["act_out_valid"] and oready:
            credit -= out_cost
        p_new = not p_held and p_sent < n_params and credit >= p_cost
        if p_new:
            credit -= p_cost
            p_sent += 1
        in_new = not in_held and in_sent < n_in and credit >= in_cost
        if in_new:
            credit -= in_cost
            in_sent += 1
        pv, iv = p_held or p_new, in_held or in_new
        want[c] = pv, iv, oready
        p_held = pv and not row["params_ready"]
        in_held = iv and not row["act_in_ready"]
        assert credit >= 0
    return want


# ---------------------------------------------------------------------------------- model

def test_presets_are_named_by_memory_with_sources_and_assumptions():
    assert set(memory.PRESETS) >= {"sdr16-166", "ddr3-16-800"}
    for p in memory.PRESETS.values():
        assert p.source and "NOT confirmed" in p.assumptions
    m = memory.parse("ddr3-16-800", 150.0)
    # 1600 MB/s at 150 MHz = 10.667 bytes per cycle, x 0.7; 100 ns = 15 cycles
    assert m.rate_num * 150 * 10 == 1600 * 7 * m.rate_den
    assert m.latency_cycles == 15 and m.efficiency == 0.7
    s = memory.parse("sdr16-166,efficiency=0.6,latency=4,fifo=100", 100.0)
    assert s.rate_num * 100 * 10 == 332 * 6 * s.rate_den and s.latency_cycles == 4 and s.fifo_bytes == 100
    c = memory.parse("4.5", 150.0)
    assert (c.rate_num, c.rate_den, c.latency_cycles, c.name) == (9, 2, 0, "custom")
    assert memory.parse(None, 150.0) is None and memory.parse("unlimited", 150.0) is None
    assert memory.model(10.0).memory_cycles(101) == 11
    assert memory.model(3.0, latency_cycles=5).memory_cycles(9) == 8


@pytest.mark.parametrize("spec, match", [
    ("ddr9", "preset"), ("-3", "positive"), ("0", "positive"), ("nan", "positive"), ("2,efficiency=1.5", "at most 1"),
    ("2,speed=3", "not one of"), ("2,latency=x", "not a number"), ("unlimited,fifo=3", "no options"),
    ("2,latency=-1", ">= 0"), ("2,fifo=0", "positive"),
])
def test_bad_memory_specs_are_user_errors(spec, match):
    with pytest.raises(RepAccelError, match=match):
        memory.parse(spec, 150.0)


def test_fifo_must_hold_the_largest_beat():
    g = HardwareGenerics(pi=4, po=4)
    with pytest.raises(RepAccelError, match="36-byte beat"):
        memory.model(2.0, fifo_bytes=35).check_beats(g)
    shape = LayerShape(4, 4, 1, 1, 3, 3)
    with pytest.raises(RepAccelError, match="fifo"):
        fast.cycles(shape, g, memory.model(2.0, fifo_bytes=8))


def test_minimum_bytes_of_a_layer():
    s = LayerShape(8, 12, 4, 2, 6, 5)
    # input 8*6*5, output 12*3*3, weights 12 * 2 * 9, requantization 12 * 9
    assert memory.minimum_bytes(s) == 240 + 108 + 216 + 108


# ---------------------------------------------------------------------------------- cycle mode

@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_stall_pattern_is_the_memory_model_and_fast_equals_cycle(case):
    """Per layer class: the host signals in the trace are exactly the model's, outputs do
    not change, the count only grows, the memory's bandwidth bounds it, and fast mode's
    count (the timing replay) equals it."""
    k = LAYER_CASES.index(case)
    rng = np.random.default_rng(SEED + k)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng)[0]
    pi, po = [(4, 3), (1, 1), (2, 3), (4, 4)][k % 4]
    g = _generics(pi, po, layer.shape)
    base = cycle.run_layer_q(layer, x, g)
    params = cycle.layer_params(layer, g)
    n_in = cycle.layer_streams(x, layer.shape, g).shape[0]
    for j in range(4):
        m = _random_memory(rng, g)
        print("seed", SEED + k, "memory", m.label())
        res = cycle.run_layer_q(layer, x, g, trace=True, memory=m)
        assert np.array_equal(res.output, base.output)
        assert res.cycles >= base.cycles
        t = res.trace
        want = reference_host(t, m, g, params.shape[0], n_in)
        for col, name in enumerate(("params_valid", "act_in_valid", "act_out_ready")):
            bad = np.flatnonzero(t[name] != want[:, col])
            assert bad.size == 0, f"{name} differs from the memory model first in cycle {bad[:1]}"
        n_out = schedule_layer(layer.shape, g).output_beats
        moved = params.shape[0] * g.param_beat_bytes + n_in * g.pi + n_out * g.po
        assert res.cycles >= m.memory_cycles(moved)
        assert fast.cycles(layer.shape, g, m) == res.cycles


def test_fast_equals_cycle_on_random_shapes_and_memories():
    rng = np.random.default_rng(SEED)
    grew = 0
    for k in range(25):
        groups = int(rng.choice([1, 2, 4]))
        cin, cout = groups * int(rng.integers(1, 12)), groups * int(rng.integers(1, 10))
        case = (cin, cout, groups, int(rng.integers(1, 3)), int(rng.integers(1, 12)), int(rng.integers(1, 12)),
                bool(rng.integers(2)))
        layer = random_layer(case, rng)
        shape = layer.shape
        g = _generics(int(rng.integers(1, 6)), int(rng.integers(1, 6)), shape)
        m = _random_memory(rng, g)
        x = random_input(shape, rng)[0]
        stim = cycle.Stimulus.random(k, 0.8, 0.6, 0.7, length=int(rng.integers(3, 50))) if k % 3 == 0 else None
        print(k, shape, g, m.label(), stim is not None)
        res = cycle.run_layer_q(layer, x, g, stimulus=stim, memory=m)
        assert cycle.timing_cycles(shape, g, m, stim) == res.cycles
        assert res.cycles >= layer_cycles(shape, g)
        grew += res.cycles > layer_cycles(shape, g) + m.latency_cycles
    assert grew >= 10  # most of these memories limit the engine


def test_ample_memory_without_latency_is_the_schedule_formula():
    rng = np.random.default_rng(SEED + 7)
    for case in LAYER_CASES[:6]:
        layer = random_layer(case, rng)
        g = _generics(3, 2, layer.shape)
        m = memory.model(9 * g.pi + g.pi + g.po)  # every stream a beat in every cycle
        x = random_input(layer.shape, rng)[0]
        assert cycle.run_layer_q(layer, x, g, memory=m).cycles == layer_cycles(layer.shape, g)
        assert fast.cycles(layer.shape, g, m) == layer_cycles(layer.shape, g)


def test_a_layer_at_a_slow_memory_by_hand():
    """A case worked by hand: a 1x1 picture, one tile, PI = PO = 1 (L = 20), 1 byte per
    cycle from cycle 3, FIFO 9 bytes. Cycle 3: the credit is 1, too little for a 9-byte
    parameter beat, enough for the 1-byte input beat, which the host offers (prefetch).
    The parameter beats then arrive when 9 bytes have accrued again: cycles 12, 21, 30,
    each taken at once. The scan takes its 4 steps in cycles 31-34 (the input beat held
    since cycle 3); the output beat is valid in 34 + 23 = 57, the credit covers it, so
    the layer takes 58 cycles (31 with unlimited memory)."""
    shape = LayerShape(1, 1, 1, 1, 1, 1)
    g = HardwareGenerics(pi=1, po=1, w_max=3, max_cg=1, line_depth=1)
    m = memory.model(1.0, latency_cycles=3, fifo_bytes=9)
    params = np.zeros((group_param_beats(schedule_layer(shape, g).groups[0], g), g.param_beat_bytes), np.uint8)
    params[0, 0] = params[0, 4] = 1  # header: cg = 1, tiles = 1
    t = cycle.run_layer(np.zeros((1, 1, 1), np.uint8), shape, params, g, trace=True, memory=m).trace
    assert list(np.flatnonzero(t["params_valid"] & t["params_ready"])) == [12, 21, 30]
    assert list(np.flatnonzero(t["act_in_valid"])) == list(range(3, 32))
    assert list(np.flatnonzero(t["act_in_valid"] & t["act_in_ready"])) == [31]
    assert list(np.flatnonzero(t["act_out_valid"] & t["act_out_ready"])) == [57]
    assert len(t) - 1 == 58 == fast.cycles(shape, g, m)
    assert layer_cycles(shape, g) == 31


# ---------------------------------------------------------------------------------- networks

def test_network_fast_and_cycle_agree_under_memory_and_report_it():
    qnet = synthetic.random_qnetwork([(3, 8, 2, 1), (8, 12, 1, 1), (12, 12, 1, 2)], (3, 12, 10), seed=3)
    x = synthetic.random_input(qnet, 2, seed=4)
    g = HardwareGenerics(pi=4, po=4, w_max=12, max_cg=3, line_depth=18)
    m = memory.parse("sdr16-166", 100.0)
    rf = NetworkSimulator(qnet, g, "fast", clock_mhz=100.0, memory=m).run(x, show_progress=False)
    rc = NetworkSimulator(qnet, g, "cycle", clock_mhz=100.0, memory=m).run(x, show_progress=False)
    ru = NetworkSimulator(qnet, g, "fast", clock_mhz=100.0).run(x, show_progress=False)
    assert np.array_equal(rf.logits, rc.logits) and np.array_equal(rf.logits, ru.logits)
    assert np.array_equal(rf.cycles, rc.cycles)
    assert np.all(rf.cycles > ru.cycles)
    r = rf.report
    assert r.memory["name"] == "sdr16-166" and r.unlimited_cycles == ru.report.cycles
    assert r.stall_cycles == r.cycles - r.unlimited_cycles > 0
    assert r.frames_per_second < r.frames_per_second_unlimited == ru.report.frames_per_second
    assert r.min_bytes == sum(memory.minimum_bytes(l.shape) for l in qnet.layers)
    assert r.bytes == r.act_read_bytes + r.weight_read_bytes + r.act_write_bytes > r.min_bytes
    for lr in r.layers:
        assert lr.bound == ("memory" if m.memory_cycles(lr.bytes) > lr.unlimited_cycles else "compute")
    assert any(lr.bound == "memory" for lr in r.layers)
    assert [lr.cycles for lr in schedule_report(qnet, g, 100.0, m).layers] == list(rf.cycles[0])
    text = format_table(r)
    assert "sdr16-166" in text and "memory-bound" in text and "x the minimum" in text
    json.dumps(r.to_dict())
    assert ru.report.memory is None and all(lr.bound == "compute" for lr in ru.report.layers)


# ---------------------------------------------------------------------------------- CLI

def test_simulate_cli_takes_memory(tmp_path, capsys):
    from rep_accel import cli, images
    qnet = synthetic.random_zoo_qnetwork("tiny", 16, seed=SEED)
    g = HardwareGenerics(pi=4, po=4, w_max=16)
    images.write_build(qnet, g, tmp_path / "build")
    np.save(tmp_path / "x.npy", np.random.default_rng(SEED).normal(0, 1, (1,) + tuple(qnet.input_size))
            .astype(np.float32))
    reports = {}
    for mode in ("fast", "cycle"):
        out_json = tmp_path / f"r_{mode}.json"
        rc = cli.main(["simulate", str(tmp_path / "build"), "--input", str(tmp_path / "x.npy"), "--mode", mode,
                       "--memory", "sdr16-166,latency=12", "--clock-mhz", "125", "--json", str(out_json)])
        out, err = capsys.readouterr()
        assert rc == 0, err
        assert "memory sdr16-166" in out and "frames/s against" in out
        reports[mode] = json.loads(out_json.read_text())["report"]
    assert reports["fast"]["cycles"] == reports["cycle"]["cycles"] > reports["fast"]["unlimited_cycles"]
    m = memory.parse("sdr16-166,latency=12", 125.0)
    assert reports["fast"]["memory"]["latency_cycles"] == 12
    assert [lr["cycles"] for lr in reports["fast"]["layers"]] == [fast.cycles(l.shape, g, m) for l in qnet.layers]
    rc = cli.main(["simulate", str(tmp_path / "build"), "--input", str(tmp_path / "x.npy"), "--memory", "ddr5"])
    out, err = capsys.readouterr()
    assert rc == 2 and "--memory 'ddr5'" in err and len(err.strip().splitlines()) == 1


def test_synth_memory_needs_a_workload_and_a_valid_spec(tmp_path, capsys):
    from rep_accel import cli
    v = tmp_path / "top.v"
    v.write_text("module top(input a, output b); assign b = a; endmodule\n")
    for argv, match in ((["--memory", "ddr3-16-800"], "give --build or --model"),
                        (["--model", "A0", "--memory", "fast"], "--memory 'fast'")):
        rc = cli.main(["synth", str(v), "--top", "top", "--target", "generic", "-o", str(tmp_path / "out"), *argv])
        out, err = capsys.readouterr()
        assert rc == 2 and match in err, err


@pytest.mark.parametrize("case", LAYER_CASES[::3], ids=case_id)
def test_memory_stall_pattern_replayed_as_patterns(case):
    """The memory's stall pattern as plain patterns (what the cocotb testbench replays)
    drives the engine to the same trace, cycle for cycle, as the memory model itself."""
    rng = np.random.default_rng(SEED + 50 + LAYER_CASES.index(case))
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng)[0]
    g = _generics(2, 3, layer.shape)
    params = cycle.layer_params(layer, g)
    m = memory.model(1.7, 0.8, 11, 64)
    base = cycle.Stimulus.random(5, 0.9, 0.8, 0.7, length=31)
    want = cycle.run_layer(x, layer.shape, params, g, base, trace=True, memory=m)
    stim = cycle.memory_stimulus(x, layer.shape, params, g, m, base)
    got = cycle.run_layer(x, layer.shape, params, g, stim, trace=True)
    assert got.cycles == want.cycles > layer_cycles(layer.shape, g)
    assert np.array_equal(got.trace, want.trace) and np.array_equal(got.output, want.output)


def test_repvgg_a0_fast_equals_cycle_under_memories():
    """RepVGG-A0's 22 layer shapes (at 32x32, so that cycle mode takes a second) on the 4x4
    array: fast mode's count equals cycle mode's under both presets, outputs unchanged."""
    qnet = synthetic.random_zoo_qnetwork("A0", 32, seed=SEED, num_classes=10)
    x = synthetic.random_input(qnet, 1, seed=2)
    g = HardwareGenerics(pi=4, po=4, w_max=32, max_cg=48, line_depth=768)
    ref = NetworkSimulator(qnet, g, "fast").run(x, show_progress=False)
    for spec in ("ddr3-16-800", "sdr16-166"):
        m = memory.parse(spec, 150.0)
        rf = NetworkSimulator(qnet, g, "fast", memory=m).run(x, show_progress=False)
        rc = NetworkSimulator(qnet, g, "cycle", memory=m).run(x, show_progress=False)
        assert np.array_equal(rf.cycles, rc.cycles) and np.array_equal(rc.logits, ref.logits)
        assert np.all(rc.cycles > ref.cycles)
        print(spec, rc.report.cycles, ref.report.cycles)
