"""The Winograd unit kind in the simulator: the scan of docs/architecture.md ("Winograd scan")
as `rep_accel.layout` defines it, and cycle mode running it (4x4 tiles, kernels transformed as
they load, Winograd-domain sums, a block's beats sent on the next slot's steps) against the
golden model, the cycle formula, fast mode and the timing replay."""

import dataclasses

import numpy as np
import pytest

from rep_accel import golden, layout, winograd
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape, schedule_layer
from rep_accel.sim import cycle, fast
from rep_accel.testing import vector_cases
from rep_accel.verification.cases import random_layer as any_layer
from sim_cases import LAYER_CASES, case_id, random_input, random_layer, random_schedule_case, reference_output

SEED = 8800


def _winograd(pi, po, width, max_group=1, **kw):
    return HardwareGenerics(pi=pi, po=po, w_max=max(3, width), max_group=max_group, unit="winograd", **kw)


# ----------------------------------------------------------------------------------
# The scan (layout)
# ----------------------------------------------------------------------------------

def _prose_slots(h, w):
    """The Winograd scan as docs/architecture.md words it: (FULL pixels, STORE pixels, padding
    STOREs, whether the slot computes a block), pixels as (y, x) inside the image."""
    rows, cols = 2 * -(-h // 2) + 1, 2 * -(-w // 2) + 1
    slots = []
    for y in range(0, rows, 2):
        for x0 in range(0, cols, 2):
            xs = [x for x in (x0, x0 + 1) if x < cols]
            stored = [x for x in xs if x < w] if y + 2 < rows else []
            slots.append(([(y, x) for x in xs if y < h and x < w],
                          [(y + 1, x) for x in stored if y + 1 < h],
                          len([x for x in stored if y + 1 >= h]),
                          y >= 2 and x0 >= 2))
    return slots


@pytest.mark.parametrize("h,w", [(1, 1), (2, 2), (3, 5), (4, 4), (5, 2), (6, 7), (7, 7), (2, 9)])
def test_scan_is_the_prose(h, w):
    table = layout.scan_slots(h, w, 1, winograd=True)
    prose = _prose_slots(h, w)
    assert len(table) == len(prose)
    for (y, x0, n_full, n_store, has_out), (full, store, pad_stores, out) in zip(table.tolist(), prose):
        assert [(y, x) for x in range(x0, x0 + n_full) if y < h and x < w] == full
        assert [(y + 1, x) for x in range(x0, x0 + n_store) if y + 1 < h] == store
        assert sum(y + 1 >= h for _ in range(n_store)) == pad_stores
        assert bool(has_out) == out


@pytest.mark.parametrize("h,w,cg", [(1, 1, 1), (3, 5, 2), (4, 4, 1), (6, 7, 3), (7, 2, 2)])
def test_input_order_reads_every_pixel_once_and_stores_after_the_read(h, w, cg):
    """Every (y, x, g) once; an entry's STORE (row y+1 into the entry of column x) comes after
    the FULL read of row y at that column, which it replaces."""
    order = [tuple(v) for v in layout.input_order(h, w, 1, cg, winograd=True).tolist()]
    assert sorted(order) == sorted((y, x, g) for y in range(h) for x in range(w) for g in range(cg))
    at = {v: i for i, v in enumerate(order)}
    for y in range(0, h - 1, 2):
        for x in range(w):
            for g in range(cg):
                assert at[(y, x, g)] < at[(y + 1, x, g)]


@pytest.mark.parametrize("h,w,k", [(1, 1, 1), (3, 5, 2), (4, 4, 3), (5, 2, 1)])
def test_output_order_is_blocks_then_tiles_then_pixels(h, w, k):
    order = [tuple(v) for v in layout.output_order(h, w, k, winograd=True).tolist()]
    assert sorted(order) == sorted((t, y, x) for t in range(k) for y in range(h) for x in range(w))
    blocks = [(y // 2, x // 2) for _, y, x in order]
    assert blocks == sorted(blocks)          # block by block, raster order of blocks
    n0 = min(2, h) * min(2, w)   # the first block's pixels: tile 0's, in raster order, then tile 1's
    assert order[:n0] == [(0, y, x) for y in range(min(2, h)) for x in range(min(2, w))]
    if k > 1:
        assert order[n0:2 * n0] == [(1, y, x) for y in range(min(2, h)) for x in range(min(2, w))]


def test_cycle_formula_worked_by_hand():
    """H = W = 2, one channel group, one tile, PI = PO = 1 (docs/architecture.md, "Winograd
    scan"): rows and columns 0..2. Row 0 stores row 1: slot (0, 0) has FULL (0,0), (0,1) and
    STORE (1,0), (1,1): 4 steps; slot (0, 2): FULL (0,2), padding: 1 step. Row 2 (padding,
    nothing follows): slot (2, 0) 2 steps; slot (2, 2) computes the block: max(K=1, 1) = 1
    step, then its 4 beats: 4 steps. 12 steps; parameters 1 + 1 x 1 x (1 + 1) = 3 beats;
    latency PI + PO + 27 = 29; descriptor 1. Total 45."""
    shape = LayerShape(1, 1, 1, 1, 2, 2)
    g = _winograd(1, 1, 2)
    assert g.pipeline_latency == 29
    sched = schedule_layer(shape, g)
    assert sched.winograd
    assert layout.group_steps(shape, sched.groups[0], winograd=True) == 12
    assert sched.cycles == 45
    layer = any_layer(np.random.default_rng(SEED), shape)
    assert cycle.run_layer_q(layer, np.ones((1, 2, 2), np.int8), g).cycles == 45


def test_stride_two_and_direct_arrays_keep_the_direct_scan():
    s1, s2 = LayerShape(8, 8, 1, 1, 6, 6), LayerShape(8, 8, 1, 2, 6, 6)
    w, d = _winograd(2, 2, 6, 3), HardwareGenerics(pi=2, po=2, w_max=6, max_group=3)
    assert schedule_layer(s1, w).winograd and not schedule_layer(s2, w).winograd
    assert not schedule_layer(s1, d).winograd
    assert schedule_layer(s2, w).cycles - w.pipeline_latency * len(schedule_layer(s2, w).groups) == \
        schedule_layer(s2, d).cycles - d.pipeline_latency * len(schedule_layer(s2, d).groups)
    assert schedule_layer(s1, w).cycles < schedule_layer(s1, d).cycles


# ----------------------------------------------------------------------------------
# The per-tile transforms of the Numba engine against the numpy reference
# ----------------------------------------------------------------------------------

def test_tile_transforms_match_the_numpy_reference():
    from numba import njit

    @njit
    def transforms(d, g, m):
        v, u, y = np.zeros(16, np.int64), np.zeros(16, np.int64), np.zeros(4, np.int64)
        winograd.input_transform_into(d, v)
        winograd.weight_transform_into(g, u)
        winograd.output_transform_into(m, y)
        return v, u, y

    rng = np.random.default_rng(SEED)
    for trial in range(200):
        signed = trial % 2 == 0
        d = rng.integers(-128, 128, 16) if signed else rng.integers(0, 256, 16)
        if trial < 4:
            d[:] = [-128, 127, 0, 255][trial] if not signed or trial != 3 else -128
        g = rng.integers(-128, 128, 9)
        m = rng.integers(-(1 << 28), 1 << 28, (4, 4))
        v, u, y = transforms(d.astype(np.int64), g.astype(np.int64), m.ravel().astype(np.int64))
        dt = np.int8 if signed else np.uint8
        assert np.array_equal(v, winograd.transform_input_tile(d.reshape(4, 4).astype(dt)).ravel())
        assert np.array_equal(u, winograd.transform_weights(g.reshape(1, 1, 3, 3).astype(np.int8)).ravel())
        four_y = winograd.output_transform(m)
        # the engine's shift floors; for a multiple of 4 (what the identity gives) it is exact
        assert np.array_equal(y, (four_y >> 2).ravel())
    assert winograd.wrap_domain((1 << 33) + 5) == -(1 << 33) + 5 and winograd.wrap_domain(-7) == -7


# ----------------------------------------------------------------------------------
# Cycle mode on Winograd arrays
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("max_group", [1, 3])
@pytest.mark.parametrize("pi,po", [(1, 1), (3, 2), (4, 4)], ids=str)
@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_cycle_outputs_and_count_match_fast_mode(case, pi, po, max_group):
    """Every layer class of the shared cases on Winograd arrays: stride 1 as Winograd tiles,
    stride 2 as 3x3 windows; outputs == golden == fast mode, cycles == the formula."""
    seed = SEED + LAYER_CASES.index(case) * 10 + pi
    print("seed", seed)
    rng = np.random.default_rng(seed)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng)
    g = _winograd(pi, po, layer.shape.width, max_group)
    res = cycle.run_layer_q(layer, x[0], g)
    assert np.array_equal(res.output, reference_output(layer, x)[0])
    assert np.array_equal(res.output, fast.conv_layer_q(x, layer)[0])
    assert res.cycles == fast.cycles(layer.shape, g) == schedule_layer(layer.shape, g).cycles


def test_random_shapes_and_schedule_choices_match_the_formula():
    """Random layers (odd and even sizes from 1, groups, int8 and uint8 inputs, strides 1 and
    2) on random Winograd arrays and tile groups: outputs == golden, cycles == formula, and
    under random host stalls == the timing replay with the same outputs."""
    seed = SEED + 999
    print("seed", seed)
    rng = np.random.default_rng(seed)
    for trial in range(40):
        shape, g = random_schedule_case(rng, "winograd", strides=(1, 1, 2), max_cin=4, max_size=9)
        layer = any_layer(rng, shape)
        x = random_input(shape, rng)
        res = cycle.run_layer_q(layer, x[0], g)
        assert np.array_equal(res.output, golden.conv_layer(x, layer)[0]), (trial, shape, g)
        assert res.cycles == schedule_layer(shape, g).cycles, (trial, shape, g)
        stim = cycle.Stimulus.random(seed + trial, 0.7, 0.7, 0.7, length=int(rng.integers(5, 200)))
        stalled = cycle.run_layer_q(layer, x[0], g, stimulus=stim, trace=True)
        assert np.array_equal(stalled.output, res.output)
        assert stalled.cycles == cycle.timing_cycles(shape, g, stimulus=stim) >= res.cycles, (trial, shape, g)
        t = stalled.trace
        assert int((t["act_out_valid"] & t["act_out_ready"]).sum()) == schedule_layer(shape, g).output_beats


def test_extreme_operands_at_the_widths_limits():
    """All-255 uint8 inputs with all -128 / 127 weights over many channels: the largest
    Winograd-domain sums; the outputs still equal the golden model's."""
    shape = LayerShape(40, 4, 1, 1, 5, 6)
    g = _winograd(4, 2, 6, 2)
    rng = np.random.default_rng(SEED + 5)
    for fill in (-128, 127):
        layer = any_layer(rng, shape)
        layer = dataclasses.replace(layer, weight=np.full_like(layer.weight, fill))
        x = np.full((1, 40, 5, 6), 255, np.uint8)
        assert np.array_equal(cycle.run_layer_q(layer, x[0], g).output, golden.conv_layer(x, layer)[0])


@pytest.mark.parametrize("case", [c for c in vector_cases() if c.layer.shape.stride == 1], ids=lambda c: f"case{c.index}")
def test_winograd_reproduces_tflite_vectors(case):
    g = _winograd(8, 8, case.layer.shape.width, 2)
    for i in range(case.x.shape[0]):
        assert np.array_equal(cycle.run_layer_q(case.layer, case.x[i], g).output, case.y[i])


def test_memory_model_fast_equals_cycle():
    from rep_accel import memory
    shape = LayerShape(16, 24, 1, 1, 9, 10)
    g = _winograd(4, 4, 10, 4)
    rng = np.random.default_rng(SEED + 7)
    layer = any_layer(rng, shape)
    x = random_input(shape, rng)
    mem = memory.parse("sdr16-166", 150.0)
    res = cycle.run_layer_q(layer, x[0], g, memory=mem)
    assert np.array_equal(res.output, golden.conv_layer(x, layer)[0])
    assert res.cycles == cycle.timing_cycles(shape, g, memory=mem) > schedule_layer(shape, g).cycles


def test_direct_output_order_is_what_output_from_beats_reads():
    """layout.output_order's direct order (raster pixels, then tiles) is the order
    output_from_beats scatters by its reshape: beats numbered in that order land where it says."""
    shape = LayerShape(4, 10, 1, 1, 3, 5)
    g = HardwareGenerics(pi=2, po=4, w_max=5, max_group=3)
    group = schedule_layer(shape, g).groups[0]
    order = layout.output_order(shape.out_height, shape.out_width, group.count)
    beats = (np.arange(len(order))[:, None] * 4 + np.arange(4)[None, :]).astype(np.uint8)
    out = np.zeros((shape.cout, shape.out_height, shape.out_width), np.uint8)
    layout.output_from_beats(beats, shape, group, out)
    for n, (k, y, x) in enumerate(order.tolist()):
        tile = group.tiles[k]
        assert list(out[tile.out_base:tile.out_base + tile.out_count, y, x]) == list(beats[n, :tile.out_count])
