"""Exact integer Winograd F(2x2,3x3) (rep_accel.winograd, docs/numerics.md "Winograd F(2x2,3x3)"):
bit-identical to the direct accumulators of golden.conv_accumulate, every derived width
reached and never exceeded, and the whole numerics contract on top of it."""

import zlib
from fractions import Fraction
from itertools import product

import numpy as np
import pytest

from rep_accel import golden, numerics
from rep_accel import winograd as W
from rep_accel.errors import RepAccelError
from rep_accel.layout import LayerShape
from rep_accel.testing import vector_cases
from rep_accel.verification import cases as C
from sim_cases import LAYER_CASES, case_id, random_input, random_layer

#: Stride-1 layers: the simulator tests' stride-1 cases (tests/sim_cases.py) and more
#: (C_in, C_out, groups, 1, H, W, signed input): 1x1 images, depthwise, a 64-channel 28x28 layer.
LAYERS = [c for c in LAYER_CASES if c[3] == 1] + [
    (1, 1, 1, 1, 1, 1, False),
    (3, 5, 1, 1, 1, 1, True),
    (3, 8, 1, 1, 5, 7, True),
    (12, 10, 2, 1, 8, 6, False),
    (17, 9, 1, 1, 1, 5, False),
    (24, 24, 1, 1, 9, 9, False),
    (32, 32, 32, 1, 5, 6, False),
    (4, 12, 4, 1, 7, 2, False),
    (64, 64, 1, 1, 28, 28, False),
]


def random_operands(rng, case, n: int = 1):
    """Random inputs (n, C_in, H, W) as the simulator tests draw them, and int8 weights over the
    whole type (-128 included, which the contract never uses but the width bounds take)."""
    cin, cout, groups, _, h, w, signed = case
    x = random_input(LayerShape(cin, cout, groups, 1, h, w, signed), rng, n)
    wt = rng.integers(-128, 128, (cout, cin // groups, 3, 3)).astype(np.int8)
    return x, wt


def assert_same_accumulators(x, wt, groups):
    got = W.winograd_accumulate(x, wt, 1, groups)
    want = golden.conv_accumulate(x, wt, 1, groups)
    assert got.dtype == np.int64 and got.shape == want.shape
    assert np.array_equal(got, want), f"{int((got != want).sum())} of {got.size} accumulators differ"


# ----------------------------------------------------------------------------------
# The identity
# ----------------------------------------------------------------------------------

def test_scaled_matrices_are_lavin_and_grays_times_two():
    """G' = 2G with Lavin & Gray's G, kept exact in fractions."""
    half = Fraction(1, 2)
    g = [[1, 0, 0], [half, half, half], [half, -half, half], [0, 0, 1]]
    assert [[2 * v for v in row] for row in g] == W.G_SCALED.tolist()
    assert W.OUTPUT_SCALE == 2 * 2 == 1 << W.OUTPUT_SHIFT


def test_bilinear_form_is_four_times_the_direct_correlation():
    """The proof, as a computation: the coefficient of d[p,q] * g[r,s] in
    A^T[(G' g G'^T) ⊙ (B^T d B)]A[i,j] is 4 if (p, q) = (i + r, j + s), else 0."""
    coeff = W.bilinear_coefficients()
    direct = W.direct_coefficients()
    assert direct.sum() == 4 * 9  # 4 outputs, 9 taps each
    assert np.array_equal(coeff, W.OUTPUT_SCALE * direct)


def test_one_dimensional_coefficients_are_two_where_p_is_i_plus_r():
    """The 2-D coefficients factor into the 1-D F(2,3) ones, c(i,r,p) = sum_k A^T[i,k] G'[k,r] B^T[k,p]
    = 2 [p == i + r]: the 24 numbers docs/numerics.md asks to check by hand."""
    c = np.einsum("ik,kr,kp->irp", W.A_T, W.G_SCALED, W.B_T)
    want = np.zeros((2, 3, 4), np.int64)
    for i in range(2):
        for r in range(3):
            want[i, r, i + r] = 2
    assert np.array_equal(c, want)
    assert np.array_equal(W.bilinear_coefficients(), np.einsum("irp,jsq->ijpqrs", c, c))


def test_unscaled_transform_gives_y_on_random_tiles():
    """With Lavin & Gray's fractional G (exact rationals) the same A^T and B^T give Y itself."""
    rng = np.random.default_rng(1)
    g_frac = np.array([[Fraction(v, 2) for v in row] for row in W.G_SCALED.tolist()], dtype=object)
    for _ in range(20):
        d = rng.integers(-128, 256, (4, 4)).astype(object)
        k = rng.integers(-128, 128, (3, 3)).astype(object)
        u = g_frac @ k @ g_frac.T
        v = W.B_T.astype(object) @ d @ W.B_T.T.astype(object)
        y = W.A_T.astype(object) @ (u * v) @ W.A_T.T.astype(object)
        direct = [[sum(d[i + r, j + s] * k[r, s] for r in range(3) for s in range(3)) for j in range(2)]
                  for i in range(2)]
        assert y.tolist() == direct


# ----------------------------------------------------------------------------------
# Equality with the direct accumulators
# ----------------------------------------------------------------------------------

@pytest.mark.parametrize("case", LAYERS, ids=case_id)
def test_equals_direct_accumulators_on_random_layers(case):
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()))
    for n in (1, 2):
        x, wt = random_operands(rng, case, n)
        assert_same_accumulators(x, wt, case[2])


def test_equals_direct_on_many_random_tiles():
    """20,000 images of 1 x 6 x 6 (9 tiles each, 180,000 tiles) against 3 kernels, both input types."""
    rng = np.random.default_rng(2)
    for signed in (False, True):
        lo, hi = W.INT8_RANGE if signed else W.UINT8_RANGE
        x = rng.integers(lo, hi + 1, (10_000, 1, 6, 6)).astype(np.int8 if signed else np.uint8)
        wt = rng.integers(-128, 128, (3, 1, 3, 3)).astype(np.int8)
        assert_same_accumulators(x, wt, 1)


EXTREME_INPUTS = {
    "all255": lambda shape: np.full(shape, 255, np.uint8),
    "all0": lambda shape: np.zeros(shape, np.uint8),
    "all-128": lambda shape: np.full(shape, -128, np.int8),
    "all127": lambda shape: np.full(shape, 127, np.int8),
    "checker255": lambda shape: np.where(np.indices(shape).sum(axis=0) % 2, 255, 0).astype(np.uint8),
    "checker_signed": lambda shape: np.where(np.indices(shape).sum(axis=0) % 2, 127, -128).astype(np.int8),
    "rows255": lambda shape: np.where(np.indices(shape)[2] % 2, 255, 0).astype(np.uint8),
}
EXTREME_WEIGHTS = {
    "all127": lambda shape: np.full(shape, 127, np.int8),
    "all-128": lambda shape: np.full(shape, -128, np.int8),
    "checker": lambda shape: np.where(np.indices(shape).sum(axis=0) % 2, 127, -128).astype(np.int8),
    "checker_inverse": lambda shape: np.where(np.indices(shape).sum(axis=0) % 2, -128, 127).astype(np.int8),
    "columns": lambda shape: np.where(np.indices(shape)[3] % 2, -128, 127).astype(np.int8),
}


@pytest.mark.parametrize("inputs", EXTREME_INPUTS)
@pytest.mark.parametrize("weights", EXTREME_WEIGHTS)
def test_equals_direct_on_extreme_tiles(inputs, weights):
    """Saturated inputs and kernels, constant and alternating in sign, over 2 x 2, 5 x 5 and 6 x 7 images."""
    for cin, (h, w) in ((1, (2, 2)), (9, (5, 5)), (16, (6, 7))):
        x = EXTREME_INPUTS[inputs]((2, cin, h, w))
        wt = EXTREME_WEIGHTS[weights]((3, cin, 3, 3))
        assert_same_accumulators(x, wt, 1)


def test_weight_transform_dtype_and_values():
    k = np.arange(-4, 5, dtype=np.int8).reshape(1, 1, 3, 3)
    u = W.transform_weights(k)
    assert u.dtype == np.int16 and u.shape == (1, 1, 4, 4)
    assert np.array_equal(u[0, 0], W.G_SCALED @ k[0, 0].astype(np.int64) @ W.G_SCALED.T)


def test_input_transform_dtype_and_values():
    d = np.arange(16, dtype=np.uint8).reshape(4, 4) * 15
    v = W.transform_input_tile(d)
    assert v.dtype == np.int16 and v.shape == (4, 4)
    assert np.array_equal(v, W.B_T @ d.astype(np.int64) @ W.B_T.T)


def test_odd_sizes_drop_the_outputs_past_the_image():
    """An odd H or W pads its last tile with zeros: the tiles cover ceil(H/2) x ceil(W/2)."""
    x = np.ones((1, 1, 3, 5), np.uint8)
    tiles = W.input_tiles(x)
    assert tiles.shape == (1, 1, 2, 3, 4, 4)
    assert tiles[0, 0, 1, 2].sum() == 2 * 2  # the last tile holds the corner 2 x 2 of real pixels
    assert W.winograd_accumulate(x, np.ones((1, 1, 3, 3), np.int8)).shape == (1, 1, 3, 5)


# ----------------------------------------------------------------------------------
# The widths: derived bounds are never exceeded, and reached
# ----------------------------------------------------------------------------------

def _corner_tiles(lo: int, hi: int, side: int) -> np.ndarray:
    """Every tile whose entries are each lo or hi: (2^(side^2), side, side). A linear map
    reaches its extremes on these, so they give the exact range by brute force."""
    corners = np.array(list(product((lo, hi), repeat=side * side)), dtype=np.int64)
    return corners.reshape(-1, side, side)


@pytest.mark.parametrize("act", ["uint8", "int8"])
def test_input_transform_range_by_brute_force(act):
    """All 65,536 corner tiles: the range of every entry of V equals the derived one."""
    lo, hi = W.UINT8_RANGE if act == "uint8" else W.INT8_RANGE
    tiles = _corner_tiles(lo, hi, 4).astype(np.uint8 if act == "uint8" else np.int8)
    v = W.transform_input_tile(tiles).reshape(-1, 16)
    derived = W.input_transform_ranges((lo, hi))
    assert [(int(a), int(b)) for a, b in zip(v.min(axis=0), v.max(axis=0))] == [(r.lo, r.hi) for r in derived]


def test_weight_transform_range_by_brute_force():
    """All 512 corner kernels: the range of every entry of U equals the derived one."""
    kernels = _corner_tiles(*W.WEIGHT_RANGE, 3).astype(np.int8)
    u = W.transform_weights(kernels).reshape(-1, 16)
    derived = W.weight_transform_ranges()
    assert [(int(a), int(b)) for a, b in zip(u.min(axis=0), u.max(axis=0))] == [(r.lo, r.hi) for r in derived]


def test_width_constants_are_the_published_ones():
    """check_widths(1) against ../shared/HARDWARE.md's hand-checked table (uint8 [-510, 1020],
    weights [-1152, 1147], 22-bit products); the int8 input adds [-512, 510]."""
    wd = W.check_widths(1)
    assert (wd.transformed_input.lo, wd.transformed_input.hi, wd.transformed_input.bits) == (-512, 1020, 11)
    assert (wd.transformed_weight.lo, wd.transformed_weight.hi, wd.transformed_weight.bits) == (-1152, 1147, 12)
    assert wd.product.bits == 22 and wd.fits_dsp
    assert W.input_transform_ranges(W.UINT8_RANGE)[5] == W.Range(0, 1020)
    assert min(r.lo for r in W.input_transform_ranges(W.UINT8_RANGE)) == -510


def test_reached_transformed_input_and_weight():
    """The tiles that reach the bounds: all 255 gives V[1,1] = 1020, all -128 gives V[1,1] = -512;
    the all -128 kernel gives U[1,1] = -1152; +127/-128 in the checkerboard of G' row 2 gives U[2,2] = 1147."""
    wd = W.check_widths(1)
    assert W.transform_input_tile(np.full((4, 4), 255, np.uint8)).max() == wd.transformed_input.hi
    assert W.transform_input_tile(np.full((4, 4), -128, np.int8)).min() == wd.transformed_input.lo
    assert W.transform_weights(np.full((1, 1, 3, 3), -128, np.int8)).min() == wd.transformed_weight.lo
    # U[2,2] weights g by (1, -1, 1) along rows and columns: five taps +1, four -1
    sign = np.outer(W.G_SCALED[2], W.G_SCALED[2])
    k = np.where(sign > 0, 127, -128).astype(np.int8).reshape(1, 1, 3, 3)
    assert W.transform_weights(k)[0, 0, 2, 2] == wd.transformed_weight.hi == 5 * 127 + 4 * 128


@pytest.mark.parametrize("cin", [1, 7, 64])
def test_reached_product_channel_sum_output_and_accumulator(cin):
    """All-255 inputs with all -128 (or all +127) kernels reach the product, the Winograd-domain
    channel sum, the output transform and the accumulator bounds exactly, at tile entry (1, 1)
    and the interior output pixel (1, 1) of a 4 x 4 image."""
    wd = W.check_widths(cin)
    x = np.full((1, cin, 4, 4), 255, np.uint8)
    v = W.transform_input_tile(W.input_tiles(x))
    for fill, prod_bound, sum_bound, out_bound, acc_bound in (
            (-128, wd.product.lo, wd.channel_sum.lo, wd.output.lo, wd.accumulator.lo),
            (127, wd.product.hi, wd.channel_sum.hi, wd.output.hi, wd.accumulator.hi)):
        wt = np.full((1, cin, 3, 3), fill, np.int8)
        u = W.transform_weights(wt)
        # tile (0, 0): V[1, 1] sums the tile's inner 2 x 2, image pixels (0..1, 0..1), all 255
        products = u[0].astype(np.int64) * v[0, :, 0, 0].astype(np.int64)
        assert products[0, 1, 1] == prod_bound
        m = W.winograd_domain_sums(v, u, 1)
        assert m[0, 0, 0, 0, 1, 1] == sum_bound
        z = W.output_transform(m)
        assert z[0, 0, 0, 0, 1, 1] == out_bound  # tile (0, 0)'s output (1, 1): its 3 x 3 window is all inside
        acc = W.winograd_accumulate(x, wt)
        assert acc[0, 0, 1, 1] == acc_bound
        assert acc_bound == (numerics.ABS_X_BOUND * 9 * cin * fill)
        assert np.array_equal(acc, golden.conv_accumulate(x, wt, 1, 1))


def test_int8_inputs_reach_their_product_bounds():
    """The signed network input: all -128 with all -128 weights gives V[1,1] * U[1,1] = 512 * 1152."""
    x = np.full((1, 1, 4, 4), -128, np.int8)
    v = W.transform_input_tile(W.input_tiles(x))[0, 0, 0, 0].astype(np.int64)
    u = W.transform_weights(np.full((1, 1, 3, 3), -128, np.int8))[0, 0].astype(np.int64)
    int8_products = W.product_ranges(W.INT8_RANGE)
    assert (u * v)[1, 1] == int8_products[5].hi == 512 * 1152


def test_random_intermediates_stay_inside_the_bounds():
    """Random layers of both input types: every V, U, product, channel sum, 4Y within check_widths."""
    rng = np.random.default_rng(3)
    for case in ((5, 4, 1, 1, 7, 6, False), (5, 4, 1, 1, 6, 5, True), (33, 3, 1, 1, 4, 4, False)):
        x, wt = random_operands(rng, case, 2)
        wd = W.check_widths(case[0])
        v = W.transform_input_tile(W.input_tiles(x))
        u = W.transform_weights(wt)
        prods = u[None, :, :, None, None].astype(np.int64) * v[:, None].astype(np.int64)
        m = W.winograd_domain_sums(v, u, 1)
        assert np.array_equal(m, prods.sum(axis=2))  # the float64 sums are the exact integer sums
        z = W.output_transform(m)
        for value, r in ((v, wd.transformed_input), (u, wd.transformed_weight), (prods, wd.product),
                         (m, wd.channel_sum), (z, wd.output)):
            assert r.lo <= value.min() and value.max() <= r.hi


def test_channel_sum_width_for_4096_channels():
    """The Winograd-domain sums and 4Y fit signed 32 bits up to 1827 channels (4 * 9 * 255 * 128 *
    1827 < 2^31), need 34 bits at 4096; Y itself keeps the contract's 32 bits."""
    assert W.check_widths(1827).channel_sum_fits_32 and not W.check_widths(1828).channel_sum_fits_32
    wd = W.check_widths(4096)
    assert wd.channel_sum.lo == -4 * numerics.accumulator_bound(4096) == -4_812_963_840
    assert (wd.channel_sum.bits, wd.output.bits, wd.accumulator.bits) == (34, 34, 32)
    assert wd.accumulator.lo == -numerics.accumulator_bound(4096)


def test_widths_table_of_the_docs():
    """docs/numerics.md's table: bits of M and Z, and of acc, by input channels per group."""
    table = {1: (22, 20), 64: (28, 26), 192: (29, 27), 512: (31, 29), 1280: (32, 30), 1827: (32, 30),
             1828: (33, 31), 4096: (34, 32)}
    for cin, (sum_bits, acc_bits) in table.items():
        wd = W.check_widths(cin)
        assert (wd.channel_sum.bits, wd.output.bits, wd.accumulator.bits) == (sum_bits, sum_bits, acc_bits), cin


def _wrap(value, bits: int):
    """value modulo 2^bits as a signed two's-complement number: what a bits-wide register holds."""
    half = 1 << (bits - 1)
    return (np.asarray(value, np.int64) + half) % (1 << bits) - half


@pytest.mark.parametrize("cin, bits", [(1, 11), (6000, 32)])
def test_wraparound_datapath_of_the_output_width_is_exact(cin, bits):
    """Registers as wide as Z only, wrapping: the channel sums and the output transform's first stage
    leave that range (|M[0,1]| = 391,680 per channel against |Z| = 1020) and Z still comes out exact."""
    d = np.zeros((4, 4), np.uint8)
    d[2, 1:3] = 255
    g = np.full((3, 3), -128, np.int8)
    g[1:3, 1] = 127
    v = W.transform_input_tile(np.broadcast_to(d, (cin, 4, 4))).astype(np.int64)
    u = W.transform_weights(np.broadcast_to(g, (1, cin, 3, 3)))[0].astype(np.int64)
    exact_m = (u * v).sum(axis=0)
    exact_z = W.output_transform(exact_m)
    assert W.Range(int(exact_z.min()), int(exact_z.max())).bits <= bits
    assert np.abs(exact_m).max() > (1 << (bits - 1))  # the sums do leave the register's range
    m = np.zeros((4, 4), np.int64)
    for c in range(0, cin, 1000):  # accumulate in blocks, wrapping after each, as a register would
        m = _wrap(m + _wrap((u[c:c + 1000] * v[c:c + 1000]).sum(axis=0), bits), bits)
    rows = _wrap(W.A_T @ m, bits)
    z = _wrap(rows @ W.A_T.T, bits)
    assert np.array_equal(z, exact_z)
    assert np.array_equal(W.exact_quarter(z), W.exact_quarter(exact_z))


def test_channel_sum_leaves_32_bits_where_the_widths_say():
    """1828 channels of all 255 against all -128 kernels: the channel sum is below -2^31 (reached)."""
    cin = 1828
    x = np.full((1, cin, 4, 4), 255, np.uint8)
    wt = np.full((1, cin, 3, 3), -128, np.int8)
    m = W.winograd_domain_sums(W.transform_input_tile(W.input_tiles(x)), W.transform_weights(wt), 1)
    assert m.min() == W.check_widths(cin).channel_sum.lo < -(1 << 31)
    assert np.array_equal(W.winograd_accumulate(x, wt), golden.conv_accumulate(x, wt, 1, 1))


# ----------------------------------------------------------------------------------
# The numerics contract on winograd accumulators
# ----------------------------------------------------------------------------------

def winograd_layer_output(x, layer):
    """The contract's requantization of winograd accumulators + bias: uint8 (N, C_out, H, W)."""
    s = layer.shape
    acc = W.winograd_accumulate(x, np.asarray(layer.weight, np.int8), s.stride, s.groups)
    return numerics.requantize_nchw(acc, np.asarray(layer.bias, np.int64), np.asarray(layer.m0, np.int64),
                                    np.asarray(layer.n, np.int64))


@pytest.mark.parametrize("case", LAYERS, ids=case_id)
def test_requantized_winograd_equals_golden_layers(case):
    """The simulator tests' random layers (kind "mixed": extreme shifts and biases included)."""
    rng = np.random.default_rng(zlib.crc32(case_id(case).encode()) + 1)
    layer = random_layer(case, rng)
    x = random_input(layer.shape, rng, 2)
    assert np.array_equal(winograd_layer_output(x, layer), golden.conv_layer(x, layer))


@pytest.mark.parametrize("kind", C.PARAM_KINDS)
@pytest.mark.parametrize("inputs", C.INPUT_KINDS)
def test_requantized_winograd_equals_golden_on_every_parameter_and_input_kind(kind, inputs):
    rng = np.random.default_rng(4)
    for case in LAYER_CASES[:8]:
        shape = LayerShape(*case[:3], 1, *case[4:])
        lc = C.layer_case(rng, case_id(case), shape, kind, inputs)
        x = lc.x[None]
        assert np.array_equal(winograd_layer_output(x, lc.layer), golden.conv_layer(x, lc.layer))


STRIDE1_VECTORS = [c for c in vector_cases() if c.layer.shape.stride == 1]


def test_the_vectors_have_stride_1_cases():
    assert len(STRIDE1_VECTORS) == 7


@pytest.mark.parametrize("case", STRIDE1_VECTORS, ids=lambda c: f"case{c.index}")
def test_requantized_winograd_reproduces_tflite(case):
    y = winograd_layer_output(case.x, case.layer)
    assert y.shape == case.y.shape
    assert np.array_equal(y, case.y), f"{int((y != case.y).sum())} of {y.size} outputs differ"


# ----------------------------------------------------------------------------------
# Refusals
# ----------------------------------------------------------------------------------

def test_stride_2_is_refused():
    x = np.zeros((1, 2, 4, 4), np.uint8)
    with pytest.raises(RepAccelError, match="stride-1 layers only.*direct"):
        W.winograd_accumulate(x, np.zeros((2, 2, 3, 3), np.int8), stride=2)


def test_bad_operands_are_refused():
    x = np.zeros((1, 4, 4, 4), np.uint8)
    with pytest.raises(RepAccelError, match="int8"):
        W.winograd_accumulate(x, np.zeros((2, 4, 3, 3), np.int16))
    with pytest.raises(RepAccelError, match="uint8 or int8"):
        W.winograd_accumulate(x.astype(np.int32), np.zeros((2, 4, 3, 3), np.int8))
    with pytest.raises(RepAccelError, match="groups=2"):
        W.winograd_accumulate(x, np.zeros((2, 4, 3, 3), np.int8), groups=2)
    with pytest.raises(RepAccelError, match="cin must be"):
        W.check_widths(0)


def test_exact_quarter_refuses_a_non_multiple_of_4():
    assert np.array_equal(W.exact_quarter(np.array([-8, 4, 0])), [-2, 1, 0])
    with pytest.raises(AssertionError, match="multiple of 4"):
        W.exact_quarter(np.array([4, 6]))
