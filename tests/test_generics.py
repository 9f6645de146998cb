"""The hardware generics (rep_accel/generics.py): the unit kind and the LUT-multiplier count,
their checks, old builds without them, the one source of the pipeline latency, and the CLI's
--unit / --lut-multipliers, recorded by a build and refused on RTL of another value."""

import json

import numpy as np
import pytest

from hostile import assert_user_error, rewrite_manifest
from rep_accel import images
from rep_accel.cli import main
from rep_accel.errors import RepAccelError
from rep_accel.generics import (ARITHMETIC_GENERICS, KERNEL_BYTES, UNIT_KINDS, WINDOW_TAPS, HardwareGenerics,
                                check_same_arithmetic)
from rep_accel.sim import synthetic

SEED = 1515


def test_defaults_and_derived_counts():
    g = HardwareGenerics(pi=2, po=3)
    assert (g.unit, g.lut_multipliers) == ("direct", 0)
    assert g.multipliers == 54 == g.dsp_multipliers and g.peak_macs_per_cycle == 54
    h = g.replace(lut_multipliers=13)
    assert (h.multipliers, h.dsp_multipliers, h.lut_multipliers) == (54, 41, 13)
    # The LUT multipliers change neither the schedule nor the images' layout.
    assert (h.pipeline_latency, h.param_beat_bytes, h.weight_buffer_bytes) == \
        (g.pipeline_latency, g.param_beat_bytes, g.weight_buffer_bytes)
    assert g.to_dict()["unit"] == "direct" and g.to_dict()["lut_multipliers"] == 0


def test_constants_that_mean_different_things():
    """Stream bytes per kernel slot, window taps and MACs per unit are separate names (equal
    today, for the direct unit with int8 weights)."""
    assert KERNEL_BYTES == 9 and WINDOW_TAPS == 9
    assert UNIT_KINDS["direct"].multipliers == UNIT_KINDS["direct"].macs_per_cycle == WINDOW_TAPS


def test_old_generics_load_with_defaults():
    old = {"pi": 2, "po": 3, "w_max": 16, "max_cg": 8, "line_depth": 64}   # a build from before the fields
    g = HardwareGenerics.from_dict(old)
    assert g == HardwareGenerics(pi=2, po=3, w_max=16, max_cg=8, line_depth=64, unit="direct", lut_multipliers=0)
    assert HardwareGenerics.from_dict(g.to_dict()) == g
    assert set(ARITHMETIC_GENERICS) <= set(g.to_dict())


@pytest.mark.parametrize("changes,says", [
    ({"unit": "fft"}, "choose one of direct, winograd"),
    ({"unit": 3}, "choose one of direct, winograd"),
    ({"lut_multipliers": -1}, "0..54"),
    ({"lut_multipliers": 55}, "--lut-multipliers <= 54"),
    ({"lut_multipliers": True}, "0..54"),
    ({"lut_multipliers": 2.0}, "0..54"),
])
def test_bad_arithmetic_generics_are_refused(changes, says):
    with pytest.raises(RepAccelError) as e:
        HardwareGenerics(pi=2, po=3, **changes)
    assert says in str(e.value) and "\n" not in str(e.value)


def test_check_same_arithmetic():
    g = HardwareGenerics(pi=2, po=3)
    check_same_arithmetic(g, g.replace(w_max=16), "b/", "rtl/")   # buffers may differ
    with pytest.raises(RepAccelError) as e:
        check_same_arithmetic(g, g.replace(lut_multipliers=6), "b/", "the RTL in rtl/")
    msg = str(e.value)
    assert "lut_multipliers=0" in msg and "lut_multipliers=6" in msg and "--lut-multipliers" in msg
    assert "\n" not in msg


def test_latency_has_one_source(monkeypatch):
    """hdl/top.py sums the RTL's stage constants and asserts them against the front end's
    latency for every unit kind hdl/ builds; a stage constant that changes alone is caught
    there, and so is a kind that claims RTL it does not have."""
    from rep_accel.hdl import array, top
    top.check_latency()
    built = [kind for kind in UNIT_KINDS if UNIT_KINDS[kind].rtl]
    assert built == ["direct", "winograd"]
    for kind in built:
        g = HardwareGenerics(pi=3, po=5, unit=kind)
        assert top.pipeline_latency(g) == g.pipeline_latency == 3 + 5 + UNIT_KINDS[kind].latency_fixed
        monkeypatch.setitem(array.UNIT_LATENCY, kind, array.UNIT_LATENCY[kind] + 1)
        with pytest.raises(AssertionError, match=f"unit {kind}.*the RTL's stages give"):
            top.check_latency()
        monkeypatch.setitem(array.UNIT_LATENCY, kind, array.UNIT_LATENCY[kind] - 1)
    top.check_latency()
    import dataclasses
    monkeypatch.setitem(UNIT_KINDS, "systolic9", dataclasses.replace(UNIT_KINDS["direct"], rtl=True))
    with pytest.raises(AssertionError, match="needs its RTL"):
        top.check_latency()


# ----------------------------------------------------------------------------------
# Builds and the CLI
# ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """A tiny network written as a build for a 2x2 array with 4 LUT multipliers, and the
    same for the defaults; an input for it."""
    root = tmp_path_factory.mktemp("generics_builds")
    qnet = synthetic.random_zoo_qnetwork("tiny", 8, seed=SEED)
    g = HardwareGenerics(pi=2, po=2, w_max=8)
    images.write_build(qnet, g.replace(lut_multipliers=4), root / "lut4")
    images.write_build(qnet, g, root / "default")
    x = np.random.default_rng(SEED).normal(0, 1, (1,) + tuple(qnet.input_size)).astype(np.float32)
    np.save(root / "x.npy", x)
    return root


def test_build_records_the_arithmetic_and_nothing_else_changes(builds):
    lut, default = (json.loads((builds / b / images.MANIFEST).read_text()) for b in ("lut4", "default"))
    assert lut["generics"]["lut_multipliers"] == 4 and default["generics"]["lut_multipliers"] == 0
    assert default["generics"]["unit"] == lut["generics"]["unit"] == "direct"
    for m in (lut, default):
        m.pop("manifest_sha256")
        m["generics"].pop("lut_multipliers")
    assert lut == default
    assert (builds / "lut4" / images.PARAMS).read_bytes() == (builds / "default" / images.PARAMS).read_bytes()


def test_old_build_without_the_fields_loads(builds, tmp_path):
    import shutil
    old = tmp_path / "old"
    shutil.copytree(builds / "default", old)

    def drop(manifest):
        for name in ARITHMETIC_GENERICS:
            del manifest["generics"][name]
    rewrite_manifest(old, drop)
    assert "unit" not in json.loads((old / images.MANIFEST).read_text())["generics"]
    assert images.load_build(old).generics == images.load_build(builds / "default").generics


def test_rtl_takes_the_builds_count_and_refuses_another(builds, tmp_path, capsys):
    assert_user_error(capsys, "rtl", str(builds / "lut4"), "-o", str(tmp_path / "a"), "--lut-multipliers", "0",
                      says=("--lut-multipliers 0", "lut_multipliers=4", "recompile"))
    assert not (tmp_path / "a").exists()
    assert main(["rtl", str(builds / "lut4"), "-o", str(tmp_path / "b")]) == 0
    desc = json.loads((tmp_path / "b" / "rep_accel_top.json").read_text())
    assert desc["generics"]["lut_multipliers"] == 4 and desc["generics"]["unit"] == "direct"
    assert "unit0_0.lut3" in (tmp_path / "b" / "rep_accel_top.v").read_text()


def test_simulate_refuses_another_count(builds, capsys):
    assert_user_error(capsys, "simulate", str(builds / "default"), "--input", str(builds / "x.npy"),
                      "--lut-multipliers", "3", says=("--lut-multipliers 3", "lut_multipliers=0"))
    assert main(["simulate", str(builds / "lut4"), "--input", str(builds / "x.npy"), "--unit", "direct",
                 "--lut-multipliers", "4"]) == 0


def test_synth_refuses_rtl_of_another_count_before_the_tools(builds, tmp_path, capsys):
    rtl = tmp_path / "rtl"
    assert main(["rtl", str(builds / "default"), "-o", str(rtl)]) == 0
    capsys.readouterr()
    assert_user_error(capsys, "synth", str(rtl), "--build", str(builds / "lut4"), "--target", "generic",
                      "--clock-mhz", "100", "-o", str(tmp_path / "out"),
                      says=("build", "lut_multipliers=4", "lut_multipliers=0", "rep-accel rtl"))
    assert_user_error(capsys, "synth", str(rtl), "--lut-multipliers", "2", "--target", "generic",
                      "-o", str(tmp_path / "out"), says=("--lut-multipliers 2", "lut_multipliers=0"))
    assert not (tmp_path / "out" / "yosys.log").exists()


def test_compile_records_the_count(tmp_path, capsys):
    """`rep-accel compile --lut-multipliers` writes it into the manifest; a count the array
    does not have is refused in one line, nothing written."""
    out = tmp_path / "build"
    assert main(["compile", "-o", str(out), "--pi", "1", "--po", "2", "--num-calib", "8",
                 "--lut-multipliers", "5"]) == 0
    assert images.load_build(out).generics.lut_multipliers == 5
    capsys.readouterr()
    assert_user_error(capsys, "compile", "-o", str(tmp_path / "b2"), "--pi", "1", "--po", "2", "--num-calib", "8",
                      "--lut-multipliers", "19", says=("lut_multipliers=19", "--lut-multipliers <= 18"))
    assert not (tmp_path / "b2").exists()
