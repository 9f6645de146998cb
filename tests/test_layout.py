"""The schedule and layout contract (rep_accel/layout.py) against independent brute-force definitions."""

import itertools

import numpy as np
import pytest

from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import (LayerShape, check_fits, has_output, input_beats, layer_cycles, output_from_beats,
                              pack_tile_params, plan_tiles, scan_extent, tile_param_beats)


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


def _decode_weights(beats, tile, g):
    """Independent decoder of the documented beat layout: kernels per (lane o, tile input channel)."""
    first = 1 + g.po
    k = np.zeros((g.po, tile.cg * g.pi, 9), np.int8)
    for o in range(g.po):
        for cg in range(tile.cg):
            row = beats[first + o * tile.cg + cg]
            for i in range(g.pi):
                k[o, cg * g.pi + i] = row[9 * i:9 * i + 9].view(np.int8)
    return k


@pytest.mark.parametrize("cin,cout,groups,pi,po", [(12, 24, 2, 3, 5), (32, 32, 4, 8, 8), (3, 7, 1, 2, 2)])
def test_param_beats_decode_to_the_dense_equivalent_weights(cin, cout, groups, pi, po):
    rng = np.random.default_rng(7)
    shape = LayerShape(cin, cout, groups, 1, 3, 3)
    g = HardwareGenerics(pi=pi, po=po)
    wq = rng.integers(-127, 128, (cout, cin // groups, 3, 3)).astype(np.int8)
    bias = rng.integers(-2**20, 2**20, cout).astype(np.int32)
    m0 = rng.integers(2**30, 2**31, cout).astype(np.int64)
    n = rng.integers(31, 63, cout).astype(np.int64)
    dense = np.zeros((cout, cin, 3, 3), np.int8)  # the grouped conv as a dense conv with zeros
    for c in range(cout):
        grp = c // (cout // groups)
        dense[c, grp * (cin // groups):(grp + 1) * (cin // groups)] = wq[c]
    for t in plan_tiles(shape, g):
        beats = pack_tile_params(wq, bias, m0, n, shape, t, g)
        assert beats.shape == (tile_param_beats(t, g), 9 * pi)
        assert int(beats[0, :2].view(np.uint16)[0]) == t.cg and int(beats[0, 2:4].view(np.uint16)[0]) == t.out_count
        for o in range(po):
            row = beats[1 + o]
            if o < t.out_count:
                c = t.out_base + o
                assert row[0:4].view(np.int32)[0] == bias[c]
                assert row[4:8].view(np.uint32)[0] == m0[c] and row[8] == n[c]
            else:
                assert not row[:8].any() and row[8] == 31
        k = _decode_weights(beats, t, g)
        for o in range(po):
            for j in range(t.cg * pi):
                expect = np.zeros(9, np.int8)
                if o < t.out_count and j < t.in_count:
                    expect = dense[t.out_base + o, t.in_base + j].reshape(9)
                assert np.array_equal(k[o, j], expect)


def test_input_and_output_beats_round_trip():
    rng = np.random.default_rng(3)
    shape = LayerShape(10, 6, 1, 1, 3, 4)
    g = HardwareGenerics(pi=4, po=4)
    x = rng.integers(0, 256, (10, 3, 4)).astype(np.uint8)
    for t in plan_tiles(shape, g):
        beats = input_beats(x, t, g)
        assert beats.shape == (3 * 4 * t.cg, 4)
        for (y, xx, cg) in [(0, 0, 0), (2, 3, t.cg - 1), (1, 2, 1)]:
            lanes = beats[(y * 4 + xx) * t.cg + cg]
            for i in range(4):
                ch = t.in_base + cg * 4 + i
                assert lanes[i] == (x[ch, y, xx] if ch < t.in_base + t.in_count else 0)
    out = np.zeros((6, 3, 4), np.uint8)
    expect = rng.integers(0, 256, (6, 3, 4)).astype(np.uint8)
    for t in plan_tiles(shape, g):
        beats = np.zeros((12, 4), np.uint8)
        beats[:, :t.out_count] = expect[t.out_base:t.out_base + t.out_count].reshape(t.out_count, 12).T
        output_from_beats(beats, shape, t, out)
    assert np.array_equal(out, expect)


def test_layer_cycles_formula_by_hand():
    # 1 tile, cg = 1, 3x3 input stride 1: 16 positions; params 1 + 8 + 8; latency from the generics.
    g = HardwareGenerics(pi=8, po=8)
    shape = LayerShape(8, 8, 1, 1, 3, 3)
    assert layer_cycles(shape, g) == 1 + (1 + 8 + 8) + 16 + g.pipeline_latency
    # stride 2 on 4x4: only the 16 input positions are scanned, two tiles of cg = 2.
    shape = LayerShape(16, 16, 1, 2, 4, 4)
    assert layer_cycles(shape, g) == 1 + 2 * ((1 + 8 + 16) + 2 * 16 + g.pipeline_latency)


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
    small = size_generics(shapes, 4, 4, "smallest")
    assert (small.w_max, small.max_cg, small.line_depth) == (20, 10, 100)   # 40 / PI 4 = 10 groups, 10 x 10
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
    from rep_accel.layout import (HEADER_FIELDS, REQUANT_FIELDS, LayerShape, field_span, pack_tile_params,
                                  plan_tiles, unpack_tile_params)
    from rep_accel.sim import cycle

    g = HardwareGenerics(pi=3, po=4)
    shape = LayerShape(cin=10, cout=10, groups=2, stride=1, height=4, width=4, input_signed=False)
    rng = np.random.default_rng(5)
    w = rng.integers(-127, 128, (10, 5, 3, 3)).astype(np.int8)
    bias = rng.integers(-2**31 + 10**6, 2**31 - 10**6, 10)
    m0 = rng.integers(1 << 30, 1 << 31, 10)
    n = rng.integers(31, 63, 10)
    for t in plan_tiles(shape, g):
        f = unpack_tile_params(pack_tile_params(w, bias, m0, n, shape, t, g), shape, t, g)
        sl = slice(t.out_base, t.out_base + t.out_count)
        assert (f["cg"], f["out_count"]) == (t.cg, t.out_count)
        assert np.array_equal(f["kernels"], w[sl])
        assert np.array_equal(f["bias"][:t.out_count], bias[sl]) and np.array_equal(f["m0"][:t.out_count], m0[sl])
        assert np.array_equal(f["n"][:t.out_count], n[sl]) and np.all(f["n"][t.out_count:] == 31)
    assert HeaderLayout.size == 8 * sum(b for _, b, _ in HEADER_FIELDS)
    assert RequantParamLayout.size == 8 * sum(b for _, b, _ in REQUANT_FIELDS)
    for name, nbytes, _ in REQUANT_FIELDS:
        assert RequantParamLayout.members[name].width == 8 * nbytes
    assert (cycle._M0_AT, cycle._N_AT) == (field_span(REQUANT_FIELDS, "m0")[0], field_span(REQUANT_FIELDS, "n")[0])
