"""Amaranth data layouts of the accelerator's interfaces and internal control words.

The bit positions here are the HDL view of the contract in docs/architecture.md
("Interfaces", "Parameter beats"); their executable Python form is rep_accel/layout.py
(`DESCRIPTOR_FIELDS`, `HEADER_FIELDS`, `REQUANT_FIELDS`, `pack_group_params`). The
descriptor and parameter-beat layouts are built from those tables, so the two sides
cannot drift apart.
"""

from __future__ import annotations

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from rep_accel.generics import CHANNEL_BITS, DIM_BITS, KERNEL_BYTES, WINDOW_TAPS, HardwareGenerics
from rep_accel.layout import DESCRIPTOR_FIELDS, HEADER_FIELDS, REQUANT_FIELDS

#: Width of the partial sums, the column accumulators and v = acc + B (bits, two's
#: complement). The numerics contract keeps every v in 32 bits; partial sums wrap
#: modulo 2^32, which leaves the final v exact.
ACC_BITS = 32
#: Bits of the `cycles` status output.
CYCLES_BITS = 32

#: The layer descriptor (one `desc` beat), fields from bit 0 up.
DescriptorLayout = data.StructLayout({name: unsigned(bits) for name, bits in DESCRIPTOR_FIELDS})

#: One 3x3 kernel: 9 int8 taps, tap ky*3 + kx in bits [8t+7 : 8t] (a parameter-beat slot).
KERNEL_BITS = 8 * KERNEL_BYTES
#: Weights are int8 (docs/numerics.md).
WEIGHT_BITS = 8
#: One activation inside the array: 9-bit two's complement, the int8 network input
#: sign-extended or a uint8 activation zero-extended (the descriptor's `input_signed`).
ACT_BITS = 9
#: One 3x3 window in the array: 9 activations, tap ky*3 + kx in bits [9t+8 : 9t].
WINDOW_BITS = ACT_BITS * WINDOW_TAPS

# Lanes, windows and kernels are flat bit vectors, not data.ArrayLayout: Amaranth names
# every element of an ArrayLayout signal `x[i]` beside the vector `x`, and Yosys's ABC9
# flow (synth_ecp5) then fails on the name clash (YosysHQ/yosys#4349, #5274). Struct
# fields (`x.field`) do not clash, so structures stay data.StructLayout.


def lane(value, index: int, width: int):
    """Bits [width*index + width-1 : width*index] of a flat vector of lanes."""
    return value[width * index:width * (index + 1)]


def _beat_layout(fields) -> data.StructLayout:
    """A parameter beat's leading fields (layout.HEADER_FIELDS / REQUANT_FIELDS) as a layout."""
    return data.StructLayout({name: (signed if is_signed else unsigned)(8 * nbytes)
                              for name, nbytes, is_signed in fields})


#: Header beat of a tile group (its first bytes): channel groups, output channels, tiles K.
HeaderLayout = _beat_layout(HEADER_FIELDS)

#: Requantization beat of output lane o of tile k (slot 0 of the beat, 9 bytes).
RequantParamLayout = _beat_layout(REQUANT_FIELDS)


def act_in_shape(generics: HardwareGenerics):
    """`act_in` payload: PI lanes of 8 bits, lane i in bits [8i+7 : 8i]."""
    return unsigned(8 * generics.pi)


def act_out_shape(generics: HardwareGenerics):
    """`act_out` payload: PO lanes of uint8, lane o in bits [8o+7 : 8o]."""
    return unsigned(8 * generics.po)


def params_shape(generics: HardwareGenerics):
    """`params` payload: PI slots of 9 bytes (byte k of the beat in bits [8k+7 : 8k])."""
    return unsigned(KERNEL_BITS * generics.pi)


def memory_depth(entries: int) -> int:
    """Depth of a memory that must hold `entries` words: at least 2, because a one-entry
    memory has a zero-width address, which Verilog cannot declare (`[-1:0]`)."""
    return max(2, entries)


def cg_shape(generics: HardwareGenerics):
    """Shape of a channel-group index 0 .. max_cg - 1 (at least one bit)."""
    return unsigned(max(1, (generics.max_cg - 1).bit_length()))


def tile_shape(generics: HardwareGenerics):
    """Shape of a tile index within a tile group, 0 .. max_group - 1 (at least one bit)."""
    return unsigned(max(1, (generics.max_group - 1).bit_length()))


#: Most window-generator items of a scan slot (layout.scan_slots: two FULL, two STORE).
SLOT_ITEMS = 4


def step_index_shape(generics: HardwareGenerics):
    """Shape of a step's index within its slot and channel group, 0 .. max(max_group,
    SLOT_ITEMS) - 1: the tile it computes, or the item it runs."""
    return unsigned(max(1, (max(generics.max_group, SLOT_ITEMS) - 1).bit_length()))


def step_layout(generics: HardwareGenerics) -> data.StructLayout:
    """One scan step as the controller issues it (docs/architecture.md, "The schedule").

    The scan is a list of slots (layout.scan_slots); for each slot and channel group g
    the controller issues max(K_here, items) steps (K_here = the group's K tiles at a slot
    with an output pixel, else 1). Step kt runs the slot's item kt through the window
    generator, if it has one (a FULL item: window generator, input if inside the image;
    a STORE item: one pixel of the next row into the line buffer), and computes tile kt
    if kt < K_here (`compute`).

    valid:   a step is issued this cycle (0: a bubble: loading parameters, draining, stalled).
    g:       channel group 0 .. cg-1 of the step.
    kt:      tile of the group whose kernels and accumulator the step uses, 0 .. K-1
             (the step's index in its slot, truncated; meaningful when `compute`).
    compute: the array computes tile kt (kt < K_here); else the step only runs its item.
    repeat:  no FULL item: no line-buffer read, no column-delay work, no window.
    store:   a STORE item: the pixel (row y_odd's parity) into line-buffer entry addr.
    load:    the FULL item of the slot's output position: the window register loads
             its window (and holds it for the slot's other steps).
    waddr:   weight-buffer address of the step's kernels, kt * cg + g (< max_cg).
    addr:    line-buffer entry x * cg + g of the item (meaningful when it has one).
    The position flags below are the item's (a STORE item's y_odd is row y+1's parity).
    row0:    y == 0: the two rows above are the top zero padding.
    row1:    y == 1: row y-2 is the top zero padding.
    col0:    x == 0: the two columns to the left are the left zero padding.
    col1:    x == 1: column x-2 is the left zero padding.
    y_odd:   y mod 2 (the line-buffer byte of row y).
    x_odd:   x mod 2 (the column-delay bank of column x).
    row_pad: y == H: the bottom zero-padding row (no input consumed; in a Winograd scan
             y >= H: rows H and H+1 of an odd H).
    col_pad: x == W: the right zero-padding column (no input consumed; Winograd scan x >= W).
    first:   g == 0: tile kt's column accumulators start from its bias.
    emit:    a step of the last channel group at a position that completes an output
             pixel: tile kt's output beat.
    tag:     the tile group's last emitting step (its output beat ends the group).

    On an array of `winograd` units (generics.unit) a step also carries (docs/architecture.md,
    "Winograd scan"; at stride 2 the same array runs the direct scan above):
    y_mod3:  the item's row mod 3 (a STORE item's: row y+1): the line-buffer byte of that row.
    x_mod3:  the item's column mod 3: the column-delay bank of that column.
    row2:    the item's row is 2: row y-3 is the top zero padding (row0/row1 as above, for
             rows y-1..y-3).
    col2:    the item's column is 2: column x-3 is the left zero padding (col0/col1 likewise;
             the flags are the item's, FULL B's too).
    zero:    a STORE item of row H (odd H, Winograd scan): zeros into the line buffer, no input.
    result:  the step computes the last channel group of tile kt at a slot with an output
             block: the block goes into the columns' result buffer `wbuf` (Winograd scan).
    wbuf:    the result buffer (0/1) of the current slot's blocks.
    out_tile, out_pixel, out_buf: the output beat this step sends (`emit`): tile, pixel
             (dy*2 + dx of the 2x2 block) and result buffer of the previous slot's block
             (Winograd scan); at stride 2 out_tile is kt (the step's own result).
    """
    fields = {
        "valid": 1,
        "g": cg_shape(generics),
        "kt": tile_shape(generics),
        "compute": 1,
        "repeat": 1,
        "store": 1,
        "load": 1,
        "waddr": cg_shape(generics),
        "addr": unsigned(max(1, (generics.line_depth - 1).bit_length())),
        "row0": 1,
        "row1": 1,
        "col0": 1,
        "col1": 1,
        "y_odd": 1,
        "x_odd": 1,
        "row_pad": 1,
        "col_pad": 1,
        "first": 1,
        "emit": 1,
        "tag": 1,
    }
    if generics.unit == "winograd":
        fields.update({"y_mod3": 2, "x_mod3": 2, "row2": 1, "col2": 1, "zero": 1, "result": 1, "wbuf": 1,
                       "out_tile": tile_shape(generics), "out_pixel": 2, "out_buf": 1})
    return data.StructLayout(fields)


def column_control_layout(generics: HardwareGenerics) -> data.StructLayout:
    """Control that travels with a step's partial sums to the column accumulators: the
    step's valid, first and emit flags and its tile kt (which accumulator and which
    requantization parameters of the column)."""
    fields = {"valid": 1, "first": 1, "emit": 1, "kt": tile_shape(generics)}
    if generics.unit == "winograd":
        # Winograd columns (hdl/winograd_columns.py): the step's result write and the beat it sends.
        fields.update({"result": 1, "wbuf": 1, "out_tile": tile_shape(generics), "out_pixel": 2, "out_buf": 1})
    return data.StructLayout(fields)


assert DescriptorLayout["height"].shape.width == DIM_BITS
assert DescriptorLayout["n_groups"].shape.width == CHANNEL_BITS
assert RequantParamLayout.size == 8 * KERNEL_BYTES
assert KERNEL_BITS == WEIGHT_BITS * WINDOW_TAPS  # a kernel's int8 taps fill one parameter slot
