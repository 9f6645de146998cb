"""Tile groups end to end on the command line: a build records its groups, every command
refuses options that would schedule it otherwise, the simulator's two modes agree on a
grouped build, and a manifest whose group table was edited is refused."""

import json

import numpy as np
import pytest

from rep_accel import images
from rep_accel.generics import HardwareGenerics
from rep_accel.sim import synthetic

from hostile import assert_user_error, rewrite_manifest, run_cli


@pytest.fixture(scope="module")
def grouped(tmp_path_factory):
    root = tmp_path_factory.mktemp("grouped")
    qnet = synthetic.random_zoo_qnetwork("tiny", 16, seed=11)
    g = HardwareGenerics(pi=2, po=3, w_max=16, max_cg=64, max_group=3)
    images.write_build(qnet, g, root / "build")
    rng = np.random.default_rng(11)
    np.save(root / "x.npy", rng.normal(0, 1, (2,) + tuple(qnet.input_size)).astype(np.float32))
    return root, qnet, g


def test_build_records_its_tile_groups(grouped):
    root, qnet, g = grouped
    b = images.load_build(root / "build")
    assert b.generics.max_group == 3
    manifest = json.loads((root / "build" / "manifest.json").read_text())
    sizes = []
    for layer, entry in zip(qnet.layers, manifest["layers"]):
        rows = entry["tile_groups"]
        assert [t for r in rows for t in r["tiles"]] == list(range(len(entry["tiles"])))
        for r in rows:
            assert 1 <= len(r["tiles"]) <= 3 and r["cg"] * len(r["tiles"]) <= g.max_cg
            assert len({(entry["tiles"][t]["in_base"], entry["tiles"][t]["in_count"]) for t in r["tiles"]}) == 1
        sizes += [len(r["tiles"]) for r in rows]
    assert max(sizes) == 3   # the tiny model has layers of more than one tile


def test_fast_and_cycle_mode_agree_on_a_grouped_build(grouped, tmp_path, capsys):
    root, _, _ = grouped
    reports = {}
    for mode in ("fast", "cycle"):
        rc, out, err = run_cli(capsys, "simulate", str(root / "build"), "--input", str(root / "x.npy"),
                               "--mode", mode, "--json", str(tmp_path / f"{mode}.json"))
        assert rc == 0, err
        reports[mode] = json.loads((tmp_path / f"{mode}.json").read_text())
    f, c = reports["fast"], reports["cycle"]
    assert f["predictions"] == c["predictions"]
    assert [lr["cycles"] for lr in f["report"]["layers"]] == [lr["cycles"] for lr in c["report"]["layers"]]
    assert any(lr["tile_groups"] < lr["tiles"] for lr in f["report"]["layers"])


def test_options_that_regroup_the_build_are_refused(grouped, tmp_path, capsys):
    root, _, _ = grouped
    build, x = str(root / "build"), str(root / "x.npy")
    assert_user_error(capsys, "simulate", build, "--input", x, "--max-group", "2",
                      says=("--max-group 2", "tile groups of up to 3"))
    assert_user_error(capsys, "rtl", "-o", str(tmp_path / "r1"), build, "--max-group", "4",
                      says=("--max-group 4 differs from the build's max_group=3",))
    # Enough weight buffer for every tile, too little for the build's groups of 3.
    b = images.load_build(root / "build")
    biggest = max(t.cg for i in range(len(b.qnet.layers)) for t in b.tiles(i))
    assert_user_error(capsys, "rtl", "-o", str(tmp_path / "r2"), build, "--max-cg", str(biggest),
                      says=("tile groups of", "the build's images in groups of"))
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()


def _copy(root, tmp_path):
    import shutil
    shutil.copytree(root / "build", tmp_path / "b")
    return tmp_path / "b"


def test_edited_group_table_is_refused(grouped, tmp_path, capsys):
    root, _, _ = grouped
    b = _copy(root, tmp_path)

    def split_first_group(m):
        for entry in m["layers"]:
            rows = entry["tile_groups"]
            if len(rows[0]["tiles"]) > 1:
                first = dict(rows[0], tiles=rows[0]["tiles"][:1])
                rows.insert(1, dict(rows[0], tiles=rows[0]["tiles"][1:]))
                rows[0] = first
                return
    rewrite_manifest(b, split_first_group)
    assert_user_error(capsys, "simulate", str(b), "--input", str(root / "x.npy"),
                      says=("tile groups of layer", "do not match the schedule"))


@pytest.mark.parametrize("field,value", [("beats", [0] * 1000), ("offset", "0"), ("beats", None)])
def test_mistyped_group_offsets_are_refused(grouped, tmp_path, capsys, field, value):
    root, _, _ = grouped
    b = _copy(root, tmp_path)
    rewrite_manifest(b, lambda m: m["layers"][0]["tile_groups"][0].update({field: value}))
    assert_user_error(capsys, "simulate", str(b), "--input", str(root / "x.npy"),
                      says=("tile group 0: offset/size do not match the layout",))
