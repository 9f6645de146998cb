"""The fastest RepVGG-A0 configuration per ECP5 device (issue 15): unit kind x array shape x
LUT multipliers x tile-group size on the LFE5U-25F, -45F and -85F, side by side.

    python benchmarks/device_sweep.py [--model A0] [--devices 25k 45k 85k] [--clock-mhz 150]

For every candidate:
* cycles per frame are EXACT: the simulator's schedule (`sim.network.schedule_report`, the
  count cycle mode steps), with unlimited memory and with 16-bit DDR3-800 (efficiency 0.7);
* the array's multipliers go to the device's DSP blocks first and the rest to LUT
  multipliers (the generic `lut_multipliers`);
* block RAM is ESTIMATED from the buffers the network needs (`workload.sized_generics`)
  and the RTL's banking (`ecp5.block_rams` per bank: weights in banks of 512 kernels, line
  buffers in banks of 1024 entries of one-byte memories, column delays in banks of 2048
  entries of one-byte memories; a Winograd lane has one more row and column); it is checked
  against the measured rows below;
* logic cells (TRELLIS_COMB) are ESTIMATED: the direct array's measured cells (a fixed part
  plus a part per unit, fitted to the measured rows), plus per LUT multiplier, plus for
  Winograd units the measured extra of each Winograd component (benchmarks/
  winograd_unit_cost.py) and of the columns, the whole scaled to the measured Winograd
  3x3 array (MEASURED_WINOGRAD_LOGIC);
* frames/s are at --clock-mhz, an ASSUMED clock for every candidate (the measured Fmax of
  the arrays placed and routed is in docs/synthesis.md).

GOPS per DSP = 2 x useful MACs x frames/s / DSPs used (issue 15's figure). A candidate
"fits" when its estimated block RAM and logic cells are within the device's and its logic
stays under LOGIC_LIMIT of the device (room for routing). Printed figures only.
"""

from __future__ import annotations

import argparse

from rep_accel import memory, workload
from rep_accel.families import ecp5
from rep_accel.generics import UNIT_KINDS
from rep_accel.hdl.unit import WEIGHT_BANK_DEPTH
from rep_accel.hdl.window import COLUMN_BANK_DEPTH, LINE_BANK_DEPTH
from rep_accel.sim.network import schedule_report

# Logic is counted in nextpnr's logic cells (TRELLIS_COMB: a LUT4, or half a CCU2C carry
# cell); a component measured with Yosys alone counts LUT4 + 2 x CCU2C.
#: Measured TRELLIS_COMB of the direct array with buffers for A0 at 224x224, max_group 16,
#: --dsp ecp5, LFE5U-85F (benchmarks/synth_sweep.py on the RTL of 6729a1f, 2026-12-02;
#: docs/synthesis.md).
MEASURED_DIRECT_LOGIC = {(1, 1): 4876, (2, 2): 8748, (4, 4): 18305}
#: Measured DP16KD of those runs, to check the block-RAM estimate against.
MEASURED_DIRECT_DP16KD = {(1, 1): 36, (2, 2): 48, (4, 4): 104}
#: Measured TRELLIS_COMB and DP16KD of the Winograd 3x3 array (same buffers and flow, nextpnr's
#: packing of the RTL of 1601f2f, 2026-12-02; no LUT multipliers: 144 of the 156 DSPs).
MEASURED_WINOGRAD_LOGIC = {(3, 3): 34402}
MEASURED_WINOGRAD_DP16KD = {(3, 3): 162}
#: One 9-bit x int8 LUT multiplier (docs/architecture.md, "Unit kinds and LUT multipliers":
#: nine cost 1,913 logic cells on the 1x1 array).
DIRECT_LUT_MULTIPLIER_LOGIC = 1913 / 9
#: The Winograd datapath, each component alone (benchmarks/winograd_unit_cost.py, 2026-12-02,
#: max_cg 512, dsp ecp5): a WinogradUnit (0 LUT4 + 272 CCU2C) over a ConvUnit (140 + 57);
#: an input transform per input lane (0 + 176) and a weight transform per lane (237 + 78);
#: an output transform per output column (804 + 204); an 11 x 12-bit LUT multiplier (the unit
#: with 16 LUT multipliers, 4,045 + 816, less the one with none, / 16).
WINOGRAD_UNIT_EXTRA_LOGIC = 544 - 254
WINOGRAD_LANE_LOGIC = 352 + 393
WINOGRAD_OUTPUT_TRANSFORM_LOGIC = 1212
WINOGRAD_LUT_MULTIPLIER_LOGIC = (5677 - 544) / 16
#: Each output column's 16 Winograd-domain sums of 34 bits (a direct column has one of 32)
#: and its result buffer's selection, before the scaling to the measured array: 16 adders of
#: 34 bits (17 CCU2C each) and about three requantizers' worth (~600 cells each).
WINOGRAD_COLUMN_GUESS_LOGIC = 16 * 34 + 3 * 600
#: Highest share of a device's logic cells a candidate may use and still count as fitting.
LOGIC_LIMIT = 0.85
ARRAYS = ((1, 1), (2, 2), (2, 4), (3, 4), (4, 4), (4, 5), (4, 6), (4, 7), (4, 8), (8, 8))
MAX_GROUPS = (4, 8, 16)


def banked(depth: int, bank: int, width: int) -> int:
    """DP16KD of a memory of `depth` words of `width` bits in banks of `bank` words."""
    full, rest = divmod(depth, bank)
    return full * ecp5.block_rams(bank, width) + (ecp5.block_rams(rest, width) if rest else 0)


def block_ram_estimate(g) -> int:
    """DP16KD of the array's buffers (see the module docstring): per unit the weight banks;
    per lane a one-byte memory per row of each line-buffer bank and per row byte of each
    column-delay bank (hdl/window.py), for each of the column delay's columns."""
    kind = UNIT_KINDS[g.unit]
    weights = g.pi * g.po * banked(g.max_cg, WEIGHT_BANK_DEPTH, 8 * kind.kernel_word_bytes)
    line = g.pi * kind.line_rows * banked(g.line_depth, LINE_BANK_DEPTH, 8)
    rows = kind.line_rows + 1
    column_delay = g.pi * kind.line_rows * rows * banked(g.max_cg, COLUMN_BANK_DEPTH, 8)
    return weights + line + column_delay


def direct_logic(pi: int, po: int) -> float:
    """The direct array's logic cells without LUT multipliers: fixed + per unit, fitted to
    the measured rows (least squares over the measured arrays)."""
    xs = [p * q for p, q in MEASURED_DIRECT_LOGIC]
    ys = list(MEASURED_DIRECT_LOGIC.values())
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    return my + slope * (pi * po - mx)


def _winograd_components(pi: int, po: int, lut_multipliers: int) -> float:
    """The Winograd array's cells from its components, before the scaling to the measured array."""
    return (direct_logic(pi, po) + pi * po * WINOGRAD_UNIT_EXTRA_LOGIC + pi * WINOGRAD_LANE_LOGIC
            + po * (WINOGRAD_OUTPUT_TRANSFORM_LOGIC + WINOGRAD_COLUMN_GUESS_LOGIC)
            + lut_multipliers * WINOGRAD_LUT_MULTIPLIER_LOGIC)


def winograd_scale() -> float:
    """Measured over component-estimated cells of the measured Winograd arrays (their mean)."""
    ratios = [cells / _winograd_components(p, q, 0) for (p, q), cells in MEASURED_WINOGRAD_LOGIC.items()]
    return sum(ratios) / len(ratios)


def logic_estimate(g) -> float:
    """Logic cells (TRELLIS_COMB) of the array `g`: an estimate (module docstring)."""
    if g.unit == "winograd":
        return _winograd_components(g.pi, g.po, g.lut_multipliers) * winograd_scale()
    return direct_logic(g.pi, g.po) + g.lut_multipliers * DIRECT_LUT_MULTIPLIER_LOGIC


def candidates(work, device: str):
    """Every unit kind x array x tile-group size, its multipliers on the device's DSP blocks
    first and LUT multipliers for the rest (HardwareGenerics, sized for `work`)."""
    res = ecp5.DEVICE_RESOURCES[device]
    for unit in ("direct", "winograd"):
        for pi, po in ARRAYS:
            for max_group in MAX_GROUPS:
                multipliers = pi * po * UNIT_KINDS[unit].multipliers
                yield workload.sized_generics(work, pi, po, max_group, unit, max(0, multipliers - res["MULT18X18D"]))


def estimate(work, devices, clock_mhz: float) -> list[dict]:
    """One row per candidate and device: its generics, estimated logic cells and block RAM,
    whether it fits, and (when it fits) the exact cycles per frame and frames/s at the
    assumed clock with unlimited memory and with 16-bit DDR3-800, and GOPS per DSP."""
    ddr3 = memory.parse("ddr3-16-800", clock_mhz)
    layers = list(zip(work.names, work.shapes))
    rows = []
    for device in devices:
        res = ecp5.DEVICE_RESOURCES[device]
        for g in candidates(work, device):
            row = {"device": device, "generics": g, "logic": logic_estimate(g), "block_rams": block_ram_estimate(g)}
            row["limit"] = ("block RAM" if row["block_rams"] > res["DP16KD"] else
                            "logic" if row["logic"] > LOGIC_LIMIT * res["TRELLIS_COMB"] else None)
            if row["limit"] is None:
                r = schedule_report(layers, g, clock_mhz)
                rm = schedule_report(layers, g, clock_mhz, ddr3)
                row.update(cycles=r.cycles, fps=r.frames_per_second, fps_ddr3=rm.frames_per_second,
                           gops_per_dsp=2 * r.macs * r.frames_per_second / 1e9 / max(1, g.dsp_multipliers))
            rows.append(row)
    return rows


def best(rows: list[dict], device: str) -> dict | None:
    """The fitting row of `device` with the most frames/s at DDR3-800."""
    fitting = [r for r in rows if r["device"] == device and r["limit"] is None]
    return max(fitting, key=lambda r: r["fps_ddr3"], default=None)


def markdown(rows: list[dict], clock_mhz: float) -> str:
    """The fitting candidates of every device and the best per device, as Markdown."""
    head = ("| device | unit | PI x PO | max_group | multipliers (DSP + LUT) | logic cells (est.) | DP16KD (est.) | "
            f"cycles / frame | frames/s at {clock_mhz:g} MHz (assumed) | at DDR3-800 | GOPS per DSP |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        if r["limit"] is not None:
            continue
        g = r["generics"]
        lines.append(f"| {ecp5.DEVICES[r['device']][0]} | {g.unit} | {g.pi}x{g.po} | {g.max_group} | {g.multipliers} "
                     f"({g.dsp_multipliers} + {g.lut_multipliers}) | {r['logic']:,.0f} | {r['block_rams']} | "
                     f"{r['cycles']:,} | {r['fps']:.2f} | {r['fps_ddr3']:.2f} | {r['gops_per_dsp']:.2f} |")
    lines.append("")
    for device in dict.fromkeys(r["device"] for r in rows):
        b = best(rows, device)
        over = [r for r in rows if r["device"] == device and r["limit"] is not None
                and (b is None or r["generics"].multipliers > b["generics"].multipliers)]
        nxt = min(over, key=lambda r: r["generics"].multipliers, default=None)
        text = (f"- **{ecp5.DEVICES[device][0]}**: best {b['generics'].unit} {b['generics'].pi}x{b['generics'].po}, "
                f"max_group {b['generics'].max_group}: {b['fps']:.2f} frames/s, {b['fps_ddr3']:.2f} at DDR3-800"
                if b else f"- **{ecp5.DEVICES[device][0]}**: nothing fits")
        if nxt:
            g = nxt["generics"]
            text += (f"; the next larger candidate, {g.unit} {g.pi}x{g.po} ({g.multipliers} multipliers, "
                     f"{g.lut_multipliers} of them LUT multipliers), is limited by {nxt['limit']} "
                     f"({nxt['logic']:,.0f} logic cells, {nxt['block_rams']} DP16KD estimated)")
        lines.append(text + ".")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="A0")
    ap.add_argument("--devices", nargs="+", default=["25k", "45k", "85k"], choices=sorted(ecp5.DEVICE_RESOURCES))
    ap.add_argument("--clock-mhz", type=float, default=150.0, help="assumed clock of every candidate (MHz)")
    args = ap.parse_args()
    work = workload.zoo_workload(args.model, (3, 224, 224))
    measured = [("direct", MEASURED_DIRECT_DP16KD), ("winograd", MEASURED_WINOGRAD_DP16KD)]
    print("block-RAM estimate against the measured arrays (DP16KD):",
          ", ".join(f"{unit} {p}x{q} {block_ram_estimate(workload.sized_generics(work, p, q, 16, unit))} est / "
                    f"{m} measured" for unit, table in measured for (p, q), m in table.items()))
    print(f"Winograd logic: the component estimate scaled by {winograd_scale():.3f} (the measured arrays)")
    print(f"{work.name}, every candidate at an assumed {args.clock_mhz:g} MHz; those estimated not to fit are left out")
    print(markdown(estimate(work, args.devices, args.clock_mhz), args.clock_mhz))


if __name__ == "__main__":
    main()
