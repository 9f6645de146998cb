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


def tile_param_beats(tile: Tile, generics: HardwareGenerics) -> int:
    """Parameter-stream beats of one tile: header + PO requantization beats + PO * cg weight beats."""
    return HEADER_BEATS + generics.po + generics.po * tile.cg


def tile_steps(shape: LayerShape, tile: Tile) -> int:
    """Array steps of one tile: cg steps at every scanned position."""
    rows, cols = scan_extent(shape.height, shape.width, shape.stride)
    return tile.cg * rows * cols


def tile_cycles(shape: LayerShape, tile: Tile, generics: HardwareGenerics) -> int:
    """Cycles of one tile with a stream environment that never stalls:
    parameter beats + steps + the pipeline latency (drain of the last output beat)."""
    return tile_param_beats(tile, generics) + tile_steps(shape, tile) + generics.pipeline_latency


@dataclass(frozen=True)
class ScheduledLayer:
    """A layer as the hardware runs it, computed once by `schedule_layer` and passed along:
    its shape, the generics, and the schedule's choices (today the tile plan), checked to
    fit. Every consumer (the fit check, the cycle formula, the report, the simulator, the
    images) reads the plan from here instead of planning again.

    tiles: the tile plan (plan_tiles); cycles: layer_cycles, no stalls; param_beats:
    parameter-stream beats of the whole layer."""

    shape: LayerShape
    generics: HardwareGenerics
    tiles: tuple

    @property
    def cycles(self) -> int:
        return DESCRIPTOR_CYCLES + sum(tile_cycles(self.shape, t, self.generics) for t in self.tiles)

    @property
    def param_beats(self) -> int:
        return sum(tile_param_beats(t, self.generics) for t in self.tiles)


def schedule_layer(shape: LayerShape, generics: HardwareGenerics, name: str = "layer") -> ScheduledLayer:
    """Plan `shape` on `generics` once and check it fits (RepAccelError naming the layer
    and the limit otherwise)."""
    _check_shape(shape, generics, name)
    scheduled = ScheduledLayer(shape, generics, tuple(plan_tiles(shape, generics)))
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
    return DESCRIPTOR_CYCLES + sum(tile_cycles(shape, t, generics) for t in plan_tiles(shape, generics))


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
                  max_cg: int | None = None, line_depth: int | None = None) -> HardwareGenerics:
    """The one sizing rule of the hardware for a network: generics of a pi x po array whose
    buffers run every layer of `shapes` (LayerShapes; `names` for the messages).

    Needed per layer (docs/architecture.md, "Generics"): w_max >= its width, max_cg >= the
    channel groups of each tile, line_depth >= width x those groups. policy "smallest" takes
    exactly the largest need (w_max at least 3); "defaults" takes at least `base`'s values
    (default HardwareGenerics()). w_max / max_cg / line_depth given explicitly are taken as
    they are. Every layer is checked with check_fits (RepAccelError naming the layer)."""
    if policy not in SIZING_POLICIES:
        raise ValueError(f"sizing policy {policy!r}: one of {SIZING_POLICIES}")
    shapes = list(shapes)
    names = list(names) if names is not None else [f"layer {i}" for i in range(len(shapes))]
    probe = (base or HardwareGenerics()).replace(pi=pi, po=po)
    tiles = [(s, t) for s in shapes for t in plan_tiles(s, probe)]
    need = {"w_max": max([3] + [s.width for s in shapes]), "max_cg": max([1] + [t.cg for _, t in tiles]),
            "line_depth": max([1] + [s.width * t.cg for s, t in tiles])}
    floor = {k: (getattr(probe, k) if policy == "defaults" else 0) for k in need}
    given = {"w_max": w_max, "max_cg": max_cg, "line_depth": line_depth}
    g = probe.replace(**{k: given[k] if given[k] is not None else max(floor[k], need[k]) for k in need})
    for shape, name in zip(shapes, names):
        check_fits(shape, g, name)
    return g


# ----------------------------------------------------------------------------------
# Layer descriptor: one beat on the `desc` stream starts a layer (docs/architecture.md,
# "Interfaces"). Fields from bit 0 up: (name, bits).
# ----------------------------------------------------------------------------------

DESCRIPTOR_FIELDS = (("height", DIM_BITS), ("width", DIM_BITS), ("stride", 2), ("input_signed", 1),
                     ("groups", CHANNEL_BITS), ("cin", CHANNEL_BITS), ("cout", CHANNEL_BITS),
                     ("n_tiles", CHANNEL_BITS))


def pack_descriptor(shape: LayerShape, generics: HardwareGenerics) -> int:
    """The `desc` beat of a layer as an integer (field values from bit 0 up, DESCRIPTOR_FIELDS)."""
    values = {"height": shape.height, "width": shape.width, "stride": shape.stride,
              "input_signed": int(shape.input_signed), "groups": shape.groups, "cin": shape.cin,
              "cout": shape.cout, "n_tiles": len(plan_tiles(shape, generics))}
    word, pos = 0, 0
    for name, bits in DESCRIPTOR_FIELDS:
        if not 0 <= values[name] < 1 << bits:
            raise RepAccelError(f"descriptor field {name}={values[name]} does not fit its {bits} bits")
        word |= values[name] << pos
        pos += bits
    return word


# ----------------------------------------------------------------------------------
# Parameter stream: the packed image of one tile, exactly in the order the hardware
# loads it. One beat = PI slots of 9 bytes (generics.param_beat_bytes).
# ----------------------------------------------------------------------------------

#: The parameter-beat format as tables of fields (name, bytes, signed), from byte 0 of a
#: beat up, little-endian, as DESCRIPTOR_FIELDS is for the descriptor. The packer, the
#: unpacker, the cycle simulator's decoder and the RTL's layouts (hdl/layouts.py) are
#: all derived from them.
#: Beat 0 of a tile, its header.
HEADER_FIELDS = (("cg", 2, False), ("out_count", 2, False))
#: Beats 1..PO: the requantization of tile output lane o.
REQUANT_FIELDS = (("bias", 4, True), ("m0", 4, False), ("n", 1, False))
#: What a requantization beat of an unused lane (o >= out_count) carries.
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


def pack_tile_params(weight_q: np.ndarray, bias_q: np.ndarray, m0: np.ndarray, n: np.ndarray,
                     shape: LayerShape, tile: Tile, generics: HardwareGenerics) -> np.ndarray:
    """The parameter beats of one tile, uint8 (beats, 9 * PI).

    weight_q: int8 (C_out, C_in / groups, 3, 3); bias_q, m0, n: int (C_out,).
    Beat 0, header (HEADER_FIELDS): bytes 0-1 cg (uint16 LE), bytes 2-3 out_count (uint16 LE).
    Beats 1..PO, requantization of tile output lane o (REQUANT_FIELDS): bytes 0-3 bias
      (int32 LE), 4-7 m0 (uint32 LE), 8 n (uint8); lanes o >= out_count carry UNUSED_LANE.
    Then PO * cg weight beats, o-major then cg: slot i (bytes 9i..9i+8) holds the
      kernel of output lane o and tile input channel cg * PI + i, taps in order
      ky * 3 + kx; zero outside the output channel's group or past in_count.
    """
    pi, po = generics.pi, generics.po
    beat_bytes = generics.param_beat_bytes
    beats = np.zeros((tile_param_beats(tile, generics), beat_bytes), dtype=np.uint8)
    _put_fields(beats[0], HEADER_FIELDS, {"cg": tile.cg, "out_count": tile.out_count})
    for o in range(po):
        if o < tile.out_count:
            c = tile.out_base + o
            nc = int(n[c])
            if not N_MIN <= nc <= N_MAX:
                raise RepAccelError(f"output channel {c}: shift n={nc} outside [{N_MIN}, {N_MAX}]")
            values = {"bias": int(np.int32(bias_q[c])), "m0": int(np.uint32(m0[c])), "n": nc}
        else:
            values = UNUSED_LANE
        _put_fields(beats[HEADER_BEATS + o], REQUANT_FIELDS, values)
    w_bytes = np.asarray(weight_q, dtype=np.int8).reshape(shape.cout, shape.cin_per_group, WINDOW_TAPS).view(np.uint8)
    # Beats (o, cg) are consecutive, so the weight slots form an (out_count, cg * PI) grid
    # (weight_slots: all at once, a loop per kernel is slow for large models).
    first = HEADER_BEATS + po
    slots = beats[first:first + tile.out_count * tile.cg].reshape(tile.out_count, tile.cg * pi, KERNEL_BYTES)
    o_idx, k_idx, c, rel = weight_slots(shape, tile, generics)
    slots[o_idx, k_idx] = w_bytes[c, rel]
    return beats


def unpack_tile_params(beats: np.ndarray, shape: LayerShape, tile: Tile, generics: HardwareGenerics) -> dict:
    """The inverse of pack_tile_params for one tile's beats uint8 (beats, 9 * PI):
    {"cg", "out_count", "bias", "m0", "n" (int64 (PO,) per lane), "kernels": int8
    (out_count, C_in/groups, 3, 3) of the tile's output channels}. Bytes the format leaves
    zero are not read: packing the result again and comparing the bytes checks them."""
    po, pi = generics.po, generics.pi
    beats = np.asarray(beats, dtype=np.uint8)
    header = _get_fields(beats[0], HEADER_FIELDS)
    lanes = [_get_fields(beats[HEADER_BEATS + o], REQUANT_FIELDS) for o in range(po)]
    first = HEADER_BEATS + po
    slots = beats[first:first + tile.out_count * tile.cg].reshape(tile.out_count, tile.cg * pi, KERNEL_BYTES)
    o_idx, k_idx, c, rel = weight_slots(shape, tile, generics)
    kernels = np.zeros((tile.out_count, shape.cin_per_group, WINDOW_TAPS), dtype=np.int8)
    kernels[o_idx, rel] = slots[o_idx, k_idx].view(np.int8)
    return {**header, **{name: np.array([lane[name] for lane in lanes], dtype=np.int64) for name, _, _ in
                         REQUANT_FIELDS},
            "kernels": kernels.reshape(tile.out_count, shape.cin_per_group, 3, 3)}


def input_beats(x: np.ndarray, tile: Tile, generics: HardwareGenerics) -> np.ndarray:
    """The activation-input beats of one tile for one image, (H * W * cg, PI) of x's dtype.

    x: (C_in, H, W) int8 or uint8. Raster order over pixels, then channel group cg;
    lane i of beat (y, x, cg) is channel in_base + cg * PI + i (zero past in_count).
    """
    pi = generics.pi
    c, h, w = x.shape
    lanes = np.zeros((tile.cg * pi, h, w), dtype=x.dtype)
    lanes[:tile.in_count] = x[tile.in_base:tile.in_base + tile.in_count]
    # (cg, pi, h, w) -> (h, w, cg, pi)
    return lanes.reshape(tile.cg, pi, h, w).transpose(2, 3, 0, 1).reshape(h * w * tile.cg, pi).copy()


def output_from_beats(beats: np.ndarray, shape: LayerShape, tile: Tile, out: np.ndarray) -> None:
    """Scatter one tile's output beats, uint8 (H_out * W_out, PO) in raster order, into
    out: uint8 (C_out, H_out, W_out)."""
    ho, wo = shape.out_height, shape.out_width
    lanes = beats[:, :tile.out_count].reshape(ho, wo, tile.out_count).transpose(2, 0, 1)
    out[tile.out_base:tile.out_base + tile.out_count] = lanes
