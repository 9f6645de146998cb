"""Column accumulators, per-lane requantization and the de-skew in front of `act_out`."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rep_accel.generics import HardwareGenerics

from . import requant
from .layouts import ACC_BITS, RequantParamLayout, column_control_layout, lane, memory_depth, tile_shape
from .requant import Requantizer


def latency(generics: HardwareGenerics) -> int:
    """Cycles from column 0's partial sum (and `ctl`) to the aligned outputs:
    accumulator register, requantization, then the de-skew of PO - 1 columns."""
    return generics.po + requant.LATENCY


def column_ports(generics: HardwareGenerics, psum_shape, **more) -> dict:
    """The ports of the output columns (OutputColumns, WinogradColumns): PO partial sums of
    `psum_shape`, the step's control, the parameter writes, the lanes and their emit, and
    `more`."""
    po = generics.po
    return {
        "psums": In(psum_shape).array(po),
        "ctl": In(column_control_layout(generics)),
        **more,
        "param_we": In(1),
        "param_lane": In(range(max(2, po))),
        "param_tile": In(tile_shape(generics)),
        "param": In(RequantParamLayout),
        "data": Out(8 * po),
        "emit": Out(1),
    }


def control_taps(m: Module, ctl, total: int) -> list:
    """`ctl` and total + 1 registers of it in a row: tap k is the control k cycles later."""
    taps = [ctl]
    for k in range(1, total + 2):
        reg = Signal.like(ctl, name=f"ctl_d{k}")
        m.d.sync += reg.eq(taps[-1])
        taps.append(reg)
    return taps


def deskew(m: Module, value, column: int, po: int):
    """`value` of column `column` delayed PO - 1 - column cycles, so all lanes leave together."""
    for k in range(po - 1 - column):
        reg = Signal.like(value, name=f"deskew{column}_{k}", reset_less=True)
        m.d.sync += reg.eq(value)
        value = reg
    return value


def tile_params(m: Module, name: str, max_group: int, we, tile, param, ahead_tile):
    """A column's requantization parameters (bias, M0, n) of each tile of a group: written
    at `tile` when `we`; returns the entry of the tile `ahead_tile` presented the cycle before (a register, so no distributed-RAM read sits in
    front of the logic that uses it). With max_group = 1 the one entry is a register
    (`params` is it, whatever the tile)."""
    if max_group == 1:
        params = Signal(RequantParamLayout, name=f"params{name}", reset_less=True)
        with m.If(we):
            m.d.sync += params.eq(param)
        return params
    m.submodules[f"params{name}"] = table = Memory(shape=RequantParamLayout, depth=memory_depth(max_group), init=[])
    wr, rd = table.write_port(), table.read_port(domain="comb")
    params = Signal(RequantParamLayout, name=f"params_ahead{name}", reset_less=True)
    m.d.comb += [wr.en.eq(we), wr.addr.eq(tile), wr.data.eq(param), rd.addr.eq(ahead_tile)]
    m.d.sync += params.eq(rd.data)
    return params


def tile_sums(m: Module, name: str, shape, max_group: int, now, ahead, update) -> Signal:
    """One sum per tile of a group (docs/architecture.md, "Tile groups"), of `shape`: a valid
    step `now` (valid, kt) sets sum[kt] = update(sum[kt]); returns the register that holds
    the step's new sum from the next cycle (the last valid step's).

    With max_group = 1 the sum is that register. With max_group > 1 the sums are a table of
    max_group entries (`Memory`, asynchronous read, synchronous write: distributed RAM),
    read one cycle ahead at the next step's tile (`ahead.kt`) into a register, bypassed by
    the sum being written when the two steps share a tile, so a step always sees the sum of
    the step before it of its tile, however close; written at the step's tile."""
    acc = Signal(shape, name=name, reset_less=True)
    if max_group == 1:
        with m.If(now.valid):
            m.d.sync += acc.eq(update(acc))
        return acc
    m.submodules[f"{name}_table"] = table = Memory(shape=shape, depth=memory_depth(max_group), init=[])
    wr, rd = table.write_port(), table.read_port(domain="comb")
    stored = Signal(shape, name=f"{name}_ahead", reset_less=True)
    new = Signal(shape, name=f"{name}_next")
    m.d.comb += [new.eq(update(stored)), rd.addr.eq(ahead.kt),
                 wr.en.eq(now.valid), wr.addr.eq(now.kt), wr.data.eq(new)]
    m.d.sync += stored.eq(Mux(now.valid & (now.kt == ahead.kt), new, rd.data))
    with m.If(now.valid):
        m.d.sync += acc.eq(new)
    return acc


class OutputColumns(wiring.Component):
    """The PO output lanes between the array and the output register.

    Column o's partial sums arrive o cycles after column 0's (the array's skew). Each
    column keeps one accumulator per tile of a tile group (docs/architecture.md, "Tile
    groups"): a step of tile kt sets acc[kt] = (first ? bias[kt] : acc[kt]) + partial sum;
    after the last channel group's step it holds v = acc + B, which a `Requantizer` turns,
    with tile kt's (M0, n), into the lane's uint8. Column o's result is then delayed
    PO - 1 - o cycles, so all lanes leave together.

    The lanes' requantization parameters (bias, M0, n) are written from the parameter
    stream (`param_we`, `param_lane`, `param_tile`, `param`) while the controller loads a
    group: entry param_tile of column param_lane.

    With max_group = 1 the accumulator and the parameters are registers. With max_group > 1
    they are tables of max_group entries per column (`Memory`, asynchronous read,
    synchronous write: distributed RAM, one 16 x 4 cell (TRELLIS_DPR16X4) per 4 bits and 16
    entries on ECP5), read one cycle ahead at the next step's tile into registers (the
    accumulator's read bypassed by the sum being written when the two steps share a tile,
    so a step always sees the sum of the step before it of its tile, however close) and
    written at the step's tile. Tile kt's M0 and n are registered beside v, so the
    requantizer gets them with it.

    Ports (free-running: every register loads every cycle; the accumulators change only
    on valid steps):
      psums       In(signed 32).array(PO)  column o's partial sum at cycle t + o
      ctl         In(column_control_layout) the step's control (valid, first, emit, tile kt)
                                         at cycle t - 1, a cycle ahead of column 0's partial sum
      param_we    In(1), param_lane In(range(PO)), param_tile In(range(max_group)),
      param       In(RequantParamLayout)
      data        Out(PO x 8)            the requantized lanes (lane o in bits [8o+7:8o]),
                                         valid from t + latency()
      emit        Out(1)                 `ctl.valid & ctl.emit` of the step whose result is on `data`

    Latency: PO + requant.LATENCY cycles. Throughput: one step per cycle.
    """

    def __init__(self, generics: HardwareGenerics):
        self._g = generics
        super().__init__(column_ports(generics, signed(ACC_BITS)))

    def elaborate(self, platform):
        m = Module()
        po = self._g.po
        tables = self._g.max_group > 1
        total = latency(self._g)

        # The step's control, delayed: `ctl` arrives a cycle ahead of column 0's partial sum,
        # tap o + 1 is column o's timing (tap o the cycle before it), tap `total` + 1 the outputs'.
        ctl = control_taps(m, self.ctl, total)
        m.d.comb += self.emit.eq(ctl[total + 1].valid & ctl[total + 1].emit)

        for o in range(po):
            write_params = self.param_we & (self.param_lane == o)
            m.submodules[f"requant{o}"] = rq = Requantizer()
            now, ahead = ctl[o + 1], ctl[o]   # the step at column o, and the step after it
            params = tile_params(m, f"{o}", self._g.max_group, write_params, self.param_tile, self.param, ahead.kt)
            acc = tile_sums(m, f"acc{o}", signed(ACC_BITS), self._g.max_group, now, ahead,
                            lambda stored: Mux(now.first, params.bias, stored) + self.psums[o])
            if not tables:
                m.d.comb += [rq.v.eq(acc), rq.m0.eq(params.m0), rq.n.eq(params.n)]
            else:
                # v and tile kt's M0, n together into the requantizer.
                m0 = Signal(32, name=f"m0_{o}", reset_less=True)
                n = Signal(8, name=f"n_{o}", reset_less=True)
                with m.If(now.valid):
                    m.d.sync += [m0.eq(params.m0), n.eq(params.n)]
                m.d.comb += [rq.v.eq(acc), rq.m0.eq(m0), rq.n.eq(n)]

            m.d.comb += lane(self.data, o, 8).eq(deskew(m, rq.y, o, po))
        return m
