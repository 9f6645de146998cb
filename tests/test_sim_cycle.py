"""Cycle mode: outputs bit-exact, cycle counts equal to the fast mode's schedule formula
(the cycle mode counts by stepping), the per-cycle port activity of the schedule in
docs/architecture.md, and stalls that change nothing but the cycle count."""

import numpy as np
import pytest

from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import has_output, scan_extent, schedule_layer
from rep_accel.sim import cycle, fast
from rep_accel.testing import vector_cases
from sim_cases import LAYER_CASES, case_id, random_input, random_layer, reference_output

SEED = 7100
#: Array shapes (PI, PO): the default, the smallest, non-square ones.
ARRAYS = [(8, 8), (1, 1), (3, 5), (4, 2)]


#: Tiles per group: one tile at a time, and tile groups (docs/architecture.md, "Tile groups").
MAX_GROUPS = [1, 3]


def _generics(pi, po, shape, max_group=1):
    return HardwareGenerics(pi=pi, po=po, w_max=max(3, shape.width), max_group=max_group)


@pytest.mark.parametrize("max_group", MAX_GROUPS)
@pytest.mark.parametrize("pi,po", ARRAYS, ids=lambda v: str(v))
@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_cycle_outputs_and_count_match_fast_mode(case, pi, po, max_group):
    seed = SEED + LAYER_CASES.index(case) * 10 + ARRAYS.index((pi, po))
    print("seed", seed)
    rng = np.random.default_rng(seed)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng)
    g = _generics(pi, po, layer.shape, max_group)
    res = cycle.run_layer_q(layer, x[0], g)
    assert np.array_equal(res.output, reference_output(layer, x)[0])
    assert np.array_equal(res.output, fast.conv_layer_q(x, layer)[0])
    assert res.cycles == fast.cycles(layer.shape, g)


def _prose_slots(h, w, stride):
    """The scan's slots as docs/architecture.md words them: (FULL pixels, STORE pixels,
    whether the first FULL item completes an output)."""
    rows, cols = scan_extent(h, w, stride)
    if stride == 1:
        return [([(y, x)], [], has_output(y, x, 1)) for y in range(rows) for x in range(cols)]
    slots = [([(0, x)], [], False) for x in range(cols)]
    for y in range(1, rows, 2):
        for xs in [[0]] + [[x for x in (x0, x0 + 1) if x < cols] for x0 in range(1, cols, 2)]:
            stores = [(y + 1, x) for x in xs if y + 1 < h and x < w]
            slots.append(([(y, x) for x in xs], stores, xs[0] % 2 == 1))
    return slots


def _expected_ports(shape, g):
    """Per-cycle params.ready, act_in transfer and act_out transfer of a never-stalling
    run, derived from the schedule's prose (tile groups back to back after the descriptor;
    1 + K*PO*(1 + cg) parameter beats, then for each slot and channel group max(K or 1,
    items) steps, one item each: a FULL item inside the image or a STORE item takes an
    input; an output beat L cycles after each of the K steps of the last channel group of
    an output slot; then the drain of L cycles)."""
    sch = schedule_layer(shape, g)
    L = g.pipeline_latency
    p_ready, a_in, a_out = [], [], []
    c = 1
    for j in sch.groups:
        p = 1 + j.count * g.po * (1 + j.cg)
        p_ready += list(range(c, c + p))
        c += p
        for full, stores, out in _prose_slots(shape.height, shape.width, shape.stride):
            items = [y < shape.height and x < shape.width for y, x in full] + [True] * len(stores)
            for cg in range(j.cg):
                for k in range(max(j.count if out else 1, len(items))):
                    if k < len(items) and items[k]:
                        a_in.append(c)
                    if cg == j.cg - 1 and out and k < j.count:
                        a_out.append(c + L)
                    c += 1
        c += L
    total = c
    assert total == sch.cycles
    ports = [np.zeros(total + 1, np.uint8) for _ in range(3)]
    for port, cycles in zip(ports, (p_ready, a_in, a_out)):
        port[cycles] = 1
    return (total, *ports)


@pytest.mark.parametrize("pi,po", [(8, 8), (3, 5)], ids=str)
@pytest.mark.parametrize("max_group", MAX_GROUPS)
@pytest.mark.parametrize("case", LAYER_CASES[:8], ids=case_id)
def test_trace_follows_the_schedule(case, pi, po, max_group):
    rng = np.random.default_rng(SEED)
    layer = random_layer(case, rng)
    g = _generics(pi, po, layer.shape, max_group)
    res = cycle.run_layer_q(layer, random_input(layer.shape, rng)[0], g, trace=True)
    total, p_ready, a_in, a_out = _expected_ports(layer.shape, g)
    t = res.trace
    assert res.cycles == total and len(t) == total + 1
    assert np.array_equal(t["cycle"], np.arange(total + 1))
    assert np.array_equal(t["params_ready"], p_ready)
    assert np.array_equal(t["act_in_valid"] & t["act_in_ready"], a_in)
    assert np.array_equal(t["act_out_valid"] & t["act_out_ready"], a_out)
    assert np.array_equal(t["act_out_valid"], a_out)  # never stalled: every beat leaves at once
    busy = np.ones(total + 1, np.uint8)
    busy[0] = busy[-1] = 0  # high from the cycle after the descriptor to the last output transfer
    assert np.array_equal(t["busy"], busy)
    done = np.zeros(total + 1, np.uint8)
    done[-1] = 1
    assert np.array_equal(t["done"], done)
    desc = t["desc_valid"] & t["desc_ready"]
    assert desc[0] == 1 and desc[1:].sum() == 0
    assert t["desc_ready"][-1] == 1 and t["desc_ready"][1:-1].sum() == 0


def _check_stream_rules(t):
    """A valid not taken stays valid the next cycle (the host obeys the stream rule)."""
    for s in ("params", "act_in"):
        v, r = t[f"{s}_valid"].astype(bool), t[f"{s}_ready"].astype(bool)
        held = v[:-1] & ~r[:-1]
        assert np.all(v[1:][held]), f"{s}.valid dropped before its transfer"
    v, r = t["act_out_valid"].astype(bool), t["act_out_ready"].astype(bool)
    held = v[:-1] & ~r[:-1]
    assert np.all(v[1:][held]), "act_out.valid dropped before its transfer"


@pytest.mark.parametrize("case", LAYER_CASES[:8], ids=case_id)
def test_stalls_change_only_the_cycle_count(case):
    rng = np.random.default_rng(SEED + 1)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng)[0]
    g = _generics(4, 3, layer.shape, max_group=2)
    base = cycle.run_layer_q(layer, x, g)
    params = cycle.layer_params(layer, g)
    n_in = cycle.layer_streams(x, layer.shape, g).shape[0]
    n_out = schedule_layer(layer.shape, g).output_beats
    grew = 0
    for k, probs in enumerate([(0.5, 1.0, 1.0), (1.0, 0.5, 1.0), (1.0, 1.0, 0.3), (0.6, 0.4, 0.5), (0.9, 0.9, 0.9)]):
        seed = SEED * 100 + LAYER_CASES.index(case) * 10 + k
        print("seed", seed, probs)
        stim = cycle.Stimulus.random(seed, *probs, length=int(np.random.default_rng(seed).integers(5, 300)))
        res = cycle.run_layer_q(layer, x, g, stimulus=stim, trace=True)
        assert np.array_equal(res.output, base.output)
        assert res.cycles >= base.cycles
        grew += res.cycles > base.cycles
        t = res.trace
        assert len(t) == res.cycles + 1 and t["busy"].sum() == res.cycles - 1 and t["done"][-1] == 1
        assert int((t["params_valid"] & t["params_ready"]).sum()) == params.shape[0]
        assert int((t["act_in_valid"] & t["act_in_ready"]).sum()) == n_in
        assert int((t["act_out_valid"] & t["act_out_ready"]).sum()) == n_out
        _check_stream_rules(t)
        # act_in.ready is never high while an output beat waits (the global stall)
        assert not np.any(t["act_in_ready"] & t["act_out_valid"] & ~t["act_out_ready"].astype(bool))
    assert grew >= 4


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: f"case{c.index}")
def test_cycle_reproduces_tflite_vectors(case):
    g = HardwareGenerics(w_max=max(3, case.layer.shape.width))
    for i in range(case.x.shape[0]):
        res = cycle.run_layer_q(case.layer, case.x[i], g)
        assert np.array_equal(res.output, case.y[i])
        assert res.cycles == fast.cycles(case.layer.shape, g)


def test_trace_files_round_trip(tmp_path):
    rng = np.random.default_rng(SEED)
    layer = random_layer(LAYER_CASES[2], rng)
    res = cycle.run_layer_q(layer, random_input(layer.shape, rng)[0], HardwareGenerics(),
                            stimulus=cycle.Stimulus.random(3), trace=True)
    for name in ("t.csv", "t.npz"):
        cycle.write_trace(tmp_path / name, res.trace)
        back = cycle.read_trace(tmp_path / name)
        assert back.dtype.names == res.trace.dtype.names
        assert all(np.array_equal(back[n], res.trace[n]) for n in back.dtype.names)
    header = (tmp_path / "t.csv").read_text().splitlines()[0]
    assert header == "cycle," + ",".join(cycle.TRACE_SIGNALS)
    with pytest.raises(RepAccelError, match="csv or .npz"):
        cycle.write_trace(tmp_path / "t.txt", res.trace)


def test_damaged_streams_are_reported():
    rng = np.random.default_rng(SEED)
    layer = random_layer(LAYER_CASES[3], rng, name="convX")
    x = random_input(layer.shape, rng)[0]
    g = HardwareGenerics()
    params = cycle.layer_params(layer, g)
    bad = params.copy()
    bad[0, 0:2] = [0xFF, 0x00]  # header: cg = 255 > max_cg
    with pytest.raises(RepAccelError, match="convX.*max_cg"):
        cycle.run_layer(x, layer.shape, bad, g, name="convX")
    with pytest.raises(RepAccelError, match="parameter stream ended"):
        cycle.run_layer(x, layer.shape, params[:-3], g)
    with pytest.raises(RepAccelError, match="never consumed"):
        cycle.run_layer(x, layer.shape, np.concatenate([params, params[:2]]), g)
    bad = params.copy()
    bad[0, 0:2] = [5, 0]  # fewer channel groups than the tile plan streams
    with pytest.raises(RepAccelError):
        cycle.run_layer(x, layer.shape, bad, g)
    with pytest.raises(RepAccelError, match="at least one 1"):
        cycle.run_layer(x, layer.shape, params, g, stimulus=cycle.Stimulus(act_out_ready=np.zeros(4)))
    with pytest.raises(RepAccelError, match="input shape"):
        cycle.run_layer(x[:, :-1], layer.shape, params, g)


def test_random_shapes_and_schedule_choices_match_the_formula():
    """Random layers (stride 1 and 2, odd and even sizes, groups, int8 and uint8 inputs) on
    random arrays and schedule choices (max_group 1..6, max_cg from just enough for one tile
    up): cycle mode's outputs equal fast mode's, its count equals layout.layer_cycles
    without stalls, and under random host stalls equals the timing replay (fast mode's
    count under stalls)."""
    from rep_accel.verification.cases import random_layer as any_layer
    from sim_cases import random_schedule_case
    seed = SEED + 999
    print("seed", seed)
    rng = np.random.default_rng(seed)
    for trial in range(40):
        shape, g = random_schedule_case(rng)
        layer = any_layer(rng, shape)
        x = random_input(shape, rng)
        res = cycle.run_layer_q(layer, x[0], g)
        assert np.array_equal(res.output, fast.conv_layer_q(x, layer)[0]), (trial, shape, g)
        assert res.cycles == schedule_layer(shape, g).cycles, (trial, shape, g)
        stim = cycle.Stimulus.random(seed + trial, 0.7, 0.7, 0.7, length=int(rng.integers(5, 200)))
        stalled = cycle.run_layer_q(layer, x[0], g, stimulus=stim)
        assert np.array_equal(stalled.output, res.output)
        assert stalled.cycles == cycle.timing_cycles(shape, g, stimulus=stim) >= res.cycles, (trial, shape, g)
