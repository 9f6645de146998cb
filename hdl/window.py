"""The window generator: line buffers, column delays and zero padding, per input lane; on an
array of `winograd` units also the input transform (the 4x4 tile's V = B^T d B)."""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Array, Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel import winograd as W
from rep_accel.families import ecp5
from rep_accel.generics import HardwareGenerics

from .block_ram import registered_memory
from .layouts import ACT_BITS, WINDOW_BITS, lane, step_layout
from .winograd import (ACT_RANGE, INPUT_TRANSFORM_LATENCY, V_BITS, V_WORD_BITS, _flatten, _grid,
                       _linear_combination, _register, _Term)

#: Cycles from a step (and its input pixels) to its windows on `windows` (direct units).
LATENCY = 8
#: The stage whose logic forms the window (its register is stage LATENCY): stage 4 reads
#: the column delay, and its data is registered twice after the block RAM's read.
WINDOW_STAGE = 7
assert LATENCY == WINDOW_STAGE + 1
#: Cycles from a step to its V on `v` (winograd units): the direct's LATENCY to the 4x4
#: tile register, then the input transform's two stages.
WINOGRAD_LATENCY = LATENCY + INPUT_TRANSFORM_LATENCY
assert WINOGRAD_LATENCY == 10

#: Side of the direct unit's window (3x3) and of a Winograd unit's input tile (4x4).
WINDOW_SIDE = 3
TILE_SIDE = W.TILE_IN

_ROW = 8        # bits of one pixel of one lane
#: Entries of one line-buffer bank: one block RAM of the family the RTL is timed for
#: (ECP5's DP16KD as 1024 x 18, rep_accel.families.ecp5).
LINE_BANK_DEPTH = ecp5.BLOCK_RAM_ENTRIES
#: Entries of one column-delay bank: one block RAM per row byte of the column (ECP5's DP16KD
#: as 2048 x 9, with both of its ports, so that one of them reads and writes in
#: read-before-write mode).
COLUMN_BANK_DEPTH = ecp5.BYTE_BLOCK_RAM_ENTRIES


def latency(generics: HardwareGenerics) -> int:
    """Cycles from a step to its window (direct units, LATENCY) or its V (winograd units,
    WINOGRAD_LATENCY) on the WindowGenerator of `generics`."""
    return WINOGRAD_LATENCY if generics.unit == "winograd" else LATENCY


class WindowGenerator(wiring.Component):
    """Forms the 3x3 window of every lane for each scan step (docs/architecture.md, "Window
    generator"), or, on an array of `winograd` units, the 4x4 tile's V (below).

    Per lane:
      - a line buffer (`line_depth` entries of two bytes, in banks of LINE_BANK_DEPTH
        entries: entry e is in bank e // LINE_BANK_DEPTH; each bank two `Memory`s of one
        byte, one per row parity, each with one write port and one read port at the same
        address, so that synthesis maps each onto one block-RAM port in read-before-write
        mode: a separate read address, or byte enables, made Yosys add collision logic
        behind the block RAM's output, the 2x2 array's critical path at 143 MHz)
        addressed x * cg + g: byte (r mod 2) holds row r's pixel of column x, channel
        group g. A step reads the entry (rows y-1 and y-2 are its two bytes) and, if it
        consumes an input, writes its pixel into byte (y mod 2) a cycle later, from
        registers (the entry's next reader is at least two steps later); the read returns
        the old contents, so row y-2 is read before it is replaced. The write comes from
        `pixels`, never from the read data: no memory output feeds a memory input;
      - a column delay of two banks (`max_cg` entries of 24 bits each, each in banks of
        COLUMN_BANK_DEPTH entries whose data is registered before one is selected: with
        tile groups max_cg is K * cg deep, 3072 at 1x1 for A0, and a depth multiplexer
        behind the block RAMs was the 1x1 array's critical path at 147 MHz; each bank three
        one-byte `Memory`s, one per row, each with one write and one read port at the same
        address, as the line buffer's: a 24-bit memory went into a block RAM's 36-bit mode,
        whose separate read and write ports made Yosys emulate read-first with logic behind
        the output, the 2x2 array's critical path at 146.8 MHz)
        addressed g: bank (x mod 2) holds column x of channel group g. A step writes its
        column into bank (x mod 2) and reads both banks at g, read-first: bank (x mod 2)
        returns column x-2 as it is replaced, the other bank column x-1. Steps of one
        channel group reach their address in column order (the column delay of g only
        sees g's FULL items, in order), so any cg >= 1 works back to back.
    A step's item (docs/architecture.md, "The schedule of one tile group"): a FULL item
    (`~step.repeat`) does all of the above; a STORE item (`step.store`, stride 2: a pixel
    of row y+1, which has no outputs) only writes its pixel into byte (y+1 mod 2) of its
    entry, after the FULL item of row y there has read it; a step without an item
    (`repeat` and not `store`) is a bubble for the memories. The final window register
    loads only at a slot's FULL A item (`step.load`) and holds its window otherwise (over
    the slot's other steps, bubbles and stalls), so every step of the slot computes on
    the window of its output position.
    Zero padding is generated, never stored: rows above the image (y = 0, and row y-2 at
    y = 1), the row below (`row_pad`), columns left of it (x = 0, and column x-2 at x = 1)
    and the column right of it (`col_pad`) read as zero.

    Stages (t = the step's cycle): t memory reads; t+1 the line-buffer write, memory
    data registered as is (every bank's); t+2 the bank selected, registered; t+3 the
    column formed and masked, registered; t+4 the column-delay banks read and written
    (from that register); t+5 and t+6 the banks' data registered as is, twice; t+7 the
    column-delay bank of g selected, the window formed, masked and extended to 9-bit
    activations; t+8 on
    `windows` (held from the last `load` step).
    No logic follows a memory output, and every memory is read through hdl/block_ram.py's
    registered_memory: with `style` "ecp5" (`rep-accel rtl --dsp ecp5`) its first data
    register is the DP16KD's own output register, which Yosys never maps (without it the
    block RAM's data comes 4.1-4.3 ns after the clock); otherwise a fabric register.

    Ports (free-running: every register but the final window register loads every cycle;
    `step.valid` low is a bubble, which writes no memory, and so is `step.repeat`):
      step     In(step_layout)         the step issued this cycle (controller)
      pixels   In(PI x 8)              its `act_in` beat, lane i in bits [8i+7:8i] (ignored when
                                       the step consumes none)
      signed   In(1)                   the layer's input is int8 (sign-extend) or uint8 (zero-extend);
                                       a layer constant (used at t+7)
      windows  Out(PI x 81)            lane i's window in bits [81i+80:81i], tap ky*3+kx (9-bit
                                       signed, bits [9t+8:9t]) = row y-2+ky, column x-2+kx,
                                       valid LATENCY = 8 cycles after the step (a repeat
                                       step: its kt = 0 step's window, still held)

    Latency: LATENCY = 8 cycles. Throughput: one step per cycle.

    On an array of `winograd` units (generics.unit; docs/architecture.md, "Winograd scan")
    the same pipeline forms the 4x4 tile of the Winograd scan, and of the direct scan at
    stride 2 (`winograd` low), with the step's winograd-kind fields (hdl/layouts.step_layout):
      - the line buffer's entries keep three bytes, byte (r mod 3) row r's pixel, chosen by
        `y_mod3` (rows y-1, y-2 and y-3 read, byte y mod 3 replaced by row y); row y-3 is
        also the top padding at y = 2 (`row2`); a STORE item of row H (`zero`, odd H: no
        input beat) writes a zero instead of its pixel;
      - the column delay has three banks, `x_mod3`'s written and read first (column x-3),
        the others columns x-1 and x-2, each entry four one-byte `Memory`s (rows y-3..y);
        column x-3 is also the left padding at x = 2 (`col2`);
      - the held 4x4 tile d (tap r*4 + c = row y-3+r, column x-3+c, 9-bit) goes through
        the input transform's two stages (`_transformed`): V = B^T d B, or d itself when
        `winograd` is low (a stride-2 layer's 3x3 window is taps (1..3, 1..3) of d; its
        weights are placed there and zeros elsewhere).
    Stages as above to the tile register (t+8), then t+9 B^T d (one adder deep) beside d,
    t+10 (B^T d) B or d, chosen in front of `v`'s registers.
      winograd In(1)                   1: a Winograd layer, V = B^T d B; 0: a stride-2 layer, V = d
                                       (a layer constant, used at t+9)
      v        Out(PI x 176)           lane i's V in bits [176i+175:176i], entry r*4 + c (11-bit
                                       signed, bits [11e+10:11e]; hdl/winograd.WinogradUnit's `v`),
                                       WINOGRAD_LATENCY = 10 cycles after its `load` step, held
                                       until the next load's V
    (in place of `windows`). Memories per lane: 3 one-byte line-buffer memories per
    LINE_BANK_DEPTH entries of line_depth, and 12 one-byte column-delay memories (three
    banks of four rows) per COLUMN_BANK_DEPTH entries of max_cg.
    """

    def __init__(self, generics: HardwareGenerics, style: str = "generic"):
        self._g = generics
        self._style = style
        self._step = step_layout(generics)
        self._winograd = generics.unit == "winograd"
        ports = {
            "step": In(self._step),
            "pixels": In(8 * generics.pi),
            "signed": In(1),
        }
        if self._winograd:
            ports.update({"winograd": In(1), "v": Out(V_WORD_BITS * generics.pi)})
        else:
            ports["windows"] = Out(WINDOW_BITS * generics.pi)
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        g = self._g
        step = self.step
        tiles = self._winograd
        # The window's side (3x3 window, or 4x4 tile) and the rows a line-buffer entry keeps
        # (the rows above the item's), which is also the number of column-delay banks.
        side = TILE_SIDE if tiles else WINDOW_SIDE
        kept = side - 1
        column_bits = _ROW * side   # one column: rows y-kept .. y from bit 0 up
        # A step that forms a new window: valid and not a repeat (kt > 0) of the window before.
        fresh = step.valid & ~step.repeat
        # A FULL item inside the image takes its pixel, and so does a STORE item (row y+1).
        consumes = (fresh & ~step.row_pad & ~step.col_pad) | (step.valid & step.store)
        # The final window register holds over the other steps of a slot (tiles kt > 0, and
        # at stride 2 the slot's other items); it loads only at the slot's FULL A item.
        holds = True

        def register(value, name, reset_less=True):
            # Data needs no reset; the step's control (its `valid`) does.
            reg = Signal.like(value, name=name, reset_less=reset_less)
            m.d.sync += reg.eq(value)
            return reg

        def to_window_stage(value, name, stage=4, reset_less=True):
            # A value of `stage` (default 4, the column delay's read) registered until the
            # window's stage, in step with the column delay's data (stage 5, the block
            # RAM's output, then its two registers).
            for k in range(stage + 1, WINDOW_STAGE):
                value = register(value, f"{name}_{k}", reset_less)
            return register(value, name, reset_less)

        def row_phase(s):   # the line-buffer byte of the item's row
            return s.y_mod3 if tiles else s.y_odd

        def column_phase(s):   # the column-delay bank of the item's column
            return s.x_mod3 if tiles else s.x_odd

        # Stage 1: the step's control and its pixels beside the line buffers' read data.
        s1 = register(step, "s1", reset_less=False)
        s2 = register(s1, "s2", reset_less=False)
        # Stage 3: the column's masks (s3, the step's control at stage 3).
        s3 = register(s2, "s3", reset_less=False)
        # Stage 4: the column delay's address.
        s4 = register(s3, "s4", reset_less=False)
        # Row y-k is the top padding when y < k, column x-k the left padding when x < k.
        top_rows = [s3.row0, s3.row1] + ([s3.row2] if tiles else [])
        left_columns = [s4.col0, s4.col1] + ([s4.col2] if tiles else [])
        # The window's masks: column x-k at x < k (zero_prev[k]).
        zero_prev = [None] + [to_window_stage(_any(left_columns[:k]), f"zero_prev{k}") for k in range(1, kept + 1)]

        # The line buffer in banks of at most LINE_BANK_DEPTH entries, one block RAM each,
        # so that every block RAM's data goes straight into a register; the bank is
        # selected from those registers at stage 2 into a register of its own, which the
        # column's logic reads at stage 3. (With the column formed straight from the bank
        # registers, the register behind the block RAM was placed beside that logic, far
        # from the block RAM: the block RAM's 4.3 ns clock-to-output and 3.2 ns of routing
        # were the 4x4 array's critical path at 134.5 MHz.) The column goes into a register
        # too, which writes the column delay at stage 4: formed from the step's control in
        # front of the column delay's data inputs, 5.4 ns (1x1) and 7.5 ns (Winograd 2x2)
        # of routing from that control's register were those arrays' critical paths.
        bank_count = -(-g.line_depth // LINE_BANK_DEPTH)
        bank_bits = LINE_BANK_DEPTH.bit_length() - 1
        read_bank2 = s2.addr[bank_bits:]

        # The column delay's banks: the bank of g at stage 4 (write) and at stage 7 (select).
        column_banks = -(-g.max_cg // COLUMN_BANK_DEPTH)
        depth_bits = COLUMN_BANK_DEPTH.bit_length() - 1
        if column_banks > 1:
            column_bank7 = to_window_stage(s4.g[depth_bits:], "column_bank")

        for i in range(g.pi):
            pixel = lane(self.pixels, i, _ROW)
            if tiles:
                # A padding STORE (row H of an odd H) writes zeros; it takes no input beat.
                pixel = Mux(step.store & step.zero, 0, pixel)
            pixel1 = register(pixel, f"pixel1_{i}")
            bank_rows = []
            for b in range(bank_count):
                entries = min(LINE_BANK_DEPTH, g.line_depth - b * LINE_BANK_DEPTH)
                writes = consumes & (step.addr[bank_bits:] == b)
                data = []
                for parity in range(kept):   # byte (row mod kept) of every entry
                    # The step's write lands a cycle later (stage 1, from registers: its enable
                    # follows the input handshake, and from there straight to the block RAMs'
                    # write enables was the 2x2 array's critical path at 133.9 MHz). Two steps
                    # that touch one entry, one writing and then one reading it, are at least
                    # two cycles apart (the next position, or the row below), so a read never
                    # meets the late write of its own entry: `no_rw_check`.
                    we1 = register(writes & (row_phase(step) == parity), f"line_we1_{i}_{b}_{parity}",
                                   reset_less=False)
                    # The right padding column's address (possibly one past the buffer) reads
                    # some entry, whose data is masked, and writes none. Stage 1 -> 2: the
                    # byte registered as it is (in the block RAM, with --dsp ecp5).
                    data.append(registered_memory(
                        m, f"line{i}_{b}_{parity}", style=self._style, width=_ROW, entries=entries,
                        rd_addr=step.addr, wr_en=we1, wr_addr=s1.addr, wr_data=pixel1, no_rw_check=True))
                bank_rows.append(Cat(*data))
            # Stage 2 -> 3: the bank of the step's entry, registered.
            rows3 = register(Array(bank_rows)[read_bank2] if bank_count > 1 else bank_rows[0], f"entry{i}")
            pixel3 = register(register(pixel1, f"pixel2_{i}"), f"pixel3_{i}")

            # Stage 3: column x = (row y-kept, ..., row y-1, row y), masked; byte (y-k) mod
            # kept holds row y-k.
            entry_bytes = [rows3[_ROW * r:_ROW * (r + 1)] for r in range(kept)]
            above = [Mux(_any(top_rows[:k]), 0, _rotated(entry_bytes, row_phase(s3), k)) for k in range(kept, 0, -1)]
            current = Mux(s3.row_pad, 0, pixel3)
            column = Signal(column_bits, name=f"column{i}")
            m.d.comb += column.eq(Mux(s3.col_pad, 0, Cat(*above, current)))
            # Stage 3 -> 4: the column registered; from here straight into the column delay.
            column4 = register(column, f"column4_{i}")

            reads = []
            for b, name in enumerate(_COLUMN_BANK_NAMES[kept]):
                parts = []
                for k in range(column_banks):
                    entries = min(COLUMN_BANK_DEPTH, g.max_cg - k * COLUMN_BANK_DEPTH)
                    # The write enable decoded one stage early into a register of its own:
                    # from a register straight to the block RAM, as its address (a decode of
                    # s2 there was the critical path of the 4x4 array with tile groups: 128 MHz).
                    we4 = register(s3.valid & ~s3.repeat & (column_phase(s3) == b) & (s3.g[depth_bits:] == k),
                                   f"col_we4_{i}_{b}_{k}", reset_less=False)
                    data = []
                    for r in range(side):   # row byte r of the column, read first
                        data.append(registered_memory(
                            m, f"{name}{i}_{k}_{r}", style=self._style, width=_ROW, entries=entries,
                            rd_addr=s4.g, wr_en=we4, wr_addr=s4.g, wr_data=column4[_ROW * r:_ROW * (r + 1)],
                            shared_port=True))
                    # Stages 5 and 6: each block RAM's data registered as it is (in the block
                    # RAM, with --dsp ecp5), then again, so that nothing but a register follows
                    # a block RAM (with one fabric register, it was placed beside the window's
                    # logic, 62 rows away: the block RAM's 4.1 ns clock-to-output and 3.1 ns of
                    # routing were the 4x4 array's critical path at 138.6 MHz).
                    parts.append(to_window_stage(Cat(*data), f"bank{b}_{i}" if column_banks == 1 else f"bank{b}_{i}_{k}", stage=6))
                # Stage 7: the bank of g selected.
                reads.append(Array(parts)[column_bank7] if column_banks > 1 else parts[0])

            # Stages 5 and 6: the column and its bank phase beside the banks.
            column7 = to_window_stage(column4, f"column7_{i}")
            x_phase7 = to_window_stage(column_phase(s4), f"{'x_mod3' if tiles else 'x_odd'}7_{i}")

            # Stage 7: columns x-k (k = kept .. 1: bank (x-k) mod kept; bank x mod kept,
            # written at stage 4 and read first, returns column x-kept), then x.
            by_kx = [Mux(zero_prev[k], 0, _rotated(reads, x_phase7, k)) for k in range(kept, 0, -1)] + [column7]

            # Taps extended to 9 bits here, so that the array's registers feed its DSP
            # multipliers directly (no logic between register and multiplier).
            taps = [by_kx[kx][_ROW * ky:_ROW * (ky + 1)] for ky in range(side) for kx in range(side)]
            window = Cat(*(Cat(t, self.signed & t[_ROW - 1]) for t in taps))
            if holds:
                # Its load enable, one register per lane beside the lane's window registers.
                fresh7 = to_window_stage(s4.valid & s4.load, f"fresh7_{i}", reset_less=False)
                window8 = Signal.like(window, name=f"window{i}", reset_less=True)
                with m.If(fresh7):
                    m.d.sync += window8.eq(window)
            else:
                window8 = register(window, f"window{i}")
            if tiles:
                m.d.comb += lane(self.v, i, V_WORD_BITS).eq(_transformed(m, window8, self.winograd, f"v{i}"))
            else:
                m.d.comb += lane(self.windows, i, WINDOW_BITS).eq(window8)
        return m


#: The column-delay banks' memory names by bank count (the direct kind's two, by parity).
_COLUMN_BANK_NAMES = {2: ("even", "odd"), 3: ("mod0", "mod1", "mod2")}


def _any(flags):
    """The OR of one or more 1-bit values."""
    return functools.reduce(operator.or_, flags)


def _rotated(values, phase, back: int):
    """values[(phase - back) mod n] for n = len(values), 2 or 3: the line-buffer byte of
    row y - back when `phase` = y mod n (likewise the column-delay bank of column x - back)."""
    n = len(values)
    if n == 2:
        return Mux(phase, values[(1 - back) % 2], values[-back % 2])
    assert n == 3
    return Mux(phase == 0, values[-back % 3], Mux(phase == 1, values[(1 - back) % 3], values[(2 - back) % 3]))


def _transformed(m: Module, tile, winograd, name: str):
    """Stages 9 and 10 of a Winograd array's window generator: V = B^T d B of the held 4x4
    tile d (16 9-bit taps, tap r*4 + c in bits [9t+8:9t]) when `winograd` is high, else d
    itself, each tap sign-extended to V_BITS; V_WORD_BITS, entry k*4 + q in bits
    [11e+10:11e], from registers.

    The two stages of hdl/winograd.WinogradInputTransform (its adder networks, from the
    same helpers), with the mode multiplexer in front of the second stage's registers: the
    component's output registers leave no place for it within WINOGRAD_LATENCY, and
    behind them it would put logic between `v` and the units' multipliers.
    """
    grid = _grid(tile, TILE_SIDE, ACT_BITS, W.Range(*ACT_RANGE))
    # Stage 9: B^T d, one adder deep, and d beside it.
    half = [[_register(m, _linear_combination(W.B_T[k], [grid[r][c] for r in range(TILE_SIDE)]),
                       f"{name}_l{k}_{c}", None) for c in range(TILE_SIDE)] for k in range(TILE_SIDE)]
    tile6 = Signal.like(tile, name=f"{name}_tile6", reset_less=True)
    m.d.sync += tile6.eq(tile)
    # Stage 10: (B^T d) B, or d.
    out = []
    for k in range(TILE_SIDE):
        row = []
        for q in range(TILE_SIDE):
            full = _linear_combination(W.B_T[q], half[k])
            passed = lane(tile6, k * TILE_SIDE + q, ACT_BITS).as_signed()
            chosen = _Term(Mux(winograd, full.value, passed), full.range, full.operands, full.depth)
            row.append(_register(m, chosen, f"{name}_{k}_{q}", V_BITS))
        out.append(row)
    registers, _ = _flatten(out, V_BITS, "V")
    return Cat(*registers)
