"""RepVGG-A0 and B0 at 3x224x224 on the 4x4 array against the external memory: MAC
utilization per layer class, external bytes per frame against the minimum, frames/s at
150 MHz with unlimited memory, 16-bit DDR3-800 and 16-bit SDR SDRAM-166 (issue 14,
docs/architecture.md "External memory").

    python benchmarks/memory_model.py [--clock-mhz 150] [--pi 4 --po 4] [--models A0 B0]
                                      [--memory unlimited ddr3-16-800 sdr16-166]
                                      [--units direct winograd] [--max-group 1 16]

The buffers are sized as `rep-accel synth --model A0` sizes them (`workload.sized_generics`:
the smallest w_max, max_cg and line_depth the network needs), and the line and weight
buffers are compared with the LFE5U-85F's block RAM. Cycles are fast mode's
(`sim.network.schedule_report`: `layout.layer_cycles` with unlimited memory, the engine's
timing replay under a memory model, equal to cycle mode's count). Layer classes: `stem`
(the first layer, stride 2, 3 input channels), `stride-2` (the other stride-2 layers),
`stride-1`. Printed figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import time

from rep_accel import memory, workload
from rep_accel.families import ecp5
from rep_accel.sim.network import schedule_report

#: LFE5U-85F block RAM: 208 DP16KD of 18 kbit, 2 KiB of 8-bit data each.
ECP5_85F_BRAM_BYTES = 208 * ecp5.BLOCK_RAM_BYTES
CLASSES = ("stem", "stride-2", "stride-1")


def layer_class(index: int, stride: int) -> str:
    return "stem" if index == 0 else ("stride-2" if stride == 2 else "stride-1")


def class_figures(report, generics):
    """{class: (utilization, share of cycles)} and the total utilization."""
    peak = generics.peak_macs_per_cycle
    out = {}
    for cls in CLASSES:
        rows = [lr for k, lr in enumerate(report.layers) if layer_class(k, lr.stride) == cls]
        cycles = sum(lr.cycles for lr in rows)
        out[cls] = (sum(lr.macs for lr in rows) / (peak * cycles) if cycles else 0.0, cycles / report.cycles)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clock-mhz", type=float, default=150.0)
    ap.add_argument("--pi", type=int, default=4)
    ap.add_argument("--po", type=int, default=4)
    ap.add_argument("--models", nargs="+", default=["A0", "B0"])
    ap.add_argument("--max-group", type=int, nargs="+", default=[1, 16],
                    help="tiles per tile group to compare (1: one tile at a time)")
    ap.add_argument("--memory", nargs="+", default=["unlimited", "ddr3-16-800", "sdr16-166"],
                    help="memory specs as `--memory` takes them")
    ap.add_argument("--units", nargs="+", default=["direct"], choices=["direct", "winograd"],
                    help="unit kinds to compare (the simulator's schedule of each)")
    args = ap.parse_args()
    memories = [(spec, memory.parse(spec, args.clock_mhz)) for spec in args.memory]
    for spec, m in memories:
        print(f"memory {spec}: " + ("every stream one beat per cycle" if m is None else m.label()))
    for name, unit, max_group in [(n, u, k) for n in args.models for u in args.units for k in args.max_group]:
        work = workload.zoo_workload(name, (3, 224, 224))
        g = workload.sized_generics(work, args.pi, args.po, max_group, unit)
        on_chip = g.line_buffer_bytes + g.weight_buffer_bytes
        print(f"\n{work.name} on PI={g.pi} PO={g.po} {unit} units ({g.multipliers} multipliers), max_group "
              f"{g.max_group} (w_max {g.w_max}, max_cg {g.max_cg}, "
              f"line_depth {g.line_depth}): "
              f"line buffer {g.line_buffer_bytes / 1024:.1f} KiB + weight buffer {g.weight_buffer_bytes / 1024:.1f} KiB "
              f"= {on_chip / 1024:.1f} KiB of the LFE5U-85F's {ECP5_85F_BRAM_BYTES / 1024:.0f} KiB block RAM")
        first = True
        for spec, m in memories:
            t = time.perf_counter()
            r = schedule_report(list(zip(work.names, work.shapes)), g, args.clock_mhz, m)
            dt = time.perf_counter() - t
            if first:
                print(f"  external bytes per frame: {r.bytes / 1e6:.2f} MB = {r.bytes / r.min_bytes:.2f}x the minimum "
                      f"{r.min_bytes / 1e6:.2f} MB (activations read {r.act_read_bytes / 1e6:.2f} MB, parameters "
                      f"{r.weight_read_bytes / 1e6:.2f} MB, activations written {r.act_write_bytes / 1e6:.2f} MB)")
                first = False
            cls = class_figures(r, g)
            per_class = ", ".join(f"{c} {u:.1%} ({share:.0%} of cycles)" for c, (u, share) in cls.items())
            bound = sum(lr.bound == "memory" for lr in r.layers)
            if m is not None:  # what this memory allows at the least traffic (every layer at its minimum)
                floor = sum(m.memory_cycles(lr.min_bytes) for lr in r.layers)
                per_class += f"; at the minimum traffic this memory allows {args.clock_mhz * 1e6 / floor:.1f} frames/s"
            print(f"  {spec:>12}: {r.cycles:>11,} cycles, {r.frames_per_second:6.2f} frames/s at {args.clock_mhz:g} MHz "
                  f"({r.frames_per_second / r.frames_per_second_unlimited:.1%} of unlimited), MAC utilization "
                  f"{r.utilization:.1%}: {per_class}; {bound} of {len(r.layers)} layers memory-bound "
                  f"[{dt:.2f} s]")


if __name__ == "__main__":
    main()
