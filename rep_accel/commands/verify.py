"""`rep-accel verify`: run a compiled model on the generated Verilog in an HDL simulator (cocotb)
and compare every layer with the simulator and the golden model."""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from ..errors import RepAccelError
from ..fsutil import atomic_write_bytes, check_output_file

HELP = "run a compiled build on the generated Verilog (Verilator or Icarus, cocotb) and check it against the simulator"
DESCRIPTION = """\
Generate the accelerator's Verilog for the build's array (PI x PO of the build; W_MAX,
max_cg and line_depth the smallest the model needs unless given), compile it with
Verilator (default) or Icarus Verilog, and run the build's layers on it with a cocotb
testbench acting as the host and the external memory: for every input and layer it streams
the descriptor, the build's parameter beats (params.bin) and the previous layer's RTL
output, and collects the output. Every output beat is compared with the cycle-mode
simulator (bit for bit, same host) and the golden model; the RTL's cycle count (measured
and its `cycles` port) with the simulator's; the port activity (valid/ready of every
stream, busy, done) with the simulator's trace, cycle by cycle. After the last layer the
head runs in the golden code on the RTL's features and the logits are compared.

Prints per layer: pass/fail, RTL cycles and simulated cycles (first input), the HDL
simulation speed (cycles/s), then the logits' verdict. Exit status 0 when everything
matches, 1 when the RTL differs (the summary says where), 2 for bad inputs.
Compiled simulators are cached (--build-cache, default $REP_ACCEL_SIM_BUILD or
~/.cache/rep-accel/sim_build); the first run of a configuration compiles for 10 s to a
few minutes (Verilator, 8x8 array).

With --workers N (a local Ray instance of N CPUs) or --address ADDR (a Ray cluster),
every input is one Ray task (pip install 'rep-accel[ray]'): the task gets the build's
files and its input, and builds the RTL and runs its layers in a temporary folder of its
own, with a Verilator cache of its own unless --build-cache names a shared one (each task
then compiles the model once: minutes for an 8x8 array); the folder is removed however
the task ends. The summary is the same as one run over all inputs.

examples:
  rep-accel verify build/ --input x.npy
  rep-accel verify build/ --input x.npy --images 4 --layers 0,1 --sim icarus
  rep-accel verify build/ --input x.npy --images 1 --waves          # writes verify_waves.vcd
  rep-accel verify build/ --input x.npy --images 8 --workers 4      # 8 RTL runs as Ray tasks
  rep-accel verify build/ --input x.npy --images 1 --memory sdr16-166 --clock-mhz 150
"""

#: Default waveform file name, without its suffix (.vcd from Verilator, .fst from Icarus).
WAVES_DEFAULT = "verify_waves"


def add_arguments(p) -> None:
    from ..verification.runner import DEFAULT_OPT, SIMULATORS
    p.add_argument("build", help="build folder written by `rep-accel compile`")
    p.add_argument("--input", required=True,
                   help="float32 .npy of N x C x H x W normalized inputs (as the float network takes them)")
    p.add_argument("--images", type=int, help="verify only the first N inputs (default: all)")
    p.add_argument("--layers", default="all", help="layers to run on the RTL: all (default) or indices, e.g. 0,1,5")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator", help="HDL simulator (default verilator)")
    p.add_argument("--waves", nargs="?", const=WAVES_DEFAULT, default=None, metavar="FILE",
                   help=f"write the waveforms to FILE: VCD from Verilator, FST from Icarus "
                        f"(default {WAVES_DEFAULT}.vcd / .fst)")
    p.add_argument("--pi", type=int, help="array rows; must match the build's layout (default: the build's)")
    p.add_argument("--po", type=int, help="array columns; must match the build's layout (default: the build's)")
    p.add_argument("--w-max", type=int, help="W_MAX of the RTL (default: the model's widest input)")
    p.add_argument("--max-cg", type=int, help="weight-buffer depth in channel groups (default: the model's need)")
    p.add_argument("--line-depth", type=int, help="line-buffer entries per lane (default: the model's need)")
    from ..families import DSP_STYLES
    p.add_argument("--dsp", choices=DSP_STYLES, default="generic",
                   help="multiplier style of the RTL, as `rep-accel rtl --dsp` (ecp5: MULT18X18D, simulated "
                        "with its model); default generic")
    from .rtl import add_arithmetic_arguments, add_group_argument
    add_group_argument(p, "the build's; must match it")
    add_arithmetic_arguments(p, "the build's; must match it")
    p.add_argument("--build-cache", help="folder of compiled HDL simulators (default $REP_ACCEL_SIM_BUILD or "
                                         "~/.cache/rep-accel/sim_build)")
    p.add_argument("--opt", default=DEFAULT_OPT, choices=("-O0", "-O1", "-O2", "-Os"),
                   help=f"C++ optimization of the Verilator model (default {DEFAULT_OPT}: fastest to compile)")
    p.add_argument("--memory", metavar="PRESET|BYTES_PER_CYCLE",
                   help="the host streams as the external-memory model gives them (as `rep-accel simulate --memory`); "
                        "the RTL must match the simulator cycle for cycle under its stall pattern")
    p.add_argument("--clock-mhz", type=float, default=150.0, help="the accelerator clock of --memory (default 150)")
    p.add_argument("--json", help="write the summary and every layer's record to this .json")
    p.add_argument("--keep", action="store_true", help="keep the job folder (testbench log, results) and print it")
    p.add_argument("--workers", type=int, help="run every input as a Ray task on a local Ray instance of N CPUs")
    p.add_argument("--address", help="run every input as a Ray task on this Ray cluster (host:port, or auto)")


def parse_layers(text: str, n_layers: int) -> list[int] | None:
    """--layers: None for all, else sorted unique indices in [0, n_layers)."""
    if text.strip().lower() == "all":
        return None
    try:
        idx = sorted({int(t) for t in text.split(",") if t.strip() != ""})
    except ValueError:
        raise RepAccelError(f"--layers {text}: give `all` or comma-separated layer indices, e.g. 0,1,5") from None
    if not idx:
        raise RepAccelError(f"--layers {text}: no layer given")
    bad = [i for i in idx if not 0 <= i < n_layers]
    if bad:
        raise RepAccelError(f"--layers {text}: {bad} out of range; the build has layers 0..{n_layers - 1}")
    return idx


def _fmt_rate(cycles: int, seconds: float) -> str:
    return f"{cycles / seconds:,.0f}" if seconds > 0 else "-"


def summary_lines(results: dict, qnet) -> tuple[list[str], bool]:
    """The summary table (one row per layer over all inputs) and whether everything passed."""
    recs = results["records"]
    rows = [("layer", "shape", "inputs", "result", "RTL cycles", "sim cycles", "trace", "cycles/s")]
    ok = bool(recs) and results.get("complete", False)
    for k in sorted({r["layer"] for r in recs}):
        rs = [r for r in recs if r["layer"] == k]
        first = rs[0]
        passed = all(r["passed"] for r in rs)
        ok &= passed
        s = qnet.layers[k].shape
        cyc = sum(r["clock_cycles"] for r in rs)
        secs = sum(r["rtl_seconds"] for r in rs)
        rows.append((f"{k} {qnet.layers[k].name}", f"{s.cin}->{s.cout} s{s.stride} {s.height}x{s.width}",
                     str(len(rs)), "pass" if passed else f"FAIL ({sum(not r['passed'] for r in rs)})",
                     str(first["rtl_cycles"]), str(first["sim_cycles"]),
                     "equal" if all(r["trace_equal"] for r in rs) else "DIFFERS", _fmt_rate(cyc, secs)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "-" * len(lines[0]))
    for r in recs:
        if not r["passed"]:
            lines.append(f"FAIL input {r['image']} layer {r['layer']} ({r['layer_name']}): " + "; ".join(r["failures"]))
    net = results.get("network") or {}
    if net.get("head"):
        rtl_pred = net["rtl_pred"]
        lines.append(f"head (golden code on the RTL's features): logits {'equal' if net['logits_equal_sim'] else 'DIFFER FROM'} "
                     f"the simulator's, predictions {'equal' if net['pred_equal_golden'] else 'DIFFER FROM'} "
                     f"the golden model's: {', '.join(str(p) for p in rtl_pred[:20])}{', ...' if len(rtl_pred) > 20 else ''}")
        ok &= bool(net["logits_equal_sim"] and net["pred_equal_golden"])
    elif net:
        lines.append("head not run: only some layers ran on the RTL (--layers)")
    if results.get("error"):
        lines.append(f"the testbench stopped: {results['error']}")
        ok = False
    cyc = sum(r["clock_cycles"] for r in recs)
    lines.append(f"{cyc:,} clock cycles simulated in {results.get('rtl_seconds', 0):.1f} s "
                 f"({_fmt_rate(cyc, results.get('rtl_seconds', 0))} cycles/s); "
                 f"{sum(r['outputs_compared'] for r in recs):,} outputs compared")
    return lines, ok


def _verify_as_tasks(args, build, generics, x_q, layers, stall, json_path, waves) -> int:
    """`run` with every input as one RTL task (verification.runner.run_rtl_task) on Ray:
    the same summary, JSON and exit status, from the tasks' merged results."""
    from .. import distributed
    from ..verification import runner as R
    if waves is not None or args.keep:
        raise RepAccelError("--waves and --keep keep the files of one run; drop them with --workers/--address")
    qnet, g = build.qnet, generics
    n_run = len(layers) if layers is not None else len(qnet.layers)
    files = R.build_files(build)
    tasks = [R.RtlTask(i, g, files, x_q[i:i + 1], i, layers, args.sim, args.opt, args.dsp, args.build_cache, stall)
             for i in range(x_q.shape[0])]
    parts = []
    with distributed.session(args.workers, args.address) as engine:
        if isinstance(engine, distributed.SerialEngine):
            print(f"note: {engine.reason}", file=sys.stderr, flush=True)
        cache = f"the cache {args.build_cache}" if args.build_cache else "a Verilator cache of its own"
        print(f"running {len(tasks)} input(s) x {n_run} layer(s) on the RTL ({g.pi}x{g.po}, {args.sim}) as "
              f"{len(tasks)} task(s) on {engine.name}, each with {cache} ...", flush=True)
        for i, part in engine.map(R.run_rtl_task, tasks):
            built = "found in the cache" if part["cached"] else f"RTL built in {part['rtl_build_seconds']:.0f} s"
            print(f"  input {i}: {built}, {part['results'].get('rtl_seconds', 0):.1f} s on the RTL", flush=True)
            parts.append(part["results"])
    results = R.merge_results(parts)
    lines, ok = summary_lines(results, qnet)
    print("\n".join(lines))
    if json_path is not None:
        doc = {"build": str(args.build), "input": str(args.input), "sim": args.sim, "dsp": args.dsp,
               "generics": g.to_dict(), "passed": ok, "results": results, "tasks": len(tasks)}
        atomic_write_bytes(json_path, (json.dumps(doc, indent=1) + "\n").encode())
        print(f"report written to {json_path}")
    print("PASS: the RTL matches the simulator and the golden model" if ok else "FAIL: the RTL differs (see above)")
    sys.stdout.flush()
    return 0 if ok else 1


def run(args) -> int:
    from .. import images, numerics
    from ..verification import cases as C
    from ..verification import runner as R
    from .rtl import GENERIC_OPTIONS, generics_for
    from .simulate import load_input

    json_path = check_output_file(args.json, "--json", [args.input, args.build]) if args.json else None
    if json_path is not None and json_path.suffix.lower() != ".json":
        raise RepAccelError(f"--json {json_path}: give a .json file name")
    waves = None
    if args.waves:
        suffix = R.WAVES_SUFFIX[args.sim]
        waves = Path(args.waves + suffix if args.waves == WAVES_DEFAULT else args.waves)
        if waves.suffix.lower() != suffix or waves.is_dir():
            raise RepAccelError(f"--waves {args.waves}: {args.sim} writes {suffix[1:].upper()}; give a {suffix} file name")
        check_output_file(waves, "--waves", [args.input, args.build, json_path])
    if args.images is not None and args.images < 1:
        raise RepAccelError(f"--images {args.images}: must be at least 1")
    from .. import memory
    memory.parse(args.memory, args.clock_mhz)  # a bad spec fails before the build
    stall = C.Stall(memory=args.memory, clock_mhz=args.clock_mhz) if args.memory is not None else None
    build = images.load_build(args.build)
    generics, _ = generics_for(args.build, **{name: getattr(args, name) for name in GENERIC_OPTIONS})
    qnet = build.qnet
    layers = parse_layers(args.layers, len(qnet.layers))
    x = load_input(args.input, qnet.input_size)
    if args.images is not None:
        if args.images > x.shape[0]:
            raise RepAccelError(f"--images {args.images}: {args.input} holds only {x.shape[0]} input(s)")
        x = x[:args.images]
    x_q = numerics.quantize_input(x, qnet.input_scale)

    g = generics
    if args.workers is not None or args.address is not None:
        return _verify_as_tasks(args, build, g, x_q, layers, stall, json_path, waves)
    print(f"RTL {g.pi}x{g.po}, w_max {g.w_max}, max_cg {g.max_cg}, line_depth {g.line_depth}, unit {g.unit}, "
          f"{g.lut_multipliers} LUT multipliers: "
          f"building with {args.sim}{' (waves)' if waves else ''} ...", flush=True)
    rtl = R.build_rtl(g, args.sim, waves=waves is not None, cache_dir=args.build_cache, opt=args.opt,
                      dsp=args.dsp)
    print(f"  {'found in the cache' if rtl.cached else f'built in {rtl.seconds:.0f} s'}: {rtl.build_dir}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="rep-accel-verify-"))
    job = C.Job(g, network=C.NetworkJob(str(Path(args.build).resolve()), x_q, layers, stall=stall))
    C.write_job(work, job)
    n_run = len(layers) if layers is not None else len(qnet.layers)
    print(f"running {x_q.shape[0]} input(s) x {n_run} layer(s) on the RTL ...", flush=True)
    finished = False
    try:
        outcome = R.run_job(rtl, work, waves_file=waves)
        lines, ok = summary_lines(outcome.results, qnet)
        finished = True
    finally:
        # A crash, an error or Ctrl-C leaves nothing behind; a run that found a difference
        # keeps its job folder as the evidence, and says where (below).
        if not finished:
            shutil.rmtree(work, ignore_errors=True)
    print("\n".join(lines))
    if waves is not None:
        print(f"waveforms written to {waves}")
    if json_path is not None:
        doc = {"build": str(args.build), "input": str(args.input), "sim": args.sim, "dsp": args.dsp, "generics": g.to_dict(),
               "passed": ok, "results": outcome.results}
        atomic_write_bytes(json_path, (json.dumps(doc, indent=1) + "\n").encode())
        print(f"report written to {json_path}")
    if args.keep or not ok:
        print(f"testbench log and results: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print("PASS: the RTL matches the simulator and the golden model" if ok else "FAIL: the RTL differs (see above)")
    sys.stdout.flush()
    return 0 if ok else 1
