"""cocotb regression of `--dsp ecp5` Verilog whose memories are large enough to be block
RAMs: the weight buffer, line buffer and column delay are then DP16KD instances with their
output register (rep_accel/families/ecp5.py registered_block_ram), simulated with their
model (hdl/models/DP16KD.v), against the simulator and the golden model: every output beat,
the cycles and the whole port trace, on the coverage list (every layer class, tile groups)
and under the four host stall combinations. The simulator knows nothing of block RAMs:
equal results mean the instances give the `Memory` path's values with its latency.

Seeds: printed; replay with REP_ACCEL_SEED=<seed>.
"""

import numpy as np
import pytest

from cocotb_cases import build, coverage_cases, main_sim, run, seed, stall_cases
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape
from rep_accel.verification import cases as C

# Buffers past Yosys' distributed-RAM threshold (ecp5.block_ram_mode): 320 kernels (two
# 512 x 36 blocks per unit), 640 line-buffer entries (one 2048 x 9 block per row byte) and
# 320 column-delay entries (one block per row byte of each bank).
G_1X1_BRAM = HardwareGenerics(pi=1, po=1, w_max=8, max_cg=320, line_depth=640, max_group=4)
G_W1X1_BRAM = G_1X1_BRAM.replace(unit="winograd")


def _check_all(outcome, n_cases: int) -> None:
    recs = outcome.results["records"]
    assert len(recs) == n_cases
    for r in recs:
        assert r["passed"], (r["name"], r["failures"])
        assert r["trace_compared"] and r["trace_equal"], r["name"]
        assert r["rtl_cycles"] == r["sim_cycles"] == r["rtl_cycles_reported"], r["name"]
        if not r["stalled"]:
            assert r["rtl_cycles"] == r["layer_cycles"], r["name"]


@pytest.mark.parametrize("g, block_rams", [(G_1X1_BRAM, 2 + 2 + 6), (G_W1X1_BRAM, None)],
                         ids=["direct", "winograd"])
def test_block_ram_instances_1x1(tmp_path, g, block_rams):
    """Every memory of the 1x1 array a DP16KD (direct: 2 weight blocks, 2 line-buffer bytes,
    2 x 3 column-delay bytes): the coverage list, and one layer of each stride under the four
    host stall combinations."""
    s = seed() + 60
    rng = np.random.default_rng(s)
    b = build(g, main_sim(), dsp="ecp5")
    count = b.verilog.read_text().count("\n  DP16KD #(")
    assert count == block_rams if block_rams is not None else count > 0
    cases = coverage_cases(g, rng)
    for stride in (1, 2):
        base = C.layer_case(rng, f"stalls_s{stride}", LayerShape(cin=3, cout=2, groups=1, stride=stride,
                                                                height=5, width=6))
        cases += stall_cases(base, s + stride)
    outcome = run(b, C.Job(g, cases=cases), tmp_path)
    _check_all(outcome, len(cases))


@pytest.mark.parametrize("mutation", [
    # The column delay's bank 0, row 0 written through: it returns column x in place of x-2.
    ("column_writethrough", '    .WRITEMODE_A("READBEFOREWRITE"),\n    .WRITEMODE_B("READBEFOREWRITE")\n  ) even0_0_0_0 (',
     '    .WRITEMODE_A("WRITETHROUGH"),\n    .WRITEMODE_B("READBEFOREWRITE")\n  ) even0_0_0_0 ('),
    # The first weight block without its output register: kernels a cycle early.
    ("weights_noreg", '    .REGMODE_A("OUTREG"),\n    .REGMODE_B("OUTREG"),\n    .RESETMODE("SYNC"),\n'
                      '    .WRITEMODE_A("READBEFOREWRITE"),\n    .WRITEMODE_B("READBEFOREWRITE")\n  ) weights_0 (',
     '    .REGMODE_A("NOREG"),\n    .REGMODE_B("NOREG"),\n    .RESETMODE("SYNC"),\n'
     '    .WRITEMODE_A("READBEFOREWRITE"),\n    .WRITEMODE_B("READBEFOREWRITE")\n  ) weights_0 (')],
    ids=lambda m: m[0])
def test_testbench_catches_a_wrong_block_ram(tmp_path, mutation):
    """One DP16KD of the 1x1 Verilog configured wrong (the model follows its parameters): the
    scoreboard reports wrong outputs, and only wrong outputs (cycles and port trace stay
    right). (A layer whose outputs all clamp to 0 may hide the bug, so not every case must fail.)"""
    from cocotb_cases import cache_dir
    from rep_accel.verification import runner as R
    name, old, new = mutation
    s = seed() + 61
    rng = np.random.default_rng(s)
    cases = [C.layer_case(rng, f"{name}{k}", LayerShape(cin=2, cout=2, groups=1, stride=stride, height=5, width=6))
             for k, stride in enumerate((1, 2, 1))]
    b = R.build_rtl(G_1X1_BRAM, main_sim(), cache_dir=cache_dir(), dsp="ecp5", mutation=R.Mutation(name, ((old, new),)))
    C.write_job(tmp_path, C.Job(G_1X1_BRAM, cases=cases))
    recs = R.run_job(b, tmp_path).results["records"]
    assert len(recs) == len(cases) and any(not r["passed"] for r in recs)
    for r in recs:
        assert all("output differs from" in f for f in r["failures"]), r["failures"]
        assert r["trace_equal"] and r["rtl_cycles"] == r["sim_cycles"]
