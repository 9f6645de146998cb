"""Simulating a whole compiled network: every conv layer on the accelerator (fast or
cycle mode), then the head (global average pooling + FC) in the integer golden code.

    sim = NetworkSimulator(qnet, HardwareGenerics(pi=8, po=8), mode="fast")
    result = sim.run(x_q)            # x_q: int8 (N, C, H, W)
    result.logits                     # int32 (N, classes); real = logits * result.logit_scale
    print(format_table(result.report))

Every check (layers fit the generics, shapes chain, the accumulator is exact, the input
matches) runs in the constructor and `check_input`, before any simulation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rep_accel import golden
from rep_accel.errors import RepAccelError
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import ScheduledLayer, schedule_layer, size_generics
from rep_accel.memory import MemoryModel
from rep_accel.progress import progress
from rep_accel.qnetwork import QuantizedNetwork

from . import cycle, fast
from .report import NetworkReport, layer_report, network_report

MODES = ("fast", "cycle")
#: Clock used for frames/s when none is given (MHz).
DEFAULT_CLOCK_MHZ = 150.0


def check_network(qnet: QuantizedNetwork, generics: HardwareGenerics) -> list[ScheduledLayer]:
    """Raise RepAccelError naming the layer and the limit if the network cannot run as
    given; return every layer's ScheduledLayer (planned once, passed to every consumer)."""
    schedules = []
    c, h, w = (int(v) for v in qnet.input_size)
    for i, layer in enumerate(qnet.layers):
        s = layer.shape
        if (s.cin, s.height, s.width) != (c, h, w):
            raise RepAccelError(f"{layer.name}: takes {s.cin}x{s.height}x{s.width} but the previous layer gives "
                                f"{c}x{h}x{w}; the network is inconsistent (damaged build?)")
        if bool(s.input_signed) != (i == 0):
            raise RepAccelError(f"{layer.name}: input_signed={s.input_signed}, but only the first layer takes the signed "
                                f"network input")
        schedules.append(schedule_layer(s, generics, layer.name))
        fast.check_exact(s, layer.name)
        want = (s.cout, s.cin_per_group, 3, 3)
        if tuple(np.shape(layer.weight)) != want:
            raise RepAccelError(f"{layer.name}: weight shape {np.shape(layer.weight)} is not {want}")
        for k in ("bias", "m0", "n"):
            if np.shape(getattr(layer, k)) != (s.cout,):
                raise RepAccelError(f"{layer.name}: {k} has shape {np.shape(getattr(layer, k))}, not ({s.cout},)")
        c, h, w = s.cout, s.out_height, s.out_width
    fc = np.shape(qnet.head.fc_weight)
    if len(fc) != 2 or fc[1] != c:
        raise RepAccelError(f"head: FC weight {fc} does not take the last layer's {c} channels")
    return schedules


def generics_for(qnet: QuantizedNetwork, pi: int = 8, po: int = 8, base: HardwareGenerics | None = None) -> HardwareGenerics:
    """`base` (default HardwareGenerics()) with PI, PO set and W_MAX, max_cg and line_depth
    raised where needed so that every layer of `qnet` fits (layout.size_generics, policy
    "defaults")."""
    return size_generics([l.shape for l in qnet.layers], pi, po, "defaults", names=[l.name for l in qnet.layers],
                         base=base)


def schedule_report(layers, generics: HardwareGenerics, clock_mhz: float = DEFAULT_CLOCK_MHZ,
                    memory: MemoryModel | None = None) -> NetworkReport:
    """The fast mode's report without computing any output (cycles from `fast.cycles`:
    `layout.layer_cycles`, or the timing replay under `memory`), e.g. to compare array
    sizes or memories. layers: a QuantizedNetwork, a list of QuantizedLayers, or a list of
    (name, LayerShape). Each layer must fit `generics` (`layout.check_fits`)."""
    if isinstance(layers, QuantizedNetwork):
        layers = layers.layers
    named = [(l.name, l.shape) if hasattr(l, "shape") else (str(l[0]), l[1]) for l in layers]
    named = [(name, schedule_layer(shape, generics, name)) for name, shape in named]
    if memory is not None:
        memory.check_beats(generics)
    reports = [layer_report(name, shape, generics, fast.cycles(shape, generics, memory, name), memory)
               for name, shape in named]
    return network_report(reports, generics, clock_mhz, "schedule", memory)


def check_input(qnet: QuantizedNetwork, x_q: np.ndarray, name: str = "input") -> None:
    """The quantized network input must be int8 (N, C, H, W) of qnet.input_size."""
    want = tuple(int(v) for v in qnet.input_size)
    if x_q.ndim != 4 or tuple(x_q.shape[1:]) != want or x_q.shape[0] < 1:
        raise RepAccelError(f"{name}: shape {tuple(x_q.shape)} does not match the network input (N, {want[0]}, "
                            f"{want[1]}, {want[2]})")
    if x_q.dtype != np.int8:
        raise RepAccelError(f"{name}: quantized input must be int8, got {x_q.dtype}")


def check_params(qnet: QuantizedNetwork, generics: HardwareGenerics, params: list, schedules=None) -> None:
    """Per-layer parameter beats (e.g. from params.bin) must have the tile plan's beat counts
    (schedules: the layers' ScheduledLayers, planned here if not given)."""
    if len(params) != len(qnet.layers):
        raise RepAccelError(f"parameter image has {len(params)} layers, the network {len(qnet.layers)}")
    schedules = schedules or [schedule_layer(l.shape, generics, l.name) for l in qnet.layers]
    for layer, p, scheduled in zip(qnet.layers, params, schedules):
        want = (scheduled.param_beats, generics.param_beat_bytes)
        if tuple(np.shape(p)) != want:
            raise RepAccelError(f"{layer.name}: parameter image of shape {np.shape(p)}, expected {want} beats x bytes "
                                f"for PI={generics.pi}, PO={generics.po}")


@dataclass
class SimulationResult:
    """Outputs of `NetworkSimulator.run`.

    logits: int32 (N, classes); cycles: int64 (N, layers), each layer's cycle count per
    picture; report: the figures of picture 0; activations: with `return_activations`,
    every layer's uint8 output (N, C, H, W); trace: with `trace`, picture 0's port
    trace (cycle.TRACE_DTYPE plus a leading `layer` field), cycle mode only.
    """

    logits: np.ndarray
    logit_scale: float
    cycles: np.ndarray
    report: NetworkReport
    activations: list | None = field(default=None, repr=False)
    trace: np.ndarray | None = field(default=None, repr=False)

    @property
    def logits_float(self) -> np.ndarray:
        """Dequantized logits, float32 (N, classes)."""
        return (self.logits.astype(np.float64) * self.logit_scale).astype(np.float32)


class NetworkSimulator:
    """A QuantizedNetwork on hardware `generics`, simulated in `mode` "fast" or "cycle".

    params: optional per-layer parameter beats, uint8 (beats, 9 * PI) each, e.g. read
    from a build's params.bin; default: packed from the network by `layout.pack_tile_params`.
    stimulus: cycle mode's stream patterns (`cycle.Stimulus`), default never stalls.
    memory: the external memory the streams come from (`rep_accel.memory.MemoryModel`,
    e.g. `memory.parse("ddr3-16-800", clock_mhz)`), in both modes; None: unlimited.
    """

    def __init__(self, qnet: QuantizedNetwork, generics: HardwareGenerics, mode: str = "fast",
                 params: list | None = None, stimulus: cycle.Stimulus | None = None,
                 clock_mhz: float = DEFAULT_CLOCK_MHZ, memory: MemoryModel | None = None):
        if mode not in MODES:
            raise RepAccelError(f"simulation mode {mode!r}: choose one of {', '.join(MODES)}")
        if not clock_mhz > 0:
            raise RepAccelError(f"clock {clock_mhz} MHz must be positive")
        #: Every layer's ScheduledLayer: planned once here, read by the cycles, the reports
        #: and the parameter check.
        self.schedules = check_network(qnet, generics)
        self.qnet, self.generics, self.mode, self.clock_mhz = qnet, generics, mode, float(clock_mhz)
        self.stimulus, self.memory = stimulus, memory
        if stimulus is not None:
            stimulus.arrays()  # validates the patterns now
        if memory is not None:
            memory.check_beats(generics)
        if mode == "fast":
            self.plans = [fast.plan_layer(l.shape, l.weight, l.bias, l.m0, l.n, l.name) for l in qnet.layers]
            # The schedule's counts do not depend on the data: computed once.
            self.fast_cycles = np.array([fast.cycles(sl, generics, memory, l.name)
                                         for l, sl in zip(qnet.layers, self.schedules)], dtype=np.int64)
            self._fast_reports = [layer_report(l.name, sl, generics, int(c), memory)
                                  for l, sl, c in zip(qnet.layers, self.schedules, self.fast_cycles)]
        else:
            if params is None:
                params = [cycle.layer_params(l, generics) for l in qnet.layers]
            check_params(qnet, generics, params, self.schedules)
            self.params = [np.ascontiguousarray(p, dtype=np.uint8) for p in params]

    def check_input(self, x_q: np.ndarray) -> None:
        check_input(self.qnet, np.asarray(x_q))

    def run(self, x_q: np.ndarray, trace: bool = False, return_activations: bool = False,
            show_progress: bool = True) -> SimulationResult:
        """Simulate pictures x_q: int8 (N, C, H, W) through the layers, then the head."""
        x_q = np.asarray(x_q)
        self.check_input(x_q)
        if trace and self.mode != "cycle":
            raise RepAccelError("a port trace needs cycle mode (--mode cycle)")
        layers = self.qnet.layers
        n = x_q.shape[0]
        cycles = np.zeros((n, len(layers)), dtype=np.int64)
        acts = [np.empty((n, l.shape.cout, l.shape.out_height, l.shape.out_width), np.uint8) for l in layers] \
            if return_activations else None
        last = layers[-1].shape if layers else None
        feats = np.empty((n, last.cout, last.out_height, last.out_width), np.uint8) if layers else x_q
        traces = []
        bar = progress(total=n * len(layers), desc=f"simulate ({self.mode})", unit="layer") if show_progress else None
        try:
            for i in range(n):
                if self.mode == "fast":
                    self._run_fast(x_q[i], i, cycles, acts, feats, bar)
                else:
                    self._run_cycle(x_q[i], i, cycles, acts, feats, bar, traces if (trace and i == 0) else None)
        finally:
            if bar is not None:
                bar.close()
        logits = golden.head(feats, self.qnet.head)
        if self.mode == "fast":
            reports = self._fast_reports
        else:
            reports = [layer_report(l.name, self.schedules[k], self.generics, int(cycles[0, k]), self.memory)
                       for k, l in enumerate(layers)]
        report = network_report(reports, self.generics, self.clock_mhz, self.mode, self.memory)
        tr = None
        if trace:
            tr = np.concatenate(traces) if traces else np.zeros(0, _LAYER_TRACE_DTYPE)
        return SimulationResult(logits, float(self.qnet.head.logit_scale), cycles, report, acts, tr)

    def _run_fast(self, x, i, cycles, acts, feats, bar):
        buf = np.zeros(self.plans[0].padded_input_size(), dtype=np.int8)
        fast.pad_nhwc(np.ascontiguousarray(x), buf)
        for k, plan in enumerate(self.plans):
            out = np.zeros(plan.padded_output_size(), dtype=np.uint8)
            fast.run_plan(plan, buf, out)
            buf = out
            s = plan.shape
            cycles[i, k] = self.fast_cycles[k]
            if acts is not None:
                fast.unpad_nchw(out, s.cout, s.out_height, s.out_width, acts[k][i])
            if bar is not None:
                bar.update(1)
        s = self.plans[-1].shape
        fast.unpad_nchw(buf, s.cout, s.out_height, s.out_width, feats[i])

    def _run_cycle(self, x, i, cycles, acts, feats, bar, traces):
        t = x
        for k, layer in enumerate(self.qnet.layers):
            res = cycle.run_layer(t, layer.shape, self.params[k], self.generics, self.stimulus,
                                  trace=traces is not None, name=layer.name, memory=self.memory)
            t = res.output
            cycles[i, k] = res.cycles
            if acts is not None:
                acts[k][i] = t
            if traces is not None:
                lt = np.zeros(res.trace.shape[0], dtype=_LAYER_TRACE_DTYPE)
                lt["layer"] = k
                for name in cycle.TRACE_DTYPE.names:
                    lt[name] = res.trace[name]
                traces.append(lt)
            if bar is not None:
                bar.update(1)
        feats[i] = t


_LAYER_TRACE_DTYPE = np.dtype([("layer", np.int64)] + cycle.TRACE_DTYPE.descr)


def simulate(qnet: QuantizedNetwork, x_q: np.ndarray, generics: HardwareGenerics, mode: str = "fast",
             **kwargs) -> SimulationResult:
    """One-call form: `NetworkSimulator(qnet, generics, mode).run(x_q)`; kwargs split
    between the constructor (params, stimulus, clock_mhz, memory) and run (trace, return_activations, show_progress)."""
    ctor = {k: kwargs.pop(k) for k in ("params", "stimulus", "clock_mhz", "memory") if k in kwargs}
    return NetworkSimulator(qnet, generics, mode, **ctor).run(x_q, **kwargs)
