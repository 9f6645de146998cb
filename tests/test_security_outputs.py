"""Outputs never destroy what we did not write (docs/security.md): output folders holding
files a command did not write are refused without --force (and kept with it), an output
that is also an input, an empty output name and an output under a file are refused; the
outputs of one command appear together or not at all, temporary folders never stay."""

import json
import os

import numpy as np
import pytest

from rep_accel import images
from rep_accel.fsutil import OWNERSHIP_FILE

from hostile import assert_user_error, run_cli, small_build, snapshot

SEED = 2024


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return small_build(tmp_path_factory.mktemp("outputs"), 2, 2, SEED)


def _no_temporaries(folder):
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


# ---------------------------------------------------------------- compile

def test_compile_refuses_a_folder_with_user_files_and_keeps_them(small, tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "hex").mkdir(parents=True)
    (proj / "hex" / "mine.hex").write_text("my own file\n")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "compile", "-o", proj, "--calib", small / "calib.npy", says=("hex/mine.hex", "--force"))
    assert snapshot(tmp_path) == before


def test_compile_force_writes_beside_user_files_and_reruns_replace_only_its_own(small, tmp_path, capsys):
    proj = tmp_path / "proj"
    (proj / "hex").mkdir(parents=True)
    (proj / "hex" / "mine.hex").write_text("my own file\n")
    rc, _, err = run_cli(capsys, "compile", "-o", proj, "--calib", small / "calib.npy", "--force")
    assert rc == 0, err
    assert (proj / "hex" / "mine.hex").read_text() == "my own file\n"
    assert (proj / images.MANIFEST).is_file()
    owned = json.loads((proj / OWNERSHIP_FILE).read_text())
    assert owned["command"] == "compile" and "hex/mine.hex" not in owned["files"]


def test_compile_rerun_into_its_own_output_is_fine_and_drops_its_stale_files(small, tmp_path, capsys):
    out = tmp_path / "b"
    assert run_cli(capsys, "compile", "-o", out, "--calib", small / "calib.npy")[0] == 0
    # A file the earlier run wrote and listed, that this run does not write, is removed.
    stale = out / "hex" / "99_old.hex"
    stale.write_text("0\n")
    owned = json.loads((out / OWNERSHIP_FILE).read_text())
    owned["files"].append("hex/99_old.hex")
    (out / OWNERSHIP_FILE).write_text(json.dumps(owned))
    assert run_cli(capsys, "compile", "-o", out, "--calib", small / "calib.npy", "--pi", 4, "--po", 4)[0] == 0
    assert not stale.exists()
    assert images.load_build(out).generics.pi == 4
    assert not _no_temporaries(tmp_path)


def test_a_forged_ownership_file_cannot_reach_outside(small, tmp_path, capsys):
    out = tmp_path / "b"
    assert run_cli(capsys, "compile", "-o", out, "--calib", small / "calib.npy")[0] == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    owned = json.loads((out / OWNERSHIP_FILE).read_text())
    owned["files"] += ["../victim.txt", str(victim)]
    (out / OWNERSHIP_FILE).write_text(json.dumps(owned))
    assert run_cli(capsys, "compile", "-o", out, "--calib", small / "calib.npy")[0] == 0
    assert victim.read_text() == "keep me\n"


def test_another_commands_output_is_not_ours(small, tmp_path, capsys):
    out = tmp_path / "r"
    assert run_cli(capsys, "rtl", "-o", out, "--pi", 1, "--po", 1, "--w-max", 8, "--max-cg", 2,
                   "--line-depth", 16)[0] == 0
    before = snapshot(out)
    assert_user_error(capsys, "compile", "-o", out, "--calib", small / "calib.npy", says="did not write")
    assert snapshot(out) == before


@pytest.mark.parametrize("command", [
    ["compile", "-o", ""],
    ["rtl", "-o", ""],
    ["fuse", "rep_accel/data/default_model.pt", "-o", ""],
    ["demo", "-o", "", "--no-rtl"],
])
def test_empty_output_name_is_refused(command, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path) if command[0] != "fuse" else None
    before = snapshot(tmp_path)
    assert_user_error(capsys, *command, says="''")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("command", [
    ["compile", "-o", "{f}/build"],
    ["rtl", "-o", "{f}/rtl"],
    ["fuse", "rep_accel/data/default_model.pt", "-o", "{f}/deploy.pt"],
    ["demo", "-o", "{f}/demo", "--no-rtl"],
    ["synth", "{rtl}", "-o", "{f}/synth", "--target", "generic"],
])
def test_output_under_a_file_is_refused(command, small, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    argv = [a.format(f=blocker, rtl=tmp_path) for a in command]
    if command[0] == "compile":
        argv += ["--calib", str(small / "calib.npy")]
    before = snapshot(tmp_path)
    assert_user_error(capsys, *argv, says=str(blocker))
    assert snapshot(tmp_path) == before


def test_fuse_refuses_to_overwrite_its_input(tmp_path, capsys):
    import shutil
    ckpt = tmp_path / "m.pt"
    shutil.copy("rep_accel/data/default_model.pt", ckpt)
    link = tmp_path / "same.pt"
    os.symlink(ckpt, link)
    before = snapshot(tmp_path)
    assert_user_error(capsys, "fuse", ckpt, "-o", ckpt, says="also an input")
    assert_user_error(capsys, "fuse", ckpt, "-o", link, says="also an input")
    assert snapshot(tmp_path) == before


def test_rtl_refuses_a_folder_with_user_files(tmp_path, capsys):
    mine = tmp_path / "rtl"
    mine.mkdir()
    (mine / "notes.v").write_text("// mine\n")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "rtl", "-o", mine, "--pi", 1, "--po", 1, "--w-max", 8, says="notes.v")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- simulate

def test_simulate_writes_all_outputs_or_none(small, tmp_path, capsys):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "simulate", small / "build", "--input", small / "x.npy", "--out", tmp_path / "o.npy",
                      "--json", blocker / "r.json", says=str(blocker))
    assert snapshot(tmp_path) == before
    assert not (tmp_path / "o.npy").exists()


def test_simulate_output_may_not_be_its_input(small, tmp_path, capsys):
    import shutil
    shutil.copy(small / "x.npy", tmp_path / "x.npy")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "simulate", small / "build", "--input", tmp_path / "x.npy", "--out", tmp_path / "x.npy",
                      says="also an input")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("clock", ["inf", "nan", "-5", "0", "1e9"])
def test_simulate_clock_must_be_a_real_clock(small, capsys, clock):
    assert_user_error(capsys, "simulate", small / "build", "--input", small / "x.npy", "--clock-mhz", clock,
                      says="--clock-mhz")


def test_simulate_json_is_strict(small, tmp_path, capsys):
    rc, _, err = run_cli(capsys, "simulate", small / "build", "--input", small / "x.npy", "--json",
                         tmp_path / "r.json", "--clock-mhz", "5000")
    assert rc == 0, err
    text = (tmp_path / "r.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}"))


# ---------------------------------------------------------------- demo

def test_demo_that_fails_midway_leaves_nothing(tmp_path, capsys, monkeypatch):
    from rep_accel.commands import compile as compile_command
    from rep_accel.errors import RepAccelError

    def broken(*a, **k):
        raise RepAccelError("stage 2 broke (test)")
    monkeypatch.setattr(compile_command, "compile_model", broken)
    before = snapshot(tmp_path)
    assert_user_error(capsys, "demo", "-o", tmp_path / "demo", "--no-rtl", says="stage 2 broke")
    assert snapshot(tmp_path) == before          # no deploy.pt, no inputs.npy, no temporary folder


def test_demo_refuses_a_folder_with_user_files(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "thesis.tex").write_text("mine")
    before = snapshot(tmp_path)
    assert_user_error(capsys, "demo", "-o", out, "--no-rtl", says="thesis.tex")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------- verify

def test_verify_that_crashes_leaves_no_temporary_folder(small, tmp_path, capsys, monkeypatch):
    import tempfile
    from types import SimpleNamespace

    from rep_accel.errors import RepAccelError
    from rep_accel.verification import runner

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    monkeypatch.setattr(runner, "build_rtl", lambda *a, **k: SimpleNamespace(cached=True, build_dir=scratch / "rtl",
                                                                             seconds=0.0))

    def crash(*a, **k):
        raise RepAccelError("the simulator crashed (test)")
    monkeypatch.setattr(runner, "run_job", crash)
    assert_user_error(capsys, "verify", small / "build", "--input", small / "x.npy", says="crashed")
    assert list(scratch.iterdir()) == []


# ---------------------------------------------------------------- every file output

@pytest.fixture(scope="module")
def labelled(small):
    """small's input as a labelled .npz for evaluate."""
    x = np.load(small / "x.npy")
    np.savez(small / "data.npz", x=x, y=np.zeros(len(x), np.int64))
    return small / "data.npz"


def _file_outputs(small, labelled, target):
    b, x = small / "build", small / "x.npy"
    return {
        "simulate --json": ["simulate", b, "--input", x, "--json", target],
        "simulate --out": ["simulate", b, "--input", x, "--out", target],
        "evaluate --json": ["evaluate", b, "--data", labelled, "--serial", "--json", target],
        "export -o": ["export", b, "-o", target],
        "verify --json": ["verify", b, "--input", x, "--json", target],
        "verify --waves": ["verify", b, "--input", x, "--waves", target],
        "fuse -o": ["fuse", "rep_accel/data/default_model.pt", "-o", target],
    }


@pytest.mark.parametrize("which", ["simulate --json", "simulate --out", "evaluate --json", "export -o",
                                   "verify --json", "verify --waves", "fuse -o"])
def test_every_file_output_under_a_file_is_refused_before_any_work(small, labelled, tmp_path, capsys, which):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    suffix = {"simulate --out": ".npy", "export -o": ".onnx", "fuse -o": ".pt", "verify --waves": ".vcd"}.get(which,
                                                                                                       ".json")
    argv = _file_outputs(small, labelled, blocker / f"out{suffix}")[which]
    before = snapshot(tmp_path, small)
    assert_user_error(capsys, *argv, says=str(blocker))
    assert snapshot(tmp_path, small) == before


@pytest.mark.parametrize("which,target", [("export -o", "build/manifest.json"), ("simulate --out", "x.npy")])
def test_a_file_output_may_not_overwrite_an_input(small, labelled, tmp_path, capsys, which, target):
    import shutil
    work = tmp_path / "w"
    shutil.copytree(small, work)
    argv = _file_outputs(work, work / "data.npz", work / target)[which]
    before = snapshot(work)
    assert_user_error(capsys, *argv, says="also an input")
    assert snapshot(work) == before
