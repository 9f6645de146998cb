"""Amaranth-simulator testbench helpers for the RTL tests (tests/test_hdl_*.py).

`run_layers` plays the host of docs/architecture.md against `rep_accel.hdl.top.Accelerator`:
it streams each layer's descriptor, its tile groups' parameter beats
(`layout.pack_group_params`) and input beats (`layout.input_beats`), collects the output
beats (back to an output image with `streams.layer_output`) and measures the
cycles from the descriptor transfer to the last output transfer. The stimulus comes only
from rep_accel.layout; the expected outputs come from `reference_layer` (plain numpy
convolution + numerics.requantize_nchw).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Value
from amaranth.sim import Simulator

from rep_accel import layout, numerics, streams
from rep_accel.generics import HardwareGenerics
from rep_accel.layout import LayerShape


def random_layer(rng, shape: LayerShape):
    """(weight, bias, m0, n) of a random layer from the one random-layer generator
    (rep_accel.verification.cases.random_layer, kind "typical": outputs spread over 0..255)."""
    from rep_accel.verification.cases import random_layer as one_generator
    layer = one_generator(rng, shape)
    return layer.weight, layer.bias, layer.m0, layer.n


def random_input(rng, shape: LayerShape) -> np.ndarray:
    """(C_in, H, W) int8 for the network input, else uint8."""
    if shape.input_signed:
        return rng.integers(-128, 128, size=(shape.cin, shape.height, shape.width)).astype(np.int8)
    return rng.integers(0, 256, size=(shape.cin, shape.height, shape.width)).astype(np.uint8)


def reference_layer(x: np.ndarray, shape: LayerShape, w, bias, m0, n) -> np.ndarray:
    """Plain numpy 3x3 conv (padding 1, stride, groups) + numerics.requantize_nchw: uint8 (C_out, H_out, W_out)."""
    c, h, wd = x.shape
    s = shape.stride
    ho, wo = shape.out_height, shape.out_width
    xp = np.zeros((c, h + 2, wd + 2), dtype=np.int64)
    xp[:, 1:h + 1, 1:wd + 1] = x
    acc = np.zeros((shape.cout, ho, wo), dtype=np.int64)
    cin_g, cout_g = shape.cin_per_group, shape.cout_per_group
    for co in range(shape.cout):
        grp = co // cout_g
        for ci in range(cin_g):
            for ky in range(3):
                for kx in range(3):
                    patch = xp[grp * cin_g + ci, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s]
                    acc[co] += int(w[co, ci, ky, kx]) * patch
    return numerics.requantize_nchw(acc[None], np.asarray(bias, np.int64), np.asarray(m0, np.int64),
                                    np.asarray(n, np.int64))[0]


@dataclass
class LayerRun:
    out: np.ndarray          # uint8 (C_out, H_out, W_out)
    cycles_measured: int     # descriptor transfer to last output transfer, inclusive
    cycles_reported: int     # the `cycles` output in the `done` cycle
    done_pulses: int         # cycles with `done` high after the layer (expect 1)


def run_layers(generics: HardwareGenerics, layers, *, seed: int = 0, in_gap: float = 0.0,
               param_gap: float = 0.0, ready_drop: float = 0.0, max_gap: int = 3,
               dut=None) -> list[LayerRun]:
    """Run `layers` = [(shape, x, w, bias, m0, n), ...] back to back on the Accelerator.

    in_gap / param_gap: probability of idle cycles (valid low, 1..max_gap) before a beat;
    ready_drop: probability that act_out.ready is low in a cycle. All zero: a host that
    never stalls.
    """
    from rep_accel.hdl.top import Accelerator

    dut = dut or Accelerator(generics)
    rng = np.random.default_rng(seed)
    gap_rngs = [np.random.default_rng(seed + k + 1) for k in range(4)]
    plans = []
    for shape, x, w, bias, m0, n in layers:
        scheduled = layout.schedule_layer(shape, generics)
        params = [layout.pack_group_params(w, bias, m0, n, shape, j, generics) for j in scheduled.groups]
        ins = [layout.input_beats(x, j, generics, shape.stride) for j in scheduled.groups]
        plans.append((shape, scheduled, params, ins))
    results = [None] * len(plans)
    outputs = [[] for _ in plans]
    timeline = {"cycle": 0, "desc": [], "out": [[] for _ in plans], "done": [], "cycles_at_done": []}

    def beat_value(row_bytes) -> int:
        return int.from_bytes(np.asarray(row_bytes, dtype=np.uint8).tobytes(), "little")

    async def put(ctx, s, value, gap_rng, p_gap):
        if p_gap and gap_rng.random() < p_gap:
            ctx.set(s.valid, 0)
            await ctx.tick().repeat(int(gap_rng.integers(1, max_gap + 1)))
        ctx.set(Value.cast(s.payload), value)
        ctx.set(s.valid, 1)
        await ctx.tick().until(s.ready)
        ctx.set(s.valid, 0)

    async def desc_driver(ctx):
        for shape, _, _, _ in plans:
            await put(ctx, dut.desc, layout.pack_descriptor(shape, generics), gap_rngs[0], 0.0)
            await ctx.tick().until(dut.done)
        await ctx.tick().repeat(2)   # let the monitor see the last `done`

    async def params_driver(ctx):
        for _, _, params, _ in plans:
            for beats in params:
                for row in beats:
                    await put(ctx, dut.params, beat_value(row), gap_rngs[1], param_gap)

    async def act_driver(ctx):
        for _, _, _, ins in plans:
            for beats in ins:
                raw = beats.view(np.uint8)
                for row in raw:
                    await put(ctx, dut.act_in, beat_value(row), gap_rngs[2], in_gap)

    async def sink(ctx):
        for li, (shape, scheduled, _, _) in enumerate(plans):
            need = scheduled.output_beats
            while len(outputs[li]) < need:
                ready = not (ready_drop and gap_rngs[3].random() < ready_drop)
                ctx.set(dut.act_out.ready, ready)
                _, _, valid, payload = await ctx.tick().sample(dut.act_out.valid, dut.act_out.payload)
                if valid and ready:
                    outputs[li].append(payload)
        ctx.set(dut.act_out.ready, 1)

    async def monitor(ctx):
        layer = -1
        async for _, _, dv, dr, ov, orr, done, cyc in ctx.tick().sample(
                dut.desc.valid, dut.desc.ready, dut.act_out.valid, dut.act_out.ready, dut.done, dut.cycles):
            timeline["cycle"] += 1
            c = timeline["cycle"]
            if dv and dr:
                layer += 1
                timeline["desc"].append(c)
            if ov and orr:
                timeline["out"][layer].append(c)
            if done:
                timeline["done"].append(c)
                timeline["cycles_at_done"].append(cyc)

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(desc_driver)
    sim.add_testbench(params_driver, background=True)
    sim.add_testbench(act_driver, background=True)
    sim.add_testbench(sink)
    sim.add_testbench(monitor, background=True)
    total_cycles = sum(scheduled.cycles for _, scheduled, _, _ in plans)
    budget = 10 * total_cycles + 1000 if not (in_gap or param_gap or ready_drop) else 40 * total_cycles + 1000

    async def watchdog(ctx):
        for _ in range(budget):
            await ctx.tick()
        raise AssertionError(f"simulation did not finish within {budget} cycles")
    sim.add_testbench(watchdog, background=True)
    sim.run()

    for li, (shape, scheduled, _, _) in enumerate(plans):
        beats = np.array([unpack_lanes(wd, generics.po, 8) for wd in outputs[li]], dtype=np.uint8)
        out = streams.layer_output(beats, scheduled, generics)
        measured = timeline["out"][li][-1] - timeline["desc"][li] + 1
        dones = [c for c in timeline["done"] if timeline["desc"][li] < c
                 and (li + 1 >= len(timeline["desc"]) or c <= timeline["desc"][li + 1])]
        reported = timeline["cycles_at_done"][timeline["done"].index(dones[0])] if dones else -1
        results[li] = LayerRun(out, measured, reported, len(dones))
    return results


async def run_cycles(ctx, cycle_inputs, outputs):
    """Drive a free-running pipeline component one cycle per entry of `cycle_inputs`
    (each a list of (signal, value) pairs set before that cycle's clock edge); return,
    for each cycle, the values of `outputs` right after its edge."""
    after = []
    for pairs in cycle_inputs:
        for sig, v in pairs:
            ctx.set(sig, v)
        await ctx.tick()
        after.append(tuple(ctx.get(s) for s in outputs))
    return after


def run_pipeline(dut, inputs, output, latency: int) -> list[int]:
    """Drive a free-running pipeline with one input set per cycle, back to back (each a list of
    (signal, value) pairs); return `output` for each, read `latency` cycles after its edge."""
    cycles = list(inputs) + [[] for _ in range(latency)]
    got = []

    async def tb(ctx):
        after = await run_cycles(ctx, cycles, [output])
        got.extend(after[k + latency - 1][0] for k in range(len(inputs)))

    simulate(dut, tb)
    return got


def simulate(dut, testbench) -> None:
    """Run one async testbench on `dut` with a clock."""
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run()


def pack_lanes(values, width: int) -> int:
    """Flat vector of lanes (lane i in bits [width*i + width-1 : width*i]) from integers (two's complement)."""
    word = 0
    for i, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (width * i)
    return word


def unpack_lanes(word: int, count: int, width: int, signed: bool = False) -> list[int]:
    out = []
    for i in range(count):
        v = (int(word) >> (width * i)) & ((1 << width) - 1)
        if signed and v >> (width - 1):
            v -= 1 << width
        out.append(v)
    return out


def run_traced(generics: HardwareGenerics, shape: LayerShape, x: np.ndarray, params: np.ndarray, stimulus=None):
    """One layer on the Accelerator under the host rules of the cycle simulator
    (rep_accel.sim.cycle, docs/architecture.md "Simulator"): cycle c counted from the
    descriptor transfer (c = 0); `desc.valid` high in cycle 0 only; `params.valid` /
    `act_in.valid` high when the host has a beat left and the pattern is 1 at c, or a beat
    offered before was not taken; `act_out.ready` = the pattern at c.

    x: (C_in, H, W); params: uint8 (beats, 9 * PI), the layer's parameter beats;
    stimulus: a cycle.Stimulus or None (never stalls). Returns (output uint8
    (C_out, H_out, W_out), trace rows as a structured array with cycle.TRACE_DTYPE).
    """
    from rep_accel.hdl.top import Accelerator
    from rep_accel.sim import cycle as simcycle

    dut = Accelerator(generics)
    pp, pa, po_pat = (stimulus or simcycle.Stimulus()).arrays()
    scheduled = layout.schedule_layer(shape, generics)
    acts = streams.layer_streams(x, scheduled, generics)
    params = np.ascontiguousarray(params, dtype=np.uint8)
    rows, words = [], []

    def value(row) -> int:
        return int.from_bytes(row.tobytes(), "little")

    async def tb(ctx):
        ctx.set(dut.desc.valid, 0)
        await ctx.tick()
        c = 0
        n_par = n_act = 0
        pend_par = pend_act = False
        need = scheduled.output_beats
        while True:
            assert c < 100 * scheduled.cycles + 1000, "the layer did not finish"
            ctx.set(dut.desc.valid, int(c == 0))
            ctx.set(Value.cast(dut.desc.payload), layout.pack_descriptor(shape, generics))
            par_valid = n_par < len(params) and (pend_par or bool(pp[c % len(pp)]))
            act_valid = n_act < len(acts) and (pend_act or bool(pa[c % len(pa)]))
            ready = int(po_pat[c % len(po_pat)])
            ctx.set(dut.params.valid, int(par_valid))
            if n_par < len(params):
                ctx.set(dut.params.payload, value(params[n_par]))
            ctx.set(dut.act_in.valid, int(act_valid))
            if n_act < len(acts):
                ctx.set(dut.act_in.payload, value(acts[n_act]))
            ctx.set(dut.act_out.ready, ready)
            sig = [int(c == 0), ctx.get(dut.desc.ready), int(par_valid), ctx.get(dut.params.ready), int(act_valid),
                   ctx.get(dut.act_in.ready), ctx.get(dut.act_out.valid), ready, ctx.get(dut.busy), ctx.get(dut.done)]
            rows.append((c, *sig))
            if c == 0:
                assert sig[1], "desc.ready low in cycle 0"
            elif sig[-1]:
                break
            if par_valid and sig[3]:
                n_par += 1
            pend_par = par_valid and not sig[3]
            if act_valid and sig[5]:
                n_act += 1
            pend_act = act_valid and not sig[5]
            if sig[6] and ready:
                words.append(ctx.get(dut.act_out.payload))
            await ctx.tick()
            c += 1
        assert len(words) == need and n_par == len(params) and n_act == len(acts)

    simulate(dut, tb)
    beats = np.array([unpack_lanes(wd, generics.po, 8) for wd in words], dtype=np.uint8)
    out = streams.layer_output(beats, scheduled, generics)
    return out, np.array(rows, dtype=simcycle.TRACE_DTYPE)


def back_to_back_calm_and_stalled(g, shapes, seed):
    """Random layers of `shapes` back to back on `g`, with a host that never stalls and
    with random gaps and drops: outputs equal the reference in both runs, the calm run takes
    layout.layer_cycles and reports it, the stalled one takes longer and reports its own."""
    print(f"seed={seed}")
    rng = np.random.default_rng(seed)
    layers = []
    for s in shapes:
        w, b, m0, n = random_layer(rng, s)
        layers.append((s, random_input(rng, s), w, b, m0, n))
    calm = run_layers(g, layers, seed=seed)
    stalled = run_layers(g, layers, seed=seed, in_gap=0.3, param_gap=0.2, ready_drop=0.3)
    for (s, x, w, b, m0, n), r0, r1 in zip(layers, calm, stalled):
        ref = reference_layer(x, s, w, b, m0, n)
        assert np.array_equal(r0.out, ref)
        assert np.array_equal(r1.out, r0.out)
        assert r0.cycles_measured == r0.cycles_reported == layout.layer_cycles(s, g)
        assert r1.cycles_measured == r1.cycles_reported > r0.cycles_measured
        assert r0.done_pulses == r1.done_pulses == 1


def check_against_cycle_simulator(g, shape, seed, stim_seed):
    """A random layer of `shape` on `g` under the simulator's host patterns of `stim_seed`
    (None: never stalls): outputs equal to the numpy reference and the cycle simulator's,
    every port in every cycle equal to its trace; without stalls layout.layer_cycles."""
    from rep_accel.sim import cycle as simcycle
    print(f"seed={seed} stimulus seed={stim_seed}")
    rng = np.random.default_rng(seed)
    w, b, m0, n = random_layer(rng, shape)
    x = random_input(rng, shape)
    ref = reference_layer(x, shape, w, b, m0, n)
    stimulus = None if stim_seed is None else simcycle.Stimulus.random(stim_seed, 0.6, 0.6, 0.6, length=97)
    scheduled = layout.schedule_layer(shape, g)
    params = np.concatenate([layout.pack_group_params(w, b, m0, n, shape, j, g) for j in scheduled.groups])
    out, trace = run_traced(g, shape, x, params, stimulus)
    sim = simcycle.run_layer(x, shape, params, g, stimulus, trace=True)
    assert np.array_equal(out, ref), f"outputs differ at {np.argwhere(out != ref)[:5].tolist()}"
    assert np.array_equal(out, sim.output)
    assert len(trace) == len(sim.trace) == sim.cycles + 1
    for name in simcycle.TRACE_SIGNALS:
        diff = np.flatnonzero(trace[name] != sim.trace[name])
        assert diff.size == 0, f"{name} differs from cycle {diff[0]}: RTL {trace[name][diff[0]:diff[0] + 8]}, " \
                               f"simulator {sim.trace[name][diff[0]:diff[0] + 8]}"
    if stim_seed is None:
        assert sim.cycles == scheduled.cycles
    return ref
