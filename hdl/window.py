"""The window generator: line buffers, column delays and zero padding, per input lane."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from rep_accel.generics import HardwareGenerics

from .layouts import WINDOW_BITS, lane, memory_depth, step_layout

#: Cycles from a step (and its input pixels) to its windows on `windows`.
LATENCY = 2

_ROW = 8        # bits of one pixel of one lane
_COLUMN = 24    # bits of one window column: rows y-2, y-1, y from bit 0 up


class WindowGenerator(wiring.Component):
    """Forms the 3x3 window of every lane for each scan step (docs/architecture.md, "Window generator").

    Per lane:
      - a line buffer (`Memory`, `line_depth` entries of 16 bits) addressed x * cg + g,
        holding the pixels of rows y-1 (bits 0-7) and y-2 (bits 8-15) at column x,
        channel group g. A step reads it, and a step that consumes an input rewrites
        the entry with (row y, row y-1);
      - a column delay (`Memory`, `max_cg` entries of 48 bits) addressed g, holding the
        two previous columns of that channel group (x-1 in bits 0-23, x-2 in 24-47);
        its read is transparent to its write, so cg = 1 (one entry) works back to back.
    Zero padding is generated, never stored: rows above the image (y = 0), the row below
    (`row_pad`), columns left of it (x = 0) and the column right of it (`col_pad`) read as
    zero. Entries written at y = 0 carry a zero row y-1, and columns written at x = 0 a
    zero column x-1, so only y = 0 and x = 0 need masking on read.

    Ports (registers and memory ports advance only with `en`):
      en       In(1)                   pipeline advance (global stall when low)
      step     In(step_layout)         the step issued this cycle (controller)
      pixels   In(PI x 8)              its `act_in` beat, lane i in bits [8i+7:8i] (ignored when
                                       the step consumes none)
      windows  Out(PI x 72)            lane i's window in bits [72i+71:72i], tap ky*3+kx (bits
                                       [8t+7:8t]) = row y-2+ky, column x-2+kx, valid LATENCY = 2
                                       cycles after the step

    Latency: 2 cycles (memory read + pixel register, then the window register).
    Throughput: one step per cycle.
    """

    def __init__(self, generics: HardwareGenerics):
        self._g = generics
        self._step = step_layout(generics)
        super().__init__({
            "en": In(1),
            "step": In(self._step),
            "pixels": In(8 * generics.pi),
            "windows": Out(WINDOW_BITS * generics.pi),
        })

    def elaborate(self, platform):
        m = Module()
        g = self._g
        step = self.step

        # Stage 1: the step and its pixels, registered beside the memories' read data.
        s1 = Signal(self._step)
        pixels1 = Signal.like(self.pixels)
        with m.If(self.en):
            m.d.sync += [s1.eq(step), pixels1.eq(self.pixels)]
        consumes1 = s1.valid & ~s1.row_pad & ~s1.col_pad

        for i in range(g.pi):
            line = Memory(shape=unsigned(2 * _ROW), depth=memory_depth(g.line_depth), init=[])
            columns = Memory(shape=unsigned(2 * _COLUMN), depth=memory_depth(g.max_cg), init=[])
            m.submodules[f"line{i}"], m.submodules[f"columns{i}"] = line, columns
            line_wr = line.write_port()
            line_rd = line.read_port()
            col_wr = columns.write_port()
            col_rd = columns.read_port(transparent_for=(col_wr,))

            # The right padding column has no line-buffer entry (its address may be one
            # past the buffer); read entry 0 there, the data is masked anyway.
            m.d.comb += [
                line_rd.en.eq(self.en),
                line_rd.addr.eq(Mux(step.col_pad, 0, step.addr)),
                col_rd.en.eq(self.en),
                col_rd.addr.eq(step.g),
            ]

            above1 = Mux(s1.row0, 0, line_rd.data[0:_ROW])          # row y-1
            above2 = Mux(s1.row0, 0, line_rd.data[_ROW:2 * _ROW])   # row y-2 (zero at y = 1 by construction)
            current = Mux(s1.row_pad, 0, lane(pixels1, i, _ROW))    # row y
            column = Signal(_COLUMN, name=f"column{i}")
            m.d.comb += column.eq(Mux(s1.col_pad, 0, Cat(above2, above1, current)))
            previous = Signal(2 * _COLUMN, name=f"previous{i}")     # columns x-1, x-2
            m.d.comb += previous.eq(Mux(s1.col0, 0, col_rd.data))

            m.d.comb += [
                line_wr.en.eq(self.en & consumes1),
                line_wr.addr.eq(s1.addr),
                line_wr.data.eq(Cat(current, above1)),
                col_wr.en.eq(self.en & s1.valid),
                col_wr.addr.eq(s1.g),
                col_wr.data.eq(Cat(column, previous[0:_COLUMN])),
            ]

            by_kx = (previous[_COLUMN:2 * _COLUMN], previous[0:_COLUMN], column)  # columns x-2, x-1, x
            window = Cat(*(by_kx[kx][_ROW * ky:_ROW * (ky + 1)] for ky in range(3) for kx in range(3)))
            with m.If(self.en):
                m.d.sync += lane(self.windows, i, WINDOW_BITS).eq(window)
        return m

