"""`rep-accel compile`: the default model, user calibration data (.npy and image folders),
determinism, and every bad input giving one line, exit status 2 and nothing written."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from rep_accel import golden, images, quantize
from rep_accel.checkpoints import load_fused
from rep_accel.cli import main
from rep_accel.datasets import MNIST_MEAN, MNIST_STD, default_model_path, mnist_split
from rep_accel.testing import assert_qnet_equal


@pytest.fixture(scope="module")
def digits():
    x_train, _, x_test, y_test = mnist_split()
    return x_train, x_test, y_test


@pytest.fixture
def model_copy(tmp_path):
    """The default checkpoint at another path: an ordinary user model, which needs --calib."""
    p = tmp_path / "model.pt"
    shutil.copy(default_model_path(), p)
    return p


def run(capsys, *argv):
    rc = main(["compile", *map(str, argv)])
    out, err = capsys.readouterr()
    return rc, out, err


def test_default_model_without_calib(tmp_path, capsys, digits):
    out_dir = tmp_path / "build"
    rc, out, err = run(capsys, "-o", out_dir)
    assert rc == 0, err
    fused = load_fused(default_model_path())
    for layer in fused.layers:
        assert layer.name in out
    assert "SQNR dB" in out and "head (GAP+FC)" in out and "total" in out
    build = images.load_build(out_dir)
    assert build.generics.pi == 8 and build.generics.po == 8
    # The build is the default calibration: the first DEFAULT_NUM_CALIB training digits.
    x_train, x_test, y_test = digits
    expected = quantize.quantize_network(fused, x_train[:quantize.DEFAULT_NUM_CALIB], show_progress=False)
    assert_qnet_equal(expected, build.qnet)
    assert build.manifest["report"]["observer"] == quantize.DEFAULT_OBSERVER
    float_top1 = (fused.forward(x_test).argmax(1) == y_test).mean()
    int8_top1 = (golden.predict(build.qnet, x_test) == y_test).mean()
    assert abs(float_top1 - int8_top1) <= 0.005


def test_npy_calibration_other_array_and_determinism(tmp_path, capsys, digits, model_copy):
    x_train = digits[0]
    np.save(tmp_path / "calib.npy", x_train[:300])
    outs = []
    for k in range(2):
        out_dir = tmp_path / f"b{k}"
        rc, out, err = run(capsys, model_copy, "-o", out_dir, "--calib", tmp_path / "calib.npy", "--num-calib", 64,
                           "--pi", 4, "--po", 6, "--observer", "percentile", "--input-size", "1,28,28")
        assert rc == 0, err
        outs.append(out_dir)
    b = images.load_build(outs[0])
    assert (b.generics.pi, b.generics.po) == (4, 6)
    assert b.qnet.meta == {"observer": "percentile", "num_calib": 64}
    for f in sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file()):
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def test_image_folder_calibration(tmp_path, capsys, model_copy):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):  # 32x32 RGB noise: converted to grey and resized to 28x28
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    (folder / "notes.txt").write_text("not an image, ignored")
    rc, out, err = run(capsys, model_copy, "-o", tmp_path / "b", "--calib", folder, "--input-size", "1,28,28",
                       "--mean", MNIST_MEAN, "--std", MNIST_STD, "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["num_calib"] == 5 and len(report["layers"]) == 7
    assert images.load_build(tmp_path / "b").qnet.input_size == (1, 28, 28)


def _checkpoint_with(path, key, index, value):
    """The default checkpoint with one tensor entry changed, written to `path`."""
    ck = torch.load(default_model_path(), weights_only=True)
    ck["state_dict"][key].view(-1)[index] = value
    p = path
    torch.save(ck, p)
    return p


def test_bad_inputs_one_line_exit_2_nothing_written(tmp_path, capsys, digits, model_copy):
    x_train = digits[0]
    out_dir = tmp_path / "out"
    np.save(tmp_path / "empty.npy", x_train[:0])
    (tmp_path / "garbage.npy").write_bytes(b"this is not numpy")
    np.save(tmp_path / "rgb.npy", np.repeat(x_train[:4], 3, axis=1))
    nan = x_train[:8].copy()
    nan[2, 0, 5, 5] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "good.npy", x_train[:16])
    np.save(tmp_path / "ints.npy", (x_train[:4] * 10).astype(np.int64))
    (tmp_path / "empty_dir").mkdir()
    bad_imgs = tmp_path / "bad_imgs"
    bad_imgs.mkdir()
    (bad_imgs / "a.png").write_bytes(b"\x89PNG broken")
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    nan_model = _checkpoint_with(tmp_path / "nan.pt", "stages.1.0.conv3x3.conv.weight", 0, float("nan"))
    big_bias_model = _checkpoint_with(tmp_path / "bias.pt", "stages.1.0.conv3x3.bn.bias", 0, 1e9)
    good = ["--calib", tmp_path / "good.npy"]
    cases = [
        ([model_copy, "-o", out_dir], "needs calibration data"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "empty.npy"], "no calibration inputs"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "garbage.npy"], "not a readable .npy"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "missing.npy"], "no such file or folder"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "rgb.npy"], "3 channels, the model takes 1"),
        ([model_copy, "-o", out_dir, *good, "--input-size", "1,32,32"], "--input-size is 1x32x32"),
        ([model_copy, "-o", out_dir, *good, "--input-size", "1,x,32"], "three positive integers"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "nan.npy"], "NaN/inf in 1 inputs"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "ints.npy"], "must be float"),
        ([model_copy, "-o", out_dir, "--calib", tmp_path / "empty_dir", "--input-size", "1,28,28",
          "--mean", "0.1", "--std", "0.3"], "no images"),
        ([model_copy, "-o", out_dir, "--calib", bad_imgs, "--input-size", "1,28,28", "--mean", "0.1",
          "--std", "0.3"], "not a readable image"),
        ([model_copy, "-o", out_dir, "--calib", bad_imgs, "--input-size", "1,28,28"], "needs --mean and --std"),
        ([nan_model, "-o", out_dir, *good], "holds NaN or infinite values"),
        ([big_bias_model, "-o", out_dir, *good], "layer stage1.0, output channel 0: bias"),
        ([model_copy, "-o", a_file, *good], "is a file"),
        ([tmp_path / "nope.pt", "-o", out_dir, *good], "no such file"),
        ([model_copy, "-o", out_dir, *good, "--pi", 100], "larger than the 64x64"),
        ([model_copy, "-o", out_dir, *good, "--w-max", 20], "wider than W_MAX=20"),
        ([model_copy, "-o", out_dir, *good, "--num-calib", 0], "--num-calib 0"),
    ]
    for argv, message in cases:
        rc, out, err = run(capsys, *argv)
        assert rc == 2, (argv, out, err)
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rep-accel compile: error: "), err
        assert message in lines[0], (message, lines[0])
        assert not out_dir.exists(), argv
        assert a_file.read_text() == "keep me"
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == [], leftovers  # no temporary folders left behind
