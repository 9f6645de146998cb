"""The layer controller (hdl/controller.py): tile-group sequencing, parameter load, scan order
and status, against rep_accel.layout (schedule_layer's groups, group_param_beats,
scan_extent, has_output, layer_cycles). The datapath is replaced by a model of the
pipeline's L stages and the output register (the same rules as hdl/top.py), so group_done
comes when it would."""

import numpy as np
import pytest

from rep_accel import layout
from rep_accel.generics import HardwareGenerics
from rep_accel.hdl.controller import LayerController
from rep_accel.layout import LayerShape

from hdl_bench import simulate


STEP_FIELDS = ("g", "kt", "compute", "repeat", "store", "load", "waddr", "addr", "row0", "row1", "col0", "col1",
               "y_odd", "x_odd", "row_pad", "col_pad", "first", "emit", "tag")


def _prose_slots(h, w, stride):
    """The scan's slots as docs/architecture.md words them: [(FULL positions, STORE pixels,
    output)]: stride 1 every position; stride 2 row 0, then each output row's column 0
    and pairs of columns (2p-1, 2p), each with the next row's pixels at those columns."""
    rows, cols = layout.scan_extent(h, w, stride)
    if stride == 1:
        return [([(y, x)], [], layout.has_output(y, x, 1)) for y in range(rows) for x in range(cols)]
    slots = [([(0, x)], [], False) for x in range(cols)]
    for y in range(1, rows, 2):
        for xs in [[0]] + [[x for x in (x0, x0 + 1) if x < cols] for x0 in range(1, cols, 2)]:
            slots.append(([(y, x) for x in xs], [(y + 1, x) for x in xs if y + 1 < h and x < w], xs[0] % 2 == 1))
    return slots


def _expected_steps(shape, group):
    """The steps of one tile group's scan (docs/architecture.md, "The schedule of one tile
    group"): for each slot and channel group g, max(K_here, items) steps; step kt runs item
    kt and computes tile kt if kt < K_here. None: a field the step's kind leaves open
    (kt and waddr of a step that computes nothing, the position flags of a STORE item or
    of a step without an item)."""
    cg, h, w = group.cg, shape.height, shape.width
    slots = _prose_slots(h, w, shape.stride)
    out = []
    for si, (fulls, stores, output) in enumerate(slots):
        items = [("full", p) for p in fulls] + [("store", p) for p in stores]
        k_here = group.count if output else 1
        for g in range(cg):
            last = g == cg - 1
            for kt in range(max(k_here, len(items))):
                kind, (y, x) = items[kt] if kt < len(items) else (None, (None, None))
                full, computes = kind == "full", kt < k_here
                out.append({
                    "g": g, "kt": kt if computes else None, "compute": int(computes),
                    "repeat": int(not full), "store": int(kind == "store"), "load": int(full and kt == 0),
                    "waddr": kt * cg + g if computes else None,
                    "addr": x * cg + g if kind and x < w else None,
                    "row0": int(y == 0) if full else None, "row1": int(y == 1) if full else None,
                    "col0": int(x == 0) if full else None, "col1": int(x == 1) if full else None,
                    "y_odd": y % 2 if kind else None, "x_odd": x % 2 if full else None,
                    "row_pad": int(y == h) if full else 0, "col_pad": int(x == w) if full else 0,
                    "first": int(g == 0), "emit": int(last and output and computes),
                    "tag": int(last and computes and kt == k_here - 1 and si == len(slots) - 1),
                })
    return out


def _run(generics, shape, *, seed=0, p_in_gap=0.0, p_param_gap=0.0, p_not_ready=0.0):
    rng = np.random.default_rng(seed)
    dut = LayerController(generics)
    groups = layout.schedule_layer(shape, generics).groups
    L = generics.pipeline_latency
    # Parameter beats: only the header matters to the controller; the rest carry an index.
    beats = []
    for j in groups:
        beats.append(int.from_bytes(np.ascontiguousarray(
            layout.pack_group_params(np.zeros((shape.cout, shape.cin_per_group, 3, 3), np.int8),
                                     np.zeros(shape.cout, np.int64), np.zeros(shape.cout, np.int64),
                                     np.full(shape.cout, 31, np.int64), shape, j, generics)[0]).tobytes(), "little"))
        beats += [1000 * j.index + k for k in range(1, layout.group_param_beats(j, generics))]
    log = {"params": [], "rq": [], "wr": [], "steps": [], "in_xfer": 0, "busy": [], "done": [],
           "cycles_at_done": [], "desc_cycle": None, "last_out": None, "violations": []}

    async def tb(ctx):
        desc_sent = False
        beat = 0
        pipe = [None] * (L - 1)     # (emit, tag) per stage between the issue and the output register
        out_valid, out_tag = 0, 0
        cycle = 0
        groups_done = 0
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
            ctx.set(dut.group_done, int(out_valid and ready and out_tag))

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
                log["rq"].append((ctx.get(dut.rq_tile), ctx.get(dut.rq_lane)))
            if ctx.get(dut.wr_en):
                log["wr"].append((ctx.get(dut.wr_lane), ctx.get(dut.wr_addr)))
            in_ready = ctx.get(dut.in_ready)
            if in_ready and in_valid:
                log["in_xfer"] += 1
            issued = advance and step.valid
            if issued:
                needs = (not step.row_pad and not step.col_pad and not step.repeat) or bool(step.store)
                if needs != bool(in_ready) or (needs and not in_valid):
                    log["violations"].append(f"cycle {cycle}: step needs input {needs}, in_ready {in_ready}")
                log["steps"].append({k: int(getattr(step, k)) for k in STEP_FIELDS})
            if advance and out_valid and not ready:
                log["violations"].append(f"cycle {cycle}: advanced while the output was blocked")
            if in_ready and out_valid and not ready:
                log["violations"].append(f"cycle {cycle}: act_in ready while the output was blocked")
            if out_valid and ready and out_tag:
                groups_done += 1
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
            if groups_done == len(groups) and cycle > (log["last_out"] or 0) + 3:
                break
            assert cycle < 50 * layout.layer_cycles(shape, generics) + 200, "controller hung"

    simulate(dut, tb)
    return groups, log


SHAPES = [
    # (generics, shape): several tiles with a partial last one; groups giving tiles of different cg;
    # stride 2 with odd and even sizes; a 1-row and a 1-column input.
    (HardwareGenerics(pi=2, po=2, w_max=8, max_cg=4, line_depth=64, max_group=1), LayerShape(5, 5, 1, 1, 3, 4)),
    (HardwareGenerics(pi=1, po=3, w_max=8, max_cg=8, line_depth=64, max_group=1), LayerShape(4, 4, 2, 1, 2, 3)),
    (HardwareGenerics(pi=3, po=2, w_max=8, max_cg=4, line_depth=64, max_group=1), LayerShape(4, 3, 1, 2, 5, 4, True)),
    (HardwareGenerics(pi=2, po=1, w_max=8, max_cg=4, line_depth=64, max_group=1), LayerShape(2, 2, 1, 2, 4, 5)),
    (HardwareGenerics(pi=1, po=1, w_max=8, max_cg=4, line_depth=64, max_group=1), LayerShape(1, 2, 1, 1, 1, 6)),
    (HardwareGenerics(pi=2, po=2, w_max=8, max_cg=4, line_depth=64, max_group=1), LayerShape(3, 2, 1, 2, 6, 1)),
    # Tile groups (max_group > 1): 5 tiles of cg 2 in groups of 3 + 2 (weight addresses k*cg + g up to 5);
    # stride 2 with cg 1 and one group of 4 tiles (K limited by max_group); groups 2 (two groups of 2
    # tiles, one per input group); K limited by max_cg (4 // cg 2 = 2) with a partial last tile; a 1x1 input.
    (HardwareGenerics(pi=2, po=2, w_max=8, max_cg=6, line_depth=64, max_group=3), LayerShape(3, 10, 1, 1, 3, 4)),
    (HardwareGenerics(pi=1, po=1, w_max=8, max_cg=8, line_depth=64, max_group=4), LayerShape(1, 5, 1, 2, 5, 4)),
    (HardwareGenerics(pi=2, po=1, w_max=8, max_cg=4, line_depth=64, max_group=4), LayerShape(4, 4, 2, 1, 3, 3)),
    (HardwareGenerics(pi=1, po=3, w_max=8, max_cg=4, line_depth=64, max_group=5), LayerShape(2, 7, 1, 2, 2, 2)),
    (HardwareGenerics(pi=1, po=2, w_max=8, max_cg=4, line_depth=64, max_group=2), LayerShape(1, 4, 1, 1, 1, 1)),
]


def _check_sequence(generics, shape, groups, log):
    assert not log["violations"], log["violations"][:5]
    # Parameter beats: every beat, in order; per group K * PO requant beats (tile-major), then
    # K * PO * cg weight beats (tile, lane, channel group) to weight address k * cg + g.
    assert len(log["params"]) == sum(layout.group_param_beats(j, generics) for j in groups)
    assert log["rq"] == [(k, o) for j in groups for k in range(j.count) for o in range(generics.po)]
    assert log["wr"] == [(o, k * j.cg + g) for j in groups for k in range(j.count) for o in range(generics.po)
                         for g in range(j.cg)]
    # Steps: the scan of every group, in order, with the documented flags.
    expected = [s for j in groups for s in _expected_steps(shape, j)]
    got = log["steps"]
    assert len(got) == len(expected)
    for k, (s, e) in enumerate(zip(got, expected)):
        # Open fields (None) are not compared; the padding column has no line-buffer entry.
        s = {name: (None if e[name] is None else value) for name, value in s.items()}
        assert s == e, f"step {k}: got {s}, expected {e}"
    assert log["in_xfer"] == sum(shape.height * shape.width * j.cg for j in groups)
    assert sum(s["emit"] for s in got) == sum(j.count for j in groups) * shape.out_height * shape.out_width
    assert len(got) == sum(layout.group_steps(shape, j) for j in groups)


@pytest.mark.parametrize("case", range(len(SHAPES)))
def test_tile_sequencing_and_exact_cycles(case):
    """With a host that never stalls: the exact sequence, layout.layer_cycles cycles, the
    `cycles` output, one `done` pulse the cycle after the last output, busy in between."""
    generics, shape = SHAPES[case]
    groups, log = _run(generics, shape)
    _check_sequence(generics, shape, groups, log)
    expected = layout.layer_cycles(shape, generics)
    measured = log["last_out"] - log["desc_cycle"] + 1
    assert measured == expected
    assert log["done"] == [log["last_out"] + 1]
    assert log["cycles_at_done"] == [expected]
    busy = [c + 1 for c, b in enumerate(log["busy"]) if b]
    assert busy == list(range(log["desc_cycle"] + 1, log["last_out"] + 1))


@pytest.mark.parametrize("case,seed", [(0, 21), (1, 22), (2, 23), (6, 24), (8, 25)])
def test_tile_sequencing_under_stalls(case, seed):
    """Input gaps, parameter gaps and output back-pressure change only the timing."""
    print(f"seed={seed}")
    generics, shape = SHAPES[case]
    groups, log = _run(generics, shape, seed=seed, p_in_gap=0.3, p_param_gap=0.3, p_not_ready=0.3)
    _check_sequence(generics, shape, groups, log)
    measured = log["last_out"] - log["desc_cycle"] + 1
    assert measured > layout.layer_cycles(shape, generics)
    assert log["cycles_at_done"] == [measured]
