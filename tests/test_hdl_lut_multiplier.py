"""The LUT multiplier (hdl/lut_multiplier.py): alone in the Amaranth simulator, Python's product
on every (uint8 activation, int8 weight) and (int8 activation, int8 weight) pair, with the DSP
path's latency; no `*` in its netlist (nor, for its taps, in the top's); Verilator's lint of
the top with LUT multipliers; and (slow) synth_ecp5 mapping fewer DSP blocks."""

import json

import numpy as np
import pytest
from amaranth.back import rtlil

from hdl_bench import run_pipeline
from rep_accel.cli import main
from rep_accel.families import ecp5
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl import lut_multiplier, unit
from rep_accel.hdl.lut_multiplier import LutMultiplier
from rep_accel.hdl.top import Accelerator


def _products(pairs) -> list[int]:
    """Drive one (a, w) pair per cycle, back to back; return p of each pair, read LATENCY cycles later."""
    dut = LutMultiplier()
    return run_pipeline(dut, [[(dut.a, a), (dut.w, w)] for a, w in pairs], dut.p, lut_multiplier.LATENCY)


def test_latency_is_the_dsp_paths():
    assert lut_multiplier.LATENCY == ecp5.DSP_REGISTER_STAGES == unit.MULTIPLIER_STAGES == 3


@pytest.mark.parametrize("activations", ["uint8", "int8"])
def test_every_pair(activations):
    """All 256 x 256 pairs (activation-major, so each cycle's weight differs from the last's: a
    product read one cycle early or late would be another pair's) equal a * w exactly."""
    acts = range(256) if activations == "uint8" else range(-128, 128)
    pairs = [(a, w) for a in acts for w in range(-128, 128)]
    got = _products(pairs)
    bad = [(a, w, p) for (a, w), p in zip(pairs, got) if p != a * w]
    assert not bad, f"{len(bad)} wrong products, first (a, w, p) = {bad[:5]}"


def test_ninth_bit_extremes():
    """The 9-bit activation's whole signed range at its ends (the window generator gives
    -128..255, but the multiplier is exact on -256..255) times the weight extremes, in a
    random order."""
    rng = np.random.default_rng(5)
    pairs = [(a, w) for a in (-256, -255, -129, -1, 0, 1, 254, 255) for w in (-128, -127, -1, 0, 1, 126, 127)]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    assert _products(pairs) == [a * w for a, w in pairs]


def test_netlist_has_no_multiplication():
    """The partial products are gates and adders: the RTLIL has no $mul cell for Yosys to map
    to a DSP block."""
    text = rtlil.convert(LutMultiplier())
    assert "cell $mul" not in text
    assert "cell $add" in text and "cell $sub" in text


def _top_rtlil(lut_multipliers: int) -> str:
    g = HardwareGenerics(pi=1, po=1, w_max=8, max_cg=2, line_depth=16, lut_multipliers=lut_multipliers)
    return rtlil.convert(Accelerator(g))


def test_top_multiplies_only_in_the_units_not_in_logic():
    """The 1x1 top (generic multipliers) has one `*` per DSP product: 9 with no LUT
    multipliers, 5 with 4, none with all 9 (the requantization's multiplies are elsewhere:
    counted with lut_multipliers=9)."""
    rest = _top_rtlil(9).count("cell $mul")
    assert _top_rtlil(0).count("cell $mul") == rest + 9
    assert _top_rtlil(4).count("cell $mul") == rest + 5


@pytest.mark.slow
def test_synth_ecp5_maps_lut_multipliers_to_logic(tmp_path):
    """`rep-accel synth` (synth_ecp5 + nextpnr, LFE5U-25F) of the 1x1 top with generic
    multipliers and 4 LUT multipliers: Yosys maps the 5 `*` products to MULT18X18D and the 4
    shift-and-add ones to logic, so 5 DSP blocks where lut_multipliers=0 gives 9
    (tests/test_synth.py). About 2 minutes."""
    rtl = tmp_path / "rtl"
    assert main(["rtl", "-o", str(rtl), "--pi", "1", "--po", "1", "--w-max", "16", "--max-cg", "8",
                 "--line-depth", "64", "--lut-multipliers", "4"]) == 0
    js = tmp_path / "synth.json"
    assert main(["synth", str(rtl), "--target", "ecp5", "--device", "25k", "--speed", "6", "-o",
                 str(tmp_path / "out"), "--json", str(js), "--lut-multipliers", "4"]) == 0
    s = json.loads(js.read_text())["synthesis"]
    assert s["cells"]["MULT18X18D"] == 5
    assert s["utilization"]["MULT18X18D"]["used"] == 5
    assert s["generics"]["lut_multipliers"] == 4


@pytest.mark.parametrize("dsp,lut", [("generic", 13), ("ecp5", 27)])
def test_rtl_with_lut_multipliers_lints_clean(tmp_path, dsp, lut):
    """`rep-accel rtl --lint` (Verilator -Wall, the repository's waivers only) of the 2x3 array
    with LUT multipliers beside `*` products or MULT18X18D instances; the JSON records them."""
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), "--pi", "2", "--po", "3", "--w-max", "16", "--max-cg", "8",
                 "--line-depth", "64", "--dsp", dsp, "--lut-multipliers", str(lut), "--lint"]) == 0
    desc = json.loads((out / "rep_accel_top.json").read_text())
    assert desc["generics"]["lut_multipliers"] == lut and desc["generics"]["unit"] == "direct"
