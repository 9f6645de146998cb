"""The integer arithmetic of the numerics contract, defined once (docs/numerics.md).

Every implementation in Python (the golden model, the simulator) calls these
functions; the RTL implements the same formulas in hardware and its tests compare
against them. Nothing else in the package may restate this arithmetic.

Shapes: activations are (N, C, H, W); per-channel parameters are (C,).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: Activations after every ReLU: uint8, zero point 0.
ACT_MIN, ACT_MAX = 0, 255
#: The network input: int8, zero point 0.
INPUT_MIN, INPUT_MAX = -128, 127
#: Weights: symmetric int8 (−128 is never used).
WEIGHT_MAX = 127
#: Signed 32-bit accumulator.
ACC_MAX = (1 << 31) - 1
#: Largest |x| of either activation type and largest |w|, for the accumulator bound.
ABS_X_BOUND, ABS_W_BOUND = 255, 128
#: Range of n = 31 - shift that the contract allows for conv layers (M in (0, 1)).
N_MIN, N_MAX = 31, 62


def round_half_away(x):
    """Round to nearest, ties away from zero (C's std::round, TfLiteRound). Float in, float out."""
    x = np.asarray(x, dtype=np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def accumulator_bound(cin_per_group: int) -> int:
    """Largest |acc| of a 3x3 window over `cin_per_group` channels: 9 * Cin/groups * 128 * 255."""
    return 9 * int(cin_per_group) * ABS_W_BOUND * ABS_X_BOUND


def bias_limit(cin_per_group: int) -> int:
    """Largest |B_c| for which acc + B_c cannot overflow a signed 32-bit accumulator."""
    return ACC_MAX - accumulator_bound(cin_per_group)


def quantize_multiplier(m_real):
    """TensorFlow Lite's QuantizeMultiplier, single-rounding variant, elementwise.

    M = m0 * 2^(shift - 31) with m0 in [2^30, 2^31) (0 for M == 0).
    Returns (m0, shift) as int64 arrays of the input's shape.
    """
    m = np.asarray(m_real, dtype=np.float64)
    if np.any(~np.isfinite(m)) or np.any(m < 0):
        raise ValueError("quantize_multiplier takes finite, non-negative multipliers")
    q, shift = np.frexp(m)  # m = q * 2^shift, q in [0.5, 1)
    q_fixed = round_half_away(q * float(1 << 31)).astype(np.int64)
    shift = shift.astype(np.int64)
    carry = q_fixed == (1 << 31)
    q_fixed = np.where(carry, q_fixed // 2, q_fixed)
    shift = np.where(carry, shift + 1, shift)
    zero = (m == 0) | (shift < -31)
    q_fixed = np.where(zero, 0, q_fixed)
    shift = np.where(zero, 0, shift)
    # Single rounding caps the left shift at 30 (TFLITE_SINGLE_ROUNDING).
    big = shift > 30
    q_fixed = np.where(big, (1 << 31) - 1, q_fixed)
    shift = np.where(big, 30, shift)
    return q_fixed, shift


def shift_to_n(shift):
    """Right-shift amount n = 31 - shift of the single-rounding requantization."""
    return 31 - np.asarray(shift, dtype=np.int64)


@njit(cache=True, inline="always")
def requantize_value(v, m0, n, lo, hi):
    """clamp((v * m0 + 2^(n-1)) >> n, lo, hi) on 64-bit integers; >> is arithmetic."""
    y = (np.int64(v) * np.int64(m0) + (np.int64(1) << np.int64(n - 1))) >> np.int64(n)
    if y < lo:
        return lo
    if y > hi:
        return hi
    return y


@njit(cache=True)
def requantize_nchw(acc, bias, m0, n):
    """Per-channel requantization + ReLU of a conv layer: uint8 (N, C, H, W).

    acc: int64 (N, C, H, W) accumulators; bias, m0, n: int64 (C,).
    out = clamp(((acc + bias) * m0 + 2^(n-1)) >> n, 0, 255).
    """
    N, C, H, W = acc.shape
    out = np.empty((N, C, H, W), dtype=np.uint8)
    for b in range(N):
        for c in range(C):
            for y in range(H):
                for x in range(W):
                    out[b, c, y, x] = requantize_value(acc[b, c, y, x] + bias[c], m0[c], n[c], ACT_MIN, ACT_MAX)
    return out


@njit(cache=True)
def requantize_vector(v, m0, n, lo, hi):
    """Elementwise requantization of int64 (K,) values with per-element m0, n (K,); no bias."""
    out = np.empty(v.shape[0], dtype=np.int64)
    for k in range(v.shape[0]):
        out[k] = requantize_value(v[k], m0[k], n[k], lo, hi)
    return out


def quantize_input(x, scale: float):
    """Float network input (normalized) to int8: clamp(round_half_away(x / scale), -128, 127)."""
    q = round_half_away(np.asarray(x, dtype=np.float64) / float(scale))
    return np.clip(q, INPUT_MIN, INPUT_MAX).astype(np.int8)
