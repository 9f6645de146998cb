"""A multiplier built in logic (LUTs and carry chains) instead of a DSP block, pipelined
exactly as the unit's DSP multipliers are: the generic `lut_multipliers`."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .layouts import ACT_BITS, WEIGHT_BITS

#: Register stages from `a`, `w` to `p`: input, pipeline and output registers, the three
#: stages of the unit's DSP multipliers (rep_accel.families.ecp5.DSP_REGISTER_STAGES, and the
#: generic path's activation/weight, product and product2 registers in hdl/unit.py).
LATENCY = 3
#: Bits of the product: a 9-bit signed activation times an int8 weight is exact in 17 bits.
PRODUCT_BITS = ACT_BITS + WEIGHT_BITS
#: Weight bits per half: the pipeline register between the stages holds two partial sums,
#: a x (weight bits 0-3, unsigned) and a x (weight bits 4-7, signed).
HALF_BITS = WEIGHT_BITS // 2


class LutMultiplier(wiring.Component):
    """p = a * w, signed, in logic: shift-and-add of the weight's bits, no `*` operator.

    Written as partial products (a gated by one weight bit, shifted) and their sums, so that
    synthesis has no multiplication to map to a DSP block (Yosys maps only `$mul` cells):
    the unit's products beyond the device's DSP count. The weight is two's complement: bit 7
    weighs -2^7, so its partial product is subtracted.

    Ports (free-running: every register loads every cycle):
      a  In(signed 9)    activation (int8 sign-extended or uint8 zero-extended), at cycle t
      w  In(signed 8)    int8 weight, at cycle t
      p  Out(signed 17)  a * w exactly, valid from t + LATENCY

    Latency: LATENCY = 3 cycles (input registers; the two half sums; their sum), the DSP
    path's. Throughput: one product per cycle. No stage chains more than two adders.
    """

    def __init__(self):
        super().__init__({
            "a": In(signed(ACT_BITS)),
            "w": In(signed(WEIGHT_BITS)),
            "p": Out(signed(PRODUCT_BITS)),
        })

    def elaborate(self, platform):
        m = Module()
        # Stage 1: the input registers (a DSP block's input registers).
        a = Signal(signed(ACT_BITS), name="activation", reset_less=True)
        w = Signal(signed(WEIGHT_BITS), name="weight", reset_less=True)
        m.d.sync += [a.eq(self.a), w.eq(self.w)]

        # Stage 2: a x bits 0-3 (0..15) and a x bits 4-7 (-8..7, bit 7 negative), each a
        # two-level adder tree of four partial products. |a| <= 256 keeps each in 13 bits.
        def partial(bit: int):
            return Mux(w[bit], a, 0) << (bit % HALF_BITS)

        low = Signal(signed(ACT_BITS + HALF_BITS), reset_less=True)
        high = Signal(signed(ACT_BITS + HALF_BITS), reset_less=True)
        m.d.sync += [
            low.eq((partial(0) + partial(1)) + (partial(2) + partial(3))),
            high.eq((partial(4) + partial(5)) + (partial(6) - partial(7))),
        ]

        # Stage 3: the output register (a DSP block's output register).
        p = Signal(signed(PRODUCT_BITS), name="product", reset_less=True)
        m.d.sync += p.eq(low + (high << HALF_BITS))
        m.d.comb += self.p.eq(p)
        return m
