"""ONNX graphs of the integer network of a build and of the float fused network.

`integer_model(qnet)` writes the contract of docs/numerics.md as standard ONNX operators
(opset 13), so onnxruntime runs it and Netron shows it:

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

`integer_model(qnet, requantization="integer")` (`rep-accel export --requantization
integer`) writes each layer instead as `ConvInteger` (uint8 x int8 -> int32), `Add` of
the int32 bias and the contract's requantization in int64 (`Mul` by M0, `Add` 2^(n-1),
`Div` by 2^n, `Max`/`Min` to [0, 255], `Cast` to uint8), the same operators as the
head: every output then equals the golden model's, in any runtime with exact integer
arithmetic, at the cost of a graph that quantization tools do not see as QLinearConv.

`float_model(net)` is the fused float network (Conv + Relu per layer,
GlobalAveragePool, Gemm), for `rep-accel fuse --onnx`.

TensorRT's ONNX parser does not take QLinearConv, ConvInteger or MatMulInteger (its
operator table marks them unsupported); it wants float Conv between QuantizeLinear /
DequantizeLinear pairs, a form this module does not write.

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
#: ReduceSum with axes as an input (13).
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


#: How a conv layer is requantized in the graph (`integer_model(requantization=...)`).
REQUANTIZATIONS = ("qlinear", "integer")


def _integer_requantization(helper, TensorProto, const, prefix: str, value: str, m0, n, out: str) -> list:
    """Nodes computing the contract's clamp((v * m0 + 2^(n-1)) >> n, 0, 255) as uint8 `out`
    from the int32 tensor `value`, in int64; m0 and n are int64 arrays that broadcast
    against it. The division truncates where >> floors, which differs only for a
    negative numerator, whose result both clamp to 0."""
    n = np.asarray(n, np.int64)
    return [
        helper.make_node("Cast", [value], [f"{prefix}_i64"], to=TensorProto.INT64, name=f"{prefix}_to_i64"),
        helper.make_node("Mul", [f"{prefix}_i64", const(f"{prefix}_m0", np.asarray(m0, np.int64))],
                         [f"{prefix}_product"], name=f"{prefix}_multiply"),
        helper.make_node("Add", [f"{prefix}_product", const(f"{prefix}_half", np.left_shift(np.int64(1), n - 1))],
                         [f"{prefix}_rounded"], name=f"{prefix}_round"),
        helper.make_node("Div", [f"{prefix}_rounded", const(f"{prefix}_divisor", np.left_shift(np.int64(1), n))],
                         [f"{prefix}_shifted"], name=f"{prefix}_shift"),
        helper.make_node("Max", [f"{prefix}_shifted", const(f"{prefix}_low", np.int64(0))], [f"{prefix}_relu"],
                         name=f"{prefix}_relu"),
        helper.make_node("Min", [f"{prefix}_relu", const(f"{prefix}_high", np.int64(255))], [f"{prefix}_clamped"],
                         name=f"{prefix}_clamp"),
        helper.make_node("Cast", [f"{prefix}_clamped"], [out], to=TensorProto.UINT8, name=f"{prefix}_to_uint8"),
    ]


def integer_model(qnet: QuantizedNetwork, name: str = "rep_accel_int8", intermediate_outputs: bool = False,
                  requantization: str = "qlinear"):
    """The integer network as an onnx.ModelProto (opset 13; the module docstring gives the graph).

    Input `input` float32 (batch, C, H, W) of qnet.input_size, normalized as the float
    network takes it; outputs `logits` int32 (batch, classes) and `logits_real` float32.
    intermediate_outputs: also output every layer's uint8 activation (`<layer>_out`),
    the quantized input (`input_q`) and the pooled vector (`pooled`).
    requantization: 'qlinear' (one QLinearConv per layer, rescaled in float32 by the
    runtime) or 'integer' (ConvInteger, Add of the bias and the contract's Q31
    requantization in int64: the golden model's outputs exactly, in plain operators)."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if requantization not in REQUANTIZATIONS:
        raise RepAccelError(f"requantization {requantization!r}: choose one of {', '.join(REQUANTIZATIONS)}")
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
        y = f"{p}_out"
        if requantization == "integer":
            channel = (s.cout, 1, 1)
            nodes += [
                helper.make_node("ConvInteger", [x, const(f"{p}_weight", np.asarray(layer.weight, np.int8)), x_zp],
                                 [f"{p}_acc"], name=p, kernel_shape=[3, 3], pads=[1, 1, 1, 1],
                                 strides=[s.stride, s.stride], group=s.groups),
                helper.make_node("Add", [f"{p}_acc", const(f"{p}_bias",
                                                            np.asarray(layer.bias, np.int32).reshape(channel))],
                                 [f"{p}_v"], name=f"{p}_bias_add"),
                *_integer_requantization(helper, TensorProto, const, p, f"{p}_v", np.reshape(layer.m0, channel),
                                         np.reshape(layer.n, channel), y)]
            x, x_zp = y, const(f"{p}_output_zero_point", np.uint8(0))
            activations.append((y, [s.cout, s.out_height, s.out_width]))
            continue
        w_scale = float32_weight_scales(layer.s_x, layer.s_y, layer.m0, layer.n, layer.s_w)
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
        *_integer_requantization(helper, TensorProto, const, "pool", "pool_sums_i32", np.int64(hd.pool_m0),
                                 np.int64(hd.pool_n), "pooled"),
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
        outputs.append(helper.make_tensor_value_info("pooled", TensorProto.UINT8,
                                                     ["batch", int(hd.fc_weight.shape[1])]))
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
