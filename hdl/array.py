"""The PI x PO systolic array of 3x3 units: windows move right, partial sums move down."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import HardwareGenerics

from . import unit
from .layouts import ACC_BITS, KERNEL_BITS, WINDOW_BITS, WINDOW_TAPS, cg_shape, lane
from .unit import ConvUnit


def latency(generics: HardwareGenerics, column: int) -> int:
    """Cycles from `windows` to column `column`'s partial sum on `psums`:
    row skew PI - 1, right hops `column`, unit latency."""
    return generics.pi - 1 + column + unit.UNIT_LATENCY[generics.unit]


def lut_taps(generics: HardwareGenerics, row: int, column: int) -> int:
    """How many of unit (row, column)'s multipliers are LUT multipliers: the generic
    `lut_multipliers` fills the units in row-major order, taps 0..8 of each in turn."""
    first = (row * generics.po + column) * WINDOW_TAPS
    return min(WINDOW_TAPS, max(0, generics.lut_multipliers - first))


class SystolicArray(wiring.Component):
    """PI rows (input lanes) x PO columns (output lanes) of `ConvUnit`s.

    Row i receives the window of input lane i, delayed by i registers (the systolic
    skew); the window then moves one unit right per cycle, through a register per hop.
    Unit (i, o) adds its sum to the partial sum of unit (i-1, o) and passes it down,
    registered. Column o's sum over all PI lanes leaves row PI-1 on `psums[o]`.

    Ports (free-running: every register loads every cycle):
      rd_addr   In(cg)                    weight-buffer address (kernel kt*cg + g of a tile group)
                                          of the windows presented unit.ADDR_LEAD = 4 cycles later
      windows   In(PI x 81)               the PI lanes' windows of one step (lane i in bits
                                          [81i+80:81i], 9-bit activations), at cycle t
      psums     Out(signed 32).array(PO)  column o: sum over lanes, valid from t + latency(o)
                                          = t + PI - 1 + o + unit.LATENCY (mod 2^32)
      wr_en, wr_lane, wr_addr, wr_data    weight load: kernel slot i of `wr_data` goes to
                                          unit (i, wr_lane), address wr_addr

    Latency: PI - 1 + unit.LATENCY + o cycles for column o. Throughput: one step per cycle.

    The units are direct 3x3 units (`generics.unit` "direct", the one kind built today); the
    first `generics.lut_multipliers` of their multipliers are in logic (`lut_taps`).
    """

    def __init__(self, generics: HardwareGenerics, dsp: str = "generic"):
        if generics.unit not in unit.UNIT_LATENCY:
            raise ValueError(f"unit kind {generics.unit!r}: this RTL builds {', '.join(unit.UNIT_LATENCY)}")
        self._g = generics
        self._dsp = dsp
        super().__init__({
            "rd_addr": In(cg_shape(generics)),
            "windows": In(WINDOW_BITS * generics.pi),
            "psums": Out(signed(ACC_BITS)).array(generics.po),
            "wr_en": In(1),
            "wr_lane": In(range(max(2, generics.po))),
            "wr_addr": In(cg_shape(generics)),
            "wr_data": In(KERNEL_BITS * generics.pi),
        })

    def elaborate(self, platform):
        m = Module()
        pi, po = self._g.pi, self._g.po

        # Weight addresses along the anti-diagonals: unit (i, o) sees its window i + o
        # cycles after row 0, column 0, so it reads its kernel with the address delayed
        # by i + o. One shared delay line instead of an address register per unit.
        addr_delayed = [self.rd_addr]
        for k in range(1, pi + po - 1):
            reg = Signal.like(self.rd_addr, name=f"rd_addr_d{k}", reset_less=True)
            m.d.sync += reg.eq(addr_delayed[-1])
            addr_delayed.append(reg)

        units = {}
        for i in range(pi):
            # Row skew: lane i enters i cycles after lane 0.
            window = lane(self.windows, i, WINDOW_BITS)
            for k in range(i):
                reg = Signal(WINDOW_BITS, name=f"skew{i}_{k}", reset_less=True)
                m.d.sync += reg.eq(window)
                window = reg
            for o in range(po):
                if o:  # the hop from unit (i, o-1): one register
                    reg = Signal(WINDOW_BITS, name=f"window{i}_{o}", reset_less=True)
                    m.d.sync += reg.eq(window)
                    window = reg
                u = units[i, o] = ConvUnit(self._g.max_cg, self._dsp, lut_taps(self._g, i, o))
                m.submodules[f"unit{i}_{o}"] = u
                m.d.comb += [
                    u.window.eq(window),
                    u.rd_addr.eq(addr_delayed[i + o]),
                    u.wr_en.eq(self.wr_en & (self.wr_lane == o)),
                    u.wr_addr.eq(self.wr_addr),
                    u.wr_data.eq(lane(self.wr_data, i, KERNEL_BITS)),
                ]
                if i:
                    m.d.comb += u.psum_in.eq(units[i - 1, o].psum_out)
                else:
                    m.d.comb += u.psum_in.eq(0)
        for o in range(po):
            m.d.comb += self.psums[o].eq(units[pi - 1, o].psum_out)
        return m
