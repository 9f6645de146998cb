"""A build folder is untrusted input: `rep-accel simulate` (and every command that reads a
build through images.load_build) refuses traversal, links that leave, oversized and
mistyped fields and out-of-range values, with one line and exit 2 (docs/security.md)."""

import json
import os
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rep_accel import images
from rep_accel.errors import RepAccelError

from hostile import assert_user_error, file_entry, rewrite_manifest, small_build, snapshot

SEED = 1313


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    return small_build(tmp_path_factory.mktemp("security_build"), 4, 4, SEED)


@pytest.fixture
def build(pristine, tmp_path):
    shutil.copytree(pristine / "build", tmp_path / "build", symlinks=True)
    shutil.copy(pristine / "x.npy", tmp_path / "x.npy")
    return tmp_path / "build"


def _simulate_refuses(capsys, build, says):
    before = snapshot(build.parent)
    line = assert_user_error(capsys, "simulate", build, "--input", build.parent / "x.npy", says=says)
    assert snapshot(build.parent) == before
    return line


def test_the_pristine_build_simulates(build, capsys):
    from hostile import run_cli
    rc, out, err = run_cli(capsys, "simulate", build, "--input", build.parent / "x.npy")
    assert rc == 0, err


@pytest.mark.parametrize("name", ["../../../../../../etc/passwd", "/etc/passwd", "hex/../../outside.bin",
                                  "./params.bin/../../outside.bin", "", "a\\..\\b"])
def test_manifest_file_names_stay_inside(build, capsys, name):
    outside = build.parent / "outside.bin"
    outside.write_bytes(b"secret" * 1000)
    target = outside if "outside" in name else "/etc/passwd"
    data = open(target, "rb").read() if name else b""
    rewrite_manifest(build, lambda m: m["files"].__setitem__(name, file_entry(data)))
    line = _simulate_refuses(capsys, build, says=("files",))
    if data:
        assert f"{len(data)} bytes" not in line   # the outside file's size is never disclosed


def test_params_link_to_an_outside_file_is_refused(build, capsys):
    outside = build.parent / "copy_of_params.bin"
    shutil.copy(build / images.PARAMS, outside)
    (build / images.PARAMS).unlink()
    os.symlink(outside, build / images.PARAMS)
    _simulate_refuses(capsys, build, says=(images.PARAMS,))


def test_hex_folder_link_that_leaves_is_refused(build, capsys):
    elsewhere = build.parent / "elsewhere"
    shutil.move(build / images.HEX_DIR, elsewhere)
    os.symlink(elsewhere, build / images.HEX_DIR)
    _simulate_refuses(capsys, build, says=("link that leaves",))


def test_manifest_link_is_refused(build, capsys):
    real = build.parent / "manifest_elsewhere.json"
    shutil.move(build / images.MANIFEST, real)
    os.symlink(real, build / images.MANIFEST)
    _simulate_refuses(capsys, build, says=("link",))


def test_huge_sparse_params_is_refused_before_reading(build, capsys):
    huge = 40 << 30
    with open(build / images.PARAMS, "r+b") as f:
        f.truncate(huge)                               # sparse: 40 GB claimed, nothing on disk
    rewrite_manifest(build, lambda m: m["files"][images.PARAMS].__setitem__("bytes", huge))
    _simulate_refuses(capsys, build, says=("files.params.bin.bytes", "outside"))


def _set(path, value):
    def edit(m):
        d = m
        for k in path[:-1]:
            d = d[k]
        d[path[-1]] = value
    return edit


@pytest.mark.parametrize("path,value,says", [
    (("input", "scale"), -1.0, "input.scale"),
    (("input", "scale"), 0.0, "input.scale"),
    (("head", "pool_n"), 200, "head.pool_n"),
    (("head", "pool_m0"), -5, "head.pool_m0"),
    (("head", "logit_scale"), -0.5, "head.logit_scale"),
    (("layers", 0, "shape", "cout"), 65535, "cout"),
    (("layers", 0, "shape", "cin"), 65535, "cin"),
    (("layers", 0, "shape", "width"), 100000, "width"),
    (("layers", 0, "s_x"), float("1e400"), "checksum"),   # Infinity is not JSON: never canonical
    (("files",), [], "files"),
    (("input", "size"), [1, 16], "input.size"),
    (("layers",), {"0": 1}, "layers"),
    (("generics",), "big", "generics"),
    (("head", "fc_weight", "shape"), "10x8", "head.fc_weight.shape"),
    (("layers", 0, "bias"), "0", "bias"),
    (("layers", 0, "shape", "input_signed"), "yes", "input_signed"),
    (("param_beat_bytes",), 1.5, "param_beat_bytes"),
])
def test_out_of_range_and_mistyped_fields_are_refused(build, capsys, path, value, says):
    rewrite_manifest(build, _set(path, value))
    _simulate_refuses(capsys, build, says=says)


def test_weight_stretched_to_huge_generics_is_refused(build, capsys):
    rewrite_manifest(build, _set(("generics", "max_cg"), 65535))
    _simulate_refuses(capsys, build, says=("max_cg",))


_JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8), lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids,
                                                                                       max_size=3), max_leaves=6)


def _paths(obj, prefix=()):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:3]):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_edited_manifest_loads_or_is_refused_cleanly(pristine, tmp_path_factory, data):
    """Property: whatever one field of the manifest is replaced with (checksum recomputed),
    load_build either returns a build or raises RepAccelError, never anything else."""
    folder = tmp_path_factory.mktemp("prop") / "build"
    shutil.copytree(pristine / "build", folder)
    manifest = json.loads((folder / images.MANIFEST).read_text())
    paths = [p for p in _paths(manifest) if p[0] not in ("report", "meta", "source", "manifest_sha256")]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(_JSON_VALUES)
    rewrite_manifest(folder, _set(path, value))
    try:
        images.load_build(folder)
    except RepAccelError:
        pass
