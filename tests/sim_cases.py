"""Layer cases shared by the simulator tests (tests/test_sim_*.py).

`LAYER_CASES` spans the layer space the simulator must get right: stride 1 and 2,
groups 1, 2 and 4, odd and even sizes, width 1, height 1, the signed network input,
channel counts that are not multiples of PI or PO (nor of the fast kernel's blocks of
4), short runs (im2col path) and long ones (direct path). `random_layer` fills one with
the one random-layer generator of rep_accel.verification.cases (random int8 weights,
biases up to the contract's limit, multipliers across the allowed shift range).
"""

from __future__ import annotations

import numpy as np
import pytest

from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape
from rep_accel.qnetwork import QuantizedLayer
from rep_accel.verification import cases as C

# (C_in, C_out, groups, stride, H, W, signed input)
LAYER_CASES = [
    (3, 8, 1, 2, 9, 7, True),
    (3, 5, 1, 1, 4, 4, True),
    (16, 16, 1, 1, 5, 6, False),
    (48, 20, 1, 2, 11, 13, False),
    (8, 12, 4, 1, 6, 1, False),
    (64, 64, 2, 1, 1, 7, False),
    (96, 32, 4, 2, 7, 7, False),
    (5, 7, 1, 1, 3, 3, False),
    (40, 6, 2, 1, 1, 1, False),
    (12, 10, 2, 2, 8, 6, False),
    (17, 9, 1, 2, 1, 5, False),
    (24, 24, 1, 1, 2, 2, False),
]


def case_id(case) -> str:
    cin, cout, groups, stride, h, w, signed = case
    return f"{cin}to{cout}_g{groups}_s{stride}_{h}x{w}" + ("_int8" if signed else "")


def random_layer(case, rng: np.random.Generator, name: str = "layer") -> QuantizedLayer:
    """A QuantizedLayer of shape `case` with random parameters from the one random-layer
    generator (rep_accel.verification.cases.random_layer, kind "mixed": multipliers fitted
    to a random input of this shape so the outputs spread over 0..255, and about 10% of the
    channels each at the largest shift and the largest positive and negative biases)."""
    cin, cout, groups, stride, h, w, signed = case
    shape = LayerShape(cin, cout, groups, stride, h, w, signed)
    return C.random_layer(rng, shape, name, "mixed", random_input(shape, rng)[0])


def random_input(shape: LayerShape, rng: np.random.Generator, n: int = 1) -> np.ndarray:
    """Random activations (n, C_in, H, W): int8 for the network input, else uint8 with
    some saturated (255) and zero pixels."""
    size = (n, shape.cin, shape.height, shape.width)
    if shape.input_signed:
        return rng.integers(-128, 128, size).astype(np.int8)
    x = rng.integers(0, 256, size)
    x[rng.random(size) < 0.1] = 255
    x[rng.random(size) < 0.2] = 0
    return x.astype(np.uint8)


def reference_output(layer: QuantizedLayer, x: np.ndarray) -> np.ndarray:
    """Plain numpy: the contract's accumulator (fast.reference_accumulators) then
    numerics.requantize_nchw; uint8 (N, C_out, H_out, W_out)."""
    from rep_accel.numerics import requantize_nchw
    from rep_accel.sim.fast import reference_accumulators
    s = layer.shape
    acc = reference_accumulators(x, layer.weight, s.stride, s.groups)
    return requantize_nchw(acc, np.asarray(layer.bias, np.int64), np.asarray(layer.m0, np.int64),
                           np.asarray(layer.n, np.int64))


@pytest.fixture(scope="session")
def default_build(tmp_path_factory):
    """The bundled default model compiled by `rep-accel compile` (64 calibration inputs), loaded."""
    from rep_accel import cli, images
    out = tmp_path_factory.mktemp("default_build") / "build"
    assert cli.main(["compile", "-o", str(out), "--num-calib", "64"]) == 0
    return images.load_build(out)


def random_schedule_case(rng: np.random.Generator, unit: str = "direct", strides=(1, 2), max_cin: int = 3,
                         max_size: int = 8) -> tuple[LayerShape, HardwareGenerics]:
    """A random layer (1..max_cin input channels per group, groups 1 or 2, sizes 1..max_size,
    int8 or uint8 input, a stride of `strides`) and a random schedule choice for it on a
    random array of `unit` units up to 3x3: max_group 1..6, max_cg from just enough for one
    tile up. (shape, generics)."""
    pi, po = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    groups = int(rng.choice([1, 1, 2]))
    shape = LayerShape(groups * int(rng.integers(1, max_cin + 1)), groups * int(rng.integers(1, 7)), groups,
                       int(rng.choice(strides)), int(rng.integers(1, max_size + 1)), int(rng.integers(1, max_size + 1)),
                       bool(rng.integers(2)))
    cg = -(-shape.cin // pi)
    g = HardwareGenerics(pi=pi, po=po, w_max=16, max_cg=cg + int(rng.integers(0, 12)), line_depth=256,
                         max_group=int(rng.integers(1, 7)), unit=unit)
    return shape, g
