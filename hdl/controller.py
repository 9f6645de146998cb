"""The layer controller: descriptor, tile-group loop, parameter load, scan sequencer, status."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import CHANNEL_BITS, DIM_BITS, HardwareGenerics

from .layouts import (CYCLES_BITS, DescriptorLayout, HeaderLayout, cg_shape, params_shape, step_index_shape,
                      step_layout, tile_shape)


class LayerController(wiring.Component):
    """Runs one layer at a time through the schedule of docs/architecture.md.

    States: IDLE (``desc.ready``) -> per tile group of K tiles: HEADER (1 beat: cg, K),
    REQUANT (K * PO beats, beat 1 + k*PO + o for lane o of tile k), WEIGHTS (K * PO * cg
    beats: tile-major, then lane, then channel group; tile k's kernel of group g goes to
    weight address k*cg + g) -> SCAN (the slots of layout.scan_slots: at stride 1 every
    position in raster order; at stride 2 row 0, then each output row with the next row's
    pixels as STORE items, in slots of two columns; for each slot and channel group g,
    max(K_here, items) steps: step kt runs the slot's item kt and computes tile kt if
    kt < K_here, K_here = K at a slot with an output pixel, else 1) -> DRAIN (until the
    group's last output beat transfers) -> the next group, or IDLE with a `done` pulse.

    The pipeline stall is decided here: `advance` is low when the output register holds
    a beat the host does not take (`out_block`) or when the scan's current step needs an
    `act_in` beat that is not valid; no step issues then (see hdl/output.py). A step
    needs an input when its item is a FULL item inside the image or a STORE item.

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
            **({"winograd": Out(1)} if generics.unit == "winograd" else {}),
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
        # kt: the tile of the group while loading; scanning, the step's index in its slot
        # (the tile it computes, the item it runs), up to max(max_group, 4) - 1.
        kt = Signal(step_index_shape(self._g))
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
        out_pos = Signal()               # the slot completes an output pixel (layout.has_output)
        pos_in = Signal()                # its first FULL item consumes input beats (y < H and x < W)
        # Stride 2, rows y >= 1 (`pairs`): a slot is columns x, x+1 of row y (items FULL A,
        # FULL B) and the same columns of row y+1 (STORE A, STORE B); `x` is column A.
        # What the slot has, kept for each of its channel groups, and which item the current
        # step runs (one-hot) and which are left.
        pairs = Signal()
        store_row = Signal()             # row y+1 exists (y + 1 < H): the slots store it
        has_fb, has_sa, has_sb = Signal(name="has_fb"), Signal(name="has_sa"), Signal(name="has_sb")
        in_b = Signal()                  # FULL B consumes an input (x + 1 < W)
        col_pad_b = Signal()             # column x + 1 == W
        cur_fa, cur_fb, cur_sa, cur_sb = (Signal(name=n) for n in ("cur_fa", "cur_fb", "cur_sa", "cur_sb"))
        rem_fb, rem_sa, rem_sb = Signal(name="rem_fb"), Signal(name="rem_sa"), Signal(name="rem_sb")
        compute = Signal()               # kt < K_here: the step computes tile kt
        addr_b = Signal.like(self.step.addr)   # entry (x + 1) * cg + g
        # The current item's entry (addr or addr_b), a register of its own so that the line
        # buffers' address comes from a register, not through a multiplexer.
        item_addr = Signal.like(self.step.addr)
        cg_line = Signal(len(self.step.addr) + 1)   # the group's cg, wide enough for line-buffer entries
        # Layer constants for the stride-2 slot tests (signed: W - 3 may be negative).
        cmp = signed(coord + 2)
        height_m2, height_m3, rows_m3 = Signal(cmp), Signal(cmp), Signal(cmp)
        width_m2, width_m3, cols_m3, cols_m4 = Signal(cmp), Signal(cmp), Signal(cmp), Signal(cmp)
        w_gt1, w_gt2, w_is1, w_is2, cols_gt2, cols_le3, h_gt2 = (
            Signal(name=n) for n in ("w_gt1", "w_gt2", "w_is1", "w_is2", "cols_gt2", "cols_le3", "h_gt2"))
        count = Signal(CYCLES_BITS)

        # Arrays of Winograd units (docs/architecture.md, "Winograd scan"): the item's row and
        # column mod 3 (line-buffer byte, column-delay bank), the third padding row and
        # column, and for a Winograd layer (`wmode`, stride 1) its slots and output beats.
        wk = self._g.unit == "winograd"
        wmode = self.winograd if wk else Const(0)
        ym3, ym3n, xm3, xm3n = (Signal(2, name=n) for n in ("ym3", "ym3n", "xm3", "xm3n"))  # y, y+1, x, x+1 mod 3
        row2, col2 = Signal(name="row2"), Signal(name="col2")
        zero_store = Signal()            # the slot's STORE items are row H (odd H): zeros, no input
        wrows_m1, wcols_m1 = Signal(coord), Signal(coord)     # Winograd scan rows - 1, columns - 1
        wrows_m3, wcols_m3 = Signal(cmp), Signal(cmp)
        height_r, width_r = Signal(coord), Signal(coord)
        h_is1 = Signal()
        # The output beats of the previous slot's blocks, one per step: tile bt, pixel bp of
        # its 2x2 block, of the pixels inside the image (keep_r: column ox + 1 < W, keep_b:
        # row oy + 1 < H); result buffer cur_buf takes the current slot's blocks.
        beating = Signal()
        bt = Signal(tile_shape(self._g))
        bp = Signal(2)
        bt_last, keep_r, keep_b, cur_buf = (Signal(name=n) for n in ("bt_last", "keep_r", "keep_b", "cur_buf"))
        pixel_last = (bp == 3) | ((bp == 0) & ~keep_r & ~keep_b) | ((bp == 1) & ~keep_b) | ((bp == 2) & ~keep_r)
        beat_last = bt_last & pixel_last
        # extra: steps after a slot's own until the previous slot's beats are sent (no item,
        # no compute); final: those of the last slot, after which the group drains.
        extra, final = Signal(name="extra"), Signal(name="final")

        def inc3(v, by):
            """(v + by) mod 3 for v in 0..2."""
            return Mux(v + by >= 3, v + by - 3, v + by)

        def x_moves(by):
            """x + by (by 1 or 2): its mod-3 registers."""
            return [xm3.eq(inc3(xm3, by)), xm3n.eq(inc3(xm3n, by))] if wk else []

        def y_moves(by):
            return [ym3.eq(inc3(ym3, by)), ym3n.eq(inc3(ym3n, by))] if wk else []

        def x_restart():
            return [xm3.eq(0), xm3n.eq(1), col2.eq(0)] if wk else []

        # "Last channel group", "last lane" and "last tile" as registers kept beside g, lane
        # and kt (no comparator behind them): g and lane also drive the weight and
        # requantization writes all over the array, which pulls them far from the FSM.
        g_last = Signal()
        lane_last = Signal()
        kt_last = Signal()               # loading: kt == K - 1; scanning: kt == K_here - 1
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
            return [kt.eq(0), kt_last.eq(tiles_here_is_1)]

        def kt_step():
            return [kt.eq(kt + 1), kt_last.eq(kt == k_m2)]

        def slot_start(fb, sa, sb):
            """The first step of a (slot, channel group): item FULL A, the others left."""
            return [cur_fa.eq(1), cur_fb.eq(0), cur_sa.eq(0), cur_sb.eq(0),
                    rem_fb.eq(fb), rem_sa.eq(sa), rem_sb.eq(sb), compute.eq(1)]
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
        # The step's item, from the one-hot current item: FULL A is the slot's position
        # (x), FULL B column x + 1 of the same row (never column 0 or 1), STORE A / B the
        # pixels of row y + 1 at columns x, x + 1 (inside the image: no padding flags).
        full = cur_fa | cur_fb
        store = cur_sa | cur_sb
        emits = issue & compute & g_last & out_pos
        m.d.comb += [
            self.step.valid.eq(issue),
            self.step.g.eq(g),
            self.step.kt.eq(kt),
            self.step.compute.eq(compute),
            self.step.repeat.eq(~full),
            self.step.store.eq(store),
            self.step.load.eq(cur_fa),
            self.step.waddr.eq(g if single else waddr),
            self.step.addr.eq(item_addr),
            self.step.row0.eq(row0),
            self.step.row1.eq(row1),
            self.step.col0.eq(col0 & cur_fa),
            self.step.col1.eq(col1 & cur_fa),
            self.step.y_odd.eq(y[0] ^ store),
            self.step.x_odd.eq(x[0] ^ (cur_fb | cur_sb)),
            self.step.row_pad.eq(row_pad & full),
            self.step.col_pad.eq(Mux(cur_fb, col_pad_b, col_pad & cur_fa)),
            self.step.first.eq(issue & (g == 0)),
            self.wr_lane.eq(lane),
            self.wr_addr.eq(g if single else waddr),
            self.rq_lane.eq(lane),
            self.rq_tile.eq(kt),
        ]
        direct_tag = emits & kt_last & x_last & y_last
        if wk:
            # A Winograd layer's steps send the previous slot's beats; a stride-2 layer's emit
            # their own results as on a direct array.
            beat = issue & beating
            m.d.comb += [
                self.step.emit.eq(Mux(wmode, beat, emits)),
                self.step.tag.eq(Mux(wmode, beat & final & beat_last, direct_tag)),
                self.step.y_mod3.eq(Mux(store, ym3n, ym3)),
                self.step.x_mod3.eq(Mux(cur_fb | cur_sb, xm3n, xm3)),
                self.step.row2.eq(row2),
                # FULL B is column x + 1: its column flags are column x's shifted by one.
                self.step.col1.eq((col1 & cur_fa) | (col0 & cur_fb)),
                self.step.col2.eq((col2 & cur_fa) | (col1 & cur_fb)),
                self.step.zero.eq(store & zero_store),
                self.step.result.eq(issue & compute & g_last & out_pos & wmode),
                self.step.wbuf.eq(cur_buf),
                self.step.out_tile.eq(Mux(wmode, bt, kt)),
                self.step.out_pixel.eq(bp),
                self.step.out_buf.eq(~cur_buf),
            ]
        else:
            m.d.comb += [self.step.emit.eq(emits), self.step.tag.eq(direct_tag)]

        def winograd_next_slot():
            """A Winograd layer's next slot (layout.scan_slots(..., winograd=True)): columns
            x + 2, x + 3 of the row, or the next row pair's first slot, or, after the last,
            the steps that send its beats (`final`)."""
            with m.If(x_last):
                # The next row pair: FULL items of row y + 2, STORE items of row y + 3 (zeros
                # if y + 3 = H) when a row y + 4 follows. Its first slot: columns 0, 1.
                pad_next = y >= height_m2          # y + 2 >= H
                stores_next = ~(y == wrows_m3)     # y + 2 is not the last row
                m.d.sync += [
                    x.eq(0), col0.eq(1), col1.eq(0), col_pad.eq(0), x_last.eq(0), addr.eq(0),
                    addr_b.eq(cg_line), item_addr.eq(0), *x_restart(),
                    y.eq(y + 2), *y_moves(2), row0.eq(0), row1.eq(0), row2.eq(y == 0),
                    row_pad.eq(pad_next), y_last.eq(~stores_next),
                    pos_in.eq(~pad_next), wants_input.eq(~pad_next),
                    out_pos.eq(0), *kt_restart(1),     # x0 = 0: no output block
                    store_row.eq(stores_next), zero_store.eq(y == height_m3),
                    has_fb.eq(1), has_sa.eq(stores_next), has_sb.eq(stores_next & w_gt1),
                    in_b.eq(~pad_next & w_gt1), col_pad_b.eq(w_is1),
                    *slot_start(1, stores_next, stores_next & w_gt1),
                ]
                with m.If(y_last):
                    # After the last slot: its beats, one per step, then the drain.
                    m.d.sync += [extra.eq(1), final.eq(1), wants_input.eq(0), compute.eq(0), cur_fa.eq(0),
                                 rem_fb.eq(0), rem_sa.eq(0), rem_sb.eq(0)]
            with m.Else():
                # Columns x + 2, x + 3 of row y (x + 3 only if x + 3 < columns).
                last_next = x == wcols_m3
                in_a = ~row_pad & (x < width_m2)
                sa, sb = store_row & (x < width_m2), store_row & (x < width_m3)
                m.d.sync += [
                    x.eq(x + 2), *x_moves(2), col0.eq(0), col1.eq(0), col2.eq(x == 0),
                    col_pad.eq(x >= width_m2), x_last.eq(last_next),
                    addr.eq(addr_b + 1), addr_b.eq(addr_b + 1 + cg_line), item_addr.eq(addr_b + 1),
                    pos_in.eq(in_a), wants_input.eq(in_a), out_pos.eq(~row0), *kt_restart(row0 | k_is_1),
                    has_fb.eq(~last_next), has_sa.eq(sa), has_sb.eq(sb),
                    in_b.eq(~row_pad & (x < width_m3)), col_pad_b.eq(x >= width_m3),
                    *slot_start(~last_next, sa, sb),
                ]

        def advance_group():
            """After a (slot, channel group)'s last step: the next channel group of the slot
            (its first step), or the next slot."""
            # The next channel group of this slot (its first step), or the next slot.
            with m.If(~col_pad):   # x < W: the entry x * cg + g exists (read on the padding row too)
                m.d.sync += addr.eq(addr + 1)
            m.d.sync += [addr_b.eq(addr_b + 1), item_addr.eq(Mux(col_pad, addr, addr + 1)),
                         *g_step(), waddr.eq(g + 1),
                         *kt_restart(~out_pos | k_is_1), wants_input.eq(pos_in),
                         *slot_start(has_fb, has_sa, has_sb)]
            with m.If(g_last):
                m.d.sync += [*g_restart(), waddr.eq(0)]
                if wk:
                    with m.If(wmode):
                        # The slot is done: its blocks' beats go out during the next slot's steps.
                        m.d.sync += [cur_buf.eq(~cur_buf), beating.eq(out_pos), bt.eq(0), bp.eq(0), bt_last.eq(k_is_1),
                                     keep_r.eq(x <= width_r), keep_b.eq(y <= height_r)]
                        winograd_next_slot()
                    next_slot = m.Elif
                else:
                    next_slot = m.If
                with next_slot(x_last):
                    # The next row: y + 1, or at stride 2 past row 0 y + 2 (row y + 1
                    # was stored by this row's slots). Its slot 0 is column 0.
                    y_next = Mux(pairs, y + 2, y + 1)
                    pad_next = Mux(pairs, y == height_m2, y == height_m1)
                    stores_next = stride2 & Mux(pairs, y < height_m3, h_gt2)
                    m.d.sync += [
                        x.eq(0), col0.eq(1), col1.eq(0), col_pad.eq(0), x_last.eq(0), addr.eq(0),
                        addr_b.eq(cg_line), item_addr.eq(0),
                        y.eq(y_next), row0.eq(0), row1.eq(row0),
                        row_pad.eq(pad_next), y_last.eq(Mux(pairs, y == rows_m3, y == rows_m2)),
                        pos_in.eq(~pad_next), wants_input.eq(~pad_next),
                        out_pos.eq(0), *kt_restart(1),     # x = 0: no output
                        pairs.eq(stride2), store_row.eq(stores_next),
                        has_fb.eq(0), has_sa.eq(stores_next), has_sb.eq(0), in_b.eq(0), col_pad_b.eq(0),
                        *slot_start(0, stores_next, 0),
                        *x_restart(),
                    ]
                    if wk:
                        m.d.sync += [row2.eq(Mux(pairs, y == 0, y == 1)), ym3.eq(Mux(pairs, inc3(ym3, 2), inc3(ym3, 1))),
                                     ym3n.eq(Mux(pairs, inc3(ym3n, 2), inc3(ym3n, 1)))]
                    with m.If(y_last):
                        m.d.sync += [scanning.eq(0), wants_input.eq(0)]
                        m.next = "DRAIN"
                with m.Elif(pairs & col0):
                    # Stride 2: from column 0 to the slot of columns 1, 2.
                    in_a = ~row_pad & w_gt1
                    m.d.sync += [
                        x.eq(1), col0.eq(0), col1.eq(1), col_pad.eq(w_is1), x_last.eq(cols_le3),
                        pos_in.eq(in_a), wants_input.eq(in_a), out_pos.eq(1), *kt_restart(k_is_1),
                        has_fb.eq(cols_gt2), has_sa.eq(store_row & w_gt1), has_sb.eq(store_row & w_gt2),
                        in_b.eq(~row_pad & w_gt2), col_pad_b.eq(w_is2),
                        *slot_start(cols_gt2, store_row & w_gt1, store_row & w_gt2),
                        *x_moves(1),
                    ]
                with m.Elif(pairs):
                    # Stride 2: from the slot of columns x, x+1 to that of x+2, x+3.
                    in_a = ~row_pad & (x < width_m2)
                    fb = x < cols_m3
                    sa, sb = store_row & (x < width_m2), store_row & (x < width_m3)
                    m.d.sync += [
                        x.eq(x + 2), col1.eq(0), col_pad.eq(x == width_m2), x_last.eq(x >= cols_m4),
                        addr.eq(addr_b + 1), addr_b.eq(addr_b + 1 + cg_line), item_addr.eq(addr_b + 1),
                        pos_in.eq(in_a), wants_input.eq(in_a), out_pos.eq(1), *kt_restart(k_is_1),
                        has_fb.eq(fb), has_sa.eq(sa), has_sb.eq(sb),
                        in_b.eq(~row_pad & (x < width_m3)), col_pad_b.eq(x == width_m3),
                        *slot_start(fb, sa, sb),
                        *x_moves(2),
                    ]
                    if wk:
                        m.d.sync += col2.eq(x == 0)
                with m.Else():
                    x_next = x + 1
                    # layout.has_output(y, x + 1): y >= 1, and at stride 2 y and x + 1 odd
                    # (stride 2 reaches here on row 0 only: no output).
                    out_next = ~row0 & (~stride2 | (y[0] & ~x[0]))
                    in_next = ~row_pad & (x != width_m1)
                    m.d.sync += [
                        x.eq(x_next), col0.eq(0), col1.eq(col0),
                        col_pad.eq(x == width_m1), x_last.eq(x == cols_m2),
                        pos_in.eq(in_next), wants_input.eq(in_next),
                        out_pos.eq(out_next), *kt_restart(~out_next | k_is_1),
                        *x_moves(1),
                    ]
                    if wk:
                        m.d.sync += col2.eq(col1)

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
                        # Stride 2 (cols = W + 1 for odd W, else W; likewise rows):
                        height_m2.eq(d.height - 2), height_m3.eq(d.height - 3),
                        rows_m3.eq(Mux(d.height[0], d.height - 2, d.height - 3)),
                        width_m2.eq(d.width - 2), width_m3.eq(d.width - 3),
                        cols_m3.eq(Mux(d.width[0], d.width - 2, d.width - 3)),
                        cols_m4.eq(Mux(d.width[0], d.width - 3, d.width - 4)),
                        w_gt1.eq(d.width > 1), w_gt2.eq(d.width > 2), w_is1.eq(d.width == 1),
                        w_is2.eq(d.width == 2), h_gt2.eq(d.height > 2),
                        cols_gt2.eq(Mux(d.width[0], d.width + 1, d.width) > 2),
                        cols_le3.eq(Mux(d.width[0], d.width + 1, d.width) <= 3),
                    ]
                    if wk:
                        # layout.winograd_extent: 2 * ceil(H / 2) + 1 rows, likewise columns.
                        m.d.sync += [
                            self.winograd.eq(d.stride == 1),
                            wrows_m1.eq(d.height + d.height[0]), wcols_m1.eq(d.width + d.width[0]),
                            wrows_m3.eq(d.height + d.height[0] - 2), wcols_m3.eq(d.width + d.width[0] - 2),
                            height_r.eq(d.height), width_r.eq(d.width), h_is1.eq(d.height == 1),
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
                                 cg_line.eq(header.cg),
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
                                    pairs.eq(0), store_row.eq(0), has_fb.eq(0), has_sa.eq(0), has_sb.eq(0),
                                    in_b.eq(0), col_pad_b.eq(0), addr_b.eq(cg_line), item_addr.eq(0),
                                    *slot_start(0, 0, 0),
                                ]
                                if wk:
                                    m.d.sync += [*x_restart(), ym3.eq(0), ym3n.eq(1), row2.eq(0), zero_store.eq(0),
                                                 beating.eq(0), extra.eq(0), final.eq(0)]
                                    with m.If(wmode):
                                        # Slot (0, 0): FULL (0, 0), (0, 1), STORE (1, 0), (1, 1)
                                        # (a Winograd scan has >= 3 rows and columns).
                                        m.d.sync += [
                                            store_row.eq(1), zero_store.eq(h_is1),
                                            has_fb.eq(1), has_sa.eq(1), has_sb.eq(w_gt1),
                                            in_b.eq(w_gt1), col_pad_b.eq(w_is1),
                                            *slot_start(1, 1, w_gt1),
                                        ]
                                m.next = "SCAN"

            with m.State("SCAN"):
                m.d.comb += self.busy.eq(1)
                m.d.sync += count.eq(count + 1)
                more_compute = compute & ~kt_last
                if wk:
                    with m.If(issue & beating):
                        # The beat this step sends: the next pixel of the block, the next tile.
                        with m.If(pixel_last):
                            m.d.sync += [bp.eq(0), bt.eq(bt + 1), bt_last.eq(bt == k_m2)]
                            with m.If(bt_last):
                                m.d.sync += beating.eq(0)
                        with m.Else():
                            m.d.sync += bp.eq(Mux((bp == 0) & ~keep_r, 2, bp + 1))
                    scan_if = m.Elif
                    with m.If(issue & extra):
                        with m.If(beat_last):
                            m.d.sync += extra.eq(0)
                            with m.If(final):
                                m.d.sync += [scanning.eq(0), wants_input.eq(0)]
                                m.next = "DRAIN"
                            with m.Else():
                                advance_group()
                else:
                    scan_if = m.If
                with scan_if(issue & (more_compute | rem_fb | rem_sa | rem_sb)):
                    # The next step of this (slot, channel group): the next tile, the next item.
                    m.d.sync += [*kt_step(), waddr.eq(waddr + cg), compute.eq(more_compute),
                                 cur_fa.eq(0), cur_fb.eq(rem_fb), cur_sa.eq(~rem_fb & rem_sa),
                                 cur_sb.eq(~rem_fb & ~rem_sa & rem_sb),
                                 wants_input.eq(Mux(rem_fb, in_b, (rem_sa | rem_sb) & ~zero_store)),
                                 item_addr.eq(Mux(rem_fb | ~rem_sa, addr_b, addr))]
                    with m.If(rem_fb):
                        m.d.sync += rem_fb.eq(0)
                    with m.Elif(rem_sa):
                        m.d.sync += rem_sa.eq(0)
                    with m.Else():
                        m.d.sync += rem_sb.eq(0)
                with m.Elif(issue):
                    if wk:
                        with m.If(g_last & wmode & beating & ~beat_last):
                            # The slot's own steps are done, the previous slot's beats are not:
                            # steps without an item until they are.
                            m.d.sync += [extra.eq(1), wants_input.eq(0), compute.eq(0),
                                         cur_fa.eq(0), cur_fb.eq(0), cur_sa.eq(0), cur_sb.eq(0)]
                        with m.Else():
                            advance_group()
                    else:
                        advance_group()

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
