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
#: Bytes of one 3x3 kernel slot on the parameter stream: nine int8 taps.
KERNEL_BYTES = 9
#: Fixed part of the pipeline latency (cycles), independent of PI and PO, as the RTL
#: (hdl/) is built: window generator 5 (line-buffer read, its data registered, column
#: and column-delay read, that data registered, window), unit 7 (DSP input registers,
#: product, product again, product in the fabric, two adder-tree levels, partial-sum
#: add), column accumulator
#: 1, requantization 6, output register 1, less the 2 that the skew PI + PO counts twice
#: (row PI-1 is PI-1 hops down, column PO-1 is PO-1 hops right). See
#: docs/architecture.md, "Pipeline".
LATENCY_FIXED = 18
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
    """

    pi: int = 8
    po: int = 8
    w_max: int = 224
    max_cg: int = 64
    line_depth: int = 2048

    def __post_init__(self):
        for name in ("pi", "po", "max_cg", "line_depth"):
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
        on_chip = self.line_buffer_bytes + self.weight_buffer_bytes
        if on_chip > ON_CHIP_BYTES_LIMIT:
            raise RepAccelError(f"generics {self.pi}x{self.po}, max_cg={self.max_cg}, line_depth={self.line_depth} "
                                f"need {on_chip:,} bytes of on-chip buffers, more than the {ON_CHIP_BYTES_LIMIT:,} "
                                f"supported; lower --max-cg or --line-depth")

    # Derived quantities: computed here so no other module restates them.
    @property
    def pipeline_latency(self) -> int:
        """Cycles from issuing the last step of an output pixel to its output beat: PI + PO + fixed."""
        return self.pi + self.po + LATENCY_FIXED

    @property
    def param_beat_bytes(self) -> int:
        """Bytes of one parameter-stream beat: PI kernel slots of 9 bytes."""
        return KERNEL_BYTES * self.pi

    @property
    def line_buffer_bytes(self) -> int:
        """On-chip line-buffer bytes: PI lanes x line_depth entries x 2 rows x 1 byte."""
        return self.pi * self.line_depth * 2

    @property
    def weight_buffer_bytes(self) -> int:
        """On-chip weight-buffer bytes: PI x PO units x max_cg kernels x 9 bytes."""
        return self.pi * self.po * self.max_cg * KERNEL_BYTES

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
        return cls(**d)
