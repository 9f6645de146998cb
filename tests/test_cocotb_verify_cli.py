"""`rep-accel verify`: the default model on the RTL (Verilator), a small random network with
waveforms (Icarus), and one-line errors (exit 2) for bad inputs before anything is built."""

import json

import numpy as np
import pytest

from cocotb_cases import G_2X3, G_4X4, cache_dir, default_model, need_sim, spread
from rep_accel import images
from rep_accel.cli import main
from rep_accel.sim.synthetic import random_qnetwork


def _generics_args(g):
    return ["--w-max", str(g.w_max), "--max-cg", str(g.max_cg), "--line-depth", str(g.line_depth)]


@pytest.fixture(scope="module")
def default_build(tmp_path_factory):
    """The default model's build for a 4x4 array and three held-out test digits (float, normalized)."""
    qnet, x_test, y_test = default_model()
    folder = tmp_path_factory.mktemp("verify")
    build = images.write_build(qnet, G_4X4, folder / "build")
    x = folder / "x.npy"
    np.save(x, x_test[spread(3, len(y_test))])
    return build, x


def test_verify_default_model(default_build, tmp_path, capsys):
    build, x = default_build
    report = tmp_path / "verify.json"
    rc = main(["verify", str(build), "--input", str(x), "--images", "2", "--build-cache", str(cache_dir()),
               "--json", str(report), *_generics_args(G_4X4)])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert "PASS: the RTL matches" in out
    lines = [ln for ln in out.splitlines() if ln[:1].isdigit() and " pass " in f" {ln} "]
    assert len(lines) == 7  # one row per layer, each passed
    assert "logits equal the simulator's, predictions equal the golden model's" in out
    assert "cycles/s" in out
    doc = json.loads(report.read_text())
    assert doc["passed"] and doc["results"]["network"]["logits_equal_sim"]
    recs = doc["results"]["records"]
    assert len(recs) == 2 * 7 and all(r["passed"] and r["rtl_cycles"] == r["sim_cycles"] for r in recs)


def test_verify_some_layers(default_build, capsys):
    build, x = default_build
    rc = main(["verify", str(build), "--input", str(x), "--images", "1", "--layers", "1,2",
               "--build-cache", str(cache_dir()), *_generics_args(G_4X4)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "head not run" in out
    assert "PASS" in out
    rows = [ln for ln in out.splitlines() if ln.startswith(("1 stage1.0", "2 stage2.0"))]
    assert len(rows) == 2 and all(" pass " in r for r in rows)
    assert not any(ln.startswith("0 stage0.0") for ln in out.splitlines())


def test_verify_icarus_waves_small_network(tmp_path, capsys):
    """A random 3-layer network (stride 2, groups 2, odd sizes) on a 2x3 array in Icarus, with waveforms."""
    need_sim("icarus")
    qnet = random_qnetwork([(2, 5, 2, 1), (5, 6, 1, 1), (6, 8, 2, 2)], (2, 7, 9), seed=3, num_classes=4)
    build = images.write_build(qnet, G_2X3, tmp_path / "build")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).normal(0, 1.5, (2, 2, 7, 9)).astype(np.float32))
    waves = tmp_path / "w.fst"
    rc = main(["verify", str(build), "--input", str(x), "--sim", "icarus", "--waves", str(waves),
               "--build-cache", str(cache_dir()), *_generics_args(G_2X3)])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0
    assert f"waveforms written to {waves}" in out
    assert waves.is_file() and waves.stat().st_size > 1000
    assert waves.read_bytes()[:1] == b"\x00"  # an FST file starts with its header block (type 0)


@pytest.mark.parametrize("extra,message", [
    (["--layers", "0,9"], "--layers 0,9"),
    (["--layers", "x"], "--layers x"),
    (["--images", "0"], "--images 0"),
    (["--images", "9"], "--images 9"),
    (["--pi", "8"], "--pi 8"),
    (["--waves", "w.fst"], "--waves w.fst"),  # Verilator writes VCD
    (["--json", "r.txt"], "--json r.txt"),
    (["--max-cg", "2"], "max_cg=2"),
])
def test_verify_bad_options(default_build, extra, message, capsys):
    build, x = default_build
    rc = main(["verify", str(build), "--input", str(x), "--build-cache", str(cache_dir()), *extra])
    err = capsys.readouterr().err
    assert rc == 2
    assert len(err.strip().splitlines()) == 1 and message in err, err


def test_verify_bad_inputs(default_build, tmp_path, capsys):
    build, x = default_build
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, np.zeros((2, 3, 28, 28), np.float32))
    cases = [
        (["verify", str(tmp_path / "nobuild"), "--input", str(x)], "nobuild"),
        (["verify", str(build), "--input", str(tmp_path / "none.npy")], "none.npy"),
        (["verify", str(build), "--input", str(wrong)], "wrong.npy"),
    ]
    for argv, message in cases:
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2 and len(err.strip().splitlines()) == 1 and message in err, (argv, err)


@pytest.mark.slow
def test_verify_verilator_waves(tmp_path, capsys):
    """Waveforms (VCD) from Verilator (a build with tracing) for the small random network."""
    qnet = random_qnetwork([(2, 5, 2, 1), (5, 6, 1, 1)], (2, 6, 5), seed=4, num_classes=3)
    build = images.write_build(qnet, G_2X3, tmp_path / "build")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(4).normal(0, 1.5, (1, 2, 6, 5)).astype(np.float32))
    waves = tmp_path / "v.vcd"
    rc = main(["verify", str(build), "--input", str(x), "--waves", str(waves), "--build-cache", str(cache_dir()),
               *_generics_args(G_2X3)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert waves.is_file() and waves.stat().st_size > 1000
    head = waves.read_text(errors="replace")[:4000]
    assert head.startswith("$") and "$timescale" in head and "act_out__valid" in head
