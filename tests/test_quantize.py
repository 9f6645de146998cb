"""Calibration and quantization (rep_accel.quantize): the contract's types and ranges,
observers, adjustments (M >= 1, zero channels), user errors, and the accuracy of the
default model on its held-out digits."""

import numpy as np
import pytest

from rep_accel import golden, numerics, quantize
from rep_accel.errors import RepAccelError
from rep_accel.network import FusedLayer, FusedNetwork
from rep_accel.testing import assert_qnet_equal
from rep_accel.testing import random_fused_network as random_network


def one_layer_network(weight, bias, fc_classes=3) -> FusedNetwork:
    weight = np.asarray(weight, dtype=np.float32)
    cout, cin = weight.shape[:2]
    layer = FusedLayer("only", weight, np.asarray(bias, dtype=np.float32), 1, 1)
    return FusedNetwork(cin, [layer], np.ones((fc_classes, cout), np.float32), np.zeros(fc_classes, np.float32))


@pytest.mark.parametrize("observer", quantize.OBSERVERS)
def test_contract_types_and_ranges(observer):
    seed = 11
    print("seed", seed)
    net = random_network(seed)
    calib = np.random.default_rng(seed).normal(0, 1, (40, 2, 9, 11)).astype(np.float32)
    qnet = quantize.quantize_network(net, calib, observer, show_progress=False)
    assert qnet.input_size == (2, 9, 11)
    assert qnet.layers[0].s_x == qnet.input_scale and qnet.layers[0].shape.input_signed
    for i, (f, q) in enumerate(zip(net.layers, qnet.layers)):
        if i:
            assert q.s_x == qnet.layers[i - 1].s_y and not q.shape.input_signed
        assert q.weight.dtype == np.int8 and q.weight.min() >= -127 and q.weight.max() <= 127
        # Symmetric per channel: the largest |w| of every channel maps to 127, every weight to
        # the nearest step.
        assert np.array_equal(np.abs(q.weight).reshape(q.shape.cout, -1).max(axis=1), np.full(q.shape.cout, 127))
        step = q.s_w.reshape(-1, 1, 1, 1)
        assert np.all(np.abs(q.weight * step - f.weight) <= step / 2 * (1 + 1e-9))
        acc_step = q.s_x * q.s_w
        assert q.bias.dtype == np.int32
        assert np.all(np.abs(q.bias * acc_step - f.bias) <= acc_step / 2 * (1 + 1e-9))
        m = q.s_x * q.s_w / q.s_y
        assert np.all((m >= quantize.M_MIN) & (m <= quantize.M_MAX))
        assert np.all((q.m0 >= 1 << 30) & (q.m0 < 1 << 31))
        assert np.all((q.n >= numerics.N_MIN) & (q.n <= numerics.N_MAX))
        # M0 * 2^-n is M to 31 bits.
        assert np.all(np.abs(q.m0 * np.exp2(-q.n.astype(np.float64)) - m) <= m * 2.0 ** -30)
    h = qnet.head
    assert h.s_feat == qnet.layers[-1].s_y
    assert h.fc_weight.dtype == np.int8 and np.abs(h.fc_weight).max() == 127
    assert h.fc_bias.dtype == np.int32 and h.logit_scale == h.s_pool * h.s_fc
    pool_hw = qnet.layers[-1].shape.out_height * qnet.layers[-1].shape.out_width
    m_pool = h.s_feat / (pool_hw * h.s_pool)
    assert 0 < m_pool < 1 and abs(h.pool_m0 * 2.0 ** -h.pool_n - m_pool) <= m_pool * 2.0 ** -30
    # Deterministic.
    assert_qnet_equal(qnet, quantize.quantize_network(net, calib, observer, show_progress=False))


def test_report_sqnr_and_fields():
    seed = 5
    print("seed", seed)
    net = random_network(seed)
    calib = np.random.default_rng(seed).normal(0, 1, (64, 2, 9, 11)).astype(np.float32)
    qnet, rep = quantize.quantize_network(net, calib, return_report=True, show_progress=False, report_samples=32)
    assert rep.report_samples == 32 and rep.num_calib == 64 and rep.observer == quantize.DEFAULT_OBSERVER
    assert [lr.name for lr in rep.layers] == ["l0", "l1", "l2"]
    for f, q, lr in zip(net.layers, qnet.layers, rep.layers):
        assert lr.weight_min == float(f.weight.min()) and lr.weight_max == float(f.weight.max())
        assert lr.s_y == q.s_y and lr.parameters == f.weight.size + f.bias.size
        # 8-bit activations: well above 20 dB on a random network (about 6 dB per bit).
        assert lr.sqnr_db > 20, lr
    assert rep.logits_sqnr_db > 20
    d = rep.to_dict()
    assert d["layers"][0]["name"] == "l0"


def test_sqnr_db():
    assert quantize.sqnr_db([3.0, 4.0], [3.0, 4.5]) == pytest.approx(20.0)  # 25 / 0.25
    assert quantize.sqnr_db([1.0, 2.0], [1.0, 2.0]) == float("inf")


def test_observer_ranges_on_known_distributions():
    seed = 3
    rng = np.random.default_rng(seed)
    print("seed", seed)
    # Percentile: 10,000 values 1..10000 -> the 99.99th percentile is 9999 (within one bin).
    s = quantize._TensorStats()
    values = np.arange(1, 10001, dtype=np.float64)
    s.update_max(values)
    s.update_hist(values)
    assert s.range("minmax", 255) == 10000
    assert 9999 - 10000 / quantize.HIST_BINS <= s.range("percentile", 255) <= 10000
    # MSE: half-normal data with a few far outliers. The chosen range must beat, in the real
    # quantization error of the samples (computed here, not from the histogram), the full
    # range and ranges 30% smaller or larger.
    x = np.abs(rng.normal(0, 1, 200_000))
    x[:5] = 40.0
    s = quantize._TensorStats()
    s.update_max(x)
    s.update_hist(x)
    t = s.range("mse", 255)

    def real_mse(r):
        step = r / 255
        return float(np.mean((x - np.clip(np.round(x / step), 0, 255) * step) ** 2))

    assert t < 40.0
    for other in (40.0, 0.7 * t, 1.3 * t):
        assert real_mse(t) < real_mse(other), (t, other)


def test_output_scale_raised_when_multiplier_would_reach_one():
    # All-ones 3x3 kernel, constant input 1 and bias -8.995: the output is at most 0.005,
    # far less than one input step times one weight step (1/127^2 * 255), so M >= 1 at the
    # observed range; s_y must be raised and reported.
    net = one_layer_network(np.ones((1, 1, 3, 3)), [-8.995])
    calib = np.ones((4, 1, 5, 5), np.float32)
    qnet, rep = quantize.quantize_network(net, calib, "minmax", return_report=True, show_progress=False)
    q = qnet.layers[0]
    assert q.s_y == pytest.approx(q.s_x * q.s_w[0] / quantize.M_MAX)
    assert any("raised" in n for n in rep.layers[0].notes)
    assert q.s_x * q.s_w[0] / q.s_y < 1 and q.n[0] >= numerics.N_MIN


def test_all_zero_channel_gets_a_constant_output():
    w = np.zeros((2, 1, 3, 3), np.float32)
    w[0] = np.random.default_rng(0).normal(0, 1, (1, 3, 3))
    net = one_layer_network(w, [0.0, 0.3])
    calib = np.random.default_rng(1).normal(0, 1, (16, 1, 6, 6)).astype(np.float32)
    qnet, rep = quantize.quantize_network(net, calib, "minmax", return_report=True, show_progress=False)
    q = qnet.layers[0]
    assert q.s_x * q.s_w[1] / q.s_y == pytest.approx(quantize.M_ZERO_CHANNEL)
    assert np.all(q.weight[1] == 0)
    y = golden.conv_layer(golden.quantize_input(calib, qnet), q)
    assert np.unique(y[:, 1]).size == 1 and abs(int(y[0, 1, 0, 0]) - 0.3 / q.s_y) <= 1
    assert any("all-zero" in n for n in rep.layers[0].notes)


def test_bias_overflow_is_refused_naming_layer_and_channel():
    w = np.full((2, 1, 3, 3), 1e-6, np.float32)
    net = one_layer_network(w, [0.0, 1e3])
    calib = np.random.default_rng(0).normal(0, 1, (4, 1, 5, 5)).astype(np.float32)
    with pytest.raises(RepAccelError, match=r"layer only, output channel 1: bias"):
        quantize.quantize_network(net, calib, show_progress=False)


def test_head_bias_overflow_is_refused():
    net = random_network(0)
    net.fc_bias[2] = 1e9
    calib = np.random.default_rng(0).normal(0, 1, (8, 2, 9, 11)).astype(np.float32)
    with pytest.raises(RepAccelError, match="head: FC bias of class 2"):
        quantize.quantize_network(net, calib, show_progress=False)


def test_bad_weights_and_calibration_are_refused():
    calib = np.random.default_rng(0).normal(0, 1, (8, 2, 9, 11)).astype(np.float32)
    net = random_network(0)
    net.layers[1].weight[0, 0, 1, 1] = np.nan
    with pytest.raises(RepAccelError, match="layer l1: weight has NaN/inf"):
        quantize.quantize_network(net, calib, show_progress=False)
    net = random_network(0)
    net.fc_weight[0, 0] = np.inf
    with pytest.raises(RepAccelError, match="head: fc weight has NaN/inf"):
        quantize.quantize_network(net, calib, show_progress=False)
    net = random_network(0)
    bad = calib.copy()
    bad[3, 0, 0, 0] = np.inf
    with pytest.raises(RepAccelError, match="NaN/inf in 1 inputs .first: input 3"):
        quantize.quantize_network(net, bad, show_progress=False)
    with pytest.raises(RepAccelError, match="empty"):
        quantize.quantize_network(net, calib[:0], show_progress=False)
    with pytest.raises(RepAccelError, match="3 channels, the model takes 2"):
        quantize.quantize_network(net, np.zeros((2, 3, 9, 11), np.float32), show_progress=False)
    with pytest.raises(RepAccelError, match="N x C x H x W"):
        quantize.quantize_network(net, calib[0], show_progress=False)
    with pytest.raises(RepAccelError, match="must be float"):
        quantize.quantize_network(net, calib.astype(np.int32), show_progress=False)
    with pytest.raises(RepAccelError, match="unknown observer"):
        quantize.quantize_network(net, calib, "kl", show_progress=False)
    with pytest.raises(RepAccelError, match="all zero"):
        quantize.quantize_network(net, np.zeros_like(calib), show_progress=False)


@pytest.fixture(scope="module")
def default_model():
    from rep_accel.checkpoints import load_fused
    from rep_accel.datasets import default_model_path, mnist_split
    fused = load_fused(default_model_path())
    x_train, _, x_test, y_test = mnist_split()
    return fused, x_train, x_test, y_test


@pytest.mark.parametrize("observer", quantize.OBSERVERS)
def test_default_model_int8_top1_within_half_a_point_of_float(default_model, observer):
    """The held-out 1000 digits of mnist_split: int8 (golden model) top-1 within 0.5 points of
    float, calibrated as `rep-accel compile` does by default (the first DEFAULT_NUM_CALIB
    training digits)."""
    fused, x_train, x_test, y_test = default_model
    qnet, rep = quantize.quantize_network(fused, x_train[:quantize.DEFAULT_NUM_CALIB], observer,
                                          return_report=True, show_progress=False)
    float_top1 = 100 * float((fused.forward(x_test).argmax(1) == y_test).mean())
    int8_top1 = 100 * float((golden.predict(qnet, x_test) == y_test).mean())
    print(f"{observer}: float {float_top1:.2f}%, int8 {int8_top1:.2f}%, SQNR per layer "
          f"{[round(lr.sqnr_db, 1) for lr in rep.layers]} dB, logits {rep.logits_sqnr_db:.1f} dB")
    assert float_top1 > 95
    assert abs(int8_top1 - float_top1) <= 0.5
    assert min(lr.sqnr_db for lr in rep.layers) > 25 and rep.logits_sqnr_db > 25
