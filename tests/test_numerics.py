"""The integer arithmetic of rep_accel.numerics against exact rational references and
TensorFlow Lite's own multipliers (tests/data/vectors)."""

from fractions import Fraction
import math

import numpy as np
import pytest

from rep_accel import numerics
from rep_accel.testing import vector_cases


def exact_round_half_up(num: int, den: int) -> int:
    """floor(num / den + 1/2) of the exact rational: the meaning of (v*m0 + 2^(n-1)) >> n."""
    return math.floor(Fraction(num, den) + Fraction(1, 2))


def test_quantize_multiplier_reproduces_tflite_vectors():
    cases = vector_cases()
    assert len(cases) == 10
    for case in cases:
        m0, shift = numerics.quantize_multiplier(case.m_real)
        assert np.array_equal(m0, case.layer.m0), f"case {case.index}: m0"
        assert np.array_equal(shift, case.shift), f"case {case.index}: shift"
        assert np.all((m0 >= 1 << 30) & (m0 < 1 << 31))


def test_quantize_multiplier_against_exact_rationals():
    seed = 1234
    rng = np.random.default_rng(seed)
    print("seed", seed)
    # Multipliers over the whole range the contract allows, (2^-32, 1).
    m = np.exp2(rng.uniform(-31.9, -1e-9, size=2000))
    m0, shift = numerics.quantize_multiplier(m)
    for mi, q, s in zip(m, m0.tolist(), shift.tolist()):
        exact = Fraction(float(mi))
        assert (1 << 30) <= q < (1 << 31) and -31 <= s <= 0
        # q * 2^(s - 31) is the multiplier rounded to 31 bits: error at most half a unit.
        assert abs(Fraction(q) * Fraction(2) ** (s - 31) - exact) <= Fraction(2) ** (s - 32)


def test_quantize_multiplier_edges():
    # Rounds up to 2^31: the mantissa halves and the exponent grows (1 - 2^-40 -> 1.0).
    m0, shift = numerics.quantize_multiplier(np.array([1 - 2.0 ** -40]))
    assert (m0[0], shift[0]) == (1 << 30, 1)
    # Zero and multipliers below 2^-32 become (0, 0), as in TFLite.
    m0, shift = numerics.quantize_multiplier(np.array([0.0, 2.0 ** -33]))
    assert m0.tolist() == [0, 0] and shift.tolist() == [0, 0]
    # A power of two is exact: 2^-10 = 2^30 * 2^(-9 - 31).
    m0, shift = numerics.quantize_multiplier(np.array([2.0 ** -10]))
    assert (m0[0], shift[0]) == (1 << 30, -9)
    for bad in (-0.5, np.nan, np.inf):
        with pytest.raises(ValueError):
            numerics.quantize_multiplier(np.array([bad]))


def test_requantize_value_is_exact_round_half_up():
    seed = 99
    rng = np.random.default_rng(seed)
    print("seed", seed)
    wide = 1 << 62  # no clamp: the raw shifted value
    extremes = [numerics.ACC_MAX, -numerics.ACC_MAX - 1, 0, 1, -1]
    vs = extremes + rng.integers(-(1 << 31), 1 << 31, size=300).tolist()
    m0s = [1 << 30, (1 << 31) - 1] + rng.integers(1 << 30, 1 << 31, size=30).tolist()
    for n in (31, 32, 40, 50, 62):
        for v in vs[:40]:
            for m0 in m0s[:8]:
                got = int(numerics.requantize_value(v, m0, n, -wide, wide))
                assert got == exact_round_half_up(v * m0, 1 << n), (v, m0, n)
    # Ties (v * m0 an odd multiple of 2^(n-1)) go up, towards +inf, also for negatives.
    assert numerics.requantize_value(-3, 1 << 30, 32, -wide, wide) == -1  # -0.75 -> -1
    assert numerics.requantize_value(-2, 1 << 30, 32, -wide, wide) == 0  # -0.5 -> 0
    assert numerics.requantize_value(2, 1 << 30, 32, -wide, wide) == 1   # 0.5 -> 1
    assert numerics.requantize_value(6, 1 << 30, 32, -wide, wide) == 2   # 1.5 -> 2
    # The clamp.
    assert numerics.requantize_value(1 << 20, 1 << 30, 31, 0, 255) == 255
    assert numerics.requantize_value(-(1 << 20), 1 << 30, 31, 0, 255) == 0


def test_requantize_nchw_and_vector_match_elementwise_reference():
    seed = 7
    rng = np.random.default_rng(seed)
    print("seed", seed)
    acc = rng.integers(-(1 << 20), 1 << 20, size=(2, 5, 3, 4)).astype(np.int64)
    bias = rng.integers(-(1 << 16), 1 << 16, size=5).astype(np.int64)
    m0 = rng.integers(1 << 30, 1 << 31, size=5).astype(np.int64)
    n = rng.integers(36, 45, size=5).astype(np.int64)
    out = numerics.requantize_nchw(acc, bias, m0, n)
    assert out.dtype == np.uint8
    ref = np.empty_like(out)
    for idx in np.ndindex(acc.shape):
        c = idx[1]
        y = exact_round_half_up((int(acc[idx]) + int(bias[c])) * int(m0[c]), 1 << int(n[c]))
        ref[idx] = min(max(y, 0), 255)
    assert np.array_equal(out, ref)
    v = rng.integers(-(1 << 24), 1 << 24, size=50).astype(np.int64)
    mv = rng.integers(1 << 30, 1 << 31, size=50).astype(np.int64)
    nv = rng.integers(31, 40, size=50).astype(np.int64)
    got = numerics.requantize_vector(v, mv, nv, -128, 127)
    want = [min(max(exact_round_half_up(int(a) * int(b), 1 << int(c)), -128), 127) for a, b, c in zip(v, mv, nv)]
    assert got.tolist() == want


def test_round_half_away_and_quantize_input():
    assert numerics.round_half_away([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 1.4999, -1.4999]).tolist() == \
        [1, -1, 2, -2, 3, -3, 1, -1]
    x = np.array([0.5, -0.5, 127.4, 127.6, -128.4, -128.6, -300.0, 300.0]) * 0.25
    assert numerics.quantize_input(x, 0.25).tolist() == [1, -1, 127, 127, -128, -128, -128, 127]
    assert numerics.quantize_input(x, 0.25).dtype == np.int8


def test_bias_limit_and_worst_case_bound():
    # The numbers of docs/numerics.md: 9 * 512 * 128 * 255 = 150,405,120.
    assert numerics.accumulator_bound(512) == 150_405_120
    assert numerics.bias_limit(512) == 2 ** 31 - 1 - 150_405_120
    # The vectors include the extreme biases the contract allows, and none beyond.
    reached = 0
    for case in vector_cases():
        limit = numerics.bias_limit(case.layer.shape.cin_per_group)
        assert np.abs(case.layer.bias.astype(np.int64)).max() <= limit
        reached += int(np.any(np.abs(case.layer.bias.astype(np.int64)) == limit))
    assert reached >= 1
