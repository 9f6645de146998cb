"""The Winograd F(2x2,3x3) datapath (hdl/winograd.py) in the Amaranth simulator, bit for bit
against rep_accel.winograd: each transform and the unit alone on random and extreme operands,
and a column of units between the transforms against golden.conv_accumulate."""

import gc
import warnings

import numpy as np
import pytest
from amaranth.back import rtlil
from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl_bench import pack_lanes, run_cycles, run_pipeline, simulate, unpack_lanes
from rep_accel import golden
from rep_accel import winograd as W
from rep_accel.hdl import winograd as H
from rep_accel.hdl.unit import WEIGHT_BANK_DEPTH
from rep_accel.hdl.winograd import (WideLutMultiplier, WinogradInputTransform, WinogradOutputTransform,
                                    WinogradUnit, WinogradWeightTransform)

SUM_MOD = 1 << H.SUM_BITS


def _wrap(v: int, bits: int = H.SUM_BITS) -> int:
    """v modulo 2^bits as a signed bits-wide number."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _tile_word(tile) -> int:
    """A 4x4 tile (uint8 or int8 numpy) as the 9-bit lanes of the `tile` port (tap r*4 + c)."""
    return pack_lanes([int(a) for a in np.asarray(tile).reshape(-1)], 9)


def _kernel_word(kernel) -> int:
    """A 3x3 int8 kernel as the direct unit's kernel word (tap ky*3 + kx, 8 bits each)."""
    return pack_lanes([int(w) for w in np.asarray(kernel).reshape(-1)], 8)


def _extreme_tiles(dtype) -> np.ndarray:
    """Tiles that reach every bound of V: for each entry of V and each end of its range, the
    tile with each pixel at the end its coefficient's sign asks for; plus constant tiles."""
    lo, hi = (0, 255) if dtype == np.uint8 else (-128, 127)
    coeff = np.kron(W.B_T, W.B_T)   # V entry e = coeff[e] . d (row-major)
    tiles = [np.where(coeff[e] > 0, hi, lo) for e in range(16)] + [np.where(coeff[e] > 0, lo, hi) for e in range(16)]
    tiles += [np.full(16, v) for v in (lo, hi, 0, 1)]
    return np.array(tiles).astype(dtype).reshape(-1, 4, 4)


def _extreme_kernels() -> np.ndarray:
    """All 512 kernels of taps -128 / 127 (they reach every bound of U), then all 0, all -1."""
    taps = np.array([[(-128 if (k >> t) & 1 else 127) for t in range(9)] for k in range(512)])
    return np.concatenate([taps, np.zeros((1, 9)), -np.ones((1, 9))]).astype(np.int8).reshape(-1, 3, 3)


# ----------------------------------------------------------------------------------
# Input transform
# ----------------------------------------------------------------------------------

def _input_transform(tiles) -> list[list[int]]:
    dut = WinogradInputTransform()
    got = run_pipeline(dut, [[(dut.tile, _tile_word(t))] for t in tiles], dut.v, H.INPUT_TRANSFORM_LATENCY)
    return [unpack_lanes(v, 16, H.V_BITS, signed=True) for v in got]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8])
def test_input_transform_random_and_extreme(dtype):
    """V = B^T d B == winograd.transform_input_tile on 200 random tiles and every extreme tile,
    back to back (a V read a cycle early or late would be another tile's)."""
    seed = 11 if dtype == np.uint8 else 12
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    tiles = np.concatenate([_extreme_tiles(dtype),
                            rng.integers(info.min, info.max + 1, size=(200, 4, 4)).astype(dtype)])
    tiles = tiles[rng.permutation(len(tiles))]
    want = W.transform_input_tile(tiles).reshape(len(tiles), 16).tolist()
    got = _input_transform(tiles)
    bad = [k for k in range(len(tiles)) if got[k] != want[k]]
    assert not bad, f"{len(bad)} tiles differ, first {tiles[bad[0]].tolist()}: got {got[bad[0]]}, want {want[bad[0]]}"
    # The extreme tiles reach both ends of every entry's range for this type.
    ranges = W.input_transform_ranges((int(info.min), int(info.max)) if dtype == np.int8 else W.UINT8_RANGE)
    arr = np.array(got)
    assert [(int(arr[:, e].min()), int(arr[:, e].max())) for e in range(16)] == [(r.lo, r.hi) for r in ranges]


def test_input_transform_mixed_types_fit():
    """The hardware's ranges are over 9-bit lanes of either type, mixed in a tile ([-128, 255]):
    every one fits V_BITS = check_widths' width, and contains both types' ranges."""
    hw = H.input_transform_ranges()
    assert max(r.bits for r in hw) == H.V_BITS == W.check_widths(1).transformed_input.bits == 11
    for act in (W.UINT8_RANGE, W.INT8_RANGE):
        for h, r in zip(hw, W.input_transform_ranges(act)):
            assert h.lo <= r.lo and r.hi <= h.hi
    # A mixed tile at the hull's corners: exact too (the ninth bit's two uses in one tile).
    coeff = np.kron(W.B_T, W.B_T)
    tiles = [np.where(coeff[e] > 0, 255, -128) for e in range(16)] + [np.where(coeff[e] > 0, -128, 255)
                                                                      for e in range(16)]
    dut = WinogradInputTransform()
    words = run_pipeline(dut, [[(dut.tile, pack_lanes(t, 9))] for t in tiles], dut.v, H.INPUT_TRANSFORM_LATENCY)
    got = [unpack_lanes(v, 16, H.V_BITS, signed=True) for v in words]
    want = [(W.B_T @ np.reshape(t, (4, 4)) @ W.B_T.T).reshape(-1).tolist() for t in tiles]
    assert got == want
    assert [(min(g[e] for g in got), max(g[e] for g in got)) for e in range(16)] == [(r.lo, r.hi) for r in hw]


# ----------------------------------------------------------------------------------
# Weight transform
# ----------------------------------------------------------------------------------

def test_weight_transform_random_and_extreme():
    """U = G' g G'^T == winograd.transform_weights on all 512 kernels of -128/127 taps (every
    bound of U reached) and 200 random int8 kernels, back to back."""
    seed = 21
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    kernels = np.concatenate([_extreme_kernels(), rng.integers(-128, 128, size=(200, 3, 3)).astype(np.int8)])
    kernels = kernels[rng.permutation(len(kernels))]
    dut = WinogradWeightTransform()
    words = run_pipeline(dut, [[(dut.kernel, _kernel_word(k))] for k in kernels], dut.u, H.WEIGHT_TRANSFORM_LATENCY)
    got = np.array([unpack_lanes(u, 16, H.U_BITS, signed=True) for u in words])
    want = W.transform_weights(kernels).reshape(len(kernels), 16)
    bad = np.nonzero((got != want).any(axis=1))[0]
    assert not len(bad), f"{len(bad)} kernels differ, first {kernels[bad[0]].tolist()}"
    ranges = W.weight_transform_ranges()
    assert [(int(got[:, e].min()), int(got[:, e].max())) for e in range(16)] == [(r.lo, r.hi) for r in ranges]
    assert H.weight_transform_ranges() == ranges


# ----------------------------------------------------------------------------------
# Output transform
# ----------------------------------------------------------------------------------

def _output_transform(ms) -> list[list[int]]:
    """Drive Winograd-domain sums M (each 16 integers, taken modulo 2^34) back to back; y of each."""
    dut = WinogradOutputTransform()
    words = run_pipeline(dut, [[(dut.m, pack_lanes([int(v) for v in mm], H.SUM_BITS))] for mm in ms], dut.y,
                         H.OUTPUT_TRANSFORM_LATENCY)
    return [unpack_lanes(y, 4, 32, signed=True) for y in words]


def _channel_sums(rng, cin: int, count: int, extreme: bool) -> np.ndarray:
    """`count` real Winograd-domain sums M over `cin` channels (int64, (count, 16)): random
    uint8 or int8 tiles and int8 kernels, or (extreme) all-255 / all-(-128) tiles and
    all-(-128) / all-127 kernels, which make |Z| the largest the contract allows."""
    out = np.zeros((count, 16), dtype=np.int64)
    for n in range(count):
        if extreme:
            d = np.full((4, 4), 255 if n % 2 == 0 else -128, dtype=np.uint8 if n % 2 == 0 else np.int8)
            g = np.full((cin, 3, 3), -128 if n % 4 < 2 else 127, dtype=np.int8)
            v = np.broadcast_to(W.transform_input_tile(d), (cin, 4, 4))
        else:
            dtype = np.uint8 if n % 2 else np.int8
            info = np.iinfo(dtype)
            v = W.transform_input_tile(rng.integers(info.min, info.max + 1, size=(cin, 4, 4)).astype(dtype))
            g = rng.integers(-128, 128, size=(cin, 3, 3)).astype(np.int8)
        out[n] = (v.astype(np.int64) * W.transform_weights(g)).sum(axis=0).reshape(16)
    return out


def test_output_transform_real_sums_and_full_width():
    """y == exact_quarter(output_transform(M)) for M of 1 to 4096 channels: random operands, and
    the extremes at 4096 channels (|4Y| = 4,812,963,840 > 2^32: all 34 bits in use, acc at the
    contract's int32 bound)."""
    seed = 31
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    ms = np.concatenate([_channel_sums(rng, c, 6, False) for c in (1, 3, 64, 1827, 4096)]
                        + [_channel_sums(rng, 4096, 4, True)])
    want = W.exact_quarter(W.output_transform(ms.reshape(-1, 4, 4))).reshape(-1, 4)
    assert np.abs(W.output_transform(ms.reshape(-1, 4, 4))).max() > 1 << 32   # the full width is exercised
    assert np.abs(want).max() < 1 << 31
    assert _output_transform(ms) == want.tolist()


def test_output_transform_wrapped_sums():
    """The sums arrive modulo 2^34 (a column's adders wrap; beyond 4096 channels M itself may not
    fit): M + k * 2^34 for random k per entry gives the same y, since Z = 4 acc fits 34 bits."""
    seed = 32
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    ms = np.concatenate([_channel_sums(rng, 4096, 2, True), _channel_sums(rng, 500, 10, False)])
    want = W.exact_quarter(W.output_transform(ms.reshape(-1, 4, 4))).reshape(-1, 4).tolist()
    shifted = ms + rng.integers(-3, 4, size=ms.shape) * SUM_MOD
    wrapped = [[_wrap(int(v)) for v in mm] for mm in shifted]
    assert _output_transform(wrapped) == want
    # The cycle simulator's one-tile output transform (its modulo-2^34 arithmetic) agrees.
    for mm, y in zip(wrapped, want):
        out = np.zeros(4, dtype=np.int64)
        W.output_transform_into(np.array(mm, dtype=np.int64), out)
        assert out.tolist() == y


# ----------------------------------------------------------------------------------
# The LUT multiplier and the unit
# ----------------------------------------------------------------------------------

def test_wide_lut_multiplier_extremes():
    """a * w exactly for 11-bit a over its whole signed range at the ends and U's extremes,
    and random pairs, in a random order (p read LUT_LATENCY cycles later); no $mul cell."""
    seed = 41
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    u = W.check_widths(1).transformed_weight
    # U's ends, and +-2047 (12 bits but -2048): every product of these fits 22 bits.
    pairs = [(a, w) for a in (-1024, -1023, -512, -1, 0, 1, 511, 1020, 1023)
             for w in (u.lo, u.lo + 1, -1, 0, 1, u.hi - 1, u.hi, -2047, 2047)]
    pairs += [(int(a), int(w)) for a, w in zip(rng.integers(-1024, 1024, 300), rng.integers(u.lo, u.hi + 1, 300))]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    assert all(-(1 << (H.PRODUCT_BITS - 1)) <= a * w < 1 << (H.PRODUCT_BITS - 1) for a, w in pairs)
    dut = WideLutMultiplier()
    got = run_pipeline(dut, [[(dut.a, a), (dut.w, w)] for a, w in pairs], dut.p, H.LUT_LATENCY)
    assert got == [a * w for a, w in pairs]
    assert "cell $mul" not in rtlil.convert(WideLutMultiplier())


#: The unit's inputs, in the order of a testbench stimulus word (first = most significant).
_UNIT_INPUTS = ("wr_en", "wr_addr", "wr_data", "rd_addr", "v", "psum_in")


def _unit_schedule(words: dict, steps):
    """Cycle by cycle stimulus of a WinogradUnit: write the U words {addr: 16 ints}, one idle
    cycle, then `steps` = [(addr, v 16 ints, psum_in 16 ints)] back to back with the documented
    lead and latency. Returns (per cycle {input: value}, every input held from the cycle
    before unless driven; for step k, the cycle after whose clock edge its psum_out is read)."""
    lead, lat = H.UNIT_ADDR_LEAD, H.UNIT_LATENCY
    held = dict.fromkeys(_UNIT_INPUTS, 0)
    cycles = []
    for a, u in words.items():
        held.update(wr_en=1, wr_addr=a, wr_data=pack_lanes(u, H.U_BITS))
        cycles.append(dict(held))
    held["wr_en"] = 0
    cycles.append(dict(held))    # the write port is registered: the last word lands now
    start, count = len(cycles), len(steps)
    for c in range(count + lead + lat):
        if c < count:
            held["rd_addr"] = steps[c][0]
        if 0 <= c - lead < count:                 # v comes UNIT_ADDR_LEAD cycles after its address
            held["v"] = pack_lanes(steps[c - lead][1], H.V_BITS)
        if 0 <= c - lead - (lat - 1) < count:     # psum_in is sampled UNIT_LATENCY - 1 cycles after v
            held["psum_in"] = pack_lanes(steps[c - lead - (lat - 1)][2], H.SUM_BITS)
        cycles.append(dict(held))
    return cycles, [start + k + lead + lat - 1 for k in range(count)]


def _unit_run(dut, words: dict, steps):
    """psum_out (16 signed ints) of each step of _unit_schedule, in the Amaranth simulator."""
    cycles, reads = _unit_schedule(words, steps)
    got = []

    async def tb(ctx):
        after = await run_cycles(ctx, [[(getattr(dut, n), v) for n, v in cyc.items()] for cyc in cycles],
                                 [dut.psum_out])
        got.extend(unpack_lanes(after[r][0], 16, H.SUM_BITS, signed=True) for r in reads)

    simulate(dut, tb)
    return got


def _unit_steps(rng, max_cg: int, count: int = 40):
    """Random and extreme U words at random addresses (first and last included) and steps:
    V of random and extreme uint8/int8 tiles and raw 11-bit extremes, partial sums over the
    whole 34-bit range and at its ends. Returns (words, steps, expected psum_out per step)."""
    addrs = sorted(set(rng.integers(0, max_cg, size=min(max_cg, 12)).tolist()) | {0, max_cg - 1})
    kernels = rng.integers(-128, 128, size=(len(addrs), 3, 3)).astype(np.int8)
    kernels[0] = -128
    kernels[1] = np.array([[-128, 127, -128], [127, -128, 127], [-128, 127, -128]])
    kernels[-1] = 127
    u = W.transform_weights(kernels).reshape(-1, 16)
    words = {a: u[j].tolist() for j, a in enumerate(addrs)}
    tiles = [rng.integers(0, 256, size=(4, 4)).astype(np.uint8) if k % 2 else
             rng.integers(-128, 128, size=(4, 4)).astype(np.int8) for k in range(count)]
    tiles[0] = np.full((4, 4), 255, dtype=np.uint8)
    tiles[1] = np.full((4, 4), -128, dtype=np.int8)
    vs = [W.transform_input_tile(t).reshape(16).tolist() for t in tiles]
    vs[2] = [-1024] * 8 + [1023] * 8          # the port's whole range: products still exact in 22 bits
    psums = rng.integers(-(1 << 33), 1 << 33, size=(count, 16)).tolist()
    psums[3] = [(1 << 33) - 1] * 16            # wraps modulo 2^34
    psums[4] = [-(1 << 33)] * 16
    picks = rng.integers(0, len(addrs), size=count)
    picks[:5] = [0, 1, len(addrs) - 1, 0, 1]
    steps = [(addrs[picks[k]], vs[k], psums[k]) for k in range(count)]
    want = [[_wrap(p[e] + v[e] * words[a][e]) for e in range(16)] for a, v, p in steps]
    return words, steps, want


@pytest.mark.parametrize("seed,lut_taps,max_cg", [(51, 0, 5), (52, 16, 5), (53, 7, 5),
                                                 (54, 0, 2 * WEIGHT_BANK_DEPTH + 77)])
def test_unit_matches_winograd_products(seed, lut_taps, max_cg):
    """psum_out == psum_in + transform_input_tile(d) ⊙ transform_weights(g), lane-wise modulo
    2^34: U of random and extreme kernels at random addresses (first and last; with three banks,
    the last partial, across all of them), V of random and extreme uint8/int8 tiles and raw
    11-bit extremes (-1024, 1023), partial sums over the whole 34-bit range and at its ends;
    with none, 7 or all 16 products in LUT multipliers."""
    print(f"seed={seed}")
    words, steps, want = _unit_steps(np.random.default_rng(seed), max_cg)
    got = _unit_run(WinogradUnit(max_cg, lut_taps=lut_taps), words, steps)
    for k in range(len(steps)):
        assert got[k] == want[k], f"step {k} (addr {steps[k][0]}): got {got[k]}, want {want[k]}"


def test_unit_dsp_styles_elaborate():
    """dsp="ecp5": one MULT18X18D per product not in logic (16 - lut_taps); generic: `*` cells."""
    from amaranth.back import verilog
    for lut_taps in (0, 5, 16):
        text = verilog.convert(WinogradUnit(4, dsp="ecp5", lut_taps=lut_taps), name="wu", emit_src=False)
        assert text.count("MULT18X18D ") == 16 - lut_taps
    assert rtlil.convert(WinogradUnit(4)).count("cell $mul") == 16
    assert rtlil.convert(WinogradUnit(4, lut_taps=16)).count("cell $mul") == 0
    with warnings.catch_warnings():   # the refused objects are never elaborated
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            WinogradUnit(4, lut_taps=17)
        with pytest.raises(ValueError):
            WinogradUnit(4, dsp="nonesuch")
        gc.collect()


_ICARUS_BENCH = """`timescale 1ns/1ps
module tb;
    reg clk = 0;
    reg [{top}:0] stim [0:{last}];
    reg [{top}:0] cur = 0;
    wire [{out_top}:0] psum_out;
    {module} dut(.clk(clk), .rst(1'b0), {ports}, .psum_out(psum_out));
    integer c, f;
    initial begin
        $readmemh("stim.hex", stim);
        f = $fopen("out.hex", "w");
        for (c = 0; c <= {last}; c = c + 1) begin
            cur = stim[c];
            #5 clk = 1;
            #1 $fdisplay(f, "%h", psum_out);
            #4 clk = 0;
        end
        $fclose(f);
        $finish;
    end
endmodule
"""


@pytest.mark.parametrize("seed,lut_taps", [(55, 0), (56, 5)])
def test_unit_ecp5_dsp_in_icarus(seed, lut_taps, tmp_path):
    """dsp="ecp5" (MULT18X18D instances, hdl/models/MULT18X18D.v), which the Amaranth simulator
    cannot run: the emitted Verilog in Icarus on the same stimulus gives the same psum_out as
    the winograd reference, in the same cycles (also with 5 products in logic)."""
    import shutil
    import subprocess

    from amaranth.back import verilog

    from rep_accel.hdl.verilog import simulation_models

    if shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed (`apt-get install iverilog`)")
    print(f"seed={seed}")
    max_cg = 5
    words, steps, want = _unit_steps(np.random.default_rng(seed), max_cg)
    dut = WinogradUnit(max_cg, dsp="ecp5", lut_taps=lut_taps)
    widths = {n: len(getattr(dut, n)) for n in _UNIT_INPUTS}
    (tmp_path / "wu.v").write_text(verilog.convert(dut, name="wu", emit_src=False))
    cycles, reads = _unit_schedule(words, steps)
    total = sum(widths.values())
    lines = []
    for cyc in cycles:
        word = 0
        for n in _UNIT_INPUTS:
            word = (word << widths[n]) | (cyc[n] & ((1 << widths[n]) - 1))
        lines.append(f"{word:0{-(-total // 4)}x}")
    (tmp_path / "stim.hex").write_text("\n".join(lines) + "\n")
    ports, low = [], total
    for n in _UNIT_INPUTS:
        low -= widths[n]
        ports.append(f".{n}(cur[{low + widths[n] - 1}:{low}])")
    (tmp_path / "tb.v").write_text(_ICARUS_BENCH.format(top=total - 1, last=len(cycles) - 1, module="wu",
                                                        ports=", ".join(ports), out_top=H.SUM_WORD_BITS - 1))
    models = [str(m) for m in simulation_models("ecp5")]
    subprocess.run(["iverilog", "-g2012", "-o", "sim", "tb.v", "wu.v", *models], cwd=tmp_path, check=True)
    subprocess.run(["vvp", "-n", "sim"], cwd=tmp_path, check=True, capture_output=True)
    after = (tmp_path / "out.hex").read_text().split()
    assert len(after) == len(cycles)
    got = [unpack_lanes(int(after[r], 16), 16, H.SUM_BITS, signed=True) for r in reads]
    for k in range(len(steps)):
        assert got[k] == want[k], f"step {k} (addr {steps[k][0]}): got {got[k]}, want {want[k]}"


# ----------------------------------------------------------------------------------
# A column: input transforms -> units -> sums over channel groups -> output transform
# ----------------------------------------------------------------------------------

class _Column(wiring.Component):
    """Test harness: one column of an array of `pi` input lanes. Lane i's tile and the read
    address enter i cycles late (the systolic skew, so unit i's psum_in meets unit i-1's
    psum_out); kernels are written through one WinogradWeightTransform, their enable, lane
    and address delayed by its latency; the column's bottom sums on `psum`."""

    def __init__(self, pi: int, max_cg: int):
        self._pi, self._max_cg = pi, max_cg
        addr = unsigned(max(1, (max_cg - 1).bit_length()))
        super().__init__({
            "tiles": In(pi * H.TILE_BITS),
            "rd_addr": In(addr),
            "wr_en": In(1), "wr_lane": In(range(max(2, pi))), "wr_addr": In(addr), "kernel": In(72),
            "psum": Out(H.SUM_WORD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        wt = m.submodules.wt = WinogradWeightTransform()
        m.d.comb += wt.kernel.eq(self.kernel)
        en, ln, ad = self.wr_en, self.wr_lane, self.wr_addr
        for s in range(H.WEIGHT_TRANSFORM_LATENCY):
            en2, ln2, ad2 = Signal.like(en, name=f"en{s}"), Signal.like(ln, name=f"ln{s}"), Signal.like(ad, name=f"ad{s}")
            m.d.sync += [en2.eq(en), ln2.eq(ln), ad2.eq(ad)]
            en, ln, ad = en2, ln2, ad2
        psum = 0
        tile, addr = self.tiles, self.rd_addr
        for i in range(self._pi):
            it = m.submodules[f"it{i}"] = WinogradInputTransform()
            unit = m.submodules[f"unit{i}"] = WinogradUnit(self._max_cg)
            m.d.comb += [it.tile.eq(tile[i * H.TILE_BITS:(i + 1) * H.TILE_BITS]), unit.v.eq(it.v),
                         unit.rd_addr.eq(addr), unit.psum_in.eq(psum),
                         unit.wr_en.eq(en & (ln == i)), unit.wr_addr.eq(ad), unit.wr_data.eq(wt.u)]
            psum = unit.psum_out
            tile2, addr2 = Signal.like(tile, name=f"tile{i}"), Signal.like(addr, name=f"addr{i}")
            m.d.sync += [tile2.eq(tile), addr2.eq(addr)]
            tile, addr = tile2, addr2
        m.d.comb += self.psum.eq(psum)
        return m


def _column_case(x: np.ndarray, w: np.ndarray, pi: int):
    """One output channel of a stride-1 layer on a column of `pi` units: x (1, C_in, H, W) uint8
    or int8, w (1, C_in, 3, 3) int8, C_in = pi * cg, channel g*pi + i on lane i in group g.
    Returns the accumulators (H, W) the column, a Python sum over channel groups modulo 2^34
    and the output transform compute."""
    cin = x.shape[1]
    cg = cin // pi
    th, tw = W.tile_grid(x.shape[2], x.shape[3])
    tiles = W.input_tiles(x)[0]   # (C_in, th, tw, 4, 4)
    dut = _Column(pi, cg)
    assert H.UNIT_ADDR_LEAD >= H.INPUT_TRANSFORM_LATENCY
    tile_lead = H.UNIT_ADDR_LEAD - H.INPUT_TRANSFORM_LATENCY   # rd_addr leads the tiles by this
    bottom = H.INPUT_TRANSFORM_LATENCY + (pi - 1) + H.UNIT_LATENCY   # tiles -> the column's bottom sums
    steps = [(ty, tx, g) for ty in range(th) for tx in range(tw) for g in range(cg)]
    cycles = []
    for c in range(len(steps) + tile_lead + bottom):
        d = []
        if c < len(steps):
            d.append((dut.rd_addr, steps[c][2]))
        k = c - tile_lead
        if 0 <= k < len(steps):
            ty, tx, g = steps[k]
            d.append((dut.tiles, pack_lanes([_tile_word(tiles[g * pi + i, ty, tx]) for i in range(pi)], H.TILE_BITS)))
        cycles.append(d)
    sums = {}

    async def tb(ctx):
        for g in range(cg):
            for i in range(pi):
                ctx.set(dut.wr_en, 1)
                ctx.set(dut.wr_lane, i)
                ctx.set(dut.wr_addr, g)
                ctx.set(dut.kernel, _kernel_word(w[0, g * pi + i]))
                await ctx.tick()
        ctx.set(dut.wr_en, 0)
        await ctx.tick().repeat(H.WEIGHT_TRANSFORM_LATENCY + 1)
        after = await run_cycles(ctx, cycles, [dut.psum])
        for k, (ty, tx, g) in enumerate(steps):
            column = unpack_lanes(after[k + tile_lead + bottom - 1][0], 16, H.SUM_BITS, signed=True)
            # The accumulation over channel groups, modulo 2^34 (after the array, per column).
            prev = sums.get((ty, tx), [0] * 16)
            sums[ty, tx] = [_wrap(a + b) for a, b in zip(prev, column)]

    simulate(dut, tb)
    blocks = [(ty, tx) for ty in range(th) for tx in range(tw)]
    ys = _output_transform([sums[b] for b in blocks])
    acc = np.zeros((2 * th, 2 * tw), dtype=np.int64)
    for (ty, tx), y in zip(blocks, ys):
        acc[2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = np.reshape(y, (2, 2))
    return acc[:x.shape[2], :x.shape[3]]


@pytest.mark.parametrize("seed,pi,cg,h,wd,signed", [(61, 2, 3, 4, 4, False), (62, 3, 2, 5, 3, True),
                                                    (63, 1, 4, 3, 6, False), (64, 4, 1, 2, 2, True)])
def test_column_equals_direct_convolution(seed, pi, cg, h, wd, signed):
    """A random layer slice (pi lanes x cg channel groups, one output channel, odd and even
    sizes, uint8 or int8 input, weights with -128 and 127): input transforms -> units ->
    sum over channel groups mod 2^34 -> output transform == golden.conv_accumulate."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cin = pi * cg
    if signed:
        x = rng.integers(-128, 128, size=(1, cin, h, wd)).astype(np.int8)
    else:
        x = rng.integers(0, 256, size=(1, cin, h, wd)).astype(np.uint8)
    w = rng.integers(-128, 128, size=(1, cin, 3, 3)).astype(np.int8)
    w[0, 0, 0] = [-128, 127, -128]
    got = _column_case(x, w, pi)
    want = golden.conv_accumulate(x, w, 1, 1)[0, 0]
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {got.size} accumulators differ"


@pytest.mark.slow
def test_column_full_width():
    """4096 input channels (4 lanes x 1024 channel groups) at the extremes: x all 255, weights
    all -128 except one 127 kernel: |acc| near the contract's bound, M and 4Y need all 34 bits."""
    pi, cg = 4, 1024
    x = np.full((1, pi * cg, 3, 3), 255, dtype=np.uint8)   # the centre pixel sees all nine taps
    w = np.full((1, pi * cg, 3, 3), -128, dtype=np.int8)
    w[0, 5] = 127
    got = _column_case(x, w, pi)
    want = golden.conv_accumulate(x, w, 1, 1)[0, 0]
    assert np.abs(want).max() * 4 > 1 << 32
    assert np.array_equal(got, want)


# ----------------------------------------------------------------------------------
# Structure
# ----------------------------------------------------------------------------------

def test_adder_networks_keep_the_two_adder_rule():
    """The generator refuses a stage deeper than MAX_CHAINED_ADDERS (a five-term row needs
    three) and a coefficient that is not 0 or +-2^k; the three transforms elaborate within it."""
    from rep_accel.hdl.winograd import _Term, _linear_combination, _register
    terms = [_Term(Signal(signed(8), name=f"t{k}"), W.Range(-128, 127), frozenset([k])) for k in range(5)]
    assert _linear_combination([1, 1, -1, 1], terms[:4]).depth == 2
    with pytest.raises(ValueError, match="chained adders"):
        _register(None, _linear_combination([1, 1, 1, 1, 1], terms), "deep", None)
    with pytest.raises(ValueError, match="coefficient 3"):
        _linear_combination([3, 1], terms[:2])
    for dut in (WinogradInputTransform(), WinogradWeightTransform(), WinogradOutputTransform()):
        rtlil.convert(dut)


@pytest.mark.parametrize("make", [WinogradInputTransform, WinogradWeightTransform, WinogradOutputTransform,
                                  lambda: WinogradUnit(2 * WEIGHT_BANK_DEPTH + 3, lut_taps=3),
                                  lambda: WinogradUnit(1, dsp="ecp5")],
                         ids=["input", "weight", "output", "unit-3-banks", "unit-ecp5"])
def test_verilog_lints_clean(make, tmp_path):
    """Verilator -Wall with the repository's waivers only, as the top's Verilog (hdl/lint_waivers.vlt)."""
    import subprocess

    from amaranth.back import verilog

    from rep_accel.hdl.verilog import simulation_models, waivers_path
    from rep_accel.tools import verilator_command, verilator_env
    (tmp_path / "dut.v").write_text(verilog.convert(make(), name="dut", emit_src=False))
    models = [str(m) for m in simulation_models("ecp5")]
    r = subprocess.run([*verilator_command(), "--lint-only", "-Wall", str(waivers_path()), "--top-module", "dut",
                        "dut.v", *models], cwd=tmp_path, env=verilator_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "%Warning" not in r.stderr, r.stderr[:3000]
