"""The cocotb test module the HDL simulator runs (COCOTB_TEST_MODULES=rep_accel.verification.cocotb_top).

It reads the job folder named by $REP_ACCEL_TB_JOB (cases.write_job), runs it on the DUT
`rep_accel_top` with tb.AcceleratorTB and tb.Scoreboard, writes results.json into the job
folder (also when something fails), every layer case's RTL output uint8 (C, H, W) as
`out<i>` in outputs.npz, and fails the cocotb test if any check failed.

Layer jobs: every case runs with its stalls; a case with `reset_at` is interrupted by a
reset in that cycle, the idle state after the reset is checked, and the layer runs again
from the start without stalls.

Network jobs: the testbench is the host and the external memory: for every image and
every selected layer it streams the build's parameter beats (params.bin, per tile) and the
previous layer's RTL output as input, collects the output and checks it; after the last
layer it runs the head in the golden code on the RTL's features. The logits are compared
with the simulator's run of the whole network (cycle mode, the build's parameter beats)
and the golden model's.
"""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import numpy as np

import cocotb

from .. import golden
from ..fsutil import atomic_write_bytes
from ..untrusted import jsonable
from ..layout import check_fits
from ..sim import cycle as simcycle
from .cases import JOB_ENV, OUTPUTS_FILE, RESULTS_FILE, read_job
from ..streams import layer_output
from .tb import AcceleratorTB, Scoreboard

#: The state a reset must leave: idle, nothing valid.
IDLE_STATE = {"desc_ready": 1, "busy": 0, "done": 0, "act_out_valid": 0, "params_ready": 0, "act_in_ready": 0}


async def _run_case(tb: AcceleratorTB, sb: Scoreboard, layer, x, stall, reset_at, trace: bool, name: str, extra=None):
    """One layer on the RTL (with an optional reset in the middle), checked by the scoreboard."""
    g = tb.g
    shape = layer.shape
    params = simcycle.layer_params(layer, g)
    act = simcycle.layer_streams(x, shape, g)
    stim = stall.stimulus_for(x, shape, params, g) if stall is not None else None
    extra = dict(extra or {})
    failures = []
    if reset_at is not None:
        first = await tb.run_layer(shape, params, act, stim, reset_at=reset_at)
        await tb.reset()
        state = await tb.idle_state()
        extra.update({"reset_at": reset_at, "outputs_before_reset": int(len(first.beats)), "state_after_reset": state})
        if state != IDLE_STATE:
            failures.append(f"after a reset in cycle {reset_at}: {state}, expected {IDLE_STATE}")
        stim = None  # the layer again from the start, never stalling
    exp = sb.expect(layer, x, params, stim)
    run = await tb.run_layer(shape, params, act, stim)
    record = sb.check(name, shape, exp, run, len(params), len(act), compare_trace=trace, extra=extra)
    if failures:
        record["failures"] = failures + record["failures"]
        record["passed"] = False
    return record, run


async def _run_layers(dut, tb: AcceleratorTB, job, results: dict, outputs: dict) -> None:
    sb = Scoreboard(tb.g)
    for i, case in enumerate(job.cases):
        check_fits(case.layer.shape, tb.g, case.name)
        record, run = await _run_case(tb, sb, case.layer, case.x, case.stall, case.reset_at, case.trace, case.name,
                                    {"stall": None if case.stall is None else vars(case.stall)})
        out = layer_output(run.beats, case.layer.shape, tb.g)
        if out is not None:
            outputs[f"out{i}"] = out
        results["records"].append(record)
        dut._log.info("%s %s: %s cycles (sim %s, formula %s)%s", "PASS" if record["passed"] else "FAIL", case.name,
                      record["rtl_cycles"], record["sim_cycles"], record["layer_cycles"],
                      "" if record["passed"] else ": " + "; ".join(record["failures"]))


async def _run_network(dut, tb: AcceleratorTB, job, results: dict) -> None:
    from ..images import load_build
    from ..sim.network import NetworkSimulator
    net = job.network
    build = load_build(net.build)
    qnet, g = build.qnet, tb.g
    if (build.generics.pi, build.generics.po) != (g.pi, g.po):
        raise AssertionError(f"the build is laid out for {build.generics.pi}x{build.generics.po}, the RTL is {g.pi}x{g.po}")
    for layer in qnet.layers:
        check_fits(layer.shape, g, layer.name)
    x_q = np.asarray(net.x_q, dtype=np.int8)
    selected = list(range(len(qnet.layers))) if net.layers is None else list(net.layers)
    stim = net.stall.stimulus() if net.stall is not None else None
    params = [build.layer_params(k) for k in range(len(qnet.layers))]
    # The references, each on its own: the simulator's whole network (cycle mode, the build's
    # beats, the same host) and the golden model's.
    sim_res = NetworkSimulator(qnet, g, mode="cycle", params=params, stimulus=stim,
                               memory=net.stall.memory_model() if net.stall is not None else None).run(
        x_q, return_activations=True, show_progress=False)
    gold_logits, gold_acts = golden.run_network(qnet, x_q, return_activations=True)
    sb = Scoreboard(g)
    n = x_q.shape[0]
    rtl_logits = np.zeros_like(sim_res.logits)
    head_run = selected and selected[-1] == len(qnet.layers) - 1 and \
        all(k in selected for k in range(len(qnet.layers)))
    for i in range(n):
        t0 = time.perf_counter()
        prev_rtl = None  # RTL output of layer k-1 when it ran on the RTL
        for k in selected:
            layer = qnet.layers[k]
            if prev_rtl is not None and prev_rtl[0] == k - 1:
                x = prev_rtl[1]
            else:
                x = x_q[i] if k == 0 else sim_res.activations[k - 1][i]
            record, run = await _run_case(tb, sb, layer, x, net.stall, None, True, f"image{i}/{layer.name}",
                                          {"image": i, "layer": k, "layer_name": layer.name,
                                           "input_from": "rtl" if prev_rtl is not None and prev_rtl[0] == k - 1
                                           else "reference"})
            if not np.array_equal(sim_res.activations[k][i], gold_acts[k][i]):
                record["failures"].append("the simulator's network run and the golden model disagree on this layer")
                record["passed"] = False
            out = layer_output(run.beats, layer.shape, g)
            if out is None:  # wrong beat count (a failure already): keep the chain going with zeros
                out = np.zeros_like(sim_res.activations[k][i])
            record["equals_network_simulation"] = bool(np.array_equal(out, sim_res.activations[k][i]))
            if not record["equals_network_simulation"]:
                record["failures"].append("the RTL's activation differs from the simulator's whole-network run")
                record["passed"] = False
            results["records"].append(record)
            prev_rtl = (k, out)
        if head_run:
            rtl_logits[i] = golden.head(prev_rtl[1][None], qnet.head)[0]
        ok = all(r["passed"] for r in results["records"] if r.get("image") == i)
        dut._log.info("image %d: %s, %d RTL cycles, %.1f s", i, "PASS" if ok else "FAIL",
                      sum(r["rtl_cycles"] or 0 for r in results["records"] if r.get("image") == i),
                      time.perf_counter() - t0)
    summary = {"images": n, "layers": selected, "head": bool(head_run),
               "sim_logits": sim_res.logits, "golden_logits": gold_logits,
               "sim_cycles": sim_res.cycles, "golden_pred": gold_logits.argmax(axis=1)}
    if head_run:
        summary.update({"rtl_logits": rtl_logits, "rtl_pred": rtl_logits.argmax(axis=1),
                        "logits_equal_sim": bool(np.array_equal(rtl_logits, sim_res.logits)),
                        "logits_equal_golden": bool(np.array_equal(rtl_logits, gold_logits)),
                        "pred_equal_golden": bool(np.array_equal(rtl_logits.argmax(axis=1), gold_logits.argmax(axis=1)))})
        failures = []
        if not summary["logits_equal_sim"]:
            failures.append("RTL logits differ from the simulator's")
        if not summary["pred_equal_golden"]:
            failures.append("RTL predictions differ from the golden model's")
        summary["failures"] = failures
    if net.labels is not None:
        summary["labels"] = np.asarray(net.labels)
        if head_run:
            summary["rtl_correct"] = int(np.sum(rtl_logits.argmax(axis=1) == np.asarray(net.labels)))
    results["network"] = summary


@cocotb.test()
async def run_job(dut):
    if os.environ.get("REP_ACCEL_TB_PROFILE"):
        import cProfile
        import pstats
        prof = cProfile.Profile()
        prof.enable()
        try:
            await _run_job(dut)
        finally:
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").dump_stats(os.environ["REP_ACCEL_TB_PROFILE"])
    else:
        await _run_job(dut)


async def _run_job(dut):
    """Run the job named by $REP_ACCEL_TB_JOB on the DUT; results.json in the job folder."""
    folder = Path(os.environ[JOB_ENV])
    job = read_job(folder)
    results = {"kind": job.kind, "generics": job.generics.to_dict(), "records": [], "complete": False}
    outputs: dict[str, np.ndarray] = {}
    t0 = time.perf_counter()
    try:
        tb = AcceleratorTB(dut, job.generics)
        await tb.start()
        if job.kind == "layers":
            await _run_layers(dut, tb, job, results, outputs)
        else:
            await _run_network(dut, tb, job, results)
        results["complete"] = True
    except Exception as e:  # recorded, then re-raised so that the cocotb test fails
        results["error"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        results["seconds"] = time.perf_counter() - t0
        results["rtl_seconds"] = sum(r["rtl_seconds"] for r in results["records"])
        results["clock_cycles"] = sum(r["clock_cycles"] for r in results["records"])
        if outputs:
            buf = io.BytesIO()
            np.savez(buf, **outputs)
            atomic_write_bytes(folder / OUTPUTS_FILE, buf.getvalue())
        atomic_write_bytes(folder / RESULTS_FILE, (json.dumps(jsonable(results), indent=1) + "\n").encode())
    bad = [r for r in results["records"] if not r["passed"]]
    net_bad = (results.get("network") or {}).get("failures") or []
    assert not bad and not net_bad, (
        f"{len(bad)} of {len(results['records'])} runs failed; first: {bad[0]['name']}: {bad[0]['failures']}"
        if bad else "; ".join(net_bad))
