"""ONNX graphs of the integer network of a build and of the float fused network.

`integer_model(qnet)` writes the contract of docs/numerics.md as standard ONNX operators
(opset 13), so onnxruntime, Netron or TensorRT can run and inspect it:

- `QuantizeLinear(input, s_in, 128)`: the float input (N, C, H, W) to uint8 with zero
  point 128, i.e. the contract's int8 input plus 128 (onnxruntime's QLinearConv takes a
  uint8 input only together with a uint8 output; the zero point makes its padding and
  its sums those of the int8 input);
- per fused layer, `QLinearConv` with the int8 weights (C_out, C_in/groups, 3, 3), their
  per-channel scales, the int32 bias, stride, groups and padding 1, and a uint8 output
  with zero point 0, whose saturation to [0, 255] is the ReLU;
- the head in integers: `Cast` + `ReduceSum` (the pooled channel sums S), the pool
  requantization `min((S * pool_m0 + 2^(pool_n - 1)) / 2^pool_n, 255)` in int64 (S >= 0,
  so the integer division is the contract's arithmetic shift), `MatMulInteger` with the
  int8 FC weights, `Add` of the int32 bias: output `logits` int32 (N, classes), and
  `logits_real` = `DequantizeLinear(logits, logit_scale)` float32.

The head is exact. QLinearConv is specified in real arithmetic: onnxruntime rescales
each int32 sum with a float32 multiplier `x_scale * w_scale[c] / y_scale` and rounds half
to even, where the contract multiplies by the Q31 integer M0 and rounds half up
(docs/numerics.md, "ONNX export", says how often that changes an output). The exported
weight scales are the float32 values nearest to s_w[c] whose float32 multiplier is the
float32 value nearest to M0 * 2^-n, so only the rounding of the multiplier to 24 bits
and the rounding rule remain.

`float_model(net)` is the fused float network (Conv + Relu per layer,
GlobalAveragePool, Gemm), for `rep-accel fuse --onnx`.

The `onnx` package is an optional dependency (`pip install 'rep-accel[onnx]'`).
"""

from __future__ import annotations

import numpy as np

from . import __version__
from .errors import RepAccelError
from .fsutil import atomic_write_bytes
from .network import FusedNetwork
from .qnetwork import QuantizedNetwork

#: Opset of the exported graphs: QLinearConv, MatMulInteger (10), per-axis QuantizeLinear,
#: ReduceSum with axes as an input (13); wide support in runtimes and TensorRT.
OPSET = 13
#: IR version of opset 13 (ONNX 1.8): readable by older runtimes than the onnx package's default.
IR_VERSION = 7

#: The uint8 zero point of the network input (the int8 input plus 128).
INPUT_ZERO_POINT = 128


def _onnx():
    try:
        import onnx
    except ImportError:
        raise RepAccelError("ONNX export needs the onnx package: pip install 'rep-accel[onnx]'") from None
    return onnx


def float32_weight_scales(s_x: float, s_y: float, m0: np.ndarray, n: np.ndarray, s_w: np.ndarray) -> np.ndarray:
    """Per-channel float32 weight scales for QLinearConv: for each channel the float32 value
    nearest to s_w[c] among those whose float32 multiplier fl32(fl32(s_x * w) / s_y), as
    onnxruntime computes it, is the float32 value nearest to M0[c] * 2^-n[c]; s_w[c] itself
    (rounded to float32) where none of the candidates reaches it. float32 (C_out,)."""
    sx, sy = np.float32(s_x), np.float32(s_y)
    target = (np.asarray(m0, np.float64) * np.exp2(-np.asarray(n, np.float64))).astype(np.float32)
    out = np.asarray(s_w, np.float64).astype(np.float32)
    for c in range(out.size):
        # The weight scale that gives the multiplier exactly in real arithmetic, then its
        # float32 neighbours: the rounding of s_x * w and of the division move it by an ulp or two.
        start = np.float32(np.float64(target[c]) * np.float64(sy) / np.float64(sx))
        candidates = [start]
        for direction in (np.float32(np.inf), np.float32(0)):
            w = start
            for _ in range(4):
                w = np.nextafter(w, direction)
                candidates.append(w)
        hits = [w for w in candidates if np.float32(np.float32(sx * w) / sy) == target[c]]
        if hits:
            out[c] = min(hits, key=lambda w: abs(float(w) - float(s_w[c])))
    return out


def integer_model(qnet: QuantizedNetwork, name: str = "rep_accel_int8", intermediate_outputs: bool = False):
    """The integer network as an onnx.ModelProto (opset 13; the module docstring gives the graph).

    Input `input` float32 (batch, C, H, W) of qnet.input_size, normalized as the float
    network takes it; outputs `logits` int32 (batch, classes) and `logits_real` float32.
    intermediate_outputs: also output every layer's uint8 activation (`<layer>_out`),
    the quantized input (`input_q`) and the pooled vector (`pooled`)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = [], []

    def const(name_, array):
        inits.append(numpy_helper.from_array(np.asarray(array), name_))
        return name_

    c_in, h, w = (int(v) for v in qnet.input_size)
    nodes.append(helper.make_node(
        "QuantizeLinear", ["input", const("input_scale", np.float32(qnet.input_scale)),
                           const("input_zero_point", np.uint8(INPUT_ZERO_POINT))], ["input_q"], name="quantize_input"))
    x, x_scale, x_zp = "input_q", "input_scale", "input_zero_point"
    activations = [("input_q", [c_in, h, w])]
    for layer in qnet.layers:
        s = layer.shape
        p = layer.name
        w_scale = float32_weight_scales(layer.s_x, layer.s_y, layer.m0, layer.n, layer.s_w)
        y = f"{p}_out"
        nodes.append(helper.make_node(
            "QLinearConv",
            [x, x_scale, x_zp, const(f"{p}_weight", np.asarray(layer.weight, np.int8)),
             const(f"{p}_weight_scale", w_scale), const(f"{p}_weight_zero_point", np.zeros(s.cout, np.int8)),
             const(f"{p}_output_scale", np.float32(layer.s_y)), const(f"{p}_output_zero_point", np.uint8(0)),
             const(f"{p}_bias", np.asarray(layer.bias, np.int32))],
            [y], name=p, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[s.stride, s.stride], group=s.groups))
        x, x_scale, x_zp = y, f"{p}_output_scale", f"{p}_output_zero_point"
        activations.append((y, [s.cout, s.out_height, s.out_width]))

    hd = qnet.head
    if not 1 <= int(hd.pool_n) <= 62:
        raise RepAccelError(f"head: pool shift {hd.pool_n} outside 1..62; the build is damaged")
    nodes += [
        helper.make_node("Cast", [x], ["features_i32"], to=TensorProto.INT32, name="head_cast"),
        helper.make_node("ReduceSum", ["features_i32", const("pool_axes", np.array([2, 3], np.int64))],
                         ["pool_sums_i32"], keepdims=0, name="pool_sum"),
        helper.make_node("Cast", ["pool_sums_i32"], ["pool_sums"], to=TensorProto.INT64, name="pool_cast"),
        helper.make_node("Mul", ["pool_sums", const("pool_m0", np.int64(hd.pool_m0))], ["pool_product"],
                         name="pool_multiply"),
        helper.make_node("Add", ["pool_product", const("pool_half", np.int64(1) << np.int64(int(hd.pool_n) - 1))],
                         ["pool_rounded"], name="pool_round"),
        # S >= 0, so truncating division is the contract's floor (arithmetic shift).
        helper.make_node("Div", ["pool_rounded", const("pool_divisor", np.int64(1) << np.int64(int(hd.pool_n)))],
                         ["pool_shifted"], name="pool_shift"),
        helper.make_node("Min", ["pool_shifted", const("pool_max", np.int64(255))], ["pool_clamped"],
                         name="pool_clamp"),
        helper.make_node("Cast", ["pool_clamped"], ["pooled"], to=TensorProto.UINT8, name="pool_to_uint8"),
        helper.make_node("MatMulInteger", ["pooled", const("fc_weight_t", np.ascontiguousarray(
            np.asarray(hd.fc_weight, np.int8).T)), const("pooled_zero_point", np.uint8(0)),
            const("fc_weight_zero_point", np.int8(0))], ["fc_sums"], name="fc"),
        helper.make_node("Add", ["fc_sums", const("fc_bias", np.asarray(hd.fc_bias, np.int32))], ["logits"],
                         name="fc_bias_add"),
        helper.make_node("DequantizeLinear", ["logits", const("logit_scale", np.float32(hd.logit_scale)),
                                              const("logit_zero_point", np.int32(0))], ["logits_real"],
                         name="dequantize_logits"),
    ]
    classes = int(np.asarray(hd.fc_weight).shape[0])
    outputs = [helper.make_tensor_value_info("logits", TensorProto.INT32, ["batch", classes]),
               helper.make_tensor_value_info("logits_real", TensorProto.FLOAT, ["batch", classes])]
    if intermediate_outputs:
        outputs += [helper.make_tensor_value_info(a, TensorProto.UINT8, ["batch", *dims]) for a, dims in activations]
        outputs.append(helper.make_tensor_value_info("pooled", TensorProto.UINT8, ["batch", int(hd.fc_weight.shape[1])]))
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", c_in, h, w])], outputs,
        initializer=inits,
        doc_string="rep-accel integer network (docs/numerics.md): uint8 activations, zero point 0 after every "
                   "ReLU; int8 per-channel weights; int32 logits, real logits = logits * logit_scale")
    return _finish(onnx, graph, {"input_scale": repr(float(qnet.input_scale)),
                                 "logit_scale": repr(float(hd.logit_scale)),
                                 "layers": str(len(qnet.layers))})


def float_model(net: FusedNetwork, name: str = "rep_accel_fused"):
    """The fused float network as an onnx.ModelProto: per layer Conv (3x3, padding 1,
    stride, groups, bias) + Relu, then GlobalAveragePool, Flatten and Gemm. Input `input`
    float32 (batch, C, height, width), any height and width, as the network itself;
    output `logits` float32 (batch, classes)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes, x = [], [], "input"
    for layer in net.layers:
        p = layer.name
        inits += [numpy_helper.from_array(np.asarray(layer.weight, np.float32), f"{p}_weight"),
                  numpy_helper.from_array(np.asarray(layer.bias, np.float32), f"{p}_bias")]
        nodes += [helper.make_node("Conv", [x, f"{p}_weight", f"{p}_bias"], [f"{p}_conv"], name=p,
                                   kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[layer.stride] * 2,
                                   group=layer.groups),
                  helper.make_node("Relu", [f"{p}_conv"], [f"{p}_out"], name=f"{p}_relu")]
        x = f"{p}_out"
    inits += [numpy_helper.from_array(np.asarray(net.fc_weight, np.float32), "fc_weight"),
              numpy_helper.from_array(np.asarray(net.fc_bias, np.float32), "fc_bias")]
    nodes += [helper.make_node("GlobalAveragePool", [x], ["pooled_4d"], name="pool"),
              helper.make_node("Flatten", ["pooled_4d"], ["pooled"], axis=1, name="flatten"),
              helper.make_node("Gemm", ["pooled", "fc_weight", "fc_bias"], ["logits"], transB=1, name="fc")]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", net.in_channels, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", net.num_classes])],
        initializer=inits, doc_string="rep-accel fused float network: 3x3 conv + ReLU layers, global pool, FC")
    return _finish(onnx, graph, {"variant": str(net.meta.get("variant", "")),
                                 "source": str(net.meta.get("source", ""))})


def _finish(onnx, graph, metadata: dict):
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="rep-accel", producer_version=__version__)
    model.ir_version = IR_VERSION
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model, full_check=True)
    return model


def save(model, path) -> int:
    """Write an onnx.ModelProto to `path` atomically; returns the bytes written."""
    data = model.SerializeToString()
    atomic_write_bytes(path, data)
    return len(data)
