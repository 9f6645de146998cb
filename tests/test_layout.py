"""The schedule and layout contract (rep_accel/layout.py) against independent brute-force definitions."""

import itertools

import numpy as np
import pytest

from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import (LayerShape, check_fits, group_param_beats, has_output, input_beats, layer_cycles,
                              output_from_beats, pack_group_params, plan_tiles, scan_extent, schedule_layer)


@pytest.mark.parametrize("h,w,stride", [(h, w, s) for h in (1, 2, 3, 4, 7, 8) for w in (1, 2, 5, 6) for s in (1, 2)])
def test_scan_covers_every_input_and_output_exactly_once(h, w, stride):
    rows, cols = scan_extent(h, w, stride)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    outputs = [((y - 1) // stride, (x - 1) // stride) for y in range(rows) for x in range(cols) if has_output(y, x, stride)]
    assert sorted(outputs) == [(oy, ox) for oy in range(ho) for ox in range(wo)]
    inputs = [(y, x) for y in range(rows) for x in range(cols) if y < h and x < w]
    assert len(inputs) == h * w
    # The scan stops as soon as the last output's window (bottom-right corner) and every input are seen.
    assert rows == max(h, (ho - 1) * stride + 2)
    assert cols == max(w, (wo - 1) * stride + 2)


def test_output_window_uses_only_seen_inputs():
    # The window of the output completed at (y, x) spans rows y-2..y, cols x-2..x: all inputs in it
    # arrived at or before position (y, x) in raster order, so a streaming engine can compute it there.
    for h, w, s in itertools.product((1, 3, 6), (1, 4, 5), (1, 2)):
        rows, cols = scan_extent(h, w, s)
        for y in range(rows):
            for x in range(cols):
                if has_output(y, x, s):
                    cy, cx = y - 1, x - 1
                    assert cy % s == 0 and cx % s == 0
                    for yy in range(cy - 1, cy + 2):
                        for xx in range(cx - 1, cx + 2):
                            if 0 <= yy < h and 0 <= xx < w:
                                assert (yy, xx) <= (y, x)


@pytest.mark.parametrize("cin,cout,groups,pi,po", [(16, 16, 1, 8, 8), (32, 32, 4, 8, 8), (12, 24, 2, 3, 5),
                                                    (8, 8, 8, 2, 3), (3, 16, 1, 8, 8), (64, 48, 4, 4, 5)])
def test_tiles_cover_outputs_once_and_read_exactly_their_groups(cin, cout, groups, pi, po):
    shape = LayerShape(cin, cout, groups, 1, 4, 4)
    g = HardwareGenerics(pi=pi, po=po)
    tiles = plan_tiles(shape, g)
    covered = [c for t in tiles for c in range(t.out_base, t.out_base + t.out_count)]
    assert covered == list(range(cout))
    for t in tiles:
        assert 1 <= t.out_count <= po and t.cg == -(-t.in_count // pi)
        groups_of_tile = {c // (cout // groups) for c in range(t.out_base, t.out_base + t.out_count)}
        needed = sorted(ch for grp in groups_of_tile for ch in range(grp * (cin // groups), (grp + 1) * (cin // groups)))
        assert needed == list(range(t.in_base, t.in_base + t.in_count))


def _decode_weights(beats, group, k, g):
    """Independent decoder of the documented beat layout: kernels of tile k of a group per
    (lane o, tile input channel): weight beats after the header and K * PO requantization
    beats, tile-major, then lane, then channel group."""
    first = 1 + group.count * g.po + k * g.po * group.cg
    kern = np.zeros((g.po, group.cg * g.pi, 9), np.int8)
    for o in range(g.po):
        for cg in range(group.cg):
            row = beats[first + o * group.cg + cg]
            for i in range(g.pi):
                kern[o, cg * g.pi + i] = row[9 * i:9 * i + 9].view(np.int8)
    return kern


@pytest.mark.parametrize("max_group", [1, 3])
@pytest.mark.parametrize("cin,cout,groups,pi,po", [(12, 24, 2, 3, 5), (32, 32, 4, 8, 8), (3, 7, 1, 2, 2)])
def test_param_beats_decode_to_the_dense_equivalent_weights(cin, cout, groups, pi, po, max_group):
    rng = np.random.default_rng(7)
    shape = LayerShape(cin, cout, groups, 1, 3, 3)
    g = HardwareGenerics(pi=pi, po=po, max_group=max_group)
    wq = rng.integers(-127, 128, (cout, cin // groups, 3, 3)).astype(np.int8)
    bias = rng.integers(-2**20, 2**20, cout).astype(np.int32)
    m0 = rng.integers(2**30, 2**31, cout).astype(np.int64)
    n = rng.integers(31, 63, cout).astype(np.int64)
    dense = np.zeros((cout, cin, 3, 3), np.int8)  # the grouped conv as a dense conv with zeros
    for c in range(cout):
        grp = c // (cout // groups)
        dense[c, grp * (cin // groups):(grp + 1) * (cin // groups)] = wq[c]
    groups_seen = 0
    for group in schedule_layer(shape, g).groups:
        beats = pack_group_params(wq, bias, m0, n, shape, group, g)
        assert beats.shape == (group_param_beats(group, g), 9 * pi) == (1 + group.count * po * (1 + group.cg), 9 * pi)
        header = beats[0, :6].view(np.uint16)
        assert list(header) == [group.cg, group.out_count, group.count]
        for k, t in enumerate(group.tiles):
            assert (t.in_base, t.in_count, t.cg) == (group.in_base, group.in_count, group.cg)
            for o in range(po):
                row = beats[1 + k * po + o]
                if o < t.out_count:
                    c = t.out_base + o
                    assert row[0:4].view(np.int32)[0] == bias[c]
                    assert row[4:8].view(np.uint32)[0] == m0[c] and row[8] == n[c]
                else:
                    assert not row[:8].any() and row[8] == 31
            kern = _decode_weights(beats, group, k, g)
            for o in range(po):
                for j in range(t.cg * pi):
                    expect = np.zeros(9, np.int8)
                    if o < t.out_count and j < t.in_count:
                        expect = dense[t.out_base + o, t.in_base + j].reshape(9)
                    assert np.array_equal(kern[o, j], expect)
        groups_seen += group.count
    assert groups_seen == len(plan_tiles(shape, g))


@pytest.mark.parametrize("cin,cout,groups,pi,po,max_group,max_cg", [
    (16, 40, 1, 4, 4, 4, 64),    # 10 tiles of one input: groups of 4, 4, 2
    (16, 40, 1, 4, 4, 8, 8),     # cg = 4: the weight buffer holds 2 tiles
    (24, 24, 4, 3, 2, 8, 64),    # grouped conv: tiles of different inputs never share a group
    (8, 8, 1, 8, 8, 4, 64),      # one tile
])
def test_tile_groups_share_inputs_and_fit_the_buffers(cin, cout, groups, pi, po, max_group, max_cg):
    g = HardwareGenerics(pi=pi, po=po, max_group=max_group, max_cg=max_cg)
    shape = LayerShape(cin, cout, groups, 1, 4, 4)
    sch = schedule_layer(shape, g)
    assert [t for j in sch.groups for t in j.tiles] == list(sch.tiles)
    assert [j.index for j in sch.groups] == list(range(len(sch.groups)))
    for j in sch.groups:
        assert 1 <= j.count <= max_group and j.count * j.cg <= max_cg
        assert len({(t.in_base, t.in_count) for t in j.tiles}) == 1
    # Fewest groups: a run of tiles with one input is cut only where the buffers are full.
    runs = {}
    for t in sch.tiles:
        runs[(t.in_base, t.in_count)] = runs.get((t.in_base, t.in_count), 0) + 1
    per = min(max_group, max_cg // sch.tiles[0].cg)
    assert len(sch.groups) == sum(-(-n // per) for n in runs.values())


def test_stride2_scan_reads_every_pixel_once_after_the_rows_it_replaces():
    """At stride 2 the input order (layout.input_order) is the slots' items: every pixel and
    channel group exactly once; a STORE of row y+1 at column c comes after the FULL item of
    row y at column c (which reads row y-1 from the entry the store overwrites) and before
    any item of row y+2."""
    from rep_accel.layout import input_order, scan_slots
    for h, w, cg in itertools.product((1, 2, 3, 4, 7, 8), (1, 2, 5, 6), (1, 3)):
        order = [tuple(v) for v in input_order(h, w, 2, cg).tolist()]
        assert sorted(order) == [(y, x, g) for y in range(h) for x in range(w) for g in range(cg)]
        at = {v: k for k, v in enumerate(order)}
        for y, x, g in order:
            if y >= 2 and y % 2 == 0:
                assert at[(y - 1, x, g)] < at[(y, x, g)]
                assert all(at[(y, x, g)] < at[(y + 1, xx, g)] for xx in range(w) if y + 1 < h)
        slots = scan_slots(h, w, 2)
        assert int(slots[:, 4].sum()) == ((h - 1) // 2 + 1) * ((w - 1) // 2 + 1)   # one slot per output


@pytest.mark.parametrize("max_group", [1, 2, 3])
def test_input_and_output_beats_round_trip(max_group):
    rng = np.random.default_rng(3)
    shape = LayerShape(10, 10, 1, 1, 3, 4)
    g = HardwareGenerics(pi=4, po=4, max_group=max_group)
    x = rng.integers(0, 256, (10, 3, 4)).astype(np.uint8)
    sch = schedule_layer(shape, g)
    for j in sch.groups:
        beats = input_beats(x, j, g)
        assert beats.shape == (3 * 4 * j.cg, 4)
        for (y, xx, cg) in [(0, 0, 0), (2, 3, j.cg - 1), (1, 2, 1)]:
            lanes = beats[(y * 4 + xx) * j.cg + cg]
            for i in range(4):
                ch = j.in_base + cg * 4 + i
                assert lanes[i] == (x[ch, y, xx] if ch < j.in_base + j.in_count else 0)
    out = np.zeros((10, 3, 4), np.uint8)
    expect = rng.integers(0, 256, (10, 3, 4)).astype(np.uint8)
    for j in sch.groups:
        # Documented order: output pixels in raster order, then the group's tiles in turn.
        beats = np.zeros((12, j.count, 4), np.uint8)
        for k, t in enumerate(j.tiles):
            beats[:, k, :t.out_count] = expect[t.out_base:t.out_base + t.out_count].reshape(t.out_count, 12).T
        output_from_beats(beats.reshape(12 * j.count, 4), shape, j, out)
    assert np.array_equal(out, expect)


def test_layer_cycles_formula_by_hand():
    # 1 tile, cg = 1, 3x3 input stride 1: 16 positions; params 1 + 8 + 8; latency from the generics.
    g = HardwareGenerics(pi=8, po=8, max_group=1)
    shape = LayerShape(8, 8, 1, 1, 3, 3)
    assert layer_cycles(shape, g) == 1 + (1 + 8 + 8) + 16 + g.pipeline_latency
    # stride 2 on 4x4: only the 16 input positions are scanned, two tiles of cg = 2.
    shape = LayerShape(16, 16, 1, 2, 4, 4)
    assert layer_cycles(shape, g) == 1 + 2 * ((1 + 8 + 16) + 2 * 16 + g.pipeline_latency)


def test_grouped_layer_cycles_formula_by_hand():
    # 3 tiles of PO = 2 (cout 6) in one group (max_group 3), cin 4 = cg 2 at PI = 2, 3x3 stride 1:
    # params 1 + 3*2 + 3*2*2 = 19; 16 positions of which 9 complete an output: 2 * (9 * 3 + 7) = 68 steps.
    g = HardwareGenerics(pi=2, po=2, max_group=3)
    shape = LayerShape(4, 6, 1, 1, 3, 3)
    assert layer_cycles(shape, g) == 1 + 19 + 68 + g.pipeline_latency
    # Stride 2, 4x4 input (even: no padding row/column), K = 3. Slots per channel group:
    # row 0: 4 slots of 1 step; row 1 (stores row 2): column 0 (FULL + STORE: 2 steps),
    # columns 1-2 (an output, 4 items: max(3, 4) = 4), column 3 (an output, 2 items: 3);
    # row 3 (row 4 does not exist): 1, columns 1-2 (2 items: 3), column 3 (3). 20 steps.
    shape2 = LayerShape(4, 6, 1, 2, 4, 4)
    assert layer_cycles(shape2, g) == 1 + 19 + 2 * (4 + 2 + 4 + 3 + 1 + 3 + 3) + g.pipeline_latency
    # The same layers tile by tile (max_group 1): 3 * (params 1 + 2 + 4, steps 2 * 16, drain).
    g1 = g.replace(max_group=1)
    assert layer_cycles(shape, g1) == 1 + 3 * (7 + 32 + g.pipeline_latency)


@pytest.mark.parametrize("kwargs,fragment", [({"pi": 0}, "pi=0"), ({"po": -1}, "po=-1"), ({"w_max": 2}, "w_max=2"),
                                             ({"max_cg": 0}, "max_cg=0")])
def test_generics_out_of_range_are_user_errors(kwargs, fragment):
    with pytest.raises(RepAccelError, match=fragment):
        HardwareGenerics(**kwargs)


def test_check_fits_names_layer_and_limit():
    g = HardwareGenerics(pi=8, po=8, w_max=16, max_cg=2, line_depth=20)
    with pytest.raises(RepAccelError, match="stage1.0.*W_MAX=16"):
        check_fits(LayerShape(8, 8, 1, 1, 4, 17), g, "stage1.0")
    with pytest.raises(RepAccelError, match="max_cg=2"):
        check_fits(LayerShape(24, 8, 1, 1, 4, 4), g, "l")
    with pytest.raises(RepAccelError, match="line_depth=20"):
        check_fits(LayerShape(16, 8, 1, 1, 4, 11), g, "l")
    with pytest.raises(RepAccelError, match="stride 3"):
        check_fits(LayerShape(8, 8, 1, 3, 4, 4), g, "l")
    check_fits(LayerShape(16, 8, 1, 1, 4, 10), g, "l")


def test_size_generics_policies():
    """The one sizing rule: 'smallest' takes the largest need, 'defaults' at least the
    defaults, explicit sizes as given, and a layer that cannot fit is refused by name."""
    import pytest

    from rep_accel.errors import RepAccelError
    from rep_accel.generics import HardwareGenerics
    from rep_accel.layout import LayerShape, size_generics

    shapes = [LayerShape(cin=3, cout=8, groups=1, stride=2, height=20, width=20, input_signed=True),
              LayerShape(cin=40, cout=8, groups=1, stride=1, height=10, width=10, input_signed=False)]
    small = size_generics(shapes, 4, 4, "smallest", max_group=1)
    assert (small.w_max, small.max_cg, small.line_depth) == (20, 10, 100)   # 40 / PI 4 = 10 groups, 10 x 10
    # Tile groups: the second layer's 2 tiles share its input, so its group holds 2 x 10 kernels.
    grouped = size_generics(shapes, 4, 4, "smallest")
    assert (grouped.w_max, grouped.max_cg, grouped.line_depth, grouped.max_group) == (20, 20, 100, 16)
    d = HardwareGenerics()
    dflt = size_generics(shapes, 4, 4, "defaults")
    assert (dflt.w_max, dflt.max_cg, dflt.line_depth) == (d.w_max, d.max_cg, d.line_depth)
    big = size_generics([LayerShape(cin=1024, cout=8, groups=1, stride=1, height=4, width=300,
                                    input_signed=False)], 8, 8, "defaults")
    assert (big.w_max, big.max_cg, big.line_depth) == (300, 128, 300 * 128)
    with pytest.raises(RepAccelError, match="conv7"):
        size_generics(shapes, 4, 4, "smallest", names=["stem", "conv7"], max_cg=4)


def test_parameter_beat_tables_round_trip_and_drive_the_rtl_layouts():
    """The parameter-beat format is one table: packing, unpacking, the cycle simulator's
    field positions and the RTL's layouts all come from HEADER_FIELDS / REQUANT_FIELDS."""
    import numpy as np

    from rep_accel.generics import HardwareGenerics
    from rep_accel.hdl.layouts import HeaderLayout, RequantParamLayout
    from rep_accel.layout import (HEADER_FIELDS, REQUANT_FIELDS, LayerShape, field_span, pack_group_params,
                                  schedule_layer, unpack_group_params)
    from rep_accel.sim import cycle

    g = HardwareGenerics(pi=3, po=4, max_group=2)
    shape = LayerShape(cin=10, cout=20, groups=2, stride=1, height=4, width=4, input_signed=False)
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (20, 5, 3, 3)).astype(np.int8)
    bias = rng.integers(-2**31 + 10**6, 2**31 - 10**6, 20)
    m0 = rng.integers(1 << 30, 1 << 31, 20)
    n = rng.integers(31, 63, 20)
    sch = schedule_layer(shape, g)
    assert any(j.count == 2 for j in sch.groups)
    for j in sch.groups:
        f = unpack_group_params(pack_group_params(w, bias, m0, n, shape, j, g), shape, j, g)
        assert (f["cg"], f["out_count"], f["tiles"]) == (j.cg, j.out_count, j.count)
        assert np.array_equal(f["kernels"], w[j.out_base:j.out_base + j.out_count])
        for k, t in enumerate(j.tiles):
            sl = slice(t.out_base, t.out_base + t.out_count)
            assert np.array_equal(f["bias"][k, :t.out_count], bias[sl])
            assert np.array_equal(f["m0"][k, :t.out_count], m0[sl])
            assert np.array_equal(f["n"][k, :t.out_count], n[sl]) and np.all(f["n"][k, t.out_count:] == 31)
    assert HeaderLayout.size == 8 * sum(b for _, b, _ in HEADER_FIELDS)
    assert RequantParamLayout.size == 8 * sum(b for _, b, _ in REQUANT_FIELDS)
    for name, nbytes, _ in REQUANT_FIELDS:
        assert RequantParamLayout.members[name].width == 8 * nbytes
    assert (cycle._M0_AT, cycle._N_AT) == (field_span(REQUANT_FIELDS, "m0")[0], field_span(REQUANT_FIELDS, "n")[0])
