"""Runtime cases for the RTL testbench, and the job folder that carries them into the HDL simulator.

One RTL build (fixed generics) runs any layer that fits it: the shape, the parameters, the
input and the host's stall behaviour are all runtime values. A *job* is a folder

    job.json     kind ("layers" or "network"), the build's generics, per-case metadata
    arrays.npz   the arrays: per layer case x{i}, w{i}, b{i}, m0{i}, n{i};
                 for a network job x_q (N, C, H, W) int8 and optionally labels (N,)
    results.json written by the cocotb test (rep_accel.verification.cocotb_top)
    outputs.npz  written by it for layer jobs: the RTL output of case i as out{i}

that `runner.run_job` hands to the cocotb test through the environment variable JOB_ENV.

Layer cases are generated here from a seed (`random_layer`, `random_input`) so that a
failing case can be replayed: the seed is printed by the tests and accepted back through
the REP_ACCEL_SEED environment variable (see tests/test_cocotb_layers.py).
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import golden, numerics
from ..errors import RepAccelError
from ..fsutil import atomic_write_bytes
from ..generics import HardwareGenerics
from ..layout import LayerShape
from ..qnetwork import QuantizedLayer

#: Environment variable naming the job folder for the cocotb test module.
JOB_ENV = "REP_ACCEL_TB_JOB"
JOB_FORMAT = "rep-accel-verify-job"
JOB_VERSION = 1
JOB_FILE = "job.json"
ARRAYS_FILE = "arrays.npz"
RESULTS_FILE = "results.json"
OUTPUTS_FILE = "outputs.npz"


@dataclass(frozen=True)
class Stall:
    """Seeded host stalls: each cycle the host offers a params / act_in beat with probability
    p_params / p_act_in and takes an act_out beat with probability p_act_out (1.0 = never stalls).

    The patterns are `rep_accel.sim.cycle.Stimulus.random(seed, ...)`, indexed by the cycle
    counted from the descriptor transfer, so the simulator sees exactly the same host."""

    p_params: float = 1.0
    p_act_in: float = 1.0
    p_act_out: float = 1.0
    seed: int = 0
    #: An external-memory model (a `--memory` spec, rep_accel.memory) at `clock_mhz`, whose
    #: stall pattern combines with the seeded one; None: no memory model.
    memory: str | None = None
    clock_mhz: float = 150.0

    def stimulus(self):
        from ..sim.cycle import Stimulus
        return Stimulus.random(self.seed, self.p_params, self.p_act_in, self.p_act_out)

    def memory_model(self):
        from ..memory import parse
        return parse(self.memory, self.clock_mhz)

    def stimulus_for(self, x, shape, params, generics):
        """The host of one layer: the seeded patterns, and under a memory model the
        memory's stall pattern of this layer as patterns (`sim.cycle.memory_stimulus`)."""
        from ..sim.cycle import memory_stimulus
        model = self.memory_model()
        if model is None:
            return self.stimulus()
        return memory_stimulus(x, shape, params, generics, model, self.stimulus())

    @property
    def stalls(self) -> bool:
        return min(self.p_params, self.p_act_in, self.p_act_out) < 1.0 or self.memory is not None


@dataclass
class LayerCase:
    """One layer run on the RTL: a QuantizedLayer, its input x (C_in, H, W) (int8 if the layer
    takes the signed network input, else uint8), the host's stalls (None: never stalls),
    `reset_at`: assert reset in this cycle after the descriptor transfer, then run the
    layer again from the start without stalls (None: no reset), and whether to compare the
    port activity with the simulator's cycle-mode trace cycle by cycle."""

    name: str
    layer: QuantizedLayer
    x: np.ndarray
    stall: Stall | None = None
    reset_at: int | None = None
    trace: bool = True


@dataclass
class NetworkJob:
    """A compiled network run end to end: the build folder, the quantized inputs x_q int8
    (N, C, H, W), the layers to run on the RTL (None: all, then the head runs on the RTL's
    features), optional labels (N,) for reporting accuracy, and the host's stalls. Every
    layer of every image is checked like a layer case (trace included)."""

    build: str
    x_q: np.ndarray
    layers: list[int] | None = None
    labels: np.ndarray | None = None
    stall: Stall | None = None


@dataclass
class Job:
    """What one cocotb run executes on one build: layer cases or a network."""

    generics: HardwareGenerics
    cases: list[LayerCase] = field(default_factory=list)
    network: NetworkJob | None = None

    @property
    def kind(self) -> str:
        return "network" if self.network is not None else "layers"


# ----------------------------------------------------------------------------------
# Random layers and inputs
# ----------------------------------------------------------------------------------

PARAM_KINDS = ("typical", "extreme", "negative_bias", "mixed")
INPUT_KINDS = ("random", "zeros", "max", "min", "sparse")


def _clip_multiplier(m_real: np.ndarray) -> np.ndarray:
    """Real multipliers inside the range the contract takes for conv layers: n = 31 - shift in [31, 62]."""
    return np.clip(m_real, 2.0 ** -31, 1.0 - 2.0 ** -30)  # below 1 - 2^-31: no rounding up to M = 1 (n = 30)


def random_layer(rng: np.random.Generator, shape: LayerShape, name: str = "layer", kind: str = "typical",
                 x: np.ndarray | None = None) -> QuantizedLayer:
    """A QuantizedLayer with random int8 weights (|w| <= 127), biases within
    numerics.bias_limit and per-channel multipliers from numerics.quantize_multiplier.

    kind "typical": multipliers chosen from the accumulators of `x` (if given) so that the
      outputs spread over 0..255 with some zeros and some saturation;
    kind "negative_bias": typical, but every bias negative (down to -bias_limit);
    kind "extreme": channels cycle through the corner cases of the contract: the largest
      multiplier (m0 = 2^31 - 1, n = 31), the smallest (m0 = 2^30, n = 62), the largest
      positive and negative biases, all-(+127) and all-(-127) kernels;
    kind "mixed": typical, with about 10% of the channels each at the smallest multiplier
      (n = 62), the largest positive bias and the largest negative bias.
    """
    if kind not in PARAM_KINDS:
        raise RepAccelError(f"layer kind {kind!r}: choose one of {', '.join(PARAM_KINDS)}")
    cin_g = shape.cin_per_group
    limit = numerics.bias_limit(cin_g)
    w = rng.integers(-numerics.WEIGHT_MAX, numerics.WEIGHT_MAX + 1, size=(shape.cout, cin_g, 3, 3)).astype(np.int8)
    # A typical accumulator magnitude: ~ sqrt(9 * cin_g) * 127/sqrt(3) * E|x|.
    typical = max(1.0, np.sqrt(9 * cin_g) * 73.0 * 100.0)
    bias = rng.integers(-int(typical), int(typical) + 1, size=shape.cout).astype(np.int64)
    if kind == "negative_bias":
        bias = -np.abs(bias) - 1
        bias[0] = -limit  # the most negative bias the contract allows: this channel is all zero
    scale = np.full(shape.cout, typical)
    if x is not None:
        lay = QuantizedLayer(name, shape, w, np.zeros(shape.cout, np.int32), np.zeros(shape.cout, np.int64),
                             np.full(shape.cout, numerics.N_MIN, np.int64), 1.0, 1.0, np.ones(shape.cout))
        acc = golden.conv_accumulate(x[None], lay.weight, shape.stride, shape.groups)[0] + bias[:, None, None]
        scale = np.maximum(1.0, np.percentile(np.abs(acc).reshape(shape.cout, -1), 90, axis=1))
    m_real = _clip_multiplier(rng.uniform(0.4, 1.6, size=shape.cout) * 255.0 / scale)
    m0, shift = numerics.quantize_multiplier(m_real)
    n = numerics.shift_to_n(shift)
    if kind == "mixed":
        m0[rng.random(shape.cout) < 0.1] = 1 << 30
        n[m0 == 1 << 30] = numerics.N_MAX      # M = 2^-32: the largest shift the contract allows
        bias[rng.random(shape.cout) < 0.1] = limit
        bias[rng.random(shape.cout) < 0.1] = -limit
    if kind == "extreme":
        for c in range(shape.cout):
            corner = c % 6
            if corner == 0:      # largest multiplier: M just below 1
                m0[c], n[c] = (1 << 31) - 1, numerics.N_MIN
            elif corner == 1:    # smallest: M = 2^-32, every output rounds to 0 or 1 at most
                m0[c], n[c] = 1 << 30, numerics.N_MAX
            elif corner == 2:    # largest positive bias
                bias[c] = limit
            elif corner == 3:    # largest negative bias
                bias[c] = -limit
            elif corner == 4:    # all taps +127 with the largest multiplier: saturation
                w[c] = numerics.WEIGHT_MAX
                m0[c], n[c] = (1 << 31) - 1, numerics.N_MIN
            else:                # all taps -127, a shift in the middle of the range
                w[c] = -numerics.WEIGHT_MAX
                m0[c], n[c] = int(rng.integers(1 << 30, 1 << 31)), int(rng.integers(numerics.N_MIN, numerics.N_MAX + 1))
    return QuantizedLayer(name=name, shape=shape, weight=w, bias=bias.astype(np.int32), m0=m0.astype(np.int64),
                          n=n.astype(np.int64), s_x=1.0, s_y=1.0, s_w=np.ones(shape.cout))


def random_input(rng: np.random.Generator, shape: LayerShape, kind: str = "random") -> np.ndarray:
    """An input (C_in, H, W): int8 for the signed network input, else uint8.

    kind: random (uniform over the type), zeros, max (255 / 127), min (0 / -128),
    sparse (mostly zero, as after a ReLU)."""
    if kind not in INPUT_KINDS:
        raise RepAccelError(f"input kind {kind!r}: choose one of {', '.join(INPUT_KINDS)}")
    size = (shape.cin, shape.height, shape.width)
    lo, hi, dt = (numerics.INPUT_MIN, numerics.INPUT_MAX, np.int8) if shape.input_signed else \
        (numerics.ACT_MIN, numerics.ACT_MAX, np.uint8)
    if kind == "zeros":
        return np.zeros(size, dt)
    if kind == "max":
        return np.full(size, hi, dt)
    if kind == "min":
        return np.full(size, lo, dt)
    x = rng.integers(lo, hi + 1, size=size)
    if kind == "sparse":
        x = np.where(rng.random(size) < 0.6, 0, x)
    return x.astype(dt)


def layer_case(rng: np.random.Generator, name: str, shape: LayerShape, params: str = "typical",
               inputs: str = "random", **kwargs) -> LayerCase:
    """A random case of `shape`: input of kind `inputs`, parameters of kind `params` (fitted to the input)."""
    x = random_input(rng, shape, inputs)
    fit = x if inputs in ("random", "sparse") else random_input(rng, shape, "random")
    return LayerCase(name, random_layer(rng, shape, name, params, fit), x, **kwargs)


def random_shape(rng: np.random.Generator, generics: HardwareGenerics, max_channels: int = 12,
                 max_height: int = 6) -> LayerShape:
    """A random LayerShape that fits `generics` (stride 1/2, groups 1/2/4, any width up to W_MAX)."""
    from ..layout import check_fits
    for _ in range(1000):
        groups = int(rng.choice([1, 1, 2, 4]))
        cin = groups * int(rng.integers(1, max(2, max_channels // groups + 1)))
        cout = groups * int(rng.integers(1, max(2, max_channels // groups + 1)))
        shape = LayerShape(cin=cin, cout=cout, groups=groups, stride=int(rng.integers(1, 3)),
                           height=int(rng.integers(1, max_height + 1)),
                           width=int(rng.integers(1, generics.w_max + 1)),
                           input_signed=bool(rng.random() < 0.2))
        try:
            check_fits(shape, generics)
        except RepAccelError:
            continue
        return shape
    raise RepAccelError(f"no random shape fits {generics}")


# ----------------------------------------------------------------------------------
# The layer space: one set of case definitions for every backend (the simulator's fast
# and cycle modes, the RTL through cocotb; tests/test_layer_space.py runs it on each)
# ----------------------------------------------------------------------------------

def coverage_cases(g: HardwareGenerics, rng: np.random.Generator, widths: bool = True) -> list[LayerCase]:
    """The layer space on one configuration: stride 1 and 2 (odd and even sizes), groups 1/2/4
    with tiles spanning two groups, channel counts that are not multiples of PI or PO, every
    width 1..W_MAX, height 1, the signed network input, all-zero / all-max / all-min inputs,
    negative biases, extreme multipliers and shifts, cg = max_cg and W * cg = line_depth."""
    pi, po = g.pi, g.po
    odd_in, odd_out = pi + 1 if pi > 1 else 3, po + 2  # not multiples of PI / PO (PI = 1: anything)
    specs = [
        # name, shape, params kind, input kind
        ("s1", LayerShape(odd_in, odd_out, 1, 1, 4, 5), "typical", "random"),
        ("s2_odd_signed", LayerShape(odd_in, odd_out, 1, 2, 5, 7, True), "typical", "random"),
        ("s2_even", LayerShape(odd_in, odd_out, 1, 2, 4, 6), "typical", "sparse"),
        ("g2_span", LayerShape(6, 4, 2, 1, 3, 4), "typical", "random"),
        ("g4_s2", LayerShape(8, 8, 4, 2, 5, 5), "typical", "random"),
        ("g4_cin1", LayerShape(4, 12, 4, 1, 3, 3), "typical", "random"),
        ("h1_s1", LayerShape(odd_in, odd_out, 1, 1, 1, min(9, g.w_max)), "typical", "random"),
        ("h1_s2", LayerShape(odd_in, odd_out, 1, 2, 1, min(8, g.w_max)), "typical", "random"),
        ("h1_w1", LayerShape(odd_in, po, 1, 1, 1, 1), "typical", "random"),
        ("w1_s2", LayerShape(odd_in, po, 1, 2, 5, 1), "typical", "random"),
        ("zeros", LayerShape(odd_in, odd_out, 1, 1, 3, 4), "typical", "zeros"),
        ("all255", LayerShape(odd_in, odd_out, 1, 1, 3, 4), "typical", "max"),
        ("all255_extreme", LayerShape(odd_in, 6, 1, 2, 3, 5), "extreme", "max"),
        ("signed_min", LayerShape(odd_in, odd_out, 1, 1, 3, 4, True), "typical", "min"),
        ("signed_max_extreme", LayerShape(odd_in, 6, 1, 1, 3, 3, True), "extreme", "max"),
        ("negative_bias", LayerShape(odd_in, odd_out, 1, 1, 4, 4), "negative_bias", "random"),
        ("extreme", LayerShape(odd_in, 12, 1, 1, 4, 4), "extreme", "random"),
        ("extreme_g2_s2", LayerShape(4, 12, 2, 2, 5, 4), "extreme", "sparse"),
        # the buffers at their limits: cg = max_cg with W * cg = line_depth; W = W_MAX
        ("max_cg", LayerShape(pi * g.max_cg, po + 1, 1, 1, 2, max(1, min(g.w_max, g.line_depth // g.max_cg))),
         "typical", "random"),
        ("w_max", LayerShape(pi * max(1, min(g.max_cg, g.line_depth // g.w_max)), po, 1, 1, 2, g.w_max),
         "typical", "random"),
    ]
    out = [layer_case(rng, name, shape, params, inputs) for name, shape, params, inputs in specs]
    if widths:
        for w in range(1, g.w_max + 1):
            shape = LayerShape(cin=odd_in, cout=po + 1, groups=1, stride=1 + w % 2, height=1 + w % 3, width=w)
            out.append(layer_case(rng, f"width{w}", shape))
    from ..layout import check_fits
    for c in out:
        check_fits(c.layer.shape, g, c.name)
    return out


def random_cases(g: HardwareGenerics, rng: np.random.Generator, n: int, max_channels: int = 12) -> list[LayerCase]:
    """`n` random shapes (C.random_shape) with random parameter and input kinds."""
    out = []
    for k in range(n):
        shape = random_shape(rng, g, max_channels=max_channels)
        params = str(rng.choice(PARAM_KINDS, p=[0.5, 0.25, 0.15, 0.1]))
        inputs = str(rng.choice(INPUT_KINDS, p=[0.6, 0.1, 0.1, 0.05, 0.15]))
        out.append(layer_case(rng, f"random{k}", shape, params, inputs))
    return out


# ----------------------------------------------------------------------------------
# Job folders
# ----------------------------------------------------------------------------------

def _stall_dict(s: Stall | None):
    return None if s is None else dataclasses.asdict(s)


def _stall_from(d) -> Stall | None:
    return None if d is None else Stall(**d)


def write_job(folder: str | os.PathLike, job: Job) -> Path:
    """Write job.json and arrays.npz into `folder` (created); returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    meta: dict = {"format": JOB_FORMAT, "version": JOB_VERSION, "kind": job.kind,
                  "generics": job.generics.to_dict()}
    if job.network is None:
        cases = []
        for i, c in enumerate(job.cases):
            lay = c.layer
            want = np.int8 if lay.shape.input_signed else np.uint8
            x = np.asarray(c.x)
            if x.dtype != want or x.shape != (lay.shape.cin, lay.shape.height, lay.shape.width):
                raise RepAccelError(f"case {c.name}: input {x.dtype} {x.shape} does not match the layer "
                                    f"({np.dtype(want)} {lay.shape.cin}x{lay.shape.height}x{lay.shape.width})")
            arrays.update({f"x{i}": x, f"w{i}": np.asarray(lay.weight, np.int8), f"b{i}": np.asarray(lay.bias, np.int32),
                           f"m0{i}": np.asarray(lay.m0, np.int64), f"n{i}": np.asarray(lay.n, np.int64)})
            cases.append({"name": c.name, "shape": dataclasses.asdict(lay.shape), "stall": _stall_dict(c.stall),
                          "reset_at": c.reset_at, "trace": bool(c.trace)})
        meta["cases"] = cases
    else:
        n = job.network
        arrays["x_q"] = np.asarray(n.x_q, np.int8)
        if n.labels is not None:
            arrays["labels"] = np.asarray(n.labels, np.int64)
        meta["network"] = {"build": str(Path(n.build).resolve()), "layers": n.layers, "stall": _stall_dict(n.stall)}
    np.savez(folder / ARRAYS_FILE, **arrays)
    atomic_write_bytes(folder / JOB_FILE, (json.dumps(meta, indent=1) + "\n").encode())
    (folder / RESULTS_FILE).unlink(missing_ok=True)
    return folder


def read_job(folder: str | os.PathLike) -> Job:
    """Read a job folder written by `write_job`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / JOB_FILE).read_text())
    except (OSError, ValueError) as e:
        raise RepAccelError(f"job {folder}: cannot read {JOB_FILE} ({e})") from None
    if meta.get("format") != JOB_FORMAT or meta.get("version") != JOB_VERSION:
        raise RepAccelError(f"job {folder}: not a {JOB_FORMAT} version {JOB_VERSION} folder")
    z = np.load(folder / ARRAYS_FILE)
    generics = HardwareGenerics.from_dict(meta["generics"])
    if meta["kind"] == "network":
        n = meta["network"]
        return Job(generics, network=NetworkJob(n["build"], z["x_q"], n["layers"],
                                                z["labels"] if "labels" in z.files else None,
                                                _stall_from(n["stall"])))
    cases = []
    for i, c in enumerate(meta["cases"]):
        shape = LayerShape(**c["shape"])
        layer = QuantizedLayer(c["name"], shape, z[f"w{i}"], z[f"b{i}"], z[f"m0{i}"], z[f"n{i}"], 1.0, 1.0,
                               np.ones(shape.cout))
        cases.append(LayerCase(c["name"], layer, z[f"x{i}"], _stall_from(c["stall"]), c["reset_at"], c["trace"]))
    return Job(generics, cases=cases)


def read_outputs(folder: str | os.PathLike) -> dict[str, np.ndarray]:
    """The RTL outputs of a layer job ({"out<i>": uint8 (C, H, W)}; a case with a wrong beat count has none)."""
    path = Path(folder) / OUTPUTS_FILE
    if not path.is_file():
        return {}
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_results(folder: str | os.PathLike) -> dict:
    """The results.json the cocotb test wrote into a job folder."""
    path = Path(folder) / RESULTS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise RepAccelError(f"no readable results in {path} ({e}); the HDL simulation did not finish") from None
