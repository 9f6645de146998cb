"""The golden conv layer against an implementation nobody here wrote: PyTorch's quantized
conv, `torch.ops.quantized.conv2d_relu` on the qnnpack engine, per-channel int8 weights.

How the integer layer is mapped onto qnnpack, exactly:

- Activations: quint8 with zero point 0 and scale s_x; the int8 network input becomes
  quint8 x + 128 with zero point 128 (qnnpack subtracts the zero point exactly).
- Weights: the layer's int8 weights as a per-channel qint8 tensor, zero points 0.
- Bias: qnnpack takes a float bias and quantizes it itself, at run time, as
  round(bias / (s_x * s_w[c])) into int32. We pass bias = B_c * s_x * s_w[c], computed in
  float64 and rounded to float32; with |B_c| < 2^22 the relative float32 error (2^-24)
  moves B_c by less than 1/2, so qnnpack recovers exactly the int32 bias B_c.
- Requantization: qnnpack's q8conv kernels compute y = rne(fl32(v) * fl32(M_c)) with
  M_c = s_x * s_w[c] / s_y in float32 (round to nearest even: _mm_cvtps_epi32 /
  vcvtnq), then clamp to [0, 255] for conv2d_relu. Ours is floor(v * M0 / 2^n + 1/2).
  To compare the arithmetic and not float32 rounding, the test uses multipliers exactly
  representable by both: M_c = m_c / 2^16 with m_c odd (the layer's real multiplier rounded
  to 16 fractional bits), s_x = 2^-7, s_y = 2^-4, s_w[c] = M_c * s_y / s_x (all exact in
  float32). Then QuantizeMultiplier(M_c) is exact (M0 / 2^n == M_c), and for |v| < 2^24
  and |v * M_c| < 256 the float32 product v * M_c is exact too (a multiple of 2^-16 below
  2^8 has at most 24 significant bits); above 255.5 or below -0.5 both clamp alike.

So the two must agree on every output except exact ties, v * m_c = 2^15 mod 2^16, where
round-half-up and round-half-even differ by exactly 1 when the lower neighbour k is even
(0 <= k <= 254). The test asserts exactly that characterization, and that the mismatches
are at most 0.001% of the outputs, on realistic data:
  (a) every layer of the default model with the activations of its held-out digits
      (about 5.6k outputs per image; 1000 images: about 5.6 million outputs), and
  (b) six random layers with realistic statistics (post-ReLU activations with half
      zeros, normal int8 weights, biases of a few hundred to thousands of accumulator
      steps, multipliers that put the outputs in [0, 255]): about 1.1 million outputs.
With more than a million outputs, 0.001% is about ten outputs or more, so the bound
is meaningful. Ties happen with probability about 2^-16 per unclamped output (m_c odd).
"""

import warnings

import numpy as np
import pytest
import torch

from rep_accel import golden, numerics, quantize
from rep_accel.layout import LayerShape
from rep_accel.qnetwork import QuantizedLayer

FRAC_BITS = 16
S_X, S_Y = 2.0 ** -7, 2.0 ** -4
MAX_MISMATCH_FRACTION = 1e-5  # 0.001%


def odd_numerators(m_real: np.ndarray) -> np.ndarray:
    """m_c: the odd integer nearest to M_c * 2^16, at least 1."""
    m = np.floor(np.asarray(m_real) * 2.0 ** FRAC_BITS / 2).astype(np.int64) * 2 + 1
    return np.clip(m, 1, (1 << FRAC_BITS) - 1)


def exact_layer(name, shape: LayerShape, weight, bias, m_num) -> QuantizedLayer:
    """A QuantizedLayer whose multipliers are exactly m_num / 2^16."""
    m_real = m_num.astype(np.float64) / 2.0 ** FRAC_BITS
    m0, shift = numerics.quantize_multiplier(m_real)
    n = numerics.shift_to_n(shift)
    assert np.array_equal(m0.astype(object) * 2 ** FRAC_BITS, m_num.astype(object) * (2 ** n).astype(object)), \
        "M0 / 2^n must equal m / 2^16 exactly"
    return QuantizedLayer(name, shape, weight.astype(np.int8), bias.astype(np.int32), m0, n,
                          S_X, S_Y, m_real * S_Y / S_X)


def torch_conv_relu(x: np.ndarray, layer: QuantizedLayer) -> np.ndarray:
    """The same layer through torch.ops.quantized.conv2d_relu on qnnpack: uint8 (N, C_out, H_out, W_out)."""
    s = layer.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # quantized-tensor constructors are marked deprecated in 2.x
        if s.input_signed:
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy((x.astype(np.int16) + 128).astype(np.uint8)),
                                                         S_X, 128)
        else:
            qx = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x), S_X, 0)
        qw = torch._make_per_channel_quantized_tensor(
            torch.from_numpy(layer.weight), torch.from_numpy(layer.s_w), torch.zeros(s.cout, dtype=torch.long), 0)
        bias = torch.from_numpy((layer.bias.astype(np.float64) * S_X * layer.s_w).astype(np.float32))
        packed = torch.ops.quantized.conv2d_prepack(qw, bias, [s.stride] * 2, [1, 1], [1, 1], s.groups)
        out = torch.ops.quantized.conv2d_relu(qx, packed, S_Y, 0)
    return out.int_repr().numpy()


def compare(x, layer, stats):
    """Assert torch and golden differ exactly at the even-neighbour ties; accumulate counts."""
    y_gold = golden.conv_layer(x, layer)
    y_torch = torch_conv_relu(x, layer)
    assert y_gold.shape == y_torch.shape
    s = layer.shape
    v = golden.conv_accumulate(x, layer.weight, s.stride, s.groups) + layer.bias.astype(np.int64)[None, :, None, None]
    # Preconditions of exactness of qnnpack's float32 arithmetic (see module doc).
    assert np.abs(v).max() < 1 << 24 and np.abs(layer.bias.astype(np.int64)).max() < 1 << 22
    m = (layer.s_w * S_X / S_Y * 2.0 ** FRAC_BITS).astype(np.int64)[None, :, None, None]
    prod = v * m
    tie = prod % (1 << FRAC_BITS) == 1 << (FRAC_BITS - 1)
    k = prod >> FRAC_BITS
    expected = (tie & (k % 2 == 0) & (k >= 0) & (k <= 254)).astype(np.int64)
    diff = y_gold.astype(np.int64) - y_torch.astype(np.int64)
    bad = diff != expected
    assert not bad.any(), (f"{layer.name}: {int(bad.sum())} outputs differ other than at ties, e.g. "
                           f"{np.argwhere(bad)[:3].tolist()}: golden {y_gold[bad][:3]}, torch {y_torch[bad][:3]}")
    stats["outputs"] += diff.size
    stats["mismatches"] += int((diff != 0).sum())
    stats["ties"] += int(tie.sum())
    stats["unclamped"] += int(((k >= 0) & (k <= 254)).sum())


def check_bound(stats, what):
    print(f"{what}: {stats['outputs']} outputs, {stats['unclamped']} in [0, 255), {stats['ties']} exact ties, "
          f"{stats['mismatches']} mismatches ({100 * stats['mismatches'] / stats['outputs']:.5f}%)")
    assert stats["outputs"] >= 1_000_000
    assert stats["mismatches"] <= MAX_MISMATCH_FRACTION * stats["outputs"]


@pytest.fixture(autouse=True)
def qnnpack_engine():
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = "qnnpack"
    yield
    torch.backends.quantized.engine = previous


def new_stats():
    return {"outputs": 0, "mismatches": 0, "ties": 0, "unclamped": 0}


def test_tie_semantics_on_a_constructed_tie():
    """A single output placed exactly on 2.5: golden rounds half up (3), qnnpack to even (2)."""
    shape = LayerShape(cin=1, cout=1, groups=1, stride=1, height=1, width=1)
    w = np.zeros((1, 1, 3, 3), np.int8)
    w[0, 0, 1, 1] = 1
    layer = exact_layer("tie", shape, w, np.array([0]), np.array([1]))  # M = 2^-16
    x = np.array([[[[5]]]], np.uint8)
    layer.bias[0] = 5 * (1 << 15) - 5  # v = 5 * 2^15 -> v * M = 2.5
    assert golden.conv_layer(x, layer)[0, 0, 0, 0] == 3
    assert torch_conv_relu(x, layer)[0, 0, 0, 0] == 2


def test_default_model_layers_with_real_activations():
    from rep_accel.checkpoints import load_fused
    from rep_accel.datasets import default_model_path, mnist_split
    fused = load_fused(default_model_path())
    x_train, _, x_test, _ = mnist_split()
    qnet = quantize.quantize_network(fused, x_train[:quantize.DEFAULT_NUM_CALIB], show_progress=False)
    x = golden.quantize_input(x_test, qnet)
    _, acts = golden.run_network(qnet, x, return_activations=True)
    stats = new_stats()
    for layer, layer_in in zip(qnet.layers, [x] + acts[:-1]):
        exact = exact_layer(layer.name, layer.shape, layer.weight, layer.bias,
                            odd_numerators(layer.s_x * layer.s_w / layer.s_y))
        compare(layer_in, exact, stats)
    check_bound(stats, "default model, held-out digits")


RANDOM_LAYERS = [  # (C_in, C_out, groups, stride, H, W, N, input_signed)
    (3, 32, 1, 2, 63, 65, 8, True),
    (32, 64, 1, 1, 24, 24, 6, False),
    (64, 64, 2, 2, 25, 23, 6, False),
    (64, 128, 4, 1, 12, 12, 8, False),
    (256, 64, 1, 1, 10, 9, 12, False),
    (16, 48, 1, 1, 30, 30, 8, False),
]


def test_random_layers_with_realistic_statistics():
    seed = 2024
    rng = np.random.default_rng(seed)
    print("seed", seed)
    stats = new_stats()
    for i, (cin, cout, g, stride, h, w, n, signed) in enumerate(RANDOM_LAYERS):
        shape = LayerShape(cin, cout, g, stride, h, w, signed)
        if signed:  # a normalized image: mostly background with a bright structure
            x = np.clip(np.round(rng.normal(-20, 40, (n, cin, h, w))), -128, 127).astype(np.int8)
        else:  # post-ReLU: about half zeros, a long tail, some saturation
            x = np.clip(np.round(np.maximum(rng.normal(0, 1, (n, cin, h, w)), 0) * 60), 0, 255).astype(np.uint8)
        wgt = np.clip(np.round(rng.normal(0, 40, (cout, cin // g, 3, 3))), -127, 127).astype(np.int8)
        acc = golden.conv_accumulate(x, wgt, stride, g)
        spread = acc.std(axis=(0, 2, 3))
        bias = np.round(rng.normal(0, 0.3, cout) * spread).astype(np.int64)
        m_real = 60.0 / np.maximum(spread, 1) * rng.uniform(0.5, 2.0, cout)  # outputs around 0..255
        layer = exact_layer(f"random{i}", shape, wgt, bias, odd_numerators(m_real))
        compare(x, layer, stats)
    check_bound(stats, "random layers")
