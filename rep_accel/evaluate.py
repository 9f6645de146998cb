"""Measuring a compiled network on a labelled data set: float, int8 golden and simulator.

    source = evaluate.open_data("val.npz")                  # or images.npy + labels.npy, or a folder
    model = evaluate.EvalModel.from_build(images.load_build("build/"), fused=None)
    with distributed.session(workers=2) as engine:
        ev = evaluate.evaluate(model, source, engine)
    ev.report()["int8"]["top1"]

Every image goes through three networks: the float network (when a checkpoint is
known; `rep_accel.network.FusedNetwork.forward`), the integer golden model
(`golden.run_network`) and the simulator of the array (`sim.network.NetworkSimulator`,
fast or cycle mode). The simulator's int32 logits must equal the golden model's for every
image; an image where they differ is named in the report and the evaluation fails.

The images are cut into shards of `shard_size` consecutive images, independent of the
number of workers; a shard is the unit of work (`run_shard`), serial or as a Ray task
(`rep_accel.distributed`). Shards are read one at a time from the source, at most a few
per CPU in flight, and their results are folded into running counts in image order, so
memory stays flat however large the data set and the result (every logit, in order; see
the sha256 digests) is the same for any number of workers.
"""

from __future__ import annotations

import hashlib
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import golden
from .errors import RepAccelError
from .generics import HardwareGenerics
from .network import FusedNetwork
from .progress import progress
from .qnetwork import QuantizedNetwork

#: Images per shard (the unit of work of a worker) by default.
DEFAULT_SHARD_SIZE = 50
#: top-k accuracies reported.
TOP_K = (1, 5)
#: Names of the images and labels arrays inside a .npz (the first present is used).
NPZ_IMAGE_KEYS = ("x", "images", "inputs")
NPZ_LABEL_KEYS = ("y", "labels", "targets")
#: Kinds of logits, in the order of the report.
KINDS = ("float", "int8", "simulator")


# ----------------------------------------------------------------------------------
# Data sources
# ----------------------------------------------------------------------------------

class DataSource:
    """Labelled images read in consecutive slices.

    count (int), input_size (C, H, W), labels int64 (count,), class_names (list of str or
    None), description (str). `read(start, stop)` gives float32 (stop - start, C, H, W),
    normalized as the float network takes it; `name(i)` names image i for messages.
    Slices are asked for in increasing order; a source may be cheaper read that way.
    """

    count: int
    input_size: tuple[int, int, int]
    labels: np.ndarray
    class_names: list | None = None
    description: str = ""

    def read(self, start: int, stop: int) -> np.ndarray:
        raise NotImplementedError

    def name(self, index: int) -> str:
        return f"{self.description}[{index}]"


def _check_labels(labels, count: int, where: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != count:
        raise RepAccelError(f"{where}: labels of shape {labels.shape}, expected ({count},), one per image")
    if not np.issubdtype(labels.dtype, np.integer):
        raise RepAccelError(f"{where}: labels are {labels.dtype}; give integer class indices")
    if count and labels.min() < 0:
        raise RepAccelError(f"{where}: label {int(labels.min())} is negative; give class indices 0..classes-1")
    return labels.astype(np.int64)


def _check_image_header(shape, dtype, fortran: bool, where: str) -> tuple[int, tuple[int, int, int]]:
    if len(shape) != 4 or min(shape) < 1:
        raise RepAccelError(f"{where}: images of shape {tuple(shape)}; give N x C x H x W")
    if not np.issubdtype(dtype, np.floating):
        raise RepAccelError(f"{where}: images are {dtype}; give float normalized inputs (as the float network takes them)")
    if fortran:
        raise RepAccelError(f"{where}: images are stored in Fortran order; save them C-ordered (np.ascontiguousarray)")
    return int(shape[0]), tuple(int(v) for v in shape[1:])


def _finite(x: np.ndarray, source: DataSource, start: int) -> np.ndarray:
    bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
    if bad.any():
        raise RepAccelError(f"{source.name(start + int(np.flatnonzero(bad)[0]))}: contains NaN or inf")
    return x


class NpySource(DataSource):
    """Images in a .npy (memory-mapped: a slice reads only its own bytes), labels in another."""

    def __init__(self, images: Path, labels: Path):
        from .untrusted import open_npy
        arr = open_npy(images, "--data")
        self.count, self.input_size = _check_image_header(arr.shape, arr.dtype, False, f"--data {images}")
        self._images = arr
        self.description = images.name
        try:
            lab = np.load(labels, allow_pickle=False, mmap_mode="r")
        except (OSError, ValueError, EOFError) as e:
            raise RepAccelError(f"--labels {labels}: not a readable .npy file ({e})") from None
        # Shape checked on the memory map before anything is copied.
        self.labels = _check_labels(lab, self.count, f"--labels {labels}")

    def read(self, start: int, stop: int) -> np.ndarray:
        return _finite(np.array(self._images[start:stop], dtype=np.float32), self, start)


class _NpyMemberStream:
    """The rows of one array inside a .npz, read front to back from the (possibly
    deflated) zip member without reading the whole member: np.load of an .npz member
    would load all of it."""

    def __init__(self, path: Path, member: str):
        self.path, self.member = path, member
        self._open()
        info = self._zip.getinfo(member)
        self.shape, self.dtype = self._shape, self._dtype
        row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        if info.file_size != self._header_bytes + row_bytes * self.shape[0]:
            raise RepAccelError(f"--data {path}: member {member} is {info.file_size} bytes, its header announces "
                                f"{self._header_bytes + row_bytes * self.shape[0]} (truncated or damaged)")
        self.row_bytes = row_bytes

    def _open(self):
        self._zip = zipfile.ZipFile(self.path)
        self._file = self._zip.open(self.member)
        fmt = np.lib.format
        version = fmt.read_magic(self._file)
        if version not in ((1, 0), (2, 0)):
            raise RepAccelError(f"--data {self.path}: member {self.member} is .npy format {version}; save it with numpy")
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(self._file)
        if dtype.hasobject:
            raise RepAccelError(f"--data {self.path}: member {self.member} holds Python objects; give numbers")
        self._shape, self._fortran, self._dtype = shape, fortran, dtype
        self._header_bytes = self._file.tell()
        self.position = 0

    def read(self, start: int, stop: int) -> np.ndarray:
        if start < self.position:  # a deflate stream only goes forward: start again
            self.close()
            self._open()
        if start > self.position:
            self._skip(start - self.position)
        data = self._file.read((stop - start) * self.row_bytes)
        if len(data) != (stop - start) * self.row_bytes:
            raise RepAccelError(f"--data {self.path}: member {self.member} ends early (truncated)")
        self.position = stop
        return np.frombuffer(data, self.dtype).reshape((stop - start,) + tuple(self.shape[1:]))

    def _skip(self, rows: int):
        left = rows * self.row_bytes
        while left:
            got = len(self._file.read(min(left, 1 << 24)))
            if not got:
                raise RepAccelError(f"--data {self.path}: member {self.member} ends early (truncated)")
            left -= got
        self.position += rows

    def close(self):
        self._file.close()
        self._zip.close()


class NpzSource(DataSource):
    """Images and labels in one .npz (np.savez or np.savez_compressed): keys x/images/inputs
    and y/labels/targets. The images are streamed from the archive slice by slice."""

    def __init__(self, path: Path):
        try:
            with zipfile.ZipFile(path) as z:
                members = {Path(n).stem: n for n in z.namelist() if n.endswith(".npy")}
        except (OSError, zipfile.BadZipFile) as e:
            raise RepAccelError(f"--data {path}: not a readable .npz file ({e})") from None
        img_key = next((k for k in NPZ_IMAGE_KEYS if k in members), None)
        lab_key = next((k for k in NPZ_LABEL_KEYS if k in members), None)
        if img_key is None or lab_key is None:
            raise RepAccelError(f"--data {path}: needs an images array ({'/'.join(NPZ_IMAGE_KEYS)}) and a labels "
                                f"array ({'/'.join(NPZ_LABEL_KEYS)}); it has {', '.join(sorted(members)) or 'none'}: "
                                f"np.savez(path, x=images, y=labels)")
        try:
            self._stream = _NpyMemberStream(path, members[img_key])
            labels = _NpyMemberStream(path, members[lab_key])
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise RepAccelError(f"--data {path}: not a readable .npz file ({e})") from None
        self.count, self.input_size = _check_image_header(self._stream.shape, self._stream.dtype,
                                                          self._stream._fortran, f"--data {path} ({img_key})")
        if len(labels.shape) != 1 or labels.shape[0] != self.count:
            raise RepAccelError(f"--data {path}: {lab_key} has shape {labels.shape}, expected ({self.count},)")
        self.labels = _check_labels(labels.read(0, self.count), self.count, f"--data {path} ({lab_key})")
        labels.close()
        self.description = path.name

    def read(self, start: int, stop: int) -> np.ndarray:
        try:
            x = self._stream.read(start, stop)
        except (OSError, zipfile.BadZipFile) as e:
            raise RepAccelError(f"--data {self._stream.path}: reading images {start}..{stop - 1} failed ({e})") from None
        return _finite(x.astype(np.float32), self, start)


class FolderSource(DataSource):
    """An image folder with one subfolder per class (ImageNet's validation layout):
    classes are the subfolders sorted by name (label = position), images are every image
    file of a class folder sorted by name, read and normalized one file at a time:
    converted to C channels, resized to H x W (bilinear), (pixel/255 - mean) / std."""

    def __init__(self, root: Path, input_size, mean: np.ndarray, std: np.ndarray):
        from .datasets import IMAGE_SUFFIXES
        self.root = root
        self.input_size = tuple(int(v) for v in input_size)
        if self.input_size[0] not in (1, 3):
            raise RepAccelError(f"--data {root}: images give 1 (grey) or 3 (RGB) channels, the input has "
                                f"{self.input_size[0]}")
        self._mean, self._std = mean.astype(np.float32), std.astype(np.float32)
        top = root.resolve()
        classes = sorted(p for p in root.iterdir() if p.is_dir() and p.resolve().parent == top)
        if not classes:
            raise RepAccelError(f"--data {root}: no class subfolders; lay the images out as {root}/<class>/<image>")
        self.class_names = [c.name for c in classes]
        self._files, labels = [], []
        for label, folder in enumerate(classes):
            for f in sorted(folder.iterdir()):
                # Only regular files that really lie in the class folder (no symlink out of the data set).
                if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file() and f.resolve().parent == folder.resolve():
                    self._files.append(f)
                    labels.append(label)
        if not self._files:
            raise RepAccelError(f"--data {root}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in its class folders")
        self.count = len(self._files)
        self.labels = np.array(labels, dtype=np.int64)
        self.description = str(root)

    def name(self, index: int) -> str:
        return str(self._files[index].relative_to(self.root))

    def read(self, start: int, stop: int) -> np.ndarray:
        from .datasets import read_normalized_image
        c, h, w = self.input_size
        out = np.empty((stop - start, c, h, w), dtype=np.float32)
        for i in range(start, stop):
            out[i - start] = read_normalized_image(self._files[i], self.input_size, self._mean, self._std, "--data")
        return out


def open_data(data, labels=None, input_size=None, mean=None, std=None) -> DataSource:
    """The source of `--data`: a .npz (images and labels), a .npy of images with `labels`
    (.npy of class indices), or a folder of class subfolders (needs input_size (C, H, W)
    and mean/std: strings "0.1307" or "0.485,0.456,0.406" as `compile` takes them)."""
    from .commands.compile import _parse_floats
    path = Path(data)
    folder_opts = input_size is not None or mean is not None or std is not None
    if path.is_dir():
        if labels is not None:
            raise RepAccelError(f"--labels: a folder's labels are its class subfolders; drop --labels for {path}")
        if input_size is None or mean is None or std is None:
            raise RepAccelError(f"--data {path}: a folder of images needs --input-size C,H,W, --mean and --std "
                                f"(the normalization the model was trained with)")
        m, s = _parse_floats(mean, "--mean", input_size[0]), _parse_floats(std, "--std", input_size[0])
        if np.any(s == 0):
            raise RepAccelError("--std must not be 0")
        return FolderSource(path, input_size, m, s)
    if not path.is_file():
        raise RepAccelError(f"--data {path}: no such file or folder")
    if folder_opts and (mean is not None or std is not None):
        raise RepAccelError("--mean/--std apply to a folder of images; a .npy/.npz must already be normalized")
    if path.suffix.lower() == ".npz":
        if labels is not None:
            raise RepAccelError(f"--labels: {path} holds its labels; drop --labels")
        source = NpzSource(path)
    elif path.suffix.lower() == ".npy":
        if labels is None:
            raise RepAccelError(f"--data {path}: a .npy of images needs --labels labels.npy (class indices, one per "
                                f"image), or give one .npz with both")
        lp = Path(labels)
        if not lp.is_file():
            raise RepAccelError(f"--labels {lp}: no such file")
        source = NpySource(path, lp)
    else:
        raise RepAccelError(f"--data {path}: give a .npz, a .npy (with --labels) or a folder of class subfolders")
    if input_size is not None and tuple(input_size) != source.input_size:
        raise RepAccelError(f"--data {path}: images are {'x'.join(map(str, source.input_size))}, --input-size is "
                            f"{'x'.join(map(str, input_size))}")
    return source


# ----------------------------------------------------------------------------------
# The model and one shard
# ----------------------------------------------------------------------------------

@dataclass
class EvalModel:
    """Everything a worker needs (pickled once into Ray's object store): the integer
    network, the array it runs on, the parameter beats for cycle mode (a build's
    params.bin; None: packed from the network), the float network (None: not known),
    the simulator mode and clock (MHz)."""

    qnet: QuantizedNetwork
    generics: HardwareGenerics
    fused: FusedNetwork | None = None
    mode: str = "fast"
    clock_mhz: float = 150.0
    params: list | None = field(default=None, repr=False)
    float_note: str = ""

    @classmethod
    def from_build(cls, build, fused: FusedNetwork | None = None, mode: str = "fast", clock_mhz: float = 150.0,
                   float_note: str = ""):
        params = [np.array(build.layer_params(i)) for i in range(len(build.qnet.layers))] if mode == "cycle" else None
        return cls(build.qnet, build.generics, fused, mode, clock_mhz, params, float_note)

    def check_float(self) -> None:
        """The float network must be the one the integer network was quantized from (same layers)."""
        if self.fused is None:
            return
        q, f = self.qnet, self.fused
        want = [(l.shape.cin, l.shape.cout, l.shape.stride, l.shape.groups) for l in q.layers]
        have = [(l.cin, l.cout, l.stride, l.groups) for l in f.layers]
        if want != have or f.num_classes != q.head.fc_weight.shape[0]:
            raise RepAccelError("--checkpoint: its network (layers cin/cout/stride/groups, classes) is not the one "
                                "the build was compiled from; give the checkpoint given to `rep-accel compile`")


@dataclass
class Shard:
    """Images start..stop-1 of the data set: x float32 (n, C, H, W)."""

    index: int
    start: int
    x: np.ndarray


@dataclass
class ShardResult:
    """What a worker returns for a shard: logits of each network (float32 / int32 / int32,
    (n, classes); float None without a float network) and the simulated cycles per image
    int64 (n,), with the shard's position and the worker's seconds."""

    index: int
    start: int
    float_logits: np.ndarray | None
    int8_logits: np.ndarray
    sim_logits: np.ndarray
    cycles: np.ndarray
    seconds: dict


class _Prepared:
    """A worker's copy of the model with its simulator constructed (once per worker)."""

    def __init__(self, model: EvalModel):
        import copy

        from .sim.network import NetworkSimulator
        # Arrays that come out of Ray's object store are read-only views of shared memory;
        # torch warns on those (and would refuse to write them): the worker keeps its own copy.
        model = copy.deepcopy(model)
        self.model = model
        self.simulator = NetworkSimulator(model.qnet, model.generics, model.mode, params=model.params,
                                          clock_mhz=model.clock_mhz)


def run_shard(shard: Shard, model_handle) -> ShardResult:
    """Run one shard through the float network, the golden model and the simulator.

    model_handle: an EvalModel, or the handle `engine.put(model)` returned (a worker
    fetches it and builds its simulator once, `distributed.shared_value`)."""
    from . import distributed
    prepared = distributed.shared_value(model_handle, _Prepared)
    model = prepared.model
    seconds = {}
    t0 = time.perf_counter()
    float_logits = None
    if model.fused is not None:
        import torch
        # One thread: the float logits must not depend on where the shard runs (a Ray worker
        # has one CPU, this process may have many, and a reduction split over threads can round
        # differently).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            # A shard that came through Ray's object store is read-only; torch wants to own a writable copy.
            float_logits = np.asarray(model.fused.forward(np.require(shard.x, requirements="W")), dtype=np.float32)
        finally:
            torch.set_num_threads(threads)
    t1 = time.perf_counter()
    x_q = golden.quantize_input(shard.x, model.qnet)
    int8_logits = golden.run_network(model.qnet, x_q)
    t2 = time.perf_counter()
    result = prepared.simulator.run(x_q, show_progress=False)
    t3 = time.perf_counter()
    seconds.update(float=t1 - t0, golden=t2 - t1, simulator=t3 - t2)
    return ShardResult(shard.index, shard.start, float_logits, int8_logits, result.logits,
                       result.cycles.sum(axis=1), seconds)


def shards(source: DataSource, shard_size: int = DEFAULT_SHARD_SIZE, limit: int | None = None) -> Iterator[Shard]:
    """The source's images in shards of `shard_size`, read one shard at a time."""
    from .untrusted import check_allocation
    if shard_size < 1:
        raise RepAccelError(f"--shard-size {shard_size} must be at least 1")
    n = source.count if limit is None else min(limit, source.count)
    c, h, w = source.input_size
    check_allocation(min(shard_size, n) * c * h * w * 4, f"a shard of {min(shard_size, n)} images of {c}x{h}x{w}",
                     "lower --shard-size")
    for index, start in enumerate(range(0, n, shard_size)):
        stop = min(start + shard_size, n)
        yield Shard(index, start, source.read(start, stop))


# ----------------------------------------------------------------------------------
# Folding the results
# ----------------------------------------------------------------------------------

def top_k(logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest logits per row, (n, k), ties broken towards the lower class
    (the argmax convention), largest first."""
    order = np.argsort(-logits.astype(np.float64), axis=1, kind="stable")
    return order[:, :k]


def check_data(model: EvalModel, source: DataSource) -> None:
    """The images must have the network's input size and the labels name its classes;
    the float network (if any) must be the integer network's."""
    model.check_float()
    classes = int(model.qnet.head.fc_weight.shape[0])
    if source.input_size != tuple(int(v) for v in model.qnet.input_size):
        raise RepAccelError(f"--data {source.description}: images are {'x'.join(map(str, source.input_size))}, "
                            f"the network takes {'x'.join(map(str, model.qnet.input_size))}")
    if source.class_names is not None and len(source.class_names) != classes:
        raise RepAccelError(f"--data {source.description}: {len(source.class_names)} class folders, the network has "
                            f"{classes} classes; a label is its folder's position in name order, so every class needs "
                            f"its folder (an empty one for a class without images)")
    if source.count and source.labels.max() >= classes:
        bad = int(np.flatnonzero(source.labels >= classes)[0])
        raise RepAccelError(f"{source.name(bad)}: label {int(source.labels[bad])}, the network has only "
                            f"{classes} classes")


class Evaluation:
    """Running counts over the images in order; `report()` gives the figures.

    keep_logits: also keep every logit ((N, classes) per kind, `logits`), e.g. for tests
    or to write them out; without it the memory used does not grow with the data set.
    """

    def __init__(self, model: EvalModel, source: DataSource, keep_logits: bool = False):
        check_data(model, source)
        self.model, self.source = model, source
        self.classes = int(model.qnet.head.fc_weight.shape[0])
        self.kinds = [k for k in KINDS if k != "float" or model.fused is not None]
        self.images = 0
        self.correct = {kind: {k: 0 for k in TOP_K} for kind in self.kinds}
        self.class_total = np.zeros(self.classes, np.int64)
        self.class_correct = {kind: np.zeros(self.classes, np.int64) for kind in self.kinds}
        self.float_int8_agree = 0
        self.mismatches: list[tuple[int, str]] = []
        self.cycles_total = 0
        self.cycles_min = self.cycles_max = None
        self.digests = {kind: hashlib.sha256() for kind in self.kinds}
        self.worker_seconds = {"float": 0.0, "golden": 0.0, "simulator": 0.0}
        self.seen = np.zeros(source.count, dtype=np.uint8)
        self.keep_logits = keep_logits
        self._kept = {kind: [] for kind in self.kinds}
        self.wall_seconds = 0.0
        self.engine = "serial"
        self.workers = 1

    def add(self, r: ShardResult) -> None:
        """Fold one shard's results in; shards must come in order, each exactly once."""
        n = r.int8_logits.shape[0]
        if r.start != self.images:
            raise AssertionError(f"shard {r.index} starts at image {r.start}, expected {self.images}")
        self.seen[r.start:r.start + n] += 1
        labels = self.source.labels[r.start:r.start + n]
        logits = {"float": r.float_logits, "int8": r.int8_logits, "simulator": r.sim_logits}
        tops = {}
        for kind in self.kinds:
            lg = np.ascontiguousarray(logits[kind])
            top = top_k(lg, min(max(TOP_K), self.classes))
            tops[kind] = top[:, 0]
            for k in TOP_K:
                hit = (top[:, :k] == labels[:, None]).any(axis=1)
                self.correct[kind][k] += int(hit.sum())
                if k == 1:
                    np.add.at(self.class_correct[kind], labels, hit.astype(np.int64))
            self.digests[kind].update(lg.tobytes())
            if self.keep_logits:
                self._kept[kind].append(lg)
        np.add.at(self.class_total, labels, 1)
        if "float" in tops:
            self.float_int8_agree += int((tops["float"] == tops["int8"]).sum())
        differ = np.flatnonzero((r.sim_logits != r.int8_logits).any(axis=1))
        self.mismatches += [(r.start + int(i), self.source.name(r.start + int(i))) for i in differ]
        c = np.asarray(r.cycles, np.int64)
        self.cycles_total += int(c.sum())
        lo, hi = int(c.min()), int(c.max())
        self.cycles_min = lo if self.cycles_min is None else min(self.cycles_min, lo)
        self.cycles_max = hi if self.cycles_max is None else max(self.cycles_max, hi)
        for k, v in r.seconds.items():
            self.worker_seconds[k] += v
        self.images += n

    @property
    def logits(self) -> dict:
        """Every logit in image order per kind (keep_logits=True only)."""
        if not self.keep_logits:
            raise RuntimeError("Evaluation(keep_logits=False) keeps no logits")
        return {k: np.concatenate(v) if v else np.zeros((0, self.classes)) for k, v in self._kept.items()}

    @property
    def passed(self) -> bool:
        """Every image evaluated exactly once and the simulator equal to the golden model on each."""
        return not self.mismatches and self.images > 0 and bool((self.seen[:self.images] == 1).all())

    def report(self) -> dict:
        """The figures as a JSON-able dict (accuracies as fractions of the images)."""
        n = max(self.images, 1)
        m = self.model
        mean_cycles = self.cycles_total / n
        out = {
            "data": self.source.description, "images": self.images, "classes": self.classes,
            "mode": m.mode, "clock_mhz": m.clock_mhz, "array": f"{m.generics.pi}x{m.generics.po}",
            "engine": self.engine, "workers": self.workers,
            "float_available": m.fused is not None,
        }
        if m.fused is None:
            out["float_note"] = m.float_note or "no float network (give --checkpoint)"
        for kind in self.kinds:
            out[kind] = {f"top{k}": self.correct[kind][k] / n for k in TOP_K}
            out[kind]["correct"] = self.correct[kind][1]
        if "float" in self.kinds:
            out["float_int8_agreement"] = self.float_int8_agree / n
        out["simulator_equals_golden"] = not self.mismatches
        out["mismatches"] = [{"index": i, "image": name} for i, name in self.mismatches]
        names = self.source.class_names or [str(c) for c in range(self.classes)]
        out["per_class"] = [
            {"class": int(c), "name": names[c] if c < len(names) else str(c), "images": int(self.class_total[c]),
             **{kind: (float(self.class_correct[kind][c] / self.class_total[c]) if self.class_total[c] else None)
                for kind in self.kinds}}
            for c in range(self.classes)]
        out["cycles"] = {"per_image_mean": mean_cycles, "per_image_min": self.cycles_min,
                         "per_image_max": self.cycles_max, "total": self.cycles_total}
        out["frames_per_second"] = m.clock_mhz * 1e6 / mean_cycles if mean_cycles else None
        out["seconds"] = {"wall": self.wall_seconds, **self.worker_seconds}
        out["simulator_seconds_per_image"] = self.worker_seconds["simulator"] / n
        out["logits_sha256"] = {kind: d.hexdigest() for kind, d in self.digests.items()}
        return out


def evaluate(model: EvalModel, source: DataSource, engine, shard_size: int = DEFAULT_SHARD_SIZE,
             limit: int | None = None, keep_logits: bool = False, shard_function=run_shard,
             show_progress: bool = True) -> Evaluation:
    """Evaluate `model` on (the first `limit` images of) `source` with `engine`
    (`distributed.session()`), shard by shard; returns the Evaluation.

    shard_function: what each shard runs (default `run_shard`; same signature), e.g. a
    wrapper that fails on purpose in a test."""
    ev = Evaluation(model, source, keep_logits)
    ev.engine, ev.workers = engine.name, engine.workers
    handle = engine.put(model)
    total = source.count if limit is None else min(limit, source.count)
    bar = progress(total=total, desc=f"evaluate ({model.mode}, {engine.workers} worker(s))", unit="image") \
        if show_progress else None
    t0 = time.perf_counter()
    try:
        for _, result in engine.map(shard_function, shards(source, shard_size, limit), handle):
            ev.add(result)
            if bar is not None:
                bar.update(result.int8_logits.shape[0])
    finally:
        if bar is not None:
            bar.close()
    ev.wall_seconds = time.perf_counter() - t0
    if ev.images != total or not (ev.seen[:total] == 1).all():
        raise AssertionError(f"{ev.images} images evaluated, {total} expected (some lost or counted twice)")
    return ev


# ----------------------------------------------------------------------------------
# The table
# ----------------------------------------------------------------------------------

def format_table(rep: dict, max_classes: int = 20) -> str:
    """The human summary of `Evaluation.report()`."""
    kinds = [k for k in KINDS if k in rep]
    lines = [f"{rep['images']:,} images of {rep['data']}, {rep['classes']} classes; simulator {rep['mode']} mode on "
             f"the {rep['array']} array; {rep['engine']}", ""]
    rows = [("network", *[f"top-{k}" for k in TOP_K], "correct")]
    for kind in kinds:
        rows.append((kind, *[f"{100 * rep[kind][f'top{k}']:.2f}%" for k in TOP_K], f"{rep[kind]['correct']:,}"))
    lines += _columns(rows)
    if not rep["float_available"]:
        lines.append(f"float: not available ({rep['float_note']})")
    else:
        lines.append(f"float vs int8 top-1 agreement: {100 * rep['float_int8_agreement']:.2f}%")
    if rep["simulator_equals_golden"]:
        lines.append(f"simulator == golden: yes, every logit of all {rep['images']:,} images")
    else:
        shown = ", ".join(m["image"] for m in rep["mismatches"][:10])
        more = f" and {len(rep['mismatches']) - 10} more" if len(rep["mismatches"]) > 10 else ""
        lines.append(f"simulator == golden: NO, {len(rep['mismatches'])} image(s) differ: {shown}{more}")
    cyc = rep["cycles"]
    fps = rep["frames_per_second"]
    spread = "" if cyc["per_image_min"] == cyc["per_image_max"] else \
        f" ({cyc['per_image_min']:,}..{cyc['per_image_max']:,})"
    lines.append(f"simulator: {cyc['per_image_mean']:,.0f} cycles per image{spread}, "
                 f"{fps:,.1f} frames/s at {rep['clock_mhz']:g} MHz" if fps else "simulator: no cycles")
    s = rep["seconds"]
    lines.append(f"time: {s['wall']:.1f} s wall; in the workers {s['float']:.1f} s float, {s['golden']:.1f} s golden, "
                 f"{s['simulator']:.1f} s simulator ({1e3 * rep['simulator_seconds_per_image']:.2f} ms per image)")
    lines += ["", "per-class top-1:"]
    per = [p for p in rep["per_class"] if p["images"]]
    key = "simulator"
    if len(per) > max_classes:
        per = sorted(per, key=lambda p: (p[key], p["class"]))[:max_classes]
        lines[-1] = f"per-class top-1, the {max_classes} lowest by simulator (all classes in --json):"
    rows = [("class", "images", *kinds)]
    for p in per:
        rows.append((p["name"], str(p["images"]), *[f"{100 * p[k]:.1f}%" for k in kinds]))
    lines += _columns(rows)
    return "\n".join(lines)


def _columns(rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    out.insert(1, "-" * len(out[0]))
    return out
