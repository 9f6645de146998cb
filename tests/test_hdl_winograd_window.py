"""The window generator of an array of `winograd` units (hdl/window.py, `unit="winograd"`)
against a numpy reference: for every step of a slot and channel group g, lane i's `v` is
V = B^T d B (rep_accel.winograd.transform_input_tile) of the slot's 4x4 tile d, rows
y-3..y, columns x-3..x of channel g*PI + i with (y, x) the slot's FULL A position, zero
outside the image (docs/architecture.md, "Winograd scan"); on a stride-2 layer (the direct
scan on this array, `winograd` low) V = d itself."""

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl_bench import pack_lanes, run_cycles, simulate, unpack_lanes
from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl import window
from rep_accel.hdl.layouts import step_layout
from rep_accel.hdl.window import WindowGenerator
from rep_accel.hdl.winograd import TILE_TAPS, V_BITS, V_WORD_BITS
from rep_accel.winograd import transform_input_tile

#: The step fields the test fills at random on bubbles and on steps without an item.
_RANDOM_FLAGS = ("row0", "row1", "row2", "col0", "col1", "col2", "y_odd", "x_odd", "row_pad", "col_pad",
                 "first", "emit", "tag", "compute", "zero", "result", "wbuf", "out_buf")


def _steps(h, w, winograd, cg, tiles, rng):
    """The scan's steps as the controller issues them: the slots of
    layout.scan_slots(h, w, 1, winograd=True) (winograd) or layout.scan_slots(h, w, 2); for
    each slot and channel group its items (FULL A, FULL B, STORE A, STORE B), then, at a slot
    with an output, steps up to `tiles` without an item; after a Winograd slot's channel
    groups 0..2 more steps without an item (the slot waits for its predecessor's output
    beats). Returns [(key, fields, pixel)]: key (y, x0, g) the slot's FULL A position and
    group, whose V the step must see; fields None for a step without an item (random but
    for valid, repeat, store, load); pixel (y, x) the item's act_in pixel, or None."""
    steps = []
    for y, x0, n_full, n_store, has_out in layout.scan_slots(h, w, 1 if winograd else 2, winograd).tolist():
        items = [("full", y, x) for x in range(x0, x0 + n_full)] + \
                [("store", y + 1, x) for x in range(x0, x0 + n_store)]
        for g in range(cg):
            for kt in range(max(tiles if has_out else 1, len(items))):
                if kt >= len(items):
                    steps.append(((y, x0, g), None, None))
                    continue
                kind, yy, xx = items[kt]
                store = int(kind == "store")
                fields = {"valid": 1, "g": g, "kt": 0, "repeat": store, "store": store, "load": int(kt == 0),
                          "compute": 0, "addr": xx * cg + g if xx < w else int(rng.integers(0, w * cg)),
                          "row0": int(yy == 0), "row1": int(yy == 1), "row2": int(yy == 2),
                          "col0": int(xx == 0), "col1": int(xx == 1), "col2": int(xx == 2),
                          "y_odd": yy % 2, "x_odd": xx % 2, "y_mod3": yy % 3, "x_mod3": xx % 3,
                          "row_pad": int(yy >= h), "col_pad": int(xx >= w), "zero": int(store and yy == h),
                          "first": 0, "emit": 0, "tag": 0}
                steps.append(((y, x0, g), fields, (yy, xx) if yy < h and xx < w else None))
        if winograd:
            steps += [((y, x0, cg - 1), None, None)] * int(rng.integers(0, 3))
    return steps


def _reference_v(img, y, x, g, i, pi, winograd):
    """img (C, H, W) int8 or uint8: the 16 entries of V (winograd) or of d, row-major, of the
    tile rows y-3..y, columns x-3..x of channel g*pi + i, zero outside the image."""
    c, h, w = img.shape
    d = np.zeros((4, 4), dtype=img.dtype)
    for r in range(4):
        for col in range(4):
            yy, xx = y - 3 + r, x - 3 + col
            if 0 <= yy < h and 0 <= xx < w:
                d[r, col] = img[g * pi + i, yy, xx]
    tile = transform_input_tile(d) if winograd else d
    return [int(e) for e in tile.reshape(-1)]


def _run(generics, layers, p_bubble=0.0, seed=0, tiles=1):
    """Scan every layer (image (C = cg*PI, H, W) int8 or uint8, winograd flag) in turn
    through one generator; return per layer {(y, x0, g): [every step's lanes of 16 V
    entries]}. With probability p_bubble a bubble (valid low, every other field and the
    pixels random) comes before a step."""
    pi = generics.pi
    dut = WindowGenerator(generics)
    rng = np.random.default_rng(seed)
    latency = window.latency(generics)

    def random_step(signed, winograd, valid=0):
        # A bubble: everything random. A step without an item: valid, no FULL (repeat), no
        # STORE, no load; everything else random.
        item = {f: int(rng.integers(0, 2)) for f in ("repeat", "store", "load")}
        if valid:
            item = {"repeat": 1, "store": 0, "load": 0}
        fields = {"valid": valid, "g": int(rng.integers(0, generics.max_cg)),
                  "kt": int(rng.integers(0, generics.max_group)), **item,
                  "addr": int(rng.integers(0, generics.line_depth)),
                  "y_mod3": int(rng.integers(0, 4)), "x_mod3": int(rng.integers(0, 4)),
                  **{f: int(rng.integers(0, 2)) for f in _RANDOM_FLAGS}}
        return [(dut.step, fields), (dut.pixels, int(rng.integers(0, 1 << 62)) & ((1 << (8 * pi)) - 1)),
                (dut.signed, signed), (dut.winograd, winograd)]

    plan, cycles = [], []
    for img, winograd in layers:
        c, h, w = img.shape
        cg = c // pi
        signed = int(img.dtype == np.int8)
        at = {}
        for key, fields, pixel in _steps(h, w, winograd, cg, tiles, rng):
            while p_bubble and rng.random() < p_bubble:
                cycles.append(random_step(signed, winograd))
            at.setdefault(key, []).append(len(cycles))
            if fields is None:   # a step without an item
                cycles.append(random_step(signed, winograd, valid=1))
                continue
            g = fields["g"]
            pixels = [int(img[g * pi + i, pixel[0], pixel[1]]) & 0xFF if pixel else int(rng.integers(0, 256))
                      for i in range(pi)]
            cycles.append([(dut.step, fields), (dut.pixels, pack_lanes(pixels, 8)), (dut.signed, signed),
                           (dut.winograd, winograd)])
        plan.append(at)
        # `signed` and `winograd` are layer constants: the layer's steps drain before the next's values.
        cycles += [random_step(signed, winograd) for _ in range(latency)]

    result = []

    async def tb(ctx):
        after = await run_cycles(ctx, cycles, [dut.v])
        for at in plan:
            got = {}
            for key, steps in at.items():
                got[key] = [[unpack_lanes(lw, TILE_TAPS, V_BITS, signed=True)
                             for lw in unpack_lanes(after[cycle + latency - 1][0], pi, V_WORD_BITS)]
                            for cycle in steps]
            result.append(got)

    simulate(dut, tb)
    return result


def _check(generics, layers, **kwargs):
    """Every step of every (slot, g) of every layer sees its slot's V (or d)."""
    pi = generics.pi
    results = _run(generics, layers, **kwargs)
    checked = 0
    for (img, winograd), got in zip(layers, results):
        for (y, x, g), steps in got.items():
            for i in range(pi):
                expect = _reference_v(img, y, x, g, i, pi, winograd)
                for k, lanes in enumerate(steps):
                    assert lanes[i] == expect, (
                        f"{img.dtype} {img.shape} winograd={winograd} at (y={y}, x0={x}, g={g}) step {k} lane {i}: "
                        f"got {lanes[i]}, expected {expect}")
                    checked += 1
    assert checked > 0


def _image(rng, cg, pi, h, w, dtype):
    """A random image with no zero pixel (a missing zero pad cannot go unnoticed) and the
    type's extreme values in it (-128 and 127, or 255)."""
    if dtype == np.int8:
        img = rng.integers(-128, 128, size=(cg * pi, h, w)).astype(np.int8)
        img[img == 0] = 1
        extremes = (-128, 127)
    else:
        img = rng.integers(1, 256, size=(cg * pi, h, w)).astype(np.uint8)
        extremes = (255, 255)
    flat = img.reshape(-1)
    flat[rng.integers(0, flat.size, size=2)] = extremes
    return img


def _generics(pi, cg, w, tiles=1):
    return HardwareGenerics(pi=pi, po=1, w_max=max(3, w), max_cg=cg * tiles, line_depth=w * cg,
                            max_group=tiles, unit="winograd")


CASES = [(h, w, pi, cg) for h in (1, 2, 3, 4, 5) for w in (1, 2, 3, 4) for pi, cg in ((1, 3), (2, 1))]


@pytest.mark.parametrize("h,w,pi,cg", CASES)
def test_winograd_and_stride2_scans_every_border_case(h, w, pi, cg):
    """Heights 1..5 and widths 1..4 (odd and even: rows and columns of padding past the
    image, a padding STORE of row H), one and three channel groups, one and two lanes: a
    Winograd layer on a uint8 image, a stride-2 layer (V = d) on an int8 image, then a
    Winograd layer on another int8 image, back to back in one generator on a line buffer
    of exactly W * cg entries: every step's V is its slot's, and nothing of a layer leaks
    into the next one's padding."""
    seed = 1000 * h + 100 * w + 10 * pi + cg
    rng = np.random.default_rng(seed)
    layers = [(_image(rng, cg, pi, h, w, np.uint8), 1), (_image(rng, cg, pi, h, w, np.int8), 0),
              (_image(rng, cg, pi, h, w, np.int8), 1)]
    _check(_generics(pi, cg, w), layers, seed=seed)


@pytest.mark.parametrize("h,w,pi,cg,tiles,p_bubble,seed", [(3, 4, 2, 3, 3, 0.3, 21), (4, 5, 1, 3, 1, 0.4, 22),
                                                           (5, 3, 2, 1, 3, 0.2, 23), (2, 2, 1, 1, 3, 0.5, 24)])
def test_held_over_repeat_steps_and_bubbles(h, w, pi, cg, tiles, p_bubble, seed):
    """Tile groups (K = 3: output slots take 3 steps per channel group, the later ones
    without an item) and random bubbles (valid low, every field and the pixels random)
    between steps: each step of a (slot, g) still sees the slot's V, and nothing a bubble
    or a step without an item carries reaches the line buffer or the column delay."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    layers = [(_image(rng, cg, pi, h, w, np.int8), 1), (_image(rng, cg, pi, h, w, np.uint8), 0),
              (_image(rng, cg, pi, h, w, np.uint8), 1)]
    _check(_generics(pi, cg, w, tiles), layers, p_bubble=p_bubble, seed=seed, tiles=tiles)


def test_line_buffer_banks():
    """A line buffer of more than one bank (window.LINE_BANK_DEPTH entries each): W * cg =
    35 * 32 = 1120 entries, so columns 32.. live in the second, partly used bank; random
    bubbles carry random addresses into either bank."""
    pi, h, w, cg, seed = 1, 3, 35, 32, 31
    assert w * cg > window.LINE_BANK_DEPTH
    rng = np.random.default_rng(seed)
    layers = [(_image(rng, cg, pi, h, w, np.uint8), 1), (_image(rng, cg, pi, h, w, np.int8), 1)]
    _check(_generics(pi, cg, w), layers, p_bubble=0.05, seed=seed)


@pytest.mark.slow
def test_column_delay_banks():
    """A column delay of more than one bank (window.COLUMN_BANK_DEPTH entries each): cg =
    COLUMN_BANK_DEPTH + 8 channel groups, so the last 8 live in the second, partly used
    bank, with a line buffer of several banks (3 * cg entries); a Winograd and a stride-2
    layer back to back, random bubbles."""
    cg = window.COLUMN_BANK_DEPTH + 8
    pi, h, w, seed = 1, 1, 3, 32
    assert w * cg > window.LINE_BANK_DEPTH
    rng = np.random.default_rng(seed)
    layers = [(_image(rng, cg, pi, h, w, np.int8), 1), (_image(rng, cg, pi, h, w, np.uint8), 0)]
    _check(_generics(pi, cg, w), layers, p_bubble=0.02, seed=seed)


def test_ports_and_latency():
    """The two kinds' ports and latencies: the direct kind keeps `windows` and LATENCY = 8."""
    direct = HardwareGenerics(pi=2, po=1, w_max=4, max_cg=2, line_depth=8)
    wino = HardwareGenerics(pi=2, po=1, w_max=4, max_cg=2, line_depth=8, unit="winograd")
    assert (window.LATENCY, window.WINOGRAD_LATENCY) == (8, 10)
    assert (window.latency(direct), window.latency(wino)) == (8, 10)
    duts = {"direct": WindowGenerator(direct), "winograd": WindowGenerator(wino)}
    members = {kind: {name: (member.flow.name, member.shape) for name, member in dut.signature.members.items()}
               for kind, dut in duts.items()}
    assert members["winograd"]["v"] == ("Out", V_WORD_BITS * 2) and members["winograd"]["winograd"] == ("In", 1)
    assert "windows" not in members["winograd"]
    assert members["direct"]["windows"] == ("Out", 81 * 2) and "v" not in members["direct"]
    for dut in duts.values():
        rtlil.convert(dut)


class _Linted(wiring.Component):
    """The generator inside a module as the top instantiates it: its `signed` port, a
    Verilog keyword, is then an internal name (the top's port is `input_signed`)."""

    def __init__(self, generics):
        self._g = generics
        super().__init__({"step": In(step_layout(generics)), "pixels": In(8 * generics.pi), "input_signed": In(1),
                          "winograd": In(1), "v": Out(V_WORD_BITS * generics.pi)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.window = inner = WindowGenerator(self._g)
        m.d.comb += [inner.step.eq(self.step), inner.pixels.eq(self.pixels), inner.signed.eq(self.input_signed),
                     inner.winograd.eq(self.winograd), self.v.eq(inner.v)]
        return m


@pytest.mark.parametrize("generics", [
    HardwareGenerics(pi=1, po=1, w_max=3, max_cg=1, line_depth=3, unit="winograd"),
    HardwareGenerics(pi=2, po=1, w_max=40, max_cg=window.COLUMN_BANK_DEPTH + 1, line_depth=1100, unit="winograd"),
], ids=["smallest", "banks"])
def test_verilog_lints_clean(generics, tmp_path):
    """Verilator -Wall with the repository's waivers only, as the top's Verilog (hdl/lint_waivers.vlt)."""
    import subprocess

    from amaranth.back import verilog

    from rep_accel.hdl.verilog import waivers_path
    from rep_accel.tools import verilator_command, verilator_env
    (tmp_path / "dut.v").write_text(verilog.convert(_Linted(generics), name="dut", emit_src=False))
    r = subprocess.run([*verilator_command(), "--lint-only", "-Wall", str(waivers_path()), "--top-module", "dut",
                        "dut.v"], cwd=tmp_path, env=verilator_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "%Warning" not in r.stderr, r.stderr[:3000]
