"""The model zoo (rep_accel.models), the MNIST split and the bundled default model."""

import json
import math

import numpy as np
import pytest
import torch

from rep_accel.datasets import DEFAULT_INPUT_SIZE, MNIST_MEAN, MNIST_STD, default_model_path, mnist_split
from rep_accel.errors import RepAccelError
from rep_accel.models import (MODEL_NAMES, PAPER_MODEL_NAMES, RepVGGConfig, create_model, match_variant,
                              variant_config)

# The paper's Table 4 (ImageNet, 1000 classes): parameters of the inference-time
# (fused) models in millions, as printed (two decimals).
PAPER_PARAMS_M = {"A0": 8.30, "A1": 12.78, "A2": 25.49, "B0": 14.33, "B1": 51.82, "B1g2": 41.36,
                  "B1g4": 36.12, "B2": 80.31, "B2g4": 55.77, "B3": 110.96}


def fused_params(config: RepVGGConfig) -> int:
    """3x3 kernels + biases of every block, plus the head: counted from the config alone."""
    n = 0
    for cin, cout, _, g in config.block_specs():
        n += cout * (cin // g) * 9 + cout
    return n + config.widths[-1] * config.num_classes + config.num_classes


def test_zoo_names():
    assert set(PAPER_MODEL_NAMES) == set(PAPER_PARAMS_M)
    assert {"nano", "tiny", "mnist"} <= set(MODEL_NAMES)


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS_M))
def test_paper_variants_have_the_papers_parameter_counts(name):
    # Widths, depths and groups all enter the count; the paper prints it truncated.
    count = fused_params(variant_config(name))
    assert math.floor(count / 1e4) / 100 == pytest.approx(PAPER_PARAMS_M[name], abs=1e-9), count


def test_paper_depths_and_stem():
    for name in PAPER_MODEL_NAMES:
        c = variant_config(name)
        assert c.depths == ((1, 2, 4, 14, 1) if name[0] == "A" else (1, 4, 6, 16, 1))
        assert c.widths[0] == min(64, c.widths[1])


def test_groupwise_layers_follow_the_official_map():
    # official: optional_groupwise_layers = [2, 4, ..., 26], layer 1 = first block of stage 1.
    for name, g in (("B1g2", 2), ("B1g4", 4), ("B2g4", 4)):
        cfg = variant_config(name)
        model = create_model(name, num_classes=10)
        blocks = dict(model.blocks())
        assert blocks["stage0.0"].groups == 1
        assert blocks["stage1.0"].groups == 1 and blocks["stage1.1"].groups == g
        assert blocks["stage1.3"].groups == g and blocks["stage2.0"].groups == 1  # layer 5
        assert blocks["stage2.1"].groups == g                                     # layer 6
        assert blocks["stage3.0"].groups == 1 and blocks["stage3.1"].groups == g  # layers 11, 12
        assert blocks["stage3.15"].groups == g and blocks["stage4.0"].groups == 1  # layers 26, 27
        assert sum(1 for x in cfg.groups if x > 1) == 13
    assert all(g == 1 for g in variant_config("B1").groups)


@pytest.mark.parametrize("name", ["nano", "tiny", "mnist"])
@pytest.mark.parametrize("in_channels", [1, 3])
def test_structure_strides_identity_and_shapes(name, in_channels):
    model = create_model(name, in_channels=in_channels, num_classes=7).eval()
    cfg = model.config
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            assert block.stride == (2 if b == 0 else 1)
            has_identity = block.identity is not None
            assert has_identity == (block.cin == block.cout and block.stride == 1)
            assert block.conv3x3.conv.weight.shape == (block.cout, block.cin // block.groups, 3, 3)
            assert block.conv1x1.conv.weight.shape == (block.cout, block.cin // block.groups, 1, 1)
    assert len(model.stages) == 5 and len(model.stages[0]) == 1
    for h in (16, 23, 28, 32):
        with torch.no_grad():
            out = model(torch.randn(2, in_channels, h, h))
        assert out.shape == (2, 7)
        feat = model.features(torch.randn(1, in_channels, h, h))
        side = h
        for _ in range(5):
            side = (side - 1) // 2 + 1
        assert feat.shape == (1, cfg.widths[-1], side, side)


def test_deploy_mode_model_keys():
    model = create_model("tiny", deploy=True, num_classes=10)
    keys = set(model.state_dict())
    assert "stages.0.0.fused.weight" in keys and "stages.2.1.fused.bias" in keys and "head.weight" in keys
    assert not any("conv3x3" in k or "identity" in k for k in keys)
    assert model.deploy


def test_bad_names_and_configs():
    with pytest.raises(RepAccelError, match="unknown RepVGG variant"):
        create_model("C7")
    with pytest.raises(RepAccelError):
        RepVGGConfig(widths=(8, 12), depths=(1, 1), groups=(1, 8), in_channels=3)
    with pytest.raises(RepAccelError):
        RepVGGConfig(widths=(8,), depths=(1,), groups=(1, 1))
    assert create_model("repvgg-a0", num_classes=10).name == "A0"
    assert match_variant(variant_config("B2g4", in_channels=1, num_classes=3)) == "B2g4"


def test_mnist_split():
    x_tr, y_tr, x_te, y_te = mnist_split(seed=0)
    assert x_tr.shape == (4000, *DEFAULT_INPUT_SIZE) and x_te.shape == (1000, *DEFAULT_INPUT_SIZE)
    assert x_tr.dtype == np.float32 and y_tr.dtype == np.int64
    assert np.array_equal(np.bincount(y_te), np.full(10, 100))
    lo, hi = (0 - MNIST_MEAN) / MNIST_STD, (1 - MNIST_MEAN) / MNIST_STD
    assert x_tr.min() == pytest.approx(lo, abs=1e-5) and x_tr.max() == pytest.approx(hi, abs=1e-5)
    # Disjoint: no test image appears in the training set.
    train_rows = {r.tobytes() for r in x_tr.reshape(4000, -1)}
    assert sum(r.tobytes() in train_rows for r in x_te.reshape(1000, -1)) <= 5  # MNIST has a few exact duplicates
    again = mnist_split(seed=0)
    assert np.array_equal(again[3], y_te) and np.array_equal(again[2], x_te)
    other = mnist_split(seed=1)
    assert not np.array_equal(other[2], x_te)


def test_default_model_accuracy_matches_its_json():
    from rep_accel.checkpoints import load_checkpoint

    path = default_model_path()
    assert path.stat().st_size < 1_000_000
    info = json.loads(path.with_suffix(".json").read_text())
    loaded = load_checkpoint(path)
    assert loaded.layout == "rep_accel" and loaded.variant == "mnist" and not loaded.deploy
    assert (loaded.config.in_channels, loaded.config.num_classes) == (1, 10)
    _, _, x_te, y_te = mnist_split(seed=0)
    acc = float((loaded.network.forward(x_te).argmax(1) == y_te).mean())
    with torch.no_grad():
        acc_train_time = float((loaded.to_model()(torch.from_numpy(x_te)).argmax(1).numpy() == y_te).mean())
    assert acc >= 0.97
    assert acc == pytest.approx(info["fused_float_test_top1"], abs=1e-12)
    assert acc_train_time == pytest.approx(info["float_test_top1"], abs=1e-12)
