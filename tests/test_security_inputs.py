"""Hostile values in the files and options a user gives (docs/security.md): RTL
descriptions that try to add tool commands or read other files, sizes that would take
gigabytes, calibration data that breaks the observers, generics no device can hold.
Each is refused with one line and exit 2 before a tool runs or memory is taken."""

import json
import os
import struct

import numpy as np
import pytest

from rep_accel import synth
from rep_accel.errors import RepAccelError

from hostile import assert_user_error, run_cli, snapshot


@pytest.fixture(scope="module")
def rtl_folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("sec_rtl") / "rtl"
    from rep_accel import cli
    assert cli.main(["rtl", "-o", str(out), "--pi", "1", "--po", "1", "--w-max", "8", "--max-cg", "2",
                     "--line-depth", "16"]) == 0
    return out


def _copy_rtl(rtl_folder, tmp_path):
    import shutil
    dst = tmp_path / "rtl"
    shutil.copytree(rtl_folder, dst)
    return dst


def _edit_description(folder, **changes):
    j = folder / "rep_accel_top.json"
    d = json.loads(j.read_text())
    d.update(changes)
    j.write_text(json.dumps(d))


@pytest.fixture
def tools_must_not_run(monkeypatch, tmp_path):
    """Any Yosys or nextpnr, YoWASP or native, is replaced by a recorder: a test passes only
    if no tool was started."""
    started = tmp_path / "tool-started"

    def recorder(*a, **k):
        started.write_text("ran")
        raise AssertionError("a tool was started")
    from rep_accel import tools
    monkeypatch.setattr(tools, "yosys_command", recorder)
    monkeypatch.setattr(tools, "nextpnr_ecp5_command", recorder)
    yield
    assert not started.exists()


@pytest.mark.parametrize("top", ["rep_accel_top\nwrite_verilog injected.v", "a;b", "top -p x", "../x", "", 5,
                                 "x" * 300, "rep_accel_top\n!touch pwned"])
def test_rtl_json_top_cannot_add_commands(rtl_folder, tmp_path, capsys, tools_must_not_run, top):
    folder = _copy_rtl(rtl_folder, tmp_path)
    _edit_description(folder, top=top)
    assert_user_error(capsys, "synth", folder, "--target", "generic", "-o", tmp_path / "s", says="top")
    assert not (tmp_path / "s").exists() and not list(tmp_path.rglob("injected.v"))


@pytest.mark.parametrize("sources", [["/etc/passwd"], ["../../../etc/passwd"], ["rep_accel_top.v\nread x"],
                                     5, "rep_accel_top.v", [], ["sub/x.v"]])
def test_rtl_json_sources_stay_inside(rtl_folder, tmp_path, capsys, tools_must_not_run, sources):
    folder = _copy_rtl(rtl_folder, tmp_path)
    _edit_description(folder, sources=sources)
    assert_user_error(capsys, "synth", folder, "--target", "generic", "-o", tmp_path / "s", says="sources")


def test_rtl_source_link_that_leaves_is_refused(rtl_folder, tmp_path, capsys, tools_must_not_run):
    folder = _copy_rtl(rtl_folder, tmp_path)
    outside = tmp_path / "outside.v"
    outside.write_text("module evil(); endmodule\n")
    os.symlink(outside, folder / "evil.v")
    _edit_description(folder, sources=["rep_accel_top.v", "evil.v"])
    assert_user_error(capsys, "synth", folder, "--target", "generic", "-o", tmp_path / "s", says="link that leaves")


@pytest.mark.parametrize("option", [["--top", "x\ny"], ["--package", "CABGA381 --pre-pack evil.py"],
                                    ["--clock-mhz", "inf", "--model", "A0"], ["--freq", "nan"],
                                    ["--timeout", "inf"]])
def test_synth_options_are_validated(rtl_folder, tmp_path, capsys, tools_must_not_run, option):
    assert_user_error(capsys, "synth", rtl_folder, "-o", tmp_path / "s", *option)


def test_synth_refuses_a_folder_with_user_files(rtl_folder, tmp_path, capsys, tools_must_not_run):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "nextpnr.log").write_text("my own log\n")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "synth", rtl_folder, "-o", mine, "--target", "generic", says="nextpnr.log")
    assert snapshot(tmp_path) == before


def test_the_script_only_ever_holds_validated_names(rtl_folder):
    """What reaches Yosys' script: the names of load_design, which are identifiers."""
    d = synth.load_design(rtl_folder)
    script = synth.generic_script([s.name for s in d.sources], d.top)
    assert "\n!" not in script and d.top.isidentifier()
    with pytest.raises(RepAccelError):
        synth.tool_identifier("x\nwrite_verilog y.v", "top")


# ---------------------------------------------------------------- generics

@pytest.mark.parametrize("option,says", [(["--max-cg", "65535"], "max_cg"), (["--line-depth", "10000000"], "line_depth"),
                                         (["--pi", "64", "--po", "64", "--max-cg", "4096"], "on-chip"),
                                         (["--pi", "0"], "--pi"), (["--w-max", "100000"], "w_max")])
def test_rtl_generics_are_bounded(tmp_path, capsys, option, says):
    assert_user_error(capsys, "rtl", "-o", tmp_path / "r", *option, says=says)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------- sizes and calibration data

@pytest.mark.parametrize("size", ["1,100000,100000", "100000,8,8", "1,28", "1,28,28,1", "a,b,c", "0,28,28"])
def test_input_size_is_bounded(tmp_path, capsys, size):
    (tmp_path / "imgs").mkdir()
    assert_user_error(capsys, "compile", "-o", tmp_path / "b", "--calib", tmp_path / "imgs", "--mean", "0",
                      "--std", "1", "--input-size", size, says="--input-size")


def test_fuse_check_size_is_bounded(tmp_path, capsys):
    assert_user_error(capsys, "fuse", "rep_accel/data/default_model.pt", "-o", tmp_path / "d.pt",
                      "--check-size", "100000", says="--check-size")
    assert not (tmp_path / "d.pt").exists()


def test_calibration_values_near_float_max_are_refused(tmp_path, capsys):
    x = np.full((4, 1, 28, 28), 1e38, dtype=np.float32)
    np.save(tmp_path / "c.npy", x)
    assert_user_error(capsys, "compile", "-o", tmp_path / "b", "--calib", tmp_path / "c.npy", says="normalize")
    assert not (tmp_path / "b").exists()


def test_npy_header_claiming_terabytes_is_refused_before_reading(tmp_path, capsys):
    # A valid .npy header for a (2^20, 1, 28, 28) float64 array over a few bytes of data.
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1048576, 1, 1024, 1024), }"
    header += " " * (-(len(header) + 11) % 64) + "\n"
    blob = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + b"\0" * 64
    (tmp_path / "c.npy").write_bytes(blob)
    assert_user_error(capsys, "compile", "-o", tmp_path / "b", "--calib", tmp_path / "c.npy", "--num-calib", "1000000")


def test_decompression_bomb_png_is_refused(tmp_path, capsys):
    from PIL import Image
    folder = tmp_path / "imgs"
    folder.mkdir()
    # 20000 x 20000 1-bit pixels compress to a few KB: the header claims 400 M pixels.
    Image.new("1", (20000, 20000)).save(folder / "bomb.png", optimize=True)
    assert (folder / "bomb.png").stat().st_size < 200_000
    assert_user_error(capsys, "compile", "-o", tmp_path / "b", "--calib", folder, "--mean", "0", "--std", "1",
                      "--input-size", "1,28,28", says="bomb.png")


def test_no_warning_before_the_error_line(tmp_path, capsys):
    x = np.zeros((4, 1, 28, 28), dtype=np.float32)
    x[0, 0, 0, 0] = 3e38
    np.save(tmp_path / "c.npy", x)
    line = assert_user_error(capsys, "compile", "-o", tmp_path / "b", "--calib", tmp_path / "c.npy")
    assert "Warning" not in line


@pytest.mark.parametrize("argv", [["rtl", "-o", "r", "--unit", "fft"], ["compile"], ["simulate", "b", "--pi", "x"],
                                  ["bogus"]])
def test_command_line_mistakes_are_one_line(argv, capsys):
    from rep_accel import cli
    with pytest.raises(SystemExit) as e:
        cli.main(argv)
    err = capsys.readouterr().err
    assert e.value.code == 2 and len(err.strip().splitlines()) == 1 and "--help" in err, err


def test_a_unit_kind_without_rtl_is_one_line(capsys, tmp_path, monkeypatch):
    """`rtl --unit KIND` for a kind the simulator runs but hdl/ does not build (both kinds
    are built today: a kind is made RTL-less here) is refused in one line that names the
    remedy, and nothing is written."""
    import dataclasses

    import rep_accel.hdl.top  # noqa: F401 (checks the latency of the kinds it builds as it is imported)
    from rep_accel.generics import UNIT_KINDS
    monkeypatch.setitem(UNIT_KINDS, "winograd", dataclasses.replace(UNIT_KINDS["winograd"], rtl=False))
    assert_user_error(capsys, "rtl", "-o", tmp_path / "r", "--unit", "winograd",
                      says=("unit kind 'winograd' has no RTL yet", "--unit direct"))
    assert not (tmp_path / "r").exists()
