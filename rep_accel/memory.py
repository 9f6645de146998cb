"""The external memory the host streams come from: one definition of the model.

The accelerator's three host streams (`params`, `act_in`, `act_out`) are served by one
external memory through the host's DMA. The model (docs/architecture.md, "External
memory") is a deterministic credit counter, evaluated once per accelerator cycle:

* the memory delivers `bytes_per_cycle` = peak bandwidth x `efficiency` / clock bytes
  per accelerator cycle (an exact fraction `rate_num / rate_den`), shared by reads and
  writes;
* the first `latency_cycles` cycles of a layer (from its descriptor transfer) deliver
  nothing: the access latency of the layer's first read; the DMA knows the layer's whole
  transfer list, so later reads are pipelined behind it and pay no latency again;
* bandwidth not used is banked up to `fifo_bytes` (the DMA's read-ahead and write
  buffering) and lost beyond it;
* a read beat (params: 9 * PI bytes, act_in: PI bytes) is offered when the credit covers
  it and is paid when first offered; act_out.ready is high when the credit covers a
  write beat (PO bytes), paid when the beat transfers. Order within a cycle: the write,
  then params, then act_in.

The engine loop that evaluates it is `rep_accel.sim.cycle.engine` (cycle mode, and fast
mode's timing replay); this module owns the parameters, the presets and the parsing of
`--memory`.

Units: bytes, accelerator cycles, MB/s (10^6 bytes per second), MHz, ns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

from .errors import RepAccelError
from .generics import KERNEL_BYTES, HardwareGenerics

#: Largest denominator of the exact rate fraction (bytes per cycle).
RATE_DENOMINATOR_MAX = 1 << 20
#: Default DMA buffering (bytes): one ECP5 DP16KD block RAM (18 kbit, 2048 x 9 bits) of
#: read-ahead / write buffer. An assumption, not a measured figure.
DEFAULT_FIFO_BYTES = 2048
#: Bytes of one output channel's requantization parameters: bias int32, M0 uint32, n uint8.
REQUANT_BYTES = 9
#: Default controller efficiency: the fraction of the peak bandwidth a controller
#: delivers on these streams. An assumption (controllers reach perhaps 60-80% of the peak,
#: ../shared/HARDWARE.md); not measured on a board.
DEFAULT_EFFICIENCY = 0.7


@dataclass(frozen=True)
class MemoryPreset:
    """A memory device class by its interface, independent of the accelerator's clock.

    peak_mb_s: peak bandwidth, MB/s (bus bytes x transfers per second);
    latency_ns: first-read latency through the controller (ns);
    efficiency: fraction of the peak delivered; source / assumptions: where each figure
    comes from, and which ones are not confirmed."""

    name: str
    description: str
    peak_mb_s: float
    latency_ns: float
    efficiency: float
    source: str
    assumptions: str


PRESETS = {p.name: p for p in (
    MemoryPreset(
        "sdr16-100", "16-bit SDR SDRAM at 100 MHz", 200.0, 80.0, DEFAULT_EFFICIENCY,
        "peak = 2 bytes x 100 MT/s (bus width x clock, one transfer per clock; "
        "../shared/HARDWARE.md: 200-332 MB/s for 16-bit SDR SDRAM at 100-166 MHz)",
        "efficiency 0.7 and latency 80 ns (row activate + CAS latency 2-3 + controller) are "
        "assumptions, NOT confirmed on a board or a controller"),
    MemoryPreset(
        "sdr16-166", "16-bit SDR SDRAM at 166 MHz", 332.0, 60.0, DEFAULT_EFFICIENCY,
        "peak = 2 bytes x 166 MT/s (bus width x clock, one transfer per clock; "
        "../shared/HARDWARE.md: at most 332 MB/s)",
        "efficiency 0.7 and latency 60 ns (row activate + CAS latency 3 + controller) are "
        "assumptions, NOT confirmed on a board or a controller"),
    MemoryPreset(
        "ddr3-16-800", "16-bit DDR3 at 800 MT/s", 1600.0, 100.0, DEFAULT_EFFICIENCY,
        "peak = 2 bytes x 800 MT/s (bus width x transfer rate; ../shared/HARDWARE.md: at most "
        "1.6 GB/s for 16-bit DDR3 at 800 MT/s)",
        "efficiency 0.7 and latency 100 ns (tRCD + CL 6 at 400 MHz, plus a soft controller's "
        "pipeline at a quarter of the DRAM clock) are assumptions, NOT confirmed on a board or a "
        "controller"),
)}


@dataclass(frozen=True)
class MemoryModel:
    """The memory at the accelerator's clock: what the engine's host side evaluates.

    rate_num / rate_den: effective bytes per accelerator cycle (peak x efficiency), exact;
    latency_cycles: cycles of a layer before the first byte arrives; fifo_bytes: banked
    credit limit (bytes); peak_bytes_per_cycle, efficiency: the figures it came from;
    name: a preset name or "custom"; description: for the report."""

    name: str
    rate_num: int
    rate_den: int
    latency_cycles: int
    fifo_bytes: int
    peak_bytes_per_cycle: float
    efficiency: float
    description: str = ""

    def __post_init__(self):
        if self.rate_num < 1 or self.rate_den < 1:
            raise RepAccelError(f"memory {self.name}: bandwidth must be positive")
        if self.latency_cycles < 0:
            raise RepAccelError(f"memory {self.name}: latency {self.latency_cycles} cycles must be >= 0")

    @property
    def bytes_per_cycle(self) -> float:
        """Effective bytes per accelerator cycle."""
        return self.rate_num / self.rate_den

    def memory_cycles(self, nbytes: int) -> int:
        """The fewest cycles in which this memory moves `nbytes` bytes in one layer:
        latency + ceil(nbytes / bytes_per_cycle)."""
        return self.latency_cycles + -(-nbytes * self.rate_den // self.rate_num)

    def check_beats(self, generics: HardwareGenerics) -> None:
        """The banked credit must hold the largest beat, or that beat is never offered."""
        largest = max(KERNEL_BYTES * generics.pi, generics.pi, generics.po)
        if self.fifo_bytes < largest:
            raise RepAccelError(f"memory {self.name}: fifo={self.fifo_bytes} bytes is smaller than a "
                                f"{largest}-byte beat of the PI={generics.pi} PO={generics.po} array; "
                                f"give fifo={largest} or more")

    def engine_args(self) -> tuple[int, int, int, int]:
        """(rate_num, rate_den, credit cap in 1/rate_den bytes, latency) for the engine kernel."""
        return self.rate_num, self.rate_den, self.fifo_bytes * self.rate_den, self.latency_cycles

    def label(self) -> str:
        return (f"{self.name}: {self.bytes_per_cycle:.3f} bytes/cycle ({self.peak_bytes_per_cycle:.3f} peak x "
                f"efficiency {self.efficiency:g}), latency {self.latency_cycles} cycles, FIFO {self.fifo_bytes} B")

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "bytes_per_cycle": self.bytes_per_cycle,
                "rate": f"{self.rate_num}/{self.rate_den}", "peak_bytes_per_cycle": self.peak_bytes_per_cycle,
                "efficiency": self.efficiency, "latency_cycles": self.latency_cycles, "fifo_bytes": self.fifo_bytes}


#: Engine arguments that mean "no memory model" (the host's patterns alone).
UNLIMITED_ENGINE_ARGS = (0, 0, 0, 0)


def _fraction(value: float) -> Fraction:
    return Fraction(str(value)).limit_denominator(RATE_DENOMINATOR_MAX)


def model(peak_bytes_per_cycle: float, efficiency: float = 1.0, latency_cycles: int = 0,
          fifo_bytes: int = DEFAULT_FIFO_BYTES, name: str = "custom", description: str = "") -> MemoryModel:
    """A memory of `peak_bytes_per_cycle` x `efficiency` bytes per accelerator cycle."""
    for what, v in (("bytes per cycle", peak_bytes_per_cycle), ("efficiency", efficiency)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
            raise RepAccelError(f"memory {name}: {what} {v!r} must be a positive number")
    if efficiency > 1:
        raise RepAccelError(f"memory {name}: efficiency {efficiency:g} must be at most 1")
    if not isinstance(fifo_bytes, int) or fifo_bytes < 1:
        raise RepAccelError(f"memory {name}: fifo {fifo_bytes!r} must be a positive number of bytes")
    rate = _fraction(peak_bytes_per_cycle) * _fraction(efficiency)
    rate = rate.limit_denominator(RATE_DENOMINATOR_MAX)
    if rate <= 0:
        raise RepAccelError(f"memory {name}: {peak_bytes_per_cycle:g} x {efficiency:g} bytes per cycle is too small")
    return MemoryModel(name, rate.numerator, rate.denominator, int(latency_cycles), int(fifo_bytes),
                       float(peak_bytes_per_cycle), float(efficiency), description)


def from_preset(name: str, clock_mhz: float, efficiency: float | None = None, latency_cycles: int | None = None,
                fifo_bytes: int = DEFAULT_FIFO_BYTES) -> MemoryModel:
    """Preset `name` (PRESETS) seen from an accelerator clocked at `clock_mhz` MHz:
    peak bytes per cycle = peak MB/s / clock MHz; latency = ceil(latency_ns x clock / 1000)."""
    if name not in PRESETS:
        raise RepAccelError(f"memory preset {name!r}: choose one of {', '.join(PRESETS)} or give bytes per cycle")
    if not clock_mhz > 0:
        raise RepAccelError(f"clock {clock_mhz} MHz must be positive")
    p = PRESETS[name]
    lat = math.ceil(p.latency_ns * clock_mhz / 1000 - 1e-9) if latency_cycles is None else latency_cycles
    return model(p.peak_mb_s / clock_mhz, p.efficiency if efficiency is None else efficiency, lat, fifo_bytes,
                 name, p.description)


#: Keys of a --memory spec after the preset or number: SPEC[,efficiency=E][,latency=N][,fifo=B].
SPEC_KEYS = ("efficiency", "latency", "fifo")


def parse(spec: str | None, clock_mhz: float) -> MemoryModel | None:
    """A --memory value: None or "unlimited" -> None (every stream one beat per cycle);
    a preset name (PRESETS); or a number of peak bytes per accelerator cycle (efficiency
    1, latency 0 unless given). Optional suffixes ",efficiency=E", ",latency=N" (cycles),
    ",fifo=B" (bytes) override the preset's figures."""
    if spec is None:
        return None
    parts = [s.strip() for s in str(spec).split(",")]
    head, options = parts[0], {}
    for item in parts[1:]:
        key, sep, value = item.partition("=")
        if not sep or key not in SPEC_KEYS:
            raise RepAccelError(f"--memory {spec!r}: {item!r} is not one of {', '.join(k + '=...' for k in SPEC_KEYS)}")
        try:
            options[key] = float(value) if key == "efficiency" else int(value)
        except ValueError:
            raise RepAccelError(f"--memory {spec!r}: {key}={value!r} is not a number") from None
    fifo = options.get("fifo", DEFAULT_FIFO_BYTES)
    if head == "unlimited":
        if options:
            raise RepAccelError(f"--memory {spec!r}: an unlimited memory takes no options")
        return None
    if head in PRESETS:
        return from_preset(head, clock_mhz, options.get("efficiency"), options.get("latency"), fifo)
    try:
        value = float(head)
    except ValueError:
        raise RepAccelError(f"--memory {spec!r}: give a preset ({', '.join(PRESETS)}), 'unlimited', or bytes per "
                            f"cycle at the accelerator clock, e.g. 4.5") from None
    return model(value, options.get("efficiency", 1.0), options.get("latency", 0), fifo, "custom",
                 f"{value:g} bytes per cycle")


def describe_presets() -> str:
    """One paragraph per preset: figures, source and assumptions (for --help and docs)."""
    return "\n".join(f"  {p.name}: {p.description}, {p.peak_mb_s:g} MB/s peak, efficiency {p.efficiency:g}, "
                     f"latency {p.latency_ns:g} ns. Source: {p.source}. Assumed: {p.assumptions}."
                     for p in PRESETS.values())


def minimum_bytes(shape) -> int:
    """The least external traffic of one layer (bytes): its input feature map read once,
    its output written once, every weight (C_out x C_in/groups x 9 bytes) and every output
    channel's requantization parameters (bias 4 + M0 4 + n 1 = 9 bytes) read once."""
    return (shape.cin * shape.height * shape.width + shape.cout * shape.out_height * shape.out_width
            + shape.cout * shape.cin_per_group * KERNEL_BYTES + shape.cout * REQUANT_BYTES)

