"""The fast mode's vector kernels (sim/fast.py): the dot-step and lane-sum intrinsics
against numpy, the kernel's code paths (odd run lengths padded to whole steps, groups,
the int8 input on the direct and the im2col path, channel and pixel counts that are
not multiples of the blocks, window sums at the accumulator bound), the over-read past
a run's end, and the portable path (no VNNI) on this machine through Numba's target
CPU in a subprocess."""

import os
import platform
import subprocess
import sys

import numpy as np
import pytest
from numba import njit

from rep_accel.errors import RepAccelError
from rep_accel.layout import LayerShape
from rep_accel.numerics import requantize_nchw
from rep_accel.sim import fast
from sim_cases import random_input, random_layer, reference_output

SEED = 20251202
STEP = fast.STEP_BYTES


@njit
def _dot_steps(act, wt, a0, n_steps):
    """acc_sum of n_steps dot steps from act[a0:] x wt[0:], and the same sums through
    acc_sums on a tuple of three accumulators (the second one shifted by one step)."""
    s = fast.acc_zero(act)
    t = fast.acc_zero(act)
    for j in range(0, n_steps * STEP, STEP):
        s = fast.dot_step(s, act, a0 + j, wt, j)
    for j in range(STEP, n_steps * STEP, STEP):
        t = fast.dot_step(t, act, a0 + j, wt, j)
    three = fast.acc_sums((s, t, s))
    return fast.acc_sum(s), three[0], three[1], three[2]


@pytest.mark.parametrize("signed", [False, True], ids=["uint8", "int8"])
def test_dot_step_and_lane_sums_match_numpy(signed):
    rng = np.random.default_rng(SEED + signed)
    lo, hi = (-128, 128) if signed else (0, 256)
    dtype = np.int8 if signed else np.uint8
    for trial in range(40):
        n_steps = 1 + trial % 7
        act = rng.integers(lo, hi, n_steps * STEP + 5).astype(dtype)
        wt = rng.integers(-128, 128, n_steps * STEP).astype(np.int8)
        if trial % 4 == 1:  # the largest products of either sign
            act[:] = lo if signed else 255
            wt[:] = -128 if trial % 8 == 1 else 127
        a0 = trial % 5
        x = act[a0:a0 + n_steps * STEP].astype(np.int64)
        full = int((x * wt).sum())
        tail = int((x[STEP:] * wt[STEP:]).sum())
        assert _dot_steps(act, wt, a0, n_steps) == (full, full, tail, full)


@njit
def _lane_sums(act, wt):
    """acc_sums of 16 accumulators, accumulator i holding step i of act x wt."""
    s0 = fast.dot_step(fast.acc_zero(act), act, 0 * STEP, wt, 0 * STEP)
    s1 = fast.dot_step(fast.acc_zero(act), act, 1 * STEP, wt, 1 * STEP)
    s2 = fast.dot_step(fast.acc_zero(act), act, 2 * STEP, wt, 2 * STEP)
    s3 = fast.dot_step(fast.acc_zero(act), act, 3 * STEP, wt, 3 * STEP)
    s4 = fast.dot_step(fast.acc_zero(act), act, 4 * STEP, wt, 4 * STEP)
    s5 = fast.dot_step(fast.acc_zero(act), act, 5 * STEP, wt, 5 * STEP)
    s6 = fast.dot_step(fast.acc_zero(act), act, 6 * STEP, wt, 6 * STEP)
    s7 = fast.dot_step(fast.acc_zero(act), act, 7 * STEP, wt, 7 * STEP)
    s8 = fast.dot_step(fast.acc_zero(act), act, 8 * STEP, wt, 8 * STEP)
    s9 = fast.dot_step(fast.acc_zero(act), act, 9 * STEP, wt, 9 * STEP)
    s10 = fast.dot_step(fast.acc_zero(act), act, 10 * STEP, wt, 10 * STEP)
    s11 = fast.dot_step(fast.acc_zero(act), act, 11 * STEP, wt, 11 * STEP)
    s12 = fast.dot_step(fast.acc_zero(act), act, 12 * STEP, wt, 12 * STEP)
    s13 = fast.dot_step(fast.acc_zero(act), act, 13 * STEP, wt, 13 * STEP)
    s14 = fast.dot_step(fast.acc_zero(act), act, 14 * STEP, wt, 14 * STEP)
    s15 = fast.dot_step(fast.acc_zero(act), act, 15 * STEP, wt, 15 * STEP)
    return fast.acc_sums((s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10, s11, s12, s13, s14, s15))


@pytest.mark.parametrize("signed", [False, True], ids=["uint8", "int8"])
def test_lane_sums_of_sixteen_accumulators_in_order(signed):
    """acc_sums' transposing tree returns accumulator i's sum at position i (distinct sums)."""
    rng = np.random.default_rng(SEED + 2 + signed)
    act = rng.integers(-128, 128, 16 * STEP).astype(np.int8) if signed else \
        rng.integers(0, 256, 16 * STEP).astype(np.uint8)
    wt = rng.integers(-128, 128, 16 * STEP).astype(np.int8)
    want = (act.astype(np.int64) * wt).reshape(16, STEP).sum(axis=1)
    assert len(set(want.tolist())) == 16
    assert np.array_equal(np.array(_lane_sums(act, wt)), want)


# (C_in, C_out, groups, stride, H, W, signed input): each names the path it covers.
KERNEL_CASES = [
    (11, 7, 1, 1, 5, 6, False),     # run 33 bytes: one step and one byte padded to two steps
    (48, 13, 1, 2, 9, 7, False),    # run 144 = 4.5 steps (A0's stage 1), 13 channels: 3 blocks + 1
    (33, 15, 3, 1, 4, 5, False),    # groups: runs of 11 < 32 bytes -> im2col, 99 -> 128 bytes, 5 channels a group
    (99, 12, 3, 2, 7, 5, False),    # groups: runs of 33 bytes, direct path, 9 runs of 2 steps
    (16, 12, 1, 1, 6, 5, True),     # int8 input on the direct path (run 48)
    (64, 10, 2, 1, 3, 7, True),     # int8 input, groups, direct (runs of 32 = one step), 5 channels a group
    (3, 48, 1, 2, 13, 11, True),    # int8 input on the im2col path (the network's first layer)
    (5, 42, 1, 2, 1, 1, False),     # one pixel: no full pixel block at all
    (96, 20, 1, 1, 3, 3, False),    # 9 pixels: two full pixel blocks and one pixel
]


def _case_id(case):
    cin, cout, groups, stride, h, w, signed = case
    return f"{cin}to{cout}_g{groups}_s{stride}_{h}x{w}" + ("_int8" if signed else "")


@pytest.mark.parametrize("case", KERNEL_CASES, ids=_case_id)
def test_kernel_paths_match_reference(case):
    rng = np.random.default_rng(SEED + KERNEL_CASES.index(case))
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng, n=2)
    y = fast.conv_layer_q(x, layer)
    ref = reference_output(layer, x)
    assert np.array_equal(y, ref), f"{int((y != ref).sum())} of {y.size} outputs differ"
    assert len(np.unique(y)) >= min(8, y.size // 4)


@pytest.mark.parametrize("sign", [1, -1])
def test_window_sums_at_the_accumulator_bound(sign):
    """x = 255 everywhere and w = -128 * sign: every interior window sum is
    -sign * 9 * 128 * 255 * C_in, at 448 input channels (run 1344 = 42 steps); multipliers
    that keep the sums' differences visible in the outputs."""
    cin, cout = 448, 5
    shape = LayerShape(cin, cout, 1, 1, 3, 4)
    x = np.full((1, cin, 3, 4), 255, np.uint8)
    w = np.full((cout, cin, 3, 3), -128 if sign > 0 else 127, np.int8)
    w[1] = 0
    bias = np.full(cout, 150_000_000 if sign > 0 else -100_000_000, np.int64)
    m0 = np.full(cout, 1 << 30, np.int64)
    n = np.array([31, 32, 40, 48, 62], np.int64)
    acc = fast.reference_accumulators(x, w, 1, 1)
    assert np.abs(acc).max() == 9 * cin * 255 * (128 if sign > 0 else 127)
    y = fast.conv_layer(x, shape, w, bias, m0, n)
    assert np.array_equal(y, requantize_nchw(acc, bias, m0, n))
    assert len(np.unique(y)) > 2


def test_bytes_read_past_a_run_meet_zero_weights():
    """Run 144 bytes padded to 160: the reads past each run's end (the next pixel's bytes,
    and at the last pixel the READ_SLACK bytes) do not change any sum, even when those
    bytes are not zero."""
    rng = np.random.default_rng(SEED + 7)
    layer = random_layer((48, 8, 1, 1, 4, 5, False), rng)
    plan = fast.plan_layer(layer.shape, layer.weight, layer.bias, layer.m0, layer.n)
    assert plan.run_len == 144 and plan.n_steps == 5
    x = random_input(layer.shape, rng)
    act = np.zeros(plan.padded_input_size(), np.uint8)
    fast.pad_nhwc(x[0], act)
    act[-fast.READ_SLACK:] = 255
    out = np.zeros(plan.padded_output_size(), np.uint8)
    fast.run_plan(plan, act, out)
    got = np.zeros_like(x, shape=(1, 8, 4, 5))
    fast.unpad_nchw(out, 8, 4, 5, got[0])
    assert np.array_equal(got, reference_output(layer, x))
    assert not out[-fast.READ_SLACK:].any()


def test_im2col_writes_the_zero_tail_of_every_patch():
    """run_plan hands im2col an uninitialized buffer: it must write every byte."""
    rng = np.random.default_rng(SEED + 8)
    x = rng.integers(-128, 128, (3, 6, 5)).astype(np.int8)
    buf = np.zeros((6 + 2) * (5 + 2) * 3, np.int8)
    fast.pad_nhwc(x, buf)
    for groups, c in ((1, 3), (3, 3)):
        k_pad = 32
        patches = np.full(3 * 3 * groups * k_pad, 99, np.int8)
        fast.im2col(buf, 6, 5, c, 2, groups, k_pad, patches)
        assert np.array_equal(patches, fast.reference_im2col(x, 2, groups, k_pad))


def test_run_plan_refuses_buffers_of_the_wrong_size():
    rng = np.random.default_rng(SEED + 9)
    layer = random_layer((16, 8, 1, 1, 4, 4, False), rng)
    plan = fast.plan_layer(layer.shape, layer.weight, layer.bias, layer.m0, layer.n)
    short = np.zeros(plan.padded_input_size() - fast.READ_SLACK, np.uint8)
    with pytest.raises(RepAccelError, match="padded"):
        fast.run_plan(plan, short, np.zeros(plan.padded_output_size(), np.uint8))


@pytest.mark.parametrize("signed", [False, True], ids=["uint8", "int8"])
def test_dot_step_instruction(signed):
    """The machine code of a dot-step loop: VPDPBUSD for uint8 activations exactly when
    VNNI is on (this machine: AVX512-VNNI), never for int8 ones (VPDPBUSD is unsigned x
    signed), which take PMADDWD/VPDPWSSD on x86; a freshly compiled function, as Numba
    does not disassemble cached code."""
    @njit
    def steps(act, wt, n_steps):
        s = fast.acc_zero(act)
        for j in range(0, n_steps * STEP, STEP):
            s = fast.dot_step(s, act, j, wt, j)
        return fast.acc_sum(s)
    act = np.ones(4 * STEP, np.int8 if signed else np.uint8)
    assert steps(act, np.ones(4 * STEP, np.int8), 4) == 4 * STEP
    asm = steps.inspect_asm(steps.signatures[0])
    assert ("vpdpbusd" in asm) == (fast.VNNI and not signed)
    if not (fast.VNNI and not signed) and platform.machine() in ("x86_64", "AMD64"):
        assert "pmaddwd" in asm or "vpdpwssd" in asm  # the portable step's pairs of int16 products


#: A target without AVX-512 (Haswell): the portable dot step on every layer.
PORTABLE_TARGET = {
    "NUMBA_CPU_NAME": "haswell",
    "NUMBA_CPU_FEATURES": "+64bit,+avx,+avx2,+bmi,+bmi2,+cx16,+f16c,+fma,+fxsr,+lzcnt,+mmx,+movbe,+popcnt,"
                          "+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave",
}


@pytest.mark.slow
def test_portable_path_on_a_target_without_vnni(tmp_path):
    """This file's kernel tests and test_sim_fast.py again, compiled for Haswell (no
    AVX-512, so VNNI is False and uint8 layers take the portable step), with a cache of
    their own."""
    env = {**os.environ, **PORTABLE_TARGET, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    check = subprocess.run([sys.executable, "-c", "from rep_accel.sim import fast; print(fast.VNNI)"],
                           env=env, capture_output=True, text=True, timeout=600)
    assert check.stdout.strip() == "False", check.stderr
    here = os.path.dirname(__file__)
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-m", "not slow",
                          os.path.join(here, "test_sim_fast_kernels.py"), os.path.join(here, "test_sim_fast.py")],
                         env=env, capture_output=True, text=True, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def test_plan_refuses_channels_that_do_not_split_into_groups():
    shape = LayerShape(64, 9, 2, 1, 3, 7)
    with pytest.raises(RepAccelError, match="conv3.*9 output channels.*2 groups"):
        fast.plan_layer(shape, np.zeros((9, 32, 3, 3), np.int8), np.zeros(9), np.full(9, 1 << 30), np.full(9, 40),
                        "conv3")


def test_plan_refuses_requantization_parameters_of_the_wrong_length():
    shape = LayerShape(16, 8, 1, 1, 3, 3)
    w = np.zeros((8, 16, 3, 3), np.int8)
    with pytest.raises(RepAccelError, match=r"conv4: m0 of shape \(7,\).*\(8,\)"):
        fast.plan_layer(shape, w, np.zeros(8), np.full(7, 1 << 30), np.full(8, 40), "conv4")
