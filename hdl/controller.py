"""The layer controller: descriptor, tile loop, parameter load, scan sequencer, status."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import CHANNEL_BITS, DIM_BITS, HardwareGenerics

from .layouts import CYCLES_BITS, DescriptorLayout, HeaderLayout, cg_shape, params_shape, step_layout


class LayerController(wiring.Component):
    """Runs one layer at a time through the schedule of docs/architecture.md.

    States: IDLE (``desc.ready``) -> per tile: HEADER (1 beat), REQUANT (PO beats),
    WEIGHTS (PO * cg beats, lane-major) -> SCAN (cg steps at each of rows x cols
    positions, raster order) -> DRAIN (until the tile's last output beat transfers) ->
    the next tile, or IDLE with a `done` pulse.

    The pipeline stall is decided here: `advance` is low when the output register holds
    a beat the host does not take (`out_block`) or when the scan's current step needs an
    `act_in` beat that is not valid; no step issues then (see hdl/output.py).

    Ports:
      desc          In(stream of DescriptorLayout)  a beat starts a layer (ready in IDLE)
      params        In(stream of PI x 9 bytes)      parameter beats (ready in HEADER, REQUANT, WEIGHTS)
      in_valid      In(1)   act_in.valid
      in_ready      Out(1)  act_in.ready: a scan step that takes an input, not stalled by the output
      out_block     In(1)   the output register holds a beat that is not taken this cycle
      tile_done     In(1)   the tile's last output beat transfers this cycle
      advance       Out(1)  the pipeline advances this cycle (the global stall when low)
      step          Out(step_layout)  the step issued this cycle; `valid` = SCAN and `advance`
      input_signed  Out(1)  the layer's input is int8 (the network input)
      wr_en, wr_lane, wr_addr   weight write: beat (lane, g) of the WEIGHTS state
      rq_we, rq_lane            requantization-parameter write: beat 1 + lane
      busy          Out(1)  high from the cycle after the descriptor transfer to the last output transfer
      done          Out(1)  one-cycle pulse in the cycle after the last output transfer
      cycles        Out(32) descriptor transfer to last output transfer, inclusive; valid
                            from `done` until the next descriptor transfers

    Latency: a step issues in the cycle the controller is in SCAN and `advance` is high;
    the first parameter beat of a tile can transfer the cycle after the previous tile's
    `tile_done`. Throughput: one parameter beat or one step per cycle.
    """

    def __init__(self, generics: HardwareGenerics):
        self._g = generics
        self._step = step_layout(generics)
        lane = range(max(2, generics.po))
        super().__init__({
            "desc": In(stream.Signature(DescriptorLayout)),
            "params": In(stream.Signature(params_shape(generics))),
            "in_valid": In(1),
            "in_ready": Out(1),
            "out_block": In(1),
            "tile_done": In(1),
            "advance": Out(1),
            "step": Out(self._step),
            "input_signed": Out(1),
            "wr_en": Out(1),
            "wr_lane": Out(lane),
            "wr_addr": Out(cg_shape(generics)),
            "rq_we": Out(1),
            "rq_lane": Out(lane),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLES_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        po = self._g.po
        coord = DIM_BITS + 1   # scan coordinates run to H and W (the padding row/column)

        # Last-position tests compare the current coordinate with a layer constant minus
        # one, so that no adder sits in front of the comparator: x + 1 == W is x == W - 1.
        height_m1 = Signal(coord)        # H - 1
        width_m1 = Signal(coord)         # W - 1
        stride2 = Signal()
        n_tiles = Signal(CHANNEL_BITS)
        tile = Signal(CHANNEL_BITS)
        rows_m2 = Signal(coord)          # scan rows - 2 (scan rows >= 2)
        cols_m2 = Signal(coord)          # scan columns - 2
        lane = Signal(range(max(2, po)))
        g = Signal(16)                   # channel group: weight beats, then scan steps
        y = Signal(coord)
        x = Signal(coord)
        addr = Signal.like(self.step.addr)
        # Registered facts about the current scan position, so that the stall logic
        # (`advance`) depends on registers and the stream handshakes only.
        row0, row1, col0, col1, row_pad, col_pad, y_last, x_last = (
            Signal(name=n) for n in ("row0", "row1", "col0", "col1", "row_pad", "col_pad", "y_last", "x_last"))
        count = Signal(CYCLES_BITS)

        # "Last channel group" and "last lane" as registers kept beside g and lane (no
        # comparator behind them): g and lane also drive the weight and requantization
        # writes all over the array, which pulls them far from the FSM.
        g_last = Signal()
        lane_last = Signal()
        cg_is_1 = Signal()               # the tile has one channel group
        cg_m2 = Signal(16)               # channel groups of the tile - 2 (wraps for cg = 1: never met)
        lane_po_m2 = (lane == po - 2) if po >= 2 else Const(0)

        def g_restart():
            return [g.eq(0), g_last.eq(cg_is_1)]

        def g_step():
            return [g.eq(g + 1), g_last.eq(g == cg_m2)]

        def lane_restart():
            return [lane.eq(0), lane_last.eq(po == 1)]

        def lane_step():
            return [lane.eq(lane + 1), lane_last.eq(lane_po_m2)]
        header = HeaderLayout(self.params.payload[:HeaderLayout.size])

        m.d.comb += self.cycles.eq(count)
        m.d.sync += self.done.eq(0)

        # The stall decision is one LUT from registers and handshakes: `scanning` (the FSM is
        # in SCAN) and `wants_input` (in SCAN at a position that consumes an input: not on
        # the padding row or column) are registers kept beside the FSM state and the
        # position flags, so `advance`, which enables most of the controller and the
        # output stage, is not a decode of them.
        scanning = Signal()
        wants_input = Signal()
        stall_in = wants_input & ~self.in_valid
        issue = Signal()
        m.d.comb += [
            self.advance.eq(~self.out_block & ~stall_in),
            issue.eq(scanning & self.advance),
            self.in_ready.eq(wants_input & ~self.out_block),
        ]

        # The datapath runs freely: a cycle that issues no step carries a bubble, no flag set.
        emits = issue & g_last & Mux(stride2, y[0] & x[0], ~row0 & ~col0)
        m.d.comb += [
            self.step.valid.eq(issue),
            self.step.g.eq(g),
            self.step.addr.eq(addr),
            self.step.row0.eq(row0),
            self.step.row1.eq(row1),
            self.step.col0.eq(col0),
            self.step.col1.eq(col1),
            self.step.y_odd.eq(y[0]),
            self.step.x_odd.eq(x[0]),
            self.step.row_pad.eq(row_pad),
            self.step.col_pad.eq(col_pad),
            self.step.first.eq(issue & (g == 0)),
            self.step.emit.eq(emits),
            self.step.tag.eq(issue & g_last & x_last & y_last),
            self.wr_lane.eq(lane),
            self.wr_addr.eq(g),
            self.rq_lane.eq(lane),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.desc.ready.eq(1)
                with m.If(self.desc.valid):
                    d = self.desc.payload
                    odd_or_s1 = (d.stride != 2)
                    m.d.sync += [
                        height_m1.eq(d.height - 1),
                        width_m1.eq(d.width - 1),
                        stride2.eq(d.stride == 2),
                        self.input_signed.eq(d.input_signed),
                        n_tiles.eq(d.n_tiles),
                        tile.eq(0),
                        # layout.scan_extent: H + 1 rows at stride 1 or odd H, else H.
                        rows_m2.eq(Mux(odd_or_s1 | d.height[0], d.height - 1, d.height - 2)),
                        cols_m2.eq(Mux(odd_or_s1 | d.width[0], d.width - 1, d.width - 2)),
                        count.eq(1),
                    ]
                    with m.If(d.n_tiles == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    m.d.sync += [cg_m2.eq(header.cg - 2), cg_is_1.eq(header.cg == 1),
                                 *lane_restart()]
                    m.next = "REQUANT"

            with m.State("REQUANT"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1), self.rq_we.eq(self.params.valid)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    m.d.sync += lane_step()
                    with m.If(lane_last):
                        m.d.sync += [*lane_restart(), *g_restart()]
                        m.next = "WEIGHTS"

            with m.State("WEIGHTS"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1), self.wr_en.eq(self.params.valid)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    m.d.sync += g_step()
                    with m.If(g_last):
                        m.d.sync += [*g_restart(), *lane_step()]
                        with m.If(lane_last):
                            m.d.sync += [
                                y.eq(0), x.eq(0), addr.eq(0),
                                row0.eq(1), row1.eq(0), col0.eq(1), col1.eq(0), row_pad.eq(0), col_pad.eq(0),
                                # rows, cols >= 2 for any H, W >= 1
                                y_last.eq(0), x_last.eq(0),
                                scanning.eq(1), wants_input.eq(1),
                            ]
                            m.next = "SCAN"

            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(issue):
                    with m.If(~col_pad):   # x < W: the entry x * cg + g exists (read on the padding row too)
                        m.d.sync += addr.eq(addr + 1)
                    m.d.sync += g_step()
                    with m.If(g_last):
                        m.d.sync += g_restart()
                        with m.If(x_last):
                            y_next = y + 1
                            m.d.sync += [
                                x.eq(0), col0.eq(1), col1.eq(0), col_pad.eq(0), x_last.eq(0), addr.eq(0),
                                y.eq(y_next), row0.eq(0), row1.eq(row0),
                                row_pad.eq(y == height_m1), y_last.eq(y == rows_m2),
                                wants_input.eq(y != height_m1),
                            ]
                            with m.If(y_last):
                                m.d.sync += [scanning.eq(0), wants_input.eq(0)]
                                m.next = "DRAIN"
                        with m.Else():
                            x_next = x + 1
                            m.d.sync += [
                                x.eq(x_next), col0.eq(0), col1.eq(col0),
                                col_pad.eq(x == width_m1), x_last.eq(x == cols_m2),
                                wants_input.eq(~row_pad & (x != width_m1)),
                            ]

            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(self.tile_done):
                    m.d.sync += tile.eq(tile + 1)
                    with m.If(tile == n_tiles - 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "HEADER"
        return m
