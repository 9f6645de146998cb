"""Fast mode: every output bit-exact (against a plain numpy reference, the golden model
and TensorFlow Lite's reference vectors), cycles from the schedule formula."""

import numpy as np
import pytest

from rep_accel import golden
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape, layer_cycles
from rep_accel.sim import fast
from rep_accel.testing import vector_cases
from sim_cases import LAYER_CASES, case_id, random_input, random_layer, reference_output

SEED = 20240604


@pytest.mark.parametrize("case", LAYER_CASES, ids=case_id)
def test_fast_matches_reference_and_golden(case):
    seed = SEED + LAYER_CASES.index(case)
    print("seed", seed)
    rng = np.random.default_rng(seed)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng, n=2)
    y = fast.conv_layer_q(x, layer)
    ref = reference_output(layer, x)
    assert y.dtype == np.uint8 and y.shape == ref.shape
    assert np.array_equal(y, ref), f"{int((y != ref).sum())} of {y.size} outputs differ"
    assert np.array_equal(y, golden.conv_layer(x, layer))
    # not a trivial case: outputs spread over the range
    assert len(np.unique(y)) >= min(8, y.size // 4)


def test_reference_accumulators_against_loops():
    """The numpy reference itself, against the definition written as plain loops."""
    rng = np.random.default_rng(SEED)
    for cin, cout, groups, stride, h, w in [(4, 6, 2, 2, 5, 4), (3, 2, 1, 1, 3, 1)]:
        x = rng.integers(0, 256, (1, cin, h, w)).astype(np.uint8)
        wq = rng.integers(-127, 128, (cout, cin // groups, 3, 3)).astype(np.int8)
        acc = fast.reference_accumulators(x, wq, stride, groups)
        ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
        for o in range(cout):
            g = o // (cout // groups)
            for oy in range(ho):
                for ox in range(wo):
                    s = 0
                    for ci in range(cin // groups):
                        for ky in range(3):
                            for kx in range(3):
                                iy, ix = oy * stride + ky - 1, ox * stride + kx - 1
                                if 0 <= iy < h and 0 <= ix < w:
                                    s += int(x[0, g * (cin // groups) + ci, iy, ix]) * int(wq[o, ci, ky, kx])
                    assert acc[0, o, oy, ox] == s


@pytest.mark.parametrize("case", vector_cases(), ids=lambda c: f"case{c.index}")
def test_fast_reproduces_tflite_vectors(case):
    y = fast.conv_layer_q(case.x, case.layer)
    assert np.array_equal(y, case.y), f"{int((y != case.y).sum())} of {y.size} outputs differ"


def test_extremes_saturated_input_and_weights():
    """All-255 input and +-127 weights at 512 input channels: the largest accumulators."""
    for sign in (1, -1):
        shape = LayerShape(512, 8, 1, 1, 4, 4)
        x = np.full((1, 512, 4, 4), 255, np.uint8)
        w = np.full((8, 512, 3, 3), 127 * sign, np.int8)
        b = np.zeros(8, np.int64)
        m0 = np.full(8, 1 << 30)
        n = np.arange(55, 63)
        y = fast.conv_layer(x, shape, w, b, m0, n)
        acc = fast.reference_accumulators(x, w, 1, 1)
        assert np.abs(acc).max() == 9 * 512 * 127 * 255
        from rep_accel.numerics import requantize_nchw
        assert np.array_equal(y, requantize_nchw(acc, b, m0.astype(np.int64), n.astype(np.int64)))


def test_fast_cycles_are_the_layout_formula():
    s = LayerShape(48, 48, 1, 1, 112, 112)
    g = HardwareGenerics()
    assert fast.cycles(s, g) == layer_cycles(s, g)


def test_refuses_bad_input():
    rng = np.random.default_rng(SEED)
    layer = random_layer(LAYER_CASES[2], rng, name="conv7")
    x = random_input(layer.shape, rng)
    with pytest.raises(RepAccelError, match="conv7"):
        fast.conv_layer_q(x[:, :-1], layer)
    with pytest.raises(RepAccelError, match="conv7.*int8"):
        fast.conv_layer_q(x.astype(np.int8), layer)
    with pytest.raises(RepAccelError, match="accumulator"):
        fast.check_exact(LayerShape(8000, 8, 1, 1, 3, 3), "huge")


@pytest.mark.parametrize("c,h,w,stride,groups", [(3, 5, 4, 2, 1), (4, 3, 6, 1, 2), (6, 1, 1, 1, 3), (2, 7, 5, 2, 2)])
def test_layout_kernels_match_numpy(c, h, w, stride, groups):
    rng = np.random.default_rng(SEED + c * h * w)
    x = rng.integers(-128, 128, (c, h, w)).astype(np.int8)
    buf = np.zeros((h + 2) * (w + 2) * c, np.int8)
    fast.pad_nhwc(x, buf)
    assert np.array_equal(buf, fast.reference_pad_nhwc(x))
    back = np.zeros_like(x)
    fast.unpad_nchw(buf, c, h, w, back)
    assert np.array_equal(back, x)
    k_pad = 32
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    patches = np.zeros(ho * wo * groups * k_pad, np.int8)
    fast.im2col(buf, h, w, c, stride, groups, k_pad, patches)
    assert np.array_equal(patches, fast.reference_im2col(x, stride, groups, k_pad))
