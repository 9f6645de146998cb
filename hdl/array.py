"""The PI x PO systolic array of 3x3 units: windows move right, partial sums move down."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import HardwareGenerics

from . import unit, winograd
from .layouts import ACC_BITS, KERNEL_BITS, WINDOW_BITS, cg_shape, lane
from .unit import ConvUnit
from .winograd import WinogradUnit, WinogradWeightTransform

#: The unit kinds this RTL builds (rep_accel.generics.UNIT_KINDS) and their latency
#: (window or V in -> psum_out): hdl/top.py checks the front end's pipeline latency against these.
UNIT_LATENCY = {"direct": unit.LATENCY, "winograd": winograd.UNIT_LATENCY}


def latency(generics: HardwareGenerics, column: int) -> int:
    """Cycles from `windows` to column `column`'s partial sum on `psums`:
    row skew PI - 1, right hops `column`, unit latency."""
    return generics.pi - 1 + column + UNIT_LATENCY[generics.unit]


def lut_taps(generics: HardwareGenerics, row: int, column: int) -> int:
    """How many of unit (row, column)'s multipliers are LUT multipliers: the generic
    `lut_multipliers` fills the units in row-major order, taps 0 .. multipliers-1 of each in turn."""
    taps = generics.unit_kind.multipliers
    first = (row * generics.po + column) * taps
    return min(taps, max(0, generics.lut_multipliers - first))


def window_bits(generics: HardwareGenerics) -> int:
    """Bits of one lane's window on `windows`: a 3x3 window of 9-bit activations, or a
    Winograd unit's V (16 x 11 bits)."""
    return winograd.V_WORD_BITS if generics.unit == "winograd" else WINDOW_BITS


def psum_bits(generics: HardwareGenerics) -> int:
    """Bits of one column's partial sum on `psums`: 32, or a Winograd column's 16 x 34."""
    return winograd.SUM_WORD_BITS if generics.unit == "winograd" else ACC_BITS


class SystolicArray(wiring.Component):
    """PI rows (input lanes) x PO columns (output lanes) of units: `ConvUnit`s (unit kind
    "direct") or `WinogradUnit`s ("winograd").

    Row i receives the window of input lane i (a 3x3 window, or a Winograd unit's V),
    delayed by i registers (the systolic skew); the window then moves one unit right per
    cycle, through a register per hop. Unit (i, o) adds its sum to the partial sum of unit
    (i-1, o) and passes it down, registered. Column o's sum over all PI lanes leaves row
    PI-1 on `psums[o]`.

    Ports (free-running: every register loads every cycle):
      rd_addr   In(cg)                   weight-buffer address (kernel kt*cg + g of a tile group)
                                         of the windows presented unit.ADDR_LEAD = 5 cycles later
      windows   In(PI x window_bits)     the PI lanes' windows of one step (lane i in bits
                                         [wi+w-1:wi]), at cycle t: 9-bit activations (direct),
                                         V words (hdl/winograd.py) on Winograd units
      psums     Out(psum_bits).array(PO) column o: sum over lanes, valid from t + latency(o)
                                         = t + PI - 1 + o + UNIT_LATENCY[kind]: signed 32 bits
                                         (mod 2^32), or 16 Winograd-domain sums of 34 bits
      winograd  In(1)                    Winograd units only, a layer constant: the layer's
                                         kernels are transformed as they load (U = G' g G'^T);
                                         0: placed as they are in a direct-mode word (below)
      wr_en, wr_lane, wr_addr, wr_data   weight load: kernel slot i of `wr_data` (9 int8 taps)
                                         goes to unit (i, wr_lane), address wr_addr

    Latency: PI - 1 + UNIT_LATENCY[kind] + o cycles for column o. Throughput: one step per cycle.
    A weight write reaches Winograd units WEIGHT_TRANSFORM_LATENCY = 2 cycles later than
    direct ones (the transform's registers; write enable, lane and address are delayed with it).

    On Winograd units a stride-2 layer runs in direct mode: kernel tap (ky, kx) in entry
    (ky+1)*4 + kx+1 of the weight word, zeros elsewhere, so that with V = d (the window
    generator's 4x4 tile, whose taps (1..3, 1..3) are the 3x3 window) the unit's 16 products
    sum to the direct window's 9. The first `generics.lut_multipliers` multipliers of the
    array are in logic (`lut_taps`).
    """

    def __init__(self, generics: HardwareGenerics, dsp: str = "generic"):
        if generics.unit not in UNIT_LATENCY:
            raise ValueError(f"unit kind {generics.unit!r}: this RTL builds {', '.join(UNIT_LATENCY)}")
        self._g = generics
        self._dsp = dsp
        ports = {
            "rd_addr": In(cg_shape(generics)),
            "windows": In(window_bits(generics) * generics.pi),
            "psums": Out(signed(ACC_BITS) if generics.unit == "direct" else psum_bits(generics)).array(generics.po),
            "wr_en": In(1),
            "wr_lane": In(range(max(2, generics.po))),
            "wr_addr": In(cg_shape(generics)),
            "wr_data": In(KERNEL_BITS * generics.pi),
        }
        if generics.unit == "winograd":
            ports["winograd"] = In(1)
        super().__init__(ports)

    def _winograd_words(self, m):
        """The Winograd units' write port: (wr_en, wr_lane, wr_addr, U words of the PI lanes),
        WEIGHT_TRANSFORM_LATENCY cycles after the kernels, transformed or placed (direct mode)."""
        words = []
        for i in range(self._g.pi):
            kernel = lane(self.wr_data, i, KERNEL_BITS)
            m.submodules[f"weight_transform{i}"] = transform = WinogradWeightTransform()
            m.d.comb += transform.kernel.eq(kernel)
            placed = [Signal(signed(winograd.U_BITS), name=f"placed{i}_{e}", reset_less=True)
                      for e in range(winograd.TILE_TAPS)]
            for e, reg in enumerate(placed):
                ky, kx = e // 4 - 1, e % 4 - 1
                tap = lane(kernel, ky * 3 + kx, 8).as_signed() if 0 <= ky < 3 and 0 <= kx < 3 else 0
                # Two stages, as the transform's: the first placed, the second beside it.
                m.d.sync += reg.eq(tap)
            placed2 = Signal(winograd.U_WORD_BITS, name=f"placed2_{i}", reset_less=True)
            m.d.sync += placed2.eq(Cat(*placed))
            words.append(Mux(self.winograd, transform.u, placed2))
        control = Cat(self.wr_en, self.wr_lane, self.wr_addr)
        for k in range(winograd.WEIGHT_TRANSFORM_LATENCY):
            reg = Signal(len(control), name=f"wr_control_d{k + 1}")
            m.d.sync += reg.eq(control)
            control = reg
        en = control[0]
        lane_sel = control[1:1 + len(self.wr_lane)]
        addr = control[1 + len(self.wr_lane):]
        return en, lane_sel, addr, words

    def elaborate(self, platform):
        m = Module()
        g = self._g
        pi, po = g.pi, g.po
        width = window_bits(g)
        if g.unit == "winograd":
            wr_en, wr_lane, wr_addr, words = self._winograd_words(m)
        else:
            wr_en, wr_lane, wr_addr = self.wr_en, self.wr_lane, self.wr_addr
            words = [lane(self.wr_data, i, KERNEL_BITS) for i in range(pi)]

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
            window = lane(self.windows, i, width)
            for k in range(i):
                reg = Signal(width, name=f"skew{i}_{k}", reset_less=True)
                m.d.sync += reg.eq(window)
                window = reg
            for o in range(po):
                if o:  # the hop from unit (i, o-1): one register
                    reg = Signal(width, name=f"window{i}_{o}", reset_less=True)
                    m.d.sync += reg.eq(window)
                    window = reg
                kind = WinogradUnit if g.unit == "winograd" else ConvUnit
                u = units[i, o] = kind(g.max_cg, self._dsp, lut_taps(g, i, o))
                m.submodules[f"unit{i}_{o}"] = u
                m.d.comb += [
                    (u.v if g.unit == "winograd" else u.window).eq(window),
                    u.rd_addr.eq(addr_delayed[i + o]),
                    u.wr_en.eq(wr_en & (wr_lane == o)),
                    u.wr_addr.eq(wr_addr),
                    u.wr_data.eq(words[i]),
                ]
                if i:
                    m.d.comb += u.psum_in.eq(units[i - 1, o].psum_out)
                else:
                    m.d.comb += u.psum_in.eq(0)
        for o in range(po):
            m.d.comb += self.psums[o].eq(units[pi - 1, o].psum_out)
        return m
