"""`rep-accel simulate`: results equal the golden model, the report in the table and the
JSON, the trace file, and one-line errors (exit 2, nothing written) for bad input."""

import json

import numpy as np
import pytest

from rep_accel import cli, golden, images
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import layer_cycles
from rep_accel.sim import cycle, synthetic

SEED = 424242


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_cli")
    qnet = synthetic.random_zoo_qnetwork("tiny", 24, seed=SEED)
    images.write_build(qnet, HardwareGenerics(pi=4, po=4, w_max=24), root / "build")
    x = np.random.default_rng(SEED).normal(0, 1, (3,) + tuple(qnet.input_size)).astype(np.float32)
    np.save(root / "x.npy", x)
    return root, qnet, x


def _main(capsys, *argv):
    rc = cli.main(["simulate", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("mode", ["fast", "cycle"])
def test_simulate_outputs_and_report(build, capsys, mode):
    root, qnet, x = build
    out_npy, out_json = root / f"logits_{mode}.npy", root / f"report_{mode}.json"
    args = [root / "build", "--input", root / "x.npy", "--out", out_npy, "--json", out_json, "--mode", mode,
            "--clock-mhz", 125, "--pi", 4, "--po", 4]
    if mode == "cycle":
        args += ["--trace", root / "trace.csv"]
    rc, out, err = _main(capsys, *args)
    assert rc == 0, err
    ref = golden.run_network(qnet, golden.quantize_input(x, qnet))
    logits = np.load(out_npy)
    assert logits.dtype == np.float32 and logits.shape == (3, 10)
    assert np.array_equal(logits, (ref.astype(np.float64) * qnet.head.logit_scale).astype(np.float32))
    doc = json.loads(out_json.read_text())
    g = HardwareGenerics(pi=4, po=4, w_max=24)
    want = [layer_cycles(layer.shape, g) for layer in qnet.layers]
    rep = doc["report"]
    assert [lr["cycles"] for lr in rep["layers"]] == want and rep["cycles"] == sum(want)
    assert doc["cycles_per_image"] == [sum(want)] * 3
    assert doc["predictions"] == ref.argmax(axis=1).tolist()
    assert rep["frames_per_second"] == 125e6 / sum(want) and rep["mode"] == mode
    for lr in rep["layers"]:  # every figure of the table is in the JSON and printed
        assert lr["name"] in out and f"{lr['cycles']:,}" in out
        assert {"utilization", "bottleneck", "line_buffer_bytes", "weight_buffer_bytes", "act_read_bytes",
                "weight_read_bytes", "act_write_bytes", "macs"} <= set(lr)
    assert f"{rep['frames_per_second']:.2f} frames/s" in out
    if mode == "cycle":
        t = cycle.read_trace(root / "trace.csv")
        assert t.dtype.names[:2] == ("layer", "cycle") and len(t) == sum(want) + len(want)
        assert int(t["busy"].sum()) == sum(want) - len(want)


def _write_bad_build(root, qnet):
    """A build whose manifest claims a W_MAX narrower than its layers (write_build refuses
    to write one, so the manifest is edited afterwards, its checksum recomputed)."""
    from hostile import rewrite_manifest
    images.write_build(qnet, HardwareGenerics(pi=4, po=4, w_max=24), root / "narrow")
    rewrite_manifest(root / "narrow", lambda m: m["generics"].update(w_max=16))
    return root / "narrow"


def test_bad_inputs_exit_2_before_simulating(build, capsys, tmp_path):
    root, qnet, x = build
    b, xin = root / "build", root / "x.npy"
    out_json = tmp_path / "r.json"

    def fails(*argv, match):
        rc, out, err = _main(capsys, *argv, "--json", out_json)
        assert rc == 2, (out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in err, err
        assert match in lines[0], lines[0]
        assert not out_json.exists()  # nothing written: no simulation started
        return lines[0]

    np.save(tmp_path / "wrong.npy", x[:, :, :-1])
    msg = fails(b, "--input", tmp_path / "wrong.npy", match="wrong.npy")
    assert "(3, 3, 23, 24)" in msg and "3 x 24 x 24" in msg
    (tmp_path / "junk.npy").write_bytes(b"not an array")
    fails(b, "--input", tmp_path / "junk.npy", match="not a readable .npy")
    fails(b, "--input", tmp_path / "missing.npy", match="no such file")
    np.save(tmp_path / "int.npy", x.astype(np.int32))
    fails(b, "--input", tmp_path / "int.npy", match="float32")
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    fails(b, "--input", tmp_path / "nan.npy", match="NaN")
    fails(b, "--input", xin, "--pi", 8, match="PI=4, PO=4")
    fails(b, "--input", xin, "--po", 2, match="--po 2")
    fails(b, "--input", xin, "--trace", tmp_path / "t.csv", match="--mode cycle")
    fails(b, "--input", xin, "--mode", "cycle", "--trace", tmp_path / "t.txt", match=".csv or .npz")
    fails(b, "--input", xin, "--out", tmp_path, match="is a folder")
    fails(b, "--input", xin, "--clock-mhz", 0, match="give a clock in MHz in (0, ")
    fails(tmp_path / "nobuild", "--input", xin, match="not a build folder")
    narrow = _write_bad_build(tmp_path, qnet)
    fails(narrow, "--input", xin, match="stage0.0: input row of 24 pixels is wider than W_MAX=16")
    # a damaged build: params.bin truncated
    damaged = tmp_path / "damaged"
    images.write_build(qnet, HardwareGenerics(pi=4, po=4, w_max=24), damaged)
    data = (damaged / "params.bin").read_bytes()
    (damaged / "params.bin").write_bytes(data[:-100])
    fails(damaged, "--input", xin, match="params.bin")
