"""Helpers shared by the test suites of the golden model, the simulator and the RTL.

`vectors_path` finds the external reference vectors (TensorFlow Lite's own
`ConvPerChannel` run on ten layers, `tests/data/vectors/README.md`); `vector_cases` turns
them into `QuantizedLayer`s plus expected outputs so that every implementation is
checked against the same data. `assert_qnet_equal` compares two integer networks
exactly (dtypes, shapes, every value and scale).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .layout import LayerShape
from .network import FusedLayer, FusedNetwork
from .numerics import shift_to_n
from .qnetwork import QuantizedHead, QuantizedLayer, QuantizedNetwork

#: Environment variable that overrides where the vectors are looked for (a folder or the .npz).
VECTORS_ENV = "REP_ACCEL_VECTORS"
VECTORS_FILE = "tflite_conv_per_channel.npz"
#: The repository root: rep_accel/ is one level below it.
REPO_ROOT = Path(__file__).resolve().parent.parent
#: The repository's copy of the reference vectors (with a README on their origin and format).
VECTORS_DIR = REPO_ROOT / "tests" / "data" / "vectors"


def vectors_path(name: str = VECTORS_FILE) -> Path:
    """Path of a reference-vector file.

    Looks in $REP_ACCEL_VECTORS (a folder, or the file itself), then in the
    repository's own copy, `tests/data/vectors`, so a clone needs nothing beside it.
    Raises FileNotFoundError listing the places it tried.
    """
    tried = []
    env = os.environ.get(VECTORS_ENV)
    if env:
        p = Path(env)
        candidates = [p] if p.suffix == ".npz" and name == VECTORS_FILE else [p / name]
    else:
        candidates = []
    candidates.append(VECTORS_DIR / name)
    for c in candidates:
        tried.append(str(c))
        if c.is_file():
            return c
    raise FileNotFoundError(f"reference vectors {name} not found; tried {tried}; set {VECTORS_ENV}")


@dataclass
class VectorCase:
    """One case of the reference vectors: a layer, its input and TFLite's output.

    x: int8 or uint8 (N, C_in, H, W); y: uint8 (N, C_out, H_out, W_out);
    m_real: float64 (C_out,) the real multipliers; shift: int64 (C_out,) TFLite's exponents.
    """

    index: int
    layer: QuantizedLayer
    x: np.ndarray
    y: np.ndarray
    m_real: np.ndarray
    shift: np.ndarray


def vector_cases(path: str | os.PathLike | None = None) -> list[VectorCase]:
    """Load every case of the vectors as a `QuantizedLayer` with the vectors' own m0/shift.

    The layer's scales are placeholders (s_x = s_y = 1, s_w = m_real): the vectors give
    integers only, and the integer arithmetic needs nothing else.
    """
    z = np.load(path or vectors_path())
    cases = []
    for i in range(int(z["n_cases"])):
        g = lambda k: z[f"c{i}_{k}"]  # noqa: E731
        x, w = g("x"), g("w")
        groups, stride = int(g("groups")), int(g("stride"))
        shape = LayerShape(cin=x.shape[1], cout=w.shape[0], groups=groups, stride=stride,
                           height=x.shape[2], width=x.shape[3], input_signed=x.dtype == np.int8)
        shift = g("shift").astype(np.int64)
        layer = QuantizedLayer(
            name=f"vector{i}", shape=shape, weight=w.astype(np.int8), bias=g("bias").astype(np.int32),
            m0=g("m0").astype(np.int64), n=shift_to_n(shift), s_x=1.0, s_y=1.0,
            s_w=g("m_real").astype(np.float64))
        cases.append(VectorCase(i, layer, x, g("y"), g("m_real").astype(np.float64), shift))
    return cases


def random_fused_network(seed: int, in_channels: int = 2, widths=(8, 8, 12), strides=(2, 1, 2),
                         groups=(1, 2, 1), classes: int = 5) -> FusedNetwork:
    """A small float fused network (layers "l0", "l1", ...) with He-initialized weights and
    small biases, for tests that need realistic but arbitrary layers."""
    rng = np.random.default_rng(seed)
    layers, cin = [], in_channels
    for i, (cout, s, g) in enumerate(zip(widths, strides, groups)):
        fan_in = 9 * cin // g
        w = rng.normal(0, np.sqrt(2 / fan_in), (cout, cin // g, 3, 3)).astype(np.float32)
        b = rng.normal(0, 0.1, cout).astype(np.float32)
        layers.append(FusedLayer(f"l{i}", w, b, s, g))
        cin = cout
    fc_w = rng.normal(0, 0.3, (classes, cin)).astype(np.float32)
    fc_b = rng.normal(0, 0.1, classes).astype(np.float32)
    return FusedNetwork(in_channels, layers, fc_w, fc_b)


def _assert_array_same(a, b, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    assert np.array_equal(a, b), f"{what}: values differ at {np.argwhere(a != b)[:5].tolist()}"


def assert_layer_equal(a: QuantizedLayer, b: QuantizedLayer, what: str = "layer") -> None:
    """Assert two integer layers are identical: name, shape, every array (dtype too) and scale."""
    assert a.name == b.name, f"{what}: name {a.name!r} != {b.name!r}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    for field in ("weight", "bias", "m0", "n", "s_w"):
        _assert_array_same(getattr(a, field), getattr(b, field), f"{what}.{field}")
    assert a.s_x == b.s_x and a.s_y == b.s_y, f"{what}: scales ({a.s_x}, {a.s_y}) != ({b.s_x}, {b.s_y})"


def assert_head_equal(a: QuantizedHead, b: QuantizedHead) -> None:
    for field in ("pool_m0", "pool_n", "s_feat", "s_pool", "s_fc", "logit_scale"):
        assert getattr(a, field) == getattr(b, field), f"head.{field}: {getattr(a, field)} != {getattr(b, field)}"
    _assert_array_same(a.fc_weight, b.fc_weight, "head.fc_weight")
    _assert_array_same(a.fc_bias, b.fc_bias, "head.fc_bias")


def assert_qnet_equal(a: QuantizedNetwork, b: QuantizedNetwork) -> None:
    """Assert two integer networks are identical (what a build round trip must preserve)."""
    assert tuple(a.input_size) == tuple(b.input_size), f"input_size {a.input_size} != {b.input_size}"
    assert a.input_scale == b.input_scale, f"input_scale {a.input_scale} != {b.input_scale}"
    assert len(a.layers) == len(b.layers), f"{len(a.layers)} layers != {len(b.layers)}"
    for i, (la, lb) in enumerate(zip(a.layers, b.layers)):
        assert_layer_equal(la, lb, f"layers[{i}]")
    assert_head_equal(a.head, b.head)
    assert a.meta == b.meta, f"meta {a.meta} != {b.meta}"
