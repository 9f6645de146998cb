"""The FPGA-family interface (rep_accel.families): every family module defines what the RTL
generator and the flow read from it, and the flow uses nothing family-specific besides."""

import pytest

from rep_accel import families, synth

INTERFACE = ("NAME", "DSP_STYLE", "DSP_REGISTER_STAGES", "dsp_multiplier", "block_ram_mode", "registered_block_ram",
             "SIMULATION_MODELS", "BLOCK_RAM_ENTRIES",
             "BLOCK_RAM_BYTES", "DEVICES", "SPEEDS", "PACKAGES", "DEFAULT_DEVICE", "DEFAULT_SPEED", "DEFAULT_PACKAGE",
             "BLACK_BOXES", "CELLS", "SUMMARY_RESOURCES", "RESOURCE_NAMES", "PACKAGE_NAMES", "synth_command",
             "nextpnr_command", "place_and_route_arguments")


@pytest.mark.parametrize("name", sorted(families.FAMILIES))
def test_family_defines_the_interface(name):
    family = families.FAMILIES[name]
    missing = [a for a in INTERFACE if not hasattr(family, a)]
    assert not missing, f"{name} lacks {missing}"
    assert family.NAME == name and family.DEFAULT_DEVICE in family.DEVICES
    assert family.DEFAULT_SPEED in family.SPEEDS and family.DEFAULT_PACKAGE in family.PACKAGES
    assert set(family.CELLS) == {"lut", "flip_flop", "dsp", "block_ram"}
    assert set(family.SUMMARY_RESOURCES) <= set(family.RESOURCE_NAMES)
    # The unit's product latency is the same in every style: three stages in the DSP.
    from rep_accel.hdl.unit import LATENCY
    assert family.DSP_REGISTER_STAGES == 3 and LATENCY == 7
    assert families.dsp_family(family.DSP_STYLE) is family
    assert name in synth.TARGETS and family.DSP_STYLE in families.DSP_STYLES


def test_generic_style_has_no_family_and_no_models():
    from rep_accel.hdl.verilog import simulation_model_names
    assert families.dsp_family("generic") is None and simulation_model_names("generic") == []
    assert simulation_model_names("ecp5") == ["MULT18X18D.v", "DP16KD.v"]


def test_ecp5_block_ram_mode_follows_yosys_costs():
    """Where Yosys' cost model (128 per DP16KD, 4 per 16 x 4 distributed RAM) puts a memory
    in block RAM, the ecp5 style instantiates the DP16KD itself; elsewhere it leaves the
    memory to Yosys. The shapes are the RTL's: byte-wide line buffer and column delay
    banks, 72-bit kernels."""
    from rep_accel.families import ecp5
    assert ecp5.block_ram_mode(8, 1024) == (2048, 9) and ecp5.block_ram_mode(8, 2048) == (2048, 9)
    assert ecp5.block_ram_mode(8, 256) is None          # 8 x 16 cells cost 128: distributed
    assert ecp5.block_ram_mode(8, 272) == (2048, 9)
    assert ecp5.block_ram_mode(72, 512) == (512, 36) and ecp5.block_ram_mode(72, 64) == (512, 36)
    assert ecp5.block_ram_mode(72, 32) is None         # 2 x 128 against 18 x 2 x 4
    assert ecp5.block_ram_mode(8, 4096) is None and ecp5.block_ram_mode(72, 1024) is None


def test_ecp5_place_and_route_arguments():
    from rep_accel.families import ecp5
    argv = ecp5.place_and_route_arguments("25k", 6, "CABGA256", "n.json", "top", 150.0, 3, "r.json")
    assert argv[:7] == ["--25k", "--speed", "6", "--package", "CABGA256", "--json", "n.json"]
    assert "--out-of-context" in argv and argv[argv.index("--seed") + 1] == "3"


def test_results_read_cells_by_the_familys_names():
    r = synth.SynthResult(target="ecp5", top="t", cells={"LUT4": 10, "TRELLIS_FF": 4, "MULT18X18D": 9, "DP16KD": 2})
    assert (r.luts, r.flip_flops, r.dsp_blocks, r.block_rams) == (10, 4, 9, 2)
    assert r.summary()["MULT18X18D"] == 9
    g = synth.SynthResult(target="generic", top="t", cells={"$_DFF_P_": 5, "$_AND_": 7})
    assert (g.dsp_blocks, g.flip_flops, g.gates) == (0, 5, 7)
