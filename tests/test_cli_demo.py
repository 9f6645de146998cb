"""`rep-accel demo`: every stage runs, every file it names exists and agrees with an
independent recomputation from those files, and bad options give one-line errors."""

import json

import numpy as np
import pytest

from rep_accel import cli, golden, images, numerics
from rep_accel.checkpoints import load_fused
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.layout import layer_cycles
from rep_accel.sim.cycle import read_trace


def _main(capsys, *argv):
    rc = cli.main(["demo", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def _check_common(out_dir, out, n_images, clock_mhz):
    """What every demo run writes and reports, recomputed from its files."""
    report = json.loads((out_dir / "report.json").read_text())
    # deploy.pt holds exactly the fused bundled model.
    deployed, bundled = load_fused(out_dir / "deploy.pt"), load_fused(default_model_path())
    assert len(deployed.layers) == len(bundled.layers)
    for a, b in zip(deployed.layers, bundled.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
        assert (a.stride, a.groups) == (b.stride, b.groups)
    # The simulated digits are held-out digits, one per class for n_images = 10.
    _, _, x_test, y_test = mnist_split()
    x = np.load(out_dir / "inputs.npy")
    assert x.shape == (n_images, 1, 28, 28) and x.dtype == np.float32
    rows = [int(np.flatnonzero((x_test == xi).all(axis=(1, 2, 3)))[0]) for xi in x]
    labels = y_test[rows]
    sim = report["simulate"]
    assert sim["labels"] == labels.tolist()
    # Predictions and accuracy from the build folder through the golden model.
    build = images.load_build(out_dir / "build")
    x_q = numerics.quantize_input(x, build.qnet.input_scale)
    gold = golden.run_network(build.qnet, x_q).argmax(1)
    assert sim["sim_predictions"] == gold.tolist() == sim["int8_predictions"]
    assert sim["sim_correct"] == int(np.sum(gold == labels))
    assert sim["float_predictions"] == deployed.forward(x).argmax(1).tolist()
    int8_top1 = float(np.mean(golden.predict(build.qnet, x_test) == y_test))
    assert report["compile"]["int8_top1"] == int8_top1
    assert f"int8 {100 * int8_top1:.1f}%" in out
    # Cycles from the schedule of the build's layers; frames/s at the given clock.
    cycles = sum(layer_cycles(layer.shape, build.generics) for layer in build.qnet.layers)
    assert sim["cycles_per_frame"] == cycles == sim["cycle_mode_cycles"]
    assert sim["frames_per_second"] == clock_mhz * 1e6 / cycles
    assert f"{cycles:,} cycles per frame" in out
    sim_json = json.loads((out_dir / "simulate.json").read_text())
    assert sim_json["report"]["cycles"] == cycles
    # The trace is digit 0's, every layer, from the descriptor to done.
    trace = read_trace(out_dir / "trace.csv")
    assert len(trace) == cycles + len(build.qnet.layers)
    for path in ("deploy.pt", "build/", "inputs.npy", "simulate.txt", "trace.csv", "report.json"):
        assert str(out_dir / path.rstrip("/")) in out
    return report


def test_demo_without_rtl(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    rc, out, err = _main(capsys, "-o", out_dir, "--images", 10, "--no-rtl", "--clock-mhz", 125)
    assert rc == 0, err
    for k, stage in enumerate(("fuse", "compile", "simulate"), 1):
        assert f"[{k}/3] {stage}" in out
    assert "RTL        skipped (--no-rtl)" in out
    report = _check_common(out_dir, out, 10, 125.0)
    assert sorted(report["simulate"]["labels"]) == list(range(10))
    assert not (out_dir / "rtl").exists()
    # The best ECP5 configurations of RepVGG-A0, at the demo's clock, from the schedule.
    from rep_accel import workload
    from rep_accel.generics import HardwareGenerics
    from rep_accel.layout import schedule_layer
    work = workload.zoo_workload("A0", (3, 224, 224))
    for e, (label, _) in zip(report["ecp5"], workload.ECP5_85F_CONFIGURATIONS):
        g = HardwareGenerics.from_dict(e["generics"])
        assert e["cycles"] == sum(schedule_layer(s, g).cycles for s in work.shapes)
        assert abs(e["frames_per_second"] - 125e6 / e["cycles"]) < 1e-9
        assert e["frames_per_second_ddr3"] <= e["frames_per_second"]
        assert f"{label}: {e['cycles']:,} cycles per frame" in out
    assert len(report["ecp5"]) == len(workload.ECP5_85F_CONFIGURATIONS)
    assert [(g.unit, g.pi * g.po, g.lut_multipliers) for g in map(HardwareGenerics.from_dict, (e["generics"] for e in report["ecp5"]))] \
        == [("direct", 16, 0), ("direct", 32, 132), ("winograd", 12, 36)]


@pytest.mark.slow
def test_demo_full(tmp_path, capsys):
    """With the RTL stages: the Verilog is sized for the build and lints clean; one layer runs
    in Verilator with outputs, cycles and port trace equal to the simulator's."""
    from rep_accel.commands.rtl import generics_for
    from rep_accel.verification.cases import read_results

    out_dir = tmp_path / "demo"
    rc, out, err = _main(capsys, "-o", out_dir, "--images", 10)
    assert rc == 0, err
    for k, stage in enumerate(("fuse", "compile", "simulate", "rtl", "verify"), 1):
        assert f"[{k}/5] {stage}" in out
    report = _check_common(out_dir, out, 10, 150.0)
    desc = json.loads((out_dir / "rtl" / "rep_accel_top.json").read_text())
    want, build = generics_for(out_dir / "build")
    assert desc["generics"] == want.to_dict() == report["rtl"]["generics"]
    assert "module rep_accel_top" in (out_dir / "rtl" / "rep_accel_top.v").read_text()
    # The RTL run, from the testbench's own results file.
    v = report["verify"]
    layer = build.qnet.layers[v["layer_index"]]
    assert layer.shape.stride == 1 and v["layer"] == layer.name
    res = read_results(out_dir / "verify")
    assert res["complete"] and len(res["records"]) == 1
    r = res["records"][0]
    s = layer.shape
    assert r["passed"] and r["trace_compared"] and r["trace_equal"] and v["passed"]
    assert r["outputs_compared"] == s.cout * s.out_height * s.out_width == v["outputs_compared"]
    assert r["rtl_cycles"] == r["rtl_cycles_reported"] == r["sim_cycles"] == layer_cycles(s, want) == v["rtl_cycles"]
    assert f"{v['rtl_cycles']:,} RTL cycles" in out and str(out_dir / "verify") in out


@pytest.mark.parametrize("argv, words", [
    (["--images", "0", "--no-rtl"], "--images 0"),
    (["--images", "1001", "--no-rtl"], "--images 1001"),
    (["--clock-mhz", "0", "--no-rtl"], "--clock-mhz 0"),
])
def test_demo_bad_options(tmp_path, capsys, argv, words):
    rc, out, err = _main(capsys, "-o", tmp_path / "d", *argv)
    assert rc == 2
    assert err.startswith("rep-accel demo: error: ") and words in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists()


def test_demo_output_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc, out, err = _main(capsys, "-o", f, "--no-rtl")
    assert rc == 2 and "is a file" in err and f.read_text() == "x"
