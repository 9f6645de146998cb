"""The golden model reproduces TensorFlow Lite's reference ConvPerChannel outputs
(tests/data/vectors/tflite_conv_per_channel.npz) exactly: every output of every case."""

import numpy as np
import pytest

from rep_accel import golden, numerics
from rep_accel.errors import RepAccelError
from rep_accel.testing import vector_cases

CASES = vector_cases()


def test_vectors_cover_the_readme_total():
    assert sum(c.y.size for c in CASES) == 11_100


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"case{c.index}")
def test_golden_conv_reproduces_tflite(case):
    y = golden.conv_layer(case.x, case.layer)
    assert y.dtype == np.uint8 and y.shape == case.y.shape
    assert np.array_equal(y, case.y), f"{int((y != case.y).sum())} of {y.size} outputs differ"


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"case{c.index}")
def test_golden_conv_with_our_own_multipliers(case):
    """Same outputs with (m0, n) computed by numerics.quantize_multiplier from m_real."""
    m0, shift = numerics.quantize_multiplier(case.m_real)
    layer = case.layer
    layer = type(layer)(**{**layer.__dict__, "m0": m0, "n": numerics.shift_to_n(shift)})
    assert np.array_equal(golden.conv_layer(case.x, layer), case.y)


def test_conv_layer_refuses_wrong_input():
    case = CASES[1]
    with pytest.raises(RepAccelError, match="vector1"):
        golden.conv_layer(case.x.astype(np.int8), case.layer)
    with pytest.raises(RepAccelError):
        golden.conv_layer(case.x[:, :-1], case.layer)


def test_repository_copy_of_the_vectors_is_the_recorded_file():
    """The copy under tests/data/vectors is the file whose sha256 its README records."""
    import hashlib
    import re

    from rep_accel.testing import VECTORS_DIR, VECTORS_FILE
    recorded = re.search(r"`([0-9a-f]{64})`", (VECTORS_DIR / "README.md").read_text()).group(1)
    assert hashlib.sha256((VECTORS_DIR / VECTORS_FILE).read_bytes()).hexdigest() == recorded
