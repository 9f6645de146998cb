"""The window generator (hdl/window.py) on every border case and stride, against a numpy
reference of the windows the schedule defines (docs/architecture.md: at scan position
(y, x) the window of lane i is rows y-2..y, columns x-2..x of channel g*PI + i, zero
outside the image)."""

import numpy as np
import pytest

from hdl_bench import pack_lanes, run_cycles, simulate, unpack_lanes
from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl import window
from rep_accel.hdl.window import WindowGenerator


def _steps(h, w, stride, cg, tiles=1):
    """The scan's steps as the controller issues them (layout.scan_slots): for each slot and
    channel group, its items (FULL A, FULL B, STORE A, STORE B) then, at a slot with an
    output, steps up to `tiles` without an item (`repeat`, their other fields are filled
    in by _run: the generator must ignore them). Returns [(key, fields, pixel)]: key
    (y, x, g, kt) with (y, x) the slot's FULL A position: every step of a (slot, g) must
    see its window (loaded at FULL A, held over the rest); pixel (y, x) the item's act_in
    pixel or None."""
    steps = []
    for y, x0, n_full, n_store, has_out in layout.scan_slots(h, w, stride).tolist():
        items = [("full", y, x) for x in range(x0, x0 + n_full)] + \
                [("store", y + 1, x) for x in range(x0, x0 + n_store)]
        for g in range(cg):
            for kt in range(max(tiles if has_out else 1, len(items))):
                if kt >= len(items):
                    steps.append(((y, x0, g, kt), None, None))
                    continue
                kind, yy, xx = items[kt]
                inside = yy < h and xx < w
                fields = {"valid": 1, "g": g, "kt": 0, "repeat": int(kind == "store"),
                          "store": int(kind == "store"), "load": int(kt == 0), "compute": 0,
                          "addr": xx * cg + g if xx < w else 0,
                          "row0": int(yy == 0), "row1": int(yy == 1), "col0": int(xx == 0), "col1": int(xx == 1),
                          "y_odd": yy % 2, "x_odd": xx % 2, "row_pad": int(yy == h), "col_pad": int(xx == w),
                          "first": 0, "emit": 0, "tag": 0}
                steps.append(((y, x0, g, kt), fields, (yy, xx) if inside else None))
    return steps


def _reference_window(img, y, x, g, i, pi):
    """img: (C, H, W); rows y-2..y, columns x-2..x of channel g*pi + i, zero outside."""
    c, h, w = img.shape
    out = []
    for yy in range(y - 2, y + 1):
        for xx in range(x - 2, x + 1):
            out.append(int(img[g * pi + i, yy, xx]) if 0 <= yy < h and 0 <= xx < w else 0)
    return out


def _run(generics, images, stride, p_bubble=0.0, seed=0, tiles=1):
    """Scan every image (C = cg*PI, H, W; int8 or uint8) in turn through one generator; return
    per image the windows of every step, [(y, x, g, kt)] -> lane -> 9 taps (9-bit signed).
    With probability p_bubble a bubble (valid low, every other field and the pixels random)
    comes before a step, as when the pipeline stalls. tiles > 1: the repeat steps of a tile
    group (valid, repeat, every other field and the pixels random) follow the kt = 0 step of
    each channel group at an output position."""
    pi = generics.pi
    dut = WindowGenerator(generics)
    rng = np.random.default_rng(seed)
    flags = ("row0", "row1", "col0", "col1", "y_odd", "x_odd", "row_pad", "col_pad", "first", "emit", "tag",
             "compute")

    def bubble(signed, valid=0, repeat=None):
        # A bubble: everything random. A step without an item: valid, no FULL (repeat), no
        # STORE, no load; everything else random.
        item = {"repeat": int(rng.integers(0, 2)), "store": int(rng.integers(0, 2)), "load": int(rng.integers(0, 2))}
        if valid:
            item = {"repeat": 1, "store": 0, "load": 0}
        return [(dut.step, {"valid": valid, "g": int(rng.integers(0, generics.max_cg)),
                            "kt": int(rng.integers(0, generics.max_group)), **item,
                            "addr": int(rng.integers(0, generics.line_depth)),
                            **{f: int(rng.integers(0, 2)) for f in flags}}),
                (dut.pixels, int(rng.integers(0, 1 << 62)) & ((1 << (8 * pi)) - 1)), (dut.signed, signed)]

    plan, cycles = [], []
    for img in images:
        c, h, w = img.shape
        cg = c // pi
        signed = int(img.dtype == np.int8)
        at = {}
        for key, fields, pixel in _steps(h, w, stride, cg, tiles):
            while p_bubble and rng.random() < p_bubble:
                cycles.append(bubble(signed))
            at[key] = len(cycles)
            if fields is None:   # a step without an item
                cycles.append(bubble(signed, valid=1))
                continue
            g = fields["g"]
            pixels = [int(img[g * pi + i, pixel[0], pixel[1]]) & 0xFF if pixel else int(rng.integers(0, 256))
                      for i in range(pi)]
            cycles.append([(dut.step, fields), (dut.pixels, pack_lanes(pixels, 8)), (dut.signed, signed)])
        plan.append((img, at))
        # `signed` is a layer constant: the image's steps drain before the next image's value.
        cycles += [bubble(signed) for _ in range(window.LATENCY)]

    result = []

    async def tb(ctx):
        after = await run_cycles(ctx, cycles, [dut.windows])
        for img, at in plan:
            got = {}
            for pos, cycle in at.items():
                word = after[cycle + window.LATENCY - 1][0]
                got[pos] = [unpack_lanes(lw, 9, 9, signed=True) for lw in unpack_lanes(word, pi, 81)]
            result.append(got)

    simulate(dut, tb)
    return result


def _check(images, results, stride, pi):
    for img, got in zip(images, results):
        for (y, x, g, kt), lanes in got.items():
            for i in range(pi):
                expect = _reference_window(img, y, x, g, i, pi)
                assert lanes[i] == expect, f"{img.shape} stride {stride} at (y={y}, x={x}, g={g}, kt={kt}) lane {i}: " \
                                           f"got {lanes[i]}, expected {expect}"


CASES = [(h, w, s, cg) for h in (1, 2, 3, 4) for w in (1, 2, 3, 4, 5) for s in (1, 2) for cg in (1, 3)]


@pytest.mark.parametrize("h,w,stride,cg", CASES)
def test_windows_every_border_case(h, w, stride, cg):
    """Widths 1..5 (odd and even), heights 1..4, stride 1 and 2, one and three channel groups.
    The line buffer is exactly W * cg entries (the padding column's address is one past it)
    and max_cg = cg. Two different images run back to back: nothing of the first leaks into
    the second's padding."""
    pi = 2
    g = HardwareGenerics(pi=pi, po=1, w_max=max(3, w), max_cg=cg, line_depth=w * cg)
    seed = 1000 * h + 100 * w + 10 * stride + cg
    rng = np.random.default_rng(seed)
    images = [rng.integers(1, 256, size=(cg * pi, h, w)).astype(np.uint8),
              rng.integers(-128, 128, size=(cg * pi, h, w)).astype(np.int8)]
    images[1][images[1] == 0] = 1   # nonzero pixels: a missing zero pad cannot go unnoticed
    _check(images, _run(g, images, stride), stride, pi)


@pytest.mark.parametrize("h,w,stride,cg,seed", [(3, 4, 1, 2, 5), (5, 3, 2, 1, 6), (2, 5, 2, 3, 7)])
def test_windows_with_bubbles(h, w, stride, cg, seed):
    """Random bubbles between steps (a stalled pipeline; valid low, everything else garbage)
    do not change any window; an int8 image (sign-extended taps) then a uint8 one."""
    print(f"seed={seed}")
    pi = 3
    g = HardwareGenerics(pi=pi, po=1, w_max=8, max_cg=4, line_depth=40)
    rng = np.random.default_rng(seed)
    images = [rng.integers(-128, 128, size=(cg * pi, h, w)).astype(np.int8),
              rng.integers(0, 256, size=(cg * pi, h, w)).astype(np.uint8)]
    _check(images, _run(g, images, stride, p_bubble=0.4, seed=seed), stride, pi)


def test_windows_across_line_buffer_banks():
    """A line buffer of more than one bank (window.LINE_BANK_DEPTH entries each): W * cg =
    70 * 16 = 1120 entries, so columns 64.. of the scan live in the second, partly used
    bank, and the padding column's address (1120) is past both. Random bubbles carry random
    addresses into either bank; no window changes."""
    assert 70 * 16 > window.LINE_BANK_DEPTH
    pi, h, w, cg, seed = 1, 3, 70, 16, 11
    _check_two_images(pi, h, w, cg, 0.1, seed)


@pytest.mark.parametrize("h,w,stride,cg,tiles,p_bubble,seed", [(3, 4, 1, 2, 3, 0.0, 12), (5, 3, 2, 1, 4, 0.3, 13),
                                                               (2, 5, 1, 3, 2, 0.4, 14), (4, 4, 2, 2, 5, 0.2, 15)])
def test_windows_held_over_repeat_steps(h, w, stride, cg, tiles, p_bubble, seed):
    """Tile groups (max_group > 1): after the kt = 0 step of each channel group at an output
    position come the group's repeat steps (valid, `repeat`, every other field and the
    pixels random), with random bubbles among them. Each repeat step sees the window of its
    kt = 0 step (the final register holds it), and nothing a repeat step carries reaches the
    line buffer or the column delay: every later window is still right."""
    print(f"seed={seed}")
    pi = 2
    g = HardwareGenerics(pi=pi, po=1, w_max=8, max_cg=cg * tiles, line_depth=40, max_group=tiles)
    rng = np.random.default_rng(seed)
    images = [rng.integers(1, 256, size=(cg * pi, h, w)).astype(np.uint8),
              rng.integers(-128, 128, size=(cg * pi, h, w)).astype(np.int8)]
    images[1][images[1] == 0] = 1
    results = _run(g, images, stride, p_bubble=p_bubble, seed=seed, tiles=tiles)
    assert sum(kt > 0 for got in results for (_, _, _, kt) in got) > 0
    _check(images, results, stride, pi)


def test_windows_across_column_delay_banks():
    """A column delay of more than one bank (window.COLUMN_BANK_DEPTH entries each):
    cg = COLUMN_BANK_DEPTH + 8 channel groups, so the last 8 live in the second, partly used
    bank, with a line buffer of several banks (3 * cg entries); int8 and uint8 images back
    to back, random bubbles. Every window equals the image's."""
    cg = window.COLUMN_BANK_DEPTH + 8
    pi, h, w, seed = 1, 1, 3, 14
    assert w * cg > window.LINE_BANK_DEPTH
    _check_two_images(pi, h, w, cg, 0.05, seed)


def _check_two_images(pi, h, w, cg, p_bubble, seed):
    """A uint8 and an int8 image (no zero pixels) back to back at stride 1 on buffers exactly
    their size (max_cg = cg, line_depth = w * cg), random bubbles: every window equals the image's."""
    print(f"seed={seed}")
    g = HardwareGenerics(pi=pi, po=1, w_max=w, max_cg=cg, line_depth=w * cg)
    rng = np.random.default_rng(seed)
    images = [rng.integers(1, 256, size=(cg * pi, h, w)).astype(np.uint8),
              rng.integers(-128, 128, size=(cg * pi, h, w)).astype(np.int8)]
    images[1][images[1] == 0] = 1
    _check(images, _run(g, images, 1, p_bubble=p_bubble, seed=seed), 1, pi)
