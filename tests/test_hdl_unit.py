"""The 3x3 unit and the systolic array (hdl/unit.py, hdl/array.py) in the Amaranth simulator,
against plain Python dot products of windows and kernels."""

import numpy as np
import pytest

from hdl_bench import pack_lanes, run_cycles, simulate, unpack_lanes
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl import array, unit
from rep_accel.hdl.array import SystolicArray
from rep_accel.hdl.unit import ConvUnit


def _wrap32(v: int) -> int:
    v &= (1 << 32) - 1
    return v - (1 << 32) if v >> 31 else v


def _as_activation(byte: int, signed: bool) -> int:
    """The window generator's 9-bit activation of a byte: int8 sign-extended or uint8."""
    return byte - 256 if signed and byte >= 128 else byte


@pytest.mark.parametrize("seed,lut_taps,max_cg", [(1, 0, 3), (2, 0, 3), (3, 4, 3), (4, 9, 3),
                                                 (5, 0, 2 * unit.WEIGHT_BANK_DEPTH + 77)])
def test_unit_matches_dot_product(seed, lut_taps, max_cg):
    """Random kernels in `max_cg` buffer entries, random windows of int8 or uint8 activations
    (9-bit), random partial sums over the whole 32-bit range; with none, 4 or all 9 products in
    LUT multipliers (same latency, same values); and a buffer of three banks, the last one
    partial, read at random addresses across them (first and last entries included)."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    count = 40
    kernels = rng.integers(-128, 128, size=(max_cg, 9))
    kernels[0] = [-128, 127, -128, 127, -128, 127, -128, 127, -128]  # extremes
    windows = rng.integers(0, 256, size=(count, 9))
    windows[0] = 255
    windows[1] = 128
    signed = rng.integers(0, 2, size=count)
    signed[:2] = [1, 0]
    addrs = rng.integers(0, max_cg, size=count)
    addrs[3:5] = [max_cg - 1, 0]
    psum_in = rng.integers(-(1 << 31), 1 << 31, size=count)
    psum_in[2] = (1 << 31) - 1   # overflow wraps modulo 2^32
    dut = ConvUnit(max_cg, lut_taps=lut_taps)

    lead, lat = unit.ADDR_LEAD, unit.LATENCY
    cycles = []
    for c in range(count + lat + lead):
        d = []
        if c < count:
            d.append((dut.rd_addr, int(addrs[c])))
        k = c - lead                 # window k is presented ADDR_LEAD cycles after its address
        if 0 <= k < count:
            d.append((dut.window, pack_lanes([_as_activation(int(b), bool(signed[k])) for b in windows[k]], 9)))
        k = c - lead - (lat - 1)      # its partial sum in is sampled LATENCY - 1 cycles later
        if 0 <= k < count:
            d.append((dut.psum_in, int(psum_in[k])))
        cycles.append(d)


    got = {}

    async def tb(ctx):
        for a in range(max_cg):
            ctx.set(dut.wr_en, 1)
            ctx.set(dut.wr_addr, a)
            ctx.set(dut.wr_data, pack_lanes(kernels[a], 8))
            await ctx.tick()
        ctx.set(dut.wr_en, 0)
        await ctx.tick()   # the write port is registered: the last kernel lands one cycle later
        after = await run_cycles(ctx, cycles, [dut.psum_out])
        for k in range(count):
            got[k] = after[k + lead + lat - 1][0]

    simulate(dut, tb)
    for k in range(count):
        acts = [_as_activation(int(b), bool(signed[k])) for b in windows[k]]
        expect = _wrap32(int(psum_in[k]) + sum(a * int(w) for a, w in zip(acts, kernels[addrs[k]])))
        assert got[k] == expect, f"window {k}: got {got[k]}, expected {expect}"


@pytest.mark.parametrize("pi,po,lut", [(2, 3, 0), (3, 2, 0), (1, 1, 0), (2, 3, 13), (1, 1, 9)])
def test_array_column_sums(pi, po, lut):
    """Column o of the array = sum over lanes i of window_i . kernel(i, o, g), with the documented
    skew; also with `lut` LUT multipliers (13 of 2x3: unit (0, 0) all, unit (0, 1) 4 of 9)."""
    seed = 10 * pi + po + lut
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    g = HardwareGenerics(pi=pi, po=po, w_max=8, max_cg=3, line_depth=32, lut_multipliers=lut)
    cg, count = 3, 12
    kernels = rng.integers(-128, 128, size=(pi, po, cg, 9))
    windows = rng.integers(0, 256, size=(count, pi, 9))
    gs = rng.integers(0, cg, size=count)
    signed = int(rng.integers(0, 2))
    dut = SystolicArray(g)
    lead = unit.ADDR_LEAD
    last = max(array.latency(g, o) for o in range(po))
    cycles = []
    for c in range(count + lead + last):
        d = []
        if c < count:
            d.append((dut.rd_addr, int(gs[c])))
        if 0 <= c - lead < count:
            d.append((dut.windows, pack_lanes([pack_lanes([_as_activation(int(b), bool(signed)) for b in
                                                            windows[c - lead, i]], 9) for i in range(pi)], 81)))
        cycles.append(d)


    got = {}

    async def tb(ctx):
        for o in range(po):
            for a in range(cg):
                ctx.set(dut.wr_en, 1)
                ctx.set(dut.wr_lane, o)
                ctx.set(dut.wr_addr, a)
                ctx.set(dut.wr_data, pack_lanes([pack_lanes(kernels[i, o, a], 8) for i in range(pi)], 72))
                await ctx.tick()
        ctx.set(dut.wr_en, 0)
        await ctx.tick()   # the units' write ports are registered: the last kernel lands one cycle later
        after = await run_cycles(ctx, cycles, list(dut.psums))
        for k in range(count):
            for o in range(po):
                got[k, o] = after[k + lead + array.latency(g, o) - 1][o]

    simulate(dut, tb)
    for k in range(count):
        for o in range(po):
            expect = sum(_as_activation(int(b), bool(signed)) * int(w)
                         for i in range(pi) for b, w in zip(windows[k, i], kernels[i, o, gs[k]]))
            assert got[k, o] == expect, f"step {k} column {o}: got {got[k, o]}, expected {expect}"


def test_pack_helpers_roundtrip():
    assert unpack_lanes(pack_lanes([-1, 5, -128], 8), 3, 8, signed=True) == [-1, 5, -128]


def test_lut_taps_fill_units_in_order():
    """`lut_multipliers` counts multipliers in unit order (row-major), taps 0..8 of each in turn."""
    g = HardwareGenerics(pi=2, po=3, lut_multipliers=13)
    taps = {(i, o): array.lut_taps(g, i, o) for i in range(2) for o in range(3)}
    assert taps == {(0, 0): 9, (0, 1): 4, (0, 2): 0, (1, 0): 0, (1, 1): 0, (1, 2): 0}
    full = g.replace(lut_multipliers=g.multipliers)
    assert sum(array.lut_taps(full, i, o) for i in range(2) for o in range(3)) == 54 == full.multipliers
