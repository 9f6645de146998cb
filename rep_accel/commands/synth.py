"""`rep-accel synth`: resources, Fmax and frames/s of the generated Verilog on an FPGA."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from .. import memory, synth, workload
from ..errors import RepAccelError
from ..families import FAMILIES
from ..generics import check_same_arithmetic
from ..fsutil import add_force_argument, atomic_write_bytes, check_output_dir, check_output_file
from ..untrusted import check_clock_mhz, parse_input_size, strict_json

HELP = "synthesize and place the Verilog (Yosys + nextpnr, ECP5 or generic): resources, Fmax, frames/s"
DESCRIPTION = """\
Synthesize the Verilog written by `rep-accel rtl` with Yosys and, for --target ecp5, place
and route it with nextpnr-ecp5 (out of context: the core alone, no pins), both from PyPI
(YoWASP). Reports LUT4, flip-flops, DSP multipliers (MULT18X18D), block RAM (DP16KD) and
distributed RAM used / available on the device, whether it fits, and the Fmax of `clk`.
--target generic sizes any Verilog without a device (Yosys `synth`: gates, flip-flops,
memory bits).

With --build (a folder from `rep-accel compile`) or --model (a zoo variant such as A0, or
a checkpoint .pt, at --input-size), the same report gives the cycles per frame of that
network on this array (the simulator's schedule, layout.layer_cycles) and frames/s at the
achieved Fmax (or at --clock-mhz). --memory PRESET|BYTES_PER_CYCLE gives them with the
host streams served by that external memory (docs/architecture.md, "External memory").

For ECP5, generate the Verilog with `rep-accel rtl --dsp ecp5`: its multipliers are
MULT18X18D blocks with their own registers (Yosys leaves generic multipliers' registers in
the fabric, which costs Fmax on a full device). docs/synthesis.md has the 1x1 to 8x8
arrays on the LFE5U-85F.

Logs (yosys.log, nextpnr.log), the netlist, nextpnr's report and result.json go to -o
(default synth/), also when a tool fails; the error names the log to read. With --freq,
missing that clock is an error (the report is still printed and written).

examples:
  rep-accel rtl -o rtl/ --pi 4 --po 4 --dsp ecp5
  rep-accel synth rtl/ --target ecp5 --device 85k --speed 8 --freq 150 --model A0 --input-size 3,224,224
  rep-accel synth rtl/ --build build/ --json synth.json
  rep-accel synth rtl/ --target generic
  rep-accel synth my_design.v --top my_top --target generic
"""


def add_arguments(p) -> None:
    p.add_argument("rtl", help="folder written by `rep-accel rtl` (or any Verilog .v file, with --top)")
    p.add_argument("--top", help="top module (default: the one the rtl folder describes, or the .v file's name)")
    p.add_argument("--target", choices=synth.TARGETS, default="ecp5",
                   help="ecp5: synth_ecp5 + nextpnr-ecp5; generic: Yosys synth, no device (default ecp5)")
    for name, family in FAMILIES.items():   # each family's devices (one family today)
        p.add_argument("--device", choices=tuple(family.DEVICES), default=None,
                       help=f"{name} device: " + ", ".join(f"{d} = {part}" for d, (part, _) in family.DEVICES.items())
                            + f" (default {family.DEFAULT_DEVICE})")
        p.add_argument("--speed", type=int, choices=family.SPEEDS, default=None,
                       help=f"{name} speed grade (default {family.DEFAULT_SPEED})")
        p.add_argument("--package", default=None, help=f"{name} package: {', '.join(family.PACKAGES)} "
                                                       f"(default {family.DEFAULT_PACKAGE})")
    p.add_argument("--freq", type=float, default=None,
                   help="clock target in MHz; missing it is an error (default: aim at "
                        f"{synth.DEFAULT_TARGET_MHZ:g} MHz and only report the achieved Fmax)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("-o", "--output", default="synth", help="folder for logs and results (default synth/)")
    p.add_argument("--json", help="also write the report (synthesis + model figures) to this .json file")
    p.add_argument("--build", help="compiled build folder (`rep-accel compile`): report its cycles and frames/s")
    p.add_argument("--model", help="zoo variant (A0, B1g2, ...) or checkpoint .pt: report its cycles and frames/s")
    p.add_argument("--input-size", default="3,224,224", help="C,H,W of --model's input (default 3,224,224)")
    p.add_argument("--clock-mhz", type=float, default=None,
                   help="clock for frames/s (default: the achieved Fmax; required for --target generic)")
    p.add_argument("--timeout", type=float, default=None, help="stop a tool that runs longer than this (seconds)")
    p.add_argument("--memory", metavar="PRESET|BYTES_PER_CYCLE",
                   help="external memory for the frames/s of --build/--model (as `rep-accel simulate --memory`)")
    from .rtl import add_arithmetic_arguments
    add_arithmetic_arguments(p, "the rtl folder's; must match it")
    add_force_argument(p)


def _workload(args):
    if args.build and args.model:
        raise RepAccelError("give either --build or --model, not both")
    if args.build:
        return workload.build_workload(args.build)
    if args.model:
        return workload.zoo_workload(args.model, parse_input_size(args.input_size))
    if args.clock_mhz is not None:
        raise RepAccelError("--clock-mhz sets the clock of a frames/s figure: give --build or --model too")
    return None


def _check_options(args) -> None:
    if args.target == "generic":
        given = [o for o, v in (("--device", args.device), ("--speed", args.speed), ("--package", args.package),
                                ("--freq", args.freq)) if v is not None]
        if given:
            raise RepAccelError(f"--target generic has no device: drop {', '.join(given)}")
    if args.clock_mhz is not None:
        check_clock_mhz(args.clock_mhz)
    if args.freq is not None:
        check_clock_mhz(args.freq, "--freq")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise RepAccelError(f"--timeout {args.timeout:g} must be a positive number of seconds")
    family = FAMILIES.get(args.target)
    if args.package is not None and family is not None and args.package not in family.PACKAGES:
        raise RepAccelError(f"--package {args.package!r:.40}: choose one of {', '.join(family.PACKAGES)}")
    check_output_dir(args.output)
    inputs = [args.rtl, args.build]
    if args.json is not None:
        check_output_file(args.json, "--json", inputs)
    for given in inputs:
        if given is not None and Path(given).resolve() == Path(args.output).resolve():
            raise RepAccelError(f"-o {args.output} is also an input; write the results to another folder")


def _check_arithmetic(args, design, work) -> None:
    """--unit / --lut-multipliers must be the rtl folder's, and a build's must be too."""
    from .rtl import arithmetic_options, check_arithmetic_options
    if arithmetic_options(args) and design.generics is None:
        raise RepAccelError(f"{args.rtl}: --unit and --lut-multipliers check the generics of a folder written by "
                            f"`rep-accel rtl`; drop them for a bare Verilog file")
    if design.generics is not None:
        check_arithmetic_options(args, design.generics, f"the RTL in {args.rtl}",
                                 f"regenerate it with rep-accel rtl -o {args.rtl} ...")
    if work is not None and work.build_generics is not None:
        check_same_arithmetic(work.build_generics, design.generics, args.build, f"the RTL in {args.rtl}")


# ----------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------

def _design_line(r: synth.SynthResult) -> str:
    g = r.generics
    what = r.top if g is None else (f"{r.top} (PI={g['pi']} PO={g['po']}, w_max {g['w_max']}, max_cg {g['max_cg']}, "
                                    f"line_depth {g['line_depth']}"
                                    + (f", unit {g['unit']}, {g['lut_multipliers']} LUT multipliers" if "unit" in g else "")
                                    + ")")
    if r.family is not None:
        return f"{what} on {r.part} speed {r.speed} ({r.package}), out of context"
    return f"{what}, Yosys generic synthesis (no device)"


def critical_path_summary(lines: list[str]) -> str:
    """'<first source cell> -> <last sink cell>, <x ns logic, y ns routing>' from nextpnr's report lines."""
    cells = [l.split("Source", 1)[1].strip() for l in lines if " Source " in f" {l} "]
    total = next((l.strip() for l in reversed(lines) if "ns logic" in l), "")
    if not cells:
        return total
    return f"{cells[0]} -> {cells[-1]} ({total})"


def resources_table(r: synth.SynthResult) -> str:
    """The human table of one result (no model figures)."""
    lines = [_design_line(r)]
    if r.family is not None:
        rows = [("resource", "used", "available", "use")]
        names = r.family.RESOURCE_NAMES
        rows.append((f"{r.family.CELLS['lut']} (Yosys)", str(r.luts), "", ""))
        for res in r.family.SUMMARY_RESOURCES:
            if res in r.utilization:
                u, a = r.used(res), r.available(res)
                rows.append((names[res], str(u), str(a), f"{100 * u / a:.1f}%" if a else ""))
        w = [max(len(row[i]) for row in rows) for i in range(4)]
        for k, row in enumerate(rows):
            lines.append("  ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(row)))
            if k == 0:
                lines.append("-" * len(lines[-1]))
        if r.fits is not None:
            lines.append(f"fits {r.part}: {'yes' if r.fits else 'NO'}")
        if r.fmax_mhz is not None:
            verdict = "met" if r.timing_met else "NOT met"
            lines.append(f"Fmax of {synth.CLOCK}: {r.fmax_mhz:.2f} MHz (target {r.target_mhz:g} MHz: {verdict})")
            if r.critical_path:
                lines.append(f"critical path: {critical_path_summary(r.critical_path)}")
    else:
        s = r.summary()
        lines.append(f"cells {s['cells']}: gates {s['gates']}, flip-flops {s['flip_flops']}, "
                     f"memories {s['memories']} ({s['memory_bits']} bits)")
        kinds = sorted(((t, n) for t, n in r.cells.items() if t != "$scopeinfo"), key=lambda x: -x[1])
        lines.append("by type: " + ", ".join(f"{t} {n}" for t, n in kinds))
        for m in r.memories:
            lines.append(f"  memory {m['name']}: {m['depth']} x {m['width']} bits")
    return "\n".join(lines)


def model_lines(report, workload, clock_source: str) -> str:
    g = report.generics
    return (f"{workload.name} on PI={g['pi']} PO={g['po']}: {len(report.layers)} layers, "
            f"{report.cycles:,} cycles per frame (MAC utilization {report.utilization:.1%}); "
            f"at {report.clock_mhz:.2f} MHz ({clock_source}): {report.frames_per_second:.2f} frames/s, "
            f"{report.latency_ms:.2f} ms per frame")


# ----------------------------------------------------------------------------------
# The command
# ----------------------------------------------------------------------------------

def run(args) -> int:
    _check_options(args)
    design = synth.load_design(args.rtl, args.top)
    work = _workload(args)
    if args.memory is not None and work is None:
        raise RepAccelError("--memory sets the memory of a frames/s figure: give --build or --model too")
    memory.parse(args.memory, 100.0)  # the spec is checked now; the clock is known after the tools
    if work is not None and design.generics is None:
        raise RepAccelError(f"{args.rtl}: frames/s need the accelerator's generics; give a folder written by "
                            f"`rep-accel rtl`, not a bare Verilog file")
    _check_arithmetic(args, design, work)
    if work is not None:
        # Check the network fits these generics before spending minutes in the tools.
        workload.workload_report(work, design.generics, 1.0)
    if args.target == "generic" and work is not None and args.clock_mhz is None:
        raise RepAccelError("--target generic has no Fmax: give --clock-mhz for frames/s")

    options = {"timeout_s": args.timeout, "force": args.force}
    if args.target in FAMILIES:
        options.update(device=args.device, speed=args.speed, package=args.package, freq_mhz=args.freq, seed=args.seed)
    timing_error = None
    try:
        result = synth.run(design, args.output, args.target, **options)
    except synth.TimingError as e:   # the figures are complete: report them, then fail
        timing_error, result = e, e.result

    report = None
    out = {"synthesis": result.to_dict(), "output": str(args.output)}
    text = [resources_table(result)]
    if work is not None:
        clock, source = (args.clock_mhz, "--clock-mhz") if args.clock_mhz is not None else \
            (result.fmax_mhz, "achieved Fmax")
        mem = memory.parse(args.memory, clock)
        # With a memory model: the same layers, the engine's timing replayed under it.
        report = workload.workload_report(work, design.generics, clock, mem)
        out["model"] = {"name": work.name, "clock_source": source, **report.to_dict()}
        text.append(model_lines(report, work, source))
        if mem is not None:
            text.append(f"memory {mem.label()}: {report.frames_per_second:.2f} frames/s "
                        f"({report.frames_per_second_unlimited:.2f} with unlimited memory)")
        if args.clock_mhz is not None and result.fmax_mhz is not None and args.clock_mhz > result.fmax_mhz:
            text.append(f"note: --clock-mhz {args.clock_mhz:g} is above the achieved Fmax {result.fmax_mhz:.2f} MHz")
    dsp = (design.description or {}).get("dsp")
    if result.family is not None and dsp == "generic" and result.dsp_blocks:
        text.append("note: this Verilog has generic multipliers (their registers stay in the fabric); "
                    "`rep-accel rtl --dsp ecp5` uses the DSP blocks' own registers and reaches a higher Fmax")
    text.append(f"logs and results: {Path(args.output)}/ ({', '.join(sorted(result.logs))}, {synth.RESULT})")
    if args.json:
        atomic_write_bytes(args.json, (strict_json(out, indent=1) + "\n").encode())
    print("\n".join(text), file=sys.stdout, flush=True)
    if timing_error is not None:
        raise timing_error
    return 0
