"""The schedule and the data layout of the accelerator, defined once.

docs/architecture.md describes them in prose; this module is their executable form,
used by the compiler (to write parameter images), the simulator (cycle counts, stream
order) and the RTL tests (stimulus and expected cycle counts).

Units: cycles, beats (one stream transfer), bytes, pixels, channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

from .errors import RepAccelError
from .generics import CHANNEL_BITS, DIM_BITS, KERNEL_BYTES, WINDOW_TAPS, HardwareGenerics
from .numerics import N_MAX, N_MIN

#: Parameter-stream beats before a tile's weights: one header beat + PO requantization beats.
HEADER_BEATS = 1
#: Cycles the layer descriptor takes (its transfer cycle).
DESCRIPTOR_CYCLES = 1


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class LayerShape:
    """The runtime shape of one fused conv layer, as the descriptor carries it.

    cin, cout: channels; groups: conv groups; stride: 1 or 2; height, width: input
    pixels; input_signed: True for the int8 network input, False for uint8 activations.
    """

    cin: int
    cout: int
    groups: int
    stride: int
    height: int
    width: int
    input_signed: bool = False

    @property
    def cin_per_group(self) -> int:
        return self.cin // self.groups

    @property
    def cout_per_group(self) -> int:
        return self.cout // self.groups

    @property
    def out_height(self) -> int:
        return (self.height - 1) // self.stride + 1

    @property
    def out_width(self) -> int:
        return (self.width - 1) // self.stride + 1

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates: H_out * W_out * C_out * (C_in / groups) * 9."""
        return self.out_height * self.out_width * self.cout * self.cin_per_group * WINDOW_TAPS


@dataclass(frozen=True)
class Tile:
    """One tile of up to PO output channels and the input channels it reads.

    Output channels [out_base, out_base + out_count); input channels
    [in_base, in_base + in_count), streamed as cg = ceil(in_count / PI) channel groups.
    """

    index: int
    out_base: int
    out_count: int
    in_base: int
    in_count: int
    cg: int


def plan_tiles(shape: LayerShape, generics: HardwareGenerics) -> list[Tile]:
    """Split a layer into tiles of PO output channels; each reads the union of its groups' inputs."""
    po, pi = generics.po, generics.pi
    tiles = []
    for index, out_base in enumerate(range(0, shape.cout, po)):
        out_count = min(po, shape.cout - out_base)
        first_group = out_base // shape.cout_per_group
        last_group = (out_base + out_count - 1) // shape.cout_per_group
        in_base = first_group * shape.cin_per_group
        in_count = (last_group - first_group + 1) * shape.cin_per_group
        tiles.append(Tile(index, out_base, out_count, in_base, in_count, cdiv(in_count, pi)))
    return tiles


@dataclass(frozen=True)
class TileGroup:
    """K consecutive tiles that read the same input channels and share one pass over the
    input (docs/architecture.md, "Tile groups"): the input is streamed once for the K
    tiles, each scan position that completes an output takes K * cg steps (the K tiles'
    kernels in turn for each channel group) and the K tiles' kernels sit in the weight
    buffer together (K * cg <= max_cg).

    index: group number in the layer; tiles: the K Tiles, in order; cg, in_base, in_count:
    their common input channels (Tile's fields)."""

    index: int
    tiles: tuple

    @property
    def count(self) -> int:
        """K, tiles in the group."""
        return len(self.tiles)

    @property
    def cg(self) -> int:
        return self.tiles[0].cg

    @property
    def in_base(self) -> int:
        return self.tiles[0].in_base

    @property
    def in_count(self) -> int:
        return self.tiles[0].in_count

    @property
    def out_base(self) -> int:
        return self.tiles[0].out_base

    @property
    def out_count(self) -> int:
        return sum(t.out_count for t in self.tiles)


def input_runs(tiles) -> list[list[Tile]]:
    """Consecutive tiles that read the same input channels (in_base, in_count), in order:
    the tiles a tile group may hold together."""
    runs: list[list[Tile]] = []
    for tile in tiles:
        if runs and (tile.in_base, tile.in_count) == (runs[-1][0].in_base, runs[-1][0].in_count):
            runs[-1].append(tile)
        else:
            runs.append([tile])
    return runs


def plan_groups(tiles, generics: HardwareGenerics) -> list[TileGroup]:
    """The compiler's choice of tile groups: each run of `input_runs` cut into groups of at
    most K = min(max_group, max_cg // cg) tiles, as few as that allows (a group's cost
    beyond its tiles' is one pass over the input and one pipeline drain), of sizes that
    differ by at most one. A tile whose cg exceeds max_cg is a group of one, for the fit
    check to name."""
    groups: list[TileGroup] = []
    for run in input_runs(tiles):
        k = max(1, min(generics.max_group, generics.max_cg // run[0].cg))
        # Sizes that differ by at most one: a stride-2 slot takes max(K, its
        # window-generator items) steps, so a small last group would idle.
        n_groups = cdiv(len(run), k)
        at = 0
        for j in range(n_groups):
            size = len(run) // n_groups + (j < len(run) % n_groups)
            groups.append(TileGroup(len(groups), tuple(run[at:at + size])))
            at += size
    return groups


@register_jitable  # also callable from Numba code (the cycle simulator); unchanged in Python
def scan_extent(height: int, width: int, stride: int) -> tuple[int, int]:
    """Rows and columns of window positions the engine scans for one tile.

    Positions (y, x) run in raster order over 0 <= y < rows, 0 <= x < cols. Position
    (y, x) takes input pixel (y, x) when y < H and x < W, and completes the output
    pixel centred on (y - 1, x - 1) when y >= 1, x >= 1 and both are multiples of the
    stride. Row H and column W (the bottom and right zero padding) are scanned only if
    an output needs them: always at stride 1, at stride 2 only for an odd H (or W).
    """
    rows = height + 1 if (stride == 1 or height % 2 == 1) else height
    cols = width + 1 if (stride == 1 or width % 2 == 1) else width
    return rows, cols


@register_jitable  # also callable from Numba code (the cycle simulator); unchanged in Python
def has_output(y: int, x: int, stride: int) -> bool:
    """Whether scan position (y, x) completes an output pixel (see `scan_extent`)."""
    return y >= 1 and x >= 1 and (y - 1) % stride == 0 and (x - 1) % stride == 0


def group_param_beats(group: TileGroup, generics: HardwareGenerics) -> int:
    """Parameter-stream beats of one tile group: header + K * PO requantization beats +
    K * PO * cg weight beats."""
    return HEADER_BEATS + group.count * generics.po * (1 + group.cg)


#: Columns of a scan-slot table (`scan_slots`): the scan row, the slot's first column, its
#: window-generator items (FULL items of row y at columns x0 .. x0+n_full-1, then STORE items
#: of row y+1 at columns x0 .. x0+n_store-1) and whether its first item completes an output.
SLOT_FIELDS = ("y", "x0", "n_full", "n_store", "has_out")


def uses_winograd(stride: int, generics: HardwareGenerics) -> bool:
    """Whether a layer of this stride runs as Winograd F(2x2,3x3) tiles: stride 1 on an array
    of `winograd` units (docs/architecture.md, "Winograd scan"); every other layer, and
    every layer of a direct array, runs as 3x3 windows (on a Winograd unit, 9 of its 16
    multipliers)."""
    return generics.unit == "winograd" and stride == 1


def winograd_extent(height: int, width: int) -> tuple[int, int]:
    """Rows and columns of scan positions of a Winograd layer: 2 * ceil(H / 2) + 1 by
    2 * ceil(W / 2) + 1. The 4x4 input tile of the output block with origin (oy, ox) (both
    even) is complete at position (oy + 2, ox + 2); positions past the image are padding."""
    return 2 * cdiv(height, 2) + 1, 2 * cdiv(width, 2) + 1


@register_jitable  # also callable from Numba code (the cycle simulator); unchanged in Python
def block_outputs(y: int, x0: int, height: int, width: int) -> int:
    """Output pixels of the Winograd block completed at position (y, x0): its 2x2 block with
    origin (y - 2, x0 - 2) less the pixels past the H x W output (an odd H or W)."""
    return min(2, height - (y - 2)) * min(2, width - (x0 - 2))


def scan_slots(height: int, width: int, stride: int, winograd: bool = False) -> np.ndarray:
    """The scan of one tile group as slots, int64 (slots, 5) with SLOT_FIELDS columns
    (docs/architecture.md, "The schedule of one tile group"); for each slot the engine takes,
    for each channel group g, max(K if has_out else 1, n_full + n_store) steps.

    Stride 1: one slot per scan position (y, x) in raster order, one FULL item each.
    Stride 2: row 0 as at stride 1; then each output row y = 1, 3, ... < rows carries the
    next row y+1 (which has no outputs) as STORE items: slot 0 is column 0, slot p >= 1
    is columns 2p-1 (an output position) and 2p (when 2p < cols); each slot stores row
    y+1 (when y+1 < H) at the same columns (those < W). So at stride 2 the input is read
    while the array computes, one item per step, and a slot of an output position takes
    K steps per channel group once K >= its items (at most 4).

    winograd (a stride-1 layer on Winograd units, `uses_winograd`): the rows and columns of
    `winograd_extent`; each even row y = 0, 2, ... carries row y+1 as STORE items, and slot
    p is columns 2p and 2p+1 (when 2p+1 < cols), storing row y+1 at the same columns (those
    < W) whenever a row y+2 follows (row y+1 = H is then padding: a STORE of zeros that
    takes no input). A slot at y >= 2, x0 >= 2 completes the 4x4 input tile ending at its
    first item, whose output block it computes (`block_outputs`)."""
    out = []
    if winograd:
        rows, cols = winograd_extent(height, width)
        for y in range(0, rows, 2):
            store = y + 2 < rows
            for x0 in range(0, cols, 2):
                n_full = 1 + (x0 + 1 < cols)
                n_store = sum(x < width for x in range(x0, x0 + n_full)) if store else 0
                out.append((y, x0, n_full, n_store, int(y >= 2 and x0 >= 2)))
        return np.array(out, dtype=np.int64).reshape(-1, 5)
    rows, cols = scan_extent(height, width, stride)
    if stride == 1:
        for y in range(rows):
            for x in range(cols):
                out.append((y, x, 1, 0, int(has_output(y, x, 1))))
        return np.array(out, dtype=np.int64).reshape(-1, 5)
    for x in range(cols):
        out.append((0, x, 1, 0, 0))
    for y in range(1, rows, 2):
        store = y + 1 < height
        out.append((y, 0, 1, int(store), 0))
        for x0 in range(1, cols, 2):
            n_full = 1 + (x0 + 1 < cols)
            n_store = sum(x < width for x in range(x0, x0 + n_full)) if store else 0
            out.append((y, x0, n_full, n_store, 1))
    return np.array(out, dtype=np.int64).reshape(-1, 5)


def slot_steps(slots: np.ndarray, tiles: int) -> int:
    """Steps per channel group of a scan-slot table for a group of `tiles` tiles:
    sum over slots of max(K if has_out else 1, n_full + n_store)."""
    compute = np.where(slots[:, 4] == 1, tiles, 1)
    return int(np.maximum(compute, slots[:, 2] + slots[:, 3]).sum())


def input_order(height: int, width: int, stride: int, cg: int = 1, winograd: bool = False) -> np.ndarray:
    """The act_in beats of a tile group's scan as (y, x, g), int64 (H * W * cg, 3), in the
    order the scan consumes them: slot by slot (`scan_slots`), for each channel group g,
    the slot's FULL items inside the image, then its STORE items inside the image. At
    stride 1 (direct) this is raster order of pixels, then g."""
    order = []
    for y, x0, n_full, n_store, _ in scan_slots(height, width, stride, winograd).tolist():
        pixels = [(y, x) for x in range(x0, x0 + n_full) if y < height and x < width]
        pixels += [(y + 1, x) for x in range(x0, x0 + n_store) if y + 1 < height]
        order += [(py, px, g) for g in range(cg) for py, px in pixels]
    return np.array(order, dtype=np.int64).reshape(-1, 3)


def winograd_steps(slots: np.ndarray, height: int, width: int, cg: int, tiles: int) -> int:
    """Array steps of one tile group of a Winograd layer (docs/architecture.md, "Winograd
    scan"): a slot takes cg * max(K if has_out else 1, items) steps, and at least as many
    steps as the previous slot has output beats to send (K * its block's output pixels,
    one beat per step: the next slot's steps carry them), then the last slot's beats."""
    steps = pending = 0
    for y, x0, n_full, n_store, has_out in slots.tolist():
        own = cg * max(tiles if has_out else 1, n_full + n_store)
        steps += max(own, pending)
        pending = tiles * block_outputs(y, x0, height, width) if has_out else 0
    return steps + pending


def group_steps(shape: LayerShape, group: TileGroup, winograd: bool = False) -> int:
    """Array steps of one tile group: cg x `slot_steps` of the layer's scan slots (stride 1:
    cg steps at each scanned position, K * cg at a position that completes an output); a
    Winograd layer: `winograd_steps`."""
    slots = scan_slots(shape.height, shape.width, shape.stride, winograd)
    if winograd:
        return winograd_steps(slots, shape.height, shape.width, group.cg, group.count)
    return group.cg * slot_steps(slots, group.count)


def group_cycles(shape: LayerShape, group: TileGroup, generics: HardwareGenerics) -> int:
    """Cycles of one tile group with a stream environment that never stalls:
    parameter beats + steps + the pipeline latency (drain of the last output beat)."""
    steps = group_steps(shape, group, uses_winograd(shape.stride, generics))
    return group_param_beats(group, generics) + steps + generics.pipeline_latency


@dataclass(frozen=True)
class ScheduledLayer:
    """A layer as the hardware runs it, computed once by `schedule_layer` and passed along:
    its shape, the generics, and the schedule's choices (the tile plan and the tile
    groups), checked to fit. Every consumer (the fit check, the cycle formula, the report,
    the simulator, the images) reads the plan from here instead of planning again.

    tiles: the tile plan (plan_tiles); groups: the tile groups (plan_groups); cycles:
    layer_cycles, no stalls; param_beats: parameter-stream beats of the whole layer."""

    shape: LayerShape
    generics: HardwareGenerics
    tiles: tuple
    groups: tuple

    @property
    def winograd(self) -> bool:
        """Whether the layer runs as Winograd tiles (`uses_winograd`)."""
        return uses_winograd(self.shape.stride, self.generics)

    @property
    def cycles(self) -> int:
        return DESCRIPTOR_CYCLES + sum(group_cycles(self.shape, j, self.generics) for j in self.groups)

    @property
    def param_beats(self) -> int:
        return sum(group_param_beats(j, self.generics) for j in self.groups)

    @property
    def input_beats(self) -> int:
        """act_in beats of the layer: one pass over the input per group, cg beats per pixel."""
        return sum(j.cg for j in self.groups) * self.shape.height * self.shape.width

    @property
    def output_beats(self) -> int:
        """act_out beats of the layer: one per tile and output pixel."""
        return len(self.tiles) * self.shape.out_height * self.shape.out_width


def schedule_layer(shape: LayerShape, generics: HardwareGenerics, name: str = "layer") -> ScheduledLayer:
    """Plan `shape` on `generics` once and check it fits (RepAccelError naming the layer
    and the limit otherwise)."""
    _check_shape(shape, generics, name)
    tiles = plan_tiles(shape, generics)
    scheduled = ScheduledLayer(shape, generics, tuple(tiles), tuple(plan_groups(tiles, generics)))
    _check_tiles(scheduled, name)
    return scheduled


def as_scheduled(shape, generics: HardwareGenerics, name: str = "layer") -> ScheduledLayer:
    """`shape` if it is already a ScheduledLayer, else schedule_layer(shape, generics, name)."""
    return shape if isinstance(shape, ScheduledLayer) else schedule_layer(shape, generics, name)


def layer_cycles(shape, generics: HardwareGenerics | None = None) -> int:
    """Cycles of one layer, descriptor transfer to last output transfer inclusive, no
    stalls. shape: a ScheduledLayer (generics then None), or a LayerShape planned here."""
    if isinstance(shape, ScheduledLayer):
        return shape.cycles
    return schedule_layer(shape, generics).cycles


def check_fits(shape: LayerShape, generics: HardwareGenerics, name: str = "layer") -> None:
    """Raise RepAccelError naming the layer and the limit if it cannot run on this hardware
    (schedule_layer, its plan discarded)."""
    schedule_layer(shape, generics, name)


def _check_shape(shape: LayerShape, generics: HardwareGenerics, name: str) -> None:
    g = generics
    if shape.stride not in (1, 2):
        raise RepAccelError(f"{name}: stride {shape.stride} is not supported (1 or 2)")
    if shape.groups < 1 or shape.cin % shape.groups or shape.cout % shape.groups:
        raise RepAccelError(f"{name}: groups={shape.groups} does not divide C_in={shape.cin} and C_out={shape.cout}")
    if shape.height < 1 or shape.width < 1:
        raise RepAccelError(f"{name}: input {shape.height}x{shape.width} is empty")
    if shape.width > g.w_max:
        raise RepAccelError(f"{name}: input row of {shape.width} pixels is wider than W_MAX={g.w_max}; rebuild with --w-max {shape.width} or more")
    if shape.height >= 1 << DIM_BITS:
        raise RepAccelError(f"{name}: height {shape.height} exceeds the descriptor's {DIM_BITS}-bit field")
    if shape.cin >= 1 << CHANNEL_BITS or shape.cout >= 1 << CHANNEL_BITS:
        raise RepAccelError(f"{name}: channel count exceeds the descriptor's {CHANNEL_BITS}-bit field")


def _check_tiles(scheduled: ScheduledLayer, name: str) -> None:
    shape, g = scheduled.shape, scheduled.generics
    if len(scheduled.groups) >= 1 << CHANNEL_BITS:
        raise RepAccelError(f"{name}: {len(scheduled.groups)} tile groups exceed the descriptor's {CHANNEL_BITS}-bit "
                            f"n_groups field; raise --max-group or --po")
    for tile in scheduled.tiles:
        if tile.cg > g.max_cg:
            raise RepAccelError(
                f"{name}: tile {tile.index} reads {tile.in_count} input channels = {tile.cg} groups of PI={g.pi}, "
                f"more than the weight buffer's max_cg={g.max_cg}; rebuild with a larger max_cg or PI")
        if shape.width * tile.cg > g.line_depth:
            raise RepAccelError(
                f"{name}: line buffer needs width {shape.width} x {tile.cg} channel groups = {shape.width * tile.cg} "
                f"entries per lane, more than line_depth={g.line_depth}; rebuild with a larger line_depth or PI")


#: Policies of size_generics: "smallest" buffers that run the layers (what `rep-accel
#: synth --model` and `rtl BUILD` build), or "defaults": at least HardwareGenerics'
#: defaults (or `base`'s), larger where a layer needs it (what `compile` lays out for).
SIZING_POLICIES = ("smallest", "defaults")


def size_generics(shapes, pi: int, po: int, policy: str = "smallest", *, names=None,
                  base: HardwareGenerics | None = None, w_max: int | None = None,
                  max_cg: int | None = None, line_depth: int | None = None,
                  max_group: int | None = None) -> HardwareGenerics:
    """The one sizing rule of the hardware for a network: generics of a pi x po array whose
    buffers run every layer of `shapes` (LayerShapes; `names` for the messages).

    Needed per layer (docs/architecture.md, "Generics"): w_max >= its width, max_cg >= the
    channel groups of each tile times the tiles of its group (K = max_group, or fewer where
    fewer tiles share their input: `group_need`), line_depth >= width x the channel groups. policy "smallest" takes
    exactly the largest need (w_max at least 3); "defaults" takes at least `base`'s values
    (default HardwareGenerics()). max_group (default `base`'s) is taken as given. w_max / max_cg / line_depth given explicitly are taken as
    they are. Every layer is checked with check_fits (RepAccelError naming the layer)."""
    if policy not in SIZING_POLICIES:
        raise ValueError(f"sizing policy {policy!r}: one of {SIZING_POLICIES}")
    shapes = list(shapes)
    names = list(names) if names is not None else [f"layer {i}" for i in range(len(shapes))]
    probe = (base or HardwareGenerics()).replace(pi=pi, po=po)
    if max_group is not None:
        probe = probe.replace(max_group=max_group)
    tiles = [(s, t) for s in shapes for t in plan_tiles(s, probe)]
    need = {"w_max": max([3] + [s.width for s in shapes]),
            "max_cg": max([1] + [group_need(plan_tiles(s, probe), probe.max_group) for s in shapes]),
            "line_depth": max([1] + [s.width * t.cg for s, t in tiles])}
    floor = {k: (getattr(probe, k) if policy == "defaults" else 0) for k in need}
    given = {"w_max": w_max, "max_cg": max_cg, "line_depth": line_depth}
    g = probe.replace(**{k: given[k] if given[k] is not None else max(floor[k], need[k]) for k in need})
    for shape, name in zip(shapes, names):
        check_fits(shape, g, name)
    return g


def group_need(tiles, max_group: int) -> int:
    """Kernels per unit (max_cg) that let every group of `tiles` hold max_group tiles (or
    all the tiles that share its input, if fewer): max over runs of cg x min(max_group, run)."""
    return max([0] + [run[0].cg * min(max_group, len(run)) for run in input_runs(tiles)])


# ----------------------------------------------------------------------------------
# Layer descriptor: one beat on the `desc` stream starts a layer (docs/architecture.md,
# "Interfaces"). Fields from bit 0 up: (name, bits).
# ----------------------------------------------------------------------------------

DESCRIPTOR_FIELDS = (("height", DIM_BITS), ("width", DIM_BITS), ("stride", 2), ("input_signed", 1),
                     ("groups", CHANNEL_BITS), ("cin", CHANNEL_BITS), ("cout", CHANNEL_BITS),
                     ("n_groups", CHANNEL_BITS))


def pack_descriptor(shape, generics: HardwareGenerics) -> int:
    """The `desc` beat of a layer (a LayerShape or ScheduledLayer) as an integer (field
    values from bit 0 up, DESCRIPTOR_FIELDS)."""
    scheduled = as_scheduled(shape, generics)
    shape = scheduled.shape
    values = {"height": shape.height, "width": shape.width, "stride": shape.stride,
              "input_signed": int(shape.input_signed), "groups": shape.groups, "cin": shape.cin,
              "cout": shape.cout, "n_groups": len(scheduled.groups)}
    word, pos = 0, 0
    for name, bits in DESCRIPTOR_FIELDS:
        if not 0 <= values[name] < 1 << bits:
            raise RepAccelError(f"descriptor field {name}={values[name]} does not fit its {bits} bits")
        word |= values[name] << pos
        pos += bits
    return word


# ----------------------------------------------------------------------------------
# Parameter stream: the packed image of one tile group, exactly in the order the
# hardware loads it. One beat = PI slots of 9 bytes (generics.param_beat_bytes).
# ----------------------------------------------------------------------------------

#: The parameter-beat format as tables of fields (name, bytes, signed), from byte 0 of a
#: beat up, little-endian, as DESCRIPTOR_FIELDS is for the descriptor. The packer, the
#: unpacker, the cycle simulator's decoder and the RTL's layouts (hdl/layouts.py) are
#: all derived from them.
#: Beat 0 of a tile group, its header: channel groups, output channels of the group, tiles K.
HEADER_FIELDS = (("cg", 2, False), ("out_count", 2, False), ("tiles", 2, False))
#: Beats 1..K*PO: the requantization of output lane o of tile k of the group (beat 1 + k*PO + o).
REQUANT_FIELDS = (("bias", 4, True), ("m0", 4, False), ("n", 1, False))
#: What a requantization beat of an unused lane (o >= the tile's out_count) carries.
UNUSED_LANE = {"bias": 0, "m0": 0, "n": N_MIN}


def field_span(fields, name: str) -> tuple[int, int]:
    """(first byte, bytes) of field `name` in a beat of `fields`."""
    at = 0
    for field_name, nbytes, _ in fields:
        if field_name == name:
            return at, nbytes
        at += nbytes
    raise KeyError(name)


def _put_fields(row: np.ndarray, fields, values: dict) -> None:
    at = 0
    for name, nbytes, signed in fields:
        row[at:at + nbytes] = np.frombuffer(int(values[name]).to_bytes(nbytes, "little", signed=signed), np.uint8)
        at += nbytes


def _get_fields(row: np.ndarray, fields) -> dict:
    out, at = {}, 0
    for name, nbytes, signed in fields:
        out[name] = int.from_bytes(bytes(row[at:at + nbytes]), "little", signed=signed)
        at += nbytes
    return out


def weight_slots(shape: LayerShape, tile: Tile, generics: HardwareGenerics):
    """Where a tile's weight beats put each kernel: (o, k, c, rel) int arrays, one entry
    per kernel slot in use: tile output lane o's beat for input group k // PI, slot k % PI,
    holds the kernel of output channel c = out_base + o and in-group input channel rel.
    Slots outside the output channel's group or past in_count hold zeros."""
    pi = generics.pi
    cin_g, cout_g = shape.cin_per_group, shape.cout_per_group
    c = tile.out_base + np.arange(tile.out_count)
    k = np.arange(tile.cg * pi)
    rel = tile.in_base + k[None, :] - ((c // cout_g) * cin_g)[:, None]
    valid = (k[None, :] < tile.in_count) & (rel >= 0) & (rel < cin_g)
    o_idx, k_idx = np.nonzero(valid)
    return o_idx, k_idx, c[o_idx], rel[o_idx, k_idx]


def _weight_beats_of(beats: np.ndarray, group: TileGroup, k: int, generics: HardwareGenerics) -> np.ndarray:
    """The weight beats of tile k of a group inside the group's beats, as the (PO, cg * PI,
    9) grid of kernel slots they form (beats (o, g) of a tile are consecutive)."""
    po, pi, cg = generics.po, generics.pi, group.cg
    first = HEADER_BEATS + group.count * po + k * po * cg
    return beats[first:first + po * cg].reshape(po, cg * pi, KERNEL_BYTES)


def pack_group_params(weight_q: np.ndarray, bias_q: np.ndarray, m0: np.ndarray, n: np.ndarray,
                      shape: LayerShape, group: TileGroup, generics: HardwareGenerics) -> np.ndarray:
    """The parameter beats of one tile group of K tiles, uint8 (beats, 9 * PI).

    weight_q: int8 (C_out, C_in / groups, 3, 3); bias_q, m0, n: int (C_out,).
    Beat 0, header (HEADER_FIELDS): bytes 0-1 cg, 2-3 out_count (of the group), 4-5 tiles
      K (uint16 LE each).
    Beats 1 .. K*PO, requantization of output lane o of tile k, beat 1 + k*PO + o
      (REQUANT_FIELDS): bytes 0-3 bias (int32 LE), 4-7 m0 (uint32 LE), 8 n (uint8); lanes
      o >= the tile's out_count carry UNUSED_LANE.
    Then K * PO * cg weight beats, tile-major, then lane o, then channel group g: slot i
      (bytes 9i..9i+8) holds the kernel of output lane o of tile k and input channel
      in_base + g * PI + i, taps in order ky * 3 + kx; zero outside the output channel's
      group or past in_count. The units keep it at weight address k * cg + g.
    """
    po = generics.po
    beats = np.zeros((group_param_beats(group, generics), generics.param_beat_bytes), dtype=np.uint8)
    _put_fields(beats[0], HEADER_FIELDS, {"cg": group.cg, "out_count": group.out_count, "tiles": group.count})
    w_bytes = np.asarray(weight_q, dtype=np.int8).reshape(shape.cout, shape.cin_per_group, WINDOW_TAPS).view(np.uint8)
    for k, tile in enumerate(group.tiles):
        for o in range(po):
            if o < tile.out_count:
                c = tile.out_base + o
                nc = int(n[c])
                if not N_MIN <= nc <= N_MAX:
                    raise RepAccelError(f"output channel {c}: shift n={nc} outside [{N_MIN}, {N_MAX}]")
                values = {"bias": int(np.int32(bias_q[c])), "m0": int(np.uint32(m0[c])), "n": nc}
            else:
                values = UNUSED_LANE
            _put_fields(beats[HEADER_BEATS + k * po + o], REQUANT_FIELDS, values)
        # weight_slots places all of a tile's kernels at once (a loop per kernel is slow).
        o_idx, k_idx, c, rel = weight_slots(shape, tile, generics)
        _weight_beats_of(beats, group, k, generics)[o_idx, k_idx] = w_bytes[c, rel]
    return beats


def unpack_group_params(beats: np.ndarray, shape: LayerShape, group: TileGroup, generics: HardwareGenerics) -> dict:
    """The inverse of pack_group_params for one group's beats uint8 (beats, 9 * PI):
    {"cg", "out_count", "tiles" (the header), "bias", "m0", "n" (int64 (K, PO) per tile and
    lane), "kernels": int8 (out_count, C_in/groups, 3, 3) of the group's output channels}.
    Bytes the format leaves zero are not read: packing the result again and comparing the
    bytes checks them."""
    po = generics.po
    beats = np.asarray(beats, dtype=np.uint8)
    header = _get_fields(beats[0], HEADER_FIELDS)
    lanes = [[_get_fields(beats[HEADER_BEATS + k * po + o], REQUANT_FIELDS) for o in range(po)]
             for k in range(group.count)]
    kernels = np.zeros((group.out_count, shape.cin_per_group, WINDOW_TAPS), dtype=np.int8)
    for k, tile in enumerate(group.tiles):
        o_idx, k_idx, c, rel = weight_slots(shape, tile, generics)
        kernels[c - group.out_base, rel] = _weight_beats_of(beats, group, k, generics)[o_idx, k_idx].view(np.int8)
    return {**header, **{name: np.array([[lane[name] for lane in row] for row in lanes], dtype=np.int64)
                         for name, _, _ in REQUANT_FIELDS},
            "kernels": kernels.reshape(group.out_count, shape.cin_per_group, 3, 3)}


def input_beats(x: np.ndarray, group, generics: HardwareGenerics, stride: int = 1) -> np.ndarray:
    """The activation-input beats of one tile group (or tile: the same input channels) for
    one image, (H * W * cg, PI) of x's dtype: the group's one pass over the input.

    x: (C_in, H, W) int8 or uint8. Beats (y, x, g) in the scan's order (`input_order`:
    raster order of pixels, then g, at stride 1 on direct units); lane i of beat (y, x, g)
    is channel in_base + g * PI + i (zero past in_count).
    """
    pi = generics.pi
    c, h, w = x.shape
    lanes = np.zeros((group.cg * pi, h, w), dtype=x.dtype)
    lanes[:group.in_count] = x[group.in_base:group.in_base + group.in_count]
    # (cg, pi, h, w) -> (h, w, cg, pi), then the beats in scan order
    beats = lanes.reshape(group.cg, pi, h, w).transpose(2, 3, 0, 1)
    winograd = uses_winograd(stride, generics)
    if stride != 1 or winograd:
        order = input_order(h, w, stride, group.cg, winograd)
        return beats[order[:, 0], order[:, 1], order[:, 2]].copy()
    return beats.reshape(h * w * group.cg, pi).copy()


def output_order(height: int, width: int, tiles: int, winograd: bool = False) -> np.ndarray:
    """The act_out beats of a tile group of `tiles` tiles as (k, y, x), int64 (H_out * W_out
    * K, 3), in transfer order. Direct: raster order of output pixels, then the K tiles in
    turn (height, width: the output's). Winograd (height, width: the output's, = the
    input's): block by block in raster order of blocks, then the K tiles, then the block's
    pixels inside the output in raster order."""
    if not winograd:
        k, y, x = np.meshgrid(np.arange(tiles), np.arange(height), np.arange(width), indexing="ij")
        return np.stack([k, y, x], axis=-1).transpose(1, 2, 0, 3).reshape(-1, 3)
    order = [(k, oy + dy, ox + dx)
             for oy in range(0, height, 2) for ox in range(0, width, 2) for k in range(tiles)
             for dy in range(2) for dx in range(2) if oy + dy < height and ox + dx < width]
    return np.array(order, dtype=np.int64).reshape(-1, 3)


def output_from_beats(beats: np.ndarray, shape: LayerShape, group: TileGroup, out: np.ndarray,
                      winograd: bool = False) -> None:
    """Scatter one tile group's output beats, uint8 (H_out * W_out * K, PO) in transfer
    order (`output_order`), into out: uint8 (C_out, H_out, W_out)."""
    if not winograd:   # raster pixels, then tiles: a reshape (cycle mode's output of every layer)
        beats = beats.reshape(shape.out_height, shape.out_width, group.count, -1)
        for k, tile in enumerate(group.tiles):
            out[tile.out_base:tile.out_base + tile.out_count] = beats[:, :, k, :tile.out_count].transpose(2, 0, 1)
        return
    order = output_order(shape.out_height, shape.out_width, group.count, winograd)
    for k, tile in enumerate(group.tiles):
        mine = order[:, 0] == k
        out[tile.out_base:tile.out_base + tile.out_count, order[mine, 1], order[mine, 2]] = \
            beats[mine, :tile.out_count].T
