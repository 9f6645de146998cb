"""FPGA families: everything that is specific to one family, one module per family.

A family module (today `ecp5`) defines, for the RTL generator and the FPGA flow:

RTL (rep_accel.hdl)
  DSP_STYLE              the `rep-accel rtl --dsp` value that instantiates its DSP blocks
  dsp_multiplier(m, name, a, b) -> Signal
                         a * b in one DSP block with DSP_REGISTER_STAGES register stages
                         (the unit's product latency is the same in every style)
  block_ram_mode(width, depth) -> (entries, bits) | None
                         the block RAM aspect a memory takes in DSP_STYLE, or None where the
                         memory stays a `Memory` for Yosys to map (hdl/block_ram.py)
  registered_block_ram(m, name, width=, depth=, rd_addr=, wr_en=, wr_addr=, wr_data=,
                       shared_port=) -> Signal
                         the memory in block RAMs with their output register: read data two
                         cycles after the address, as hdl/block_ram.py's generic path
  SIMULATION_MODELS      Verilog models of the primitives, in hdl/models/ (simulators only)
  BLOCK_RAM_ENTRIES      entries of one block RAM at the line buffer's width (bank depth)
  WIDE_BLOCK_RAM_ENTRIES entries of one block RAM at its widest (the weight buffer's bank depth)
  BYTE_BLOCK_RAM_ENTRIES entries of one block RAM at byte width (the column delay's bank depth)
  BLOCK_RAM_BYTES        bytes of one block RAM, for buffer-fit estimates
Flow (rep_accel.synth)
  NAME, DEVICES {--device: (part, nextpnr option)}, SPEEDS, PACKAGES, DEFAULT_DEVICE,
  DEFAULT_SPEED, DEFAULT_PACKAGE, BLACK_BOXES (Yosys cell libraries read with -lib),
  synth_command(top, netlist, clock) (the Yosys synthesis commands; `clock` the core's clock input), nextpnr_command() (argv
  prefix), place_and_route_arguments(...), CELLS (the result's cell names: lut,
  flip_flop, dsp, block_ram), SUMMARY_RESOURCES (nextpnr's utilization rows to report).

Adding a family (iCE40, Xilinx 7-series through Yosys) is one new module here, its entry
in FAMILIES, and its tests (docs/extending.md).
"""

from __future__ import annotations

from . import ecp5

#: Every family by name (`rep-accel synth --target NAME`).
FAMILIES = {ecp5.NAME: ecp5}


def dsp_family(style: str):
    """The family whose DSP blocks `rep-accel rtl --dsp style` instantiates, or None for "generic"."""
    for family in FAMILIES.values():
        if family.DSP_STYLE == style:
            return family
    return None


#: `rep-accel rtl --dsp` choices: plain multiplies, or one family's DSP blocks.
DSP_STYLES = ("generic",) + tuple(f.DSP_STYLE for f in FAMILIES.values())
