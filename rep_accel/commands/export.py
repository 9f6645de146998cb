"""`rep-accel export`: a build's integer network as a standard ONNX graph."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from .. import images
from ..errors import RepAccelError
from ..fsutil import check_output_file

HELP = "write a build's integer network as an ONNX graph (QuantizeLinear, QLinearConv, integer head)"

DESCRIPTION = """\
Write the integer network of a build folder (written by `rep-accel compile`) as a
standard ONNX graph (opset 13) that onnxruntime runs and Netron shows: the input
QuantizeLinear, one QLinearConv per layer (per-channel int8 weights, int32 bias, uint8
output with zero point 0, whose saturation is the ReLU) and the head in standard integer
operators (ReduceSum, the pool requantization in int64, MatMulInteger). Outputs: `logits`
int32 (the contract's integer logits) and `logits_real` float32. The graph passes
onnx.checker before it is written.

onnxruntime rescales each QLinearConv in float32 where the contract uses a Q31 integer
multiplier: about one output in a million differs by one, where the exact value is
within 10^-5 of a half-integer (docs/numerics.md, "ONNX export"). --requantization integer writes each layer as
ConvInteger and the contract's integer requantization instead: every output then equals
the golden model's.

TensorRT's ONNX parser does not take QLinearConv, ConvInteger or MatMulInteger.

Needs the onnx package: pip install 'rep-accel[onnx]'.

examples:
  rep-accel compile -o build/ && rep-accel export build/ -o model.onnx
  rep-accel export build/ -o model.onnx --intermediate
  rep-accel export build/ -o model-exact.onnx --requantization integer
"""


def add_arguments(parser) -> None:
    parser.add_argument("build", help="build folder written by `rep-accel compile`")
    parser.add_argument("-o", "--output", required=True, help="ONNX file to write (.onnx)")
    parser.add_argument("--requantization", choices=("qlinear", "integer"), default="qlinear",
                        help="qlinear: one QLinearConv per layer (the runtime rescales in float32; default); "
                             "integer: ConvInteger + the contract's Q31 requantization in int64 operators, "
                             "equal to the golden model on every output")
    parser.add_argument("--intermediate", action="store_true",
                        help="also output the quantized input, every layer's uint8 activation and the pooled vector")


def check_onnx_output(path, option: str = "-o", inputs=()) -> Path:
    """An output path for an ONNX file: writable (fsutil.check_output_file) and named .onnx."""
    p = check_output_file(path, option, inputs)
    if p.suffix.lower() != ".onnx":
        raise RepAccelError(f"{option} {p}: use a .onnx file name")
    return p


def run(args) -> int:
    from .. import onnx_export

    out = check_onnx_output(args.output, "-o", [Path(args.build) / images.MANIFEST])
    build = images.load_build(args.build)
    qnet = build.qnet
    model = onnx_export.integer_model(qnet, intermediate_outputs=args.intermediate,
                                      requantization=args.requantization)
    nbytes = onnx_export.save(model, out)
    ops = Counter(node.op_type for node in model.graph.node)
    c, h, w = qnet.input_size
    print(f"read      {args.build}: {len(qnet.layers)} layers, input {c}x{h}x{w}, "
          f"{qnet.head.fc_weight.shape[0]} classes")
    print(f"graph     opset {onnx_export.OPSET}, {len(model.graph.node)} nodes: "
          + ", ".join(f"{n} {op}" for op, n in ops.most_common()))
    print("checked   onnx.checker (full check with shape inference): passed")
    print(f"wrote     {out}: {nbytes:,} bytes; input 'input' float32 (batch, {c}, {h}, {w}); outputs "
          + ", ".join(f"'{o.name}'" for o in model.graph.output[:2])
          + (f" + {len(model.graph.output) - 2} intermediate" if args.intermediate else ""))
    return 0
