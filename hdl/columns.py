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
        self._ctl = column_control_layout(generics)
        po = generics.po
        super().__init__({
            "psums": In(signed(ACC_BITS)).array(po),
            "ctl": In(self._ctl),
            "param_we": In(1),
            "param_lane": In(range(max(2, po))),
            "param_tile": In(tile_shape(generics)),
            "param": In(RequantParamLayout),
            "data": Out(8 * po),
            "emit": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        po = self._g.po
        tables = self._g.max_group > 1
        total = latency(self._g)

        # The step's control, delayed: `ctl` arrives a cycle ahead of column 0's partial sum,
        # tap o + 1 is column o's timing (tap o the cycle before it), tap `total` + 1 the outputs'.
        ctl = [self.ctl]
        for k in range(1, total + 2):
            reg = Signal(self._ctl, name=f"ctl_d{k}")
            m.d.sync += reg.eq(ctl[-1])
            ctl.append(reg)
        m.d.comb += self.emit.eq(ctl[total + 1].valid & ctl[total + 1].emit)

        for o in range(po):
            write_params = self.param_we & (self.param_lane == o)
            acc = Signal(signed(ACC_BITS), name=f"acc{o}", reset_less=True)
            m.submodules[f"requant{o}"] = rq = Requantizer()
            now, ahead = ctl[o + 1], ctl[o]   # the step at column o, and the step after it
            if not tables:
                params = Signal(RequantParamLayout, name=f"params{o}", reset_less=True)
                with m.If(write_params):
                    m.d.sync += params.eq(self.param)
                with m.If(now.valid):
                    m.d.sync += acc.eq(Mux(now.first, params.bias, acc) + self.psums[o])
                m.d.comb += [rq.v.eq(acc), rq.m0.eq(params.m0), rq.n.eq(params.n)]
            else:
                depth = memory_depth(self._g.max_group)
                m.submodules[f"params{o}"] = param_table = Memory(shape=RequantParamLayout, depth=depth, init=[])
                m.submodules[f"accs{o}"] = acc_table = Memory(shape=signed(ACC_BITS), depth=depth, init=[])
                p_wr, p_rd = param_table.write_port(), param_table.read_port(domain="comb")
                a_wr, a_rd = acc_table.write_port(), acc_table.read_port(domain="comb")
                # The tables are read a cycle ahead, at the next step's tile, into registers, so
                # that no distributed-RAM read (and the route from wherever the RAM is placed)
                # sits in front of the accumulator's adder. The one entry that read can miss is
                # the one the current step writes: then the sum being written is taken instead.
                acc_ahead = Signal(signed(ACC_BITS), name=f"acc_ahead{o}", reset_less=True)
                params_ahead = Signal(RequantParamLayout, name=f"params_ahead{o}", reset_less=True)
                acc_next = Signal(signed(ACC_BITS), name=f"acc_next{o}")
                same_tile = now.valid & (now.kt == ahead.kt)
                m.d.comb += [
                    p_wr.en.eq(write_params), p_wr.addr.eq(self.param_tile), p_wr.data.eq(self.param),
                    p_rd.addr.eq(ahead.kt), a_rd.addr.eq(ahead.kt),
                    acc_next.eq(Mux(now.first, params_ahead.bias, acc_ahead) + self.psums[o]),
                    a_wr.en.eq(now.valid), a_wr.addr.eq(now.kt), a_wr.data.eq(acc_next),
                ]
                m.d.sync += [acc_ahead.eq(Mux(same_tile, acc_next, a_rd.data)), params_ahead.eq(p_rd.data)]
                # v and tile kt's M0, n together into the requantizer.
                m0 = Signal(32, name=f"m0_{o}", reset_less=True)
                n = Signal(8, name=f"n_{o}", reset_less=True)
                with m.If(now.valid):
                    m.d.sync += [acc.eq(acc_next), m0.eq(params_ahead.m0), n.eq(params_ahead.n)]
                m.d.comb += [rq.v.eq(acc), rq.m0.eq(m0), rq.n.eq(n)]

            # De-skew: column o is PO - 1 - o cycles early.
            result = rq.y
            for k in range(po - 1 - o):
                reg = Signal(8, name=f"deskew{o}_{k}", reset_less=True)
                m.d.sync += reg.eq(result)
                result = reg
            m.d.comb += lane(self.data, o, 8).eq(result)
        return m
