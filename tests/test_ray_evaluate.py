"""`evaluate` on a local Ray cluster of 2 CPUs: the same logits as the serial run, bit for
bit and in order, and a shard whose worker is killed is run again (no image lost or
counted twice). Ray's start-up takes seconds, so the cluster is started once for the module."""

from __future__ import annotations

import os

import numpy as np
import pytest

from rep_accel import distributed, evaluate, images
from rep_accel.checkpoints import load_fused
from rep_accel.cli import main
from rep_accel.datasets import default_model_path, mnist_split

ray = pytest.importorskip("ray")

N_IMAGES, SHARD = 120, 20


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The bundled model compiled for a 2x2 array, its float network, N_IMAGES held-out digits."""
    root = tmp_path_factory.mktemp("ray_evaluate")
    build = root / "build"
    assert main(["compile", "-o", str(build), "--pi", "2", "--po", "2", "--num-calib", "200"]) == 0
    x, y = mnist_split()[2:]
    np.savez_compressed(root / "d.npz", x=x[:N_IMAGES], y=y[:N_IMAGES])
    model = evaluate.EvalModel.from_build(images.load_build(build), load_fused(default_model_path()))
    return root, model


def _serial(model, data):
    return evaluate.evaluate(model, evaluate.open_data(data), distributed.SerialEngine(), SHARD, keep_logits=True)


def _assert_same(a: evaluate.Evaluation, b: evaluate.Evaluation):
    la, lb = a.logits, b.logits
    assert set(la) == set(lb) == {"float", "int8", "simulator"}
    for kind in la:
        assert la[kind].dtype == lb[kind].dtype and la[kind].shape == (N_IMAGES, 10)
        assert np.array_equal(la[kind], lb[kind]), kind  # every logit, bit for bit, in order
    ra, rb = a.report(), b.report()
    for k in ("engine", "workers", "seconds", "simulator_seconds_per_image"):
        ra.pop(k), rb.pop(k)
    assert ra == rb


def test_distributed_equals_serial(cluster, setup):
    root, model = setup
    serial = _serial(model, root / "d.npz")
    with distributed.session() as engine:
        assert isinstance(engine, distributed.RayEngine) and engine.workers == 2
        dist = evaluate.evaluate(model, evaluate.open_data(root / "d.npz"), engine, SHARD, keep_logits=True)
    _assert_same(serial, dist)
    assert dist.passed and dist.images == N_IMAGES and (dist.seen == 1).all()
    # The int8 logits are the golden model's own, and the float logits the float network's.
    assert np.array_equal(dist.logits["simulator"], dist.logits["int8"])
    x = evaluate.open_data(root / "d.npz").read(0, N_IMAGES)
    assert np.array_equal(dist.logits["float"].argmax(1), model.fused.forward(x).argmax(1))


def test_killed_worker_shard_runs_again(cluster, setup, tmp_path):
    root, model = setup
    marker = tmp_path / "killed"
    driver = os.getpid()

    def die_once_on_shard_2(shard, handle):
        """run_shard, but the first attempt at shard 2 kills its worker process."""
        if shard.index == 2 and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return evaluate.run_shard(shard, handle)

    with distributed.session(max_retries=2) as engine:
        dist = evaluate.evaluate(model, evaluate.open_data(root / "d.npz"), engine, SHARD, keep_logits=True,
                                 shard_function=die_once_on_shard_2)
    assert marker.is_file() and int(marker.read_text()) != driver  # a Ray worker died, not this process
    assert dist.images == N_IMAGES and (dist.seen == 1).all()     # every image once
    _assert_same(_serial(model, root / "d.npz"), dist)


def test_cli_joins_a_running_cluster(cluster, setup, tmp_path):
    """`rep-accel evaluate --address` in another process joins the cluster this test started
    (what `ray start --head` gives a user) and computes the serial run's logits."""
    import json
    import subprocess
    import sys

    root, model = setup
    address = ray.get_runtime_context().gcs_address
    js = tmp_path / "r.json"
    r = subprocess.run([sys.executable, "-m", "rep_accel", "evaluate", str(root / "build"), "--data",
                        str(root / "d.npz"), "--checkpoint", str(default_model_path()), "--shard-size", str(SHARD),
                        "--address", address, "--json", str(js)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(js.read_text())
    assert rep["engine"] == f"Ray cluster at {address}, 2 CPU(s)" and rep["images"] == N_IMAGES
    assert rep["logits_sha256"] == _serial(model, root / "d.npz").report()["logits_sha256"]
    assert ray.is_initialized()  # the cluster outlives the command that joined it
