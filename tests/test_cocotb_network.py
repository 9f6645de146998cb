"""The default model end to end on the generated Verilog (cocotb).

The default model (rep_accel.datasets.default_model_path) is compiled here as `rep-accel
compile` does (default calibration: its first 500 training digits, default observer) and
written as build folders for the array under test. The testbench is the host and the
external memory: for held-out test images (rep_accel.datasets.mnist_split, spread over the
digits) it runs
every layer and tile on the RTL, feeding each layer the RTL's previous output and the
build's parameter beats (params.bin), then the head in the golden code. Every layer is
checked by the scoreboard (simulator bit for bit and trace, golden model, cycles); here the
RTL's logits must equal the simulator's exactly and its predictions the int8 golden model's.

Default suite: 2 images on a 4x4 array, and 2 on a 4x4 array with tile groups of up to 8
tiles (generic max_group, the build's params.bin laid out per group). Slow: 20 images on the default 8x8 array, and one
image with a host that stalls every stream.
"""

import numpy as np
import pytest

from cocotb_cases import G_4X4, G_4X4_K8, G_8X8, build, default_model, main_sim, run, spread
from rep_accel import golden, images
from rep_accel.sim.network import NetworkSimulator
from rep_accel.verification import cases as C


@pytest.fixture(scope="module")
def model():
    return default_model()


def _run_network(model, g, n_images, folder, stall=None):
    qnet, x_test, y_test = model
    build_dir = images.write_build(qnet, g, folder / "build")
    pick = spread(n_images, len(y_test))  # the test set is sorted by digit: take every class
    x_q = golden.quantize_input(x_test[pick], qnet)
    labels = y_test[pick]
    job = C.Job(g, network=C.NetworkJob(str(build_dir), x_q, labels=labels, stall=stall))
    outcome = run(build(g, main_sim()), job, folder / "job")
    net = outcome.results["network"]
    n_layers = len(qnet.layers)
    recs = outcome.results["records"]
    assert len(recs) == n_images * n_layers
    assert all(r["trace_equal"] and r["equals_network_simulation"] for r in recs)
    # every layer after the first took the RTL's own previous output
    assert all(r["input_from"] == "rtl" for r in recs if r["layer"] > 0)
    # independent references computed here: the simulator (fast mode) and the golden model
    sim = NetworkSimulator(qnet, g, "fast").run(x_q, show_progress=False)
    gold = golden.run_network(qnet, x_q)
    rtl = np.asarray(net["rtl_logits"], dtype=np.int64)
    assert rtl.shape == sim.logits.shape == (n_images, 10)
    assert np.array_equal(rtl, sim.logits), "RTL logits differ from the simulator's"
    assert np.array_equal(rtl.argmax(axis=1), gold.argmax(axis=1)), "RTL predictions differ from the golden model's"
    assert net["logits_equal_sim"] and net["pred_equal_golden"]
    rtl_cycles = np.array([[r["rtl_cycles"] for r in recs if r["image"] == i] for i in range(n_images)])
    assert np.array_equal(rtl_cycles, np.asarray(net["sim_cycles"]))
    correct = int(np.sum(rtl.argmax(axis=1) == labels))
    print(f"{n_images} images x {n_layers} layers on the RTL {g.pi}x{g.po}: logits equal the simulator's, "
          f"predictions equal the golden model's; {correct}/{n_images} correct; "
          f"{int(rtl_cycles.sum())} cycles ({int(rtl_cycles[0].sum())} per image)")
    return outcome


def test_default_model_4x4(model, tmp_path):
    _run_network(model, G_4X4, 2, tmp_path)


def test_default_model_tile_groups_4x4(model, tmp_path):
    """Tile groups: every layer of the default model runs as groups of several tiles (one input
    pass per group), with the same exact checks; fewer cycles per image than without groups."""
    from rep_accel.layout import schedule_layer
    qnet = model[0]
    groups = [schedule_layer(layer.shape, G_4X4_K8).groups for layer in qnet.layers]
    assert sum(max(j.count for j in gs) > 1 for gs in groups) >= len(groups) - 1
    outcome = _run_network(model, G_4X4_K8, 2, tmp_path)
    grouped = sum(r["rtl_cycles"] for r in outcome.results["records"] if r["image"] == 0)
    plain = sum(schedule_layer(layer.shape, G_4X4).cycles for layer in qnet.layers)
    print(f"cycles per image: {grouped} with tile groups, {plain} without")
    assert grouped < plain


@pytest.mark.slow
def test_default_model_20_images_8x8(model, tmp_path):
    _run_network(model, G_8X8, 20, tmp_path)


@pytest.mark.slow
def test_default_model_stalls_8x8(model, tmp_path):
    """One image with random gaps on params and act_in and ready drops on act_out in every layer."""
    outcome = _run_network(model, G_8X8, 1, tmp_path, stall=C.Stall(0.7, 0.6, 0.6, seed=61))
    assert all(r["stalled"] and r["rtl_cycles"] > r["layer_cycles"] for r in outcome.results["records"])
