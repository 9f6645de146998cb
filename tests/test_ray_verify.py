"""`rep-accel verify --workers`: every input an RTL task on a local 2-CPU Ray cluster, each
in a temporary folder with its own build and HDL simulator cache, removed however the
task ends; the merged results equal one serial run over all inputs. A small random
network on a 2x3 array in Icarus (compiles in seconds)."""

from __future__ import annotations

import json
import tempfile

import numpy as np
import pytest

from cocotb_cases import G_2X3, need_sim
from rep_accel import images
from rep_accel.cli import main
from rep_accel.errors import RepAccelError
from rep_accel.sim.synthetic import random_qnetwork
from rep_accel.verification import runner as R

ray = pytest.importorskip("ray")


def _generics_args(g):
    return ["--w-max", str(g.w_max), "--max-cg", str(g.max_cg), "--line-depth", str(g.line_depth)]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _task_folders():
    return sorted(p.name for p in __import__("pathlib").Path(tempfile.gettempdir()).glob("rep-accel-verify-task*"))


@pytest.mark.slow
def test_verify_tasks_equal_one_run(cluster, tmp_path, capsys):
    need_sim("icarus")
    qnet = random_qnetwork([(2, 5, 2, 1), (5, 6, 1, 1)], (2, 7, 9), seed=3, num_classes=4)
    build = images.write_build(qnet, G_2X3, tmp_path / "build")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).normal(0, 1.5, (3, 2, 7, 9)).astype(np.float32))
    common = ["verify", str(build), "--input", str(x), "--sim", "icarus", *_generics_args(G_2X3)]
    before = _task_folders()
    assert main([*common, "--build-cache", str(tmp_path / "cache"), "--json", str(tmp_path / "serial.json")]) == 0
    assert main([*common, "--workers", "2", "--json", str(tmp_path / "ray.json")]) == 0
    out = capsys.readouterr().out
    assert "as 3 task(s) on Ray (already running in this process), 2 CPU(s), each with a Verilator cache of its own" \
        in out
    assert out.count("RTL built in") == 3  # every task compiled in its own cache
    assert _task_folders() == before        # and removed its folder
    serial = json.loads((tmp_path / "serial.json").read_text())["results"]
    dist = json.loads((tmp_path / "ray.json").read_text())["results"]
    key = ("image", "layer", "passed", "rtl_cycles", "sim_cycles", "trace_equal", "outputs_compared")
    assert [tuple(r[k] for k in key) for r in serial["records"]] == [tuple(r[k] for k in key) for r in dist["records"]]
    assert [r["image"] for r in dist["records"]] == [0, 0, 1, 1, 2, 2]
    for k in ("rtl_logits", "sim_logits", "golden_logits", "rtl_pred", "head", "logits_equal_sim", "pred_equal_golden"):
        assert serial["network"][k] == dist["network"][k], k
    assert dist["complete"] and dist["network"]["images"] == 3


def test_task_folder_removed_on_errors(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    files = {"manifest.json": b"{}"}
    with pytest.raises(RepAccelError, match="simulator 'nosuchsim'"):
        R.run_rtl_task(R.RtlTask(0, G_2X3, files, np.zeros((1, 2, 7, 9), np.int8), 0, None, sim="nosuchsim"))
    with pytest.raises(RepAccelError, match="leaves the folder"):
        R.run_rtl_task(R.RtlTask(1, G_2X3, {"../outside.bin": b"x"}, np.zeros((1, 2, 7, 9), np.int8), 0, None))
    assert list(tmp_path.iterdir()) == []


def test_merge_results_concatenates_in_order():
    def part(image, ok):
        return {"kind": "network", "generics": {}, "complete": True, "seconds": 1.0, "rtl_seconds": 0.5,
                "clock_cycles": 10, "records": [{"image": image, "passed": ok}],
                "network": {"images": 1, "layers": None, "head": True, "rtl_pred": [image], "logits_equal_sim": ok,
                            "pred_equal_golden": True, "failures": [] if ok else ["RTL logits differ"]}}
    merged = R.merge_results([part(0, True), part(1, False)])
    assert [r["image"] for r in merged["records"]] == [0, 1]
    assert merged["clock_cycles"] == 20 and merged["rtl_seconds"] == 1.0 and merged["complete"]
    net = merged["network"]
    assert net["images"] == 2 and net["rtl_pred"] == [0, 1]
    assert net["logits_equal_sim"] is False and net["pred_equal_golden"] is True
    assert net["failures"] == ["RTL logits differ"]
