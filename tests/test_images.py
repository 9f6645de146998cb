"""Build folders (rep_accel.images): round trip, layout of params.bin and the hex files,
determinism, and refusal of damaged builds."""

import hashlib
import json
import shutil

import numpy as np
import pytest

from rep_accel import images, quantize
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import pack_group_params, plan_tiles, schedule_layer
from rep_accel.testing import assert_qnet_equal
from rep_accel.testing import random_fused_network as random_network

GENERICS = [HardwareGenerics(8, 8), HardwareGenerics(pi=3, po=5), HardwareGenerics(pi=16, po=4)]


@pytest.fixture(scope="module")
def qnet_and_report():
    # Groups 2 and C_out not a multiple of PO: tiles that span two groups, partial tiles.
    net = random_network(21, in_channels=3, widths=(6, 12, 10), strides=(2, 1, 2), groups=(1, 2, 1))
    calib = np.random.default_rng(21).normal(0, 1, (24, 3, 10, 7)).astype(np.float32)
    return quantize.quantize_network(net, calib, return_report=True, show_progress=False)


@pytest.fixture
def build(tmp_path, qnet_and_report):
    qnet, report = qnet_and_report
    out = tmp_path / "build"
    images.write_build(qnet, GENERICS[0], out, report=report, source={"model": "random"})
    return out


@pytest.mark.parametrize("generics", GENERICS, ids=lambda g: f"{g.pi}x{g.po}")
def test_round_trip_and_stream_order(tmp_path, qnet_and_report, generics):
    qnet, report = qnet_and_report
    out = images.write_build(qnet, generics, tmp_path / "b", report=report)
    b = images.load_build(out)
    assert_qnet_equal(qnet, b.qnet)
    assert b.generics == generics
    params = (out / "params.bin").read_bytes()
    assert b.params == params
    # params.bin is the tile groups' beats, layer by layer, group by group, nothing else.
    expected = b"".join(pack_group_params(l.weight, l.bias, l.m0, l.n, l.shape, j, generics).tobytes()
                        for l in qnet.layers for j in schedule_layer(l.shape, generics).groups)
    assert params == expected
    offset = 0
    for i, (layer, entry) in enumerate(zip(qnet.layers, b.manifest["layers"])):
        assert b.tiles(i) == plan_tiles(layer.shape, generics)
        groups = schedule_layer(layer.shape, generics).groups
        assert [row["tiles"] for row in entry["tile_groups"]] == [[t.index for t in j.tiles] for j in groups]
        for j, row in zip(groups, entry["tile_groups"]):
            beats = pack_group_params(layer.weight, layer.bias, layer.m0, layer.n, layer.shape, j, generics)
            assert row["offset"] == offset and row["cg"] == j.cg
            assert np.array_equal(b.group_params(layer.name, j.index), beats)
            offset += beats.nbytes
        # The hex file: one beat per line, most significant byte first.
        lines = (out / entry["hex"]).read_text().splitlines()
        beats = b.layer_params(i)
        assert len(lines) == beats.shape[0]
        for line, beat in zip(lines, beats):
            assert len(line) == 2 * generics.param_beat_bytes
            assert bytes.fromhex(line)[::-1] == beat.tobytes()
    assert offset == len(params)


def test_first_beats_read_as_docs_describe(build, qnet_and_report):
    """Header and requantization beats decoded by hand from docs/architecture.md's table."""
    qnet, _ = qnet_and_report
    params = (build / "params.bin").read_bytes()
    layer = qnet.layers[0]
    tile0 = plan_tiles(layer.shape, HardwareGenerics(8, 8))[0]
    beat = 72
    assert int.from_bytes(params[0:2], "little") == tile0.cg
    assert int.from_bytes(params[2:4], "little") == tile0.out_count == 6
    for o in range(8):
        lane = params[beat * (1 + o):beat * (2 + o)]
        bias = int.from_bytes(lane[0:4], "little", signed=True)
        m0 = int.from_bytes(lane[4:8], "little")
        if o < 6:
            assert (bias, m0, lane[8]) == (int(layer.bias[o]), int(layer.m0[o]), int(layer.n[o]))
        else:
            assert (bias, m0, lane[8]) == (0, 0, 31)
    manifest = json.loads((build / "manifest.json").read_text())
    assert manifest["version"] == images.BUILD_VERSION and manifest["generics"]["pi"] == 8
    assert manifest["layers"][0]["m0"] == [int(v) for v in layer.m0]
    head = (build / "head.bin").read_bytes()
    h = qnet.head
    assert head[:h.fc_weight.size] == h.fc_weight.tobytes()
    assert np.array_equal(np.frombuffer(head[h.fc_weight.size:], "<i4"), h.fc_bias)
    for name, info in manifest["files"].items():
        data = (build / name).read_bytes()
        assert info == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_deterministic(tmp_path, qnet_and_report):
    """Same network -> byte-identical folders, also when quantized again from scratch."""
    net = random_network(21, in_channels=3, widths=(6, 12, 10), strides=(2, 1, 2), groups=(1, 2, 1))
    calib = np.random.default_rng(21).normal(0, 1, (24, 3, 10, 7)).astype(np.float32)
    outs = []
    for k in range(2):
        qnet, report = quantize.quantize_network(net, calib, return_report=True, show_progress=False)
        outs.append(images.write_build(qnet, GENERICS[1], tmp_path / f"b{k}", report=report))
    files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(outs[1]) for p in outs[1].rglob("*") if p.is_file())
    assert len(files) == 4 + 3  # manifest, params, head, ownership file, one hex per layer
    for f in files:
        assert (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes(), f


def _edit_manifest(build, edit, rehash: bool):
    m = json.loads((build / "manifest.json").read_text())
    edit(m)
    if rehash:
        m["manifest_sha256"] = images._sha256(images._canonical(m))
    (build / "manifest.json").write_text(json.dumps(m))


def test_truncated_params_refused(build):
    p = build / "params.bin"
    p.write_bytes(p.read_bytes()[:-72])
    with pytest.raises(RepAccelError, match=r"params\.bin: is \d+ bytes, the manifest says \d+ \(truncated"):
        images.load_build(build)


def test_modified_params_refused(build):
    p = build / "params.bin"
    data = bytearray(p.read_bytes())
    data[100] ^= 1
    p.write_bytes(bytes(data))
    with pytest.raises(RepAccelError, match=r"params\.bin: sha256 does not match"):
        images.load_build(build)


def test_wrong_version_refused(build):
    _edit_manifest(build, lambda m: m.update(version=images.BUILD_VERSION + 1), rehash=True)
    with pytest.raises(RepAccelError, match=r"manifest\.json: build version 3, this rep-accel reads version 2"):
        images.load_build(build)


def test_edited_manifest_refused(build):
    def edit(m):
        m["layers"][1]["s_y"] *= 1.01
    _edit_manifest(build, edit, rehash=False)
    with pytest.raises(RepAccelError, match=r"manifest\.json: checksum mismatch \(the manifest was edited"):
        images.load_build(build)


def test_consistently_edited_manifest_refused(build):
    """An edit with a recomputed checksum still fails: the bias no longer matches params.bin."""
    def edit(m):
        m["layers"][1]["bias"][0] += 1
    _edit_manifest(build, edit, rehash=True)
    with pytest.raises(RepAccelError, match=r"params\.bin: layer l1 tile group 0 does not match the manifest"):
        images.load_build(build)


def test_missing_or_unreadable_files_refused(build, tmp_path):
    hex_file = sorted((build / "hex").iterdir())[0]
    hex_file.unlink()
    with pytest.raises(RepAccelError, match=rf"{hex_file.name}: missing"):
        images.load_build(build)
    (build / "manifest.json").write_text("{not json")
    with pytest.raises(RepAccelError, match=r"manifest\.json: not readable JSON"):
        images.load_build(build)
    (build / "manifest.json").unlink()
    with pytest.raises(RepAccelError, match="not a build folder"):
        images.load_build(build)
    with pytest.raises(RepAccelError, match="not a build folder"):
        images.load_build(tmp_path / "nowhere")


def test_output_path_that_is_a_file_and_failed_writes_leave_nothing(tmp_path, qnet_and_report):
    qnet, _ = qnet_and_report
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(RepAccelError, match="is a file"):
        images.write_build(qnet, GENERICS[0], f)
    assert f.read_text() == "x"
    bad = quantize.QuantizedNetwork(qnet.input_size, qnet.input_scale, list(qnet.layers), qnet.head, qnet.meta)
    layer = bad.layers[0]
    bad.layers[0] = type(layer)(**{**layer.__dict__, "weight": np.full_like(layer.weight, -128)})
    with pytest.raises(RepAccelError, match="-128"):
        images.write_build(bad, GENERICS[0], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_rewrite_replaces_a_previous_build(tmp_path, qnet_and_report, build):
    qnet, report = qnet_and_report
    shutil.copytree(build, tmp_path / "copy")
    images.write_build(qnet, GENERICS[1], tmp_path / "copy", report=report)
    b = images.load_build(tmp_path / "copy")
    assert b.generics == GENERICS[1]
    assert_qnet_equal(qnet, b.qnet)
