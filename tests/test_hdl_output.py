"""The output stage (hdl/output.py) against a model of the globally stalled pipeline: every
cycle its act_out valid/payload and group_done equal those of an L-stage pipeline that holds
whenever it does not advance, while the free-running datapath delivers each result exactly
L - 1 cycles after its step (long output stalls fill its FIFO to the L - 1 bound)."""

import numpy as np
import pytest

from hdl_bench import simulate
from rep_accel.hdl.output import OutputStage


@pytest.mark.parametrize("latency,seed,p_ready,p_in", [(2, 1, 0.5, 0.8), (5, 2, 0.3, 0.9), (9, 3, 0.15, 1.0),
                                                        (9, 4, 0.9, 0.5)])
def test_output_stage_follows_the_stalled_pipeline(latency, seed, p_ready, p_in):
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    dut = OutputStage(16, latency)
    cycles = 600
    mismatches = []
    peak = {"fifo": 0}

    async def tb(ctx):
        # The model: stages 1..L-1 of (emit, tag, id) and the output register (valid, payload, tag).
        stages = [None] * (latency - 1)
        out_valid, out_payload, out_tag = 0, 0, 0
        datapath = [None] * (latency - 1)     # free-running: the result of the step issued k+1 cycles ago
        next_id = 1
        in_flight = []
        for c in range(cycles):
            ready = int(rng.random() < p_ready)
            out_block = out_valid and not ready
            stall_in = rng.random() >= p_in
            advance = not out_block and not stall_in
            dense = p_in == 1.0   # every advancing cycle issues an emitting step: the FIFO fills
            issue = advance and (dense or rng.random() < 0.8)
            emit = issue and (dense or rng.random() < 0.7)
            tag = emit and rng.random() < 0.1
            step = (emit, tag, next_id if emit else 0) if issue else None
            if emit:
                next_id += 1
            result = datapath[-1]
            ctx.set(dut.advance, int(advance))
            ctx.set(dut.step_emit, int(emit))
            ctx.set(dut.step_tag, int(tag))
            ctx.set(dut.result_valid, int(result is not None and result[0]))
            ctx.set(dut.result, result[2] if result else 0xDEAD)
            ctx.set(dut.out.ready, ready)
            got = (ctx.get(dut.out.valid), ctx.get(dut.out.payload) if ctx.get(dut.out.valid) else None,
                   ctx.get(dut.out_block), ctx.get(dut.group_done))
            want = (out_valid, out_payload if out_valid else None, int(out_block),
                    int(out_valid and ready and out_tag))
            if got != want:
                mismatches.append((c, got, want))
            await ctx.tick()
            # Advance the model.
            last = stages[-1]
            if advance:
                out_valid, out_payload, out_tag = (int(last[0]), last[2], int(last[1])) if last else (0, 0, 0)
                stages = [step] + stages[:-1]
            elif out_valid and ready:
                out_valid = 0
            datapath = [step] + datapath[:-1]
            # Results delivered but not yet in the output register.
            if result is not None and result[0]:
                in_flight.append(result[2])
            if advance and last and last[0]:
                in_flight.remove(last[2])
            peak["fifo"] = max(peak["fifo"], len(in_flight))

    simulate(dut, tb)
    assert not mismatches, mismatches[:5]
    assert peak["fifo"] <= latency - 1
    if p_ready < 0.2:  # long output stalls: the FIFO reaches its bound
        assert peak["fifo"] == latency - 1
