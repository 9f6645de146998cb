"""Fast mode of the simulator: every output bit-exact, cycles from the schedule formula.

The outputs follow the numerics contract (docs/numerics.md): a 3x3 convolution with
padding 1, stride 1 or 2 and groups, accumulated exactly in 32-bit integers, then the
per-channel requantization + ReLU of `rep_accel.numerics.requantize_value`. The cycle
count is `rep_accel.layout.layer_cycles` (tile granularity; under an external-memory
model, `rep_accel.memory`, the engine's timing replay `cycle.timing_cycles`): the cycle mode
(`rep_accel.sim.cycle`) counts the same number by stepping every clock, and the tests
check that they agree.

The convolution is an independent implementation of the contract (it shares nothing
with `rep_accel.golden`, which it is checked against).

Data layout
-----------
Activations are kept as a zero-padded NHWC image of one picture, flattened:
``act[((y + 1) * (W + 2) + (x + 1)) * C + c]`` for pixel (y, x), channel c, with one
pixel of zeros around the border (the contract's zero padding: zero points are 0).
Weights are reordered to ``(C_out, 9 * C_in/groups)`` in the order [ky][kx][c].

For output pixel p (top-left window corner at padded row y*s, column x*s) and output
channel o of group g, the accumulator is a sum of dot products of contiguous runs:

* groups = 1: for each ky, the three window columns of all C channels are adjacent in
  memory, so one run of 3*C bytes per ky (3 runs);
* groups > 1: one run of C/groups bytes per (ky, kx) (9 runs), offset by g * C/groups;
* few channels (run < IM2COL_MIN_RUN, e.g. the 3-channel network input): the window is
  first gathered into a patch row of 9 * C/groups values per group, zero-padded to a
  multiple of 32 (im2col), and the accumulator is one run per group.

The kernel computes blocks of 4 output pixels x 4 output channels (16 accumulators) so
each loaded byte feeds four multiply-adds; its innermost loop runs over a contiguous
run and LLVM vectorizes it (on AVX-512 VNNI hosts into VPDPWSSD).

Exactness
---------
Activations are uint8 (or int8 for the network input) and weights int8, so every
product is below 2^15 in magnitude and the kernel multiplies and adds in int32, the
contract's accumulator width. The sum of a window is bounded by
`numerics.accumulator_bound(C_in/groups)` = 9 * C_in/groups * 128 * 255, which
`check_exact` requires to be at most 2^31 - 1, so no partial sum can wrap and the int32
result is the exact integer sum in any order of additions (the vectorizer's reordering
and pairing of products are exact too). The bias is then added in int64 inside
`requantize_value`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np
from numba import njit, prange

from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape, layer_cycles
from rep_accel.memory import MemoryModel

from .cycle import timing_cycles
from rep_accel.numerics import ACC_MAX, ACT_MAX, ACT_MIN, accumulator_bound, requantize_value

# Numba's default OpenMP layer spin-waits between parallel regions: on a loaded machine
# (other processes, or `pytest -n 2` running two simulators on two cores) the spinning
# threads take the cores from the working ones and a network runs 4-5x slower. The
# workqueue layer sleeps instead (measured: A0 at 224x224 25 ms vs 29 ms on an idle
# machine, 380 ms vs 100 ms on a loaded one). This package is the only user of Numba's
# parallel code here; NUMBA_THREADING_LAYER still overrides the choice. (The workqueue
# layer must not be entered from two Python threads at once: run one simulation at a time
# per process.)
if "NUMBA_THREADING_LAYER" not in os.environ:
    numba.config.THREADING_LAYER = "workqueue"

#: Runs shorter than this (bytes) go through the im2col path: a run of a few bytes
#: cannot fill a vector register.
IM2COL_MIN_RUN = 32
#: Patch rows of the im2col path are padded to a multiple of this many bytes.
IM2COL_ALIGN = 32
#: Output pixels and output channels of one register block of the kernel.
BLOCK_P, BLOCK_O = 4, 4
#: Work split for the threads: pixel blocks per task and output-channel blocks per task.
TASK_PIXEL_BLOCKS, TASK_CHANNEL_BLOCKS = 16, 8


# ----------------------------------------------------------------------------------
# Plain-numpy reference (for the tests): the contract's accumulator, nothing clever.
# ----------------------------------------------------------------------------------

def reference_accumulators(x: np.ndarray, weight: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """acc = sum over the 3x3 x (C_in/groups) window of x * w, int64 (N, C_out, H_out, W_out).

    x: int8/uint8 (N, C_in, H, W); weight: int8 (C_out, C_in/groups, 3, 3); padding 1.
    """
    n, cin, h, w = x.shape
    cout, cin_g = weight.shape[0], weight.shape[1]
    cout_g = cout // groups
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    xp = np.zeros((n, cin, h + 2, w + 2), dtype=np.int64)
    xp[:, :, 1:h + 1, 1:w + 1] = x
    wi = weight.astype(np.int64)
    acc = np.zeros((n, cout, ho, wo), dtype=np.int64)
    for g in range(groups):
        xs = xp[:, g * cin_g:(g + 1) * cin_g]
        ws = wi[g * cout_g:(g + 1) * cout_g]
        for ky in range(3):
            for kx in range(3):
                win = xs[:, :, ky:ky + stride * (ho - 1) + 1:stride, kx:kx + stride * (wo - 1) + 1:stride]
                acc[:, g * cout_g:(g + 1) * cout_g] += np.einsum("nchw,oc->nohw", win, ws[:, :, ky, kx])
    return acc


def reference_pad_nhwc(x: np.ndarray) -> np.ndarray:
    """The flat zero-padded NHWC image of one picture x: (C, H, W) (what `pad_nhwc` fills)."""
    return np.pad(x.transpose(1, 2, 0), ((1, 1), (1, 1), (0, 0))).ravel()


def reference_im2col(x: np.ndarray, stride: int, groups: int, k_pad: int) -> np.ndarray:
    """The patch rows of `im2col` for one picture x: (C, H, W): (H_out * W_out * groups * k_pad,),
    pixel-major, then group, values [ky][kx][c], zero-padded to k_pad."""
    c, h, w = x.shape
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(1, 2))[:, ::stride, ::stride]  # (C, ho, wo, 3, 3)
    patches = win.reshape(groups, c // groups, ho, wo, 3, 3).transpose(2, 3, 0, 4, 5, 1).reshape(ho * wo, groups, -1)
    out = np.zeros((ho * wo, groups, k_pad), dtype=x.dtype)
    out[:, :, :patches.shape[2]] = patches
    return out.ravel()


# ----------------------------------------------------------------------------------
# The kernel.
# ----------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _block_4x4(act, wt, a0, a1, a2, a3, w0, w1, w2, w3, run_act, run_w, n_runs, run_len):
    """16 accumulators of 4 pixels (activation offsets a0..a3) x 4 channels (weight
    offsets w0..w3). Run r starts at a_k + run_act[r] and w_k + run_w[r]; all uint64."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = np.int32(0)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = np.int32(0)
    for r in range(n_runs):
        ra = run_act[r]
        rw = run_w[r]
        b0 = a0 + ra
        b1 = a1 + ra
        b2 = a2 + ra
        b3 = a3 + ra
        v0 = w0 + rw
        v1 = w1 + rw
        v2 = w2 + rw
        v3 = w3 + rw
        # Unsigned indices: Numba then emits no negative-index wraparound, which would
        # keep LLVM from vectorizing this loop.
        for j in range(run_len):
            x0 = np.int32(act[b0 + j])
            x1 = np.int32(act[b1 + j])
            x2 = np.int32(act[b2 + j])
            x3 = np.int32(act[b3 + j])
            k0 = np.int32(wt[v0 + j])
            k1 = np.int32(wt[v1 + j])
            k2 = np.int32(wt[v2 + j])
            k3 = np.int32(wt[v3 + j])
            s00 = np.int32(s00 + np.int32(x0 * k0))
            s01 = np.int32(s01 + np.int32(x0 * k1))
            s02 = np.int32(s02 + np.int32(x0 * k2))
            s03 = np.int32(s03 + np.int32(x0 * k3))
            s10 = np.int32(s10 + np.int32(x1 * k0))
            s11 = np.int32(s11 + np.int32(x1 * k1))
            s12 = np.int32(s12 + np.int32(x1 * k2))
            s13 = np.int32(s13 + np.int32(x1 * k3))
            s20 = np.int32(s20 + np.int32(x2 * k0))
            s21 = np.int32(s21 + np.int32(x2 * k1))
            s22 = np.int32(s22 + np.int32(x2 * k2))
            s23 = np.int32(s23 + np.int32(x2 * k3))
            s30 = np.int32(s30 + np.int32(x3 * k0))
            s31 = np.int32(s31 + np.int32(x3 * k1))
            s32 = np.int32(s32 + np.int32(x3 * k2))
            s33 = np.int32(s33 + np.int32(x3 * k3))
    return (s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33)


@njit(cache=True, inline="always")
def _dot(act, wt, a, w, run_act, run_w, n_runs, run_len):
    """One accumulator: pixel at activation offset a, channel at weight offset w (uint64)."""
    s = np.int32(0)
    for r in range(n_runs):
        b = a + run_act[r]
        v = w + run_w[r]
        for j in range(run_len):
            s = np.int32(s + np.int32(np.int32(act[b + j]) * np.int32(wt[v + j])))
    return s


@njit(cache=True, inline="always")
def _store(out, out_base, p, o, acc, bias, m0, n):
    out[out_base[p] + o] = requantize_value(np.int64(acc) + bias[o], m0[o], n[o], ACT_MIN, ACT_MAX)


@njit(cache=True, inline="always")
def _store4(out, base, o0, a0, a1, a2, a3, bias, m0, n):
    """Requantize the accumulators of channels o0..o0+3 of one pixel (uniform code, so
    LLVM can do the four in vector registers)."""
    b = base + o0
    out[b] = requantize_value(np.int64(a0) + bias[o0], m0[o0], n[o0], ACT_MIN, ACT_MAX)
    out[b + 1] = requantize_value(np.int64(a1) + bias[o0 + 1], m0[o0 + 1], n[o0 + 1], ACT_MIN, ACT_MAX)
    out[b + 2] = requantize_value(np.int64(a2) + bias[o0 + 2], m0[o0 + 2], n[o0 + 2], ACT_MIN, ACT_MAX)
    out[b + 3] = requantize_value(np.int64(a3) + bias[o0 + 3], m0[o0 + 3], n[o0 + 3], ACT_MIN, ACT_MAX)


@njit(cache=True, parallel=True)
def conv_kernel(act, pix_base, run_act, run_len, group_step, wt, w_row, o_start, o_count, o_group,
                bias, m0, n, out, out_base):
    """Convolution + requantization + ReLU of one picture into `out` (uint8, flat).

    act: uint8 or int8 (flat padded NHWC image, or im2col patches); pix_base: int64 (P,)
    offset in `act` of output pixel p's window (group 0); run_act: int64 (R,) offsets of
    the R runs relative to pix_base; run_len: bytes per run; group_step: offset in `act`
    between consecutive groups; wt: int8 (C_out * w_row,) weights, runs at r * run_len;
    o_start, o_count, o_group: int64 (B,) output-channel blocks (<= 4 channels, one group);
    bias, m0, n: int64 (C_out,); out_base: int64 (P,) offset in `out` of pixel p's channel 0.
    """
    n_pix = pix_base.shape[0]
    n_runs = run_act.shape[0]
    ua = run_act.astype(np.uint64)
    uw = np.empty(n_runs, dtype=np.uint64)
    for r in range(n_runs):
        uw[r] = np.uint64(r * run_len)
    ulen = np.uint64(run_len)
    n_pblocks = (n_pix + BLOCK_P - 1) // BLOCK_P
    n_pchunks = (n_pblocks + TASK_PIXEL_BLOCKS - 1) // TASK_PIXEL_BLOCKS
    n_oblocks = o_start.shape[0]
    n_ochunks = (n_oblocks + TASK_CHANNEL_BLOCKS - 1) // TASK_CHANNEL_BLOCKS
    for task in prange(n_pchunks * n_ochunks):
        pc = task % n_pchunks
        oc = task // n_pchunks
        for ob in range(oc * TASK_CHANNEL_BLOCKS, min(n_oblocks, (oc + 1) * TASK_CHANNEL_BLOCKS)):
            o0 = o_start[ob]
            no = o_count[ob]
            goff = np.uint64(o_group[ob] * group_step)
            for pb in range(pc * TASK_PIXEL_BLOCKS, min(n_pblocks, (pc + 1) * TASK_PIXEL_BLOCKS)):
                p0 = pb * BLOCK_P
                npx = min(BLOCK_P, n_pix - p0)
                if npx == BLOCK_P and no == BLOCK_O:
                    s = _block_4x4(act, wt,
                                   np.uint64(pix_base[p0]) + goff, np.uint64(pix_base[p0 + 1]) + goff,
                                   np.uint64(pix_base[p0 + 2]) + goff, np.uint64(pix_base[p0 + 3]) + goff,
                                   np.uint64(o0 * w_row), np.uint64((o0 + 1) * w_row),
                                   np.uint64((o0 + 2) * w_row), np.uint64((o0 + 3) * w_row),
                                   ua, uw, n_runs, ulen)
                    _store4(out, out_base[p0], o0, s[0], s[1], s[2], s[3], bias, m0, n)
                    _store4(out, out_base[p0 + 1], o0, s[4], s[5], s[6], s[7], bias, m0, n)
                    _store4(out, out_base[p0 + 2], o0, s[8], s[9], s[10], s[11], bias, m0, n)
                    _store4(out, out_base[p0 + 3], o0, s[12], s[13], s[14], s[15], bias, m0, n)
                else:
                    for dp in range(npx):
                        for do in range(no):
                            acc = _dot(act, wt, np.uint64(pix_base[p0 + dp]) + goff,
                                       np.uint64((o0 + do) * w_row), ua, uw, n_runs, ulen)
                            _store(out, out_base, p0 + dp, o0 + do, acc, bias, m0, n)


@njit(cache=True, parallel=True)
def im2col(act, height, width, channels, stride, groups, k_pad, out):
    """Gather every output pixel's window from a padded NHWC image into patch rows.

    act: flat padded image (channels per pixel); out: (H_out * W_out * groups * k_pad,)
    of act's dtype, pre-zeroed; patch of pixel p, group g at (p * groups + g) * k_pad,
    values in order [ky][kx][c] over the group's C/groups channels.
    """
    ho = (height - 1) // stride + 1
    wo = (width - 1) // stride + 1
    cg = channels // groups
    row = (width + 2) * channels
    for y in prange(ho):
        for x in range(wo):
            p = y * wo + x
            for g in range(groups):
                dst = (p * groups + g) * k_pad
                for ky in range(3):
                    for kx in range(3):
                        src = (y * stride + ky) * row + (x * stride + kx) * channels + g * cg
                        for c in range(cg):
                            out[dst + (ky * 3 + kx) * cg + c] = act[src + c]


@njit(cache=True)
def pad_nhwc(x, out):
    """Copy one picture x: (C, H, W) into the interior of the flat padded NHWC `out`
    ((H + 2) * (W + 2) * C,), whose border must already be zero."""
    c, h, w = x.shape
    for y in range(h):
        for xx in range(w):
            base = ((y + 1) * (w + 2) + xx + 1) * c
            for ch in range(c):
                out[base + ch] = x[ch, y, xx]


@njit(cache=True)
def unpad_nchw(buf, channels, height, width, out):
    """The interior of a flat padded NHWC image as out: (C, H, W)."""
    for y in range(height):
        for x in range(width):
            base = ((y + 1) * (width + 2) + x + 1) * channels
            for ch in range(channels):
                out[ch, y, x] = buf[base + ch]


# ----------------------------------------------------------------------------------
# Per-layer plan: everything the kernel needs that does not depend on the picture.
# ----------------------------------------------------------------------------------

def check_exact(shape: LayerShape, name: str = "layer") -> None:
    """Refuse a layer whose worst-case window sum could wrap the 32-bit accumulator."""
    if accumulator_bound(shape.cin_per_group) > ACC_MAX:
        raise RepAccelError(
            f"{name}: C_in/groups={shape.cin_per_group} lets a 3x3 window sum reach "
            f"{accumulator_bound(shape.cin_per_group)}, beyond the 32-bit accumulator (docs/numerics.md)")


@dataclass
class LayerPlan:
    """A layer prepared for `conv_kernel`: reordered weights, offsets and blocks."""

    shape: LayerShape
    im2col: bool
    k_pad: int
    wt: np.ndarray
    w_row: int
    run_act: np.ndarray
    run_len: int
    group_step: int
    pix_base: np.ndarray
    out_base: np.ndarray
    o_start: np.ndarray
    o_count: np.ndarray
    o_group: np.ndarray
    bias: np.ndarray
    m0: np.ndarray
    n: np.ndarray

    def padded_input_size(self) -> int:
        s = self.shape
        return (s.height + 2) * (s.width + 2) * s.cin

    def padded_output_size(self) -> int:
        s = self.shape
        return (s.out_height + 2) * (s.out_width + 2) * s.cout


def plan_layer(shape: LayerShape, weight, bias, m0, n, name: str = "layer") -> LayerPlan:
    """Prepare one layer. weight: int8 (C_out, C_in/groups, 3, 3); bias, m0, n: (C_out,)."""
    check_exact(shape, name)
    weight = np.asarray(weight)
    cout, cin_g = shape.cout, shape.cin_per_group
    if weight.shape != (cout, cin_g, 3, 3):
        raise RepAccelError(f"{name}: weight shape {weight.shape} does not match the layer's ({cout}, {cin_g}, 3, 3)")
    groups, stride = shape.groups, shape.stride
    h, w, c = shape.height, shape.width, shape.cin
    ho, wo = shape.out_height, shape.out_width
    k = 9 * cin_g
    w_kkc = np.ascontiguousarray(np.asarray(weight, dtype=np.int8).transpose(0, 2, 3, 1)).reshape(cout, k)
    direct_run = 3 * c if groups == 1 else cin_g
    use_im2col = direct_run < IM2COL_MIN_RUN
    ys, xs = np.meshgrid(np.arange(ho, dtype=np.int64), np.arange(wo, dtype=np.int64), indexing="ij")
    ys, xs = ys.ravel(), xs.ravel()
    if use_im2col:
        k_pad = -(-k // IM2COL_ALIGN) * IM2COL_ALIGN
        wt = np.zeros((cout, k_pad), dtype=np.int8)
        wt[:, :k] = w_kkc
        w_row, run_len, group_step = k_pad, k_pad, k_pad
        run_act = np.zeros(1, dtype=np.int64)
        pix_base = np.arange(ho * wo, dtype=np.int64) * (groups * k_pad)
    else:
        k_pad = 0
        wt = w_kkc
        w_row, run_len, group_step = k, direct_run, cin_g
        row = (w + 2) * c
        if groups == 1:
            run_act = np.arange(3, dtype=np.int64) * row
        else:
            run_act = np.array([ky * row + kx * c for ky in range(3) for kx in range(3)], dtype=np.int64)
        pix_base = ys * stride * row + xs * stride * c
    out_base = ((ys + 1) * (wo + 2) + xs + 1) * cout
    cout_g = shape.cout_per_group
    starts, counts, grps = [], [], []
    for g in range(groups):
        for o in range(g * cout_g, (g + 1) * cout_g, BLOCK_O):
            starts.append(o)
            counts.append(min(BLOCK_O, (g + 1) * cout_g - o))
            grps.append(g)
    return LayerPlan(shape, use_im2col, k_pad, np.ascontiguousarray(wt).ravel(), w_row, run_act, run_len,
                     group_step, pix_base, out_base, np.array(starts, np.int64), np.array(counts, np.int64),
                     np.array(grps, np.int64), np.asarray(bias, np.int64).copy(), np.asarray(m0, np.int64).copy(),
                     np.asarray(n, np.int64).copy())


def run_plan(plan: LayerPlan, act_padded: np.ndarray, out_padded: np.ndarray) -> None:
    """Run one layer on one picture: flat padded NHWC input -> flat padded NHWC uint8 output
    (whose border must be zero; the kernel writes only the interior)."""
    s = plan.shape
    if plan.im2col:
        patches = np.zeros(s.out_height * s.out_width * s.groups * plan.k_pad, dtype=act_padded.dtype)
        im2col(act_padded, s.height, s.width, s.cin, s.stride, s.groups, plan.k_pad, patches)
        act = patches
    else:
        act = act_padded
    conv_kernel(act, plan.pix_base, plan.run_act, plan.run_len, plan.group_step, plan.wt, plan.w_row,
                plan.o_start, plan.o_count, plan.o_group, plan.bias, plan.m0, plan.n, out_padded, plan.out_base)


def conv_layer(x: np.ndarray, shape: LayerShape, weight, bias, m0, n, name: str = "layer") -> np.ndarray:
    """One fused layer on a batch: x int8/uint8 (N, C_in, H, W) -> uint8 (N, C_out, H_out, W_out)."""
    x = np.asarray(x)
    expect = (shape.cin, shape.height, shape.width)
    if x.ndim != 4 or tuple(x.shape[1:]) != expect:
        raise RepAccelError(f"{name}: input shape {x.shape} does not match (N, {expect[0]}, {expect[1]}, {expect[2]})")
    want = np.int8 if shape.input_signed else np.uint8
    if x.dtype != want:
        raise RepAccelError(f"{name}: input dtype {x.dtype}, the layer takes {np.dtype(want).name}")
    plan = plan_layer(shape, weight, bias, m0, n, name)
    out = np.empty((x.shape[0], shape.cout, shape.out_height, shape.out_width), dtype=np.uint8)
    for i in range(x.shape[0]):
        act = np.zeros(plan.padded_input_size(), dtype=x.dtype)
        pad_nhwc(np.ascontiguousarray(x[i]), act)
        y = np.zeros(plan.padded_output_size(), dtype=np.uint8)
        run_plan(plan, act, y)
        unpad_nchw(y, shape.cout, shape.out_height, shape.out_width, out[i])
    return out


def conv_layer_q(x: np.ndarray, layer, name: str | None = None) -> np.ndarray:
    """`conv_layer` for a QuantizedLayer-like object (shape, weight, bias, m0, n)."""
    return conv_layer(x, layer.shape, layer.weight, layer.bias, layer.m0, layer.n, name or layer.name)


def cycles(shape, generics: HardwareGenerics, memory: MemoryModel | None = None,
           name: str = "layer") -> int:
    """The layer's cycles (shape: a LayerShape or its layout.ScheduledLayer): with unlimited
    memory (None) the schedule formula `layout.layer_cycles`; under a memory model the engine's timing replay
    (`cycle.timing_cycles`, datapath off), which cycle mode counts exactly too."""
    if memory is None:
        return layer_cycles(shape, generics)
    shape = getattr(shape, "shape", shape)      # a ScheduledLayer's shape: the replay plans it itself
    key = (shape, generics, memory)
    if key not in _REPLAYED:  # networks repeat shapes (RepVGG-A0: 22 layers, 9 shapes)
        if len(_REPLAYED) >= REPLAY_CACHE_SIZE:
            _REPLAYED.clear()
        _REPLAYED[key] = timing_cycles(shape, generics, memory, name=name)
    return _REPLAYED[key]


#: Replayed counts kept by `cycles`, keyed by (shape, generics, memory): all frozen
#: dataclasses, and the count depends on nothing else.
_REPLAYED: dict = {}
REPLAY_CACHE_SIZE = 4096
