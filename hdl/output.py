"""The output stage: the global-stall schedule of `act_out` on top of a free-running datapath."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .layouts import memory_depth


class OutputStage(wiring.Component):
    """Releases the datapath's results on `act_out` exactly as a globally stalled pipeline would.

    The contract (docs/architecture.md, "Pipeline") is a pipeline of L stages that all hold
    when `advance` is low. Holding thousands of datapath registers needs an enable net
    across the whole chip, so the datapath instead runs freely and carries a bubble in
    every cycle that issues no step; only this stage follows the stalled timing:

      - a delay line of L - 1 stages of the step's `emit` and `tag` flags advances with
        `advance`: its last stage says when the stalled pipeline's output register would
        load an output beat, and whether it ends a tile group;
      - the datapath's result for a step issued in cycle T is on `result` in cycle
        T + L - 1; the stalled pipeline loads it at the L-th advancing cycle counted from T,
        never earlier. Results not yet due wait in a FIFO (with a bypass when it is
        empty): at most L - 1 of them, the steps issued within the last L - 1 advancing
        cycles;
      - the output register (`out`) loads with `advance` and empties when the host takes
        its beat, as in the contract.
    So every `act_out` beat, and every cycle it is offered, equals the global-stall model's.

    Ports:
      advance      In(1)    the pipeline advances this cycle (controller)
      step_emit    In(1)    the step issued this cycle completes an output pixel
      step_tag     In(1)    ... and is the tile group's last step
      result_valid In(1)    `result` holds an output beat (the free-running datapath's `emit`)
      result       In(PO x 8)
      out          Out(stream of PO x 8)   act_out; valid never depends on ready
      out_block    Out(1)   the output register holds a beat that is not taken this cycle
      group_done   Out(1)   the tile group's last beat transfers this cycle

    Latency: `latency` (L) cycles from a step's issue to its beat in `out`, plus the stall
    cycles in between. Throughput: one beat per cycle.
    """

    def __init__(self, width: int, latency: int):
        if latency < 2:
            raise ValueError(f"latency {latency} < 2")
        self._width = width
        self._latency = latency
        super().__init__({
            "advance": In(1),
            "step_emit": In(1),
            "step_tag": In(1),
            "result_valid": In(1),
            "result": In(width),
            "out": Out(stream.Signature(width)),
            "out_block": Out(1),
            "group_done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        depth = memory_depth(self._latency)

        # The stalled schedule: (emit, tag) through L - 1 stages that advance together.
        emit, tag = self.step_emit, self.step_tag
        for k in range(1, self._latency):
            e, t = Signal(name=f"emit_d{k}"), Signal(name=f"tag_d{k}")
            with m.If(self.advance):
                m.d.sync += [e.eq(emit), t.eq(tag)]
            emit, tag = e, t
        take = self.advance & emit

        # Results that are ready before the schedule takes them, in issue order.
        m.submodules.fifo = fifo = Memory(shape=self._width, depth=depth, init=[])
        wr = fifo.write_port()
        rd = fifo.read_port(domain="comb")
        head = Signal(range(depth))
        tail = Signal(range(depth))
        count = Signal(range(depth + 1))
        empty = count == 0
        push = self.result_valid & ~(take & empty)
        pop = take & ~empty
        m.d.comb += [wr.en.eq(push), wr.addr.eq(tail), wr.data.eq(self.result), rd.addr.eq(head)]
        with m.If(push):
            m.d.sync += tail.eq(Mux(tail == depth - 1, 0, tail + 1))
        with m.If(pop):
            m.d.sync += head.eq(Mux(head == depth - 1, 0, head + 1))
        # The count's adders work on registers only; `advance` (late: the stall decision)
        # just picks one of the two sums. Same value as count + push - pop.
        count_if_advance = count + (self.result_valid & ~(emit & empty)) - (emit & ~empty)
        count_if_held = count + self.result_valid
        m.d.sync += count.eq(Mux(self.advance, count_if_advance, count_if_held))
        beat = Mux(empty, self.result, rd.data)

        # The output register, as in the contract: loads with the pipeline, empties when taken.
        last = Signal()
        with m.If(self.advance):
            m.d.sync += [self.out.valid.eq(emit), self.out.payload.eq(beat), last.eq(tag)]
        with m.Elif(self.out.ready):
            m.d.sync += self.out.valid.eq(0)
        m.d.comb += [
            self.out_block.eq(self.out.valid & ~self.out.ready),
            self.group_done.eq(self.out.valid & self.out.ready & last),
        ]
        return m
