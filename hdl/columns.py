"""Column accumulators, per-lane requantization and the de-skew in front of `act_out`."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import HardwareGenerics

from . import requant
from .layouts import ACC_BITS, ColumnControlLayout, RequantParamLayout, lane
from .requant import Requantizer


def latency(generics: HardwareGenerics) -> int:
    """Cycles from column 0's partial sum (and `ctl`) to the aligned outputs:
    accumulator register, requantization, then the de-skew of PO - 1 columns."""
    return generics.po + requant.LATENCY


class OutputColumns(wiring.Component):
    """The PO output lanes between the array and the output register.

    Column o's partial sums arrive o cycles after column 0's (the array's skew). Each
    column has an accumulator that starts from the lane's bias at the first step of a
    position (`first`) and adds the partial sum of every step (`valid`); after the last
    step it holds v = acc + B, which a `Requantizer` turns into the lane's uint8. Column
    o's result is then delayed PO - 1 - o cycles, so all lanes leave together.

    The lanes' requantization parameters (bias, M0, n) are registers written from the
    parameter stream (`param_we`, `param_lane`, `param`) while the controller loads a tile.

    Ports (free-running: every register loads every cycle; the accumulators change only
    on valid steps):
      psums       In(signed 32).array(PO)  column o's partial sum at cycle t + o
      ctl         In(ColumnControlLayout) the step's control at cycle t (column 0's timing)
      param_we    In(1), param_lane In(range(PO)), param In(RequantParamLayout)
      data        Out(PO x 8)            the requantized lanes (lane o in bits [8o+7:8o]),
                                         valid from t + latency()
      emit        Out(1)                 `ctl.valid & ctl.emit` of the step whose result is on `data`

    Latency: PO + requant.LATENCY cycles. Throughput: one step per cycle.
    """

    def __init__(self, generics: HardwareGenerics):
        self._g = generics
        po = generics.po
        super().__init__({
            "psums": In(signed(ACC_BITS)).array(po),
            "ctl": In(ColumnControlLayout),
            "param_we": In(1),
            "param_lane": In(range(max(2, po))),
            "param": In(RequantParamLayout),
            "data": Out(8 * po),
            "emit": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        po = self._g.po
        total = latency(self._g)

        # The step's control, delayed: tap o is column o's timing, tap `total` the outputs'.
        ctl = [self.ctl]
        for k in range(1, total + 1):
            reg = Signal(ColumnControlLayout, name=f"ctl_d{k}")
            m.d.sync += reg.eq(ctl[-1])
            ctl.append(reg)
        m.d.comb += self.emit.eq(ctl[total].valid & ctl[total].emit)

        for o in range(po):
            params = Signal(RequantParamLayout, name=f"params{o}", reset_less=True)
            with m.If(self.param_we & (self.param_lane == o)):
                m.d.sync += params.eq(self.param)

            acc = Signal(signed(ACC_BITS), name=f"acc{o}", reset_less=True)
            with m.If(ctl[o].valid):
                m.d.sync += acc.eq(Mux(ctl[o].first, params.bias, acc) + self.psums[o])

            m.submodules[f"requant{o}"] = rq = Requantizer()
            m.d.comb += [rq.v.eq(acc), rq.m0.eq(params.m0), rq.n.eq(params.n)]

            # De-skew: column o is PO - 1 - o cycles early.
            result = rq.y
            for k in range(po - 1 - o):
                reg = Signal(8, name=f"deskew{o}_{k}", reset_less=True)
                m.d.sync += reg.eq(result)
                result = reg
            m.d.comb += lane(self.data, o, 8).eq(result)
        return m
