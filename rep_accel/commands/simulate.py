"""`rep-accel simulate`: run a compiled build on inputs in the bit- and cycle-exact simulator."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from .. import images, numerics
from ..errors import RepAccelError
from ..fsutil import check_output_file, write_outputs_together
from ..untrusted import check_allocation, check_clock_mhz, open_npy, strict_json

HELP = "simulate a compiled build on inputs, bit- and cycle-exactly, and report cycles and traffic"
DESCRIPTION = """\
Run every conv layer of a build folder (written by `rep-accel compile`) on the
accelerator simulator, then the head (average pooling + FC) in the integer golden code.
The input is quantized with the build's input scale. Prints a table per layer: cycles,
MAC utilization, bottleneck, on-chip buffer use, external memory traffic, and frames/s
at --clock-mhz (docs/architecture.md, "Simulator").

--memory models the external memory the streams come from (docs/architecture.md,
"External memory"): a preset named by the memory, or peak bytes per cycle at the
accelerator clock, optionally ",efficiency=E,latency=CYCLES,fifo=BYTES". The report then
says per layer whether it is compute- or memory-bound and gives frames/s at that memory
beside frames/s with unlimited memory; both modes count the same cycles.

Modes: fast (outputs bit-exact, cycles from the schedule formula; the default) and
cycle (every clock stepped through the engine; --trace writes its port activity).

examples:
  rep-accel simulate build/ --input x.npy --out logits.npy
  rep-accel simulate build/ --input x.npy --mode cycle --trace trace.csv --json report.json
  rep-accel simulate build/ --input x.npy --clock-mhz 200
  rep-accel simulate build/ --input x.npy --memory ddr3-16-800
  rep-accel simulate build/ --input x.npy --memory 4.5,efficiency=0.8,latency=20
"""


def add_arguments(p) -> None:
    from rep_accel.sim.network import DEFAULT_CLOCK_MHZ, MODES
    p.add_argument("build", help="build folder written by `rep-accel compile`")
    p.add_argument("--input", required=True,
                   help="float32 .npy of N x C x H x W normalized inputs (as the float network takes them)")
    p.add_argument("--out", help="write the dequantized logits, float32 N x classes, to this .npy")
    p.add_argument("--pi", type=int, help="array rows; must match the build's layout (default: the build's)")
    p.add_argument("--po", type=int, help="array columns; must match the build's layout (default: the build's)")
    from .rtl import add_arithmetic_arguments, add_group_argument
    add_group_argument(p, "the build's; must match it")
    add_arithmetic_arguments(p, "the build's; must match it")
    p.add_argument("--mode", choices=MODES, default="fast",
                   help="fast: exact outputs, schedule-formula cycles; cycle: every clock stepped (default fast)")
    p.add_argument("--json", help="write the report (same figures as the table) and predictions to this .json")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"clock for frames/s and latency (default {DEFAULT_CLOCK_MHZ:g} MHz)")
    from rep_accel.memory import PRESETS
    p.add_argument("--memory", metavar="PRESET|BYTES_PER_CYCLE",
                   help=f"external memory model: unlimited (default), {', '.join(PRESETS)}, or peak bytes per "
                        f"accelerator cycle; options ,efficiency=E ,latency=CYCLES ,fifo=BYTES")
    p.add_argument("--trace", help="cycle mode: write the first input's per-cycle port trace (.csv or .npz)")


def _check_output_path(option: str, path: str | None, suffixes: tuple[str, ...], inputs=()) -> Path | None:
    if path is None:
        return None
    p = check_output_file(path, option, inputs)
    if p.suffix.lower() not in suffixes:
        raise RepAccelError(f"{option} {p}: use a {' or '.join(suffixes)} file name")
    return p


def load_input(path: str, input_size) -> np.ndarray:
    """The --input array: float (N, C, H, W) matching the build's input size."""
    p = Path(path)
    if not p.is_file():
        raise RepAccelError(f"--input {p}: no such file")
    x = open_npy(p, "--input")
    want = tuple(int(v) for v in input_size)
    if x.ndim != 4 or tuple(x.shape[1:]) != want or x.shape[0] < 1:
        raise RepAccelError(f"--input {p}: shape {tuple(x.shape)} does not match the build's input N x "
                            f"{want[0]} x {want[1]} x {want[2]}")
    # Checked from the header (memory-mapped) before the data is read.
    check_allocation(x.size * 8, f"--input {p}: {x.shape[0]} inputs", "simulate fewer inputs at a time")
    x = np.array(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise RepAccelError(f"--input {p}: dtype {x.dtype}; give float32 normalized inputs")
    if not np.all(np.isfinite(x)):
        raise RepAccelError(f"--input {p}: contains NaN or inf")
    return x.astype(np.float32, copy=False)


def run(args) -> int:
    from rep_accel.sim.cycle import write_trace
    from rep_accel.sim.network import NetworkSimulator
    from rep_accel.sim.report import format_table

    inputs = [args.input, Path(args.build) / images.MANIFEST]
    out_path = _check_output_path("--out", args.out, (".npy",), inputs)
    json_path = _check_output_path("--json", args.json, (".json",), inputs)
    trace_path = _check_output_path("--trace", args.trace, (".csv", ".npz"), inputs)
    chosen = [p.resolve() for p in (out_path, json_path, trace_path) if p is not None]
    if len(set(chosen)) != len(chosen):
        raise RepAccelError("--out, --json and --trace must name different files")
    if trace_path is not None and args.mode != "cycle":
        raise RepAccelError("--trace needs --mode cycle (the fast mode does not step clocks)")
    check_clock_mhz(args.clock_mhz)

    build = images.load_build(args.build)
    g = build.generics
    for opt, value, have in (("--pi", args.pi, g.pi), ("--po", args.po, g.po)):
        if value is not None and value != have:
            raise RepAccelError(f"{opt} {value}: the build {args.build} is laid out for PI={g.pi}, PO={g.po}; "
                                f"drop {opt} or recompile with `rep-accel compile ... --pi {args.pi or g.pi} "
                                f"--po {args.po or g.po}`")
    if args.max_group is not None and args.max_group != g.max_group:
        raise RepAccelError(f"--max-group {args.max_group}: the build {args.build} is laid out in tile groups of up to "
                            f"{g.max_group} tiles; drop --max-group or recompile with `rep-accel compile ... "
                            f"--max-group {args.max_group}`")
    from .rtl import check_build_options
    check_build_options(args, build)
    qnet = build.qnet
    x = load_input(args.input, qnet.input_size)
    params = [build.layer_params(i) for i in range(len(qnet.layers))] if args.mode == "cycle" else None
    from rep_accel import memory
    mem = memory.parse(args.memory, args.clock_mhz)
    sim = NetworkSimulator(qnet, g, args.mode, params=params, clock_mhz=args.clock_mhz,
                           memory=mem)  # every check, no simulation
    x_q = numerics.quantize_input(x, qnet.input_scale)

    result = sim.run(x_q, trace=trace_path is not None)

    logits = result.logits_float
    predictions = result.logits.argmax(axis=1)
    print(format_table(result.report))
    shown = ", ".join(str(int(p)) for p in predictions[:20]) + (", ..." if len(predictions) > 20 else "")
    print(f"{len(predictions)} input(s) from {args.input}: predicted classes {shown}")
    # The outputs appear together or not at all.
    writers, written = {}, []
    if out_path is not None:
        writers[out_path] = lambda p: np.save(p, logits)
        written.append(f"logits (float32 {logits.shape[0]} x {logits.shape[1]}) written to {out_path}")
    if json_path is not None:
        doc = {"build": str(args.build), "input": str(args.input), "images": int(x.shape[0]),
               "report": result.report.to_dict(), "predictions": [int(p) for p in predictions],
               "cycles_per_image": [int(c) for c in result.cycles.sum(axis=1)]}
        text = (strict_json(doc, indent=2) + "\n").encode()
        writers[json_path] = lambda p: p.write_bytes(text)
        written.append(f"report written to {json_path}")
    if trace_path is not None:
        writers[trace_path] = lambda p: write_trace(p, result.trace)
        written.append(f"port trace of input 0 ({len(result.trace):,} cycles, all layers) written to {trace_path}")
    write_outputs_together(writers)
    for line in written:
        print(line)
    sys.stdout.flush()
    return 0
