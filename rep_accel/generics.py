"""Elaboration-time generics of the accelerator: the one definition shared by the
compiler (image layout), the simulator (schedule and cycle counts) and the RTL
generator (port widths, buffer depths, pipeline latency).

See docs/architecture.md for what each generic means in hardware.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import RepAccelError

#: Bits of the descriptor's height and width fields (pixels).
DIM_BITS = 12
#: Bits of the descriptor's channel-count fields and of the tile count.
CHANNEL_BITS = 16
#: Bytes of one kernel slot on the parameter stream (and of one stored kernel word): nine
#: int8 taps of a 3x3 kernel, or one output lane's requantization record. A property of the
#: stream format, not of the arithmetic.
KERNEL_BYTES = 9
#: Taps of a 3x3 window and of a 3x3 kernel, tap ky*3 + kx.
WINDOW_TAPS = 9
#: Fixed part of the direct unit's pipeline latency (cycles), independent of PI and PO:
#: the sum of the RTL's stage constants less the skew. One source: `hdl/top.py`
#: (`fixed_latency`) sums hdl's stage constants for every unit kind and asserts them equal
#: to this, at import (docs/architecture.md, "Pipeline").
LATENCY_FIXED = 21


@dataclass(frozen=True)
class UnitKind:
    """What the front end (compiler, simulator, reports) knows of one kind of arithmetic unit.

    multipliers:     multipliers in one unit (the generic `lut_multipliers` counts among
                     PI x PO x this many)
    macs_per_cycle:  useful multiply-accumulates of one unit per cycle at full use (a
                     direct unit: one per multiplier; a Winograd F(2x2,3x3) unit does 36
                     with 16 multipliers on stride-1 layers, 9 in direct mode)
    latency_fixed:   fixed part of the pipeline latency with this unit (cycles)
    kernel_word_bytes: bytes of one weight-buffer word (a stored kernel): 9 int8 taps, or
                     the 16 12-bit entries of a transformed kernel U = G' g G'^T
    line_rows:       input rows a line-buffer entry holds: 2 for 3x3 windows, 3 for 4x4
                     Winograd tiles
    rtl:             whether hdl/ builds this unit kind (`rep-accel rtl`, `verify`)
    """

    multipliers: int
    macs_per_cycle: int
    latency_fixed: int
    kernel_word_bytes: int = 9
    line_rows: int = 2
    rtl: bool = True


#: Fixed part of the pipeline latency with Winograd units (cycles), the RTL's stages
#: (hdl/top.py checks them): window generator 8 + input transform 2, unit 5 (16 products
#: added lane-wise: no adder tree), column 13 (the Winograd-domain sums 1, the output
#: transform 2, the result buffer's read, its register, the pixel and the bias 4,
#: requantization 6), output register 1, less the skew's 2.
WINOGRAD_LATENCY_FIXED = LATENCY_FIXED + 6
#: The unit kinds (`HardwareGenerics.unit`, `--unit`). "direct": nine multipliers, one per
#: tap of the 3x3 window (hdl/unit.py). "winograd": F(2x2,3x3) on stride-1 layers (16
#: multipliers, docs/numerics.md "Winograd F(2x2,3x3)", docs/architecture.md "Winograd
#: scan"), 3x3 windows on 9 of them otherwise (hdl/winograd.py, hdl/winograd_columns.py).
UNIT_KINDS = {
    "direct": UnitKind(multipliers=WINDOW_TAPS, macs_per_cycle=WINDOW_TAPS, latency_fixed=LATENCY_FIXED),
    "winograd": UnitKind(multipliers=16, macs_per_cycle=36, latency_fixed=WINOGRAD_LATENCY_FIXED,
                         kernel_word_bytes=24, line_rows=3),
}
#: Generics that choose how the arithmetic is built, not how the images are laid out: a build
#: records them, and RTL built with other values is refused (check_same_arithmetic).
ARITHMETIC_GENERICS = ("unit", "lut_multipliers")
#: Most tiles one tile group may hold (`max_group`): the depth of each output column's
#: accumulator and requantization tables (distributed RAM in the RTL).
MAX_GROUP_LIMIT = 64
#: Bounds of the buffer generics: what a real device can hold, and what the RTL
#: generator elaborates in seconds. The largest ECP5 (LFE5U-85F) has 208 block RAMs of
#: 2 KiB; these bounds leave room for larger FPGAs without letting a typo ask for
#: gigabytes.
MAX_CG_LIMIT = 4096
LINE_DEPTH_LIMIT = 65536
#: Line buffers and weight buffers together, bytes.
ON_CHIP_BYTES_LIMIT = 16 << 20


@dataclass(frozen=True)
class HardwareGenerics:
    """The array's shape and buffer sizes, fixed when the hardware is built.

    pi:          input channels consumed per cycle (array rows, input-stream lanes).
    po:          output channels produced in parallel (array columns, output lanes).
    w_max:       widest input row the line buffers take (pixels).
    max_cg:      weight-buffer depth per unit, in 3x3 kernels: the most input-channel
                 groups (ceil(C_in of a tile / pi)) one tile may have.
    line_depth:  line-buffer entries per lane; one entry holds one pixel of one channel
                 group for the two previous rows. A layer needs width * cg <= line_depth.
    max_group:   most tiles of PO output channels that share one pass over the input (a tile
                 group, docs/architecture.md "Tile groups"): the depth of each output
                 column's accumulator and requantization tables. A group of K tiles with cg
                 channel groups also needs K * cg <= max_cg kernels per unit.
    unit:        kind of arithmetic unit, a key of UNIT_KINDS ("direct": the 3x3 unit).
    lut_multipliers: how many of the array's PI x PO x UnitKind.multipliers multipliers are
                 built in logic (LUTs) instead of DSP blocks, 0 .. all of them: the first
                 ones in unit order (row-major (i, o), then tap). Same values, same latency
                 (hdl/lut_multiplier.py).
    """

    pi: int = 8
    po: int = 8
    w_max: int = 224
    max_cg: int = 64
    line_depth: int = 2048
    max_group: int = 16
    unit: str = "direct"
    lut_multipliers: int = 0

    def __post_init__(self):
        for name in ("pi", "po", "max_cg", "line_depth", "max_group"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise RepAccelError(f"generic {name}={value!r} must be a positive integer")
        if self.pi > 64 or self.po > 64:
            raise RepAccelError(f"array {self.pi}x{self.po} is larger than the 64x64 supported; use --pi/--po <= 64")
        if not isinstance(self.w_max, int) or isinstance(self.w_max, bool) or self.w_max < 3:
            raise RepAccelError(f"generic w_max={self.w_max!r} must be an integer >= 3 (a 3x3 window needs 3 pixels)")
        if self.w_max >= 1 << DIM_BITS:
            raise RepAccelError(f"generic w_max={self.w_max} exceeds {(1 << DIM_BITS) - 1}, the descriptor's width field")
        if self.max_cg > MAX_CG_LIMIT:
            raise RepAccelError(f"generic max_cg={self.max_cg} exceeds {MAX_CG_LIMIT}, the most kernels per unit "
                                f"supported; use --max-cg <= {MAX_CG_LIMIT}")
        if self.line_depth > LINE_DEPTH_LIMIT:
            raise RepAccelError(f"generic line_depth={self.line_depth} exceeds {LINE_DEPTH_LIMIT}, the deepest "
                                f"line buffer supported; use --line-depth <= {LINE_DEPTH_LIMIT}")
        if self.max_group > MAX_GROUP_LIMIT:
            raise RepAccelError(f"generic max_group={self.max_group} exceeds {MAX_GROUP_LIMIT}, the most tiles per "
                                f"group supported; use --max-group <= {MAX_GROUP_LIMIT}")
        if not isinstance(self.unit, str) or self.unit not in UNIT_KINDS:
            raise RepAccelError(f"generic unit={self.unit!r:.40}: choose one of {', '.join(UNIT_KINDS)} (--unit)")
        value = self.lut_multipliers
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.multipliers:
            raise RepAccelError(f"generic lut_multipliers={value!r:.40} must be an integer 0..{self.multipliers}, "
                                f"the {self.pi}x{self.po} array's multipliers; use --lut-multipliers <= {self.multipliers}")
        on_chip = self.line_buffer_bytes + self.weight_buffer_bytes
        if on_chip > ON_CHIP_BYTES_LIMIT:
            raise RepAccelError(f"generics {self.pi}x{self.po}, max_cg={self.max_cg}, line_depth={self.line_depth} "
                                f"need {on_chip:,} bytes of on-chip buffers, more than the {ON_CHIP_BYTES_LIMIT:,} "
                                f"supported; lower --max-cg or --line-depth")

    # Derived quantities: computed here so no other module restates them.
    @property
    def unit_kind(self) -> UnitKind:
        return UNIT_KINDS[self.unit]

    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing the last step of an output pixel to its output beat: PI + PO + fixed."""
        return self.pi + self.po + self.unit_kind.latency_fixed

    @property
    def multipliers(self) -> int:
        """Multipliers of the array: PI x PO units x the unit kind's."""
        return self.pi * self.po * self.unit_kind.multipliers

    @property
    def dsp_multipliers(self) -> int:
        """Multipliers built as DSP blocks (with `rep-accel rtl --dsp ecp5`, or as Yosys maps `*`)."""
        return self.multipliers - self.lut_multipliers

    @property
    def peak_macs_per_cycle(self) -> int:
        """Useful multiply-accumulates per cycle of the whole array at full use."""
        return self.pi * self.po * self.unit_kind.macs_per_cycle

    @property
    def param_beat_bytes(self) -> int:
        """Bytes of one parameter-stream beat: PI kernel slots of 9 bytes."""
        return KERNEL_BYTES * self.pi

    @property
    def line_buffer_bytes(self) -> int:
        """On-chip line-buffer bytes: PI lanes x line_depth entries x the unit kind's
        line_rows (2, or 3 for Winograd) x 1 byte."""
        return self.pi * self.line_depth * self.unit_kind.line_rows

    @property
    def weight_buffer_bytes(self) -> int:
        """On-chip weight-buffer bytes: PI x PO units x max_cg kernels x the unit kind's
        kernel word (9 bytes, or 24 for a transformed Winograd kernel)."""
        return self.pi * self.po * self.max_cg * self.unit_kind.kernel_word_bytes

    def replace(self, **changes) -> "HardwareGenerics":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "HardwareGenerics":
        if not isinstance(d, dict):
            raise RepAccelError(f"hardware generics must be an object of name: value, found {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise RepAccelError(f"unknown hardware generics {sorted(unknown)}; known: {sorted(names)}")
        return cls(**d)   # a field an older build lacks takes its default


def check_same_arithmetic(build: HardwareGenerics, rtl: HardwareGenerics, build_name: str, rtl_name: str) -> None:
    """Raise RepAccelError when the RTL's arithmetic generics (ARITHMETIC_GENERICS) are not
    the build's: a build records the unit kind and LUT-multiplier count it is compiled for."""
    for name in ARITHMETIC_GENERICS:
        mine, theirs = getattr(build, name), getattr(rtl, name)
        if mine != theirs:
            flag = "--" + name.replace("_", "-")
            raise RepAccelError(f"build {build_name} is for {name}={mine}, {rtl_name} has {name}={theirs}; "
                                f"regenerate the RTL with `rep-accel rtl ... {build_name} {flag} {mine}` or recompile "
                                f"the build with {flag} {theirs}")

