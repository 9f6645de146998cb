"""The 3x3 unit: one input lane times one output lane of the systolic array."""

from __future__ import annotations

from amaranth.hdl import Module, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel import families

from .layouts import ACC_BITS, ACT_BITS, KERNEL_BITS, WEIGHT_BITS, WINDOW_BITS, WINDOW_TAPS, lane
from . import lut_multiplier
from .lut_multiplier import LutMultiplier
from .weight_buffer import READ_LATENCY, WEIGHT_BANK_DEPTH, BankedWeightBuffer  # noqa: F401 (WEIGHT_BANK_DEPTH: the unit's)

#: Register stages from the cycle a window is presented to the cycle its partial sum is
#: on `psum_out`: DSP input registers, product, product again, the product in the fabric,
#: two adder-tree levels, partial-sum add.
LATENCY = 7
#: Of those, the multiplier's register stages (input, pipeline, output): a DSP block's own, the
#: generic path's fabric registers, or a LUT multiplier's (hdl/lut_multiplier.py).
MULTIPLIER_STAGES = 3
assert lut_multiplier.LATENCY == MULTIPLIER_STAGES, "a LUT multiplier must take the DSP path's cycles"
#: The weight address leads the window by this many cycles: the weight buffer's
#: synchronous read, each bank's data registered as it is, the bank selected into the
#: kernel register beside the buffer, then the kernel register beside the DSPs (a block
#: RAM's clock-to-output leaves no time for a multiplexer or for crossing the chip).
ADDR_LEAD = READ_LATENCY + 1

#: How the 9 multipliers are written (`rep-accel rtl --dsp`, rep_accel.families):
#:   "generic"  `activation * weight` between plain registers: any synthesis tool or
#:              simulator; Yosys maps the product to a DSP but keeps the registers in fabric;
#:   a family   that family's DSP block per product with its input, pipeline and output
#:              registers in use (the same three stages, inside the DSP block), e.g. "ecp5"
#:              (MULT18X18D; simulation needs its model, written beside the Verilog).
DSP_STYLES = families.DSP_STYLES


class ConvUnit(wiring.Component):
    """Unit (i, o): 9 multiplies of a 3x3 window by a 3x3 kernel, their sum, plus a partial sum.

    It keeps the kernels of input lane i for output lane o, one per channel group of each
    tile of a tile group (address kt*cg + g), in a weight buffer of `max_cg` entries of 72
    bits, written through `wr_*` while the controller loads parameters. The buffer is
    banks of WEIGHT_BANK_DEPTH entries (`Memory`s, one block RAM pair each; entry e in bank
    e // WEIGHT_BANK_DEPTH), each bank's data registered as it is before the bank is
    selected: with a K-tile group the buffer is K*cg deep (1536 kernels at 2x2 for A0), and a
    multiplexer straight behind the block RAMs' outputs was the critical path.

    Ports (free-running: every register loads every cycle; a bubble is a don't-care window):
      window    In(81)         nine 9-bit signed activations, tap ky*3+kx in bits [9t+8:9t], at cycle t
      rd_addr   In(cg)         kernel (kt*cg + g) of that window, presented at t - ADDR_LEAD
      psum_in   In(signed 32)  partial sum of unit (i-1, o), sampled at t + LATENCY - 1
      psum_out  Out(signed 32) psum_in + sum of the 9 products, valid from t + LATENCY (wraps mod 2^32)
      wr_en, wr_addr, wr_data  weight-buffer write port (one kernel: 72 bits, int8 tap t in bits [8t+7:8t]),
                               registered: the kernel is in the buffer from the second cycle after

    Latency: LATENCY = 7 cycles window -> psum_out.
    Throughput: one window per cycle.

    Each product is a 9-bit signed activation (int8 sign-extended or uint8 zero-extended by
    the window generator) times an int8 weight: one 18x18 DSP multiplier (MULT18X18D on
    ECP5; Yosys does not pack registers into it) between registers that feed or take only
    that multiplier, so that placement can put them beside the DSP: the activation and
    weight registers in front, the product register behind, then a second product
    register, then a third that belongs to the adder tree. A full array uses most of the
    device's DSPs, which then sit far from the logic around them (on the LFE5U-85F with
    the 4x4 array, 144 of 156: a product travelled 5.2 ns of routing to its adder); these
    stages keep that distance out of the multiplier's cycle and out of the adders'. The
    adder tree adds three products per stage so that no stage chains more than two adders.

    With `dsp="ecp5"` the first three register stages are the MULT18X18D's own input,
    pipeline and output registers (DSP_STYLES): same latency, same values, and no fabric
    path through the multiplier at all.

    With `lut_taps` = n > 0 the products of taps 0 .. n-1 are `LutMultiplier`s instead (in
    logic, never mapped to a DSP block), whatever `dsp` says: the same three register stages,
    the same values (generic `lut_multipliers`, hdl/array.py chooses n per unit).
    """

    def __init__(self, max_cg: int, dsp: str = "generic", lut_taps: int = 0):
        if dsp not in DSP_STYLES:
            raise ValueError(f"dsp style {dsp!r}: one of {DSP_STYLES}")
        if not 0 <= lut_taps <= WINDOW_TAPS:
            raise ValueError(f"lut_taps={lut_taps}: 0..{WINDOW_TAPS}")
        self._max_cg = max_cg
        self._dsp = dsp
        self._lut_taps = lut_taps
        addr = unsigned(max(1, (max_cg - 1).bit_length()))
        super().__init__({
            "window": In(WINDOW_BITS),
            "rd_addr": In(addr),
            "psum_in": In(signed(ACC_BITS)),
            "psum_out": Out(signed(ACC_BITS)),
            "wr_en": In(1),
            "wr_addr": In(addr),
            "wr_data": In(KERNEL_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        family = families.dsp_family(self._dsp)
        # The weight buffer (hdl/weight_buffer.py): its write port registered beside it, its
        # banks' data registered before the bank is selected into `kernel_read`, beside it.
        m.submodules.weight_buffer = weights = BankedWeightBuffer(KERNEL_BITS, self._max_cg, self._dsp)
        m.d.comb += [weights.rd_addr.eq(self.rd_addr), weights.wr_en.eq(self.wr_en),
                     weights.wr_addr.eq(self.wr_addr), weights.wr_data.eq(self.wr_data)]

        # Data registers need no reset (a layer's first steps overwrite them).
        kernel_read = weights.rd_data                       # beside the weight buffer
        kernel = Signal(KERNEL_BITS, reset_less=True)       # beside the DSPs
        triples = [Signal(signed(19), name=f"triple{j}", reset_less=True) for j in range(3)]
        assert family is None or family.DSP_REGISTER_STAGES == MULTIPLIER_STAGES, "LATENCY counts 3 DSP stages"
        window_sum = Signal(signed(21), reset_less=True)
        psum = Signal(signed(ACC_BITS), reset_less=True)
        m.d.comb += self.psum_out.eq(psum)
        m.d.sync += kernel.eq(kernel_read)
        products = []
        for k in range(WINDOW_TAPS):
            a = lane(self.window, k, ACT_BITS).as_signed()
            w = lane(kernel, k, WEIGHT_BITS).as_signed()
            product2 = Signal(signed(17), name=f"product2_{k}", reset_less=True)
            if k < self._lut_taps:
                lut = m.submodules[f"lut{k}"] = LutMultiplier()
                m.d.comb += [lut.a.eq(a), lut.w.eq(w), product2.eq(lut.p)]
            elif family is not None:
                m.d.comb += product2.eq(family.dsp_multiplier(m, f"mult{k}", a, w)[:17])
            else:
                # Registers that feed / take only multiplier k (beside its DSP).
                activation = Signal(signed(ACT_BITS), name=f"a{k}", reset_less=True)
                weight = Signal(signed(WEIGHT_BITS), name=f"w{k}", reset_less=True)
                product = Signal(signed(17), name=f"product{k}", reset_less=True)
                m.d.sync += [
                    activation.eq(a),
                    weight.eq(w),
                    product.eq(activation * weight),
                    product2.eq(product),
                ]
            # Beside the adder tree: the DSP (or its last register) may be far away.
            product3 = Signal(signed(17), name=f"product3_{k}", reset_less=True)
            m.d.sync += product3.eq(product2)
            products.append(product3)
        for j in range(3):
            m.d.sync += triples[j].eq(products[3 * j] + products[3 * j + 1] + products[3 * j + 2])
        m.d.sync += window_sum.eq(triples[0] + triples[1] + triples[2])
        m.d.sync += psum.eq(self.psum_in + window_sum)
        return m
