"""One test body, three backends (as VTA's tests do): the layer space of
`rep_accel.verification.cases.coverage_cases` runs on the simulator's fast mode, its cycle
mode, or the RTL (cocotb + $SIM, Verilator by default), switched by the `backend`
parameter. Every backend's output must equal the golden model's and its cycle count the
schedule's (`layout.layer_cycles`), exactly.

    pytest tests/test_layer_space.py -k fast       # one backend
"""

import numpy as np
import pytest

from cocotb_cases import G_2X3, build, main_sim, run, seed
from rep_accel import golden
from rep_accel.layout import layer_cycles
from rep_accel.sim import cycle as simcycle
from rep_accel.sim import fast
from rep_accel.verification import cases as C

BACKENDS = ("fast", "cycle", "rtl")


def run_on(backend: str, cases: list, g, folder) -> list[tuple[np.ndarray, int]]:
    """(output uint8 (C_out, H_out, W_out), cycles) of every case on `backend`."""
    if backend == "fast":
        return [(fast.conv_layer_q(c.x[None], c.layer)[0], layer_cycles(c.layer.shape, g)) for c in cases]
    if backend == "cycle":
        return [(r.output, r.cycles) for r in (simcycle.run_layer_q(c.layer, c.x, g) for c in cases)]
    if backend == "rtl":
        outcome = run(build(g, main_sim()), C.Job(g, cases=cases), folder)
        outs = C.read_outputs(folder)
        return [(outs[f"out{k}"], r["rtl_cycles"]) for k, r in enumerate(outcome.results["records"])]
    raise ValueError(backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_layer_space(backend, tmp_path):
    g = G_2X3
    cases = C.coverage_cases(g, np.random.default_rng(seed()), widths=False)
    results = run_on(backend, cases, g, tmp_path)
    assert len(results) == len(cases)
    for case, (out, cycles) in zip(cases, results):
        expected = golden.conv_layer(case.x[None], case.layer)[0]
        assert np.array_equal(out, expected), f"{backend}: {case.name}: output differs from the golden model"
        assert cycles == layer_cycles(case.layer.shape, g), f"{backend}: {case.name}: {cycles} cycles"
