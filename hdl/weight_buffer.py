"""A unit's weight buffer in banks of block RAM, with its registered read pipeline."""

from __future__ import annotations

from amaranth.hdl import Array, Module, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel.families import ecp5

from .block_ram import registered_memory

#: Entries of one weight-buffer bank: one block RAM (group) of the family the RTL is timed
#: for at its widest (ECP5's DP16KD as 512 x 36; a 72-bit kernel takes two side by side).
WEIGHT_BANK_DEPTH = ecp5.WIDE_BLOCK_RAM_ENTRIES

#: Register stages from rd_addr to rd_data: the synchronous read, each bank's data
#: registered as it is (with `--dsp ecp5`, in the block RAM's own output register), and
#: again, the bank selected into a register. (A unit adds one more,
#: beside its multipliers: hdl/unit.py's ADDR_LEAD = 5.) The second register of each bank's
#: data lets the first sit beside its block RAM: with one, it was placed beside the
#: selection, 49 rows from the block RAM, and the block RAM's 4.1 ns clock-to-output and
#: 3.0 ns of routing were the 4x4 array's critical path at 140.5 MHz.
READ_LATENCY = 4


class BankedWeightBuffer(wiring.Component):
    """`entries` words of `word_bits` (a unit's kernels, one per tile-and-channel-group address
    kt*cg + g), in banks of WEIGHT_BANK_DEPTH entries (`Memory`s, one block-RAM group each;
    entry e in bank e // WEIGHT_BANK_DEPTH), each bank's data registered as it is before the
    bank is selected: with a K-tile group the buffer is K*cg deep, and a multiplexer straight
    behind the block RAMs' outputs was the direct array's critical path (hdl/unit.py).

    Ports (free-running):
      rd_addr  In(addr)         at cycle t
      rd_data  Out(word_bits)   the word at rd_addr, from t + READ_LATENCY (a register)
      wr_en, wr_addr, wr_data   write port, registered beside each bank (its enable is decoded
                                far away, in the controller; the bank in front of the bank's
                                register): the word is in the buffer from the second cycle after

    style: the multipliers' style (`rep-accel rtl --dsp`), which also decides whether the
    banks are the family's block RAMs with their output register (hdl/block_ram.py).

    Latency: READ_LATENCY = 4. Throughput: one read and one write per cycle. Weights are
    written only while parameters load and read only during a scan, so a read never meets a
    write to its address: `no_rw_check` drops Yosys' collision logic.
    """

    def __init__(self, word_bits: int, entries: int, style: str = "generic"):
        if entries < 1:
            raise ValueError(f"entries={entries}: at least 1")
        self._word_bits, self._entries, self._style = word_bits, entries, style
        addr = unsigned(max(1, (entries - 1).bit_length()))
        super().__init__({
            "rd_addr": In(addr),
            "rd_data": Out(word_bits),
            "wr_en": In(1),
            "wr_addr": In(addr),
            "wr_data": In(word_bits),
        })

    def elaborate(self, platform):
        m = Module()
        bank_count = -(-self._entries // WEIGHT_BANK_DEPTH)
        bank_bits = WEIGHT_BANK_DEPTH.bit_length() - 1
        bank_data = []
        for b in range(bank_count):
            entries = min(WEIGHT_BANK_DEPTH, self._entries - b * WEIGHT_BANK_DEPTH)
            # The write port registered per bank, its enable decoded in front of the register:
            # one shared enable register, ANDed with the bank bit in front of the block RAMs'
            # write enables, was placed far from them (6.3 ns of routing, the 4x4 array's
            # critical path at 142.0 MHz).
            wr_en = Signal(name=f"wr_en{b}_r")
            wr_addr = Signal.like(self.wr_addr, name=f"wr_addr{b}_r", reset_less=True)
            wr_data = Signal.like(self.wr_data, name=f"wr_data{b}_r", reset_less=True)
            m.d.sync += [wr_en.eq(self.wr_en & (self.wr_addr[bank_bits:] == b)), wr_addr.eq(self.wr_addr),
                         wr_data.eq(self.wr_data)]
            # The read and its register (the block RAM's own, with --dsp ecp5).
            data = registered_memory(m, "weights" if bank_count == 1 else f"weights{b}", style=self._style,
                                     width=self._word_bits, entries=entries, rd_addr=self.rd_addr,
                                     wr_en=wr_en, wr_addr=wr_addr, wr_data=wr_data, no_rw_check=True)
            data2 = Signal(self._word_bits, name=f"bank{b}_data2", reset_less=True)
            m.d.sync += data2.eq(data)
            bank_data.append(data2)
        # The bank of the address of three cycles before (the read, then its two registers).
        bank_sel = Signal(range(max(2, bank_count)), reset_less=True)
        bank_sel2 = Signal.like(bank_sel, reset_less=True)
        bank_sel3 = Signal.like(bank_sel, reset_less=True)
        m.d.sync += [bank_sel.eq(self.rd_addr[bank_bits:]), bank_sel2.eq(bank_sel), bank_sel3.eq(bank_sel2)]
        data = Signal(self._word_bits, name="data", reset_less=True)
        m.d.sync += data.eq(Array(bank_data)[bank_sel3] if bank_count > 1 else bank_data[0])
        m.d.comb += self.rd_data.eq(data)
        return m
