"""The golden integer model: the executable definition of docs/numerics.md.

Plain numpy. The convolution sums are computed exactly: every product x * w and every
partial sum is an integer of magnitude below 2^31 (the accumulator bound), far below
2^53, so a float64 matmul over im2col columns is exact in any summation order. All
requantization goes through `rep_accel.numerics` (the one definition of it).

Shapes: activations (N, C, H, W); logits (N, classes).
"""

from __future__ import annotations

import numpy as np

from . import numerics
from .errors import RepAccelError
from .qnetwork import QuantizedHead, QuantizedLayer, QuantizedNetwork

#: Largest im2col buffer built at once (float64 elements, about 64 MiB); bigger batches go in chunks.
_MAX_COLUMN_ELEMENTS = 8 << 20


def _windows(x: np.ndarray, stride: int) -> np.ndarray:
    """3x3 windows of x (N, C, H, W), padding 1: a view (N, C, H_out, W_out, 3, 3)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))
    return win[:, :, ::stride, ::stride]


def conv_accumulate(x_q: np.ndarray, weight: np.ndarray, stride: int, groups: int) -> np.ndarray:
    """acc = sum over each 3x3 x (C_in/groups) window of x * w, zero padding 1: int64 (N, C_out, H_out, W_out).

    x_q: int8 or uint8 (N, C_in, H, W); weight: int8 (C_out, C_in/groups, 3, 3).
    """
    n, cin, h, w = x_q.shape
    cout, cpg = weight.shape[0], weight.shape[1]
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    out_pg = cout // groups
    acc = np.empty((n, cout, ho, wo), dtype=np.int64)
    chunk = max(1, _MAX_COLUMN_ELEMENTS // max(1, ho * wo * cpg * 9))
    wf = weight.astype(np.float64).reshape(cout, cpg * 9)
    for b0 in range(0, n, chunk):
        win = _windows(x_q[b0:b0 + chunk].astype(np.float64), stride)  # (b, C, ho, wo, 3, 3)
        for g in range(groups):
            cols = win[:, g * cpg:(g + 1) * cpg].transpose(0, 2, 3, 1, 4, 5).reshape(-1, cpg * 9)
            sums = cols @ wf[g * out_pg:(g + 1) * out_pg].T  # exact: integers below 2^53
            acc[b0:b0 + chunk, g * out_pg:(g + 1) * out_pg] = (
                sums.reshape(-1, ho, wo, out_pg).transpose(0, 3, 1, 2).astype(np.int64))
    return acc


def _check_layer_input(x_q: np.ndarray, layer: QuantizedLayer) -> None:
    s = layer.shape
    want = np.int8 if s.input_signed else np.uint8
    if x_q.ndim != 4 or x_q.dtype != want or x_q.shape[1:] != (s.cin, s.height, s.width):
        raise RepAccelError(
            f"{layer.name}: input is {x_q.dtype} {x_q.shape}, the layer takes {np.dtype(want)} "
            f"(N, {s.cin}, {s.height}, {s.width})")


def conv_layer(x_q: np.ndarray, layer: QuantizedLayer) -> np.ndarray:
    """One fused layer in integers: uint8 (N, C_out, H_out, W_out).

    x_q: (N, C_in, H, W), int8 for the network input (layer.shape.input_signed) else uint8.
    out = clamp(((acc + B) * M0 + 2^(n-1)) >> n, 0, 255), acc over the 3x3 x C_in/groups window.
    """
    _check_layer_input(x_q, layer)
    s = layer.shape
    acc = conv_accumulate(x_q, np.asarray(layer.weight, dtype=np.int8), s.stride, s.groups)
    bias = np.asarray(layer.bias, dtype=np.int64)
    # The contract guarantees v = acc + B fits 32 bits (|w| <= 127, numerics.bias_limit);
    # check it, since a layer built by hand could break it.
    lo, hi = int(acc.min(initial=0)) + int(bias.min()), int(acc.max(initial=0)) + int(bias.max())
    if hi > numerics.ACC_MAX or lo < -numerics.ACC_MAX - 1:
        raise RepAccelError(f"{layer.name}: acc + bias leaves the signed 32-bit range; "
                            f"the bias breaks numerics.bias_limit({s.cin_per_group})")
    return numerics.requantize_nchw(acc, bias, np.asarray(layer.m0, dtype=np.int64),
                                    np.asarray(layer.n, dtype=np.int64))


def pool_sums(features: np.ndarray) -> np.ndarray:
    """Channel sums of the global average pooling: int64 (N, C) = sum over (h, w) of features."""
    return features.astype(np.int64).sum(axis=(2, 3))


def head(features: np.ndarray, head: QuantizedHead) -> np.ndarray:
    """Global average pooling + fully connected layer in integers: int32 logits (N, classes).

    features: uint8 (N, C, h, w) at scale s_feat. pooled = clamp((S * pool_m0 + 2^(pool_n-1))
    >> pool_n, 0, 255) with S the channel sum over h * w pixels (the multiplier folds
    1 / (h * w) and s_feat / s_pool); logits = pooled @ fc_weight^T + fc_bias, one scale
    `head.logit_scale` for every class, so argmax over the int32 logits is the prediction.
    """
    if features.ndim != 4 or features.dtype != np.uint8:
        raise RepAccelError(f"head: features must be uint8 (N, C, h, w), got {features.dtype} {features.shape}")
    fc_w = np.asarray(head.fc_weight, dtype=np.int64)
    if features.shape[1] != fc_w.shape[1]:
        raise RepAccelError(f"head: features have {features.shape[1]} channels, the FC layer takes {fc_w.shape[1]}")
    sums = pool_sums(features)
    k = sums.size
    pooled = numerics.requantize_vector(sums.reshape(k), np.full(k, head.pool_m0, np.int64),
                                        np.full(k, head.pool_n, np.int64),
                                        numerics.ACT_MIN, numerics.ACT_MAX).reshape(sums.shape)
    logits = pooled @ fc_w.T + np.asarray(head.fc_bias, dtype=np.int64)
    if np.abs(logits).max(initial=0) > numerics.ACC_MAX:
        raise RepAccelError("head: a logit leaves the signed 32-bit range; the FC bias is too large")
    return logits.astype(np.int32)


def quantize_input(x, qnet_or_scale) -> np.ndarray:
    """Float network input (N, C, H, W), normalized as the float network takes it, to int8.

    qnet_or_scale: a QuantizedNetwork (its input_scale) or the scale itself.
    """
    scale = qnet_or_scale.input_scale if isinstance(qnet_or_scale, QuantizedNetwork) else float(qnet_or_scale)
    return numerics.quantize_input(x, scale)


def run_network(qnet: QuantizedNetwork, x_q: np.ndarray, return_activations: bool = False):
    """The whole integer network. x_q: int8 (N, C, H, W) of qnet.input_size.

    Returns int32 logits (N, classes) (real logits = logits * qnet.head.logit_scale) and,
    with return_activations, the list of every layer's uint8 output (N, C, H, W).
    """
    x_q = np.asarray(x_q)
    if x_q.ndim != 4 or x_q.dtype != np.int8 or tuple(x_q.shape[1:]) != tuple(qnet.input_size):
        raise RepAccelError(f"network input must be int8 (N, {', '.join(map(str, qnet.input_size))}), "
                            f"got {x_q.dtype} {x_q.shape}; use golden.quantize_input on float data")
    acts = []
    t = x_q
    for layer in qnet.layers:
        t = conv_layer(t, layer)
        acts.append(t)
    logits = head(t, qnet.head)
    return (logits, acts) if return_activations else logits


def predict(qnet: QuantizedNetwork, x: np.ndarray) -> np.ndarray:
    """Classes (N,) int64 for float inputs x (N, C, H, W): quantize, run, argmax of the int32 logits."""
    return run_network(qnet, quantize_input(x, qnet)).argmax(axis=1)
