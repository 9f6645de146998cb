"""Requantization + ReLU of one output lane: the numerics contract in hardware.

    y = clamp(((v * M0) + 2^(n-1)) >> n, 0, 255)      (docs/numerics.md, rep_accel.numerics)

Two facts shape the datapath, both exact for every 32-bit v, M0 < 2^32 and n in 31..62:
  - v <= 0 gives y = 0: v * M0 <= 0, so v * M0 + 2^(n-1) < 2^n and the shift is <= 0.
    Only v > 0 needs the product, as an unsigned 31 x 32-bit multiply.
  - the rounding term 2^(n-1) is one more addend of the multiplier's partial products.

The multiply uses no DSP blocks (the array's 3x3 units take them): radix-4 partial
products of u = v[0:31] selected by two bits of M0 at a time (0, u, 2u, 3u), reduced
by carry-save (3:2) adders and one final carry-propagate add. It is pipelined so that
no stage chains more than a 64-bit add or about four LUT levels.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel.numerics import N_MIN

from .layouts import ACC_BITS

#: Cycles from `v` (with its `m0`, `n`) to `y`.
LATENCY = 6

_P = 64          # bits of the product plus rounding term, u * M0 + 2^(n-1) < 2^64
_U = ACC_BITS - 1  # u = v for v > 0: 31 bits


def _csa(a, b, c):
    """One level of carry-save addition: (sum, carry) with sum + carry == a + b + c (mod 2^64)."""
    return (a ^ b ^ c)[:_P], ((a & b) | (a & c) | (b & c))[:_P - 1].shift_left(1)[:_P]


def _reduce(terms, levels):
    """Apply up to `levels` carry-save levels to a list of addends (stopping at two)."""
    for _ in range(levels):
        if len(terms) <= 2:
            break
        out = []
        full = len(terms) - len(terms) % 3
        for j in range(0, full, 3):
            out.extend(_csa(*terms[j:j + 3]))
        out.extend(terms[full:])
        terms = out
    return terms


class Requantizer(wiring.Component):
    """clamp(((v * m0) + 2^(n-1)) >> n, 0, 255) for one lane, one value per cycle.

    Ports (free-running: every register loads every cycle):
      v    In(signed 32)   acc + bias, at cycle t
      m0   In(unsigned 32) multiplier (contract: 0 or [2^30, 2^31)), at cycle t
      n    In(unsigned 8)  right shift, 31 .. 62 (the contract's range; the hardware uses
                           (n - 31) mod 32), at cycle t
      y    Out(unsigned 8) the result, valid from t + LATENCY

    Latency: LATENCY = 6 cycles. Throughput: one value per cycle. m0 and n travel with v,
    so they may change every cycle.

    Stages: 1 u, 3u, sign; 2 partial products + rounding term, two carry-save levels
    (17 -> 8 addends); 3 four carry-save levels (8 -> 2); 4 the 64-bit add; 5 the shift
    by n (a fixed 31 and a barrel shift by n - 31); 6 the clamp.
    """

    def __init__(self):
        super().__init__({
            "v": In(signed(ACC_BITS)),
            "m0": In(unsigned(32)),
            "n": In(unsigned(8)),
            "y": Out(unsigned(8)),
        })

    def elaborate(self, platform):
        m = Module()

        def stage(value, name):
            reg = Signal(len(value), name=name, reset_less=True)   # data: no reset needed
            m.d.sync += reg.eq(value)
            return reg

        # Stage 1: sign, u = v (when positive), 3u for the radix-4 digit 3.
        negative1 = stage(self.v[ACC_BITS - 1], "negative1")
        u1 = stage(self.v[:_U], "u1")
        u3_1 = Signal(_U + 2, name="u3_1", reset_less=True)
        m.d.sync += u3_1.eq(self.v[:_U] + (self.v[:_U] << 1))
        m0_1 = stage(self.m0, "m0_1")
        k1 = stage((self.n - N_MIN)[:5], "k1")   # n - 31 in 0 .. 31

        # Stage 2: radix-4 partial products (digit j of m0 selects 0, u, 2u or 3u, weight 4^j)
        # and the rounding term 2^(n-1) = 2^(30 + k); two carry-save levels.
        terms = []
        for j in range(16):
            digit = m0_1[2 * j:2 * j + 2]
            multiple = Signal(_U + 2, name=f"pp{j}")
            with m.Switch(digit):
                with m.Case(0):
                    m.d.comb += multiple.eq(0)
                with m.Case(1):
                    m.d.comb += multiple.eq(u1)
                with m.Case(2):
                    m.d.comb += multiple.eq(u1 << 1)
                with m.Case(3):
                    m.d.comb += multiple.eq(u3_1)
            terms.append((multiple << (2 * j))[:_P])
        terms.append((Const(1 << (N_MIN - 1), _P) << k1)[:_P])
        terms = [stage(t, f"csa2_{j}") for j, t in enumerate(_reduce(terms, 2))]
        negative2, k2 = stage(negative1, "negative2"), stage(k1, "k2")

        # Stage 3: the remaining carry-save levels down to two addends.
        terms = _reduce(terms, 8)
        assert len(terms) == 2
        terms = [stage(t, f"csa3_{j}") for j, t in enumerate(terms)]
        negative3, k3 = stage(negative2, "negative3"), stage(k2, "k3")

        # Stage 4: the carry-propagate add, P = u * m0 + 2^(n-1).
        product4 = Signal(_P, reset_less=True)
        m.d.sync += product4.eq(terms[0] + terms[1])
        negative4, k4 = stage(negative3, "negative4"), stage(k3, "k4")

        # Stage 5: q = P >> n = (P >> 31) >> k.
        shifted5 = stage((product4[N_MIN:] >> k4)[:_P - N_MIN], "shifted5")
        negative5 = stage(negative4, "negative5")

        # Stage 6: the clamp to [0, 255] (the ReLU is its lower bound).
        saturated = shifted5[8:].any()
        y6 = Signal(8, reset_less=True)
        m.d.sync += y6.eq(Mux(negative5, 0, Mux(saturated, 255, shifted5[:8])))
        m.d.comb += self.y.eq(y6)
        return m
