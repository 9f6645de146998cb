"""`rep-accel fuse` through rep_accel.cli.main: outputs, printed summary, bad input."""

import pickle

import numpy as np
import pytest
import torch

from checkpoints_layouts import rename_key, renamed_state_dict, trained_like
from rep_accel.checkpoints import LAYOUTS, load_checkpoint, save_model
from rep_accel.cli import main
from rep_accel.datasets import default_model_path
from rep_accel.fusion import fuse_model
from rep_accel.models import create_model


def run_fuse(capsys, *args):
    code = main(["fuse", *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_has_an_example(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fuse", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "rep-accel fuse model.pt -o deploy.pt" in out and "weights_only" in out


def test_fuse_default_model(tmp_path, capsys):
    out_path = tmp_path / "deploy.pt"
    code, out, err = run_fuse(capsys, default_model_path(), "-o", out_path)
    assert code == 0, err
    assert "layout rep_accel" in out and "RepVGG-mnist" in out and "7 blocks -> 7 3x3 conv+ReLU layers" in out
    assert "checked" in out and "wrote" in out
    back = load_checkpoint(out_path)
    assert back.deploy and back.layout == "rep_accel" and back.variant == "mnist"
    ref = load_checkpoint(default_model_path()).network
    for a, b in zip(back.network.layers, ref.layers):
        assert np.array_equal(a.weight, b.weight) and np.array_equal(a.bias, b.bias)


@pytest.mark.parametrize("layout", ["official", "timm", "rep_accel"])
def test_output_keeps_the_input_key_convention(tmp_path, capsys, layout):
    model = trained_like("tiny", seed=5, num_classes=10)
    src = tmp_path / "train.pt"
    if layout == "rep_accel":
        save_model(model, src)
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in renamed_state_dict(model, layout).items()},
                    "epoch": 3}, src)
    dst = tmp_path / "out" / "deploy.pt"
    code, out, err = run_fuse(capsys, src, "-o", dst)
    assert code == 0, err
    assert f"layout {layout}" in out and "RepVGG-tiny" in out and "g2" in out and "g4" in out
    raw = torch.load(dst, weights_only=True)
    deploy_keys = create_model("tiny", num_classes=10, deploy=True).state_dict()
    if layout == "rep_accel":
        assert set(raw["state_dict"]) == set(deploy_keys)
    else:
        assert set(raw) == {rename_key(k, layout) for k in deploy_keys}
    # Deploy -> fuse again is the identity on the weights.
    code, out, err = run_fuse(capsys, dst, "-o", tmp_path / "again.pt")
    assert code == 0 and "already reparameterized" in out
    a, b = load_checkpoint(dst).network, load_checkpoint(tmp_path / "again.pt").network
    assert all(np.array_equal(x.weight, y.weight) for x, y in zip(a.layers, b.layers))
    # And the deploy model computes what the train-time model does.
    x = torch.randn(2, 3, 24, 24)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(a.forward(x.numpy()) - ref).max() <= 1e-5 * np.abs(ref).max()


def test_layout_option_converts(tmp_path, capsys):
    model = trained_like("nano", seed=1)
    save_model(model, tmp_path / "m.pt")
    code, out, err = run_fuse(capsys, tmp_path / "m.pt", "-o", tmp_path / "t.pt", "--layout", "timm")
    assert code == 0, err
    loaded = load_checkpoint(tmp_path / "t.pt")
    assert loaded.layout == "timm-deploy"
    assert np.array_equal(loaded.network.layers[0].weight, fuse_model(model).layers[0].weight)


def _bad_files(tmp_path):
    """name -> (path, fragment expected in the error line)."""
    files = {}
    (tmp_path / "text.pt").write_text("not a checkpoint\n")
    files["text"] = (tmp_path / "text.pt", "not a PyTorch checkpoint")
    good = tmp_path / "good.pt"
    torch.save(renamed_state_dict(trained_like("nano", 0), "official"), good)
    (tmp_path / "trunc.pt").write_bytes(good.read_bytes()[:2000])
    files["truncated"] = (tmp_path / "trunc.pt", "truncated")
    torch.save({"conv1.weight": torch.zeros(4, 3, 7, 7), "layer1.0.conv1.weight": torch.zeros(4, 4, 3, 3),
                "fc.weight": torch.zeros(10, 4)}, tmp_path / "resnet.pt")
    files["other network"] = (tmp_path / "resnet.pt", "not supported")
    sd = renamed_state_dict(trained_like("nano", 0), "official")
    torch.save(dict(sd, **{"stage1.0.rbr_dense.bn.weight": torch.ones(3)}), tmp_path / "shapes.pt")
    files["inconsistent"] = (tmp_path / "shapes.pt", "inconsistent")
    torch.save({"foo.bar": torch.zeros(2), "baz": torch.zeros(1)}, tmp_path / "unknown.pt")
    files["unknown layout"] = (tmp_path / "unknown.pt", "not supported")
    torch.save(dict(sd, **{"stage1.0.se.down.weight": torch.zeros(2, 8, 1, 1)}), tmp_path / "se.pt")
    files["SE"] = (tmp_path / "se.pt", "not supported: RepVGG with squeeze-and-excitation")
    torch.save(dict(sd, **{"stage2_aux.0.weight": torch.zeros(2)}), tmp_path / "plus.pt")
    files["RepVGGplus"] = (tmp_path / "plus.pt", "not supported: RepVGGplus")
    torch.save(trained_like("nano", 0), tmp_path / "module.pt")
    files["whole module"] = (tmp_path / "module.pt", "state_dict()")
    files["missing"] = (tmp_path / "nope.pt", "no such file")
    return files


def test_bad_inputs_give_one_line_exit_2_and_no_output(tmp_path, capsys):
    for name, (path, fragment) in _bad_files(tmp_path).items():
        dst = tmp_path / "outdir" / f"{name}.pt"
        code, out, err = run_fuse(capsys, path, "-o", dst)
        assert code == 2, name
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("rep-accel fuse: error: "), (name, err)
        assert fragment in lines[0], (name, lines[0])
        assert "Traceback" not in err and out == "", name
        assert not dst.exists(), name
    # Not even a temporary file is left behind.
    assert not (tmp_path / "outdir").exists() or not list((tmp_path / "outdir").iterdir())


def test_existing_output_is_untouched_on_error(tmp_path, capsys):
    dst = tmp_path / "deploy.pt"
    dst.write_bytes(b"previous content")
    (tmp_path / "bad.pt").write_text("garbage")
    code, _, _ = run_fuse(capsys, tmp_path / "bad.pt", "-o", dst)
    assert code == 2 and dst.read_bytes() == b"previous content"


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.mark.parametrize("protocol", [None, 2, 4])
def test_crafted_pickle_never_runs(tmp_path, capsys, protocol):
    marker = tmp_path / "MARKER"
    path = tmp_path / "evil.pt"
    payload = {"model": _Payload(marker)}
    if protocol is None:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=protocol))
    code, out, err = run_fuse(capsys, path, "-o", tmp_path / "out.pt")
    assert code == 2 and "refused" in err and len(err.strip().splitlines()) == 1
    assert not marker.exists() and not (tmp_path / "out.pt").exists()


def test_all_layouts_listed_in_the_option():
    import argparse

    from rep_accel.commands import fuse

    p = argparse.ArgumentParser()
    fuse.add_arguments(p)
    for layout in LAYOUTS:
        assert p.parse_args(["m.pt", "-o", "d.pt", "--layout", layout]).layout == layout
