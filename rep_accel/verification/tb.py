"""The cocotb testbench of the accelerator's top level (`rep_accel.hdl.top.Accelerator`,
Verilog module `rep_accel_top`; ports in docs/architecture.md, "Interfaces").

    tb = AcceleratorTB(dut, generics)
    await tb.start()                                   # clock, reset
    run = await tb.run_layer(shape, params, act_in, stimulus)
    record = Scoreboard(generics).check(name, shape, expected, run)

Parts:
  StreamSource   host side of an input stream (desc, params, act_in): offers beats in order,
                 valid from a seeded pattern (cycle.Stimulus), never dropped before its transfer
  StreamSink     host side of act_out: ready from a pattern, collects the transferred beats
  AcceleratorTB  clock and reset; runs one layer: drives the sources and the sink, records
                 every port's valid/ready and busy/done per cycle (the simulator's trace format,
                 sim.cycle.TRACE_DTYPE), measures cycles from the descriptor transfer to the
                 last output transfer and reads the `cycles` output at `done`
  Scoreboard     the expected results (simulator in cycle mode with the same host, golden
                 model) and the comparison of an RTL run with them

The host of one clock is evaluated in one coroutine (drive after the rising edge, sample in
ReadOnly when the DUT's combinational `ready`s have settled) rather than one coroutine per
stream: with cocotb every trigger costs tens of microseconds, and this halves them.

Host timing follows `rep_accel.sim.cycle.Stimulus` exactly (patterns indexed by the cycle
counted from the descriptor transfer, c = 0), so the RTL and the simulator see the same
host, stalls included, and their traces must be equal row for row.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge

from .. import golden
from ..errors import RepAccelError
from ..generics import HardwareGenerics
from ..layout import LayerShape, as_scheduled, layer_cycles, output_order, pack_descriptor
from .. import streams
from ..sim import cycle as simcycle

#: Clock period (ns); the value only matters to waveform viewers.
CLOCK_NS = 10
#: Cycles reset is held high.
RESET_CYCLES = 2


def beats_to_ints(rows: np.ndarray) -> list[int]:
    """Stream beats, uint8 (B, bytes), to payload integers: byte k in bits [8k+7 : 8k]."""
    rows = np.ascontiguousarray(rows).view(np.uint8)
    return [int.from_bytes(r.tobytes(), "little") for r in rows]


def _bit(handle) -> int:
    """A one-bit port's value as 0/1 (raises ValueError on X/Z)."""
    return int(handle.value)


class StreamSource:
    """Host side of an input stream `<name>__payload`, `__valid`, `__ready`.

    `load(beats, pattern)` queues payload integers. In cycle c (counted from the
    descriptor transfer) valid is high iff beats remain and (pattern[c % len] == 1 or the
    beat offered before was not taken): the stream rule (valid never drops before its
    transfer) and exactly cycle.Stimulus's host."""

    def __init__(self, dut, name: str):
        self.name = name
        self._payload = getattr(dut, f"{name}__payload")
        self._valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.width = len(self._payload)
        self._beats: list[int] = []
        self._pattern: list[int] = [1]
        self.next = 0
        self._held = False
        self._shown = -1
        self.valid_now = 0
        self._valid.value = 0

    def load(self, beats: list[int], pattern=None) -> None:
        self._beats = beats
        self._pattern = [1] if pattern is None else [int(v) for v in pattern]
        self.next = 0
        self._held = False
        self._shown = -1

    @property
    def remaining(self) -> int:
        return len(self._beats) - self.next

    def drive(self, c: int) -> int:
        v = int(self.next < len(self._beats) and (self._held or self._pattern[c % len(self._pattern)] != 0))
        if v and self._shown != self.next:
            self._payload.value = self._beats[self.next]
            self._shown = self.next
        if v != self.valid_now:
            self._valid.value = v
            self.valid_now = v
        return v

    def sample(self, ready: int) -> bool:
        """After the DUT settled: whether the offered beat transferred this cycle."""
        t = bool(self.valid_now and ready)
        if t:
            self.next += 1
        self._held = bool(self.valid_now) and not t
        return t

    def idle(self) -> None:
        self._beats, self.next, self._held = [], 0, False
        if self.valid_now:
            self._valid.value = 0
            self.valid_now = 0


class StreamSink:
    """Host side of the output stream `<name>__payload`, `__valid`, `__ready`: ready in
    cycle c is pattern[c % len]; every transferred payload is kept in order."""

    def __init__(self, dut, name: str):
        self._payload = getattr(dut, f"{name}__payload")
        self.valid = getattr(dut, f"{name}__valid")
        self._ready = getattr(dut, f"{name}__ready")
        self.width = len(self._payload)
        self._pattern: list[int] = [1]
        self.beats: list[int] = []
        self.ready_now = 1
        self._ready.value = 1

    def start(self, pattern=None) -> None:
        self._pattern = [1] if pattern is None else [int(v) for v in pattern]
        self.beats = []

    def drive(self, c: int) -> int:
        r = self._pattern[c % len(self._pattern)]
        if r != self.ready_now:
            self._ready.value = r
            self.ready_now = r
        return r

    def take(self) -> None:
        self.beats.append(self._payload.value.to_unsigned())

    def idle(self, ready: int = 1) -> None:
        if self.ready_now != ready:
            self._ready.value = ready
            self.ready_now = ready


@dataclass
class RtlRun:
    """One layer on the RTL.

    beats: uint8 (n, PO), act_out beats in transfer order; cycles_measured: descriptor
    transfer to last output transfer inclusive (None if no output); cycles_reported: the
    `cycles` output in the `done` cycle (None without `done`); trace: TRACE_DTYPE rows from
    the descriptor transfer to `done`; params_taken / act_taken: beats consumed;
    seconds: wall time of the clocked loop; aborted: stopped by a reset at `reset_at`;
    timeout: no `done` within the cycle limit; error: a protocol problem seen by the host."""

    beats: np.ndarray
    cycles_measured: int | None
    cycles_reported: int | None
    trace: np.ndarray
    params_taken: int
    act_taken: int
    seconds: float
    aborted: bool = False
    timeout: bool = False
    errors: list = field(default_factory=list)

    @property
    def cycles_run(self) -> int:
        """Clock cycles the loop ran (trace rows)."""
        return int(self.trace.shape[0])


class AcceleratorTB:
    """Testbench of `rep_accel_top` for hardware `generics`: clock, reset, the three input
    sources, the output sink and the per-cycle port recorder."""

    def __init__(self, dut, generics: HardwareGenerics):
        self.dut = dut
        self.g = generics
        self.clk = dut.clk
        self.rst = dut.rst
        self.desc = StreamSource(dut, "desc")
        self.params = StreamSource(dut, "params")
        self.act_in = StreamSource(dut, "act_in")
        self.act_out = StreamSink(dut, "act_out")
        self.busy, self.done, self.cycles = dut.busy, dut.done, dut.cycles
        want = {"params": 8 * generics.param_beat_bytes, "act_in": 8 * generics.pi, "act_out": 8 * generics.po}
        have = {"params": self.params.width, "act_in": self.act_in.width, "act_out": self.act_out.width}
        if want != have:
            raise RepAccelError(f"the simulated RTL's stream widths {have} are not those of {generics} ({want}): "
                                f"the build and the job disagree")
        self._edge = RisingEdge(self.clk)
        self._settled = ReadOnly()
        self._after_cycles = 0

    async def start(self) -> None:
        """Start the clock and reset the design."""
        cocotb.start_soon(Clock(self.clk, CLOCK_NS, unit="ns").start())
        await self.reset()

    async def reset(self, cycles: int = RESET_CYCLES) -> None:
        """Synchronous reset: the host drops every valid and holds rst for `cycles` clocks."""
        self.desc.idle()
        self.params.idle()
        self.act_in.idle()
        self.act_out.idle(1)
        self.rst.value = 1
        for _ in range(cycles):
            await self._edge
        self.rst.value = 0
        await self._edge

    async def idle_state(self) -> dict:
        """The status ports sampled in the current cycle, with every valid low (then the next
        edge): what a reset must leave, and what follows `done`."""
        await self._settled
        s = {"desc_ready": _bit(self.desc.ready), "busy": _bit(self.busy), "done": _bit(self.done),
             "act_out_valid": _bit(self.act_out.valid), "params_ready": _bit(self.params.ready),
             "act_in_ready": _bit(self.act_in.ready)}
        self._after_cycles = self.cycles.value.to_unsigned()
        await self._edge
        return s

    async def wait_idle(self, limit: int = 64) -> bool:
        """Wait until desc.ready is high (the engine is idle); ends just after a rising edge."""
        for _ in range(limit):
            await self._settled
            idle = _bit(self.desc.ready)
            await self._edge
            if idle:
                return True
        return False

    async def run_layer(self, shape: LayerShape, params: np.ndarray, act_in: np.ndarray, stimulus=None,
                        reset_at: int | None = None, max_cycles: int | None = None) -> RtlRun:
        """Run one layer: the descriptor of `shape`, the parameter beats `params` uint8
        (B, 9 * PI) and activation beats `act_in` (B, PI) (every tile's, in order), with the
        host of `stimulus` (cycle.Stimulus; None never stalls). With `reset_at`, stop in
        that cycle (counted from the descriptor transfer) without sampling it; the caller
        resets. Stops at `done` (then checks the next cycle: done low, idle, `cycles` held),
        or after `max_cycles` (default: generous for the layer)."""
        g = self.g
        pat_p, pat_i, pat_o = (stimulus or streams.Stimulus()).arrays()
        if max_cycles is None:
            worst = 1.0 / min(pat_p.mean(), pat_i.mean(), pat_o.mean())
            max_cycles = int(4 * worst * layer_cycles(shape, g)) + 1000
        errors = []
        if not await self.wait_idle():
            errors.append("desc.ready never went high: the engine is not idle before the layer")
        self.desc.load([pack_descriptor(shape, g)])
        self.params.load(beats_to_ints(params), pat_p)
        self.act_in.load(beats_to_ints(act_in), pat_i)
        self.act_out.start(pat_o)
        desc, par, act, out = self.desc, self.params, self.act_in, self.act_out
        d_ready, p_ready, i_ready, o_valid = desc.ready, par.ready, act.ready, out.valid
        busy_h, done_h = self.busy, self.done
        rows = []
        c = 0
        last_out = -1
        reported = None
        aborted = timeout = False
        in_readonly = False
        t0 = time.perf_counter()
        while True:
            if reset_at is not None and c == reset_at:
                aborted = True
                break
            dv = desc.drive(c)
            pv = par.drive(c)
            iv = act.drive(c)
            orr = out.drive(c)
            await self._settled
            in_readonly = True
            dr = int(d_ready.value)
            pr = int(p_ready.value)
            ir = int(i_ready.value)
            ov = int(o_valid.value)
            busy = int(busy_h.value)
            done = int(done_h.value)
            rows.append((c, dv, dr, pv, pr, iv, ir, ov, orr, busy, done))
            if c == 0 and not dr:
                errors.append("the descriptor was not accepted in the cycle it was offered while the engine was idle")
            desc.sample(dr)
            par.sample(pr)
            act.sample(ir)
            if ov and orr:
                out.take()
                last_out = c
            if done:
                reported = self.cycles.value.to_unsigned()
                break
            if c >= max_cycles:
                timeout = True
                break
            c += 1
            await self._edge
            in_readonly = False
        seconds = time.perf_counter() - t0
        if in_readonly:
            await self._edge
        params_taken, act_taken = par.next, act.next
        for s in (desc, par, act):
            s.idle()
        out.idle(1)
        if reported is not None:
            # The cycle after `done`: the pulse is over, the engine idle, `cycles` still holds the count.
            after = await self.idle_state()
            after_cycles = self._after_cycles
            if after["done"] or after["busy"] or not after["desc_ready"] or after_cycles != reported:
                errors.append(f"the cycle after done: {after}, cycles={after_cycles} (expected done 0, busy 0, "
                              f"desc_ready 1, cycles {reported})")
        trace = np.zeros(len(rows), dtype=streams.TRACE_DTYPE)
        if rows:
            arr = np.asarray(rows, dtype=np.int64)
            for k, name in enumerate(streams.TRACE_DTYPE.names):
                trace[name] = arr[:, k]
        nbytes = g.po
        beats = np.zeros((len(out.beats), nbytes), dtype=np.uint8)
        for k, v in enumerate(out.beats):
            beats[k] = np.frombuffer(v.to_bytes(nbytes, "little"), dtype=np.uint8)
        return RtlRun(beats, last_out + 1 if last_out >= 0 else None, reported, trace, params_taken, act_taken,
                      seconds, aborted, timeout, errors)


# ----------------------------------------------------------------------------------
# Scoreboard
# ----------------------------------------------------------------------------------

@dataclass
class Expected:
    """What a layer must give: the simulator's cycle-mode run with the same host (output,
    cycles, trace), the golden model's output and the no-stall cycle formula."""

    sim: simcycle.CycleResult
    golden: np.ndarray
    layer_cycles: int
    stalled: bool


def _first_diffs(a: np.ndarray, b: np.ndarray, k: int = 5) -> list:
    return [[int(v) for v in idx] for idx in np.argwhere(a != b)[:k]]


class Scoreboard:
    """Expected results of a layer and the comparison of an RTL run with them.

    Checks of `check` (each failure is one message in the record's `failures`):
      - every input beat consumed, none left (params, act_in);
      - exactly tiles * H_out * W_out output beats (nothing lost or duplicated);
      - output lanes past a tile's out_count are zero;
      - the output equals the simulator's bit for bit and the golden model's;
      - the measured cycles equal the simulator's (stalls included), the `cycles` port
        reports the same count, and without stalls both equal layout.layer_cycles;
      - the port trace equals the simulator's cycle-mode trace row for row (when asked).
    """

    def __init__(self, generics: HardwareGenerics):
        self.g = generics
        self.records: list[dict] = []

    def expect(self, layer, x: np.ndarray, params: np.ndarray, stimulus=None) -> Expected:
        sim = simcycle.run_layer(x, layer.shape, params, self.g, stimulus, trace=True, name=layer.name)
        gold = golden.conv_layer(np.asarray(x)[None], layer)[0]
        stalled = stimulus is not None and any(not np.all(a == 1) for a in stimulus.arrays())
        return Expected(sim, gold, layer_cycles(layer.shape, self.g), stalled)

    def check(self, name: str, shape: LayerShape, exp: Expected, run: RtlRun, n_params: int, n_act: int,
              compare_trace: bool = True, extra: dict | None = None) -> dict:
        g = self.g
        failures = list(run.errors)
        scheduled = as_scheduled(shape, g, name)
        n_beats = scheduled.output_beats
        hw = shape.out_height * shape.out_width
        out = None
        if run.timeout:
            failures.append(f"no done within {run.cycles_run} cycles")
        if run.params_taken != n_params:
            failures.append(f"params: {run.params_taken} of {n_params} beats consumed")
        if run.act_taken != n_act:
            failures.append(f"act_in: {run.act_taken} of {n_act} beats consumed")
        if len(run.beats) != n_beats:
            failures.append(f"act_out: {len(run.beats)} beats, expected {n_beats} (tiles x H_out x W_out)")
        else:
            out = streams.layer_output(run.beats, shape, g)
            at = 0
            for j in scheduled.groups:
                # A group's beats in layout.output_order (direct: output pixels in raster order,
                # then its tiles in turn; Winograd: block by block, then tiles, then pixels).
                part = np.asarray(run.beats[at:at + j.count * hw])
                tile_of_beat = output_order(shape.out_height, shape.out_width, j.count,
                                            scheduled.winograd)[:, 0]
                at += j.count * hw
                for k, t in enumerate(j.tiles):
                    if np.any(part[tile_of_beat == k, t.out_count:]):
                        failures.append(f"tile {t.index}: lanes past out_count={t.out_count} are not zero")
            if not np.array_equal(out, exp.sim.output):
                failures.append(f"output differs from the simulator in {int(np.count_nonzero(out != exp.sim.output))} "
                                f"of {out.size} values, first (c, y, x) {_first_diffs(out, exp.sim.output)}")
            if not np.array_equal(out, exp.golden):
                failures.append(f"output differs from the golden model in {int(np.count_nonzero(out != exp.golden))} "
                                f"of {out.size} values, first (c, y, x) {_first_diffs(out, exp.golden)}")
        if not np.array_equal(exp.sim.output, exp.golden):
            failures.append("the simulator and the golden model disagree (a simulator bug)")
        if run.cycles_measured != exp.sim.cycles:
            failures.append(f"cycles measured {run.cycles_measured} != simulator {exp.sim.cycles}")
        if run.cycles_reported != run.cycles_measured:
            failures.append(f"`cycles` port reports {run.cycles_reported}, measured {run.cycles_measured}")
        if not exp.stalled and run.cycles_measured != exp.layer_cycles:
            failures.append(f"cycles measured {run.cycles_measured} != layout.layer_cycles {exp.layer_cycles} (no stalls)")
        trace_diff = streams.compare_traces(run.trace, exp.sim.trace) if compare_trace else None
        if trace_diff:
            failures.append("port trace differs from the simulator's: " + trace_diff)
        record = {
            "name": name, "shape": {k: getattr(shape, k) for k in ("cin", "cout", "groups", "stride", "height", "width",
                                                                   "input_signed")},
            "tiles": len(scheduled.tiles), "tile_groups": len(scheduled.groups), "stalled": exp.stalled,
            "passed": not failures, "failures": failures,
            "outputs_compared": int(out.size) if out is not None else 0,
            "beats_compared": len(run.beats),
            "rtl_cycles": run.cycles_measured, "rtl_cycles_reported": run.cycles_reported,
            "sim_cycles": exp.sim.cycles, "layer_cycles": exp.layer_cycles,
            "trace_compared": bool(compare_trace), "trace_rows": int(run.trace.shape[0]),
            "trace_equal": bool(compare_trace and trace_diff is None),
            "rtl_seconds": run.seconds, "clock_cycles": run.cycles_run,
        }
        if extra:
            record.update(extra)
        self.records.append(record)
        return record
