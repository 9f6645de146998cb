"""The datapath of a Winograd F(2x2,3x3) array (unit kind `winograd`, issue 15): the input,
weight and output transforms and the unit, each a free-running pipeline.

The arithmetic is rep_accel.winograd's (docs/numerics.md, "Winograd F(2x2,3x3)"):

    V = B^T d B     per input lane and step: WinogradInputTransform (once per lane,
                    broadcast along the lane's PO units)
    U = G' g G'^T   per kernel, as the weights load: WinogradWeightTransform (the parameter
                    stream stays 9 bytes a kernel; the units' buffers hold 192-bit U words)
    M += U ⊙ V      unit (i, o): 16 products added lane-wise to the 16 partial sums coming
                    down column o: WinogradUnit
    Y = (A^T M A) >> 2   per column, after the sums over channel groups: WinogradOutputTransform

Every adder network is derived from the matrices of rep_accel.winograd (B_T, G_SCALED, A_T):
each output of X -> L X R^T is built in two registered stages, L X then (L X) R^T, each
output of a stage a balanced tree of its row's nonzero coefficients (a coefficient +-2^k is
a shift and an add or a subtract; no multipliers), with the tree's depth checked against
MAX_CHAINED_ADDERS and every intermediate's width taken from its exact range (interval
arithmetic on the tree: the operands of every adder depend on disjoint operands of the
transform, asserted, so each range is exact).

Widths. Activations are 9-bit signed lanes as in the direct unit (int8 sign-extended or
uint8 zero-extended, [-128, 255]); V then has V_BITS = 11 bits (check_widths; also for a tile
mixing the two types). Weights are int8; U has U_BITS = 12 bits. A product of any 11-bit v and
any U of the weight transform fits PRODUCT_BITS = 22 bits (|v| <= 1024, |U| <= 1152: 1,179,648
< 2^21), asserted below.

Partial sums wrap modulo 2^SUM_BITS, SUM_BITS = 34 = ACC_BITS + OUTPUT_SHIFT. The reason:
after the multipliers there are only additions and subtractions, which are exact modulo
2^k; the output transform's result Z = A^T M A equals 4 * acc, and the numerics contract
keeps acc in signed 32 bits, so Z lies in [-2^33, 2^33 - 4], inside the signed 34-bit range:
Z modulo 2^34, read as a signed 34-bit number, is Z itself, whatever the channel count (the
Winograd-domain sums M themselves may exceed 34 bits above 4096 channels per group; they
may wrap, Z does not). Y = Z >> 2 is then Z's bits [33:2], the contract's int32 accumulator.
(32-bit sums suffice up to 1827 channels per group, docs/numerics.md; 34 always.)

Flat vectors of lanes (layouts.lane), not ArrayLayouts (see hdl/layouts.py): a 4x4 tile's
tap r*4 + c in lane r*4 + c; the 2x2 output's pixel i*2 + j in lane i*2 + j.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from amaranth.hdl import Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from rep_accel import families, numerics
from rep_accel import winograd as W

from . import weight_buffer
from .layouts import ACC_BITS, ACT_BITS, KERNEL_BITS, WEIGHT_BITS, lane
from .unit import ADDR_LEAD, DSP_STYLES, MULTIPLIER_STAGES
from .weight_buffer import BankedWeightBuffer

#: Entries of a 4x4 tile (input tile d, V, U, M) and of a 2x2 output block.
TILE_TAPS = W.TILE_IN * W.TILE_IN
OUTPUT_TAPS = W.TILE_OUT * W.TILE_OUT
_WIDTHS = W.check_widths(1)
#: Signed bits of one entry of V = B^T d B (11), of U = G' g G'^T (12), of a product (22).
V_BITS = _WIDTHS.transformed_input.bits
U_BITS = _WIDTHS.transformed_weight.bits
PRODUCT_BITS = _WIDTHS.product.bits
#: Signed bits of the Winograd-domain partial sums and of the output transform (modulo 2^34):
#: the simulator's (rep_accel.winograd.DOMAIN_BITS), which is the contract's accumulator
#: plus the output transform's factor 4 (the module docstring).
SUM_BITS = W.DOMAIN_BITS
assert SUM_BITS == ACC_BITS + W.OUTPUT_SHIFT
#: Flat vectors: a 4x4 input tile of 9-bit activations (144), V (176), a U word (192, one
#: weight-buffer entry), the 16 partial sums (544), the 2x2 block of int32 accumulators (128).
TILE_BITS = TILE_TAPS * ACT_BITS
V_WORD_BITS = TILE_TAPS * V_BITS
U_WORD_BITS = TILE_TAPS * U_BITS
SUM_WORD_BITS = TILE_TAPS * SUM_BITS
Y_WORD_BITS = OUTPUT_TAPS * ACC_BITS
#: The activations a 9-bit lane carries: the int8 network input or a uint8 activation.
ACT_RANGE = (numerics.INPUT_MIN, numerics.ACT_MAX)
#: No register stage chains more than this many adders (the direct unit's rule, for 150 MHz
#: on ECP5 speed 8).
MAX_CHAINED_ADDERS = 2

#: Register stages of the transforms: the two halves of each sandwich L X R^T.
INPUT_TRANSFORM_LATENCY = 2
WEIGHT_TRANSFORM_LATENCY = 2
OUTPUT_TRANSFORM_LATENCY = 2
#: Register stages of the unit from v to psum_out: the multiplier's three (DSP input,
#: pipeline, output), the product beside the adders, the partial-sum add.
UNIT_LATENCY = MULTIPLIER_STAGES + 2
#: The unit's rd_addr leads its v by this many cycles: the weight buffer's read pipeline
#: (read, bank register, bank select), then the register beside the multipliers; the direct
#: unit's ADDR_LEAD.
UNIT_ADDR_LEAD = weight_buffer.READ_LATENCY + 1
assert UNIT_ADDR_LEAD == ADDR_LEAD

# Every product of an 11-bit v and a U of the weight transform is exact in PRODUCT_BITS.
assert (1 << (V_BITS - 1)) * _WIDTHS.transformed_weight.magnitude <= (1 << (PRODUCT_BITS - 1)) - 1
assert V_BITS <= W.DSP_OPERAND_BITS and U_BITS <= W.DSP_OPERAND_BITS


# ----------------------------------------------------------------------------------
# Adder networks from the matrices
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Term:
    """A value in the adder network: its expression, its range, the transform operands it
    depends on (indices) and the adders chained since the last register. With the operands
    tracked the range is exact (reached); with an empty set it is a bound."""

    value: Value
    range: W.Range
    operands: frozenset
    depth: int = 0


def _add(a: _Term, b: _Term, subtract: bool) -> _Term:
    """a + b or a - b. The operands must depend on disjoint transform operands: then the two
    ranges are independent and the range of the result is exact (reached)."""
    assert not a.operands & b.operands, "adder operands share a transform operand: range not exact"
    if subtract:
        value, rng = a.value - b.value, W.Range(a.range.lo - b.range.hi, a.range.hi - b.range.lo)
    else:
        value, rng = a.value + b.value, W.Range(a.range.lo + b.range.lo, a.range.hi + b.range.hi)
    return _Term(value, rng, a.operands | b.operands, max(a.depth, b.depth) + 1)


def _linear_combination(coefficients, terms: list[_Term]) -> _Term:
    """sum_j coefficients[j] * terms[j] for integer coefficients 0 or +-2^k, as a balanced
    tree of adds and subtracts of shifted terms (a negative total costs one negation)."""
    signed_terms = []  # (term, +1 | -1)
    for c, t in zip((int(c) for c in coefficients), terms):
        if c == 0:
            continue
        shift = abs(c).bit_length() - 1
        if abs(c) != 1 << shift:
            raise ValueError(f"coefficient {c}: the transforms take 0 and +-2^k only (shifts, no multipliers)")
        shifted = t if shift == 0 else _Term(t.value << shift, W.Range(t.range.lo << shift, t.range.hi << shift),
                                             t.operands, t.depth)
        signed_terms.append((shifted, 1 if c > 0 else -1))
    if not signed_terms:
        raise ValueError("a transform row of zeros")
    while len(signed_terms) > 1:
        paired = []
        for k in range(0, len(signed_terms) - 1, 2):
            (a, sa), (b, sb) = signed_terms[k], signed_terms[k + 1]
            if sa == sb:
                paired.append((_add(a, b, False), sa))
            elif sa > 0:
                paired.append((_add(a, b, True), 1))
            else:
                paired.append((_add(b, a, True), 1))
        if len(signed_terms) % 2:
            paired.append(signed_terms[-1])
        signed_terms = paired
    (term, sign), = signed_terms
    if sign < 0:
        term = _Term(-term.value, W.Range(-term.range.hi, -term.range.lo), term.operands, term.depth + 1)
    return term


def _register(m: Module | None, term: _Term, name: str, modulo_bits: int | None) -> _Term:
    """The term in a register (reset-less): as wide as its range, or `modulo_bits` wide
    (wrap-around) when given. With m None, only the register's term (for the ranges)."""
    if term.depth > MAX_CHAINED_ADDERS:
        raise ValueError(f"{name}: {term.depth} chained adders in one stage, more than {MAX_CHAINED_ADDERS}")
    bits = term.range.bits if modulo_bits is None else modulo_bits
    reg = Signal(signed(bits), name=name, reset_less=True)
    if m is not None:
        m.d.sync += reg.eq(term.value)
    return _Term(reg, term.range, term.operands)


def _sandwich(m: Module | None, left: np.ndarray, grid: list[list[_Term]], right_t: np.ndarray, name: str,
              modulo_bits: int | None = None) -> list[list[_Term]]:
    """left @ grid @ right_t^T in two register stages (rows x cols -> left rows x right_t rows):
    T = left @ grid, then T @ right_t^T. Entries are registered as wide as their ranges, or
    `modulo_bits` wide."""
    rows, cols = len(grid), len(grid[0])
    assert left.shape[1] == rows and right_t.shape[1] == cols
    half = [[_register(m, _linear_combination(left[k], [grid[r][c] for r in range(rows)]), f"{name}_l{k}_{c}",
                       modulo_bits) for c in range(cols)] for k in range(left.shape[0])]
    return [[_register(m, _linear_combination(right_t[q], half[k]), f"{name}_{k}_{q}", modulo_bits)
             for q in range(right_t.shape[0])] for k in range(left.shape[0])]


def _grid(vector: Value, side: int, width: int, value_range: W.Range) -> list[list[_Term]]:
    """A side x side tile of signed lanes of `width` bits (entry r*side + c in lane r*side + c)."""
    return [[_Term(lane(vector, r * side + c, width).as_signed(), value_range, frozenset([r * side + c]))
             for c in range(side)] for r in range(side)]


def _flatten(grid: list[list[_Term]], width: int, name: str) -> tuple[list[Signal], list[W.Range]]:
    """The grid's entries row-major: their registers and ranges (checked against `width`)."""
    entries = [t for row in grid for t in row]
    for k, t in enumerate(entries):
        if t.range.bits > width:
            raise AssertionError(f"{name} entry {k}: range [{t.range.lo}, {t.range.hi}] exceeds {width} bits")
    return [t.value for t in entries], [t.range for t in entries]


def input_transform_ranges() -> list[W.Range]:
    """The exact range of each entry of WinogradInputTransform's v (row-major) over 9-bit
    activations in ACT_RANGE (uint8 and int8 values, mixed): the hardware's own derivation."""
    return _flatten(_sandwich(None, W.B_T, _grid(Signal(TILE_BITS), W.TILE_IN, ACT_BITS, W.Range(*ACT_RANGE)),
                              W.B_T, "v"), V_BITS, "V")[1]


def weight_transform_ranges() -> list[W.Range]:
    """The exact range of each entry of WinogradWeightTransform's U (row-major) over int8 weights."""
    return _flatten(_sandwich(None, W.G_SCALED, _grid(Signal(KERNEL_BITS), W.KERNEL, WEIGHT_BITS,
                                                           W.Range(*W.WEIGHT_RANGE)), W.G_SCALED, "u"),
                    U_BITS, "U")[1]


# ----------------------------------------------------------------------------------
# The transforms
# ----------------------------------------------------------------------------------

class WinogradInputTransform(wiring.Component):
    """V = B^T d B of one 4x4 input tile per cycle: adds and subtracts only.

    Ports (free-running: every register loads every cycle; a bubble is a don't-care tile):
      tile  In(144)  16 activations, 9-bit signed (int8 sign-extended or uint8 zero-extended),
                     tap r*4 + c in bits [9t+8:9t], at cycle t (straight into the first stage's adders)
      v     Out(176) V, 16 entries of 11 bits signed, entry k*4 + l in bits [11e+10:11e], from t + latency

    Latency: INPUT_TRANSFORM_LATENCY = 2 (B^T d, then (B^T d) B, each one adder deep: every
    row of B^T has two nonzeros). Throughput: one tile per cycle. One per input lane of the
    array; V is broadcast to the lane's PO units.
    """

    def __init__(self):
        super().__init__({"tile": In(TILE_BITS), "v": Out(V_WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        grid = _grid(self.tile, W.TILE_IN, ACT_BITS, W.Range(*ACT_RANGE))
        regs, _ = _flatten(_sandwich(m, W.B_T, grid, W.B_T, "v"), V_BITS, "V")
        for k, reg in enumerate(regs):
            m.d.comb += lane(self.v, k, V_BITS).eq(reg)
        return m


class WinogradWeightTransform(wiring.Component):
    """U = G' g G'^T (G' = 2G) of one 3x3 int8 kernel per cycle: adds, subtracts and shifts.

    Ports (free-running):
      kernel  In(72)   the direct unit's kernel word: int8 tap ky*3 + kx in bits [8t+7:8t], at cycle t
      u       Out(192) U, 16 entries of 12 bits signed, entry k*4 + l in bits [12e+11:12e], from t + latency:
                       the WinogradUnit's weight-buffer word (wr_data)

    Latency: WEIGHT_TRANSFORM_LATENCY = 2 (G' g, then (G' g) G'^T, each at most two adders
    deep: rows of G' have up to three nonzeros). Throughput: one kernel per cycle. Placed on
    the parameter path, so the stream keeps 9 bytes per kernel: a unit's wr_en and wr_addr
    are delayed by WEIGHT_TRANSFORM_LATENCY to meet their U word.
    """

    def __init__(self):
        super().__init__({"kernel": In(KERNEL_BITS), "u": Out(U_WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        grid = _grid(self.kernel, W.KERNEL, WEIGHT_BITS, W.Range(*W.WEIGHT_RANGE))
        regs, _ = _flatten(_sandwich(m, W.G_SCALED, grid, W.G_SCALED, "u"), U_BITS, "U")
        for k, reg in enumerate(regs):
            m.d.comb += lane(self.u, k, U_BITS).eq(reg)
        return m


class WinogradOutputTransform(wiring.Component):
    """Y = (A^T M A) >> 2 of one 4x4 Winograd-domain sum per cycle, modulo 2^34, then the
    exact shift (the module docstring: Z = 4 acc fits signed 34 bits, so the wrapped Z is Z).

    Ports (free-running):
      m  In(544)  M, 16 sums of 34 bits (two's complement, wrapped), entry k*4 + l in bits
                  [34e+33:34e], at cycle t: a column's sum over every channel group
      y  Out(128) the 2x2 block of the contract's int32 accumulators, pixel i*2 + j in bits
                  [32p+31:32p] (signed), from t + latency: rep_accel.winograd.exact_quarter(A^T M A)

    Latency: OUTPUT_TRANSFORM_LATENCY = 2 (A^T M, then (A^T M) A, each at most two 34-bit
    adders deep: rows of A^T have three nonzeros); the shift is wiring (bits [33:2] of Z,
    whose low two bits are 0 for an M the array computed). Throughput: one block per cycle.
    """

    def __init__(self):
        super().__init__({"m": In(SUM_WORD_BITS), "y": Out(Y_WORD_BITS)})

    def elaborate(self, platform):
        m = Module()
        full = W.Range(-(1 << (SUM_BITS - 1)), (1 << (SUM_BITS - 1)) - 1)
        grid = _grid(self.m, W.TILE_IN, SUM_BITS, full)
        z = _sandwich(m, W.A_T, grid, W.A_T, "z", modulo_bits=SUM_BITS)
        for k, term in enumerate(t for row in z for t in row):
            m.d.comb += lane(self.y, k, ACC_BITS).eq(term.value[W.OUTPUT_SHIFT:])
        return m


# ----------------------------------------------------------------------------------
# Multipliers in logic, for the unit's operands
# ----------------------------------------------------------------------------------

#: Weight bits per partial sum of WideLutMultiplier's second stage (a two-level tree of four).
LUT_GROUP_BITS = 4
#: Register stages of WideLutMultiplier: input, group sums, their sum (the DSP path's three).
LUT_LATENCY = 3
assert LUT_LATENCY == MULTIPLIER_STAGES, "a LUT multiplier must take the DSP path's cycles"


class WideLutMultiplier(wiring.Component):
    """p = a * w, signed, in logic: hdl/lut_multiplier.py's shift-and-add for wider operands.

    The weight's bits in groups of LUT_GROUP_BITS: each group's four partial products (a gated
    by one bit, shifted; the weight's top bit weighs -2^(w_bits-1), so its partial product is
    subtracted) summed in a two-level tree, then the groups' sums, shifted, in a tree of at
    most two levels. No `*`, so Yosys has no $mul to map to a DSP block.

    Ports (free-running):
      a  In(signed a_bits)   at cycle t (the unit: v, 11 bits)
      w  In(signed w_bits)   at cycle t (the unit: U, 12 bits)
      p  Out(signed p_bits)  a * w modulo 2^p_bits (exact when the product fits: the unit's
                             22 bits always), from t + LUT_LATENCY

    Latency: LUT_LATENCY = 3 (input registers; group sums; their sum), the DSP path's.
    Throughput: one product per cycle. No stage chains more than two adders.
    """

    def __init__(self, a_bits: int = V_BITS, w_bits: int = U_BITS, p_bits: int = PRODUCT_BITS):
        groups = -(-w_bits // LUT_GROUP_BITS)
        if groups > 1 << MAX_CHAINED_ADDERS:
            raise ValueError(f"w_bits={w_bits}: {groups} groups need more than {MAX_CHAINED_ADDERS} chained adders")
        self._a_bits, self._w_bits = a_bits, w_bits
        super().__init__({"a": In(signed(a_bits)), "w": In(signed(w_bits)), "p": Out(signed(p_bits))})

    def elaborate(self, platform):
        m = Module()
        a = Signal(signed(self._a_bits), name="activation", reset_less=True)
        w = Signal(signed(self._w_bits), name="weight", reset_less=True)
        m.d.sync += [a.eq(self.a), w.eq(self.w)]

        # Stage 2: per group of weight bits, a * (the group's bits as a number), the top bit
        # weighing -2^(w_bits-1): the partial products `a if w[b] else 0` with coefficients
        # +-2^(b - g0). They share `a`, so their ranges are bounds (operands not tracked).
        bit_range = W.Range(-(1 << (self._a_bits - 1)), (1 << (self._a_bits - 1)) - 1)
        starts = range(0, self._w_bits, LUT_GROUP_BITS)
        group_sums = []
        for g0 in starts:
            bits = range(g0, min(g0 + LUT_GROUP_BITS, self._w_bits))
            parts = [_Term(Mux(w[b], a, 0), bit_range, frozenset()) for b in bits]
            weights = [-(1 << (b - g0)) if b == self._w_bits - 1 else 1 << (b - g0) for b in bits]
            group_sums.append(_register(m, _linear_combination(weights, parts), f"group{g0 // LUT_GROUP_BITS}", None))
        # Stage 3: the groups' sums, shifted into place, modulo 2^p_bits (the output register).
        product = _register(m, _linear_combination([1 << g0 for g0 in starts], group_sums), "product",
                            len(self.p))
        m.d.comb += self.p.eq(product.value)
        return m


# ----------------------------------------------------------------------------------
# The unit
# ----------------------------------------------------------------------------------

class WinogradUnit(wiring.Component):
    """Unit (i, o) of a Winograd array: V ⊙ U (16 products) added lane-wise to the 16
    Winograd-domain partial sums coming down column o.

    It keeps the transformed kernels U of (input lane i, output lane o), one per (tile,
    channel group) address kt*cg + g as the direct unit does, in a weight buffer of `max_cg`
    U words of 192 bits (hdl/weight_buffer.py: banks of WEIGHT_BANK_DEPTH entries, each
    bank's output registered, then the bank selected; then a register beside the
    multipliers), written through `wr_*` while parameters load.

    Ports (free-running: every register loads every cycle; a bubble is a don't-care v):
      v         In(176)  V of input lane i (WinogradInputTransform.v), 16 x 11 bits, at cycle t
      rd_addr   In(cg)   U word (kt*cg + g) of that v, presented at t - UNIT_ADDR_LEAD
      psum_in   In(544)  16 partial sums of 34 bits of unit (i-1, o), lane e in bits [34e+33:34e],
                         sampled at t + UNIT_LATENCY - 1 (0 for the column's first unit)
      psum_out  Out(544) psum_in + V ⊙ U lane-wise, modulo 2^34, from t + UNIT_LATENCY
      wr_en, wr_addr, wr_data  weight-buffer write port (one U word, WinogradWeightTransform.u),
                         registered: the word is in the buffer from the second cycle after

    Latency: UNIT_LATENCY = 5 cycles v -> psum_out (multiplier 3, the product beside the
    adders, the partial-sum add). Throughput: one v per cycle. Each stage has at most one
    adder (the 34-bit partial-sum add).

    Multipliers: 11-bit v times 12-bit U, signed, a 22-bit product (exact, module docstring).
    dsp="generic": `*` between fabric registers (input, product, product again); dsp="ecp5":
    one MULT18X18D per product with its input, pipeline and output registers
    (rep_accel.families.ecp5.dsp_multiplier); lut_taps = n: products 0 .. n-1 are
    WideLutMultipliers in logic, whatever `dsp` says. All three give the same values in the
    same cycles.
    """

    def __init__(self, max_cg: int, dsp: str = "generic", lut_taps: int = 0):
        if dsp not in DSP_STYLES:
            raise ValueError(f"dsp style {dsp!r}: one of {DSP_STYLES}")
        if not 0 <= lut_taps <= TILE_TAPS:
            raise ValueError(f"lut_taps={lut_taps}: 0..{TILE_TAPS}")
        if max_cg < 1:
            raise ValueError(f"max_cg={max_cg}: at least 1")
        self._max_cg = max_cg
        self._dsp = dsp
        self._lut_taps = lut_taps
        addr = unsigned(max(1, (max_cg - 1).bit_length()))
        super().__init__({
            "v": In(V_WORD_BITS),
            "rd_addr": In(addr),
            "psum_in": In(SUM_WORD_BITS),
            "psum_out": Out(SUM_WORD_BITS),
            "wr_en": In(1),
            "wr_addr": In(addr),
            "wr_data": In(U_WORD_BITS),
        })

    def elaborate(self, platform):
        m = Module()
        family = families.dsp_family(self._dsp)
        assert family is None or family.DSP_REGISTER_STAGES == MULTIPLIER_STAGES, "UNIT_LATENCY counts 3 stages"
        buffer = m.submodules.weight_buffer = BankedWeightBuffer(U_WORD_BITS, self._max_cg, self._dsp)
        m.d.comb += [buffer.rd_addr.eq(self.rd_addr), buffer.wr_en.eq(self.wr_en),
                     buffer.wr_addr.eq(self.wr_addr), buffer.wr_data.eq(self.wr_data)]
        word = Signal(U_WORD_BITS, reset_less=True)   # beside the multipliers
        m.d.sync += word.eq(buffer.rd_data)
        for k in range(TILE_TAPS):
            v = lane(self.v, k, V_BITS).as_signed()
            u = lane(word, k, U_BITS).as_signed()
            product2 = Signal(signed(PRODUCT_BITS), name=f"product2_{k}", reset_less=True)
            if k < self._lut_taps:
                lut = m.submodules[f"lut{k}"] = WideLutMultiplier()
                m.d.comb += [lut.a.eq(v), lut.w.eq(u), product2.eq(lut.p)]
            elif family is not None:
                m.d.comb += product2.eq(family.dsp_multiplier(m, f"mult{k}", v, u)[:PRODUCT_BITS])
            else:
                # Registers that feed / take only multiplier k (beside its DSP).
                v_reg = Signal(signed(V_BITS), name=f"v{k}", reset_less=True)
                u_reg = Signal(signed(U_BITS), name=f"u{k}", reset_less=True)
                product = Signal(signed(PRODUCT_BITS), name=f"product{k}", reset_less=True)
                m.d.sync += [v_reg.eq(v), u_reg.eq(u), product.eq(v_reg * u_reg), product2.eq(product)]
            # Beside the adder: the DSP (or its last register) may be far away.
            product3 = Signal(signed(PRODUCT_BITS), name=f"product3_{k}", reset_less=True)
            psum = Signal(signed(SUM_BITS), name=f"psum{k}", reset_less=True)
            m.d.sync += [product3.eq(product2), psum.eq(lane(self.psum_in, k, SUM_BITS).as_signed() + product3)]
            m.d.comb += lane(self.psum_out, k, SUM_BITS).eq(psum)
        return m
