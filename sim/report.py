"""Per-layer and whole-network figures of a simulation (docs/architecture.md, "Simulator").

Everything except `cycles` follows from the layer shape, the tile plan and the generics
(`rep_accel.layout`); `cycles` is what the simulator measured (fast mode: the schedule
formula; cycle mode: counted by stepping, with stalls if the stimulus has any).

Definitions (per layer; tiles t of the layer, `cg_t` channel groups each):

* useful MACs: `LayerShape.macs` = H_out * W_out * C_out * C_in/groups * 9.
* MAC utilization: useful MACs / (generics.peak_macs_per_cycle * cycles) (9 * PI * PO with direct units).
* demands, in cycles: compute `sum_t cg_t * H_out * W_out` (array steps that complete
  an output pixel), input `sum_t cg_t * H * W` (act_in beats, one per cycle at most),
  parameters `sum_t (1 + PO + PO * cg_t)` (params beats, one per cycle at most).
* bottleneck: "parameters" if the parameter demand exceeds both others, else "input"
  if the input demand exceeds the compute demand (stride 2: the array waits for input
  beats three steps out of four), else "compute" (every input beat feeds an output).
* line-buffer bytes: PI * W * max_t cg_t * 2 (two rows per entry, one byte each);
  weight-buffer bytes: PI * PO * max_t cg_t * 9; both what the layer occupies of the
  `generics.line_buffer_bytes` / `weight_buffer_bytes` the hardware has.
* external memory bytes, as the stream payloads the host moves: activations read
  `sum_t cg_t * H * W * PI` (act_in beats, lanes past a tile's channels count: the
  host sends whole beats), weights read `sum_t (1 + PO + PO * cg_t) * 9 * PI` (params
  beats: header, requantization and weights, = the layer's share of params.bin),
  activations written `tiles * H_out * W_out * PO` (act_out beats).

* external memory (`rep_accel.memory`): bytes = the three payloads' sum; minimum bytes
  = `memory.minimum_bytes` (input read once, output written once, weights and
  requantization parameters once); unlimited cycles = `layout.layer_cycles` (every stream
  one beat per cycle); stall cycles = cycles - unlimited cycles; memory cycles =
  `MemoryModel.memory_cycles(bytes)` = latency + ceil(bytes / bytes per cycle), the
  least time the memory needs for the layer's traffic (0 without a memory model); bound =
  "memory" if memory cycles > unlimited cycles (the memory alone needs longer than the
  engine alone), else "compute".

Network totals: sums of the layers (buffer sizes: the maximum), utilization of the
sums, bottleneck the class with the most cycles, and frames/s = clock / total cycles
(layers back to back; the head runs on the host and is not counted); the same at
unlimited memory from the unlimited cycles.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rep_accel.generics import HardwareGenerics
from rep_accel.layout import as_scheduled
from rep_accel.memory import MemoryModel, minimum_bytes

BOTTLENECKS = ("compute", "input", "parameters")
#: What limits a layer under the memory model (see the module docstring).
BOUNDS = ("compute", "memory")


@dataclass
class LayerReport:
    """The figures of one layer for one picture. Units: cycles, MACs, bytes."""

    name: str
    cin: int
    cout: int
    groups: int
    stride: int
    height: int
    width: int
    out_height: int
    out_width: int
    tiles: int
    max_cg: int
    cycles: int
    macs: int
    utilization: float
    compute_demand: int
    input_demand: int
    param_demand: int
    bottleneck: str
    line_buffer_bytes: int
    weight_buffer_bytes: int
    act_read_bytes: int
    weight_read_bytes: int
    act_write_bytes: int
    bytes: int = 0
    min_bytes: int = 0
    unlimited_cycles: int = 0
    stall_cycles: int = 0
    memory_cycles: int = 0
    bound: str = "compute"
    tile_groups: int = 0
    #: How the layer runs: "3x3" windows, or "winograd" F(2x2,3x3) tiles (layout.uses_winograd).
    scan: str = "3x3"


@dataclass
class NetworkReport:
    """A whole network: its layers and totals for one picture, and frames/s at `clock_mhz`."""

    mode: str
    generics: dict
    clock_mhz: float
    layers: list[LayerReport]
    cycles: int = 0
    macs: int = 0
    utilization: float = 0.0
    bottleneck: str = ""
    line_buffer_bytes: int = 0
    weight_buffer_bytes: int = 0
    act_read_bytes: int = 0
    weight_read_bytes: int = 0
    act_write_bytes: int = 0
    frames_per_second: float = 0.0
    latency_ms: float = 0.0
    bytes: int = 0
    min_bytes: int = 0
    unlimited_cycles: int = 0
    stall_cycles: int = 0
    frames_per_second_unlimited: float = 0.0
    memory: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def layer_report(name: str, shape, generics: HardwareGenerics, cycles: int,
                 memory: MemoryModel | None = None) -> LayerReport:
    """The report of one layer that took `cycles` cycles on hardware `generics`, its
    streams served by `memory` (None: unlimited). shape: the layer's ScheduledLayer
    (layout.schedule_layer, planned once), or a LayerShape planned here."""
    g = generics
    scheduled = as_scheduled(shape, g, name)
    shape, tiles = scheduled.shape, scheduled.tiles
    ho, wo = shape.out_height, shape.out_width
    sum_cg = sum(t.cg for t in tiles)
    max_cg = max(t.cg for t in tiles)
    kernels = max(j.cg * j.count for j in scheduled.groups)   # of a unit's weight buffer, the largest group's
    param_beats = scheduled.param_beats
    # Array steps a layer needs at least: one per output pixel, channel group and tile, a
    # quarter of that with Winograd tiles (four outputs per step).
    compute, inputs = sum_cg * ho * wo // (4 if scheduled.winograd else 1), scheduled.input_beats
    if param_beats > max(compute, inputs):
        bottleneck = "parameters"
    elif inputs > compute:
        bottleneck = "input"
    else:
        bottleneck = "compute"
    macs = shape.macs
    act_read, weight_read, act_write = inputs * g.pi, param_beats * g.param_beat_bytes, scheduled.output_beats * g.po
    total = act_read + weight_read + act_write
    unlimited = scheduled.cycles
    mem_cycles = memory.memory_cycles(total) if memory is not None else 0
    return LayerReport(
        name=name, cin=shape.cin, cout=shape.cout, groups=shape.groups, stride=shape.stride,
        height=shape.height, width=shape.width, out_height=ho, out_width=wo, tiles=len(tiles), max_cg=max_cg,
        cycles=int(cycles), macs=macs, utilization=macs / (g.peak_macs_per_cycle * cycles),
        compute_demand=compute, input_demand=inputs, param_demand=param_beats, bottleneck=bottleneck,
        line_buffer_bytes=g.pi * shape.width * max_cg * g.unit_kind.line_rows,
        weight_buffer_bytes=g.pi * g.po * kernels * g.unit_kind.kernel_word_bytes,
        act_read_bytes=act_read, weight_read_bytes=weight_read, act_write_bytes=act_write, bytes=total,
        min_bytes=minimum_bytes(shape), unlimited_cycles=unlimited, stall_cycles=int(cycles) - unlimited,
        memory_cycles=mem_cycles, bound="memory" if mem_cycles > unlimited else "compute",
        tile_groups=len(scheduled.groups), scan="winograd" if scheduled.winograd else "3x3")


def network_report(layers: list[LayerReport], generics: HardwareGenerics, clock_mhz: float, mode: str,
                   memory: MemoryModel | None = None) -> NetworkReport:
    """Totals over `layers` (per picture) and frames/s at `clock_mhz` MHz, the layers'
    streams served by `memory` (None: unlimited)."""
    r = NetworkReport(mode=mode, generics=generics.to_dict(), clock_mhz=float(clock_mhz), layers=list(layers),
                      memory=memory.to_dict() if memory is not None else None)
    if not layers:
        return r
    r.cycles = sum(lr.cycles for lr in layers)
    r.macs = sum(lr.macs for lr in layers)
    g = generics
    r.utilization = r.macs / (g.peak_macs_per_cycle * r.cycles)
    by_class = {b: sum(lr.cycles for lr in layers if lr.bottleneck == b) for b in BOTTLENECKS}
    r.bottleneck = max(BOTTLENECKS, key=lambda b: by_class[b])
    r.line_buffer_bytes = max(lr.line_buffer_bytes for lr in layers)
    r.weight_buffer_bytes = max(lr.weight_buffer_bytes for lr in layers)
    for k in ("act_read_bytes", "weight_read_bytes", "act_write_bytes", "bytes", "min_bytes", "unlimited_cycles",
              "stall_cycles"):
        setattr(r, k, sum(getattr(lr, k) for lr in layers))
    r.frames_per_second = clock_mhz * 1e6 / r.cycles
    r.frames_per_second_unlimited = clock_mhz * 1e6 / r.unlimited_cycles
    r.latency_ms = r.cycles / (clock_mhz * 1e3)
    r.extra["cycles_by_bottleneck"] = by_class
    r.extra["cycles_by_bound"] = {b: sum(lr.cycles for lr in layers if lr.bound == b) for b in BOUNDS}
    return r


def _kib(b: int) -> str:
    return f"{b / 1024:.1f}"


def format_table(r: NetworkReport) -> str:
    """The report as a fixed-width text table (one row per layer, then the totals)."""
    head = (f"{'layer':<12} {'shape CxHxW -> CxHxW':<24} {'s':>1} {'g':>2} {'scan':>4} {'tiles':>5} {'grps':>4} {'cycles':>11} "
            f"{'MACs':>13} {'util':>6} {'bottleneck':>10} {'LB KiB':>7} {'WB KiB':>7} "
            f"{'act rd KiB':>10} {'wt rd KiB':>9} {'act wr KiB':>10} {'x min':>5} {'stalls':>9} {'bound':>7}")
    lines = [head, "-" * len(head)]
    for lr in r.layers:
        shp = f"{lr.cin}x{lr.height}x{lr.width}->{lr.cout}x{lr.out_height}x{lr.out_width}"
        lines.append(f"{lr.name[:12]:<12} {shp:<24} {lr.stride:>1} {lr.groups:>2} {lr.scan[:4]:>4} {lr.tiles:>5} "
                     f"{lr.tile_groups:>4} {lr.cycles:>11,} "
                     f"{lr.macs:>13,} {lr.utilization:>6.1%} {lr.bottleneck:>10} {_kib(lr.line_buffer_bytes):>7} "
                     f"{_kib(lr.weight_buffer_bytes):>7} {_kib(lr.act_read_bytes):>10} "
                     f"{_kib(lr.weight_read_bytes):>9} {_kib(lr.act_write_bytes):>10} {lr.bytes / lr.min_bytes:>5.2f} "
                     f"{lr.stall_cycles:>9,} {lr.bound:>7}")
    lines.append("-" * len(head))
    lines.append(f"{'total':<12} {'':<24} {'':>1} {'':>2} {'':>4} {sum(lr.tiles for lr in r.layers):>5} "
                 f"{sum(lr.tile_groups for lr in r.layers):>4} {r.cycles:>11,} "
                 f"{r.macs:>13,} {r.utilization:>6.1%} {r.bottleneck:>10} {_kib(r.line_buffer_bytes):>7} "
                 f"{_kib(r.weight_buffer_bytes):>7} {_kib(r.act_read_bytes):>10} {_kib(r.weight_read_bytes):>9} "
                 f"{_kib(r.act_write_bytes):>10} {r.bytes / r.min_bytes:>5.2f} {r.stall_cycles:>9,} {'':>7}")
    g = HardwareGenerics.from_dict(r.generics)
    lines.append(f"PI={g.pi} PO={g.po} {g.unit} units, tile groups of up to {g.max_group} tiles ({r.mode} mode): "
                 f"{r.cycles:,} cycles per frame = {r.latency_ms:.3f} ms "
                 f"at {r.clock_mhz:g} MHz, {r.frames_per_second:.2f} frames/s; buffers on chip: line "
                 f"{_kib(g.line_buffer_bytes)} KiB, weights {_kib(g.weight_buffer_bytes)} KiB")
    lines.append(f"external memory: {r.bytes / 1e6:.2f} MB per frame, {r.bytes / r.min_bytes:.2f}x the minimum "
                 f"{r.min_bytes / 1e6:.2f} MB (each feature map read and written once, each parameter read once)")
    if r.memory is None:
        lines.append("memory: unlimited (every stream one beat per cycle)")
    else:
        m = r.memory
        bound = r.extra.get("cycles_by_bound", {}).get("memory", 0)
        lines.append(f"memory {m['name']} ({m['description']}): {m['bytes_per_cycle']:.3f} bytes/cycle = "
                     f"{m['peak_bytes_per_cycle']:.3f} peak x efficiency {m['efficiency']:g} (assumed), latency "
                     f"{m['latency_cycles']} cycles per layer, FIFO {m['fifo_bytes']} B: {r.frames_per_second:.2f} "
                     f"frames/s against {r.frames_per_second_unlimited:.2f} with unlimited memory; "
                     f"{sum(lr.bound == 'memory' for lr in r.layers)} of {len(r.layers)} layers memory-bound "
                     f"({bound:,} cycles)")
    return "\n".join(lines)
