"""Loading checkpoints in every layout (rep_accel.checkpoints), writing deploy ones, refusing bad input.

Every layout is produced here by renaming this package's own models' keys
(tests/checkpoints_layouts.py), never with timm or the official code.
"""

import os
import pickle

import numpy as np
import pytest
import torch

from checkpoints_layouts import HEAD, mmengine_checkpoint, rename_key, renamed_state_dict, trained_like
from rep_accel.checkpoints import (LAYOUTS, load_checkpoint, load_fused, model_checkpoint, save_deploy,
                                   save_model)
from rep_accel.errors import RepAccelError
from rep_accel.fusion import fuse_model
from rep_accel.models import RepVGG, create_model

REL_TOL = 1e-5

#: The layouts of plain RepVGG blocks (QARepVGG's have tests/test_checkpoints_qarepvgg.py).
PLAIN_LAYOUTS = tuple(layout for layout in LAYOUTS if not layout.startswith("qarepvgg"))


def assert_same_network(a, b):
    """Two FusedNetworks with identical float32 tensors, strides and groups."""
    assert a.in_channels == b.in_channels and len(a.layers) == len(b.layers)
    for la, lb in zip(a.layers, b.layers):
        assert (la.stride, la.groups) == (lb.stride, lb.groups)
        assert np.array_equal(la.weight, lb.weight) and np.array_equal(la.bias, lb.bias)
    assert np.array_equal(a.fc_weight, b.fc_weight) and np.array_equal(a.fc_bias, b.fc_bias)


def assert_matches_model(net, model, side=24, seed=0):
    x = torch.randn(2, model.config.in_channels, side, side, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = model(x).numpy()
    diff = np.abs(net.forward(x.numpy()) - ref).max()
    assert diff <= REL_TOL * np.abs(ref).max()


def layout_file(model: RepVGG, layout: str, path):
    """Write `model` (train-time) as a checkpoint in `layout`; deploy layouts fuse a copy first."""
    if layout == "rep_accel":
        save_model(model, path)
        return path
    family, deploy = layout.removesuffix("-deploy"), layout.endswith("-deploy")
    src = model
    if deploy:
        src = RepVGG(model.config)
        src.load_state_dict(model.state_dict())
        src.eval().switch_to_deploy()
    torch.save(mmengine_checkpoint(src) if family == "mmpretrain" else renamed_state_dict(src, family), path)
    return path


@pytest.mark.parametrize("layout", PLAIN_LAYOUTS)
@pytest.mark.parametrize("name,cin", [("nano", 3), ("tiny", 1), ("tiny", 3), ("mnist", 1)])
def test_every_layout_loads_back(tmp_path, layout, name, cin):
    model = trained_like(name, seed=len(name) + cin, in_channels=cin, num_classes=7)
    loaded = load_checkpoint(layout_file(model, layout, tmp_path / "m.pt"))
    assert loaded.layout == layout
    assert loaded.deploy == layout.endswith("-deploy")
    assert loaded.variant == name and loaded.config == model.config
    assert loaded.network.meta["layout"] == layout and loaded.network.meta["variant"] == name
    if loaded.deploy:
        deployed = RepVGG(model.config)
        deployed.load_state_dict(model.state_dict())
        assert_same_network(loaded.network, fuse_model(deployed.eval().switch_to_deploy()))
    else:
        assert_same_network(loaded.network, fuse_model(model))
    assert_matches_model(loaded.network, model)
    # The train-time (or deploy) module rebuilt from the file computes the same thing.
    with torch.no_grad():
        x = torch.randn(1, cin, 20, 20)
        assert torch.allclose(loaded.to_model()(x), model(x), rtol=0, atol=REL_TOL * float(model(x).abs().max()))


@pytest.mark.parametrize("name,family", [("A0", "official"), pytest.param("B1g4", "timm", marks=pytest.mark.slow),
                                         pytest.param("B2g4", "official", marks=pytest.mark.slow)])
def test_paper_variants_are_inferred_from_shapes(tmp_path, name, family):
    model = trained_like(name, seed=11, in_channels=3, num_classes=1000)
    path = tmp_path / "big.pth"
    torch.save(renamed_state_dict(model, family), path)
    loaded = load_checkpoint(path)
    assert loaded.layout == family and loaded.variant == name and loaded.config == model.config
    assert [l.groups for l in loaded.network.layers] == list(model.config.groups)
    assert_same_network(loaded.network, fuse_model(model))
    assert_matches_model(loaded.network, model, side=32)


def test_custom_architecture_is_inferred(tmp_path):
    from rep_accel.models import RepVGGConfig

    cfg = RepVGGConfig(widths=(12, 24, 24), depths=(1, 3, 2), groups=(1, 1, 3, 1, 1, 6), in_channels=2, num_classes=5)
    torch.manual_seed(0)
    from rep_accel.models import randomize_batchnorm
    model = randomize_batchnorm(RepVGG(cfg), 0).eval()
    torch.save(renamed_state_dict(model, "timm"), tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded.config == cfg and loaded.variant is None and loaded.network.meta["variant"] == "custom"
    assert_matches_model(loaded.network, model)


def test_wrappers_prefixes_and_half_precision(tmp_path):
    model = trained_like("tiny", seed=3)
    sd = renamed_state_dict(model, "official")
    expected = fuse_model(model)
    cases = {
        "state_dict": {"state_dict": sd, "epoch": 90, "best_acc1": 72.4, "optimizer": {"state": {}, "lr": 0.1}},
        "model": {"model": {f"module.{k}": v for k, v in sd.items()}, "args": {"arch": "RepVGG-tiny"}},
        "module": {f"module.{k}": v for k, v in sd.items()},
        "compiled": {f"_orig_mod.{k}": v for k, v in sd.items()},
    }
    for tag, obj in cases.items():
        torch.save(obj, tmp_path / f"{tag}.pt")
        loaded = load_checkpoint(tmp_path / f"{tag}.pt")
        assert loaded.layout == "official", tag
        assert_same_network(loaded.network, expected)
    assert load_checkpoint(tmp_path / "state_dict.pt").extra["epoch"] == 90
    # A bare state_dict of this package's module is recognised too.
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    bare = load_checkpoint(tmp_path / "bare.pt")
    assert bare.layout == "rep_accel" and bare.variant == "tiny"
    assert_same_network(bare.network, expected)
    # fp16 and bf16: the file's values, fused in float64, equal the fusion of the rounded model.
    for dtype in (torch.float16, torch.bfloat16):
        torch.save({k: v.to(dtype) if v.is_floating_point() else v for k, v in sd.items()}, tmp_path / "h.pt")
        loaded = load_checkpoint(tmp_path / "h.pt")
        rounded = RepVGG(model.config)
        rounded.load_state_dict({k: v.to(dtype).float() if v.is_floating_point() else v
                                 for k, v in model.state_dict().items()})
        assert loaded.dtypes == [str(dtype).removeprefix("torch.")]
        assert_same_network(loaded.network, fuse_model(rounded.eval()))


def expected_deploy_keys(model: RepVGG, family: str) -> dict:
    """Key -> shape of the deploy-mode model of the original project (by renaming ours)."""
    deploy = create_model(model.name, in_channels=model.config.in_channels,
                          num_classes=model.config.num_classes, deploy=True)
    sd = deploy.state_dict()
    if family == "rep_accel":
        return {k: tuple(v.shape) for k, v in sd.items()}
    return {rename_key(k, family): tuple(v.shape) for k, v in sd.items()}


@pytest.mark.parametrize("layout", PLAIN_LAYOUTS)
def test_fuse_deploy_load_round_trip(tmp_path, layout):
    model = trained_like("tiny", seed=7, in_channels=3, num_classes=10)
    loaded = load_checkpoint(layout_file(model, layout, tmp_path / "m.pt"))
    out = tmp_path / "deploy.pt"
    save_deploy(loaded, out, loaded.layout)
    family = layout.removesuffix("-deploy")
    # Exactly the keys and shapes of the original project's deploy-mode model.
    raw = torch.load(out, weights_only=True)
    sd = raw["state_dict"] if family in ("rep_accel", "mmpretrain") else raw
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected_deploy_keys(model, family)
    assert all(v.dtype == torch.float32 for v in sd.values())
    if family == "rep_accel":
        assert raw["format"] == "rep_accel" and raw["kind"] == "deploy" and raw["variant"] == "tiny"
        deploy = RepVGG(model.config, deploy=True)
        deploy.load_state_dict(sd, strict=True)
        assert_matches_model(fuse_model(deploy), model)
    back = load_checkpoint(out)
    assert back.layout == ("rep_accel" if family == "rep_accel" else f"{family}-deploy") and back.deploy
    assert back.config == model.config
    assert_same_network(back.network, loaded.network)
    assert_same_network(load_fused(out), loaded.network)


def test_save_deploy_converts_between_layouts(tmp_path):
    model = trained_like("nano", seed=2)
    net = fuse_model(model)
    for layout in ("official", "timm-deploy", "rep_accel", "mmpretrain"):
        save_deploy(net, tmp_path / f"{layout}.pt", layout)
        back = load_checkpoint(tmp_path / f"{layout}.pt")
        assert back.family == layout.removesuffix("-deploy")
        assert_same_network(back.network, net)


# ---------------------------------------------------------------- bad input


def write(tmp_path, obj, name="bad.pt"):
    path = tmp_path / name
    torch.save(obj, path)
    return path


def official_sd(name="nano", seed=0):
    return renamed_state_dict(trained_like(name, seed), "official")


def expect_error(path, *fragments):
    with pytest.raises(RepAccelError) as info:
        load_checkpoint(path)
    msg = str(info.value)
    assert "\n" not in msg and str(path) in msg
    for f in fragments:
        assert f in msg, msg
    return msg


def test_not_a_checkpoint(tmp_path):
    (tmp_path / "t.pt").write_text("this is a text file\n")
    expect_error(tmp_path / "t.pt", "not a PyTorch checkpoint")
    (tmp_path / "r.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    expect_error(tmp_path / "r.pt")
    (tmp_path / "e.pt").write_bytes(b"")
    expect_error(tmp_path / "e.pt", "empty")
    expect_error(tmp_path / "missing.pt", "no such file")
    expect_error(write(tmp_path, torch.zeros(3), "tensor.pt"), "single tensor")
    expect_error(write(tmp_path, [1, 2, 3], "list.pt"), "list")
    expect_error(write(tmp_path, {"epoch": 3, "optimizer": {"lr": 0.1}}, "nosd.pt"), "no state_dict")


def test_truncated_file(tmp_path):
    good = write(tmp_path, official_sd(), "good.pt").read_bytes()
    for frac in (0.1, 0.5, 0.95):
        (tmp_path / "cut.pt").write_bytes(good[: int(len(good) * frac)])
        expect_error(tmp_path / "cut.pt", "truncated")


def test_checkpoint_of_another_network(tmp_path):
    sd = {"conv1.weight": torch.zeros(8, 3, 7, 7), "bn1.weight": torch.ones(8),
          "layer1.0.conv1.weight": torch.zeros(8, 8, 3, 3), "fc.weight": torch.zeros(10, 8), "fc.bias": torch.zeros(10)}
    msg = expect_error(write(tmp_path, sd), "not supported", "ResNet", "conv1.weight")
    assert "stage0.rbr_dense" in msg  # says what was expected
    expect_error(write(tmp_path, {"a": torch.zeros(2), "b.c": torch.zeros(3)}, "unknown.pt"), "not supported", "'a'")


def test_se_and_repvggplus_are_not_supported(tmp_path):
    sd = official_sd()
    se = dict(sd, **{"stage1.0.se.down.weight": torch.zeros(2, 8, 1, 1), "stage1.0.se.up.weight": torch.zeros(8, 2, 1, 1)})
    expect_error(write(tmp_path, se, "se.pt"), "not supported", "SE", "stage1.0.se.down.weight")
    timm = renamed_state_dict(trained_like("nano", 0), "timm")
    attn = dict(timm, **{"stages.0.0.attn.fc1.weight": torch.zeros(2, 8, 1, 1)})
    expect_error(write(tmp_path, attn, "attn.pt"), "not supported", "stages.0.0.attn.fc1.weight")
    plus = dict(sd, **{"stage1_aux.0.conv.weight": torch.zeros(8, 8, 3, 3)})
    expect_error(write(tmp_path, plus, "plus.pt"), "not supported", "RepVGGplus", "stage1_aux")
    plus2 = {k.replace("stage3.", "stage3_first.blocks."): v for k, v in sd.items()}
    expect_error(write(tmp_path, plus2, "plus2.pt"), "not supported", "RepVGGplus")
    post_se = dict(sd, **{"stage2.0.post_se.down.weight": torch.zeros(2, 8, 1, 1)})
    expect_error(write(tmp_path, post_se, "plus3.pt"), "RepVGGplus")


def test_inconsistent_shapes(tmp_path):
    base = official_sd("tiny")
    cases = {
        "bn": ("stage2.1.rbr_dense.bn.running_var", torch.ones(7)),
        "1x1": ("stage1.0.rbr_1x1.conv.weight", torch.zeros(16, 8, 3, 3)),
        "head": ("linear.weight", torch.zeros(10, 31)),
        "identity": ("stage1.1.rbr_identity.weight", torch.ones(5)),
    }
    for tag, (key, value) in cases.items():
        assert key in base, key
        expect_error(write(tmp_path, dict(base, **{key: value}), f"{tag}.pt"), "inconsistent", key.rsplit(".", 2)[0])
    # Kernels whose C_in/groups fits no groups count of the previous block's 16 outputs.
    chain = dict(base, **{"stage2.0.rbr_dense.conv.weight": torch.zeros(16, 5, 3, 3),
                          "stage2.0.rbr_1x1.conv.weight": torch.zeros(16, 5, 1, 1)})
    expect_error(write(tmp_path, chain, "chain.pt"), "inconsistent", "stage2.0.rbr_dense", "16 output channels")
    missing = {k: v for k, v in base.items() if k != "stage1.0.rbr_1x1.bn.running_mean"}
    expect_error(write(tmp_path, missing, "missing.pt"), "inconsistent", "stage1.0", "running_mean")
    # An identity branch on the first (stride-2) block of a stage contradicts RepVGG.
    stride2_id = dict(base, **{f"stage2.0.rbr_identity.{f}": torch.ones(16) for f in
                               ("weight", "bias", "running_mean", "running_var")})
    expect_error(write(tmp_path, stride2_id, "s2id.pt"), "inconsistent", "stage2.0", "identity")
    no_id = {k: v for k, v in base.items() if not k.startswith("stage1.1.rbr_identity")}
    expect_error(write(tmp_path, no_id, "noid.pt"), "inconsistent", "stage1.1", "identity")
    gap = {k.replace("stage3.1.", "stage3.2."): v for k, v in base.items()}
    expect_error(write(tmp_path, gap, "gap.pt"), "inconsistent", "stage 3")
    nohead = {k: v for k, v in base.items() if not k.startswith(HEAD["official"])}
    expect_error(write(tmp_path, nohead, "nohead.pt"), "no classifier head")
    mixed = dict(renamed_state_dict(create_model("tiny", num_classes=10, deploy=True), "official"))
    mixed = {k: v for k, v in mixed.items() if not k.startswith("stage1.0.")}
    mixed.update({k: v for k, v in base.items() if k.startswith("stage1.0.")})
    expect_error(write(tmp_path, mixed, "mixed.pt"), "inconsistent", "reparameterized")
    quant = dict(base, **{"stage0.rbr_dense.conv.weight": torch.zeros(8, 3, 3, 3, dtype=torch.int8)})
    expect_error(write(tmp_path, quant, "int.pt"), "int8")


def test_own_format_checks(tmp_path):
    model = trained_like("nano", 1)
    ckpt = model_checkpoint(model)
    expect_error(write(tmp_path, dict(ckpt, version=99), "v.pt"), "version 99")
    bad_cfg = dict(ckpt, config=dict(ckpt["config"], num_classes=11))
    expect_error(write(tmp_path, bad_cfg, "cfg.pt"), "inconsistent", "config")
    expect_error(write(tmp_path, dict(ckpt, kind="deploy"), "kind.pt"), "inconsistent", "kind")


class _WritesMarker:
    """Unpickling this object would run code that creates a file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


@pytest.mark.parametrize("how", ["torch.save", "pickle-2", "pickle-4"])
def test_crafted_pickle_is_refused_without_running(tmp_path, how):
    marker = tmp_path / "MARKER"
    payload = {"state_dict": official_sd(), "hook": _WritesMarker(marker)}
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=int(how[-1])))
    # Sanity: the payload really does run when fully unpickled.
    pickle.loads(pickle.dumps(_WritesMarker(marker)))
    assert marker.exists()
    os.unlink(marker)
    msg = expect_error(path, "refused", "state_dict()")
    assert not marker.exists(), msg


def test_whole_module_pickle_is_refused_with_export_hint(tmp_path):
    path = tmp_path / "module.pt"
    torch.save(trained_like("nano", 0), path)
    expect_error(path, "refused", "torch.save(model.state_dict()")
