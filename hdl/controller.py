"""The layer controller: descriptor, tile-group loop, parameter load, scan sequencer, status."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import CHANNEL_BITS, DIM_BITS, HardwareGenerics

from .layouts import CYCLES_BITS, DescriptorLayout, HeaderLayout, cg_shape, params_shape, step_layout, tile_shape


class LayerController(wiring.Component):
    """Runs one layer at a time through the schedule of docs/architecture.md.

    States: IDLE (``desc.ready``) -> per tile group of K tiles: HEADER (1 beat: cg, K),
    REQUANT (K * PO beats, beat 1 + k*PO + o for lane o of tile k), WEIGHTS (K * PO * cg
    beats: tile-major, then lane, then channel group; tile k's kernel of group g goes to
    weight address k*cg + g) -> SCAN (rows x cols positions in raster order; at each, for
    each channel group g, K steps kt = 0..K-1 at a position that completes an output
    pixel, else one) -> DRAIN (until the group's last output beat transfers) -> the next
    group, or IDLE with a `done` pulse.

    The pipeline stall is decided here: `advance` is low when the output register holds
    a beat the host does not take (`out_block`) or when the scan's current step needs an
    `act_in` beat that is not valid; no step issues then (see hdl/output.py). Only the
    kt = 0 step of a (position, channel group) needs an input.

    Ports:
      desc          In(stream of DescriptorLayout)  a beat starts a layer (ready in IDLE)
      params        In(stream of PI x 9 bytes)      parameter beats (ready in HEADER, REQUANT, WEIGHTS)
      in_valid      In(1)   act_in.valid
      in_ready      Out(1)  act_in.ready: a scan step that takes an input, not stalled by the output
      out_block     In(1)   the output register holds a beat that is not taken this cycle
      group_done    In(1)   the tile group's last output beat transfers this cycle
      advance       Out(1)  the pipeline advances this cycle (the global stall when low)
      step          Out(step_layout)  the step issued this cycle; `valid` = SCAN and `advance`
      input_signed  Out(1)  the layer's input is int8 (the network input)
      wr_en, wr_lane, wr_addr   weight write: beat (tile k, lane, g) of the WEIGHTS state
                                to address k*cg + g
      rq_we, rq_lane, rq_tile   requantization-parameter write: beat 1 + tile*PO + lane
      busy          Out(1)  high from the cycle after the descriptor transfer to the last output transfer
      done          Out(1)  one-cycle pulse in the cycle after the last output transfer
      cycles        Out(32) descriptor transfer to last output transfer, inclusive; valid
                            from `done` until the next descriptor transfers

    Latency: a step issues in the cycle the controller is in SCAN and `advance` is high;
    the first parameter beat of a group can transfer the cycle after the previous group's
    `group_done`. Throughput: one parameter beat or one step per cycle.
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
            "group_done": In(1),
            "advance": Out(1),
            "step": Out(self._step),
            "input_signed": Out(1),
            "wr_en": Out(1),
            "wr_lane": Out(lane),
            "wr_addr": Out(cg_shape(generics)),
            "rq_we": Out(1),
            "rq_lane": Out(lane),
            "rq_tile": Out(tile_shape(generics)),
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
        n_groups = Signal(CHANNEL_BITS)
        group = Signal(CHANNEL_BITS)
        rows_m2 = Signal(coord)          # scan rows - 2 (scan rows >= 2)
        cols_m2 = Signal(coord)          # scan columns - 2
        lane = Signal(range(max(2, po)))
        # With max_group = 1 every group is one tile: the tile index, its flags and the
        # weight-address register are constants or unused, and the controller is the
        # one-tile controller of the first release (Yosys removes what is left over).
        single = self._g.max_group == 1
        g = Signal(16)                   # channel group: weight beats, then scan steps
        kt = Const(0, tile_shape(self._g)) if single else Signal(tile_shape(self._g))
        # kt: tile of the group: parameter beats, then scan steps
        y = Signal(coord)
        x = Signal(coord)
        addr = Signal.like(self.step.addr)
        # The weight address k*cg + g as a register of its own, stepped by +1 (next channel
        # group) or +cg (next tile) from registers, so no multiplier or adder sits between
        # the counters and the weight buffers' address lines.
        waddr = Signal.like(self.step.waddr)
        wbase = Signal.like(self.step.waddr)   # k*cg while loading tile k's weights
        cg = Signal.like(self.step.waddr)      # the group's cg (k*cg + cg < max_cg when it is added)
        # Registered facts about the current scan position, so that the stall logic
        # (`advance`) depends on registers and the stream handshakes only.
        row0, row1, col0, col1, row_pad, col_pad, y_last, x_last = (
            Signal(name=n) for n in ("row0", "row1", "col0", "col1", "row_pad", "col_pad", "y_last", "x_last"))
        out_pos = Signal()               # the position completes an output pixel (layout.has_output)
        pos_in = Signal()                # the position consumes input beats (y < H and x < W)
        repeat = Const(0) if single else Signal()   # kt > 0: the step reuses its position's window
        count = Signal(CYCLES_BITS)

        # "Last channel group", "last lane" and "last tile" as registers kept beside g, lane
        # and kt (no comparator behind them): g and lane also drive the weight and
        # requantization writes all over the array, which pulls them far from the FSM.
        g_last = Signal()
        lane_last = Signal()
        kt_last = Const(1) if single else Signal()   # loading: kt == K - 1; scanning: kt == K_here - 1
        cg_is_1 = Signal()               # the group has one channel group
        cg_m2 = Signal(16)               # channel groups - 2 (wraps for cg = 1: never met)
        k_is_1 = Const(1) if single else Signal()    # the group has one tile
        k_m2 = Signal(tile_shape(self._g))   # tiles - 2 (wraps for K = 1: never met)
        lane_po_m2 = (lane == po - 2) if po >= 2 else Const(0)

        def g_restart():
            return [g.eq(0), g_last.eq(cg_is_1)]

        def g_step():
            return [g.eq(g + 1), g_last.eq(g == cg_m2)]

        def lane_restart():
            return [lane.eq(0), lane_last.eq(po == 1)]

        def lane_step():
            return [lane.eq(lane + 1), lane_last.eq(lane_po_m2)]

        def kt_restart(tiles_here_is_1):
            return [] if single else [kt.eq(0), kt_last.eq(tiles_here_is_1), repeat.eq(0)]

        def kt_step():
            return [] if single else [kt.eq(kt + 1), kt_last.eq(kt == k_m2), repeat.eq(1)]
        header = HeaderLayout(self.params.payload[:HeaderLayout.size])

        m.d.comb += self.cycles.eq(count)
        m.d.sync += self.done.eq(0)

        # The stall decision is one LUT from registers and handshakes: `scanning` (the FSM is
        # in SCAN) and `wants_input` (in SCAN at a step that consumes an input: kt = 0 and
        # not on the padding row or column) are registers kept beside the FSM state and the
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
        m.d.comb += [
            self.step.valid.eq(issue),
            self.step.g.eq(g),
            self.step.kt.eq(kt),
            self.step.repeat.eq(repeat),
            self.step.waddr.eq(g if single else waddr),
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
            self.step.emit.eq(issue & g_last & out_pos),
            self.step.tag.eq(issue & g_last & kt_last & x_last & y_last),
            self.wr_lane.eq(lane),
            self.wr_addr.eq(g if single else waddr),
            self.rq_lane.eq(lane),
            self.rq_tile.eq(kt),
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
                        n_groups.eq(d.n_groups),
                        group.eq(0),
                        # layout.scan_extent: H + 1 rows at stride 1 or odd H, else H.
                        rows_m2.eq(Mux(odd_or_s1 | d.height[0], d.height - 1, d.height - 2)),
                        cols_m2.eq(Mux(odd_or_s1 | d.width[0], d.width - 1, d.width - 2)),
                        count.eq(1),
                    ]
                    with m.If(d.n_groups == 0):
                        m.d.sync += self.done.eq(1)
                    with m.Else():
                        m.next = "HEADER"

            with m.State("HEADER"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    one_tile = header.tiles == 1
                    m.d.sync += [cg_m2.eq(header.cg - 2), cg_is_1.eq(header.cg == 1), cg.eq(header.cg),
                                 *lane_restart(), *kt_restart(one_tile)]
                    if not single:
                        m.d.sync += [k_m2.eq(header.tiles - 2), k_is_1.eq(one_tile)]
                    m.next = "REQUANT"

            with m.State("REQUANT"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1), self.rq_we.eq(self.params.valid)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    m.d.sync += lane_step()
                    with m.If(lane_last):
                        m.d.sync += [*lane_restart(), *kt_step()]
                        with m.If(kt_last):
                            m.d.sync += [*kt_restart(k_is_1), *g_restart(), waddr.eq(0), wbase.eq(0)]
                            m.next = "WEIGHTS"

            with m.State("WEIGHTS"):
                m.d.comb += [self.busy.eq(1), self.params.ready.eq(1), self.wr_en.eq(self.params.valid)]
                m.d.sync += count.eq(count + 1)
                with m.If(self.params.valid):
                    m.d.sync += [*g_step(), waddr.eq(waddr + 1)]
                    with m.If(g_last):
                        m.d.sync += [*g_restart(), *lane_step(), waddr.eq(wbase)]
                        with m.If(lane_last):
                            m.d.sync += [*lane_restart(), *kt_step(), wbase.eq(wbase + cg), waddr.eq(wbase + cg)]
                            with m.If(kt_last):
                                m.d.sync += [
                                    y.eq(0), x.eq(0), addr.eq(0), waddr.eq(0),
                                    row0.eq(1), row1.eq(0), col0.eq(1), col1.eq(0), row_pad.eq(0), col_pad.eq(0),
                                    # rows, cols >= 2 for any H, W >= 1
                                    y_last.eq(0), x_last.eq(0),
                                    # position (0, 0) completes no output: one step per channel group
                                    out_pos.eq(0), pos_in.eq(1), *kt_restart(1),
                                    scanning.eq(1), wants_input.eq(1),
                                ]
                                m.next = "SCAN"

            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(issue & ~kt_last):
                    # The next tile's step on the same window: no input.
                    m.d.sync += [*kt_step(), waddr.eq(waddr + cg), wants_input.eq(0)]
                with m.If(issue & kt_last):
                    # The next channel group of this position (its kt = 0 step), or the next position.
                    with m.If(~col_pad):   # x < W: the entry x * cg + g exists (read on the padding row too)
                        m.d.sync += addr.eq(addr + 1)
                    m.d.sync += [*g_step(), waddr.eq(g + 1), *kt_restart(~out_pos | k_is_1),
                                 wants_input.eq(pos_in)]
                    with m.If(g_last):
                        m.d.sync += [*g_restart(), waddr.eq(0)]
                        with m.If(x_last):
                            y_next = y + 1
                            m.d.sync += [
                                x.eq(0), col0.eq(1), col1.eq(0), col_pad.eq(0), x_last.eq(0), addr.eq(0),
                                y.eq(y_next), row0.eq(0), row1.eq(row0),
                                row_pad.eq(y == height_m1), y_last.eq(y == rows_m2),
                                pos_in.eq(y != height_m1), wants_input.eq(y != height_m1),
                                out_pos.eq(0), *kt_restart(1),     # x = 0: no output
                            ]
                            with m.If(y_last):
                                m.d.sync += [scanning.eq(0), wants_input.eq(0)]
                                m.next = "DRAIN"
                        with m.Else():
                            x_next = x + 1
                            # layout.has_output(y, x + 1): y >= 1, and at stride 2 y and x + 1 odd.
                            out_next = ~row0 & (~stride2 | (y[0] & ~x[0]))
                            in_next = ~row_pad & (x != width_m1)
                            m.d.sync += [
                                x.eq(x_next), col0.eq(0), col1.eq(col0),
                                col_pad.eq(x == width_m1), x_last.eq(x == cols_m2),
                                pos_in.eq(in_next), wants_input.eq(in_next),
                                out_pos.eq(out_next), *kt_restart(~out_next | k_is_1),
                            ]

            with m.State("DRAIN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += count.eq(count + 1)
                with m.If(self.group_done):
                    m.d.sync += group.eq(group + 1)
                    with m.If(group == n_groups - 1):
                        m.d.sync += self.done.eq(1)
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "HEADER"
        return m
