"""`rep-accel export` (the integer network as standard ONNX) and `rep-accel fuse --onnx`
(the float deploy network): onnx.checker, the graph's operators and tensors, and
onnxruntime against the golden model on the bundled model's 1000 held-out digits.

onnxruntime rescales QLinearConv in float32 and rounds half to even; the contract uses
a Q31 multiplier and rounds half up. Each stage of the graph is run on the golden
model's own input to that stage, so every difference is counted where it arises: each
must be one LSB, where the contract's exact value and onnxruntime's float32 value lie
on the two sides of (or at) the same half-integer, no farther apart than float32's
rounding error; and onnxruntime must equal a float32 model of that arithmetic on every
output. The counts go in docs/numerics.md ("ONNX export").
"""

from fractions import Fraction

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402
from onnx.utils import Extractor  # noqa: E402

from rep_accel import golden, images, numerics, onnx_export  # noqa: E402
from rep_accel.checkpoints import load_checkpoint, load_fused  # noqa: E402
from rep_accel.cli import main  # noqa: E402
from rep_accel.datasets import default_model_path, mnist_split  # noqa: E402


def cli(capsys, *argv):
    rc = main([*map(str, argv)])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The bundled model compiled (default calibration) and exported, with and without
    intermediate outputs, and the held-out digits."""
    root = tmp_path_factory.mktemp("onnx")
    assert main(["compile", "-o", str(root / "build")]) == 0
    assert main(["export", str(root / "build"), "-o", str(root / "model.onnx")]) == 0
    assert main(["export", str(root / "build"), "-o", str(root / "debug.onnx"), "--intermediate"]) == 0
    _, _, x_test, y_test = mnist_split()
    return root, images.load_build(root / "build").qnet, x_test, y_test


def session(model):
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _onnxruntime_conv_saturates() -> bool:
    """Whether this onnxruntime's QLinearConv saturates its uint8 x int8 products in pairs at
    int16 (x86 without VNNI, where MLAS uses vpmaddubsw): one 1x1 conv of two channels, both
    255 x 127 = 32,385, sums to 64,770 exactly, 32,767 saturated."""
    from onnx import TensorProto, helper
    inits = [numpy_helper.from_array(np.array(1.0, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "zx"),
             numpy_helper.from_array(np.full((1, 2, 1, 1), 127, np.int8), "w"),
             numpy_helper.from_array(np.array(0, np.int8), "zw"), numpy_helper.from_array(np.array(512.0, np.float32), "sy"),
             numpy_helper.from_array(np.array(0, np.uint8), "zy")]
    node = helper.make_node("QLinearConv", ["x", "s", "zx", "w", "s", "zw", "sy", "zy"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 2, 1, 1])],
                              [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)])
    y = session(model).run(None, {"x": np.full((1, 2, 1, 1), 255, np.uint8)})[0]
    return int(y.flat[0]) != round(64770 / 512)


def _onnxruntime_matmul_integer_saturates() -> bool:
    """The same question for MatMulInteger (the exact export's FC head, int32 out): a uint8
    row of two 255 times an int8 column of two 127 is 64,770 exactly."""
    from onnx import TensorProto, helper
    inits = [numpy_helper.from_array(np.array(0, np.uint8), "za"), numpy_helper.from_array(np.array(0, np.int8), "zb"),
             numpy_helper.from_array(np.full((2, 1), 127, np.int8), "b")]
    node = helper.make_node("MatMulInteger", ["a", "b", "za", "zb"], ["y"])
    graph = helper.make_graph([node], "probe", [helper.make_tensor_value_info("a", TensorProto.UINT8, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.INT32, [1, 1])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", onnx_export.OPSET)])
    y = session(model).run(None, {"a": np.full((1, 2), 255, np.uint8)})[0]
    return int(y.flat[0]) != 64770


def test_graph_passes_the_checker_and_holds_the_integer_network(exported, capsys):
    root, qnet, _, _ = exported
    onnx.checker.check_model(str(root / "model.onnx"), full_check=True)
    model = onnx.load(str(root / "model.onnx"))
    assert [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] == [onnx_export.OPSET]
    assert all(node.domain == "" for node in model.graph.node)  # standard operators only
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = list(model.graph.node)
    assert nodes[0].op_type == "QuantizeLinear"
    assert init[nodes[0].input[1]] == np.float32(qnet.input_scale)
    assert init[nodes[0].input[2]].dtype == np.uint8 and init[nodes[0].input[2]] == onnx_export.INPUT_ZERO_POINT
    convs = [n for n in nodes if n.op_type == "QLinearConv"]
    assert [n.name for n in convs] == [layer.name for layer in qnet.layers]
    for node, layer in zip(convs, qnet.layers):
        x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp, bias = node.input
        assert init[w].dtype == np.int8 and np.array_equal(init[w], layer.weight)
        assert init[w_scale].dtype == np.float32 and init[w_scale].shape == (layer.shape.cout,)
        # Within a few float32 ulps of s_w (nudged so onnxruntime's multiplier is fl32(M0 2^-n)).
        assert np.allclose(init[w_scale], layer.s_w, rtol=1e-6, atol=0)
        assert init[w_zp].dtype == np.int8 and not init[w_zp].any()
        assert init[y_zp].dtype == np.uint8 and init[y_zp] == 0 and init[y_scale] == np.float32(layer.s_y)
        assert init[bias].dtype == np.int32 and np.array_equal(init[bias], layer.bias)
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        assert attrs["strides"] == [layer.shape.stride] * 2 and attrs["group"] == layer.shape.groups
        assert attrs["kernel_shape"] == [3, 3] and attrs["pads"] == [1, 1, 1, 1]
    head_ops = {n.op_type for n in nodes[1 + len(convs):]}
    assert head_ops == {"Cast", "ReduceSum", "Mul", "Add", "Div", "Max", "Min", "MatMulInteger", "DequantizeLinear"}
    assert [o.name for o in model.graph.output] == ["logits", "logits_real"]
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.INT32


def _float32_multipliers(layer):
    """onnxruntime's per-channel multiplier of a QLinearConv: fl32(fl32(x_scale * w_scale) / y_scale)."""
    w_scale = onnx_export.float32_weight_scales(layer.s_x, layer.s_y, layer.m0, layer.n, layer.s_w)
    return (np.float32(layer.s_x) * w_scale).astype(np.float32) / np.float32(layer.s_y)


def check_conv_differences(layer, v, ours, theirs):
    """Every output where onnxruntime (`theirs`) differs from the golden model (`ours`) is
    one LSB at a rounding boundary split by float32. v: int64 acc + bias (N, C, H, W).
    Returns (differences, exact float32 ties among them)."""
    scale = _float32_multipliers(layer).astype(np.float32)
    product = (v.astype(np.float32) * scale[None, :, None, None]).astype(np.float32)
    # onnxruntime is exactly this float32 arithmetic with round-half-even and saturation.
    assert np.array_equal(np.clip(np.rint(product), 0, 255).astype(np.int64), theirs)
    ties = 0
    where = np.argwhere(ours != theirs)
    for b, c, y, x in where:
        o, t = int(ours[b, c, y, x]), int(theirs[b, c, y, x])
        assert abs(o - t) == 1, (layer.name, o, t)
        half = Fraction(2 * min(o, t) + 1, 2)
        vv = int(v[b, c, y, x])
        exact = Fraction(vv * int(layer.m0[c]), 1 << int(layer.n[c]))
        f = Fraction(float(product[b, c, y, x]))
        # The two values straddle the half-integer (or one sits on it) ...
        assert (exact - half) * (f - half) <= 0, (layer.name, float(exact), float(f))
        # ... and differ by no more than float32's error: the multiplier's rounding
        # (times |v|) plus half an ulp of the product (v itself is exact below 2^24).
        assert abs(vv) < 1 << 24
        m_err = abs(Fraction(float(scale[c])) - Fraction(int(layer.m0[c]), 1 << int(layer.n[c])))
        ulp = Fraction(float(np.spacing(product[b, c, y, x])))
        assert abs(exact - f) <= abs(vv) * m_err + ulp / 2
        ties += f == half
    return len(where), ties


def test_onnxruntime_matches_the_golden_model_on_held_out_digits(exported):
    if _onnxruntime_conv_saturates():
        pytest.skip("this CPU's onnxruntime QLinearConv saturates uint8 x int8 product pairs at int16 "
                    "(x86 without VNNI): it is not the exact integer conv this test compares against")
    root, qnet, x_test, y_test = exported
    model = onnx.load(str(root / "debug.onnx"))
    x_q = golden.quantize_input(x_test, qnet)
    logits, acts = golden.run_network(qnet, x_q, return_activations=True)

    # The whole graph: the golden model's predictions.
    ort_logits, ort_real = session(onnx.load(str(root / "model.onnx"))).run(None, {"input": x_test})
    assert ort_logits.dtype == np.int32 and ort_logits.shape == logits.shape
    assert np.array_equal(ort_logits.argmax(axis=1), logits.argmax(axis=1))
    assert np.array_equal(ort_real, (ort_logits * np.float32(qnet.head.logit_scale)).astype(np.float32))
    images_differing = int((ort_logits != logits).any(axis=1).sum())

    # Each stage on the golden model's own input to it.
    extractor = Extractor(model)
    stage_in = extractor.extract_model(["input"], ["input_q"])
    input_q = session(stage_in).run(None, {"input": x_test})[0]
    # The input: 0 differences, or each a tie of x / s_in (half-even against half-away).
    input_diffs = np.argwhere(input_q.astype(np.int16) - 128 != x_q)
    for idx in input_diffs:
        ratio = np.float32(x_test[tuple(idx)]) / np.float32(qnet.input_scale)
        assert abs(abs(float(ratio)) % 1 - 0.5) <= 2 * float(np.spacing(ratio)), ratio

    counts, outputs, ties = [], 0, 0
    inputs = [(x_q.astype(np.int16) + 128).astype(np.uint8)] + acts[:-1]
    names = ["input_q"] + [f"{layer.name}_out" for layer in qnet.layers[:-1]]
    for layer, name, x_in, ours in zip(qnet.layers, names, inputs, acts):
        sub = extractor.extract_model([name], [f"{layer.name}_out"])
        theirs = session(sub).run(None, {name: x_in})[0].astype(np.int64)
        signed_in = x_in.astype(np.int16) - 128 if name == "input_q" else x_in
        acc = golden.conv_accumulate(signed_in.astype(np.int8 if name == "input_q" else np.uint8), layer.weight,
                                     layer.shape.stride, layer.shape.groups)
        v = acc + layer.bias.astype(np.int64)[None, :, None, None]
        assert np.array_equal(numerics.requantize_nchw(v, np.zeros(layer.shape.cout, np.int64), layer.m0, layer.n),
                              ours)
        n_diff, n_ties = check_conv_differences(layer, v, ours.astype(np.int64), theirs)
        counts.append(n_diff)
        ties += n_ties
        outputs += ours.size

    # The head in integers is exact.
    head = extractor.extract_model([f"{qnet.layers[-1].name}_out"], ["logits"])
    head_logits = session(head).run(None, {f"{qnet.layers[-1].name}_out": acts[-1]})[0]
    assert np.array_equal(head_logits, golden.head(acts[-1], qnet.head))

    print(f"\nONNX export on {len(x_test)} held-out digits: input {len(input_diffs)} differences; conv outputs "
          f"{sum(counts)} of {outputs:,} differ by 1 LSB ({ties} at exact float32 ties), per layer {counts}; "
          f"logits differ on {images_differing} images; predictions equal; top-1 "
          f"{(ort_logits.argmax(1) == y_test).mean():.3f}")


def test_integer_requantization_equals_the_golden_model_everywhere(exported, capsys):
    root, qnet, x_test, _ = exported
    out = cli(capsys, "export", root / "build", "-o", root / "exact.onnx", "--requantization", "integer",
              "--intermediate")
    assert "ConvInteger" in out and "QLinearConv" not in out
    onnx.checker.check_model(str(root / "exact.onnx"), full_check=True)
    model = onnx.load(str(root / "exact.onnx"))
    assert all(node.domain == "" for node in model.graph.node)
    names = [o.name for o in model.graph.output]
    results = dict(zip(names, session(model).run(None, {"input": x_test})))
    logits, acts = golden.run_network(qnet, golden.quantize_input(x_test, qnet), return_activations=True)
    for layer, ours in zip(qnet.layers, acts):
        assert np.array_equal(results[f"{layer.name}_out"], ours), layer.name
    if _onnxruntime_matmul_integer_saturates():
        pytest.skip("every conv layer equal; the head not compared: this CPU's onnxruntime MatMulInteger "
                    "saturates uint8 x int8 product pairs at int16 (x86 without VNNI)")
    assert np.array_equal(results["logits"], logits)


def test_export_errors_are_one_line(exported, tmp_path, capsys):
    root = exported[0]
    assert main(["export", str(root / "build"), "-o", str(tmp_path / "model.txt")]) == 2
    assert ".onnx" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "nobuild"), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nobuild" in err
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.parametrize("source", ["bundled", "qarepvgg"])
def test_fuse_onnx_writes_the_float_deploy_network(tmp_path, capsys, source):
    if source == "bundled":
        path = default_model_path()
    else:
        from checkpoints_layouts import qarepvgg_from, trained_like
        path = tmp_path / "qa.pth"
        torch.save(qarepvgg_from(trained_like("tiny", seed=1, in_channels=3, num_classes=10), seed=2).state_dict(),
                   path)
    out = cli(capsys, "fuse", path, "-o", tmp_path / "deploy.pt", "--onnx", tmp_path / "deploy.onnx")
    assert "deploy.onnx" in out
    onnx.checker.check_model(str(tmp_path / "deploy.onnx"), full_check=True)
    model = onnx.load(str(tmp_path / "deploy.onnx"))
    net = load_checkpoint(path).network
    assert [n.op_type for n in model.graph.node] == ["Conv", "Relu"] * len(net.layers) + \
        ["GlobalAveragePool", "Flatten", "Gemm"]
    deployed = load_fused(tmp_path / "deploy.pt")
    for a, b in zip(deployed.layers, net.layers):
        assert np.array_equal(a.weight, b.weight)
    # Any input size: the spatial dimensions are symbolic.
    for side in (28, 40):
        x = np.random.default_rng(side).standard_normal((3, net.in_channels, side, side)).astype(np.float32)
        got = session(model).run(None, {"input": x})[0]
        ref = net.forward(x)
        assert np.abs(got - ref).max() <= 1e-5 * np.abs(ref).max()


def test_fuse_onnx_refuses_a_bad_name_before_writing(tmp_path, capsys):
    rc = main(["fuse", str(default_model_path()), "-o", str(tmp_path / "d.pt"), "--onnx", str(tmp_path / "d.pt")])
    assert rc == 2 and "also an input" in capsys.readouterr().err
    rc = main(["fuse", str(default_model_path()), "-o", str(tmp_path / "d.pt"), "--onnx", str(tmp_path / "d.bin")])
    assert rc == 2 and ".onnx" in capsys.readouterr().err
    assert not (tmp_path / "d.pt").exists()
