"""Post-training quantization: a fused float network + calibration data -> QuantizedNetwork.

Steps (docs/numerics.md, "Calibration and quantization"):

1. Calibration: the float fused network (`FusedNetwork.forward`) runs on the user's
   calibration inputs; an observer turns the values of every activation tensor (the
   network input, every layer's post-ReLU output, the pooled features) into a range.
2. Weights: symmetric int8 per output channel, s_w[c] = max|w_c| / 127.
3. Activations: s = range / 255 (uint8 after a ReLU), input s_in = range / 127 (int8).
4. Bias B_c = round_half_away(b_c / (s_x s_w[c])), checked against numerics.bias_limit.
5. Multipliers M_c = s_x s_w[c] / s_y kept in [M_MIN, M_MAX] inside (0, 1) (see
   `_quantize_layer`), then numerics.quantize_multiplier.
6. Head: pooled uint8 (1/(h*w) folded into one multiplier), per-tensor int8 FC weights,
   int32 logits at one scale.
7. Report: per layer the weight range, the scales and the SQNR of the integer layer
   output against the float one.

Shapes: inputs (N, C, H, W) float32.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from . import golden, numerics
from .errors import RepAccelError
from .layout import LayerShape
from .network import FusedNetwork
from .progress import progress
from .qnetwork import QuantizedHead, QuantizedLayer, QuantizedNetwork

#: Activation observers. See docs/numerics.md for what each does and why the default.
OBSERVERS = ("minmax", "percentile", "mse")
DEFAULT_OBSERVER = "mse"
#: Percentile of |values| (zeros included) the "percentile" observer keeps unclipped.
PERCENTILE = 99.99
#: Histogram bins per tensor for the "percentile" and "mse" observers, over [0, max|x|].
HIST_BINS = 4096
#: Largest multiplier allowed: below 1 - 2^-32 QuantizeMultiplier keeps shift <= 0 (n >= 31);
#: a margin of 2^-20 leaves room for the float rounding of s_x * s_w / s_y.
M_MAX = 1.0 - 2.0 ** -20
#: Smallest multiplier allowed: from 2^-32 down QuantizeMultiplier returns m0 = 0.
M_MIN = 2.0 ** -31
#: Multiplier given to an output channel whose weights are all zero (its output is the
#: constant relu(b_c); M = 1/2 keeps the bias within 2 * 255 accumulator units).
M_ZERO_CHANNEL = 0.5
#: Calibration inputs `rep-accel compile` uses by default (the first ones of the data).
DEFAULT_NUM_CALIB = 500
#: Calibration images per float forward pass.
BATCH_SIZE = 256
#: Calibration images the per-layer SQNR report is computed on (the first ones), at most...
REPORT_SAMPLES = 256
#: ...and fewer for big networks: about this many multiply-accumulates of the golden model
#: (float64 matmuls, some seconds), but never fewer than REPORT_MIN_SAMPLES images.
REPORT_MACS_BUDGET = 20e9
REPORT_MIN_SAMPLES = 8

UINT8_MAX = numerics.ACT_MAX
INT8_MAX = numerics.INPUT_MAX


# ----------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------

@dataclass
class LayerQuantReport:
    """One layer's quantization summary. Scales are real units per integer step."""

    name: str
    shape: tuple                 # (C_in, C_out, groups, stride, H, W)
    parameters: int              # float weights + biases
    weight_min: float
    weight_max: float
    s_w_min: float
    s_w_max: float
    s_x: float
    s_y: float
    act_max: float               # largest float activation seen in calibration
    act_range: float             # the range the observer chose (s_y * 255 before adjustments)
    m_min: float
    m_max: float
    sqnr_db: float               # integer output (dequantized) vs float output, end to end
    notes: list = field(default_factory=list)


@dataclass
class QuantReport:
    """Calibration and quantization summary of a whole network."""

    observer: str
    num_calib: int
    report_samples: int
    input_scale: float
    input_max: float
    layers: list
    pooled_scale: float
    logit_scale: float
    logits_sqnr_db: float
    top1_agreement: float        # fraction of report samples where int8 and float argmax agree
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        for layer in d["layers"]:
            layer["shape"] = list(layer["shape"])
        return d


# ----------------------------------------------------------------------------------
# Observers
# ----------------------------------------------------------------------------------

class _TensorStats:
    """Statistics of |values| of one activation tensor over the calibration set.

    Pass 1 records max|x|; pass 2 (histogram observers only) counts exact zeros apart
    (they quantize exactly, a post-ReLU tensor is mostly zeros) and histograms the
    nonzero |x| into HIST_BINS bins over (0, max].
    """

    def __init__(self):
        self.max = 0.0
        self.zeros = 0
        self.hist = np.zeros(HIST_BINS, dtype=np.int64)

    def update_max(self, t: np.ndarray) -> None:
        if t.size:
            self.max = max(self.max, float(np.abs(t).max()))

    def update_hist(self, t: np.ndarray) -> None:
        a = np.abs(t).ravel()
        nz = a[a > 0]
        self.zeros += a.size - nz.size
        if self.max > 0 and nz.size:
            idx = np.minimum((nz / self.max * HIST_BINS).astype(np.int64), HIST_BINS - 1)
            self.hist += np.bincount(idx, minlength=HIST_BINS)

    def range(self, observer: str, qmax: int) -> float:
        """The real value mapped to integer qmax (255 or 127) by this observer."""
        if self.max == 0.0 or observer == "minmax":
            return self.max
        width = self.max / HIST_BINS
        upper = width * np.arange(1, HIST_BINS + 1)  # candidate ranges: bin upper edges
        if observer == "percentile":
            total = self.zeros + int(self.hist.sum())
            target = PERCENTILE / 100.0 * total - self.zeros
            if target <= 0:
                return float(upper[0])
            k = int(np.searchsorted(np.cumsum(self.hist), target))
            return float(upper[min(k, HIST_BINS - 1)])
        if observer == "mse":
            # Expected squared error of quantizing every nonzero value with range T:
            # values <= T round (uniform error, step^2 / 12); values > T clip to T.
            centers = upper - width / 2
            n = self.hist.astype(np.float64)
            s0 = np.cumsum(n[::-1])[::-1]            # counts of bins >= i
            s1 = np.cumsum((n * centers)[::-1])[::-1]
            s2 = np.cumsum((n * centers ** 2)[::-1])[::-1]
            inside = np.cumsum(n)                     # counts of bins <= k
            above = np.zeros((3, HIST_BINS))
            above[:, :-1] = s0[1:], s1[1:], s2[1:]
            step = upper / qmax
            err = inside * step ** 2 / 12 + above[2] - 2 * upper * above[1] + upper ** 2 * above[0]
            return float(upper[int(np.argmin(err))])
        raise RepAccelError(f"unknown observer {observer!r}; choose one of {', '.join(OBSERVERS)}")


def _batches(n: int, batch_size: int):
    return [(i, min(n, i + batch_size)) for i in range(0, n, batch_size)]


def calibrate(fused: FusedNetwork, calib: np.ndarray, observer: str = DEFAULT_OBSERVER,
              batch_size: int = BATCH_SIZE, show_progress: bool = True) -> dict:
    """Run the float network on `calib` (N, C, H, W) and return every tensor's range.

    Returns {"input": range, "layers": [range per layer], "pooled": range, "max": {...}}:
    the real value the observer maps to the largest integer of each tensor, and the
    largest |value| seen (for the report).
    """
    if observer not in OBSERVERS:
        raise RepAccelError(f"unknown observer {observer!r}; choose one of {', '.join(OBSERVERS)}")
    n_layers = len(fused.layers)
    stats = [_TensorStats() for _ in range(n_layers + 2)]  # input, layers..., pooled
    spans = _batches(len(calib), batch_size)
    passes = ["max"] if observer == "minmax" else ["max", "hist"]
    bar = progress(total=len(spans) * len(passes), desc=f"calibrating ({observer})", unit="batch",
                   leave=False) if show_progress else None
    for which in passes:
        for a, b in spans:
            x = calib[a:b]
            _, acts = fused.forward(x, return_activations=True)
            pooled = acts[-1].mean(axis=(2, 3)) if acts else x.mean(axis=(2, 3))
            for s, t in zip(stats, [x, *acts, pooled]):
                s.update_max(t) if which == "max" else s.update_hist(t)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return {
        "input": stats[0].range(observer, INT8_MAX),
        "layers": [s.range(observer, UINT8_MAX) for s in stats[1:-1]],
        "pooled": stats[-1].range(observer, UINT8_MAX),
        "max": {"input": stats[0].max, "layers": [s.max for s in stats[1:-1]], "pooled": stats[-1].max},
    }


# ----------------------------------------------------------------------------------
# Checks of user data
# ----------------------------------------------------------------------------------

def check_fused(fused: FusedNetwork) -> None:
    """RepAccelError naming the tensor if a weight or bias is NaN/inf or a shape is wrong."""
    if not fused.layers:
        raise RepAccelError("the model has no conv layers")
    cin = fused.in_channels
    for layer in fused.layers:
        for what, arr in (("weight", layer.weight), ("bias", layer.bias)):
            if not np.all(np.isfinite(arr)):
                bad = np.argwhere(~np.isfinite(arr))[0].tolist()
                raise RepAccelError(f"layer {layer.name}: {what} has NaN/inf (first at index {bad}); "
                                    f"the checkpoint is damaged or diverged")
        if layer.weight.ndim != 4 or layer.weight.shape[2:] != (3, 3):
            raise RepAccelError(f"layer {layer.name}: weight shape {layer.weight.shape} is not (C_out, C_in/groups, 3, 3)")
        if layer.stride not in (1, 2):
            raise RepAccelError(f"layer {layer.name}: stride {layer.stride} is not supported (1 or 2)")
        if layer.cin != cin:
            raise RepAccelError(f"layer {layer.name}: takes {layer.cin} channels, the previous layer gives {cin}")
        if layer.bias.shape != (layer.cout,):
            raise RepAccelError(f"layer {layer.name}: bias shape {layer.bias.shape} is not ({layer.cout},)")
        cin = layer.cout
    for what, arr in (("fc weight", fused.fc_weight), ("fc bias", fused.fc_bias)):
        if not np.all(np.isfinite(arr)):
            raise RepAccelError(f"head: {what} has NaN/inf; the checkpoint is damaged or diverged")
    if fused.fc_weight.ndim != 2 or fused.fc_weight.shape[1] != cin:
        raise RepAccelError(f"head: fc weight shape {fused.fc_weight.shape} does not take the last layer's {cin} channels")


#: Largest |x| of a calibration input. Inputs are normalized (a few units); far larger
#: values are a mistake, and near float32's limit they overflow the observers' sums.
MAX_CALIBRATION_ABS = 1e6


def check_calibration(calib, in_channels: int, input_size=None) -> np.ndarray:
    """Validate calibration inputs and return them as float32 (N, C, H, W)."""
    calib = np.asarray(calib)
    if calib.ndim != 4:
        raise RepAccelError(f"calibration data has shape {calib.shape}; it must be N x C x H x W "
                            f"(C = {in_channels}), normalized as the network takes it")
    if calib.shape[0] == 0:
        raise RepAccelError("calibration data is empty (N = 0); give at least one input")
    if not np.issubdtype(calib.dtype, np.floating):
        raise RepAccelError(f"calibration data is {calib.dtype}; it must be float (normalized inputs), "
                            f"or a folder of images with --mean/--std")
    if calib.shape[1] != in_channels:
        raise RepAccelError(f"calibration data has {calib.shape[1]} channels, the model takes {in_channels}")
    if input_size is not None and tuple(calib.shape[1:]) != tuple(input_size):
        raise RepAccelError(f"calibration data is {tuple(calib.shape[1:])} per input, the compiled input size "
                            f"is {tuple(input_size)}")
    if min(calib.shape[2:]) < 1:
        raise RepAccelError(f"calibration inputs of {calib.shape[2]}x{calib.shape[3]} pixels are empty")
    finite = np.isfinite(calib).reshape(len(calib), -1).all(axis=1)
    if not finite.all():
        raise RepAccelError(f"calibration data has NaN/inf in {int((~finite).sum())} inputs "
                            f"(first: input {int(np.argmin(finite))})")
    peak = float(np.abs(calib).max())
    if peak > MAX_CALIBRATION_ABS:
        raise RepAccelError(f"calibration data reaches |x| = {peak:.3g}, beyond the {MAX_CALIBRATION_ABS:g} a "
                            f"normalized input can have; normalize it as the network takes it")
    return calib.astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------
# Quantization
# ----------------------------------------------------------------------------------

def weight_scales(weight: np.ndarray) -> np.ndarray:
    """Symmetric per-output-channel int8 weight scales: float64 (C_out,), s_w[c] = max|w_c| / 127.

    An all-zero channel gets s_w = 0 (the caller picks its scale).
    """
    w = np.asarray(weight, dtype=np.float64)
    s_w = np.abs(w).reshape(w.shape[0], -1).max(axis=1) / INT8_MAX
    return s_w


def _round_weights(weight: np.ndarray, s_w: np.ndarray) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    q = numerics.round_half_away(w / s_w.reshape((-1,) + (1,) * (w.ndim - 1)))
    return np.clip(q, -INT8_MAX, INT8_MAX).astype(np.int8)


def _quantize_layer(layer, shape: LayerShape, s_x: float, act_range: float, notes: list) -> QuantizedLayer:
    """One fused layer to integers. Appends what it had to adjust to `notes`.

    Multipliers must satisfy M_MIN <= M_c <= M_MAX:
    - an all-zero channel gets s_w so that M_c = M_ZERO_CHANNEL;
    - a channel with M_c < M_MIN (weights ~2^31 times smaller than s_y / s_x) gets its
      s_w raised to reach M_MIN (its weights then round to fewer levels; they are
      below one output step anyway);
    - if some M_c > M_MAX (an output range that is smaller than one input step times one
      weight step), s_y is raised to max_c(s_x s_w[c]) / M_MAX for the whole layer;
      this coarsens the layer's output and is reported.
    """
    s_w = weight_scales(layer.weight)
    zero = s_w == 0
    s_y = act_range / UINT8_MAX
    need = float((s_x * s_w).max()) / M_MAX
    if s_y < need:
        if act_range > 0:
            notes.append(f"output scale raised from {s_y:.6g} to {need:.6g} so every multiplier stays below 1 "
                         f"(max M was {float((s_x * s_w).max()) / s_y:.4g})")
        else:
            notes.append("output is all zero on the calibration data; output scale set from the weights")
        s_y = need
    if zero.any():
        notes.append(f"{int(zero.sum())} output channels have all-zero weights (constant output)")
        s_w = np.where(zero, M_ZERO_CHANNEL * s_y / s_x, s_w)
    small = s_x * s_w / s_y < M_MIN
    if small.any():
        notes.append(f"{int(small.sum())} channels have weights too small for a 31-bit multiplier; "
                     f"their weight scale was raised")
        s_w = np.where(small, M_MIN * s_y / s_x, s_w)
    w_q = _round_weights(layer.weight, s_w)
    b_real = np.asarray(layer.bias, dtype=np.float64) / (s_x * s_w)
    b_q = numerics.round_half_away(b_real)
    limit = numerics.bias_limit(shape.cin_per_group)
    over = np.abs(b_q) > limit
    if over.any():
        c = int(np.argmax(over))
        raise RepAccelError(
            f"layer {layer.name}, output channel {c}: bias {float(layer.bias[c]):.6g} is {abs(b_q[c]):.4g} "
            f"accumulator units (s_x * s_w = {s_x * s_w[c]:.4g}), more than the limit {limit} that keeps "
            f"acc + bias in 32 bits; the bias is too large for its weights (retrain, or calibrate so the "
            f"input scale is larger)")
    m = s_x * s_w / s_y
    m0, shift = numerics.quantize_multiplier(m)
    n = numerics.shift_to_n(shift)
    if np.any(m0 < 1 << 30) or np.any(n < numerics.N_MIN) or np.any(n > numerics.N_MAX):
        raise AssertionError(f"layer {layer.name}: multiplier out of range after adjustment")  # a bug, not user error
    return QuantizedLayer(name=layer.name, shape=shape, weight=w_q, bias=b_q.astype(np.int32),
                          m0=m0.astype(np.int64), n=n.astype(np.int64), s_x=float(s_x), s_y=float(s_y),
                          s_w=s_w.astype(np.float64))


def _quantize_head(fused: FusedNetwork, s_feat: float, pool_hw: int, pooled_range: float, notes: list) -> QuantizedHead:
    """Pooling multiplier + per-tensor int8 FC. Pooled sums have resolution s_feat / (h*w),
    so s_pool is never finer than that (which also keeps M_pool < 1)."""
    s_pool = max(pooled_range / UINT8_MAX, s_feat / (pool_hw * M_MAX))
    m_pool = s_feat / (pool_hw * s_pool)
    m0, shift = numerics.quantize_multiplier(np.array([m_pool]))
    pool_n = int(numerics.shift_to_n(shift)[0])
    if int(m0[0]) < 1 << 30 or not numerics.N_MIN <= pool_n <= numerics.N_MAX:
        raise AssertionError(f"pool multiplier {m_pool} out of range")
    w = np.asarray(fused.fc_weight, dtype=np.float64)
    wmax = float(np.abs(w).max())
    s_fc = wmax / INT8_MAX if wmax > 0 else 1.0
    if wmax == 0:
        notes.append("head: the FC weights are all zero")
    w_q = np.clip(numerics.round_half_away(w / s_fc), -INT8_MAX, INT8_MAX).astype(np.int8)
    logit_scale = s_pool * s_fc
    b_q = numerics.round_half_away(np.asarray(fused.fc_bias, dtype=np.float64) / logit_scale)
    limit = numerics.ACC_MAX - w.shape[1] * UINT8_MAX * numerics.ABS_W_BOUND
    over = np.abs(b_q) > limit
    if over.any():
        k = int(np.argmax(over))
        raise RepAccelError(f"head: FC bias of class {k} ({float(fused.fc_bias[k]):.6g}) is {abs(b_q[k]):.4g} logit "
                            f"units, more than {limit} that keeps the int32 logits from overflowing")
    return QuantizedHead(pool_m0=int(m0[0]), pool_n=pool_n, s_feat=float(s_feat), s_pool=float(s_pool),
                         fc_weight=w_q, fc_bias=b_q.astype(np.int32), s_fc=float(s_fc),
                         logit_scale=float(logit_scale))


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """10 log10(sum ref^2 / sum (ref - approx)^2) in dB; inf when equal, -inf for a zero reference."""
    ref = np.asarray(reference, dtype=np.float64)
    err = float(((ref - np.asarray(approx, dtype=np.float64)) ** 2).sum())
    sig = float((ref ** 2).sum())
    if err == 0:
        return float("inf")
    if sig == 0:
        return float("-inf")
    return float(10.0 * np.log10(sig / err))


def layer_shapes(fused: FusedNetwork, input_size) -> list[LayerShape]:
    """The runtime shape of every layer for an input of input_size = (C, H, W)."""
    c, h, w = (int(v) for v in input_size)
    if c != fused.in_channels:
        raise RepAccelError(f"input size {c}x{h}x{w} has {c} channels, the model takes {fused.in_channels}")
    sizes = fused.feature_sizes(h, w)
    return [LayerShape(cin=layer.cin, cout=layer.cout, groups=layer.groups, stride=layer.stride,
                       height=sizes[i][0], width=sizes[i][1], input_signed=(i == 0))
            for i, layer in enumerate(fused.layers)]


def quantize_network(fused: FusedNetwork, calib: np.ndarray, observer: str = DEFAULT_OBSERVER, *,
                     batch_size: int = BATCH_SIZE, report_samples: int | None = None,
                     show_progress: bool = True, return_report: bool = False):
    """Quantize `fused` to the integer contract, calibrating on `calib` (N, C, H, W) float32.

    The input size of the integer network is calib's (C, H, W). Returns the
    QuantizedNetwork, or (QuantizedNetwork, QuantReport) with return_report.
    Raises RepAccelError for NaN/inf, empty or mis-shaped data, a bias that would
    overflow, a layer geometry that does not fit the descriptor.
    """
    check_fused(fused)
    calib = check_calibration(calib, fused.in_channels)
    ranges = calibrate(fused, calib, observer, batch_size, show_progress)
    c, h, w = (int(v) for v in calib.shape[1:])
    notes = []
    if ranges["input"] == 0:
        raise RepAccelError("calibration inputs are all zero; give representative inputs")
    s_in = ranges["input"] / INT8_MAX
    sizes = fused.feature_sizes(h, w)
    layers, layer_notes = [], []
    s_x = s_in
    for i, (layer, shape) in enumerate(zip(fused.layers, layer_shapes(fused, (c, h, w)))):
        ln = []
        q = _quantize_layer(layer, shape, s_x, ranges["layers"][i], ln)
        layers.append(q)
        layer_notes.append(ln)
        s_x = q.s_y
    hf, wf = sizes[-1]
    head_notes = []
    head = _quantize_head(fused, s_x, hf * wf, ranges["pooled"], head_notes)
    qnet = QuantizedNetwork(input_size=(c, h, w), input_scale=float(s_in), layers=layers, head=head,
                            meta={"observer": observer, "num_calib": int(len(calib))})
    if not return_report:
        return qnet
    if report_samples is None:
        macs = sum(layer.shape.macs for layer in layers)
        report_samples = int(min(REPORT_SAMPLES, max(REPORT_MIN_SAMPLES, REPORT_MACS_BUDGET // max(macs, 1))))
    report = _report(fused, qnet, calib[:max(1, report_samples)], ranges, layer_notes, head_notes + notes)
    return qnet, report


def _report(fused, qnet, x, ranges, layer_notes, notes) -> QuantReport:
    """Per-layer SQNR of the integer network's outputs (dequantized) against the float ones."""
    f_logits, f_acts = fused.forward(x, return_activations=True)
    q_logits, q_acts = golden.run_network(qnet, golden.quantize_input(x, qnet), return_activations=True)
    layers = []
    for i, (layer, q, fa, qa) in enumerate(zip(fused.layers, qnet.layers, f_acts, q_acts)):
        m = q.s_x * q.s_w / q.s_y
        s = q.shape
        layers.append(LayerQuantReport(
            name=q.name, shape=(s.cin, s.cout, s.groups, s.stride, s.height, s.width),
            parameters=int(layer.weight.size + layer.bias.size),
            weight_min=float(layer.weight.min()), weight_max=float(layer.weight.max()),
            s_w_min=float(q.s_w.min()), s_w_max=float(q.s_w.max()), s_x=q.s_x, s_y=q.s_y,
            act_max=float(ranges["max"]["layers"][i]), act_range=float(ranges["layers"][i]),
            m_min=float(m.min()), m_max=float(m.max()),
            sqnr_db=sqnr_db(fa, qa.astype(np.float64) * q.s_y), notes=list(layer_notes[i])))
    agree = float(np.mean(f_logits.argmax(axis=1) == q_logits.argmax(axis=1)))
    return QuantReport(
        observer=qnet.meta["observer"], num_calib=qnet.meta["num_calib"], report_samples=int(len(x)),
        input_scale=qnet.input_scale, input_max=float(ranges["max"]["input"]), layers=layers,
        pooled_scale=qnet.head.s_pool, logit_scale=qnet.head.logit_scale,
        logits_sqnr_db=sqnr_db(f_logits, q_logits.astype(np.float64) * qnet.head.logit_scale),
        top1_agreement=agree, notes=list(notes))
