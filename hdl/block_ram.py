"""A memory read through its synchronous read port and one output register: in the family's
block RAM with that block RAM's own output register (`rep-accel rtl --dsp ecp5`), else a
`Memory` and a fabric register. Same values and the same two cycles either way."""

from __future__ import annotations

from amaranth.hdl import Signal, unsigned
from amaranth.lib.memory import Memory

from rep_accel import families

from .layouts import memory_depth

#: Cycles from a read address to its data on registered_memory's result.
READ_LATENCY = 2


def registered_memory(m, name: str, *, style: str, width: int, entries: int, rd_addr, wr_en, wr_addr, wr_data,
                      shared_port: bool = False, no_rw_check: bool = False):
    """`entries` words of `width` bits; returns the Signal that holds, from cycle t + 2, the word
    at rd_addr of cycle t (the read, then its register). wr_data is written at wr_addr when
    wr_en, on the `sync` clock; a read of the address written in the same cycle returns the
    old word.

    style: the multipliers' style (`rep-accel rtl --dsp`): a family's style instantiates that
    family's block RAM with its output register where the family's cost model puts the
    memory in block RAM (rep_accel.families.ecp5.block_ram_mode); otherwise, and for
    "generic", a `Memory` whose read data goes straight into a register, which Yosys maps.
    shared_port: rd_addr and wr_addr are the same value (one read-before-write port).
    no_rw_check: the caller guarantees that a read never meets a write to its address (Yosys
    then adds no collision logic; the block RAM reads on one port and writes on the other).
    Addresses keep their low bits: a bank of a larger memory is given the full address."""
    depth = memory_depth(entries)
    family = families.dsp_family(style)
    if family is not None and family.block_ram_mode(width, depth) is not None:
        return family.registered_block_ram(m, name, width=width, depth=depth, rd_addr=rd_addr, wr_en=wr_en,
                                           wr_addr=wr_addr, wr_data=wr_data, shared_port=shared_port)
    memory = Memory(shape=unsigned(width), depth=depth, init=[], attrs={"no_rw_check": 1} if no_rw_check else None)
    m.submodules[name] = memory
    rd, wr = memory.read_port(), memory.write_port()
    m.d.comb += [rd.addr.eq(rd_addr), wr.en.eq(wr_en), wr.addr.eq(wr_addr), wr.data.eq(wr_data)]
    data = Signal(width, name=f"{name}_data", reset_less=True)
    m.d.sync += data.eq(rd.data)
    return data
