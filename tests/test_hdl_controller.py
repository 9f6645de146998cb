"""The layer controller (hdl/controller.py): tile sequencing, parameter load, scan order and
status, against rep_accel.layout (plan_tiles, tile_param_beats, scan_extent, has_output,
layer_cycles). The datapath is replaced by a model of the pipeline's L stages and the
output register (the same rules as hdl/top.py), so tile_done comes when it would."""

import numpy as np
import pytest

from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl.controller import LayerController
from rep_accel.layout import LayerShape

from hdl_bench import simulate


def _expected_steps(shape, tile):
    rows, cols = layout.scan_extent(shape.height, shape.width, shape.stride)
    cg = tile.cg
    out = []
    for y in range(rows):
        for x in range(cols):
            for g in range(cg):
                last = g == cg - 1
                out.append({
                    "g": g, "addr": x * cg + g if x < shape.width else None,
                    "row0": int(y == 0), "row1": int(y == 1), "col0": int(x == 0), "col1": int(x == 1),
                    "y_odd": y % 2, "x_odd": x % 2,
                    "row_pad": int(y == shape.height), "col_pad": int(x == shape.width),
                    "first": int(g == 0), "emit": int(last and layout.has_output(y, x, shape.stride)),
                    "tag": int(last and y == rows - 1 and x == cols - 1),
                })
    return out


def _run(generics, shape, *, seed=0, p_in_gap=0.0, p_param_gap=0.0, p_not_ready=0.0):
    rng = np.random.default_rng(seed)
    dut = LayerController(generics)
    tiles = layout.plan_tiles(shape, generics)
    L = generics.pipeline_latency
    # Parameter beats: only the header matters to the controller; the rest carry an index.
    beats = []
    for t in tiles:
        beats.append(t.cg | (t.out_count << 16))
        beats += [1000 * t.index + k for k in range(1, layout.tile_param_beats(t, generics))]
    log = {"params": [], "rq": [], "wr": [], "steps": [], "in_xfer": 0, "busy": [], "done": [],
           "cycles_at_done": [], "desc_cycle": None, "last_out": None, "violations": []}

    async def tb(ctx):
        desc_sent = False
        beat = 0
        pipe = [None] * (L - 1)     # (emit, tag) per stage between the issue and the output register
        out_valid, out_tag = 0, 0
        cycle = 0
        tiles_done = 0
        while True:
            cycle += 1
            if not desc_sent:
                ctx.set(dut.desc.valid, 1)
                ctx.set(dut.desc.payload.as_value(), layout.pack_descriptor(shape, generics))
            else:
                ctx.set(dut.desc.valid, 0)
            param_valid = beat < len(beats) and not (p_param_gap and rng.random() < p_param_gap)
            ctx.set(dut.params.valid, int(param_valid))
            if beat < len(beats):
                ctx.set(dut.params.payload, beats[beat])
            in_valid = not (p_in_gap and rng.random() < p_in_gap)
            ctx.set(dut.in_valid, int(in_valid))
            ready = not (p_not_ready and rng.random() < p_not_ready)
            ctx.set(dut.out_block, int(out_valid and not ready))
            ctx.set(dut.tile_done, int(out_valid and ready and out_tag))

            # Combinational outputs of this cycle.
            advance = ctx.get(dut.advance)
            step = ctx.get(dut.step)
            if ctx.get(dut.desc.ready) and not desc_sent:
                desc_sent = True
                log["desc_cycle"] = cycle
            if param_valid and ctx.get(dut.params.ready):
                log["params"].append(beats[beat])
                beat += 1
            if ctx.get(dut.rq_we):
                log["rq"].append(ctx.get(dut.rq_lane))
            if ctx.get(dut.wr_en):
                log["wr"].append((ctx.get(dut.wr_lane), ctx.get(dut.wr_addr)))
            in_ready = ctx.get(dut.in_ready)
            if in_ready and in_valid:
                log["in_xfer"] += 1
            issued = advance and step.valid
            if issued:
                needs = not step.row_pad and not step.col_pad
                if needs != bool(in_ready) or (needs and not in_valid):
                    log["violations"].append(f"cycle {cycle}: step needs input {needs}, in_ready {in_ready}")
                log["steps"].append({k: int(getattr(step, k)) for k in
                                     ("g", "addr", "row0", "row1", "col0", "col1", "y_odd", "x_odd", "row_pad",
                                      "col_pad", "first", "emit", "tag")})
            if advance and out_valid and not ready:
                log["violations"].append(f"cycle {cycle}: advanced while the output was blocked")
            if in_ready and out_valid and not ready:
                log["violations"].append(f"cycle {cycle}: act_in ready while the output was blocked")
            if out_valid and ready and out_tag:
                tiles_done += 1
                log["last_out"] = cycle
            log["busy"].append(ctx.get(dut.busy))

            # The pipeline model: stages advance with `advance`; the output register as in top.py.
            out_taken = out_valid and ready
            if advance:
                head = pipe[-1]
                pipe = [(step.emit, step.tag) if issued else None] + pipe[:-1]
                out_valid, out_tag = (head[0], head[1]) if head else (0, 0)
            elif out_taken:
                out_valid = 0
            await ctx.tick()
            if ctx.get(dut.done):
                log["done"].append(cycle + 1)
                log["cycles_at_done"].append(ctx.get(dut.cycles))
            if tiles_done == len(tiles) and cycle > (log["last_out"] or 0) + 3:
                break
            assert cycle < 50 * layout.layer_cycles(shape, generics) + 200, "controller hung"

    simulate(dut, tb)
    return tiles, log


SHAPES = [
    # (generics, shape): several tiles with a partial last one; groups giving tiles of different cg;
    # stride 2 with odd and even sizes; a 1-row and a 1-column input.
    (HardwareGenerics(pi=2, po=2, w_max=8, max_cg=4, line_depth=64), LayerShape(5, 5, 1, 1, 3, 4)),
    (HardwareGenerics(pi=1, po=3, w_max=8, max_cg=8, line_depth=64), LayerShape(4, 4, 2, 1, 2, 3)),
    (HardwareGenerics(pi=3, po=2, w_max=8, max_cg=4, line_depth=64), LayerShape(4, 3, 1, 2, 5, 4, True)),
    (HardwareGenerics(pi=2, po=1, w_max=8, max_cg=4, line_depth=64), LayerShape(2, 2, 1, 2, 4, 5)),
    (HardwareGenerics(pi=1, po=1, w_max=8, max_cg=4, line_depth=64), LayerShape(1, 2, 1, 1, 1, 6)),
    (HardwareGenerics(pi=2, po=2, w_max=8, max_cg=4, line_depth=64), LayerShape(3, 2, 1, 2, 6, 1)),
]


def _check_sequence(generics, shape, tiles, log):
    assert not log["violations"], log["violations"][:5]
    # Parameter beats: every beat, in order; per tile PO requant lanes then PO * cg weight beats lane-major.
    assert len(log["params"]) == sum(layout.tile_param_beats(t, generics) for t in tiles)
    assert log["rq"] == [o for _ in tiles for o in range(generics.po)]
    assert log["wr"] == [(o, g) for t in tiles for o in range(generics.po) for g in range(t.cg)]
    # Steps: the scan of every tile, in order, with the documented flags.
    expected = [s for t in tiles for s in _expected_steps(shape, t)]
    got = log["steps"]
    assert len(got) == len(expected)
    for k, (s, e) in enumerate(zip(got, expected)):
        if e["addr"] is None:       # the padding column has no line-buffer entry
            s = dict(s, addr=None)
        assert s == e, f"step {k}: got {s}, expected {e}"
    assert log["in_xfer"] == sum(shape.height * shape.width * t.cg for t in tiles)
    assert sum(s["emit"] for s in got) == len(tiles) * shape.out_height * shape.out_width


@pytest.mark.parametrize("case", range(len(SHAPES)))
def test_tile_sequencing_and_exact_cycles(case):
    """With a host that never stalls: the exact sequence, layout.layer_cycles cycles, the
    `cycles` output, one `done` pulse the cycle after the last output, busy in between."""
    generics, shape = SHAPES[case]
    tiles, log = _run(generics, shape)
    _check_sequence(generics, shape, tiles, log)
    expected = layout.layer_cycles(shape, generics)
    measured = log["last_out"] - log["desc_cycle"] + 1
    assert measured == expected
    assert log["done"] == [log["last_out"] + 1]
    assert log["cycles_at_done"] == [expected]
    busy = [c + 1 for c, b in enumerate(log["busy"]) if b]
    assert busy == list(range(log["desc_cycle"] + 1, log["last_out"] + 1))


@pytest.mark.parametrize("case,seed", [(0, 21), (1, 22), (2, 23)])
def test_tile_sequencing_under_stalls(case, seed):
    """Input gaps, parameter gaps and output back-pressure change only the timing."""
    print(f"seed={seed}")
    generics, shape = SHAPES[case]
    tiles, log = _run(generics, shape, seed=seed, p_in_gap=0.3, p_param_gap=0.3, p_not_ready=0.3)
    _check_sequence(generics, shape, tiles, log)
    measured = log["last_out"] - log["desc_cycle"] + 1
    assert measured > layout.layer_cycles(shape, generics)
    assert log["cycles_at_done"] == [measured]
