"""Shared pieces of the cocotb regression (tests/test_cocotb_*.py): hardware configurations,
the build cache, the seed, the layer case lists, and running a job with exact checks.

Builds are cached in <repo>/sim_build/rtl (or $REP_ACCEL_SIM_BUILD), keyed by the RTL's
sources and the generics, so one build per configuration serves every test and session.
Randomized cases use the seed of $REP_ACCEL_SEED (default DEFAULT_SEED); every test prints
it: `REP_ACCEL_SEED=<seed> pytest tests/test_cocotb_layers.py` replays a run.
Simulator: $SIM (verilator, the default, or icarus) for the main runs; the Icarus subset
runs in every default run as well.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from rep_accel.generics import HardwareGenerics
from rep_accel.verification import cases as C
from rep_accel.verification import runner as R

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SEED = 6
SEED_ENV = "REP_ACCEL_SEED"

#: The array configurations: 1x1, a non-square 2x3, a 4x4 big enough for the TensorFlow Lite
#: vectors (case 9: 512 input channels = 128 groups of 4) and the default model, and the
#: default 8x8 (slow tests).
G_1X1 = HardwareGenerics(pi=1, po=1, w_max=8, max_cg=8, line_depth=32, max_group=1)
G_2X3 = HardwareGenerics(pi=2, po=3, w_max=16, max_cg=8, line_depth=64, max_group=1)
G_4X4 = HardwareGenerics(pi=4, po=4, w_max=28, max_cg=128, line_depth=512, max_group=1)
G_8X8 = HardwareGenerics(pi=8, po=8, w_max=28, max_cg=64, line_depth=256, max_group=1)
#: Tile-group configurations (max_group > 1, docs/architecture.md "Tile groups"): the same
#: arrays with K tiles per group and max_cg raised so that K * cg fits for the layers they
#: run (a group of K tiles with cg channel groups needs K * cg kernels per unit).
G_1X1_K3 = HardwareGenerics(pi=1, po=1, w_max=8, max_cg=12, line_depth=32, max_group=3)
G_2X3_K4 = HardwareGenerics(pi=2, po=3, w_max=16, max_cg=16, line_depth=64, max_group=4)
G_4X4_K8 = HardwareGenerics(pi=4, po=4, w_max=28, max_cg=256, line_depth=512, max_group=8)
#: Arrays of Winograd units (unit kind "winograd", docs/architecture.md "Winograd scan"):
#: the same shapes with tile groups, and a 4x4 for the TensorFlow Lite vectors and the model.
G_W1X1_K3 = HardwareGenerics(pi=1, po=1, w_max=8, max_cg=12, line_depth=32, max_group=3, unit="winograd")
G_W2X3_K4 = HardwareGenerics(pi=2, po=3, w_max=16, max_cg=16, line_depth=64, max_group=4, unit="winograd")
G_W4X4_K4 = HardwareGenerics(pi=4, po=4, w_max=28, max_cg=128, line_depth=512, max_group=4, unit="winograd")


def main_sim() -> str:
    sim = os.environ.get("SIM", "verilator").lower()
    if sim not in R.SIMULATORS:
        raise pytest.UsageError(f"SIM={sim}: choose one of {', '.join(R.SIMULATORS)}")
    return sim


def cache_dir() -> Path:
    return Path(os.environ.get(R.CACHE_ENV) or REPO / "sim_build" / "rtl")


def seed() -> int:
    s = int(os.environ.get(SEED_ENV, DEFAULT_SEED))
    print(f"seed={s} (replay: {SEED_ENV}={s})")
    return s


def need_sim(sim: str) -> None:
    if sim == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed (`make install-tools` or `apt-get install iverilog`)")


def build(generics: HardwareGenerics, sim: str, **kw) -> R.RtlBuild:
    need_sim(sim)
    b = R.build_rtl(generics, sim, cache_dir=cache_dir(), **kw)
    print(f"{sim} build {b.build_dir.name}: {'cached' if b.cached else f'built in {b.seconds:.1f} s'}")
    return b


def run(b: R.RtlBuild, job: C.Job, folder: Path) -> R.JobOutcome:
    """Run a job and assert that every check passed; prints one line per failure."""
    C.write_job(folder, job)
    outcome = R.run_job(b, folder)
    res = outcome.results
    bad = [r for r in res["records"] if not r["passed"]]
    for r in bad[:20]:
        print(f"FAIL {r['name']}: {r['failures']}")
    assert res.get("error") is None, f"the cocotb test stopped: {res.get('error')} (log: {outcome.log})"
    assert res["complete"], f"the cocotb test did not finish (log: {outcome.log})"
    assert not bad, f"{len(bad)} of {len(res['records'])} runs failed, first {bad[0]['name']}: {bad[0]['failures']}"
    assert outcome.tests == 1 and outcome.failed == 0, f"cocotb: {outcome.failed} of {outcome.tests} tests failed"
    n_out = sum(r["outputs_compared"] for r in res["records"])
    cyc = sum(r["clock_cycles"] for r in res["records"])
    print(f"{len(res['records'])} runs, {n_out} outputs compared, {cyc} clock cycles "
          f"in {res['rtl_seconds']:.1f} s ({cyc / max(res['rtl_seconds'], 1e-9):.0f} cycles/s); "
          f"job {outcome.seconds:.1f} s")
    return outcome


# ----------------------------------------------------------------------------------
# Layer case lists
# ----------------------------------------------------------------------------------

# The layer space and the random cases are rep_accel.verification.cases' (one set of
# definitions for the simulator's and the RTL's tests, tests/test_layer_space.py).
coverage_cases = C.coverage_cases
random_cases = C.random_cases


#: The four host combinations of the fault tests: (name, Stall or None).
def stall_combinations(seed: int) -> list[tuple[str, C.Stall | None]]:
    return [("calm", None),
            ("input_gaps", C.Stall(p_params=0.6, p_act_in=0.6, p_act_out=1.0, seed=seed + 1)),
            ("output_drops", C.Stall(p_params=1.0, p_act_in=1.0, p_act_out=0.5, seed=seed + 2)),
            ("both", C.Stall(p_params=0.7, p_act_in=0.5, p_act_out=0.6, seed=seed + 3))]


def stall_cases(base: C.LayerCase, seed: int) -> list[C.LayerCase]:
    """The same layer and input under the four host combinations."""
    return [C.LayerCase(f"{base.name}/{name}", base.layer, base.x, stall) for name, stall in stall_combinations(seed)]


# ----------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def default_model():
    """(QuantizedNetwork of the default model compiled as `rep-accel compile` does: its first
    500 training digits, the default observer; x_test, y_test of mnist_split)."""
    from rep_accel import quantize
    from rep_accel.checkpoints import load_fused
    from rep_accel.datasets import default_model_path, mnist_split
    fused = load_fused(default_model_path())
    x_train, _, x_test, y_test = mnist_split()
    qnet = quantize.quantize_network(fused, x_train[:quantize.DEFAULT_NUM_CALIB], quantize.DEFAULT_OBSERVER,
                                     show_progress=False)
    return qnet, x_test, y_test


def spread(n: int, total: int) -> np.ndarray:
    """n indices spread evenly over a class-sorted set of `total` (the test set is sorted by digit)."""
    return (np.arange(n) * total) // n
