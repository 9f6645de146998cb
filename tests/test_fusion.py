"""Structural re-parameterization (rep_accel.fusion): fused == train-time in eval mode."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from rep_accel.checkpoints import fuse_state_dict
from rep_accel.fusion import (BatchNorm, block_params_from_module, fold_bn, fuse_block, fuse_model,
                              identity_kernel, pad_1x1_to_3x3)
from rep_accel.models import MODEL_NAMES, RepVGGBlock, create_model, randomize_batchnorm

# The criterion: max abs difference <= 1e-5 x max |output|, fp32, random BN statistics.
REL_TOL = 1e-5

# Zoo models, input side used in the test, and whether the test is slow. The paper's
# variants run at 3 channels, 10 classes, on small inputs to keep the default suite fast.
SMALL = {"nano": 16, "tiny": 24, "mnist": 28}
DEFAULT_BIG = ("A0", "B1g4")


def check_close(ref: np.ndarray, out: np.ndarray):
    diff, scale = float(np.abs(out - ref).max()), float(np.abs(ref).max())
    assert scale > 0
    assert diff <= REL_TOL * scale, (diff, scale)
    return diff / scale


def zoo_cases():
    for name in MODEL_NAMES:
        if name in SMALL:
            for cin in (1, 3):
                yield pytest.param(name, cin, SMALL[name], id=f"{name}-c{cin}")
        else:
            marks = () if name in DEFAULT_BIG else (pytest.mark.slow,)
            yield pytest.param(name, 3, 32, id=f"{name}-c3", marks=marks)


@pytest.mark.parametrize("name,cin,side", list(zoo_cases()))
def test_every_zoo_model_fused_equals_train_time(name, cin, side):
    seed = sum(map(ord, name)) + cin
    print("seed", seed)
    torch.manual_seed(seed)
    model = randomize_batchnorm(create_model(name, in_channels=cin, num_classes=10), seed).eval()
    x = torch.randn(2, cin, side, side, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x).numpy()
    net = fuse_model(model)
    assert len(net.layers) == sum(model.config.depths)
    assert [l.stride for l in net.layers] == [s for _, _, s, _ in model.config.block_specs()]
    assert [l.groups for l in net.layers] == list(model.config.groups)
    assert all(l.weight.dtype == np.float32 and l.bias.dtype == np.float32 for l in net.layers)
    check_close(ref, net.forward(x.numpy()))
    # The same fusion in place gives a deploy-mode module with the same output.
    model.switch_to_deploy()
    with torch.no_grad():
        check_close(ref, model(x).numpy())


def test_fold_bn_equals_batchnorm_in_eval_mode():
    g = torch.Generator().manual_seed(1)
    conv = torch.nn.Conv2d(6, 4, 3, padding=1, bias=False)
    bn = torch.nn.BatchNorm2d(4)
    randomize_batchnorm(bn, 2)
    bn.eval()
    x = torch.randn(1, 6, 5, 5, generator=g)
    with torch.no_grad():
        ref = bn(conv(x)).numpy()
        k, b = fold_bn(conv.weight.double().numpy(), BatchNorm(*(t.double().numpy() for t in (
            bn.weight, bn.bias, bn.running_mean, bn.running_var)), eps=bn.eps))
        out = F.conv2d(x.double(), torch.from_numpy(k), torch.from_numpy(b), padding=1).numpy()
    np.testing.assert_allclose(out, ref, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("groups", [1, 2, 4])
def test_padded_1x1_kernel_is_the_1x1_conv(stride, groups):
    g = torch.Generator().manual_seed(3)
    k1 = torch.randn(8, 8 // groups, 1, 1, generator=g, dtype=torch.float64)
    x = torch.randn(2, 8, 7, 6, generator=g, dtype=torch.float64)
    ref = F.conv2d(x, k1, stride=stride, padding=0, groups=groups)
    out = F.conv2d(x, torch.from_numpy(pad_1x1_to_3x3(k1.numpy())), stride=stride, padding=1, groups=groups)
    assert torch.equal(out, ref)  # one nonzero tap: the same products, exactly


@pytest.mark.parametrize("channels,groups", [(1, 1), (6, 1), (6, 2), (6, 3), (8, 8), (12, 4)])
def test_identity_kernel_is_the_identity_with_groups(channels, groups):
    x = torch.randn(2, channels, 5, 4, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    out = F.conv2d(x, torch.from_numpy(identity_kernel(channels, groups)), padding=1, groups=groups)
    assert torch.equal(out, x)


block_configs = st.tuples(
    st.integers(1, 4),              # channels per group in
    st.integers(1, 4),              # channels per group out
    st.sampled_from([1, 2, 3, 4]),  # groups
    st.sampled_from([1, 2]),        # stride
    st.booleans(),                  # force C_in == C_out (an identity branch at stride 1)
    st.integers(3, 9), st.integers(3, 9),  # H, W
    st.integers(0, 2**31 - 1),      # seed
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(block_configs)
def test_random_block_configurations(cfg):
    cpg_in, cpg_out, groups, stride, square, h, w, seed = cfg
    cin, cout = cpg_in * groups, (cpg_in if square else cpg_out) * groups
    print("config", cfg)
    torch.manual_seed(seed)
    block = randomize_batchnorm(RepVGGBlock(cin, cout, stride, groups), seed).eval()
    assert (block.identity is not None) == (cin == cout and stride == 1)
    x = torch.randn(2, cin, h, w, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = block(x).numpy()
        # Pre-activations too: after ReLU a block can be all zero, which proves little.
        pre = block.conv3x3(x) + block.conv1x1(x) + (block.identity(x) if block.identity is not None else 0)
    layer = fuse_block(block_params_from_module(block, "b"))
    assert layer.weight.shape == (cout, cin // groups, 3, 3) and (layer.stride, layer.groups) == (stride, groups)
    out_pre = F.conv2d(x, torch.from_numpy(layer.weight), torch.from_numpy(layer.bias),
                       stride=stride, padding=1, groups=groups)
    assert out_pre.shape == pre.shape
    check_close(pre.numpy(), out_pre.numpy())
    if np.abs(ref).max() > 0:
        check_close(ref, F.relu(out_pre).numpy())


def test_fusion_uses_every_branch():
    # Each branch alone must change the fused result (a dropped branch or a missed BN
    # fold would otherwise go unnoticed in a sum that is still "close").
    torch.manual_seed(5)
    block = randomize_batchnorm(RepVGGBlock(4, 4, 1, 2), 5).eval()
    base = fuse_block(block_params_from_module(block, "b"))
    for branch in (block.conv3x3.bn, block.conv1x1.bn, block.identity):
        with torch.no_grad():
            branch.running_mean.add_(0.25)
        changed = fuse_block(block_params_from_module(block, "b"))
        assert not np.array_equal(changed.bias, base.bias)
        base = changed


def test_fuse_state_dict_from_raw_tensors():
    from checkpoints_layouts import renamed_state_dict, trained_like

    model = trained_like("tiny", seed=9)
    expected = fuse_model(model)
    for sd in (model.state_dict(), renamed_state_dict(model, "official"), renamed_state_dict(model, "timm")):
        net = fuse_state_dict(sd)
        for a, b in zip(net.layers, expected.layers):
            assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)
            assert (a.stride, a.groups) == (b.stride, b.groups)


def test_fusion_is_at_the_bottom_of_the_imports():
    """fusion (the pure arithmetic) imports neither models nor checkpoints: no import circle."""
    import ast
    from pathlib import Path

    import rep_accel.fusion as fusion
    tree = ast.parse(Path(fusion.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"models", "checkpoints", "rep_accel.models", "rep_accel.checkpoints"}
