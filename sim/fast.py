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
Weights are reordered to [ky][kx][c] per output channel, each run's part (below)
zero-padded to whole dot steps.

For output pixel p (top-left window corner at padded row y*s, column x*s) and output
channel o of group g, the accumulator is a sum of dot products of contiguous runs:

* groups = 1: for each ky, the three window columns of all C channels are adjacent in
  memory, so one run of 3*C bytes per ky (3 runs);
* groups > 1: one run of C/groups bytes per (ky, kx) (9 runs), offset by g * C/groups;
* few channels (run < IM2COL_MIN_RUN, e.g. the 3-channel network input): the window is
  first gathered into a patch row of 9 * C/groups values per group, zero-padded to a
  multiple of 32 (im2col), and the accumulator is one run per group.

Every run's weights are zero-padded to whole steps of STEP_BYTES (32) bytes; the
activations read past a run's end (the next pixel's bytes, or the READ_SLACK zero bytes
after the image) meet zero weights.

The kernel computes blocks of 4 output pixels x 4 output channels (16 accumulators) so
each loaded byte feeds four multiply-adds. The accumulators are vectors of int32 lanes
(`Int32Vector`, a Numba type local to the kernel), and one `dot_step` adds the 32
products of a step into them, written as LLVM IR by Numba intrinsics:

* uint8 activations on a target with AVX512-VNNI and AVX512-VL: one 256-bit VPDPBUSD
  (8 lanes, each + 4 products of unsigned x signed bytes);
* otherwise (int8 activations, the network input; or any other CPU): plain LLVM IR,
  bytes widened to int32, multiplied, adjacent pairs added (16 lanes, each + 2
  products), which the x86 backend compiles to VPMADDWD / VPDPWSSD on int16.

The choice is made once, from the features Numba compiles for (`VNNI`); Numba's cache
is keyed by the CPU name and features, so a cached VNNI kernel is never loaded for a CPU
without them. Lanes are summed once per block (`acc_sums`, a transposing tree), not per
run. The window sums of a task (up to 64 pixels x 32 channels) go to an int32 tile, and
each pixel's channels are then requantized in one loop that LLVM vectorizes.

Exactness
---------
Activations are uint8 (or int8 for the network input) and weights int8, so every
product is at most 255 * 128 < 2^15 in magnitude and is formed exactly: in int32 lanes
(the portable step), or inside VPDPBUSD, which adds the four 16-bit products of a lane
to the 32-bit lane without saturation (VPDPBUSD, not VPDPBUSDS) and with wrap-around
only beyond 32 bits. So every operation is an int32 addition of exact products, the
contract's accumulator width. The sum of a window is bounded by
`numerics.accumulator_bound(C_in/groups)` = 9 * C_in/groups * 128 * 255, which
`check_exact` requires to be at most 2^31 - 1; every partial sum (a lane, a run, any
subset of the window's products, zero-weight padding products included as 0) is
bounded by the same, so none can wrap and the int32 result is the exact integer sum in
any order of additions. The bias is then added in int64 inside `requantize_value`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.core.registry import cpu_target
from numba.extending import intrinsic, models, register_model

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

#: Bytes of activations (and of weights) one `dot_step` consumes; every run is padded to a
#: multiple of it with zero weights.
STEP_BYTES = 32
#: Runs shorter than this (bytes) go through the im2col path: a run of a few bytes
#: cannot fill a vector register.
IM2COL_MIN_RUN = 32
#: Patch rows of the im2col path are padded to a multiple of this many bytes.
IM2COL_ALIGN = STEP_BYTES
#: Zero bytes after every padded image (`LayerPlan.padded_input_size`): a run padded to
#: whole steps reads up to STEP_BYTES - 1 bytes past its end (against zero weights), and
#: the last pixel's last run ends at the image's last byte.
READ_SLACK = STEP_BYTES
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
# Vector primitives: 32-byte dot-product steps on int32 lane accumulators.
# ----------------------------------------------------------------------------------

def _target_features() -> set[str]:
    """The CPU features Numba compiles for (`NUMBA_CPU_NAME`/`NUMBA_CPU_FEATURES`, else the host's)."""
    return set(cpu_target.target_context.codegen().magic_tuple()[2].split(","))


#: VPDPBUSD on 256-bit vectors (AVX512-VNNI with AVX512-VL) is available to the code Numba
#: generates. Numba's cache is keyed by the target's CPU name and features, so a cache
#: compiled with it is never loaded for a target without it.
VNNI = {"+avx512vnni", "+avx512vl"} <= _target_features()


class Int32Vector(types.Type):
    """A vector of `lanes` int32 accumulators (LLVM <lanes x i32>), local to the kernel:
    kept in variables and tuples only (a Numba list or array of them would store the
    vectors at the container's alignment, below the vector's)."""

    def __init__(self, lanes: int):
        self.lanes = lanes
        super().__init__(name=f"int32x{lanes}")


@register_model(Int32Vector)
class _Int32VectorModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(ir.IntType(32), fe_type.lanes))


_I32 = ir.IntType(32)


def _acc_type(act) -> Int32Vector:
    """The accumulator of activations `act` (a Numba array type): 4 products per lane
    (VPDPBUSD) for uint8 on a VNNI target, else 2 per lane (the shape of PMADDWD)."""
    if VNNI and act.dtype == types.uint8:
        return Int32Vector(STEP_BYTES // 4)
    return Int32Vector(STEP_BYTES // 2)


def _mask(indices) -> ir.Constant:
    return ir.Constant(ir.VectorType(_I32, len(indices)), [ir.Constant(_I32, i) for i in indices])


def _load_step(context, builder, array_type, array, index):
    """STEP_BYTES bytes of a 1-d array from element `index`, unchecked (the plan keeps every
    read inside the buffer: see `LayerPlan.padded_input_size`)."""
    data = context.make_array(array_type)(context, builder, array).data
    vector = ir.VectorType(ir.IntType(8), STEP_BYTES)
    # (the load's type from the typed pointer: also the llvmlite of older Numba releases)
    return builder.load(builder.bitcast(builder.gep(data, [index]), vector.as_pointer()), align=1)


@intrinsic
def acc_zero(typingctx, act):
    """A zero accumulator for activations of act's dtype."""
    acc = _acc_type(act)

    def codegen(context, builder, sig, args):
        return ir.Constant(ir.VectorType(_I32, acc.lanes), None)
    return acc(act), codegen


@intrinsic
def dot_step(typingctx, acc, act, act_index, wt, wt_index):
    """acc + the STEP_BYTES products act[act_index + i] * wt[wt_index + i] (act uint8 or
    int8, wt int8), product i added into lane i // (STEP_BYTES / lanes). Exact in int32:
    each lane gains at most 4 products of magnitude <= 255 * 128 < 2^15 (no saturation:
    VPDPBUSD, not VPDPBUSDS), and `check_exact` bounds every complete sum."""
    if not isinstance(acc, Int32Vector) or acc != _acc_type(act):
        return None
    vnni = acc.lanes == STEP_BYTES // 4
    signed = act.dtype == types.int8

    def codegen(context, builder, sig, args):
        acc_v, act_a, act_i, wt_a, wt_i = args
        x = _load_step(context, builder, sig.args[1], act_a, act_i)
        w = _load_step(context, builder, sig.args[3], wt_a, wt_i)
        if vnni:  # lane l += sum over k < 4 of u8 x[4l + k] * s8 w[4l + k]
            vector = ir.VectorType(_I32, acc.lanes)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vector, [vector] * 3),
                                                f"llvm.x86.avx512.vpdpbusd.{STEP_BYTES * 8}")
            return builder.call(fn, [acc_v, builder.bitcast(x, vector), builder.bitcast(w, vector)])
        # Plain LLVM IR, any target: lane l += x[2l] * w[2l] + x[2l + 1] * w[2l + 1]; the x86
        # backend turns it into (V)PMADDWD / VPDPWSSD on the bytes widened to int16.
        wide = ir.VectorType(_I32, STEP_BYTES)
        product = builder.mul(builder.sext(x, wide) if signed else builder.zext(x, wide), builder.sext(w, wide))
        even = builder.shuffle_vector(product, product, _mask(range(0, STEP_BYTES, 2)))
        odd = builder.shuffle_vector(product, product, _mask(range(1, STEP_BYTES, 2)))
        return builder.add(acc_v, builder.add(even, odd))
    return acc(acc, act, act_index, wt, wt_index), codegen


@intrinsic
def acc_sum(typingctx, acc):
    """The int32 sum of an accumulator's lanes."""
    if not isinstance(acc, Int32Vector):
        return None

    def codegen(context, builder, sig, args):
        vector = ir.VectorType(_I32, acc.lanes)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(_I32, [vector]),
                                            f"llvm.vector.reduce.add.v{acc.lanes}i32")
        return builder.call(fn, [args[0]])
    return types.int32(acc), codegen


def _fold_masks(lanes: int, half: int):
    """Shuffle masks of one level of `acc_sums`' tree on two vectors (a, b) of `lanes`
    lanes (b's lanes numbered from `lanes`): in every chunk of 2 * half lanes, `low` takes
    the first halves of a's and b's chunk, `high` the second halves, so low + high holds
    a's chunk folded in two, then b's. Whole 128-bit halves, then quad- and double-words
    within them: in-lane shuffles (unpack), not horizontal adds."""
    low, high = [], []
    for chunk in range(0, lanes, 2 * half):
        low += [*range(chunk, chunk + half), *range(lanes + chunk, lanes + chunk + half)]
        high += [*range(chunk + half, chunk + 2 * half), *range(lanes + chunk + half, lanes + chunk + 2 * half)]
    return low, high


@intrinsic
def acc_sums(typingctx, accs):
    """The lane sums of a tuple of accumulators, as a tuple of int32: a transposing tree
    (each level adds halves of two vectors into one, `_fold_masks`), lanes - 1 vector adds
    per `lanes` accumulators instead of a full reduction of each."""
    if not (isinstance(accs, types.UniTuple) and isinstance(accs.dtype, Int32Vector)):
        return None
    lanes, count = accs.dtype.lanes, accs.count
    result = types.UniTuple(types.int32, count)

    def codegen(context, builder, sig, args):
        vectors = cgutils.unpack_tuple(builder, args[0], count)
        vectors += [ir.Constant(ir.VectorType(_I32, lanes), None)] * (-count % lanes)
        sums = [None] * len(vectors)
        for first in range(0, len(vectors), lanes):
            # owner[v][l]: the accumulator whose partial sum lane l of vector v holds.
            level = vectors[first:first + lanes]
            owner = [[first + v] * lanes for v in range(lanes)]
            half = lanes // 2
            while len(level) > 1:
                low, high = _fold_masks(lanes, half)
                level = [builder.add(builder.shuffle_vector(a, b, _mask(low)), builder.shuffle_vector(a, b, _mask(high)))
                         for a, b in zip(level[0::2], level[1::2])]
                owner = [[(oa + ob)[i] for i in low] for oa, ob in zip(owner[0::2], owner[1::2])]
                half //= 2
            for lane, acc in enumerate(owner[0]):
                sums[acc] = builder.extract_element(level[0], ir.Constant(_I32, lane))
        return context.make_tuple(builder, result, sums[:count])
    return result(accs), codegen


# ----------------------------------------------------------------------------------
# The kernel.
# ----------------------------------------------------------------------------------

@njit(cache=True, inline="always")
def _block_4x4(act, wt, a0, a1, a2, a3, w0, w1, w2, w3, run_act, run_w, n_steps):
    """The 16 window sums of 4 pixels (activation offsets a0..a3) x 4 channels (weight
    offsets w0..w3): run r starts at a_k + run_act[r] and w_k + run_w[r] and is n_steps
    dot steps long. Returns 16 int32, pixel-major."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = acc_zero(act)
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = acc_zero(act)
    for r in range(run_act.shape[0]):
        b0 = a0 + run_act[r]
        b1 = a1 + run_act[r]
        b2 = a2 + run_act[r]
        b3 = a3 + run_act[r]
        v0 = w0 + run_w[r]
        v1 = w1 + run_w[r]
        v2 = w2 + run_w[r]
        v3 = w3 + run_w[r]
        for j in range(0, n_steps * STEP_BYTES, STEP_BYTES):
            s00 = dot_step(s00, act, b0 + j, wt, v0 + j)
            s01 = dot_step(s01, act, b0 + j, wt, v1 + j)
            s02 = dot_step(s02, act, b0 + j, wt, v2 + j)
            s03 = dot_step(s03, act, b0 + j, wt, v3 + j)
            s10 = dot_step(s10, act, b1 + j, wt, v0 + j)
            s11 = dot_step(s11, act, b1 + j, wt, v1 + j)
            s12 = dot_step(s12, act, b1 + j, wt, v2 + j)
            s13 = dot_step(s13, act, b1 + j, wt, v3 + j)
            s20 = dot_step(s20, act, b2 + j, wt, v0 + j)
            s21 = dot_step(s21, act, b2 + j, wt, v1 + j)
            s22 = dot_step(s22, act, b2 + j, wt, v2 + j)
            s23 = dot_step(s23, act, b2 + j, wt, v3 + j)
            s30 = dot_step(s30, act, b3 + j, wt, v0 + j)
            s31 = dot_step(s31, act, b3 + j, wt, v1 + j)
            s32 = dot_step(s32, act, b3 + j, wt, v2 + j)
            s33 = dot_step(s33, act, b3 + j, wt, v3 + j)
    return acc_sums((s00, s01, s02, s03, s10, s11, s12, s13, s20, s21, s22, s23, s30, s31, s32, s33))


@njit(cache=True, inline="always")
def _dot(act, wt, a, w, run_act, run_w, n_steps):
    """One window sum: pixel at activation offset a, channel at weight offset w."""
    s = acc_zero(act)
    for r in range(run_act.shape[0]):
        b = a + run_act[r]
        v = w + run_w[r]
        for j in range(0, n_steps * STEP_BYTES, STEP_BYTES):
            s = dot_step(s, act, b + j, wt, v + j)
    return acc_sum(s)


@njit(cache=True, inline="always")
def _put4(sums, i, a, b, c, d):
    """sums[i..i+3] = a, b, c, d (i: uint64, so the four stores are plainly adjacent)."""
    sums[i] = a
    sums[i + np.uint64(1)] = b
    sums[i + np.uint64(2)] = c
    sums[i + np.uint64(3)] = d


@njit(cache=True, inline="always")
def _requantize_row(out, out_index, sums, sums_index, o_first, count, bias, m0, n):
    """Requantize `count` adjacent channels from o_first of one pixel: sums[sums_index + i]
    -> out[out_index + i]. A plain loop over adjacent channels (uint64 indices: no
    negative-index wrap-around), which LLVM vectorizes."""
    for i in range(count):
        o = o_first + i
        out[out_index + i] = requantize_value(np.int64(sums[sums_index + i]) + bias[o], m0[o], n[o],
                                              ACT_MIN, ACT_MAX)


#: Pixels and channels of one task's tile of window sums.
TASK_PIXELS, TASK_CHANNELS = TASK_PIXEL_BLOCKS * BLOCK_P, TASK_CHANNEL_BLOCKS * BLOCK_O


@njit(cache=True, parallel=True)
def conv_kernel(act, pix_base, run_act, run_w, n_steps, group_step, wt, w_row, o_start, o_count, o_group,
                bias, m0, n, out, out_base):
    """Convolution + requantization + ReLU of one picture into `out` (uint8, flat).

    act: uint8 or int8 (flat padded NHWC image, or im2col patches); pix_base: int64 (P,)
    offset in `act` of output pixel p's window (group 0); run_act, run_w: int64 (R,)
    offsets of the R runs relative to pix_base and to a weight row; n_steps: dot steps
    (STEP_BYTES each) per run; group_step: offset in `act` between consecutive groups;
    wt: int8 (C_out * w_row,) weights, zero past each run's real length;
    o_start, o_count, o_group: int64 (B,) output-channel blocks (<= 4 channels, one group;
    consecutive blocks are adjacent: o_start[b + 1] = o_start[b] + o_count[b]);
    bias, m0, n: int64 (C_out,); out_base: int64 (P,) offset in `out` of pixel p's channel 0.

    A task is up to TASK_PIXELS pixels x TASK_CHANNELS channels: its window sums go to a
    tile (int32), then each pixel's row of the tile is requantized in one loop. Tasks
    are of equal size (up to the last pixel block): the threads take equal shares of
    the task range, e.g. 48 channels are two tasks of 24, not 32 and 16.
    """
    n_pix = pix_base.shape[0]
    n_pblocks = (n_pix + BLOCK_P - 1) // BLOCK_P
    n_pchunks = (n_pblocks + TASK_PIXEL_BLOCKS - 1) // TASK_PIXEL_BLOCKS
    task_pixels = (n_pblocks + n_pchunks - 1) // n_pchunks * BLOCK_P
    n_oblocks = o_start.shape[0]
    n_ochunks = (n_oblocks + TASK_CHANNEL_BLOCKS - 1) // TASK_CHANNEL_BLOCKS
    task_oblocks = (n_oblocks + n_ochunks - 1) // n_ochunks
    for task in prange(n_pchunks * n_ochunks):
        p_first = (task % n_pchunks) * task_pixels
        p_end = min(n_pix, p_first + task_pixels)
        ob_first = (task // n_pchunks) * task_oblocks
        ob_end = min(n_oblocks, ob_first + task_oblocks)
        o_first = o_start[ob_first]
        # Numba hoists this allocation out of the task loop (one tile per thread, reused by
        # its tasks): every entry the requantization reads is written by this task first.
        sums = np.empty(TASK_PIXELS * TASK_CHANNELS, dtype=np.int32)
        for ob in range(ob_first, ob_end):
            o0 = o_start[ob]
            no = o_count[ob]
            goff = o_group[ob] * group_step
            for p0 in range(p_first, p_end, BLOCK_P):
                npx = min(BLOCK_P, p_end - p0)
                row = (p0 - p_first) * TASK_CHANNELS + (o0 - o_first)
                if npx == BLOCK_P and no == BLOCK_O:
                    s = _block_4x4(act, wt, pix_base[p0] + goff, pix_base[p0 + 1] + goff,
                                   pix_base[p0 + 2] + goff, pix_base[p0 + 3] + goff,
                                   o0 * w_row, (o0 + 1) * w_row, (o0 + 2) * w_row, (o0 + 3) * w_row,
                                   run_act, run_w, n_steps)
                    _put4(sums, np.uint64(row), s[0], s[1], s[2], s[3])
                    _put4(sums, np.uint64(row + TASK_CHANNELS), s[4], s[5], s[6], s[7])
                    _put4(sums, np.uint64(row + 2 * TASK_CHANNELS), s[8], s[9], s[10], s[11])
                    _put4(sums, np.uint64(row + 3 * TASK_CHANNELS), s[12], s[13], s[14], s[15])
                else:
                    for dp in range(npx):
                        for do in range(no):
                            sums[row + dp * TASK_CHANNELS + do] = _dot(
                                act, wt, pix_base[p0 + dp] + goff, (o0 + do) * w_row, run_act, run_w, n_steps)
        count = np.uint64(o_start[ob_end - 1] + o_count[ob_end - 1] - o_first)
        for p in range(p_first, p_end):
            _requantize_row(out, np.uint64(out_base[p] + o_first), sums, np.uint64((p - p_first) * TASK_CHANNELS),
                            np.uint64(o_first), count, bias, m0, n)


@njit(cache=True, parallel=True)
def im2col(act, height, width, channels, stride, groups, k_pad, out):
    """Gather every output pixel's window from a padded NHWC image into patch rows.

    act: flat padded image (channels per pixel); out: (H_out * W_out * groups * k_pad,)
    of act's dtype; patch of pixel p, group g at (p * groups + g) * k_pad, values in order
    [ky][kx][c] over the group's C/groups channels, then zeros up to k_pad.
    """
    ho = (height - 1) // stride + 1
    wo = (width - 1) // stride + 1
    cg = channels // groups
    row = (width + 2) * channels
    # With one group a window row (3 pixels x all channels) is contiguous in the image
    # and in the patch: one copy per ky. Offsets are uint64: Numba then emits no
    # negative-index wrap-around in the copy loops (measured 4x faster).
    run = 3 * cg if groups == 1 else cg
    runs_per_row = 1 if groups == 1 else 3
    zero = act.dtype.type(0)
    for y in prange(ho):
        for x in range(wo):
            p = y * wo + x
            for g in range(groups):
                dst = np.uint64((p * groups + g) * k_pad)
                for ky in range(3):
                    for kx in range(runs_per_row):
                        src = np.uint64((y * stride + ky) * row + (x * stride + kx) * channels + g * cg)
                        d = dst + np.uint64((ky * runs_per_row + kx) * run)
                        for c in range(np.uint64(run)):
                            out[d + c] = act[src + c]
                for c in range(dst + np.uint64(9 * cg), dst + np.uint64(k_pad)):
                    out[c] = zero


@njit(cache=True)
def pad_nhwc(x, out):
    """Copy one picture x: (C, H, W) into the interior of the flat padded NHWC `out`
    ((H + 2) * (W + 2) * C,), whose border must already be zero."""
    c, h, w = x.shape
    for y in range(h):
        for ch in range(c):  # rows of x read in order (the network input has few channels)
            base = ((y + 1) * (w + 2) + 1) * c + ch
            for xx in range(w):
                out[base + xx * c] = x[ch, y, xx]


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
    run_w: np.ndarray
    run_len: int
    n_steps: int
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
        """Bytes of the flat padded NHWC input buffer: the image and READ_SLACK zeros."""
        s = self.shape
        return (s.height + 2) * (s.width + 2) * s.cin + READ_SLACK

    def padded_output_size(self) -> int:
        """Bytes of the flat padded NHWC output buffer (the next layer's input buffer)."""
        s = self.shape
        return (s.out_height + 2) * (s.out_width + 2) * s.cout + READ_SLACK


def plan_layer(shape: LayerShape, weight, bias, m0, n, name: str = "layer") -> LayerPlan:
    """Prepare one layer. weight: int8 (C_out, C_in/groups, 3, 3); bias, m0, n: (C_out,)."""
    check_exact(shape, name)
    if shape.groups < 1 or shape.cin % shape.groups or shape.cout % shape.groups:
        raise RepAccelError(f"{name}: {shape.cin} input and {shape.cout} output channels do not split into "
                            f"{shape.groups} groups; give channel counts that are multiples of groups")
    weight = np.asarray(weight)
    cout, cin_g = shape.cout, shape.cin_per_group
    if weight.shape != (cout, cin_g, 3, 3):
        raise RepAccelError(f"{name}: weight shape {weight.shape} does not match the layer's ({cout}, {cin_g}, 3, 3)")
    for label, values in (("bias", bias), ("m0", m0), ("n", n)):
        if np.shape(values) != (cout,):  # the kernel indexes them unchecked
            raise RepAccelError(f"{name}: {label} of shape {np.shape(values)}, the layer needs one per output "
                                f"channel ({cout},)")
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
        run_len, group_step = k, k_pad
        run_act = np.zeros(1, dtype=np.int64)
        pix_base = np.arange(ho * wo, dtype=np.int64) * (groups * k_pad)
    else:
        k_pad = 0
        run_len, group_step = direct_run, cin_g
        row = (w + 2) * c
        if groups == 1:
            run_act = np.arange(3, dtype=np.int64) * row
        else:
            run_act = np.array([ky * row + kx * c for ky in range(3) for kx in range(3)], dtype=np.int64)
        pix_base = ys * stride * row + xs * stride * c
    # Each run's weights padded with zeros to whole dot steps: the activations read past a
    # run's end (the next pixel's, or READ_SLACK zeros) are multiplied by 0.
    n_runs = run_act.shape[0]
    n_steps = -(-run_len // STEP_BYTES)
    run_pad = n_steps * STEP_BYTES
    w_row = n_runs * run_pad
    wt = np.zeros((cout, n_runs, run_pad), dtype=np.int8)
    wt[:, :, :run_len] = w_kkc.reshape(cout, n_runs, run_len)
    run_w = np.arange(n_runs, dtype=np.int64) * run_pad
    out_base = ((ys + 1) * (wo + 2) + xs + 1) * cout
    cout_g = shape.cout_per_group
    starts, counts, grps = [], [], []
    for g in range(groups):
        for o in range(g * cout_g, (g + 1) * cout_g, BLOCK_O):
            starts.append(o)
            counts.append(min(BLOCK_O, (g + 1) * cout_g - o))
            grps.append(g)
    return LayerPlan(shape, use_im2col, k_pad, wt.ravel(), w_row, run_act, run_w, run_len, n_steps,
                     group_step, pix_base, out_base, np.array(starts, np.int64), np.array(counts, np.int64),
                     np.array(grps, np.int64), np.asarray(bias, np.int64).copy(), np.asarray(m0, np.int64).copy(),
                     np.asarray(n, np.int64).copy())


def run_plan(plan: LayerPlan, act_padded: np.ndarray, out_padded: np.ndarray) -> None:
    """Run one layer on one picture: flat padded NHWC input -> flat padded NHWC uint8 output
    (whose border must be zero; the kernel writes only the interior). Both buffers are
    `plan.padded_input_size()` and `plan.padded_output_size()` bytes: the kernel's reads are
    unchecked and rely on the input's READ_SLACK."""
    s = plan.shape
    if act_padded.shape != (plan.padded_input_size(),) or out_padded.shape != (plan.padded_output_size(),):
        raise RepAccelError(f"layer buffers of {act_padded.shape} and {out_padded.shape} bytes: the plan needs "
                            f"({plan.padded_input_size()},) and ({plan.padded_output_size()},) (LayerPlan.padded_*_size)")
    if plan.im2col:
        patches = np.empty(s.out_height * s.out_width * s.groups * plan.k_pad, dtype=act_padded.dtype)
        im2col(act_padded, s.height, s.width, s.cin, s.stride, s.groups, plan.k_pad, patches)
        act = patches
    else:
        act = act_padded
    conv_kernel(act, plan.pix_base, plan.run_act, plan.run_w, plan.n_steps, plan.group_step, plan.wt, plan.w_row,
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
