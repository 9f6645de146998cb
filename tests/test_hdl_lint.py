"""Elaboration of the RTL across generics, Verilator's lint (-Wall with the repository's
waivers only), Yosys synthesis, and `rep-accel rtl` (outputs, build folders, bad input)."""

import json
import re
import subprocess

import pytest

from rep_accel.cli import main
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl.verilog import TOP_NAME, generate, waivers_path
from rep_accel.tools import verilator_command, verilator_env, yosys_command


def _lint(tmp_path, generics):
    text, desc = generate(generics)
    (tmp_path / f"{TOP_NAME}.v").write_text(text)
    r = subprocess.run([*verilator_command(), "--lint-only", "-Wall", str(waivers_path()), f"{TOP_NAME}.v"],
                       cwd=tmp_path, env=verilator_env(), capture_output=True, text=True)
    assert r.returncode == 0 and "%Warning" not in r.stderr, r.stderr[:3000]
    return text, desc


def _module_ports(text):
    """{port: (direction, width)} of the top module, parsed from the Verilog declarations."""
    body = text[text.index(f"module {TOP_NAME}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    return ports


def _check_ports(text, desc, g):
    ports = _module_ports(text)
    assert {p["name"]: (p["direction"], p["width"]) for p in desc["ports"]} == ports
    expected = {
        "clk": ("input", 1), "rst": ("input", 1),
        "desc__payload": ("input", 91), "desc__valid": ("input", 1), "desc__ready": ("output", 1),
        "params__payload": ("input", 72 * g.pi), "params__valid": ("input", 1), "params__ready": ("output", 1),
        "act_in__payload": ("input", 8 * g.pi), "act_in__valid": ("input", 1), "act_in__ready": ("output", 1),
        "act_out__payload": ("output", 8 * g.po), "act_out__valid": ("output", 1), "act_out__ready": ("input", 1),
        "busy": ("output", 1), "done": ("output", 1), "cycles": ("output", 32),
    }
    assert ports == expected
    assert desc["generics"] == g.to_dict() and desc["pipeline_latency"] == g.pipeline_latency


LINT_DEFAULT = [
    HardwareGenerics(pi=1, po=1, w_max=3, max_cg=1, line_depth=3),        # smallest everything
    HardwareGenerics(pi=3, po=2, w_max=224, max_cg=64, line_depth=2048),  # the defaults' buffers
    # tile groups: tables of 2 (one-bit tile index) and of 5 entries (a depth not a power of two)
    HardwareGenerics(pi=1, po=1, w_max=8, max_cg=4, line_depth=32, max_group=2),
    HardwareGenerics(pi=2, po=3, w_max=16, max_cg=20, line_depth=64, max_group=5),
    # arrays of Winograd units, one tile and tile groups
    HardwareGenerics(pi=1, po=1, w_max=8, max_cg=4, line_depth=32, unit="winograd"),
    HardwareGenerics(pi=2, po=3, w_max=16, max_cg=20, line_depth=64, max_group=5, unit="winograd"),
]


@pytest.mark.parametrize("g", LINT_DEFAULT, ids=lambda g: f"{g.unit}-{g.pi}x{g.po}-w{g.w_max}-k{g.max_group}")
def test_elaborates_and_lints_clean(tmp_path, g):
    text, desc = _lint(tmp_path, g)
    _check_ports(text, desc, g)


@pytest.mark.slow
@pytest.mark.parametrize("pi", [1, 2, 3, 8])
@pytest.mark.parametrize("po", [1, 2, 3, 8])
@pytest.mark.parametrize("w_max", [3, 4095])
def test_elaborates_and_lints_clean_sweep(tmp_path, pi, po, w_max):
    g = HardwareGenerics(pi=pi, po=po, w_max=w_max, max_cg=5 if w_max == 3 else 512,
                         line_depth=15 if w_max == 3 else 16384)
    text, desc = _lint(tmp_path, g)
    _check_ports(text, desc, g)


def test_yosys_synth(tmp_path):
    """Yosys `synth -top rep_accel_top` runs without errors on a small configuration."""
    g = HardwareGenerics(pi=1, po=1, w_max=3, max_cg=1, line_depth=3)
    text, _ = generate(g)
    (tmp_path / "top.v").write_text(text)
    r = subprocess.run([*yosys_command(), "-q", "-p", f"read_verilog top.v; synth -top {TOP_NAME}; stat"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert "ERROR" not in r.stdout + r.stderr


@pytest.mark.slow
def test_yosys_synth_ecp5(tmp_path):
    """The ECP5 flow (ABC9) too: lanes are flat vectors, so no `x` / `x[0]` name clash
    (YosysHQ/yosys#4349) stops it. 144 DSPs would be a 4x4 array; 2x2 uses 36."""
    g = HardwareGenerics(pi=2, po=2, w_max=16, max_cg=4, line_depth=64)
    text, _ = generate(g)
    (tmp_path / "top.v").write_text(text)
    r = subprocess.run([*yosys_command(), "-p", f"read_verilog top.v; synth_ecp5 -top {TOP_NAME} -json top.json; stat"],
                       cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert re.search(r"\b36\s+MULT18X18D", r.stdout), "expected exactly the units' 9 x PI x PO multipliers on DSPs"


# ------------------------------------------------------------------------------------
# rep-accel rtl
# ------------------------------------------------------------------------------------

SMALL = ["--pi", "1", "--po", "1", "--w-max", "4", "--max-cg", "2", "--line-depth", "8"]


def test_rtl_command_writes_verilog_json_and_waivers(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), *SMALL, "--lint"]) == 0
    text = (out / f"{TOP_NAME}.v").read_text()
    desc = json.loads((out / f"{TOP_NAME}.json").read_text())
    g = HardwareGenerics(pi=1, po=1, w_max=4, max_cg=2, line_depth=8)
    _check_ports(text, desc, g)
    assert (out / "lint_waivers.vlt").read_text() == waivers_path().read_text()
    assert "clean" in capsys.readouterr().out


def test_rtl_command_ecp5_dsp_style(tmp_path, capsys):
    """--dsp ecp5: one MULT18X18D per product (9 per unit) with the DSP's own input, pipeline
    and output registers, the model written beside the Verilog, lint clean with the model."""
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), "--pi", "2", "--po", "3", "--w-max", "6", "--max-cg", "3",
                 "--line-depth", "1100", "--dsp", "ecp5", "--lint"]) == 0
    text = (out / f"{TOP_NAME}.v").read_text()
    desc = json.loads((out / f"{TOP_NAME}.json").read_text())
    assert desc["dsp"] == "ecp5" and desc["simulation_models"] == ["MULT18X18D.v", "DP16KD.v"]
    assert desc["sources"] == [f"{TOP_NAME}.v"]   # synthesis reads the primitive, never the model
    assert (out / "MULT18X18D.v").is_file()
    instances = re.findall(r"^\s*MULT18X18D\s+#\(", text, re.M)
    assert len(instances) == 9 * 2 * 3
    for reg in ("INPUTA", "INPUTB", "PIPELINE", "OUTPUT"):
        assert text.count(f'.REG_{reg}_CLK("CLK0")') == 9 * 2 * 3, reg
    assert "multipliers: ecp5" in capsys.readouterr().out


@pytest.mark.parametrize("bad,needle", [
    (["--pi", "0"], "--pi 0"), (["--po", "-2"], "--po -2"), (["--w-max", "2"], "w_max=2"),
    (["--max-cg", "0"], "--max-cg 0"), (["--line-depth", "-1"], "--line-depth -1"), (["--pi", "65"], "64x64"),
    (["--w-max", "4096"], "w_max=4096"),
])
def test_rtl_command_rejects_bad_generics_before_writing(tmp_path, capsys, bad, needle):
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), *bad]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def _build(tmp_path, pi=2, po=2):
    from rep_accel.images import write_build
    from rep_accel.sim.synthetic import random_qnetwork
    qnet = random_qnetwork([(3, 4, 2, 1), (4, 6, 1, 2)], (3, 9, 7), seed=3)
    return write_build(qnet, HardwareGenerics(pi=pi, po=po), tmp_path / "build")


def test_rtl_command_sizes_for_a_build(tmp_path):
    build = _build(tmp_path)
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), str(build)]) == 0
    desc = json.loads((out / f"{TOP_NAME}.json").read_text())
    # Layer 0: W = 7, 3 channels -> cg 2 at PI = 2, its 2 tiles in one group: 4 kernels per unit;
    # layer 1: W = 4, groups 2, 3 tiles of different inputs (cg 1, 2, 1): groups of one.
    assert desc["generics"] == {"pi": 2, "po": 2, "w_max": 7, "max_cg": 4, "line_depth": 14, "max_group": 16,
                                "unit": "direct", "lut_multipliers": 0}   # the build's layout and arithmetic
    assert desc["build"]["layers"] == 2


@pytest.mark.parametrize("extra,needle", [
    (["--w-max", "6"], "wider than W_MAX=6"),
    (["--max-cg", "1"], "max_cg=1"),
    (["--line-depth", "13"], "line_depth=13"),
    (["--pi", "4"], "differs from the build's pi=2"),
])
def test_rtl_command_rejects_a_build_that_does_not_fit(tmp_path, capsys, extra, needle):
    build = _build(tmp_path)
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), *extra, str(build)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not out.exists()


def test_rtl_command_rejects_a_missing_build(tmp_path, capsys):
    out = tmp_path / "rtl"
    assert main(["rtl", "-o", str(out), str(tmp_path / "nope")]) == 2
    assert "not a build folder" in capsys.readouterr().err
    assert not out.exists()
