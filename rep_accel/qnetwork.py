"""The integer network: what `rep-accel compile` produces, the golden model and the
simulator run, and the weight images store (docs/numerics.md gives the arithmetic)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .layout import LayerShape


@dataclass
class QuantizedLayer:
    """One fused conv layer in integers.

    shape: the runtime shape (input H, W fixed by the compiled input size).
    weight: int8 (C_out, C_in / groups, 3, 3); bias: int32 (C_out,) in accumulator units;
    m0: int64 (C_out,) in [2^30, 2^31); n: int64 (C_out,) right shift, 31..62.
    s_x, s_y: input and output activation scales; s_w: float64 (C_out,) weight scales.
    """

    name: str
    shape: LayerShape
    weight: np.ndarray
    bias: np.ndarray
    m0: np.ndarray
    n: np.ndarray
    s_x: float
    s_y: float
    s_w: np.ndarray


@dataclass
class QuantizedHead:
    """Global average pooling + fully connected layer in integers (docs/numerics.md, "Head").

    pool_m0, pool_n: the requantization multiplier that folds 1 / (H * W) (and the
    scale change s_feat / s_pool) into the pooled channel sums; fc_weight: int8
    (classes, C); fc_bias: int32 (classes,); logit_scale: float, real logit = int32 * scale.
    """

    pool_m0: int
    pool_n: int
    s_feat: float
    s_pool: float
    fc_weight: np.ndarray
    fc_bias: np.ndarray
    s_fc: float
    logit_scale: float


@dataclass
class QuantizedNetwork:
    """The whole integer network for an input of `input_size` = (C, H, W)."""

    input_size: tuple[int, int, int]
    input_scale: float
    layers: list[QuantizedLayer]
    head: QuantizedHead
    meta: dict = field(default_factory=dict)
