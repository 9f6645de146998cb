"""The output columns of an array of Winograd units: Winograd-domain sums per tile, the
output transform, a result buffer per column, requantization and the de-skew."""

from __future__ import annotations

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from rep_accel.generics import HardwareGenerics

from . import requant, winograd
from .columns import column_ports, control_taps, deskew, tile_params, tile_sums
from .layouts import ACC_BITS, lane, tile_shape
from .requant import Requantizer
from .winograd import OUTPUT_TAPS, SUM_BITS, SUM_WORD_BITS, TILE_TAPS, Y_WORD_BITS, WinogradOutputTransform

#: Cycles from a step's sums on `psums[o]` (P) to the cycle its block is written into the
#: result buffer (and a beat step's read of it is presented): the sums' register (P+1),
#: then the output transform's (or in direct mode the lane sum's) two stages.
WRITE_STAGE = 1 + winograd.OUTPUT_TRANSFORM_LATENCY
#: From the read (or the direct-mode sum) to v: the buffer's read data registered as it is,
#: the pixel selected, the bias added.
READ_STAGES = 4


def latency(generics: HardwareGenerics) -> int:
    """Cycles from column 0's partial sums (and `ctl`) to the aligned outputs: WRITE_STAGE,
    READ_STAGES, requantization, then the de-skew of PO - 1 columns."""
    return WRITE_STAGE + READ_STAGES + requant.LATENCY + generics.po - 1


def _lane_sum_stage(m: Module, terms: list, name: str) -> list:
    """One register stage of a sum modulo 2^SUM_BITS: each register the sum of up to four
    terms as (a + b) + (c + d), two chained adders."""
    out = []
    for k in range(0, len(terms), 4):
        group = terms[k:k + 4]
        pairs = [group[j] + group[j + 1] if j + 1 < len(group) else group[j] for j in range(0, len(group), 2)]
        reg = Signal(signed(SUM_BITS), name=f"{name}{k // 4}", reset_less=True)
        m.d.sync += reg.eq(pairs[0] + pairs[1] if len(pairs) == 2 else pairs[0])
        out.append(reg)
    return out


class WinogradColumns(wiring.Component):
    """The PO output lanes of an array of Winograd units (docs/architecture.md, "Winograd scan").

    Column o's partial sums (16 Winograd-domain sums of 34 bits) arrive o cycles after
    column 0's. Per column:
      - one set of 16 sums per tile of a tile group (`columns.tile_sums`): a step of tile
        kt sets M[kt] = (first ? 0 : M[kt]) + its partial sums, lane-wise modulo 2^34;
      - Winograd layers: at a step with `result` (the last channel group of an output
        slot) the output transform Y = (A^T M A) >> 2 of M[kt], the block's four int32
        accumulators, goes into the result buffer at (wbuf, kt): two buffers of max_group
        blocks, the slot computing and the slot sending;
      - a step with `emit` sends one beat: Winograd layers read pixel out_pixel of block
        (out_buf, out_tile) from the buffer (a beat step always comes at least one step
        after the step that computed its block, so the read comes after the write, and a
        buffer is rewritten only by the slot after next, which starts after the last beat
        of the slot before); direct-mode (stride-2) layers take the step's own sum of the
        16 lanes (its 3x3 window's dot product: the weights outside the window are 0);
      - v = that accumulator + bias[out_tile], requantized with tile out_tile's (M0, n);
      - the de-skew: column o is delayed PO - 1 - o cycles, so all lanes leave together.
    The parameters are written as in `columns.OutputColumns`.

    Ports (free-running: every register loads every cycle):
      psums     In(544).array(PO)        column o's 16 sums at cycle t + o (hdl/winograd.py lanes)
      ctl       In(column_control_layout) the step's control at cycle t - 1, a cycle ahead of column 0's sums
      winograd  In(1)                    layer constant: 1 Winograd layer, 0 direct mode (stride 2)
      param_we, param_lane, param_tile, param   requantization-parameter writes
      data      Out(PO x 8)              the requantized lanes, valid from t + latency()
      emit      Out(1)                   `ctl.emit` of the step whose beat is on `data`

    Latency: latency(generics) = PO + 12 cycles. Throughput: one step per cycle.
    """

    def __init__(self, generics: HardwareGenerics):
        if generics.unit != "winograd":
            raise ValueError(f"unit kind {generics.unit!r}: WinogradColumns serve Winograd units")
        self._g = generics
        super().__init__(column_ports(generics, unsigned(SUM_WORD_BITS), winograd=In(1)))

    def elaborate(self, platform):
        m = Module()
        g = self._g
        po = g.po
        total = latency(g)

        # The step's control, delayed: tap o + 1 + k is column o's timing P + k.
        ctl = control_taps(m, self.ctl, total)
        m.d.comb += self.emit.eq(ctl[total + 1].emit)

        tile_bits = tile_shape(g).width
        for o in range(po):
            at = lambda k: ctl[o + 1 + k]   # noqa: E731 (the step's control at column o's P + k)
            now, ahead = at(0), ctl[o]

            # P: the tile's 16 sums, lane-wise modulo 2^34 (register at P + 1).
            psum = self.psums[o]

            def add(stored, psum=psum, now=now):
                return Cat(*((Mux(now.first, 0, lane(stored, e, SUM_BITS)) + lane(psum, e, SUM_BITS))[:SUM_BITS]
                             for e in range(TILE_TAPS)))
            sums = tile_sums(m, f"sums{o}", unsigned(SUM_WORD_BITS), g.max_group, now, ahead, add)

            # P+1 .. P+3: the output transform (Winograd layers) and the sum of the 16 lanes
            # (direct mode), both two stages.
            m.submodules[f"output_transform{o}"] = transform = WinogradOutputTransform()
            m.d.comb += transform.m.eq(sums)
            lanes = [lane(sums, e, SUM_BITS).as_signed() for e in range(TILE_TAPS)]
            (lane_sum,) = _lane_sum_stage(m, _lane_sum_stage(m, lanes, f"lane_sum1_{o}_"), f"lane_sum2_{o}_")

            # P+3: the block into the result buffer; a beat's read presented.
            depth = 2 << tile_bits
            m.submodules[f"results{o}"] = results = Memory(shape=Y_WORD_BITS, depth=depth, init=[])
            wr, rd = results.write_port(), results.read_port()
            w3 = at(WRITE_STAGE)
            m.d.comb += [wr.en.eq(w3.valid & w3.result), wr.addr.eq(Cat(w3.kt, w3.wbuf)), wr.data.eq(transform.y),
                         rd.addr.eq(Cat(w3.out_tile, w3.out_buf))]

            # P+4: the read data (a block RAM's output: into a register only); P+5: registered.
            block5 = Signal(Y_WORD_BITS, name=f"block5_{o}", reset_less=True)
            direct4 = Signal(ACC_BITS, name=f"direct4_{o}", reset_less=True)
            direct5 = Signal(ACC_BITS, name=f"direct5_{o}", reset_less=True)
            m.d.sync += [block5.eq(rd.data), direct4.eq(lane_sum[:ACC_BITS]), direct5.eq(direct4)]

            # P+5 -> P+6: the beat's pixel, or the direct-mode sum.
            s5 = at(WRITE_STAGE + 2)
            pixels = Array(lane(block5, p, ACC_BITS) for p in range(OUTPUT_TAPS))
            chosen = Signal(signed(ACC_BITS), name=f"chosen{o}", reset_less=True)
            m.d.sync += chosen.eq(Mux(self.winograd, pixels[s5.out_pixel], direct5))

            # P+6 -> P+7: v = accumulator + bias of the beat's tile, with its M0 and n.
            write_params = self.param_we & (self.param_lane == o)
            params = tile_params(m, f"{o}", g.max_group, write_params, self.param_tile, self.param,
                                 at(WRITE_STAGE + 2).out_tile)
            v = Signal(signed(ACC_BITS), name=f"v{o}", reset_less=True)
            m0 = Signal(32, name=f"m0_{o}", reset_less=True)
            n = Signal(8, name=f"n_{o}", reset_less=True)
            m.d.sync += [v.eq(chosen + params.bias), m0.eq(params.m0), n.eq(params.n)]
            m.submodules[f"requant{o}"] = rq = Requantizer()
            m.d.comb += [rq.v.eq(v), rq.m0.eq(m0), rq.n.eq(n)]

            m.d.comb += lane(self.data, o, 8).eq(deskew(m, rq.y, o, po))
        return m


assert READ_STAGES + WRITE_STAGE + requant.LATENCY == 13, "docs/architecture.md counts the Winograd column's stages"
assert SUM_WORD_BITS == TILE_TAPS * SUM_BITS and Y_WORD_BITS == OUTPUT_TAPS * ACC_BITS
