"""Synthesis sweep: PI x PO = 1x1, 2x2, 4x4, 8x8 on an ECP5 LFE5U-85F, speed grade 8, and
any other array, LUT-multiplier count and ECP5 device.

    python benchmarks/synth_sweep.py [--configs 1x1,2x2,4x4,8x8] [--out out/synth_sweep]
                                     [--doc docs/synthesis.md] [--reuse] [--timeout S]
                                     [--workers N | --address ADDR | --serial]

A configuration is [w]PIxPO[+N][@DEVICE]: an array of direct units, or with a leading `w` of
Winograd units (`--unit winograd`), N of its multipliers built as LUT multipliers
(`--lut-multipliers`, default 0) on DEVICE (12k, 25k, 45k, 85k; default 85k), e.g. `2x2+8@25k`
(36 multipliers on the LFE5U-25F's 28 DSP blocks and 8 LUT multipliers) or `w3x4+36`
(192 Winograd multipliers on the LFE5U-85F's 156 DSP blocks and 36 in logic).

For every configuration: `rep-accel rtl --dsp ecp5` (MULT18X18D blocks with their own
registers) with W_MAX = 224 and buffers sized exactly for RepVGG-A0 at 224x224
(`rep_accel.workload.sized_generics`), then the `rep-accel synth` flow
(Yosys synth_ecp5 + nextpnr-ecp5, out of context, aiming at 150 MHz), then RepVGG-A0
224x224 frames/s at the achieved Fmax (layer cycles from `layout.layer_cycles`, the
simulator's schedule). Prints the table and writes docs/synthesis.md (table, commands,
tool versions, date, critical paths). A configuration that does not fit the device is a
result (its utilization is reported), not an error.

Every configuration is one Ray task (`rep_accel.distributed`: a local Ray instance of
--workers CPUs, all cores by default, or the cluster at --address; serially in this
process with --serial or without Ray). Each task writes only its own rtl_PIxPO/ and
synth_PIxPO/ folders and returns its row, so the table is the same whichever way it ran
(only the tool seconds differ); on a cluster without a shared file system the logs stay
on the worker that ran the configuration. --target generic, --model and --input-size
give a quick sweep (Yosys alone, e.g. for tests); docs/synthesis.md is only written for
the ECP5 sweep it describes.

A benchmark run on demand (tens of minutes: the 8x8 synthesis dominates), not a test.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rep_accel import distributed, memory, synth, workload
from rep_accel.generics import HardwareGenerics
from rep_accel.untrusted import parse_input_size
from rep_accel.families import ecp5
from rep_accel.commands.synth import critical_path_summary

MODEL, INPUT_SIZE = "A0", (3, 224, 224)
#: The external memory of the table's second frames/s column (docs/architecture.md, "External memory").
DDR3 = "ddr3-16-800"
DDR3_KEY = "frames_per_second_ddr3"
DEVICE, SPEED = "85k", 8
TARGET_MHZ = synth.DEFAULT_TARGET_MHZ
REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Config:
    """One configuration of a sweep: the unit kind, the array, its LUT multipliers, the device
    (None: the sweep's)."""

    pi: int
    po: int
    lut_multipliers: int = 0
    device: str | None = None
    unit: str = "direct"

    @classmethod
    def parse(cls, text: str) -> "Config":
        """[w]PIxPO[+N][@DEVICE]: a leading `w` is an array of Winograd units."""
        spec, _, device = text.strip().lower().partition("@")
        unit = "winograd" if spec.startswith("w") else "direct"
        array, _, luts = spec.removeprefix("w").partition("+")
        pi, po = (int(v) for v in array.split("x"))
        if device and device not in ecp5.DEVICES:
            raise ValueError(f"configuration {text!r}: device {device!r} is not one of {', '.join(ecp5.DEVICES)}")
        return cls(pi, po, int(luts) if luts else 0, device or None, unit)

    @property
    def name(self) -> str:
        """The folder and row suffix: 4x4, 2x2_lut8_25k, w3x4_lut36."""
        return (("w" if self.unit == "winograd" else "") + f"{self.pi}x{self.po}"
                + (f"_lut{self.lut_multipliers}" if self.lut_multipliers else "")
                + (f"_{self.device}" if self.device else ""))

    @property
    def label(self) -> str:
        return (("Winograd " if self.unit == "winograd" else "") + f"{self.pi}x{self.po}"
                + (f" +{self.lut_multipliers} LUT mult." if self.lut_multipliers else ""))


@dataclass(frozen=True)
class Sweep:
    """What every configuration of a sweep shares: the workload, the flow, the work folder."""

    root: Path
    model: str = MODEL
    input_size: tuple = INPUT_SIZE
    target: str = "ecp5"
    device: str = DEVICE
    speed: int = SPEED
    timeout_s: float | None = None

    @property
    def is_default(self) -> bool:
        """The sweep docs/synthesis.md describes (A0 224x224 on the LFE5U-85F, speed 8)."""
        return (self.model, tuple(self.input_size), self.target, self.device, self.speed) == \
            (MODEL, INPUT_SIZE, "ecp5", DEVICE, SPEED)


def rtl_command(out: Path, g, target: str = "ecp5") -> list[str]:
    luts = ["--lut-multipliers", str(g.lut_multipliers)] if g.lut_multipliers else []
    luts += ["--unit", g.unit] if g.unit != "direct" else []
    return ["rep-accel", "rtl", "-o", str(out), "--pi", str(g.pi), "--po", str(g.po), "--w-max", str(g.w_max),
            "--max-cg", str(g.max_cg), "--line-depth", str(g.line_depth), "--max-group", str(g.max_group),
            *luts, "--dsp", "ecp5" if target == "ecp5" else "generic"]


def synth_command(rtl: Path, out: Path, sweep: Sweep | None = None, device: str | None = None) -> list[str]:
    sweep = sweep or Sweep(Path("."))
    size = ",".join(map(str, sweep.input_size))
    device = ["--device", device or sweep.device, "--speed", str(sweep.speed)] if sweep.target == "ecp5" else \
        ["--clock-mhz", f"{TARGET_MHZ:g}"]
    return ["rep-accel", "synth", str(rtl), "--target", sweep.target, *device,
            "-o", str(out), "--model", sweep.model, "--input-size", size]


def _shown(path: Path) -> Path:
    """`path` relative to the current folder when it lies below it (for the commands shown)."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def run_config(config: Config, sweep: Sweep) -> dict:
    """Generate, synthesize, place and route one configuration; return its row (a dict).
    Runs as a Ray task: it writes only below sweep.root/{rtl,synth}_<config.name>."""
    pi, po = config.pi, config.po
    device = config.device or sweep.device
    root = sweep.root
    work = workload.zoo_workload(sweep.model, sweep.input_size)
    g = workload.sized_generics(work, pi, po, unit=config.unit, lut_multipliers=config.lut_multipliers)
    rtl, out = root / f"rtl_{config.name}", root / f"synth_{config.name}"
    row = {"pi": pi, "po": po, "config": config.name, "label": config.label, "device": device,
           "generics": g.to_dict(), "workload": work.name,
           "rtl_command": shlex.join(rtl_command(_shown(rtl), g, sweep.target)),
           "synth_command": shlex.join(synth_command(_shown(rtl), _shown(out), sweep, device))}
    t0 = time.monotonic()
    row["rtl_source"] = rtl_source_version()
    subprocess.run(rtl_command(rtl, g, sweep.target), check=True)
    row["rtl_seconds"] = time.monotonic() - t0
    design = synth.load_design(rtl)
    assert design.generics == g, (design.generics, g)
    options = {"device": device, "speed": sweep.speed} if sweep.target == "ecp5" else {}
    try:
        result = synth.run(design, out, sweep.target, timeout_s=sweep.timeout_s, **options)
        row["status"] = "ok"
    except synth.DoesNotFitError as e:
        result, row["status"] = e.result, "does not fit"
        row["error"] = str(e)
    except synth.ToolError as e:
        result, row["status"] = e.result, "tool failed"
        row["error"] = str(e)
    row["result"] = result.to_dict() if result is not None else None
    if (out / synth.NETLIST).is_file():
        row["high_fanout"] = high_fanout_nets(out / synth.NETLIST)
    if result is not None and result.fmax_mhz is not None:
        rep = workload.workload_report(work, g, result.fmax_mhz)
        row.update(cycles=rep.cycles, frames_per_second=rep.frames_per_second, mac_utilization=rep.utilization,
                   macs=rep.macs)
    else:
        rep = workload.workload_report(work, g, TARGET_MHZ)
        row.update(cycles=rep.cycles, frames_per_second=None, mac_utilization=rep.utilization, macs=rep.macs,
                   frames_per_second_at_target=rep.frames_per_second)
    return row


def high_fanout_nets(netlist: Path, count: int = 4) -> list[tuple[str, int]]:
    """The nets of a Yosys JSON netlist with the most cell-input loads: [(name, loads)]."""
    data = json.loads(netlist.read_text())
    mod = next(m for m in data["modules"].values() if m.get("attributes", {}).get("top"))
    loads: dict[int, int] = {}
    for cell in mod["cells"].values():
        for port, bits in cell["connections"].items():
            if cell.get("port_directions", {}).get(port) == "input":
                for b in bits:
                    if isinstance(b, int):
                        loads[b] = loads.get(b, 0) + 1
    names: dict[int, str] = {}
    for name, net in mod["netnames"].items():
        for b in net["bits"]:
            if isinstance(b, int) and (b not in names or len(name) < len(names[b])):
                names[b] = name
    top = sorted(loads.items(), key=lambda kv: -kv[1])[:count]
    return [(names.get(b, f"net {b}"), k) for b, k in top]


def _cell(res: dict, name: str) -> str:
    u = res.get("utilization", {}).get(name)
    if u is None:
        return ""
    return f"{u['used']:,} / {u['available']:,} ({100 * u['used'] / u['available']:.0f}%)"


def generic_table(rows: list[dict]) -> str:
    """Rows of the generic flow (Yosys alone: gates, no device, no Fmax) as a Markdown table,
    frames/s at TARGET_MHZ."""
    head = (f"| PI x PO | gates (Yosys) | flip-flops | memories (bits) | cycles / frame | workload | "
            f"frames/s at {TARGET_MHZ:g} MHz | yosys (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        res = r.get("result") or {}
        summary = res.get("summary", {})
        fps = r.get("frames_per_second_at_target")
        yosys = res.get("seconds", {}).get("yosys")
        lines.append(
            f"| {r['pi']}x{r['po']} | {summary.get('gates', 0):,} | {summary.get('flip_flops', 0):,} | "
            f"{summary.get('memories', 0)} ({summary.get('memory_bits', 0):,}) | {r['cycles']:,} | "
            f"{r.get('workload', '')} | {f'{fps:.2f}' if fps is not None else '-'} | "
            f"{f'{yosys:.0f}' if yosys is not None else ''} |")
    return "\n".join(lines)


def _label(row: dict) -> str:
    """A row's configuration as the table names it (rows of older runs have no label)."""
    return row.get("label") or f"{row['pi']}x{row['po']}"


def table(rows: list[dict]) -> str:
    """The results as a Markdown table (generic_table for rows of the generic flow)."""
    if rows and all((r.get("result") or {}).get("target") == "generic" for r in rows):
        return generic_table(rows)
    head = ("| device | PI x PO | LUT4 (Yosys) | logic cells TRELLIS_COMB | flip-flops | MULT18X18D | DP16KD | "
            "fits | Fmax (MHz) | >= 150 MHz | cycles / frame | A0 224x224 frames/s | at DDR3-800 | GOPS per DSP | "
            "yosys + nextpnr (s) |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        res = r.get("result") or {}
        cells = res.get("cells", {})
        fmax = res.get("fmax_mhz")
        fits = {True: "yes", False: "**no**", None: "?"}[res.get("fits")]
        fps = r.get("frames_per_second")
        secs = res.get("seconds", {})
        t = " + ".join(f"{secs[k]:.0f}" for k in ("yosys", "nextpnr") if k in secs) or ""
        dsps = cells.get("MULT18X18D", 0)
        gops = 2 * r["macs"] * fps / 1e9 / dsps if fps and dsps and r.get("macs") else None
        lines.append(
            f"| {ecp5.DEVICES[r.get('device', DEVICE)][0]} | {_label(r)} | "
            f"{cells.get('LUT4', 0):,} | {_cell(res, 'TRELLIS_COMB')} | "
            f"{_cell(res, 'TRELLIS_FF')} | {_cell(res, 'MULT18X18D')} | {_cell(res, 'DP16KD')} | {fits} | "
            f"{f'{fmax:.1f}' if fmax is not None else '-'} | "
            f"{('yes' if fmax >= TARGET_MHZ else '**no**') if fmax is not None else '-'} | {r['cycles']:,} | "
            f"{f'{fps:.2f}' if fps is not None else '-'} | "
            f"{f'{r[DDR3_KEY]:.2f}' if r.get(DDR3_KEY) is not None else '-'} | "
            f"{f'{gops:.2f}' if gops is not None else '-'} | {t} |")
    return "\n".join(lines)


def document(rows: list[dict], versions: dict, date: str, root: Path, estimates: str | None = None) -> str:
    g0 = rows[0]["generics"] if rows else {}
    parts = [
        "# Synthesis results (ECP5)",
        "",
        f"Generated by `python benchmarks/synth_sweep.py` on {date} ({platform.machine()}, Python "
        f"{platform.python_version()}). Do not edit by hand; rerun the script.",
        "",
        f"Devices: Lattice ECP5 (the table's first column), speed grade {SPEED}, package {ecp5.DEFAULT_PACKAGE}, "
        f"placed out of context (the core alone: no I/O pins). Verilog from `rep-accel rtl --dsp ecp5`: every product in a "
        f"MULT18X18D with its input, pipeline and output registers (Yosys maps a generic `a * b` to the DSP "
        f"but leaves its registers in the fabric). nextpnr aims at {TARGET_MHZ:g} MHz; Fmax is what it achieved "
        f"after routing (placement seed 1). "
        f"Buffers sized exactly for RepVGG-{MODEL} at {'x'.join(map(str, INPUT_SIZE))} (W_MAX = "
        f"{g0.get('w_max')}; tile groups of up to {g0.get('max_group')} tiles, docs/architecture.md \"Tile "
        f"groups\"; max_cg and line_depth per configuration in the notes). Frames/s: the "
        f"{len(workload.zoo_workload(MODEL, INPUT_SIZE).shapes)} conv layers back to back at the achieved Fmax, "
        f"cycles per frame from the schedule (`layout.layer_cycles`, what the simulator and the RTL's `cycles` "
        f"count, no stalls); the head (average pooling + FC) runs on the host and is not counted.",
        "",
        table(rows),
        "",
        best_per_device(rows),
        "",
        "GOPS per DSP: 2 x the useful MACs of a frame x frames/s / the MULT18X18D used. An array with more "
        "multipliers than the device's DSP blocks builds the rest as LUT multipliers (`--lut-multipliers`, "
        "the `+N LUT mult.` of a configuration; same cycles, same values).",
        "",
        "LUT4 is Yosys' count of mapped LUT4 cells; TRELLIS_COMB (what nextpnr places, of 83,640) also counts the "
        "two halves of every carry cell and the LUTs of distributed RAM. A design that does not fit stops in "
        "placement: its row gives what it needs, no Fmax.",
        "",
        "The clock is on the global clock network, as on a board: the flow marks the core's clock input "
        "ECP5_IS_GLOBAL, which nextpnr leaves to the full design and does not route (what its out-of-context "
        "mode does with every clock that has a driver; a core's clock input has none, and before the mark "
        "it was routed on general fabric to every register, the largest cause of congestion). The reset and "
        "the other nets with many loads (listed in the notes) are routed on general fabric.",
        "",
        "What the RTL does for timing on a nearly full device (the 4x4 array uses 144 of the 156 DSPs, which then "
        "sit far from the logic around them): every product goes through the DSP's own input, pipeline and output "
        "registers and one more fabric register beside the adder tree; every block RAM output goes straight into a "
        "register (line buffer in 1024-entry banks, kernels registered beside the buffer and again beside the "
        "DSPs, write ports registered beside the buffer), and where a bank is then selected, into a second "
        "register first (line buffer, weight buffer), so that the first can sit beside its block RAM (with one, "
        "nextpnr placed it beside the selection, up to 49 rows away: 4.1-4.3 ns of clock-to-output plus 3 ns of "
        "routing); the column delay's data inputs come from a register; the controller's stall decision and its "
        "last-position tests read registers only. Measured on this flow: an earlier version of this RTL with "
        "plain `a * b` multipliers reached 91 MHz at 4x4, later versions 127-141 MHz.",
        "",
        "What limits the 4x4 array's Fmax now: a DP16KD's data output without its output register (Yosys never "
        "sets REGMODE OUTREG) comes 4.1-4.3 ns after the clock, which leaves 2.4 ns of routing at 150 MHz, and "
        "nextpnr places the register that captures some of the 104 block RAMs' data 34-64 rows away (3.0-3.6 ns "
        "of routing), even when that register feeds only another register. Over the last four versions of the "
        "RTL (each moving one such register; the first with the clock on fabric) the 4x4 array's Fmax went 134.5, 140.5, "
        "138.6 and 127.4 MHz, every "
        "time limited by such a path: line buffer, weight buffer, column delay, line buffer again. The next step "
        "is the block RAM's own output register (DP16KD instantiated with REGMODE OUTREG, as the MULT18X18D are "
        "with theirs), for which nextpnr has timing tables of its own.",
        "",
        "## Notes per configuration",
        "",
    ]
    for r in rows:
        res = r.get("result") or {}
        g = r["generics"]
        parts.append(f"- **{_label(r)}** on {ecp5.DEVICES[r.get('device', DEVICE)][0]} (w_max {g['w_max']}, max_cg {g['max_cg']}, line_depth "
                     f"{g['line_depth']}, max_group {g.get('max_group', 1)}; RTL from "
                     f"{r.get('rtl_source', 'unknown')}): {r['status']}.")
        if r.get("error"):
            packed = r["status"] == "tool failed" and res.get("utilization")
            parts.append(f"  {r['error'].replace(str(root) + '/', '')}"
                         + ("; its resources are nextpnr's packing counts (before routing)" if packed else ""))
        if r.get("high_fanout"):
            parts.append("  Nets with the most loads: " + ", ".join(f"`{n}` {k:,}" for n, k in r["high_fanout"]) + ".")
        if res.get("critical_path"):
            parts.append(f"  Critical path: `{critical_path_summary(res['critical_path'])}`.")
        if r.get("frames_per_second_at_target") is not None:
            where = "on a device large enough" if r["status"] == "does not fit" else "if it routed at that clock"
            parts.append(f"  At {TARGET_MHZ:g} MHz it would run {r['frames_per_second_at_target']:.2f} frames/s "
                         f"({r['cycles']:,} cycles per frame) {where}.")
    if estimates:
        parts += ["", "## Estimated configurations (not placed and routed)", "",
                  "From `python benchmarks/device_sweep.py` (run by this script): every unit kind, array, "
                  "tile-group size and device, the multipliers on the DSP blocks first and the rest as LUT "
                  "multipliers. Cycles per frame are exact (the simulator's schedule); logic cells and block RAM "
                  "are ESTIMATES from the measured rows above (direct arrays; the Winograd arrays' packing) and "
                  "from the Winograd components measured alone (`benchmarks/winograd_unit_cost.py`); frames/s are "
                  "at an ASSUMED 150 MHz, because most of these have not been placed and routed and the Winograd "
                  "arrays' routing has not finished on this machine (notes above). Candidates estimated not to fit "
                  "(more than 85% of the logic cells, or more block RAM than the device has) are left out of the "
                  "table.", "", estimates]
    parts += ["", "## Commands", "", "```"]
    for r in rows:
        parts += [r["rtl_command"], r["synth_command"]]
    parts += ["```", "",
              "`rep-accel synth` writes yosys.log, nextpnr.log (with the critical path), nextpnr's report and "
              "result.json to its -o folder.", "", "## Tools", ""]
    for k, v in versions.items():
        parts.append(f"- {k}: {v}")
    parts.append("")
    return "\n".join(parts)


def best_per_device(rows: list[dict]) -> str:
    """A line per device: the row with the most frames/s at its achieved Fmax among those that fit."""
    best: dict[str, dict] = {}
    for r in rows:
        fps = r.get("frames_per_second")
        if fps and (r.get("result") or {}).get("fits"):
            d = r.get("device", DEVICE)
            if d not in best or fps > best[d]["frames_per_second"]:
                best[d] = r
    return "\n".join(f"Best on the {ecp5.DEVICES[d][0]}: {_label(r)}, {r['frames_per_second']:.2f} frames/s at "
                     f"{r['result']['fmax_mhz']:.1f} MHz." for d, r in sorted(best.items()))


def rtl_source_version() -> str:
    """The git commit of the RTL generator, noting uncommitted changes to hdl/ or rep_accel/."""
    def git(*a):
        return subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True).stdout.strip()
    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "hdl", "rep_accel")
    return f"git {head}" + (" with uncommitted changes in hdl/ or rep_accel/" if dirty else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", default="1x1,2x2,4x4,8x8", help="PIxPO list (default 1x1,2x2,4x4,8x8)")
    p.add_argument("--out", default=str(REPO / "out" / "synth_sweep"), help="work folder (rtl, logs, rows)")
    p.add_argument("--doc", default=str(REPO / "docs" / "synthesis.md"), help="Markdown file to write ('' for none)")
    p.add_argument("--reuse", action="store_true", help="reuse a configuration's row.json from an earlier run")
    p.add_argument("--timeout", type=float, default=None, help="time limit per tool run (s)")
    p.add_argument("--target", choices=synth.TARGETS, default="ecp5",
                   help="ecp5 (default: Yosys + nextpnr) or generic (Yosys alone, no Fmax)")
    p.add_argument("--model", default=MODEL, help=f"zoo model the buffers are sized for (default {MODEL})")
    p.add_argument("--input-size", default=",".join(map(str, INPUT_SIZE)),
                   help=f"C,H,W of that model's input (default {','.join(map(str, INPUT_SIZE))})")
    p.add_argument("--workers", type=int, help="CPUs of the local Ray instance (default: all cores)")
    p.add_argument("--address", help="run on this Ray cluster (host:port from `ray start --head`, or auto)")
    p.add_argument("--serial", action="store_true", help="run the configurations one after the other here")
    args = p.parse_args(argv)

    source_version = rtl_source_version()
    root = Path(args.out).resolve()
    root.mkdir(parents=True, exist_ok=True)
    sweep = Sweep(root, args.model, parse_input_size(args.input_size), args.target, timeout_s=args.timeout)
    if args.doc and not sweep.is_default:
        p.error(f"--doc describes the ECP5 sweep of {MODEL} {'x'.join(map(str, INPUT_SIZE))}; "
                f"give --doc '' with --target/--model/--input-size")
    try:
        configs = [Config.parse(cfg) for cfg in args.configs.split(",")]
    except ValueError as e:
        p.error(f"--configs: {e} (PIxPO[+LUT_MULTIPLIERS][@DEVICE], e.g. 4x4 or 2x2+8@25k)")
    rows: dict[Config, dict] = {}
    for c in configs:
        row_file = root / f"row_{c.name}.json"
        if args.reuse and row_file.is_file():
            rows[c] = json.loads(row_file.read_text())
            print(f"{c.name}: reused {row_file}", file=sys.stderr)
    todo = [c for c in configs if c not in rows]
    with distributed.session(args.workers, args.address, args.serial) as engine:
        print(f"{len(todo)} configuration(s) on {engine.name}: {', '.join(c.name for c in todo)}",
              file=sys.stderr, flush=True)
        for index, row in engine.map(run_config, todo, sweep):
            (root / f"row_{todo[index].name}.json").write_text(json.dumps(row, indent=1) + "\n")
            rows[todo[index]] = row
            print(table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    rows = [rows[c] for c in configs]
    work = workload.zoo_workload(sweep.model, sweep.input_size)
    for r in rows:
        r.setdefault("macs", work.macs)   # rows of runs before the field
        fmax = (r.get("result") or {}).get("fmax_mhz")
        if fmax and DDR3_KEY not in r:   # frames/s with the host streams from DDR3 at the achieved clock
            g = HardwareGenerics.from_dict(r["generics"])
            r[DDR3_KEY] = workload.workload_report(work, g, fmax, memory.parse(DDR3, fmax)).frames_per_second

    versions = {}
    for r in rows:
        for tool, info in ((r.get("result") or {}).get("tools") or {}).items():
            versions[tool] = ", ".join(str(info[k]) for k in ("version", "package") if info.get(k))
    versions["rep-accel"] = source_version
    date = datetime.date.today().isoformat()
    print(table(rows))
    if args.doc:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        import device_sweep
        est = device_sweep.markdown(device_sweep.estimate(work, list(ecp5.DEVICE_RESOURCES), TARGET_MHZ), TARGET_MHZ)
        Path(args.doc).write_text(document(rows, versions, date, root, est))
        print(f"wrote {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
