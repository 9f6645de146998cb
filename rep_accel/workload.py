"""The workload and performance model: what a network asks of the array, and how fast
the array runs it, without synthesizing or simulating anything.

A `Workload` is the conv layers of one network at one input size (from a zoo variant, a
checkpoint or a compiled build). `workload_report` gives the schedule's figures of a
workload on given generics (per-layer cycles, MAC utilization, frames/s at a clock, and
with a memory model the external-memory stalls), the numbers `rep-accel synth`, the
notebooks and the benchmarks print beside a synthesis result; `sized_generics` the
smallest buffers a PI x PO array needs for it (`layout.size_generics`).

The FPGA flow (Yosys, nextpnr) is `rep_accel.synth`; it does not depend on this module.
Units: cycles, MHz, frames/s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import RepAccelError
from .generics import HardwareGenerics


@dataclass
class Workload:
    """The conv layers of one network for one input size: what the accelerator runs per frame.

    name: a description (zoo variant and size, or build folder); names/shapes: per layer;
    build_generics: the generics a compiled build's images are laid out for (or None)."""

    name: str
    names: list[str]
    shapes: list
    build_generics: HardwareGenerics | None = None

    @property
    def macs(self) -> int:
        """Useful multiply-accumulates of one frame (the conv layers')."""
        return sum(s.macs for s in self.shapes)


def zoo_workload(model: str, input_size=(3, 224, 224)) -> Workload:
    """The layers of a zoo variant (`rep_accel.models`, e.g. "A0") or of a checkpoint file,
    fused, at `input_size` (C, H, W). No quantization: the cycles depend only on the shapes."""
    from .quantize import layer_shapes

    c, h, w = (int(v) for v in input_size)
    path = Path(model)
    if path.suffix == ".pt" or path.is_file():
        if not path.is_file():
            raise RepAccelError(f"--model {path}: no such checkpoint")
        from .checkpoints import load_fused
        fused = load_fused(path)
        label = path.name
    else:
        from .fusion import fuse_model
        from .models import create_model
        net = create_model(model, in_channels=c)
        fused = fuse_model(net)
        label = f"RepVGG-{net.name or model}"
    shapes = layer_shapes(fused, (c, h, w))
    return Workload(f"{label} {c}x{h}x{w}", [layer.name for layer in fused.layers], shapes)


def build_workload(path) -> Workload:
    """The layers of a compiled build folder (`rep-accel compile`)."""
    from .images import load_build
    build = load_build(path)
    layers = build.qnet.layers
    s = layers[0].shape
    return Workload(f"{Path(path).name} {s.cin}x{s.height}x{s.width}", [l.name for l in layers],
                    [l.shape for l in layers], build.generics)


def workload_report(work: Workload, generics: HardwareGenerics, clock_mhz: float, memory=None):
    """The simulator's report of `work` on hardware `generics` at `clock_mhz` MHz
    (`rep_accel.sim.report.NetworkReport`: per-layer cycles, utilization, frames/s).

    Per-layer cycles are the never-stalling schedule (`layout.layer_cycles`, what the
    simulator predicts in fast mode and the RTL's `cycles` reports); the layers run back to
    back, the head runs on the host and is not counted. Raises RepAccelError when a layer
    does not fit these generics or a build's images are laid out for another array.
    memory: a `rep_accel.memory` model; the cycles are then the engine's timing replayed
    under it (`sim.network.schedule_report`)."""
    from .layout import schedule_layer
    from .sim.report import layer_report, network_report

    bg = work.build_generics
    if bg is not None and (bg.pi, bg.po) != (generics.pi, generics.po):
        raise RepAccelError(f"build {work.name}: images laid out for a {bg.pi}x{bg.po} array, the RTL is "
                            f"{generics.pi}x{generics.po}; recompile with --pi {generics.pi} --po {generics.po}")
    schedules = [schedule_layer(shape, generics, name) for name, shape in zip(work.names, work.shapes)]
    if memory is not None:
        from .sim.network import schedule_report
        return schedule_report(list(zip(work.names, work.shapes)), generics, clock_mhz, memory)
    reports = [layer_report(n, s, generics, s.cycles) for n, s in zip(work.names, schedules)]
    return network_report(reports, generics, clock_mhz, "fast")


def sized_generics(work: Workload, pi: int, po: int, max_group: int | None = None, unit: str = "direct",
                   lut_multipliers: int = 0) -> HardwareGenerics:
    """The smallest buffers a pi x po array of `unit` units (with `lut_multipliers` of its
    multipliers in logic) with tile groups of up to `max_group` tiles (default
    HardwareGenerics') needs to run `work` (layout.size_generics, policy "smallest")."""
    from .layout import size_generics
    base = HardwareGenerics(pi=pi, po=po, unit=unit, lut_multipliers=lut_multipliers)
    return size_generics(work.shapes, pi, po, "smallest", names=work.names, max_group=max_group, base=base)


#: The RepVGG-A0 configurations on the LFE5U-85F that `rep-accel demo` reports
#: (docs/synthesis.md): the fastest direct array placed and routed there (its Fmax
#: measured), and the fastest direct and Winograd arrays that benchmarks/device_sweep.py
#: estimates to fit, with the LUT multipliers beyond the 156 DSPs (their RTL is built and
#: verified; not placed and routed). (label, generics).
ECP5_85F_CONFIGURATIONS = (
    ("direct 4x4 (RTL; Fmax measured in docs/synthesis.md)", {"pi": 4, "po": 4, "unit": "direct", "max_group": 16}),
    ("direct 4x8 +132 LUT mult. (RTL; estimated to fit, not placed)",
     {"pi": 4, "po": 8, "unit": "direct", "max_group": 16, "lut_multipliers": 132}),
    ("winograd 3x4 +36 LUT mult. (RTL; estimated to fit, not placed)",
     {"pi": 3, "po": 4, "unit": "winograd", "max_group": 16, "lut_multipliers": 36}),
)


def configuration_figures(clock_mhz: float, model: str = "A0", input_size=(3, 224, 224)) -> list[dict]:
    """For each of ECP5_85F_CONFIGURATIONS: cycles per frame of `model` (the simulator's
    schedule) and frames/s at `clock_mhz` with unlimited memory and with 16-bit DDR3-800."""
    from .memory import parse
    work = zoo_workload(model, input_size)
    out = []
    for label, spec in ECP5_85F_CONFIGURATIONS:
        g = sized_generics(work, spec["pi"], spec["po"], spec["max_group"], spec["unit"], spec.get("lut_multipliers", 0))
        r = workload_report(work, g, clock_mhz)
        rm = workload_report(work, g, clock_mhz, parse("ddr3-16-800", clock_mhz))
        out.append({"label": label, "generics": g.to_dict(), "model": work.name, "cycles": r.cycles,
                    "frames_per_second": r.frames_per_second, "frames_per_second_ddr3": rm.frames_per_second})
    return out
