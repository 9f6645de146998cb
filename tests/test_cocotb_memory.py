"""cocotb: the generated Verilog under the external-memory model's stall pattern
(rep_accel.memory). The testbench replays the memory's host (`sim.cycle.memory_stimulus`,
through `verification.cases.Stall(memory=...)`); the scoreboard compares outputs, cycles and
the port trace with the cycle-mode simulator row by row, as for every other host, and the
simulator's count under that pattern is the memory model's own (fast mode included)."""

import numpy as np

from cocotb_cases import G_2X3, build, coverage_cases, main_sim, run, seed
from rep_accel import memory
from rep_accel.sim import cycle, fast
from rep_accel.verification import cases as C

#: A slow memory for a 2x3 array (1.3 bytes per cycle, latency 5, a FIFO of one parameter
#: beat and a half), and the same with seeded stalls on top.
SLOW = "1.3,latency=5,fifo=27"


def test_memory_model_stalls_2x3(tmp_path):
    s = seed()
    rng = np.random.default_rng(s)
    g = G_2X3
    base = coverage_cases(g, rng, widths=False)
    cases = [C.LayerCase(f"{c.name}/sdr16-166", c.layer, c.x, C.Stall(memory="sdr16-166", clock_mhz=150.0))
             for c in base[:10]]
    cases += [C.LayerCase(f"{c.name}/slow+stalls", c.layer, c.x, C.Stall(0.8, 0.7, 0.6, s + k, memory=SLOW))
              for k, c in enumerate(base[10:])]
    cases.append(C.LayerCase("reset_under_memory", base[0].layer, base[0].x, C.Stall(memory=SLOW), reset_at=40))
    outcome = run(build(g, main_sim()), C.Job(g, cases=cases), tmp_path)
    recs = outcome.results["records"]
    assert len(recs) == len(cases) and all(r["trace_compared"] and r["trace_equal"] for r in recs)
    for case, r in zip(cases[:10], recs):
        m = memory.parse("sdr16-166", 150.0)
        assert r["stalled"] and r["rtl_cycles"] == r["sim_cycles"] == r["rtl_cycles_reported"]
        assert r["rtl_cycles"] == fast.cycles(case.layer.shape, g, m) > r["layer_cycles"], case.name
    for case, r in zip(cases[10:-1], recs[10:-1]):
        params = cycle.layer_params(case.layer, g)
        want = cycle.run_layer(case.x, case.layer.shape, params, g, case.stall.stimulus(),
                               memory=memory.parse(SLOW, 150.0)).cycles
        assert r["rtl_cycles"] == r["sim_cycles"] == want, case.name


def test_verify_cli_under_memory_model(tmp_path, capsys):
    """`rep-accel verify --memory`: a random 3-layer network (stride 2, groups 2) on a 2x3
    array in Verilator, every layer matching the simulator cycle for cycle under the
    memory's stall pattern; the cycles are the memory model's (fast mode's replay)."""
    import json

    from cocotb_cases import cache_dir
    from rep_accel import images
    from rep_accel.cli import main
    from rep_accel.sim.synthetic import random_qnetwork
    qnet = random_qnetwork([(2, 5, 2, 1), (5, 6, 1, 1), (6, 8, 2, 2)], (2, 7, 9), seed=3, num_classes=4)
    b = images.write_build(qnet, G_2X3, tmp_path / "build")
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(3).normal(0, 1.5, (1, 2, 7, 9)).astype(np.float32))
    g = G_2X3
    rc = main(["verify", str(b), "--input", str(x), "--memory", "sdr16-166", "--clock-mhz", "200",
               "--build-cache", str(cache_dir()), "--pi", str(g.pi), "--po", str(g.po), "--w-max", str(g.w_max),
               "--max-cg", str(g.max_cg), "--line-depth", str(g.line_depth), "--json", str(tmp_path / "v.json")])
    out = capsys.readouterr().out
    print(out)
    assert rc == 0 and "PASS" in out
    recs = json.loads((tmp_path / "v.json").read_text())["results"]["records"]
    m = memory.parse("sdr16-166", 200.0)
    assert [r["rtl_cycles"] for r in recs] == [fast.cycles(l.shape, g, m) for l in qnet.layers]
    assert all(r["trace_equal"] and r["rtl_cycles"] > r["layer_cycles"] for r in recs)
