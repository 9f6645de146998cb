"""Integer networks with random weights and realistic requantization, for tests and benchmarks.

`random_qnetwork` builds a `QuantizedNetwork` of any layer list (e.g. a zoo variant's
`RepVGGConfig.block_specs()`) without a checkpoint or calibration data: int8 weights
drawn per output channel with different spreads, and multipliers chosen from the
activations the network itself produces on a random input, so that every layer's
outputs spread over the uint8 range (neither all zero nor all 255) as in a calibrated
network. The multipliers go through `numerics.quantize_multiplier` like a real build.
"""

from __future__ import annotations

import numpy as np

from rep_accel.layout import LayerShape
from rep_accel.numerics import N_MAX, N_MIN, bias_limit, quantize_multiplier, shift_to_n
from rep_accel.qnetwork import QuantizedHead, QuantizedLayer, QuantizedNetwork

from . import fast

#: Output-activation scale of every synthetic layer and scale of the input (arbitrary units).
S_ACT, S_IN = 0.05, 0.02
#: Target standard deviation of a layer's output in uint8 steps (before the ReLU).
TARGET_STD = 48.0


def zoo_specs(name: str, in_channels: int = 3):
    """(names, [(C_in, C_out, stride, groups), ...]) of a zoo variant, from rep_accel.models."""
    from rep_accel.models import variant_config
    cfg = variant_config(name, in_channels=in_channels)
    return cfg.block_names(), cfg.block_specs()


def random_qnetwork(specs, input_size, seed: int = 0, num_classes: int = 10, names=None) -> QuantizedNetwork:
    """A QuantizedNetwork with random weights for layers `specs` [(C_in, C_out, stride, groups)]
    on inputs of `input_size` (C, H, W)."""
    rng = np.random.default_rng(seed)
    c, h, w = (int(v) for v in input_size)
    names = list(names) if names is not None else [f"layer{i}" for i in range(len(specs))]
    x = np.clip(np.round(rng.normal(0, 40, (1, c, h, w))), -128, 127).astype(np.int8)
    layers = []
    s_x = S_IN
    for i, (cin, cout, stride, groups) in enumerate(specs):
        shape = LayerShape(int(cin), int(cout), int(groups), int(stride), h, w, input_signed=(i == 0))
        cin_g = shape.cin_per_group
        spread = rng.uniform(15, 70, cout)
        w = rng.standard_normal((cout, cin_g * 9), dtype=np.float32)
        w *= spread[:, None].astype(np.float32)
        weight = np.clip(np.rint(w), -127, 127).astype(np.int8).reshape(cout, cin_g, 3, 3)
        rms_x = float(np.sqrt(np.mean(x.astype(np.float64) ** 2))) + 1.0
        acc_std = np.sqrt(np.einsum("ok,ok->o", w, w, dtype=np.float64)) * rms_x + 1.0
        m_real = TARGET_STD / acc_std * rng.uniform(0.5, 2.0, cout)
        m0, shift = quantize_multiplier(m_real)
        n = np.clip(shift_to_n(shift), N_MIN, N_MAX)
        limit = bias_limit(cin_g)
        bias = np.clip(np.round(rng.normal(0.3, 0.5, cout) * acc_std), -limit, limit).astype(np.int32)
        s_w = m_real * S_ACT / s_x
        layer = QuantizedLayer(names[i], shape, weight, bias, m0.astype(np.int64), n.astype(np.int64),
                               float(s_x), S_ACT, s_w.astype(np.float64))
        layers.append(layer)
        x = fast.conv_layer_q(x, layer)
        s_x = S_ACT
        h, w = shape.out_height, shape.out_width
    feat_c = layers[-1].shape.cout if layers else c
    # Just below 1 / (h * w): a multiplier of exactly 1 would need n = 30, outside the contract's range.
    pool_m0, pool_shift = quantize_multiplier(np.array([(1.0 - 2.0 ** -20) / (h * w)]))
    fc_weight = rng.integers(-127, 128, (num_classes, feat_c)).astype(np.int8)
    fc_bias = rng.integers(-5000, 5000, num_classes).astype(np.int32)
    s_fc = 0.01
    head = QuantizedHead(pool_m0=int(pool_m0[0]), pool_n=int(shift_to_n(pool_shift)[0]), s_feat=S_ACT, s_pool=S_ACT,
                         fc_weight=fc_weight, fc_bias=fc_bias, s_fc=s_fc, logit_scale=S_ACT * s_fc)
    return QuantizedNetwork((c, int(input_size[1]), int(input_size[2])), S_IN, layers, head,
                            meta={"synthetic": True, "seed": int(seed)})


def random_zoo_qnetwork(name: str, hw: int, seed: int = 0, in_channels: int = 3, num_classes: int = 10):
    """`random_qnetwork` with the layers of zoo variant `name` on (in_channels, hw, hw) inputs."""
    names, specs = zoo_specs(name, in_channels)
    return random_qnetwork(specs, (in_channels, hw, hw), seed, num_classes, names)


def random_input(qnet: QuantizedNetwork, n: int, seed: int = 0) -> np.ndarray:
    """Random int8 network inputs (n, C, H, W) for `qnet`."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.normal(0, 40, (n,) + tuple(qnet.input_size))), -128, 127).astype(np.int8)
