"""Resource cost of the Winograd F(2x2,3x3) datapath (hdl/winograd.py) against the direct unit.

    python benchmarks/winograd_unit_cost.py [--out out/winograd_unit_cost] [--max-cg 512]
                                            [--only NAME,...] [--seed 1] [--timeout S]

Each component alone, out of context, through the project's ECP5 flow (`rep_accel.synth.run_ecp5`:
Yosys synth_ecp5, then nextpnr-ecp5 on an LFE5U-85F, speed 8, aiming at 150 MHz):
one WinogradUnit (max_cg 512, dsp ecp5) with lut_taps 0 and 16, one input, weight and
output transform, and one direct ConvUnit (hdl/unit.py, max_cg 512, dsp ecp5) for
comparison. Prints a table of Yosys' mapped cells (LUT4, TRELLIS_FF, CCU2C, MULT18X18D,
DP16KD) and nextpnr's Fmax of `clk`, and writes each run's logs and result.json under
--out/<name>/ plus the table's rows as --out/summary.json.

Out of context, a component's ports are the design's edges: paths from input ports into
the first registers and from the last registers to output ports are not constrained the
way they are inside the array, so the Fmax is the component's register-to-register figure.

A benchmark run on demand (minutes per component on a quiet machine), not a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from amaranth.back import verilog

from rep_accel import synth
from rep_accel.families import ecp5
from rep_accel.hdl import unit, winograd

DEVICE, SPEED = "85k", 8
#: The synthesized Verilog modules: name -> (top module name, constructor of the component).
COMPONENTS = {
    "winograd_unit_lut0": ("wino_unit", lambda cg: winograd.WinogradUnit(cg, dsp="ecp5", lut_taps=0)),
    "winograd_unit_lut16": ("wino_unit_lut", lambda cg: winograd.WinogradUnit(cg, dsp="ecp5", lut_taps=16)),
    "winograd_input_transform": ("wino_input", lambda cg: winograd.WinogradInputTransform()),
    "winograd_weight_transform": ("wino_weight", lambda cg: winograd.WinogradWeightTransform()),
    "winograd_output_transform": ("wino_output", lambda cg: winograd.WinogradOutputTransform()),
    "direct_unit": ("direct_unit", lambda cg: unit.ConvUnit(cg, dsp="ecp5")),
}
COLUMNS = ("LUT4", "TRELLIS_FF", "CCU2C", "MULT18X18D", "DP16KD")


def run_component(name: str, max_cg: int, out: Path, seed: int, timeout_s: float | None) -> dict:
    """Verilog of one component, then the ECP5 flow into out/<name>; its row of the table."""
    top, make = COMPONENTS[name]
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / f"{top}.v"
        source.write_text(verilog.convert(make(max_cg), name=top, emit_src=False))
        row = {"component": name, "top": top, "max_cg": max_cg}
        try:
            result = synth.run_ecp5(synth.Design([source], top), out / name, device=DEVICE, speed=SPEED,
                                    seed=seed, timeout_s=timeout_s, force=True)
            row["status"] = "ok"
        except synth.ToolError as e:
            result, row["status"], row["error"] = e.result, "failed", str(e)
    if result is not None:
        row.update({c: int(result.cells.get(c, 0)) for c in COLUMNS})
        row["fmax_mhz"] = result.fmax_mhz
        row["critical_path"] = result.critical_path[-1].strip() if result.critical_path else None
        row["seconds"] = result.seconds
    return row


def table(rows: list[dict]) -> str:
    head = f"| component | {' | '.join(COLUMNS)} | Fmax MHz |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 2)]
    for r in rows:
        cells = " | ".join(f"{r[c]:,}" if c in r else "-" for c in COLUMNS)
        fmax = f"{r['fmax_mhz']:.1f}" if r.get("fmax_mhz") else r.get("status", "-")
        lines.append(f"| {r['component']} | {cells} | {fmax} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("out/winograd_unit_cost"))
    ap.add_argument("--max-cg", type=int, default=512, help="weight-buffer entries of the units (default 512)")
    ap.add_argument("--only", default=",".join(COMPONENTS), help="comma-separated components: " + ", ".join(COMPONENTS))
    ap.add_argument("--seed", type=int, default=1, help="nextpnr's placement seed")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per tool run")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in COMPONENTS]
    if unknown:
        print(f"--only: unknown component(s) {', '.join(unknown)}; choose from {', '.join(COMPONENTS)}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(run_component(name, args.max_cg, args.out, args.seed, args.timeout))
        print(table(rows[-1:]).splitlines()[-1], flush=True)
        (args.out / "summary.json").write_text(json.dumps(rows, indent=1) + "\n")
    print(f"\n{ecp5.DEVICES[DEVICE][0]}, speed {SPEED}, out of context, Yosys synth_ecp5 cells; "
          f"max_cg {args.max_cg}, dsp ecp5\n")
    print(table(rows))
    return 0 if all(r["status"] == "ok" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
