"""The accelerator's top level: controller, window generator, array, output columns, output register."""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from rep_accel.generics import UNIT_KINDS, HardwareGenerics

from . import array, columns, unit, window, winograd_columns
from .array import SystolicArray
from .columns import OutputColumns
from .winograd_columns import WinogradColumns
from .controller import LayerController
from .output import OutputStage
from .layouts import (CYCLES_BITS, DescriptorLayout, RequantParamLayout, act_in_shape, act_out_shape,
                      column_control_layout, params_shape)
from .window import WindowGenerator


#: The output register (OutputStage) between the columns and `act_out`: one cycle.
OUTPUT_LATENCY = 1


def columns_latency(generics: HardwareGenerics) -> int:
    """Cycles of the output columns, column 0's partial sum to the aligned lanes."""
    if generics.unit == "winograd":
        return winograd_columns.latency(generics)
    return columns.latency(generics)


def pipeline_latency(generics: HardwareGenerics) -> int:
    """Cycles from a step's issue to its output beat in this RTL, the sum of the stage
    constants: window generator, array (column 0), output columns (accumulator,
    requantization, de-skew; on Winograd units also the output transform and the result
    buffer), output register. Equal to `generics.pipeline_latency` (PI + PO +
    UnitKind.latency_fixed): `check_latency` asserts it."""
    col0 = window.latency(generics) + array.latency(generics, 0)
    return col0 + columns_latency(generics) + OUTPUT_LATENCY


def check_latency() -> None:
    """The one place where the front end's pipeline latency (rep_accel.generics: PI + PO +
    the unit kind's latency_fixed, which the compiler and simulator schedule with) is
    checked against the RTL's stage constants: for every unit kind, on a few array shapes
    (the fixed part must not depend on PI and PO). Runs when this module is imported, so no
    RTL is generated from stages that disagree with the simulator."""
    built = {name for name, kind in UNIT_KINDS.items() if kind.rtl}
    assert built == set(array.UNIT_LATENCY), "every unit kind the front end says hdl/ builds needs its RTL"
    for kind in built:
        for pi, po in ((1, 1), (2, 3), (8, 8)):
            g = HardwareGenerics(pi=pi, po=po, unit=kind)
            assert pipeline_latency(g) == g.pipeline_latency, \
                f"unit {kind}, {pi}x{po}: the RTL's stages give {pipeline_latency(g)}, the front end {g.pipeline_latency}"


check_latency()


class Accelerator(wiring.Component):
    """One layer engine: 3x3 convolution (stride 1 or 2, padding 1, groups) + bias +
    requantization + ReLU, streamed (docs/architecture.md).

    Ports (Verilog names in brackets; a stream `s` is `s__payload`, `s__valid`, `s__ready`):
      desc      In(stream of DescriptorLayout)   one beat starts a layer [desc__*]
      params    In(stream of PI x 72 bits)       each tile group's parameter beats
                                                 (layout.pack_group_params) [params__*]
      act_in    In(stream of PI x 8 bits)        input pixels, lane i in bits [8i+7:8i], one pass per tile
                                                 group (layout.input_beats) [act_in__*]
      act_out   Out(stream of PO x 8 bits)       output pixels, uint8; per tile group raster order of the
                                                 output pixels, then its K tiles in turn [act_out__*]
      busy      Out(1)   high from the cycle after the descriptor transfer to the last output transfer
      done      Out(1)   one-cycle pulse in the cycle after the last output transfer
      cycles    Out(32)  the layer's cycles, descriptor transfer to last output transfer inclusive;
                         valid from `done` until the next descriptor transfer
    plus `clk` and `rst` (synchronous, active high).

    Latency: an output beat is valid L = PI + PO + LATENCY_FIXED cycles after the step that
    emits it issues (tile kt's step of the last channel group at its position;
    generics.pipeline_latency), plus stall cycles. With a host that never stalls a
    layer takes exactly layout.layer_cycles cycles.
    Throughput: one step per cycle: one act_in beat, a padding step, or a repeat step (tile
    kt > 0 of a group at a position that completes an output, on the window already formed).

    Tile groups (generic max_group, docs/architecture.md "Tile groups"): each output column
    keeps max_group accumulators and requantization entries (hdl/columns.py), each unit
    max_cg kernels (a group of K tiles with cg channel groups uses K * cg of them).

    Stalls follow the contract's global-stall model exactly (when the output register holds
    a beat that is not taken, or the current step needs an act_in beat that is not valid,
    the whole pipeline holds): the datapath itself runs freely with bubbles, and
    `OutputStage` offers every beat in the cycle the stalled pipeline would. `act_out.valid`
    never depends on `act_out.ready`.
    """

    def __init__(self, generics: HardwareGenerics, dsp: str = "generic"):
        self._g = generics
        self._dsp = dsp
        super().__init__({
            "desc": In(stream.Signature(DescriptorLayout)),
            "params": In(stream.Signature(params_shape(generics))),
            "act_in": In(stream.Signature(act_in_shape(generics))),
            "act_out": Out(stream.Signature(act_out_shape(generics))),
            "busy": Out(1),
            "done": Out(1),
            "cycles": Out(CYCLES_BITS),
        })

    @property
    def generics(self) -> HardwareGenerics:
        return self._g

    def elaborate(self, platform):
        m = Module()
        g = self._g
        m.submodules.controller = ctrl = LayerController(g)
        m.submodules.window = wgen = WindowGenerator(g, self._dsp)
        m.submodules.array = arr = SystolicArray(g, self._dsp)
        wk = g.unit == "winograd"
        m.submodules.columns = cols = WinogradColumns(g) if wk else OutputColumns(g)
        control = column_control_layout(g)
        m.submodules.output = out = OutputStage(8 * g.po, g.pipeline_latency)
        wiring.connect(m, wiring.flipped(self.desc), ctrl.desc)
        wiring.connect(m, wiring.flipped(self.params), ctrl.params)
        m.d.comb += [
            self.busy.eq(ctrl.busy),
            self.done.eq(ctrl.done),
            self.cycles.eq(ctrl.cycles),
            ctrl.in_valid.eq(self.act_in.valid),
            self.act_in.ready.eq(ctrl.in_ready),
        ]

        # Parameter beats: weight beats to the units, requantization beats to the columns.
        m.d.comb += [
            arr.wr_en.eq(ctrl.wr_en),
            arr.wr_lane.eq(ctrl.wr_lane),
            arr.wr_addr.eq(ctrl.wr_addr),
            arr.wr_data.eq(self.params.payload),
            cols.param_we.eq(ctrl.rq_we),
            cols.param_lane.eq(ctrl.rq_lane),
            cols.param_tile.eq(ctrl.rq_tile),
            cols.param.eq(RequantParamLayout(self.params.payload[:RequantParamLayout.size])),
        ]

        # The datapath runs freely (no enable): a cycle without a step carries a bubble.
        # step -> windows -> partial sums -> lanes.
        m.d.comb += [
            wgen.step.eq(ctrl.step),
            wgen.pixels.eq(self.act_in.payload),
            wgen.signed.eq(ctrl.input_signed),
            arr.windows.eq(wgen.v if wk else wgen.windows),
        ]
        if wk:
            # The layer's mode (a Winograd layer, or a stride-2 layer in direct mode), a layer constant.
            m.d.comb += [wgen.winograd.eq(ctrl.winograd), arr.winograd.eq(ctrl.winograd),
                         cols.winograd.eq(ctrl.winograd)]

        # The array's weight address leads its windows by unit.ADDR_LEAD cycles: the step's
        # kernel address kt*cg + g, delayed by the rest of the window generator's latency.
        lead_addr = ctrl.step.waddr
        for k in range(window.latency(g) - unit.ADDR_LEAD):
            reg = Signal.like(ctrl.step.waddr, name=f"waddr_d{k + 1}", reset_less=True)
            m.d.sync += reg.eq(lead_addr)
            lead_addr = reg
        m.d.comb += arr.rd_addr.eq(lead_addr)

        # The step's control travels beside the data to column 0's partial sum.
        ctl = Signal(control)
        m.d.comb += [ctl.valid.eq(ctrl.step.valid & ctrl.step.compute), ctl.first.eq(ctrl.step.first),
                     ctl.emit.eq(ctrl.step.emit),
                     ctl.kt.eq(ctrl.step.kt)]
        if wk:
            m.d.comb += [ctl.result.eq(ctrl.step.result), ctl.wbuf.eq(ctrl.step.wbuf),
                         ctl.out_tile.eq(ctrl.step.out_tile), ctl.out_pixel.eq(ctrl.step.out_pixel),
                         ctl.out_buf.eq(ctrl.step.out_buf)]
        for k in range(window.latency(g) + array.latency(g, 0) - 1):   # the columns take it a cycle ahead
            reg = Signal(control, name=f"ctl_d{k + 1}")
            m.d.sync += reg.eq(ctl)
            ctl = reg
        m.d.comb += cols.ctl.eq(ctl)
        for o in range(g.po):
            m.d.comb += cols.psums[o].eq(arr.psums[o])

        # act_out on the global-stall schedule.
        wiring.connect(m, out.out, wiring.flipped(self.act_out))
        m.d.comb += [
            out.advance.eq(ctrl.advance),
            out.step_emit.eq(ctrl.step.emit),
            out.step_tag.eq(ctrl.step.tag),
            out.result_valid.eq(cols.emit),
            out.result.eq(cols.data),
            ctrl.out_block.eq(out.out_block),
            ctrl.group_done.eq(out.group_done),
        ]
        return m
