"""mmpretrain checkpoints (OpenMMLab's RepVGG zoo): read, fused and written back in their
own layout; mmengine's training checkpoints with `message_hub`; SE (D2se) refused; the
CLI's fuse, compile and simulate on one.

The layout is produced by renaming this package's own models' keys
(tests/checkpoints_layouts.py), never with mmpretrain or mmengine code.
"""

import json
import os
import sys
import types

import numpy as np
import pytest
import torch

from checkpoints_layouts import mmengine_checkpoint, rename_key, trained_like
from rep_accel import golden, images
from rep_accel.checkpoints import load_checkpoint, save_deploy
from rep_accel.cli import main
from rep_accel.datasets import default_model_path, mnist_split
from rep_accel.fusion import fuse_model
from rep_accel.models import GROUPWISE_LAYERS, RepVGG
from rep_accel.testing import assert_qnet_equal
from test_checkpoints import _WritesMarker, assert_matches_model, assert_same_network, expect_error


class HistoryBuffer:
    """Stands for mmengine.logging.HistoryBuffer: a plain object holding numpy arrays,
    which is what mmengine's message_hub stores (pickled by class name)."""

    def __init__(self, values):
        self._log_history = np.asarray(values, dtype=np.float64)
        self._count_history = np.ones(len(values), dtype=np.int64)
        self.max_length = 1000000


def save_with_mmengine_objects(obj, path, monkeypatch):
    """torch.save `obj` while a module 'mmengine.logging.history_buffer' exists, as on
    the machine that trained the model; it is gone again when the file is read."""
    module = types.ModuleType("mmengine.logging.history_buffer")
    HistoryBuffer.__module__ = module.__name__
    module.HistoryBuffer = HistoryBuffer
    with monkeypatch.context() as m:
        for name in ("mmengine", "mmengine.logging"):
            m.setitem(sys.modules, name, types.ModuleType(name))
        m.setitem(sys.modules, module.__name__, module)
        torch.save(obj, path)
    HistoryBuffer.__module__ = __name__
    assert "mmengine.logging.history_buffer" not in sys.modules
    return path


def training_checkpoint(model: RepVGG) -> dict:
    ckpt = mmengine_checkpoint(model)
    ckpt["message_hub"] = {"log_scalars": {"train/lr": HistoryBuffer([0.1, 0.05]),
                                           "train/loss": HistoryBuffer([2.3, 1.7, 1.2])},
                           "runtime_info": {"epoch": 120, "iter": 600600, "max_iters": 600600,
                                            "best_acc": np.float64(72.4)},
                           "resumed_keys": {"epoch": True, "iter": True}}
    return ckpt


def test_training_checkpoint_with_message_hub_loads_fuses_and_writes_deploy(tmp_path, monkeypatch):
    model = trained_like("tiny", seed=5, in_channels=3, num_classes=10)
    path = save_with_mmengine_objects(training_checkpoint(model), tmp_path / "epoch_120.pth", monkeypatch)
    # Plain weights_only loading refuses the file: it stores mmengine objects.
    with pytest.raises(Exception, match="mmengine"):
        torch.load(path, weights_only=True)
    loaded = load_checkpoint(path)
    assert loaded.layout == "mmpretrain" and not loaded.deploy and loaded.variant == "tiny"
    assert loaded.config == model.config
    assert any("state_dict" in n for n in loaded.notes)
    assert_same_network(loaded.network, fuse_model(model))
    assert_matches_model(loaded.network, model)
    # The deploy file is an mmengine checkpoint with branch_reparam keys: exactly the keys of
    # mmpretrain's deploy-mode model (ours renamed).
    out = tmp_path / "deploy.pth"
    save_deploy(loaded, out)
    raw = torch.load(out, weights_only=True)
    assert set(raw) == {"meta", "state_dict"}
    deployed = RepVGG(model.config)
    deployed.load_state_dict(model.state_dict())
    deployed.eval().switch_to_deploy()
    want = {rename_key(k, "mmpretrain"): tuple(v.shape) for k, v in deployed.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in raw["state_dict"].items()} == want
    assert all(k.endswith(("branch_reparam.weight", "branch_reparam.bias")) or k.startswith("head.fc.")
               for k in want)
    back = load_checkpoint(out)
    assert back.layout == "mmpretrain-deploy" and back.deploy and back.config == model.config
    assert_same_network(back.network, loaded.network)
    assert_matches_model(back.network, model)


def test_paper_variant_a0_stem_width_and_head(tmp_path):
    # A0: stem min(64, 64 x 0.75) = 48 channels, stages 48, 96, 192, 1280; head.fc 1280 -> 1000.
    model = trained_like("A0", seed=3, in_channels=3, num_classes=1000)
    torch.save(mmengine_checkpoint(model), tmp_path / "repvgg-A0.pth")
    loaded = load_checkpoint(tmp_path / "repvgg-A0.pth")
    assert loaded.variant == "A0" and loaded.config.widths == (48, 48, 96, 192, 1280)
    assert loaded.network.fc_weight.shape == (1000, 1280)
    assert_same_network(loaded.network, fuse_model(model))
    assert_matches_model(loaded.network, model, side=32)


@pytest.mark.slow
def test_groupwise_variant_b1g4(tmp_path):
    # Groupwise layers are numbered from 1 at the first block after the stem: blocks 2, 4, ... 26.
    model = trained_like("B1g4", seed=4, in_channels=3, num_classes=1000)
    torch.save(mmengine_checkpoint(model), tmp_path / "repvgg-B1g4.pth")
    loaded = load_checkpoint(tmp_path / "repvgg-B1g4.pth")
    assert loaded.variant == "B1g4"
    assert [i for i, l in enumerate(loaded.network.layers) if l.groups == 4] == list(GROUPWISE_LAYERS)
    assert_same_network(loaded.network, fuse_model(model))


def test_d2se_and_other_backbones_are_not_supported(tmp_path):
    ckpt = mmengine_checkpoint(trained_like("nano", 0))
    # D2se: mmpretrain's SELayer in every block (se_layer.conv1/conv2 ConvModules).
    se = dict(ckpt["state_dict"], **{"backbone.stem.se_layer.conv1.conv.weight": torch.zeros(2, 8, 1, 1),
                                     "backbone.stem.se_layer.conv1.conv.bias": torch.zeros(2),
                                     "backbone.stem.se_layer.conv2.conv.weight": torch.zeros(8, 2, 1, 1)})
    torch.save(dict(ckpt, state_dict=se), tmp_path / "d2se.pth")
    expect_error(tmp_path / "d2se.pth", "not supported", "SE", "backbone.stem.se_layer.conv1")
    # yolox-pai-small's MTSPPF after the last stage.
    ppf = dict(ckpt["state_dict"], **{"backbone.ppf.conv1.conv.weight": torch.zeros(4, 8, 1, 1)})
    torch.save(dict(ckpt, state_dict=ppf), tmp_path / "ppf.pth")
    expect_error(tmp_path / "ppf.pth", "not supported", "backbone.ppf.conv1.conv.weight")
    # An official-layout key beside mmpretrain ones is not silently dropped.
    odd = dict(ckpt["state_dict"], **{"backbone.stage_1.0.rbr_dense.conv.weight": torch.zeros(8, 8, 3, 3)})
    torch.save(dict(ckpt, state_dict=odd), tmp_path / "odd.pth")
    expect_error(tmp_path / "odd.pth", "not supported", "rbr_dense")
    missing = {k: v for k, v in ckpt["state_dict"].items() if k != "backbone.stage_1.0.branch_1x1.norm.running_var"}
    torch.save(dict(ckpt, state_dict=missing), tmp_path / "missing.pth")
    expect_error(tmp_path / "missing.pth", "inconsistent", "backbone.stage_1.0", "branch_1x1.norm.running_var")


def test_mmengine_objects_do_not_open_the_door_to_code(tmp_path, monkeypatch):
    """Stand-ins are given to mmengine names only: anything else in the file is refused
    before it runs."""
    marker = tmp_path / "MARKER"
    ckpt = training_checkpoint(trained_like("nano", 0))
    ckpt["message_hub"]["hook"] = _WritesMarker(marker)
    path = save_with_mmengine_objects(ckpt, tmp_path / "evil.pth", monkeypatch)
    expect_error(path, "refused", "exec")
    assert not marker.exists()


def _compile(capsys, *argv):
    rc = main(["compile", *map(str, argv)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


def test_cli_fuse_compile_simulate_on_an_mmpretrain_checkpoint(tmp_path, capsys):
    """The bundled model saved in mmpretrain's layout compiles to the very same integer
    network as the bundled file itself, and simulates to the golden predictions."""
    bundled = torch.load(default_model_path(), weights_only=True)
    mm = {"meta": {"epoch": 30}, "state_dict": {rename_key(k, "mmpretrain"): v for k, v in bundled["state_dict"].items()}}
    torch.save(mm, tmp_path / "mnist_mmpretrain.pth")
    x_train, _, x_test, _ = mnist_split()
    np.save(tmp_path / "calib.npy", x_train[:64])
    np.save(tmp_path / "x.npy", x_test[:6])

    rc = main(["fuse", str(tmp_path / "mnist_mmpretrain.pth"), "-o", str(tmp_path / "deploy.pth")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "layout mmpretrain" in out and "mmpretrain deploy keys" in out
    assert load_checkpoint(tmp_path / "deploy.pth").layout == "mmpretrain-deploy"

    _compile(capsys, tmp_path / "mnist_mmpretrain.pth", "-o", tmp_path / "b_mm", "--calib", tmp_path / "calib.npy")
    _compile(capsys, default_model_path(), "-o", tmp_path / "b_own", "--calib", tmp_path / "calib.npy")
    _compile(capsys, tmp_path / "deploy.pth", "-o", tmp_path / "b_deploy", "--calib", tmp_path / "calib.npy")
    build = images.load_build(tmp_path / "b_mm")
    assert_qnet_equal(build.qnet, images.load_build(tmp_path / "b_own").qnet)
    assert_qnet_equal(build.qnet, images.load_build(tmp_path / "b_deploy").qnet)

    rc = main(["simulate", str(tmp_path / "b_mm"), "--input", str(tmp_path / "x.npy"),
               "--json", str(tmp_path / "report.json")])
    out, err = capsys.readouterr()
    assert rc == 0, err
    predictions = json.loads((tmp_path / "report.json").read_text())["predictions"]
    assert predictions == golden.predict(build.qnet, x_test[:6]).tolist()
    assert os.path.getsize(tmp_path / "report.json") > 0
