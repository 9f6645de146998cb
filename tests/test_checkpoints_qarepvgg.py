"""QARepVGG checkpoints (cxxgtxy/QARepVGG, YOLOv6's QARepVGGBlock): train-time blocks with a
1x1 conv and an identity without BN and one BN after the sum, the bare-3x3 variant, and
YOLOv6's deploy form with its kept BN; fused exactly, written as the deploy keys of
QARepVGG's own deploy model; the CLI's fuse, compile and simulate on one.

The train-time truth is tests/checkpoints_layouts.QARepVGGReference (via qarepvgg_from): the reference code's
module names and forward, holding our own models' conv weights (no QARepVGG code).
"""

import json

import numpy as np
import pytest
import torch

from checkpoints_layouts import qarepvgg_from, rename_key, trained_like
from rep_accel import golden, images, quantize
from rep_accel.checkpoints import load_checkpoint, load_fused, save_deploy
from rep_accel.cli import main
from rep_accel.models import create_model
from test_checkpoints import REL_TOL, assert_same_network, expect_error


def assert_matches_reference(net, reference, side=24, seed=0):
    """The fused float32 network against the train-time QARepVGG, at the usual tolerance."""
    x = torch.randn(2, net.in_channels, side, side, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        ref = reference(x).numpy()
    diff = np.abs(net.forward(x.numpy()) - ref).max()
    assert diff <= REL_TOL * np.abs(ref).max(), (diff, np.abs(ref).max())


@pytest.mark.parametrize("form", ["v2", "bare-dense"])
@pytest.mark.parametrize("name,cin", [("nano", 3), ("tiny", 1), ("mnist", 1)])
def test_train_time_blocks_fuse_exactly(tmp_path, form, name, cin):
    model = trained_like(name, seed=len(name) + cin, in_channels=cin, num_classes=7)
    qa = qarepvgg_from(model, seed=9, form=form)
    sd = qa.state_dict()
    # The reference's own keys: the 1x1 conv and the BN after the sum, no identity tensors.
    assert "stage1.0.rbr_1x1.weight" in sd and "stage1.0.bn.running_var" in sd
    assert not any("rbr_identity" in k for k in sd)
    torch.save({"model": sd, "epoch": 300, "optimizer": {"lr": 0.1}}, tmp_path / "qa.pth")
    loaded = load_checkpoint(tmp_path / "qa.pth")
    assert loaded.layout == "qarepvgg" and not loaded.deploy
    assert loaded.config == model.config and loaded.variant == name
    # Identity exactly where C_in == C_out at stride 1 (it has no tensors to show it).
    specs = model.config.block_specs()
    assert [p.identity_without_bn for p in loaded.blocks] == [ci == co and s == 1 for ci, co, s, _ in specs]
    assert_matches_reference(loaded.network, qa)
    with torch.no_grad():  # the branch-by-branch reference of the file equals the QARepVGG module
        x = torch.randn(1, cin, 20, 20)
        want = qa(x)
        assert torch.allclose(loaded.to_model()(x), want, rtol=0, atol=REL_TOL * float(want.abs().max()))
    n_qa = sum(v.numel() for k, v in qa.named_parameters())
    assert loaded.parameter_count() == n_qa
    # Written in the input's layout: QARepVGG's deploy model has the official deploy keys.
    save_deploy(loaded, tmp_path / "deploy.pth")
    raw = torch.load(tmp_path / "deploy.pth", weights_only=True)
    deploy = create_model(name, in_channels=cin, num_classes=7, deploy=True)
    assert set(raw) == {rename_key(k, "official") for k in deploy.state_dict()}
    back = load_checkpoint(tmp_path / "deploy.pth")
    assert_same_network(back.network, loaded.network)
    assert_matches_reference(back.network, qa)


def test_paper_variant_a0_and_deploy_written_as_qarepvgg_deploy_model(tmp_path):
    model = trained_like("A0", seed=2, in_channels=3, num_classes=1000)
    qa = qarepvgg_from(model, seed=3)
    torch.save(qa.state_dict(), tmp_path / "QARepVGG-A0-train.pth")
    loaded = load_checkpoint(tmp_path / "QARepVGG-A0-train.pth")
    assert loaded.variant == "A0" and loaded.layout == "qarepvgg"
    assert_matches_reference(loaded.network, qa, side=32)
    out = tmp_path / "QARepVGG-A0-deploy.pth"
    save_deploy(loaded, out)
    # QARepVGG's deploy-mode model (switch_to_deploy deletes `bn`): rbr_reparam only, the
    # official deploy keys.
    raw = torch.load(out, weights_only=True)
    deploy = create_model("A0", in_channels=3, num_classes=1000, deploy=True)
    assert {k: tuple(v.shape) for k, v in raw.items()} == \
        {rename_key(k, "official"): tuple(v.shape) for k, v in deploy.state_dict().items()}
    back = load_checkpoint(out)
    assert back.deploy and back.layout == "official-deploy"
    assert_same_network(back.network, loaded.network)


def test_yolov6_deploy_form_keeps_its_bn(tmp_path):
    model = trained_like("tiny", seed=4, in_channels=3, num_classes=10)
    qa = qarepvgg_from(model, seed=5, form="yolov6-deploy")
    sd = qa.state_dict()
    assert "stage0.rbr_reparam.weight" in sd and "stage0.bn.weight" in sd
    torch.save(sd, tmp_path / "y6.pt")
    loaded = load_checkpoint(tmp_path / "y6.pt")
    assert loaded.layout == "qarepvgg-deploy" and loaded.deploy and loaded.config == model.config
    assert_matches_reference(loaded.network, qa)
    with torch.no_grad():
        x = torch.randn(1, 3, 16, 16)
        want = qa(x)
        assert torch.allclose(loaded.to_model()(x), want, rtol=0, atol=REL_TOL * float(want.abs().max()))
    save_deploy(loaded, tmp_path / "plain.pt")
    back = load_checkpoint(tmp_path / "plain.pt")
    assert_same_network(back.network, loaded.network)
    assert not any(k.endswith("bn.weight") for k in torch.load(tmp_path / "plain.pt", weights_only=True))


def test_bad_qarepvgg_files(tmp_path):
    sd = qarepvgg_from(trained_like("tiny", 0), seed=1).state_dict()

    def save(d, name):
        torch.save(d, tmp_path / name)
        return tmp_path / name

    nobn = {k: v for k, v in sd.items() if not k.startswith("stage1.1.bn.")}
    expect_error(save(nobn, "nobn.pt"), "inconsistent", "stage1.1", "'bn'")
    bias = dict(sd, **{"stage2.0.rbr_1x1.bias": torch.zeros(16)})
    expect_error(save(bias, "bias.pt"), "not supported", "stage2.0.rbr_1x1.bias")
    shape = dict(sd, **{"stage2.0.rbr_1x1.weight": torch.zeros(16, 8, 3, 3)})
    expect_error(save(shape, "shape.pt"), "inconsistent shapes", "stage2.0.rbr_1x1.weight")
    post = dict(sd, **{"stage2.1.bn.running_var": torch.ones(5)})
    expect_error(save(post, "post.pt"), "inconsistent shapes", "stage2.1.bn.running_var")
    se = dict(sd, **{"stage1.0.se.down.weight": torch.zeros(2, 8, 1, 1)})
    expect_error(save(se, "se.pt"), "not supported", "SE")
    prelu = dict(sd, **{"stage1.0.nonlinearity.weight": torch.zeros(8)})
    expect_error(save(prelu, "prelu.pt"), "not supported", "nonlinearity")
    mixed = dict(sd, **{"stage1.0.rbr_reparam.weight": torch.zeros(8, 8, 3, 3)})
    expect_error(save(mixed, "mixed.pt"), "inconsistent", "stage1.0", "rbr_reparam")


def test_cli_fuse_compile_simulate_on_a_qarepvgg_checkpoint(tmp_path, capsys):
    model = trained_like("mnist", seed=6, in_channels=1, num_classes=10)
    qa = qarepvgg_from(model, seed=7)
    torch.save(qa.state_dict(), tmp_path / "qa.pth")
    rng = np.random.default_rng(0)
    calib = rng.standard_normal((32, 1, 28, 28)).astype(np.float32)
    x = rng.standard_normal((4, 1, 28, 28)).astype(np.float32)
    np.save(tmp_path / "calib.npy", calib)
    np.save(tmp_path / "x.npy", x)

    def cli(*argv):
        rc = main([*map(str, argv)])
        out, err = capsys.readouterr()
        assert rc == 0, err
        return out

    out = cli("fuse", tmp_path / "qa.pth", "-o", tmp_path / "deploy.pth")
    assert "layout qarepvgg" in out and "checked" in out
    assert_same_network(load_fused(tmp_path / "deploy.pth"), load_fused(tmp_path / "qa.pth"))
    cli("compile", tmp_path / "qa.pth", "-o", tmp_path / "build", "--calib", tmp_path / "calib.npy")
    build = images.load_build(tmp_path / "build")
    expected = quantize.quantize_network(load_fused(tmp_path / "qa.pth"), calib, show_progress=False)
    from rep_accel.testing import assert_qnet_equal
    assert_qnet_equal(build.qnet, expected)
    cli("simulate", tmp_path / "build", "--input", tmp_path / "x.npy", "--json", tmp_path / "r.json")
    predictions = json.loads((tmp_path / "r.json").read_text())["predictions"]
    assert predictions == golden.predict(build.qnet, x).tolist()
