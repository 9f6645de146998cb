"""HDL simulation speed against the simulator's cycle mode, on the same layer.

    python benchmarks/rtl_speed.py [--pi 8 --po 8] [--opt -Os] [--repeats 3] [--sim verilator]

One layer (default 64 -> 32 channels, 16x16, stride 1, random parameters and input) runs
`--repeats` times on the generated Verilog, compiled by Verilator (or Icarus) and driven by
the cocotb testbench exactly as in the regression (rep_accel.verification: every cycle the
host drives the streams, samples every port, records the trace), and `--repeats` times
in the Numba cycle mode (`rep_accel.sim.cycle.run_layer`, no trace, after one warm-up).
Both produce the same outputs and the same cycle count (checked). Speed = simulated clock
cycles / wall seconds of the clocked loop (HDL) or of run_layer (Numba), best of the
repeats. The HDL figure is the verification speed: it includes the cocotb host, which
dominates for small arrays. The last line is `ratio_numba_vs_verilator=<numba / HDL>`.

The first run of a configuration compiles it (an 8x8 array at -Os: several minutes on two
cores); builds are cached like the tests' ($REP_ACCEL_SIM_BUILD or ~/.cache/rep-accel).
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape, check_fits, layer_cycles
from rep_accel.sim import cycle
from rep_accel.verification import cases as C
from rep_accel.verification import runner as R


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pi", type=int, default=8)
    ap.add_argument("--po", type=int, default=8)
    ap.add_argument("--cin", type=int, default=64)
    ap.add_argument("--cout", type=int, default=32)
    ap.add_argument("--size", type=int, default=16, help="input height and width (pixels)")
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--sim", choices=R.SIMULATORS, default="verilator")
    ap.add_argument("--opt", default="-Os", help="C++ optimization of the Verilator model (default -Os)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--build-cache", help="build cache folder (default as rep-accel verify)")
    args = ap.parse_args()

    shape = LayerShape(cin=args.cin, cout=args.cout, groups=1, stride=args.stride, height=args.size, width=args.size)
    cg = -(-args.cin // args.pi)
    g = HardwareGenerics(pi=args.pi, po=args.po, w_max=max(3, args.size), max_cg=cg, line_depth=args.size * cg)
    check_fits(shape, g)
    rng = np.random.default_rng(args.seed)
    case = C.layer_case(rng, "bench", shape)
    n_cycles = layer_cycles(shape, g)
    print(f"layer {shape.cin}->{shape.cout}, {shape.height}x{shape.width}, stride {shape.stride} on a "
          f"{g.pi}x{g.po} array: {n_cycles:,} cycles per run, {args.repeats} runs each")

    t0 = time.perf_counter()
    build = R.build_rtl(g, args.sim, cache_dir=args.build_cache, opt=args.opt)
    how = "cached" if build.cached else f"compiled in {time.perf_counter() - t0:.0f} s"
    with tempfile.TemporaryDirectory() as tmp:
        C.write_job(tmp, C.Job(g, cases=[C.LayerCase(f"bench{k}", case.layer, case.x, trace=False)
                                         for k in range(args.repeats)]))
        outcome = R.run_job(build, tmp)
        outs = C.read_outputs(tmp)
    recs = outcome.results["records"]
    if not all(r["passed"] for r in recs):
        raise SystemExit(f"the RTL run failed: {[r['failures'] for r in recs if not r['passed']]}")
    hdl = max(r["clock_cycles"] / r["rtl_seconds"] for r in recs)

    params = cycle.layer_params(case.layer, g)
    ref = cycle.run_layer(case.x, shape, params, g)  # warm-up (Numba compile or cache load)
    times = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        res = cycle.run_layer(case.x, shape, params, g)
        times.append(time.perf_counter() - t)
    assert res.cycles == ref.cycles == recs[0]["rtl_cycles"] == n_cycles
    assert np.array_equal(res.output, outs["out0"])
    numba = (res.cycles + 1) / min(times)  # the same clock cycles as the HDL loop (through `done`)

    name = f"{args.sim} ({args.opt}, {how}) + cocotb host" if args.sim == "verilator" else f"{args.sim} + cocotb host"
    print(f"{'simulator':<50} {'cycles/s':>12}")
    print(f"{name:<50} {hdl:>12,.0f}")
    print(f"{'numba cycle mode (rep_accel.sim.cycle)':<50} {numba:>12,.0f}")
    print("outputs and cycle counts equal")
    print(f"ratio_numba_vs_verilator={numba / hdl:.1f}")


if __name__ == "__main__":
    main()
