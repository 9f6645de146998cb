"""The build folder `rep-accel compile` writes and the simulator and RTL read.

    build/
      manifest.json   versioned description: generics, every layer's shape, scales,
                      per-channel bias/M0/n, tile table with byte offsets, head, the
                      size and sha256 of every other file, the quantization report
      params.bin      the parameter beats of every layer, layer by layer, tile by tile
                      (layout.pack_group_params): exactly what the host streams to `params`
      head.bin        the integer head: FC weights int8 (classes, C) row-major, then the
                      FC bias int32 little-endian (classes,)
      hex/NN_<layer>.hex   the same beats as params.bin for $readmemh: one beat per line,
                      most significant byte first (byte k of a beat is bits [8k+7:8k])

`load_build` reconstructs the QuantizedNetwork from the manifest's scales and
params.bin's bytes (the weights are read back from the beats, not stored twice), so a
build that loads is proof that params.bin is complete. It refuses a build whose version,
sizes or checksums do not match, or whose manifest was edited.

Deterministic: no timestamps; the same network and generics give byte-identical files.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import numpy as np

from . import numerics
from .errors import RepAccelError
from .fsutil import atomic_output_dir
from .generics import HardwareGenerics
from .layout import (LayerShape, Tile, TileGroup, group_param_beats, pack_group_params, schedule_layer,
                     unpack_group_params)
from .qnetwork import QuantizedHead, QuantizedLayer, QuantizedNetwork
from .untrusted import check_allocation, jsonable, contained_path, expect, int_in_range, read_limited

#: Largest manifest and largest data file read from a build (bytes); RepVGG-B3's
#: params.bin is about 110 MB.
MAX_MANIFEST_BYTES = 64 << 20
MAX_FILE_BYTES = 1 << 30
#: Largest channel count and input size a build may claim (RepVGG-B3 has 2560 channels).
MAX_CHANNELS = 8192
MAX_CLASSES = 1 << 20

BUILD_FORMAT = "rep-accel-build"
#: Bumped whenever the meaning of a field or file changes; load_build accepts only this one.
BUILD_VERSION = 2
MANIFEST = "manifest.json"
PARAMS = "params.bin"
HEAD = "head.bin"
HEX_DIR = "hex"


# ----------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------

def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(manifest: dict) -> bytes:
    """The bytes the manifest's own checksum covers: sorted keys, no whitespace, without the checksum."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def _dumps(manifest: dict) -> str:
    """Indented JSON with every list of plain numbers on one line (per-channel arrays stay readable)."""
    text = json.dumps(manifest, indent=1, allow_nan=False)
    return re.sub(r"\[\s*([-+0-9.eE,\s]+?)\s*\]", 
                  lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)


def hex_name(index: int, name: str) -> str:
    """hex/NN_<name>.hex with the layer name reduced to [A-Za-z0-9_-]."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_") or "layer"
    return f"{HEX_DIR}/{index:02d}_{safe}.hex"


def beats_to_hex(beats: np.ndarray) -> bytes:
    """$readmemh text: one beat per line, most significant byte (the last) first, lowercase."""
    return b"".join(row[::-1].tobytes().hex().encode() + b"\n" for row in beats)


def _tile_dict(t: Tile) -> dict:
    return {"index": t.index, "out_base": t.out_base, "out_count": t.out_count,
            "in_base": t.in_base, "in_count": t.in_count, "cg": t.cg}


def _group_dict(j: TileGroup) -> dict:
    return {"index": j.index, "tiles": [t.index for t in j.tiles], "cg": j.cg}


def _shape_dict(s: LayerShape) -> dict:
    return {"cin": s.cin, "cout": s.cout, "groups": s.groups, "stride": s.stride,
            "height": s.height, "width": s.width, "input_signed": bool(s.input_signed)}


def layer_param_beats(layer: QuantizedLayer, generics: HardwareGenerics) -> list[np.ndarray]:
    """The parameter beats of every tile group of `layer`, uint8 (beats, 9 * PI) each."""
    return [pack_group_params(layer.weight, layer.bias, layer.m0, layer.n, layer.shape, j, generics)
            for j in schedule_layer(layer.shape, generics, layer.name).groups]


# ----------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------

def _positive_scale(value, what: str) -> None:
    if not (isinstance(value, (int, float, np.floating)) and math.isfinite(value) and value > 0):
        raise RepAccelError(f"{what} = {value!r} must be a finite positive scale")


def _check_qnet(qnet: QuantizedNetwork) -> None:
    """Refuse a network outside the contract's types and ranges (docs/numerics.md).

    Called on every network written to a build and on every build loaded, so a build
    whose values were edited (with the checksums recomputed) is refused, not run."""
    # Messages name the manifest's fields (input.scale, head.pool_n, ...).
    _positive_scale(qnet.input_scale, "input.scale")
    if len(qnet.input_size) != 3 or any(not 1 <= int(v) < (1 << 12) for v in qnet.input_size[1:]) \
            or not 1 <= int(qnet.input_size[0]) <= MAX_CHANNELS:
        raise RepAccelError(f"input.size {tuple(qnet.input_size)} must be C,H,W with C <= {MAX_CHANNELS}, H, W < 4096")
    h = qnet.head
    if not 0 <= int(h.pool_m0) < 1 << 31:
        raise RepAccelError(f"head.pool_m0 = {h.pool_m0} is outside [0, 2^31)")
    if not 1 <= int(h.pool_n) <= numerics.N_MAX:
        raise RepAccelError(f"head.pool_n = {h.pool_n} is outside [1, {numerics.N_MAX}]")
    for name in ("s_feat", "s_pool", "s_fc", "logit_scale"):
        _positive_scale(getattr(h, name), f"head.{name}")
    fc_w = np.asarray(h.fc_weight)
    if fc_w.dtype != np.int8 or fc_w.ndim != 2 or fc_w.shape[0] < 1 or np.any(fc_w == -128):
        raise RepAccelError(f"head: FC weight must be int8 (classes >= 1, C) in [-127, 127], got {fc_w.dtype} {fc_w.shape}")
    if np.asarray(h.fc_bias).shape != (fc_w.shape[0],):
        raise RepAccelError(f"head: FC bias has shape {np.asarray(h.fc_bias).shape}, expected ({fc_w.shape[0]},)")
    if qnet.layers and fc_w.shape[1] != qnet.layers[-1].shape.cout:
        raise RepAccelError(f"head: FC takes {fc_w.shape[1]} channels, the last layer gives {qnet.layers[-1].shape.cout}")
    for layer in qnet.layers:
        _positive_scale(layer.s_x, f"layer {layer.name}: s_x")
        _positive_scale(layer.s_y, f"layer {layer.name}: s_y")
        s_w = np.asarray(layer.s_w, dtype=np.float64)
        if not np.all(np.isfinite(s_w)) or np.any(s_w <= 0):
            raise RepAccelError(f"layer {layer.name}: weight scales s_w must be finite and positive")
        n = np.asarray(layer.n, dtype=np.int64)
        if np.any(n < numerics.N_MIN) or np.any(n > numerics.N_MAX):
            raise RepAccelError(f"layer {layer.name}: n outside [{numerics.N_MIN}, {numerics.N_MAX}]")
        w = np.asarray(layer.weight)
        if w.dtype != np.int8 or w.shape != (layer.shape.cout, layer.shape.cin_per_group, 3, 3):
            raise RepAccelError(f"layer {layer.name}: weight must be int8 (C_out, C_in/groups, 3, 3), got {w.dtype} {w.shape}")
        if np.any(w == -128):
            raise RepAccelError(f"layer {layer.name}: weight -128 is outside the symmetric int8 range [-127, 127]")
        limit = numerics.bias_limit(layer.shape.cin_per_group)
        if np.abs(np.asarray(layer.bias, dtype=np.int64)).max(initial=0) > limit:
            raise RepAccelError(f"layer {layer.name}: a bias exceeds numerics.bias_limit = {limit}")
        m0 = np.asarray(layer.m0, dtype=np.int64)
        if np.any(m0 < 1 << 30) or np.any(m0 >= 1 << 31):
            raise RepAccelError(f"layer {layer.name}: M0 outside [2^30, 2^31)")


def write_build(qnet: QuantizedNetwork, generics: HardwareGenerics, out_dir, report=None,
                source: dict | None = None, force: bool = False) -> Path:
    """Write the build folder for `qnet` laid out for `generics` (its PI and PO) atomically.

    report: a QuantReport (or dict) stored in the manifest; source: a JSON-able dict
    describing where the network came from. force: write into a folder that holds files
    `rep-accel compile` did not write (fsutil.atomic_output_dir). Returns the output folder.
    """
    _check_qnet(qnet)
    beat_bytes = generics.param_beat_bytes
    params = bytearray()
    hex_files: dict[str, bytes] = {}
    layers = []
    for i, layer in enumerate(qnet.layers):
        scheduled = schedule_layer(layer.shape, generics, layer.name)
        layer_start = len(params)
        tile_rows = [_tile_dict(t) for t in scheduled.tiles]
        group_rows = []
        all_beats = []
        for j, beats in zip(scheduled.groups, layer_param_beats(layer, generics)):
            group_rows.append({**_group_dict(j), "offset": len(params), "beats": int(beats.shape[0])})
            params += beats.tobytes()
            all_beats.append(beats)
        beats = np.concatenate(all_beats)
        name = hex_name(i, layer.name)
        hex_files[name] = beats_to_hex(beats)
        s = layer.shape
        layers.append({
            "index": i, "name": layer.name, "shape": _shape_dict(s),
            "out_height": s.out_height, "out_width": s.out_width,
            "s_x": float(layer.s_x), "s_y": float(layer.s_y),
            "s_w": [float(v) for v in layer.s_w],
            "bias": [int(v) for v in layer.bias], "m0": [int(v) for v in layer.m0],
            "n": [int(v) for v in layer.n],
            "params": {"offset": layer_start, "bytes": len(params) - layer_start,
                       "beats": (len(params) - layer_start) // beat_bytes},
            "hex": name, "tiles": tile_rows, "tile_groups": group_rows,
        })
    h = qnet.head
    fc_w = np.ascontiguousarray(np.asarray(h.fc_weight, dtype=np.int8))
    fc_b = np.asarray(h.fc_bias, dtype="<i4")
    head_bin = fc_w.tobytes() + fc_b.tobytes()
    last = qnet.layers[-1].shape
    head = {
        "pool_m0": int(h.pool_m0), "pool_n": int(h.pool_n), "s_feat": float(h.s_feat),
        "s_pool": float(h.s_pool), "s_fc": float(h.s_fc), "logit_scale": float(h.logit_scale),
        "classes": int(fc_w.shape[0]), "channels": int(fc_w.shape[1]),
        "pool_height": last.out_height, "pool_width": last.out_width,
        "fc_weight": {"file": HEAD, "offset": 0, "bytes": fc_w.nbytes, "dtype": "int8",
                      "shape": list(fc_w.shape)},
        "fc_bias": {"file": HEAD, "offset": fc_w.nbytes, "bytes": fc_b.nbytes, "dtype": "int32le",
                    "shape": list(fc_b.shape)},
    }
    files = {PARAMS: bytes(params), HEAD: head_bin, **hex_files}
    manifest = {
        "format": BUILD_FORMAT,
        "version": BUILD_VERSION,
        "generics": generics.to_dict(),
        "param_beat_bytes": beat_bytes,
        "input": {"size": [int(v) for v in qnet.input_size], "scale": float(qnet.input_scale), "dtype": "int8"},
        "layers": layers,
        "head": head,
        "meta": jsonable(qnet.meta),
        "source": jsonable(source or {}),
        "report": jsonable(report) if report is not None else None,
        "files": {name: {"bytes": len(data), "sha256": _sha256(data)} for name, data in sorted(files.items())},
    }
    manifest["manifest_sha256"] = _sha256(_canonical(manifest))
    text = _dumps(manifest).encode() + b"\n"
    with atomic_output_dir(out_dir, "compile", force) as tmp:
        (tmp / HEX_DIR).mkdir()
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        (tmp / MANIFEST).write_bytes(text)
    return Path(out_dir)


# ----------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------

class Build:
    """A loaded, validated build folder.

    path, manifest (dict), generics (HardwareGenerics), qnet (QuantizedNetwork), params
    (bytes of params.bin), report (dict or None). `layer_params(i)` / `group_params(i, j)`
    give the packed beats, uint8 (beats, 9 * PI); `tiles(i)` the layer's tile plan.
    """

    def __init__(self, path: Path, manifest: dict, generics: HardwareGenerics, qnet: QuantizedNetwork,
                 params: bytes):
        self.path = path
        self.manifest = manifest
        self.generics = generics
        self.qnet = qnet
        self.params = params

    @property
    def report(self):
        return self.manifest.get("report")

    def _layer_index(self, layer) -> int:
        if isinstance(layer, str):
            for entry in self.manifest["layers"]:
                if entry["name"] == layer:
                    return entry["index"]
            raise RepAccelError(f"{self.path}: no layer named {layer!r}")
        return int(layer)

    def tiles(self, layer) -> list[Tile]:
        """The tile plan of a layer (index or name)."""
        return list(self.schedule(layer).tiles)

    def schedule(self, layer):
        """The layer's schedule (layout.ScheduledLayer: tiles and tile groups), index or name."""
        q = self.qnet.layers[self._layer_index(layer)]
        return schedule_layer(q.shape, self.generics, q.name)

    def layer_params(self, layer) -> np.ndarray:
        """All parameter beats of a layer (index or name), uint8 (beats, 9 * PI)."""
        p = self.manifest["layers"][self._layer_index(layer)]["params"]
        return np.frombuffer(self.params, np.uint8, p["bytes"], p["offset"]).reshape(-1, self.generics.param_beat_bytes)

    def group_params(self, layer, group: int) -> np.ndarray:
        """The parameter beats of one tile group, uint8 (beats, 9 * PI)."""
        t = self.manifest["layers"][self._layer_index(layer)]["tile_groups"][group]
        nbytes = t["beats"] * self.generics.param_beat_bytes
        return np.frombuffer(self.params, np.uint8, nbytes, t["offset"]).reshape(-1, self.generics.param_beat_bytes)


def _fail(path, msg: str):
    raise RepAccelError(f"{path}: {msg}; the build is damaged, rebuild it with `rep-accel compile`")


def _get(d: dict, key: str, where: str, path):
    if not isinstance(d, dict) or key not in d:
        _fail(path, f"missing field {where}{key}")
    return d[key]


def load_build(path) -> Build:
    """Read and validate a build folder; raise RepAccelError naming the damaged file."""
    root = Path(path)
    mpath = root / MANIFEST
    if not root.is_dir():
        raise RepAccelError(f"{root} is not a build folder (run `rep-accel compile model.pt -o {root}`)")
    if not mpath.is_file():
        raise RepAccelError(f"{mpath} not found: {root} is not a build folder (run `rep-accel compile`)")
    if mpath.is_symlink():
        _fail(mpath, "is a link; a build's files must be its own")
    try:
        manifest = json.loads(read_limited(mpath, MAX_MANIFEST_BYTES, "manifest"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        _fail(mpath, f"not readable JSON ({type(e).__name__})")
    if not isinstance(manifest, dict) or manifest.get("format") != BUILD_FORMAT:
        _fail(mpath, f"not a rep-accel build manifest (format != {BUILD_FORMAT!r})")
    version = manifest.get("version")
    if version != BUILD_VERSION:
        raise RepAccelError(f"{mpath}: build version {version!r}, this rep-accel reads version {BUILD_VERSION}; "
                            f"recompile the model with this rep-accel")
    try:
        if manifest.get("manifest_sha256") != _sha256(_canonical(manifest)):
            _fail(mpath, "checksum mismatch (the manifest was edited or damaged)")
    except ValueError:
        _fail(mpath, "checksum mismatch (the manifest was edited or damaged)")
    try:
        return _load_checked(root, manifest)
    except RepAccelError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as e:
        _fail(mpath, f"inconsistent content ({type(e).__name__}: {str(e)[:200]})")


def _read_files(root: Path, manifest: dict) -> dict[str, bytes]:
    mpath = root / MANIFEST
    files = expect(_get(manifest, "files", "", mpath), dict, "files", mpath)
    data = {}
    for name, info in files.items():
        # A name from the manifest must stay inside the build folder: no absolute path,
        # no '..', no link that leaves (which would read, or disclose the size of, any file).
        p = contained_path(root, name, f"files.{name[:60]}", mpath)
        expect(info, dict, f"files.{name}", mpath)
        size = int_in_range(info.get("bytes"), 0, MAX_FILE_BYTES, f"files.{name}.bytes", mpath)
        expect(info.get("sha256"), str, f"files.{name}.sha256", mpath)
        if p.is_symlink() or not p.is_file():
            _fail(p, "missing (or not a regular file)")
        actual = p.stat().st_size
        if actual != size:
            _fail(p, f"is {actual} bytes, the manifest says {size} (truncated or overwritten)")
        blob = read_limited(p, size, name)
        if len(blob) != size:
            _fail(p, f"is {len(blob)} bytes, the manifest says {size} (truncated or overwritten)")
        if _sha256(blob) != info["sha256"]:
            _fail(p, "sha256 does not match the manifest (the file was modified)")
        data[name] = blob
    for required in (PARAMS, HEAD):
        if required not in data:
            _fail(root / MANIFEST, f"does not list {required}")
    return data


def _layer_shape(entry, mpath) -> LayerShape:
    """A layer's shape from the manifest, every field type- and range-checked."""
    s = expect(_get(entry, "shape", "layers[].", mpath), dict, "layers[].shape", mpath)
    f = "layers[].shape."
    cin = int_in_range(s.get("cin"), 1, MAX_CHANNELS, f + "cin", mpath)
    cout = int_in_range(s.get("cout"), 1, MAX_CHANNELS, f + "cout", mpath)
    groups = int_in_range(s.get("groups"), 1, cin, f + "groups", mpath)
    stride = int_in_range(s.get("stride"), 1, 2, f + "stride", mpath)
    height = int_in_range(s.get("height"), 1, (1 << 12) - 1, f + "height", mpath)
    width = int_in_range(s.get("width"), 1, (1 << 12) - 1, f + "width", mpath)
    signed = expect(s.get("input_signed"), bool, f + "input_signed", mpath)
    if cin % groups or cout % groups:
        _fail(mpath, f"layer {entry.get('name')!r:.40}: groups {groups} does not divide C_in {cin} and C_out {cout}")
    return LayerShape(cin=cin, cout=cout, groups=groups, stride=stride, height=height, width=width,
                      input_signed=signed)


def _check_structure(manifest: dict, mpath: Path) -> None:
    """The types of the manifest's fields, before any of them is used."""
    expect(_get(manifest, "generics", "", mpath), dict, "generics", mpath)
    expect(_get(manifest, "param_beat_bytes", "", mpath), int, "param_beat_bytes", mpath)
    layers = expect(_get(manifest, "layers", "", mpath), list, "layers", mpath)
    if not layers:
        _fail(mpath, "lists no layers")
    for k, entry in enumerate(layers):
        expect(entry, dict, f"layers[{k}]", mpath)
        expect(_get(entry, "name", f"layers[{k}].", mpath), str, f"layers[{k}].name", mpath)
        expect(_get(entry, "tiles", f"layers[{k}].", mpath), list, f"layers[{k}].tiles", mpath)
        groups = expect(_get(entry, "tile_groups", f"layers[{k}].", mpath), list, f"layers[{k}].tile_groups", mpath)
        for row in groups:
            expect(row, dict, f"layers[{k}].tile_groups[]", mpath)
        expect(_get(entry, "params", f"layers[{k}].", mpath), dict, f"layers[{k}].params", mpath)
        expect(_get(entry, "hex", f"layers[{k}].", mpath), str, f"layers[{k}].hex", mpath)
        for key in ("bias", "m0", "n", "s_w"):
            values = expect(_get(entry, key, f"layers[{k}].", mpath), list, f"layers[{k}].{key}", mpath)
            kinds = (int, float) if key == "s_w" else int
            for v in values:
                expect(v, kinds, f"layers[{k}].{key}[]", mpath)
        for key in ("s_x", "s_y"):
            expect(_get(entry, key, f"layers[{k}].", mpath), (int, float), f"layers[{k}].{key}", mpath)
    # Types only for the values the network carries: their ranges are the contract's,
    # checked once on the rebuilt network (_check_qnet), as for every network written.
    head = expect(_get(manifest, "head", "", mpath), dict, "head", mpath)
    for key in ("pool_m0", "pool_n"):
        expect(_get(head, key, "head.", mpath), int, f"head.{key}", mpath)
    for key in ("s_feat", "s_pool", "s_fc", "logit_scale"):
        expect(_get(head, key, "head.", mpath), (int, float), f"head.{key}", mpath)
    for key in ("fc_weight", "fc_bias"):
        d = expect(_get(head, key, "head.", mpath), dict, f"head.{key}", mpath)
        shape = expect(_get(d, "shape", f"head.{key}.", mpath), list, f"head.{key}.shape", mpath)
        for v in shape:
            int_in_range(v, 1, max(MAX_CLASSES, MAX_CHANNELS), f"head.{key}.shape[]", mpath)
        for f in ("offset", "bytes"):
            int_in_range(_get(d, f, f"head.{key}.", mpath), 0, MAX_FILE_BYTES, f"head.{key}.{f}", mpath)
    inp = expect(_get(manifest, "input", "", mpath), dict, "input", mpath)
    size = expect(_get(inp, "size", "input.", mpath), list, "input.size", mpath)
    if len(size) != 3:
        _fail(mpath, f"input.size has {len(size)} entries; it must be C,H,W")
    for v in size:
        expect(v, int, "input.size[]", mpath)
    expect(_get(inp, "scale", "input.", mpath), (int, float), "input.scale", mpath)
    expect(manifest.get("meta", {}), dict, "meta", mpath)


def _load_checked(root: Path, manifest: dict) -> Build:
    mpath = root / MANIFEST
    _check_structure(manifest, mpath)
    generics = HardwareGenerics.from_dict(manifest["generics"])
    if manifest["param_beat_bytes"] != generics.param_beat_bytes:
        _fail(mpath, "param_beat_bytes does not match the generics")
    # Every shape is checked, and the memory its weights need counted, before a file is read.
    shapes = [_layer_shape(entry, mpath) for entry in manifest["layers"]]
    check_allocation(sum(s.cout * s.cin_per_group * 9 for s in shapes), f"{mpath}: the layers' weights",
                     "the build claims layers larger than any real network")
    data = _read_files(root, manifest)
    params = data[PARAMS]
    beat_bytes = generics.param_beat_bytes
    layers = []
    offset = 0
    for i, (entry, shape) in enumerate(zip(manifest["layers"], shapes)):
        scheduled = schedule_layer(shape, generics, entry["name"])
        tiles, groups = scheduled.tiles, scheduled.groups
        if [_tile_dict(t) for t in tiles] != entry["tiles"]:
            _fail(mpath, f"tile table of layer {entry['name']} does not match the tile plan for these generics")
        if [_group_dict(j) for j in groups] != [{k: v for k, v in r.items() if k not in ("offset", "beats")}
                                                for r in entry["tile_groups"]]:
            _fail(mpath, f"tile groups of layer {entry['name']} do not match the schedule for these generics")
        if entry["params"]["offset"] != offset:
            _fail(mpath, f"layer {entry['name']} starts at byte {entry['params']['offset']}, expected {offset}")
        weight = np.zeros((shape.cout, shape.cin_per_group, 3, 3), dtype=np.int8)
        blobs = []
        for j, row in zip(groups, entry["tile_groups"]):
            nbytes = group_param_beats(j, generics) * beat_bytes
            at, count = row.get("offset"), row.get("beats")
            if not (type(at) is int and type(count) is int) or at != offset or count * beat_bytes != nbytes:
                _fail(mpath, f"layer {entry['name']} tile group {j.index}: offset/size do not match the layout")
            if offset + nbytes > len(params):
                _fail(root / PARAMS, f"ends at byte {len(params)}, layer {entry['name']} needs {offset + nbytes}")
            beats = np.frombuffer(params, np.uint8, nbytes, offset).reshape(-1, beat_bytes)
            weight[j.out_base:j.out_base + j.out_count] = unpack_group_params(beats, shape, j, generics)["kernels"]
            blobs.append(beats)
            offset += nbytes
        if entry["params"]["bytes"] != offset - entry["params"]["offset"]:
            _fail(mpath, f"layer {entry['name']}: params.bytes does not match its tiles")
        layer = QuantizedLayer(
            name=entry["name"], shape=shape,
            weight=weight,
            bias=np.array(entry["bias"], dtype=np.int32), m0=np.array(entry["m0"], dtype=np.int64),
            n=np.array(entry["n"], dtype=np.int64), s_x=float(entry["s_x"]), s_y=float(entry["s_y"]),
            s_w=np.array(entry["s_w"], dtype=np.float64))
        for name, arr in (("bias", layer.bias), ("m0", layer.m0), ("n", layer.n), ("s_w", layer.s_w)):
            if arr.shape != (shape.cout,):
                _fail(mpath, f"layer {entry['name']}: {name} has {arr.size} entries, C_out is {shape.cout}")
        # Packing the reconstructed layer again must give params.bin's bytes: the header, the
        # bias/M0/n of every lane and the zero padding all agree with the manifest.
        for j, beats in zip(groups, layer_param_beats(layer, generics)):
            if not np.array_equal(beats, blobs[j.index]):
                _fail(root / PARAMS, f"layer {entry['name']} tile group {j.index} does not match the manifest's "
                                     f"bias/M0/n or the layout")
        hex_file = entry["hex"]
        if data.get(hex_file) != beats_to_hex(np.concatenate(blobs)):
            _fail(root / hex_file, "does not hold the same beats as params.bin")
        layers.append(layer)
    if offset != len(params):
        _fail(root / PARAMS, f"is {len(params)} bytes, the layers use {offset}")
    h = manifest["head"]
    head_bin = data[HEAD]
    fw, fb = h["fc_weight"], h["fc_bias"]
    if fw["bytes"] + fb["bytes"] != len(head_bin) or fb["offset"] != fw["bytes"] or fw["offset"] != 0:
        _fail(root / HEAD, "size does not match the manifest's head")
    fc_w = np.frombuffer(head_bin, np.int8, fw["bytes"], 0).reshape(fw["shape"]).copy()
    fc_b = np.frombuffer(head_bin, "<i4", fb["bytes"] // 4, fb["offset"]).astype(np.int32).reshape(fb["shape"])
    head = QuantizedHead(pool_m0=int(h["pool_m0"]), pool_n=int(h["pool_n"]), s_feat=float(h["s_feat"]),
                         s_pool=float(h["s_pool"]), fc_weight=fc_w, fc_bias=fc_b, s_fc=float(h["s_fc"]),
                         logit_scale=float(h["logit_scale"]))
    inp = manifest["input"]
    qnet = QuantizedNetwork(input_size=tuple(int(v) for v in inp["size"]), input_scale=float(inp["scale"]),
                            layers=layers, head=head, meta=manifest["meta"])
    try:
        _check_qnet(qnet)   # the contract's ranges: an edited value is refused, not run
    except RepAccelError as e:
        _fail(mpath, str(e))
    return Build(root, manifest, generics, qnet, params)
