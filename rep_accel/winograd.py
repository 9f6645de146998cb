"""Exact integer Winograd F(2x2, 3x3): the arithmetic of a `winograd` unit kind (docs/numerics.md,
"Winograd F(2x2,3x3)").

Lavin & Gray's F(2x2, 3x3) computes a 2x2 block of a stride-1 3x3 correlation from a 4x4
input tile `d` and a 3x3 kernel `g` as

    Y = A^T [ (G g G^T) ⊙ (B^T d B) ] A                 (⊙: elementwise, 16 products)

G has halves in it; with G' = 2G every matrix is an integer matrix and

    A^T [ (G' g G'^T) ⊙ (B^T d B) ] A = 4 Y            exactly, in integers,

so the unit multiplies integers only, sums the 16 products of each tile position over the
input channels (the output transform is linear, so it commutes with that sum), applies the
output transform once per output tile and divides by 4 exactly (an arithmetic shift by 2
of a multiple of 4) before the contract's requantization. The result is the contract's
int32 accumulator `golden.conv_accumulate`, bit for bit.

Every bit width (transformed input, transformed weight, product, channel sum, output
transform) is derived here from the matrices and the operand ranges by interval
arithmetic, not written down: `check_widths(cin)`.

Shapes: activations (N, C, H, W); weights (C_out, C_in/groups, 3, 3); tiles (..., 4, 4).
Plain numpy. Sums of products are formed in float64 matrix products, which are exact:
every partial sum is an integer of magnitude below `check_widths(cin).channel_sum` bound,
far below 2^53 for any C_in the contract takes (asserted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba.extending import register_jitable

from . import numerics
from .errors import RepAccelError

#: Input transform B^T (4 x 4): V = B^T d B for a 4x4 input tile d.
B_T = np.array([[1, 0, -1, 0],
                [0, 1, 1, 0],
                [0, -1, 1, 0],
                [0, 1, 0, -1]], dtype=np.int64)
#: Weight transform G' = 2G (4 x 3), integers: U = G' g G'^T for a 3x3 kernel g.
G_SCALED = np.array([[2, 0, 0],
                     [1, 1, 1],
                     [1, -1, 1],
                     [0, 0, 2]], dtype=np.int64)
#: Output transform A^T (2 x 4): 4Y = A^T M A for the 4x4 Winograd-domain sum M.
A_T = np.array([[1, 1, 1, 0],
                [0, 1, -1, -1]], dtype=np.int64)
#: The output transform yields 4Y: G' = 2G scales each side of the kernel by 2.
OUTPUT_SCALE = 4
#: log2(OUTPUT_SCALE): the exact arithmetic shift that gives Y.
OUTPUT_SHIFT = 2
#: Output pixels per tile side (m of F(m x m, 3 x 3)), input tile side (m + 2), kernel side.
TILE_OUT, TILE_IN, KERNEL = 2, 4, 3
#: Operand ranges the bounds are taken over: the two activation types and the int8 weight
#: type (the contract's weights are in [-127, 127]; the bound takes the whole type, as
#: numerics.accumulator_bound takes |w| <= 128).
UINT8_RANGE = (numerics.ACT_MIN, numerics.ACT_MAX)
INT8_RANGE = (numerics.INPUT_MIN, numerics.INPUT_MAX)
WEIGHT_RANGE = (-numerics.ABS_W_BOUND, numerics.WEIGHT_MAX)
#: Width of one operand of an ECP5 MULT18X18D (signed).
DSP_OPERAND_BITS = 18
#: Integers that float64 represents exactly: the matrix products below stay under this.
_FLOAT64_EXACT = 1 << 53
#: Largest buffer of tiles (4x4 entries of every channel and image of a chunk) built at once,
#: in elements (int64 / float64: about 64 MiB).
_MAX_TILE_ELEMENTS = 8 << 20


# ----------------------------------------------------------------------------------
# The transforms
# ----------------------------------------------------------------------------------

def _sandwich(left: np.ndarray, tiles: np.ndarray, right_t: np.ndarray, dtype=np.int64) -> np.ndarray:
    """left @ tile @ right_t^T for every tile of (..., r, c), in integers of `dtype` (wide enough
    for the result and for left @ tile, which the callers' bounds guarantee):
    (..., left rows, right_t rows)."""
    return left.astype(dtype) @ tiles.astype(dtype) @ right_t.T.astype(dtype)


def transform_weights(w_q: np.ndarray) -> np.ndarray:
    """U = G' g G'^T per kernel: int8 (C_out, C_in/groups, 3, 3) -> int16 (C_out, C_in/groups, 4, 4).

    Exact integers; |U| <= 1152 (`check_widths`), 12 bits signed.
    """
    w_q = np.asarray(w_q)
    if w_q.dtype != np.int8 or w_q.ndim < 2 or w_q.shape[-2:] != (KERNEL, KERNEL):
        raise RepAccelError(f"winograd weights must be int8 (..., 3, 3), got {w_q.dtype} {w_q.shape}")
    return _sandwich(G_SCALED, w_q, G_SCALED, np.int32).astype(np.int16)  # |G' g| <= 3 * 128


def transform_input_tile(d: np.ndarray) -> np.ndarray:
    """V = B^T d B per 4x4 input tile: uint8 or int8 (..., 4, 4) -> int16 (..., 4, 4).

    |V| <= 1020 (`check_widths`), 11 bits signed.
    """
    d = np.asarray(d)
    if d.dtype not in (np.uint8, np.int8) or d.ndim < 2 or d.shape[-2:] != (TILE_IN, TILE_IN):
        raise RepAccelError(f"winograd input tiles must be uint8 or int8 (..., 4, 4), got {d.dtype} {d.shape}")
    return _sandwich(B_T, d, B_T, np.int32).astype(np.int16)  # |B^T d| <= 2 * 255


def output_transform(m: np.ndarray) -> np.ndarray:
    """4Y = A^T M A per Winograd-domain tile: integer (..., 4, 4) -> int64 (..., 2, 2), unscaled."""
    return _sandwich(A_T, np.asarray(m), A_T)


def exact_quarter(z: np.ndarray) -> np.ndarray:
    """Y = 4Y >> 2, asserting 4Y is a multiple of 4 (the shift is then an exact division)."""
    z = np.asarray(z, dtype=np.int64)
    if np.any(z & (OUTPUT_SCALE - 1)):
        raise AssertionError("winograd output transform is not a multiple of 4: the identity is broken")
    return z >> OUTPUT_SHIFT


# One tile at a time, for the cycle simulator's Numba engine (sim/cycle.py): the same matrices
# (B_T, G_SCALED, A_T, read as constants by Numba), the same integers as the numpy functions
# above, which are their reference (tests/test_winograd.py compares them).
#: Bits of the Winograd-domain sums and of 4Y in the hardware (docs/numerics.md): arithmetic
#: modulo 2^34, exact for every channel count the contract takes (|M| < 2^33 up to 4096).
DOMAIN_BITS = 34


@register_jitable
def wrap_domain(v):
    """v modulo 2^DOMAIN_BITS as a signed value (the hardware's wrap-around register)."""
    half = np.int64(1) << np.int64(DOMAIN_BITS - 1)
    return ((np.int64(v) + half) & ((half << np.int64(1)) - np.int64(1))) - half


@register_jitable
def _sandwich_into(left, tile, rows, cols, out):
    """out (left rows x left rows, flat) = left @ tile @ left^T for a flat rows x cols tile
    (cols == left's columns == rows), int64."""
    n = left.shape[0]
    k = left.shape[1]
    half = np.zeros((n, k), dtype=np.int64)
    for a in range(n):
        for c in range(k):
            v = np.int64(0)
            for b in range(k):
                v += np.int64(left[a, b]) * np.int64(tile[b * cols + c])
            half[a, c] = v
    for a in range(n):
        for c in range(n):
            v = np.int64(0)
            for b in range(k):
                v += half[a, b] * np.int64(left[c, b])
            out[a * n + c] = v


@register_jitable
def input_transform_into(d, v):
    """V = B^T d B of one 4x4 tile d (flat, row-major, 16) into v (flat 16, int64)."""
    _sandwich_into(B_T, d, TILE_IN, TILE_IN, v)


@register_jitable
def weight_transform_into(g, u):
    """U = G' g G'^T of one 3x3 kernel g (flat, taps ky * 3 + kx) into u (flat 16, int64)."""
    _sandwich_into(G_SCALED, g, KERNEL, KERNEL, u)


@register_jitable
def output_transform_into(m, y):
    """Y = (A^T M A) / 4 of one Winograd-domain tile m (flat 16) into y (flat 4, int64), in
    the hardware's arithmetic: 4Y modulo 2^DOMAIN_BITS, then the exact shift by 2."""
    _sandwich_into(A_T, m, TILE_IN, TILE_IN, y)
    for j in range(TILE_OUT * TILE_OUT):
        y[j] = wrap_domain(y[j]) >> np.int64(OUTPUT_SHIFT)


def tile_grid(height: int, width: int) -> tuple[int, int]:
    """Output tiles (rows, columns) covering an H x W stride-1 output: ceil(H/2) x ceil(W/2)."""
    return -(-height // TILE_OUT), -(-width // TILE_OUT)


def input_tiles(x_q: np.ndarray) -> np.ndarray:
    """The overlapping 4x4 input tiles of x (N, C, H, W), zero padding 1 on each side and more
    zeros below and right so the last tile of an odd H or W is whole:
    a view (N, C, tiles_h, tiles_w, 4, 4); tile (ty, tx) starts at padded pixel (2ty, 2tx)."""
    n, c, h, w = x_q.shape
    th, tw = tile_grid(h, w)
    pad_bottom = TILE_OUT * th + 2 - (h + 1)
    pad_right = TILE_OUT * tw + 2 - (w + 1)
    xp = np.pad(x_q, ((0, 0), (0, 0), (1, pad_bottom), (1, pad_right)))
    win = np.lib.stride_tricks.sliding_window_view(xp, (TILE_IN, TILE_IN), axis=(2, 3))
    return win[:, :, ::TILE_OUT, ::TILE_OUT]


def _check_operands(x_q: np.ndarray, weight: np.ndarray, stride: int, groups: int) -> None:
    if stride != 1:
        raise RepAccelError(f"winograd F(2x2,3x3) takes stride-1 layers only, got stride {stride}; "
                            "run stride 2 in direct mode (golden.conv_accumulate)")
    if x_q.ndim != 4 or x_q.dtype not in (np.uint8, np.int8):
        raise RepAccelError(f"winograd input must be uint8 or int8 (N, C, H, W), got {x_q.dtype} {x_q.shape}")
    if weight.ndim != 4 or weight.dtype != np.int8 or weight.shape[2:] != (KERNEL, KERNEL):
        raise RepAccelError(f"winograd weights must be int8 (C_out, C_in/groups, 3, 3), "
                            f"got {weight.dtype} {weight.shape}")
    cout, cpg = weight.shape[:2]
    if groups < 1 or cout % groups or x_q.shape[1] != cpg * groups:
        raise RepAccelError(f"winograd: input has {x_q.shape[1]} channels, weights {weight.shape} "
                            f"with groups={groups} take C_in = {cpg * groups} and C_out divisible by groups")


def winograd_domain_sums(v: np.ndarray, u: np.ndarray, groups: int) -> np.ndarray:
    """M[n, o] = sum over the input channels c of o's group of U[o, c] ⊙ V[n, c]: the
    Winograd-domain channel sums, int64 (N, C_out, tiles_h, tiles_w, 4, 4).

    v: transformed input tiles int16 (N, C_in, tiles_h, tiles_w, 4, 4);
    u: transformed weights int16 (C_out, C_in/groups, 4, 4).
    """
    n, _, th, tw = v.shape[:4]
    cout, cpg = u.shape[:2]
    out_pg = cout // groups
    if check_widths(cpg).channel_sum.magnitude >= _FLOAT64_EXACT:
        raise RepAccelError(f"winograd: {cpg} input channels per group exceed the exact float64 sums")
    m = np.empty((n, cout, th, tw, TILE_IN, TILE_IN), dtype=np.int64)
    # One matrix product per tile position (k, l): (N * tiles) x C_in/groups times C_in/groups x C_out/groups.
    uf = u.astype(np.float64).reshape(cout, cpg, TILE_IN * TILE_IN).transpose(2, 1, 0)  # (16, cpg, cout)
    for g in range(groups):
        vg = v[:, g * cpg:(g + 1) * cpg].astype(np.float64)
        vg = vg.reshape(n, cpg, th * tw, TILE_IN * TILE_IN).transpose(3, 0, 2, 1).reshape(
            TILE_IN * TILE_IN, n * th * tw, cpg)
        sums = vg @ uf[:, :, g * out_pg:(g + 1) * out_pg]  # exact: integers below 2^53
        m[:, g * out_pg:(g + 1) * out_pg] = sums.reshape(
            TILE_IN, TILE_IN, n, th, tw, out_pg).transpose(2, 5, 3, 4, 0, 1).astype(np.int64)
    return m


def winograd_accumulate(x_q: np.ndarray, weight: np.ndarray, stride: int = 1, groups: int = 1) -> np.ndarray:
    """The contract's accumulators by F(2x2,3x3): int64 (N, C_out, H, W), equal to
    golden.conv_accumulate(x_q, weight, 1, groups) (zero padding 1, stride 1).

    x_q: uint8 or int8 (N, C_in, H, W); weight: int8 (C_out, C_in/groups, 3, 3). Per 2x2
    output tile: the products U ⊙ V summed over each group's input channels, the output
    transform, the exact division by 4. Outputs of the last tile past an odd H or W are dropped.
    """
    x_q, weight = np.asarray(x_q), np.asarray(weight)
    _check_operands(x_q, weight, stride, groups)
    n, cin, h, w = x_q.shape
    cout = weight.shape[0]
    th, tw = tile_grid(h, w)
    u = transform_weights(weight)
    acc = np.empty((n, cout, h, w), dtype=np.int64)
    # Images in chunks, so the int64 / float64 tile buffers stay near _MAX_TILE_ELEMENTS.
    chunk = max(1, _MAX_TILE_ELEMENTS // max(1, max(cin, cout) * th * tw * TILE_IN * TILE_IN))
    for b0 in range(0, n, chunk):
        v = transform_input_tile(input_tiles(x_q[b0:b0 + chunk]))
        y = exact_quarter(output_transform(winograd_domain_sums(v, u, groups)))  # (b, C_out, th, tw, 2, 2)
        y = y.transpose(0, 1, 2, 4, 3, 5).reshape(-1, cout, TILE_OUT * th, TILE_OUT * tw)
        acc[b0:b0 + chunk] = y[:, :, :h, :w]
    return acc


# ----------------------------------------------------------------------------------
# Bit widths, derived from the matrices
# ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Range:
    """A closed integer interval [lo, hi] that a quantity can take, and reaches."""

    lo: int
    hi: int

    @property
    def magnitude(self) -> int:
        return max(-self.lo, self.hi)

    @property
    def bits(self) -> int:
        """Signed two's-complement bits that hold every value of the range."""
        b = 1
        while self.lo < -(1 << (b - 1)) or self.hi > (1 << (b - 1)) - 1:
            b += 1
        return b

    def __or__(self, other: "Range") -> "Range":
        return Range(min(self.lo, other.lo), max(self.hi, other.hi))

    def times(self, k: int) -> "Range":
        """The range of a sum of k independent values of this range."""
        return Range(k * self.lo, k * self.hi)


def _linear_ranges(coeffs: np.ndarray, lo: int, hi: int) -> list[Range]:
    """Range of each output of integer linear map `coeffs` (outputs x inputs) over independent
    inputs in [lo, hi]: the max-|row sum| bound made exact, each input at the end its
    coefficient's sign asks for (so every range is reached)."""
    pos = np.clip(coeffs, 0, None).sum(axis=1)  # sum of the positive coefficients of each output
    neg = np.clip(coeffs, None, 0).sum(axis=1)  # and of the negative ones
    return [Range(int(p * lo + q * hi), int(p * hi + q * lo)) for p, q in zip(pos, neg)]


def _two_sided(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """Coefficients of X -> left X right^T as a matrix (left rows * right rows) x (inputs)."""
    return np.kron(left, right)


def input_transform_ranges(act_range: tuple[int, int]) -> list[Range]:
    """Range of each of the 16 entries of V = B^T d B (row-major) for d in `act_range`."""
    return _linear_ranges(_two_sided(B_T, B_T), *act_range)


def weight_transform_ranges(weight_range: tuple[int, int] = WEIGHT_RANGE) -> list[Range]:
    """Range of each of the 16 entries of U = G' g G'^T (row-major) for g in `weight_range`."""
    return _linear_ranges(_two_sided(G_SCALED, G_SCALED), *weight_range)


def product_ranges(act_range: tuple[int, int], weight_range: tuple[int, int] = WEIGHT_RANGE) -> list[Range]:
    """Range of each of the 16 products U ⊙ V: U and V come from independent operands, so
    each entry's range is the hull of the four corner products (all reached)."""
    out = []
    for rv, ru in zip(input_transform_ranges(act_range), weight_transform_ranges(weight_range)):
        corners = [a * b for a in (rv.lo, rv.hi) for b in (ru.lo, ru.hi)]
        out.append(Range(min(corners), max(corners)))
    return out


def bilinear_coefficients() -> np.ndarray:
    """C[i, j, p, q, r, s]: the coefficient of d[p, q] * g[r, s] in A^T[(G' g G'^T) ⊙ (B^T d B)]A[i, j].

    Integer (2, 2, 4, 4, 3, 3). The identity the unit rests on is that this equals
    4 * [p == i + r and q == j + s]: 4 times the coefficients of a 3x3 correlation.
    """
    # (A^T ⊗ A^T) maps the 16 products to 4 outputs; product kl is V_kl * U_kl.
    bt2, g2, at2 = _two_sided(B_T, B_T), _two_sided(G_SCALED, G_SCALED), _two_sided(A_T, A_T)
    coeff = np.einsum("ok,kd,kg->odg", at2, bt2, g2)
    return coeff.reshape(TILE_OUT, TILE_OUT, TILE_IN, TILE_IN, KERNEL, KERNEL)


def direct_coefficients() -> np.ndarray:
    """The same tensor for a direct 3x3 correlation: 1 where p == i + r and q == j + s."""
    c = np.zeros((TILE_OUT, TILE_OUT, TILE_IN, TILE_IN, KERNEL, KERNEL), dtype=np.int64)
    for i in range(TILE_OUT):
        for j in range(TILE_OUT):
            for r in range(KERNEL):
                for s in range(KERNEL):
                    c[i, j, i + r, j + s, r, s] = 1
    return c


def output_ranges(cin: int, act_range: tuple[int, int], weight_range: tuple[int, int] = WEIGHT_RANGE) -> list[Range]:
    """Range of each of the 4 outputs 4Y of the output transform over `cin` channels.

    From the bilinear coefficients: each output is a sum of distinct terms c * d[p,q] * g[r,s]
    in which every d and every g appears at most once (asserted), so the terms are independent
    and the sum of their ranges is reached."""
    coeff = bilinear_coefficients().reshape(TILE_OUT * TILE_OUT, TILE_IN * TILE_IN, KERNEL * KERNEL)
    out = []
    for c in coeff:
        dp, gr = np.nonzero(c)
        assert len(set(dp)) == len(dp) and len(set(gr)) == len(gr), "an operand appears twice"
        lo = hi = 0
        for p, r in zip(dp, gr):
            corners = [int(c[p, r]) * a * b for a in act_range for b in weight_range]
            lo, hi = lo + min(corners), hi + max(corners)
        out.append(Range(lo, hi).times(cin))
    return out


def _hull(ranges: list[Range]) -> Range:
    out = ranges[0]
    for r in ranges[1:]:
        out = out | r
    return out


@dataclass(frozen=True)
class WinogradWidths:
    """Ranges and signed bit widths of every intermediate of F(2x2,3x3) over `cin` input
    channels per group, for uint8 and int8 activations and int8 weights (hull of both types).

    transformed_input: V = B^T d B; transformed_weight: U = G' g G'^T; product: U ⊙ V (one
    multiplier's result); channel_sum: a Winograd-domain sum over cin channels; output: 4Y
    after the output transform (before the shift); accumulator: Y = 4Y >> 2.
    fits_dsp: both multiplier operands fit a signed 18x18 MULT18X18D; channel_sum_fits_32:
    the Winograd-domain sums and 4Y fit signed 32 bits.
    """

    cin: int
    transformed_input: Range
    transformed_weight: Range
    product: Range
    channel_sum: Range
    output: Range
    accumulator: Range

    @property
    def fits_dsp(self) -> bool:
        return max(self.transformed_input.bits, self.transformed_weight.bits) <= DSP_OPERAND_BITS

    @property
    def channel_sum_fits_32(self) -> bool:
        return max(self.channel_sum.bits, self.output.bits) <= 32


def check_widths(cin: int) -> WinogradWidths:
    """Every width of F(2x2,3x3) for `cin` input channels per group (>= 1), derived from the
    matrices B^T, G', A^T and the operand types by exact interval arithmetic."""
    if int(cin) < 1:
        raise RepAccelError(f"check_widths: cin must be >= 1, got {cin}")
    cin = int(cin)
    acts = (UINT8_RANGE, INT8_RANGE)
    products = [r for a in acts for r in product_ranges(a)]
    out = _hull([r for a in acts for r in output_ranges(cin, a)])
    return WinogradWidths(
        cin=cin,
        transformed_input=_hull([r for a in acts for r in input_transform_ranges(a)]),
        transformed_weight=_hull(weight_transform_ranges()),
        product=_hull(products),
        channel_sum=_hull(products).times(cin),
        output=out,
        accumulator=Range(out.lo // OUTPUT_SCALE, out.hi // OUTPUT_SCALE),
    )
