"""Requantization + ReLU (hdl/requant.py) against numerics.requantize_value, on extreme values."""

import numpy as np
import pytest

from hdl_bench import run_pipeline
from rep_accel.hdl import requant
from rep_accel.hdl.requant import Requantizer
from rep_accel.numerics import ACT_MAX, ACT_MIN, N_MAX, N_MIN, requantize_value

V_MAX, V_MIN = (1 << 31) - 1, -(1 << 31)
M0_LO, M0_HI = 1 << 30, (1 << 31) - 1


def _run(cases):
    """cases: (v, m0, n) triples, one per cycle; returns the hardware's y for each."""
    dut = Requantizer()
    return run_pipeline(dut, [[(dut.v, v), (dut.m0, m0), (dut.n, n)] for v, m0, n in cases], dut.y, requant.LATENCY)


def _expect(cases):
    return [int(requantize_value(v, m0, n, ACT_MIN, ACT_MAX)) for v, m0, n in cases]


def _check(cases, got):
    for (v, m0, n), e, g in zip(cases, _expect(cases), got):
        assert g == e, f"v={v} m0={m0} n={n}: hardware {g}, numerics {e}"


def test_every_shift_with_extreme_values():
    """Every n in 31..62 with the largest positive and negative v, m0 at 2^30 and 2^31-1, and the
    v that land on each side of every rounding and clamp boundary for that (m0, n)."""
    cases = []
    for n in range(N_MIN, N_MAX + 1):
        for m0 in (M0_LO, M0_HI, 0, 1):
            cases += [(V_MAX, m0, n), (V_MIN, m0, n), (0, m0, n), (1, m0, n), (-1, m0, n)]
            if m0 == 0:
                continue
            # v around y = 1/2 (rounding to 0 or 1), y = 254.5 and y = 255.5 (the clamp).
            for half_steps in (1, 509, 511):
                v = (half_steps << (n - 1)) // m0
                cases += [(w, m0, n) for w in (v - 1, v, v + 1, v + 2) if V_MIN <= w <= V_MAX]
    got = _run(cases)
    _check(cases, got)
    # The cases reach every output class: 0 from negatives, 255 saturated, and values between.
    outs = set(_expect(cases))
    assert {0, 1, 254, 255} <= outs


@pytest.mark.parametrize("seed", [3, 4])
def test_random_values_in_and_out_of_range(seed):
    """Random (v, m0, n) with v scaled so that about half the results fall inside 1..254;
    m0 and n change every cycle (they travel with v)."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    cases = []
    for _ in range(200):
        n = int(rng.integers(N_MIN, N_MAX + 1))
        m0 = int(rng.integers(M0_LO, M0_HI + 1))
        target = rng.uniform(-50, 300)
        v = int(np.clip(round(target * 2.0 ** n / m0 + rng.integers(-3, 4)), V_MIN, V_MAX))
        cases.append((v, m0, n))
    got = _run(cases)
    _check(cases, got)
    assert sum(1 for e in _expect(cases) if 0 < e < 255) > 50
