"""Tests of the convolution kernels through ``skconv.ops.conv`` / ``conv_backward``.

Groups, in file order:

1. the seeds' worked examples and the output-size formula (incl. 'same');
2. Hypothesis property tests against the slow numpy twin (``_reference_conv``);
3. central finite differences of ``sum(conv(x, w, b) * G)`` in float64;
4. thread invariance (bitwise) and batch reductions across chunk boundaries;
5. dtype rules, non-contiguous / read-only / memmap inputs, empty batches;
6. argument checking (type, message naming the argument and the shapes);
7. cross-checks against PyTorch (``-m torch``).

Tolerances: a result is compared element by element with the float64 twin, the
allowed error being ``tol * scale`` where ``scale`` is the same operation applied to
the absolute values of the operands (the sum of |terms| that a rounding error can
scale with); ``tol`` is 1e-4 for float32 and 1e-10 for float64.
"""

import pathlib
import platform
import re
import sys
import sysconfig

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from skconv import ops as _ops
from skconv._kernels import conv as _conv
from skconv._ops import blocks
from skconv.ops import conv, conv_backward, conv_output_shape

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from . import _reference_conv as ref
    from ._finite_differences import central_differences
except ImportError:
    import _reference_conv as ref
    from _finite_differences import central_differences

TOL = {np.dtype(np.float32): 1e-4, np.dtype(np.float64): 1e-10}
DTYPES = [np.float32, np.float64]


# ---------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------
def assert_close_scaled(actual, expected, scale, dtype, what="result"):
    """|actual - expected| <= tol(dtype) * scale, element by element, and same dtype."""
    actual = np.asarray(actual)
    dtype = np.dtype(dtype)
    assert actual.dtype == dtype, f"{what}: dtype {actual.dtype}, expected {dtype}"
    assert actual.shape == expected.shape, (
        f"{what}: shape {actual.shape}, expected {expected.shape}"
    )
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values"
    err = np.abs(actual.astype(np.float64) - expected)
    bound = TOL[dtype] * scale
    bad = err > bound
    if bad.any():
        first = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}: {int(bad.sum())} of {bad.size} elements out of tolerance; first at "
            f"{first}: got {actual[first]!r}, expected {expected[first]!r} "
            f"(scale {scale[first]!r}, max error {err.max()!r})"
        )


def reference_forward(x, w, b, **kw):
    """Twin output and its rounding scale (twin on absolute values)."""
    expected = ref.conv_ref(x, w, b, **kw)
    scale = ref.conv_ref(np.abs(x), np.abs(w), None if b is None else np.abs(b), **kw)
    return expected, scale


def reference_backward(grad_y, x, w, **kw):
    expected = ref.conv_backward_ref(grad_y, x, w, **kw)
    scale = ref.conv_backward_ref(np.abs(grad_y), np.abs(x), np.abs(w), **kw)
    return expected, scale


def check_against_twin(x, w, b, grad_y, dtype, n_jobs=None, **kw):
    y = conv(x, w, b, n_jobs=n_jobs, **kw)
    expected, scale = reference_forward(x, w, b, **kw)
    assert_close_scaled(y, expected, scale, dtype, "y")
    if grad_y is None:
        grad_y = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
    grads = conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw)
    expected, scale = reference_backward(grad_y, x, w, **kw)
    for name, got, exp, sc in zip(("grad_x", "grad_w", "grad_b"), grads, expected, scale):
        assert_close_scaled(got, exp, sc, dtype, name)


def random_problem(rng, n, c, d, in_shape, kernel, dtype, bias=True):
    x = rng.standard_normal((n, c) + tuple(in_shape)).astype(dtype)
    w = rng.standard_normal((d, c) + tuple(kernel)).astype(dtype)
    b = rng.standard_normal(d).astype(dtype) if bias else None
    return x, w, b


# ---------------------------------------------------------------------------------
# 1. seeds' worked examples, output-size formula, 'same'
# ---------------------------------------------------------------------------------
def test_seed_1d_example():
    y = conv([[[0, 0, 0, 0, 1, 2, 3, 3]]], [[[-1, 1]]])
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, [[[0, 0, 0, 1, 1, 1, 0]]])


SEED_IMAGE = [
    [1, 1, 1, 0, 0],
    [0, 1, 1, 1, 0],
    [0, 0, 1, 1, 1],
    [0, 0, 1, 1, 0],
    [0, 1, 1, 0, 0],
]
SEED_KERNEL = [[1, 0, 1], [0, 1, 0], [1, 0, 1]]


@pytest.mark.parametrize("dtype", DTYPES)
def test_seed_2d_binary_image(dtype):
    x = np.array(SEED_IMAGE, dtype=dtype)[None, None]
    w = np.array(SEED_KERNEL, dtype=dtype)[None, None]
    y = conv(x, w)
    assert y.dtype == dtype
    np.testing.assert_array_equal(y, [[[[4, 3, 4], [2, 4, 3], [2, 3, 4]]]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_rgb_is_sum_of_per_channel_2d_convolutions(dtype):
    rng = np.random.default_rng(1)
    x, w, b = random_problem(rng, 2, 3, 4, (6, 7), (3, 2), dtype, bias=False)
    y = conv(x, w)
    per_channel = sum(conv(x[:, c : c + 1], w[:, c : c + 1]) for c in range(3))
    # Both sides come from skconv, each within tol * scale of the exact sum (the
    # per-channel scales add up to the full one), so they differ by at most twice that.
    _, scale = reference_forward(x, w, None)
    assert per_channel.dtype == dtype
    assert_close_scaled(y, per_channel.astype(np.float64), 2 * scale, dtype, "rgb")
    # and the per-channel 2-D convolution itself is the seeds' formula
    expected, _ = reference_forward(x, w, None)
    assert_close_scaled(y, expected, scale, dtype, "rgb vs twin")


def _formula(size, k, s, lo, hi, d):
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


def test_output_shape_formula_grid():
    for size in range(1, 10):
        for k in range(1, 5):
            for s in range(1, 4):
                for p in range(0, 3):
                    for d in range(1, 3):
                        extent = d * (k - 1) + 1
                        if extent > size + 2 * p:
                            with pytest.raises(ValueError, match="larger than the padded"):
                                conv_output_shape((size,), (k,), stride=s, padding=p, dilation=d)
                            continue
                        got = conv_output_shape((size,), (k,), stride=s, padding=p, dilation=d)
                        assert got == (_formula(size, k, s, p, p, d),)
                        # independent count of window positions in the padded axis
                        assert got == (ref.output_size(size, k, s, p, p, d),)
                        if d == 1:  # the seeds' form
                            assert got == ((size + 2 * p - k) // s + 1,)


def test_output_shape_matches_conv_per_axis():
    rng = np.random.default_rng(2)
    cases = [
        ((9,), (4,), 2, 1, 1),
        ((8, 7), (3, 2), (2, 1), (1, 0), (1, 2)),
        ((5, 6, 7), (2, 3, 1), (1, 2, 3), (0, 1, 2), (2, 1, 1)),
    ]
    for in_shape, kernel, stride, padding, dilation in cases:
        x, w, _ = random_problem(rng, 1, 1, 1, in_shape, kernel, np.float64)
        kw = dict(stride=stride, padding=padding, dilation=dilation)
        out = conv_output_shape(in_shape, kernel, **kw)
        y = conv(x, w, **kw)
        assert y.shape[2:] == out
        n = len(in_shape)
        s = ref.expand(stride, n)
        p = ref.expand(padding, n)
        d = ref.expand(dilation, n)
        assert out == tuple(
            _formula(in_shape[a], kernel[a], s[a], p[a], p[a], d[a]) for a in range(n)
        )


def test_output_shape_seed_forms():
    # LeNet-5: 32x32 with 5x5 valid -> 28, 28x28 'same' -> 28, stride 2 -> 14
    assert conv_output_shape((32, 32), (5, 5)) == (28, 28)
    assert conv_output_shape((28, 28), (5, 5), padding="same") == (28, 28)
    assert conv_output_shape((28, 28), (5, 5), padding="same", stride=2) == (14, 14)
    assert conv_output_shape((32,), (3,), padding=1) == (32,)
    assert conv_output_shape((7, 7), (3, 3), padding=1, stride=2) == ((7 + 2 - 3) // 2 + 1,) * 2


@pytest.mark.parametrize("stride", [1, 2, 3, 4])
def test_same_padding_is_ceil_and_extra_cell_at_end(stride):
    # Hundreds of tiny calls: one thread each, so that a loaded machine (threads
    # waiting for a core at every parallel region) does not make this test crawl.
    one = dict(n_jobs=1)
    rng = np.random.default_rng(10 + stride)
    n_odd = 0
    for size in range(1, 12):
        for k in range(1, 6):
            for d in (1, 2):
                out = conv_output_shape((size,), (k,), stride=stride, padding="same", dilation=d)
                assert out == (-(-size // stride),)
                x, w, _ = random_problem(rng, 2, 2, 3, (size,), (k,), np.float64, bias=False)
                y = conv(x, w, stride=stride, padding="same", dilation=d, **one)
                assert y.shape == (2, 3, out[0])
                total = max((out[0] - 1) * stride + d * (k - 1) + 1 - size, 0)
                lo, hi = total // 2, total - total // 2
                x_end = np.pad(x, [(0, 0), (0, 0), (lo, hi)])
                y_end = conv(x_end, w, stride=stride, padding="valid", dilation=d, **one)
                _, scale = reference_forward(x, w, None, stride=stride, padding="same", dilation=d)
                assert_close_scaled(
                    y, y_end, scale, np.float64, f"same s={stride} W={size} k={k} d={d}"
                )
                if lo != hi:
                    # extra cell at the start instead: must differ (the test can fail)
                    n_odd += 1
                    x_start = np.pad(x, [(0, 0), (0, 0), (hi, lo)])
                    y_start = conv(x_start, w, stride=stride, padding="valid", dilation=d, **one)
                    assert not np.allclose(y, y_start)
    assert n_odd > 0


def test_same_padding_2d_3d_per_axis_strides():
    rng = np.random.default_rng(3)
    for in_shape, kernel, stride, dilation in [
        ((7, 6), (2, 3), (2, 3), (1, 2)),
        ((5, 4, 6), (2, 3, 4), (3, 1, 4), (2, 1, 1)),
    ]:
        x, w, b = random_problem(rng, 2, 2, 3, in_shape, kernel, np.float64)
        y = conv(x, w, b, stride=stride, padding="same", dilation=dilation)
        assert y.shape[2:] == tuple(-(-n // s) for n, s in zip(in_shape, stride))
        pads = []
        for n, k, s, d in zip(in_shape, kernel, stride, dilation):
            out = -(-n // s)
            total = max((out - 1) * s + d * (k - 1) + 1 - n, 0)
            pads.append((total // 2, total - total // 2))
        x_pad = np.pad(x, [(0, 0), (0, 0)] + pads)
        y_pad = conv(x_pad, w, b, stride=stride, padding=0, dilation=dilation)
        _, scale = reference_forward(x, w, b, stride=stride, padding="same", dilation=dilation)
        assert_close_scaled(y, y_pad, scale, np.float64, "same nd")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_axes", [1, 2, 3])
@pytest.mark.parametrize(
    "stride,padding", [(1, 0), (1, "valid"), (1, "same"), (2, 0), (1, 1)]
)
def test_pointwise_kernels(n_axes, dtype, stride, padding):
    # 1x1(x1) kernels with stride 1 and no padding are special cases of the kernels
    # (no im2col copy needed); the other parameter pairs are their near neighbours.
    rng = np.random.default_rng(4)
    in_shape = (5, 4, 3)[:n_axes]
    x, w, b = random_problem(rng, 3, 4, 5, in_shape, (1,) * n_axes, dtype)
    check_against_twin(x, w, b, None, dtype, stride=stride, padding=padding)


def test_padding_larger_than_kernel_and_input():
    # whole rows / planes of the column matrix come from padding only
    rng = np.random.default_rng(5)
    for in_shape, kernel, padding, stride in [
        ((2,), (1,), 4, 1),
        ((2,), (2,), 5, 3),
        ((1, 3), (2, 1), (3, 4), (2, 1)),
        ((2, 1, 2), (1, 2, 3), (3, 2, 4), (1, 2, 3)),
    ]:
        for dtype in DTYPES:
            x, w, b = random_problem(rng, 2, 2, 2, in_shape, kernel, dtype)
            check_against_twin(x, w, b, None, dtype, stride=stride, padding=padding)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "n,c,in_shape,d,kernel,kw",
    [
        (2, 1, (28, 28), 6, (5, 5), dict(padding="same")),  # LeNet-5 conv1
        (2, 6, (14, 14), 16, (5, 5), dict()),  # LeNet-5 conv2
        (3, 2, (100,), 9, (7,), dict(padding=3)),  # a signal
        (2, 3, (9, 10, 11), 5, (3, 3, 3), dict(padding=1)),  # a volume
        (2, 6, (14, 14), 16, (5, 5), dict(stride=2, padding="same")),
        # 14 filters and 10 channels: row blocks of 4 then 6 (AVX-512) in both passes.
        (2, 10, (12, 20), 14, (3, 3), dict(padding="same")),
        # Vectors laid per output row rather than over the whole padded span: forward
        # 14 vectors instead of 16 (float32), input gradient 14 instead of 19.
        (3, 6, (14, 14), 16, (5, 5), dict(padding="same")),  # LeNet-5 conv2 default
        (2, 3, (16, 16), 5, (5, 5), dict(padding="same")),  # rows of whole vectors
        (2, 4, (12, 13), 3, (3, 3), dict(padding="same", dilation=2)),
        (2, 2, (5, 12, 11), 3, (3, 3, 3), dict(padding=(1, 2, 3))),
    ],
)
def test_realistic_sizes_match_twin(dtype, n, c, in_shape, d, kernel, kw):
    rng = np.random.default_rng(18)
    x, w, b = random_problem(rng, n, c, d, in_shape, kernel, dtype)
    check_against_twin(x, w, b, None, dtype, **kw)


@pytest.mark.parametrize(
    "in_shape,kernel,kw",
    [
        ((6,), (2,), dict()),
        ((17,), (3,), dict(stride=2, padding="same")),  # signals' polyphase paths
        ((23,), (4,), dict(stride=3, padding=2, dilation=2)),
        ((5, 6), (2, 3), dict()),
        ((5, 6), (3, 2), dict(padding=1)),
        ((5, 6), (2, 2), dict(stride=2)),
        ((4, 5, 3), (2, 2, 2), dict(padding="same")),
    ],
)
def test_non_finite_values_stay_where_the_formula_puts_them(in_shape, kernel, kw):
    # One inf in x: y, grad_x and grad_w must be non-finite exactly where the twin's
    # sums include that cell, and equal to the twin elsewhere (the backward's
    # finite-only paths, stride 1 and strided signals, must hand over to im2col).
    rng = np.random.default_rng(19)
    x, w, b = random_problem(rng, 2, 2, 3, in_shape, kernel, np.float64)
    for cell in [(0, 0) + (0,) * len(in_shape), (1, 1) + tuple(s // 2 for s in in_shape),
                 (1, 0) + tuple(s - 1 for s in in_shape)]:
        x_bad = x.copy()
        x_bad[cell] = np.inf
        with np.errstate(invalid="ignore"):
            y_exp = ref.conv_ref(x_bad, w, b, **kw)
            grad_y = rng.standard_normal(y_exp.shape)
            g_exp = ref.conv_backward_ref(grad_y, x_bad, w, **kw)
            y = conv(x_bad, w, b, **kw)
            g = conv_backward(grad_y, x_bad, w, **kw)
        for name, got, exp in zip(("y", "grad_x", "grad_w", "grad_b"), (y,) + g, (y_exp,) + g_exp):
            np.testing.assert_array_equal(
                np.isfinite(got), np.isfinite(exp), err_msg=f"{name}: inf at {cell}"
            )
            mask = np.isfinite(exp)
            np.testing.assert_allclose(got[mask], exp[mask], rtol=1e-10, atol=1e-10,
                                       err_msg=f"{name}: inf at {cell}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_finite_kernel_matches_numpy(dtype):
    # The check that picks the finite-only paths: any one inf or NaN, at any place
    # (vector body or tail, first or last), must be seen; extreme finite values not.
    rng = np.random.default_rng(23)
    info = np.finfo(dtype)
    for n in [0, 1, 2, 7, 15, 16, 17, 31, 33, 64, 100, 1000, 4099]:
        values = rng.standard_normal(n).astype(dtype)
        if n:
            values[rng.integers(n)] = rng.choice([info.max, -info.max, info.tiny, 0.0])
        assert _conv.all_finite(values) is True
        for bad in (np.inf, -np.inf, np.nan):
            for place in {0, n // 2, n - 1} if n else ():
                spoiled = values.copy()
                spoiled[place] = bad
                assert _conv.all_finite(spoiled) is False, (n, bad, place)


# ---------------------------------------------------------------------------------
# 2. Hypothesis property tests against the twin
# ---------------------------------------------------------------------------------
def _per_axis_or_int(n_axes, low, high):
    return st.one_of(
        st.integers(low, high), st.tuples(*[st.integers(low, high)] * n_axes)
    )


@st.composite
def conv_configs(draw, unit_stride=False, large=False):
    n_axes = draw(st.integers(1, 3))
    max_kernel, max_dil, max_extra = {1: (5, 3, 8), 2: (4, 3, 5), 3: (3, 2, 3)}[n_axes]
    if large:  # wide rows: several vector blocks of the micro-kernels per row
        max_extra = {1: 70, 2: 24, 3: 8}[n_axes]
    kernel = tuple(draw(st.integers(1, max_kernel)) for _ in range(n_axes))
    dilation = draw(_per_axis_or_int(n_axes, 1, max_dil))
    dil = ref.expand(dilation, n_axes)
    # sizes drawn around the dilated kernel extent, so most configurations fit and
    # some only fit thanks to padding (the rest are rejected by assume below)
    in_shape = tuple(
        draw(st.integers(1, d * (k - 1) + 1 + max_extra)) for k, d in zip(kernel, dil)
    )
    stride = 1 if unit_stride else draw(_per_axis_or_int(n_axes, 1, 3))
    padding = draw(
        st.one_of(
            st.sampled_from(["valid", "same"]),
            st.integers(0, 5),
            st.tuples(*[st.integers(0, 5)] * n_axes),
        )
    )
    return dict(
        n_axes=n_axes,
        n=draw(st.integers(1, 3)),
        # up to 6: the micro-kernels block 4 filters (forward) or channels (grad_x)
        c=draw(st.integers(1, 6)),
        d=draw(st.integers(1, 6)),
        in_shape=in_shape,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(DTYPES)),
        n_jobs=draw(st.sampled_from([1, 2, None])),
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def _fits(cfg):
    n_axes = cfg["n_axes"]
    stride = ref.expand(cfg["stride"], n_axes)
    dilation = ref.expand(cfg["dilation"], n_axes)
    pads = ref.resolve_padding(cfg["padding"], cfg["in_shape"], cfg["kernel"], stride, dilation)
    return all(
        d * (k - 1) + 1 <= size + lo + hi
        for size, k, (lo, hi), d in zip(cfg["in_shape"], cfg["kernel"], pads, dilation)
    )


def _run_property(cfg):
    assume(_fits(cfg))
    rng = np.random.default_rng(cfg["seed"])
    dtype = cfg["dtype"]
    x, w, b = random_problem(
        rng, cfg["n"], cfg["c"], cfg["d"], cfg["in_shape"], cfg["kernel"], dtype, cfg["bias"]
    )
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    out = conv_output_shape(cfg["in_shape"], cfg["kernel"], **kw)
    grad_y = rng.standard_normal((cfg["n"], cfg["d"]) + out).astype(dtype)
    check_against_twin(x, w, b, grad_y, dtype, n_jobs=cfg["n_jobs"], **kw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=conv_configs())
def test_property_forward_backward_match_twin(cfg):
    _run_property(cfg)


# Stride 1 on every axis takes its own code path (zero-padded copy, shifted rows,
# wide rows whose tail cells are dropped): test it on its own with longer rows.
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=conv_configs(unit_stride=True, large=True))
def test_property_unit_stride_match_twin(cfg):
    _run_property(cfg)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cfg=conv_configs(large=True))
def test_property_large_strided_match_twin(cfg):
    _run_property(cfg)


@settings(max_examples=40, deadline=None)
@given(cfg=conv_configs())
def test_property_rejects_exactly_the_configs_that_do_not_fit(cfg):
    n_axes = cfg["n_axes"]
    kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
    x = np.ones((1, 1) + cfg["in_shape"])
    w = np.ones((1, 1) + cfg["kernel"])
    if _fits(cfg):
        out = conv_output_shape(cfg["in_shape"], cfg["kernel"], **kw)
        assert conv(x, w, **kw).shape[2:] == out
    else:
        assert n_axes == len(cfg["in_shape"])
        with pytest.raises(ValueError, match=r"kernel .* larger than the padded input"):
            conv(x, w, **kw)
        with pytest.raises(ValueError, match=r"kernel .* larger than the padded input"):
            conv_backward(np.ones((1, 1) + (1,) * n_axes), x, w, **kw)


# ---------------------------------------------------------------------------------
# 3. central finite differences (float64)
# ---------------------------------------------------------------------------------
FD_CASES = [
    # in_shape, kernel, stride, padding, dilation
    ((9,), (3,), 2, 1, 1),
    ((10,), (2,), 1, "same", 3),
    ((8,), (4,), 3, "same", 1),
    ((6, 5), (3, 2), (2, 1), "same", 1),
    ((7, 6), (2, 3), (1, 2), (1, 2), (2, 1)),
    ((5, 5), (3, 3), 2, "valid", 1),
    ((4, 5, 3), (2, 3, 2), (2, 1, 2), "same", (1, 2, 1)),
    ((4, 4, 4), (2, 2, 2), 1, 1, 2),
]


@pytest.mark.parametrize("in_shape,kernel,stride,padding,dilation", FD_CASES)
def test_finite_differences(in_shape, kernel, stride, padding, dilation):
    rng = np.random.default_rng(6)
    x, w, b = random_problem(rng, 2, 2, 2, in_shape, kernel, np.float64)
    kw = dict(stride=stride, padding=padding, dilation=dilation)
    G = rng.standard_normal(conv(x, w, b, **kw).shape)

    def loss():
        return float(np.sum(conv(x, w, b, n_jobs=1, **kw) * G))

    # The loss is affine in each coordinate, so central differences have no truncation
    # error; what remains is rounding, about eps * |terms| / h ~ 1e-12 here (observed
    # <= 1.2e-11 on these cases).
    numeric = [central_differences(loss, arr, 1e-3) for arr in (x, w, b)]
    analytic = conv_backward(G, x, w, **kw)
    for name, got, exp in zip(("grad_x", "grad_w", "grad_b"), analytic, numeric):
        assert got.dtype == np.float64
        np.testing.assert_allclose(got, exp, rtol=1e-9, atol=1e-9, err_msg=name)


# ---------------------------------------------------------------------------------
# 4. thread invariance and chunked batch reductions
# ---------------------------------------------------------------------------------
THREAD_GEOMETRIES = {
    "1d": ((3, 40), (5, 3, 4), dict(stride=2, padding="same", dilation=2)),
    "2d": ((3, 12, 11), (4, 3, 3, 2), dict(stride=(2, 1), padding=(1, 2))),
    "3d": ((2, 6, 5, 7), (3, 2, 2, 3, 2), dict(padding="same", dilation=(1, 2, 1))),
    "pointwise": ((4, 6, 5), (3, 4, 1, 1), dict()),
    "lenet_conv2": ((6, 14, 14), (16, 6, 5, 5), dict()),
    "lenet_conv2_same": ((6, 14, 14), (16, 6, 5, 5), dict(padding="same")),
}


@pytest.mark.parametrize("geometry", sorted(THREAD_GEOMETRIES))
@pytest.mark.parametrize("n", [1, 7, 19, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_thread_count_gives_bitwise_equal_results(geometry, n, dtype, monkeypatch):
    # n_jobs is capped at the usable cores: pretend to have more, so that 3 threads
    # (an odd split of the batch) run on a two-core machine too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    x_shape, w_shape, kw = THREAD_GEOMETRIES[geometry]
    rng = np.random.default_rng(7)
    x = rng.standard_normal((n,) + x_shape).astype(dtype)
    w = rng.standard_normal(w_shape).astype(dtype)
    b = rng.standard_normal(w_shape[0]).astype(dtype)
    y1 = conv(x, w, b, n_jobs=1, **kw)
    grad_y = rng.standard_normal(y1.shape).astype(dtype)
    g1 = conv_backward(grad_y, x, w, n_jobs=1, **kw)
    for n_jobs in (2, 3, None, -1):
        np.testing.assert_array_equal(conv(x, w, b, n_jobs=n_jobs, **kw), y1, err_msg=str(n_jobs))
        for name, a, b1 in zip(("grad_x", "grad_w", "grad_b"),
                               conv_backward(grad_y, x, w, n_jobs=n_jobs, **kw), g1):
            np.testing.assert_array_equal(a, b1, err_msg=f"{name} n_jobs={n_jobs}")
    # repeated calls are deterministic too
    np.testing.assert_array_equal(conv(x, w, b, n_jobs=2, **kw), y1)


@pytest.mark.parametrize("kw", [dict(stride=(1, 2), padding="same"), dict(padding=1)])
@pytest.mark.parametrize("n", [7, 16, 17, 19, 64])
@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_reduction_matches_twin(n, dtype, kw):
    # The hypothesis test uses N <= 3; the weight/bias gradients are summed in chunks
    # of samples, so check uneven and many-sample chunks against the twin too.
    rng = np.random.default_rng(8)
    x, w, b = random_problem(rng, n, 2, 3, (5, 4), (2, 3), dtype)
    check_against_twin(x, w, b, None, dtype, n_jobs=2, **kw)


# ---------------------------------------------------------------------------------
# 5. dtype rules, layouts, read-only inputs, empty batch
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_dtype_is_kept(dtype):
    rng = np.random.default_rng(9)
    x, w, b = random_problem(rng, 2, 2, 3, (6, 5), (3, 3), dtype)
    y = conv(x, w, b)
    assert y.dtype == dtype
    grads = conv_backward(y, x, w)
    assert [g.dtype for g in grads] == [np.dtype(dtype)] * 3


def test_integer_input_gives_float64():
    x = np.arange(2 * 1 * 6, dtype=np.int64).reshape(2, 1, 6)
    w = np.array([[[1, -2, 1]]], dtype=np.int32)
    y = conv(x, w, np.array([3], dtype=np.int16))
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, conv(x.astype(np.float64), w.astype(np.float64), [3.0]))
    np.testing.assert_array_equal(y, ref.conv_ref(x, w, [3]))
    grads = conv_backward(np.ones(y.shape, dtype=np.int8), x, w)
    assert [g.dtype for g in grads] == [np.dtype(np.float64)] * 3
    for got, exp in zip(grads, ref.conv_backward_ref(np.ones(y.shape), x, w)):
        np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("other", [np.float16, np.bool_, np.uint8])
def test_other_real_dtypes_give_float64(other):
    x = np.ones((1, 2, 5), dtype=other)
    w = np.ones((1, 2, 2), dtype=np.float32)
    y = conv(x, w)
    assert y.dtype == np.float64
    np.testing.assert_array_equal(y, np.full((1, 1, 4), 4.0))


@pytest.mark.parametrize(
    "x_dtype,w_dtype,b_dtype",
    [
        (np.float32, np.float64, None),
        (np.float64, np.float32, None),
        (np.float32, np.float32, np.float64),
        (np.float32, np.int64, np.float32),
    ],
)
def test_mixed_dtypes_promote_to_float64(x_dtype, w_dtype, b_dtype):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((3, 2, 6, 5)).astype(x_dtype)
    w = (rng.standard_normal((2, 2, 2, 3)) * 3).astype(w_dtype)
    b = None if b_dtype is None else rng.standard_normal(2).astype(b_dtype)
    y = conv(x, w, b, padding=1)
    assert y.dtype == np.float64
    b64 = None if b is None else b.astype(np.float64)
    expected = conv(x.astype(np.float64), w.astype(np.float64), b64, padding=1)
    np.testing.assert_array_equal(y, expected)
    # conv_backward has no bias: it promotes when grad_y, x or w is not float32
    grad_y = y.astype(np.float32)
    all_f32 = x.dtype == np.float32 and w.dtype == np.float32
    grads = conv_backward(grad_y, x, w, padding=1)
    if all_f32:  # float32 all through: the twin is the yardstick
        expected, scale = reference_backward(grad_y, x, w, padding=1)
        for name, got, exp, sc in zip(("grad_x", "grad_w", "grad_b"), grads, expected, scale):
            assert_close_scaled(got, exp, sc, np.float32, name)
    else:
        grads_exp = conv_backward(grad_y.astype(np.float64), x.astype(np.float64),
                                  w.astype(np.float64), padding=1)
        for got, exp in zip(grads, grads_exp):
            assert got.dtype == np.float64
            np.testing.assert_array_equal(got, exp)


def test_float64_grad_y_with_float32_operands_promotes():
    rng = np.random.default_rng(12)
    x, w, _ = random_problem(rng, 2, 2, 2, (7,), (3,), np.float32)
    grad_y = rng.standard_normal((2, 2, 5))
    grads = conv_backward(grad_y, x, w)
    exp = conv_backward(grad_y, x.astype(np.float64), w.astype(np.float64))
    for got, e in zip(grads, exp):
        assert got.dtype == np.float64
        np.testing.assert_array_equal(got, e)


@pytest.mark.parametrize("dtype", DTYPES)
def test_non_contiguous_inputs(dtype):
    rng = np.random.default_rng(13)
    # x: a transposed and sliced view; w: a reversed (negative-stride) view;
    # b: a strided slice; grad_y: Fortran order.
    x_big = rng.standard_normal((9, 4, 3, 12)).astype(dtype)
    x = x_big.transpose(2, 1, 0, 3)[:, 1:, ::2, 1::2]  # (3, 3, 5, 6)
    w_big = rng.standard_normal((2, 3, 3, 6)).astype(dtype)
    w = w_big[:, :, :, ::-2]  # (2, 3, 3, 3)
    b = rng.standard_normal(4).astype(dtype)[::2]
    assert not x.flags.c_contiguous and not w.flags.c_contiguous and not b.flags.c_contiguous
    kw = dict(stride=(2, 1), padding="same", dilation=(1, 2))
    y = conv(x, w, b, **kw)
    y_c = conv(x.copy(), w.copy(), b.copy(), **kw)
    np.testing.assert_array_equal(y, y_c)
    expected, scale = reference_forward(x, w, b, **kw)
    assert_close_scaled(y, expected, scale, dtype)
    grad_y = np.asfortranarray(rng.standard_normal(y.shape).astype(dtype))
    assert not grad_y.flags.c_contiguous
    for got, exp in zip(conv_backward(grad_y, x, w, **kw),
                        conv_backward(np.ascontiguousarray(grad_y), x.copy(), w.copy(), **kw)):
        np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_read_only_inputs(dtype):
    rng = np.random.default_rng(14)
    x, w, b = random_problem(rng, 3, 2, 2, (6, 6), (3, 2), dtype)
    y_ref = conv(x, w, b, padding=1)
    grad_y = rng.standard_normal(y_ref.shape).astype(dtype)
    g_ref = conv_backward(grad_y, x, w, padding=1)
    for arr in (x, w, b, grad_y):
        arr.setflags(write=False)
    np.testing.assert_array_equal(conv(x, w, b, padding=1), y_ref)
    for got, exp in zip(conv_backward(grad_y, x, w, padding=1), g_ref):
        np.testing.assert_array_equal(got, exp)


@pytest.mark.parametrize("dtype", DTYPES)
def test_memmap_inputs(dtype, tmp_path):
    rng = np.random.default_rng(15)
    x, w, b = random_problem(rng, 4, 2, 3, (5, 7), (2, 3), dtype)
    y_ref = conv(x, w, b, stride=2)
    grad_y = rng.standard_normal(y_ref.shape).astype(dtype)
    g_ref = conv_backward(grad_y, x, w, stride=2)

    def to_memmap(name, arr):
        path = tmp_path / f"{name}.dat"
        mm = np.memmap(path, dtype=arr.dtype, mode="w+", shape=arr.shape)
        mm[...] = arr
        mm.flush()
        del mm
        return np.memmap(path, dtype=arr.dtype, mode="r", shape=arr.shape)

    xm, wm, bm, gm = (to_memmap(n, a) for n, a in zip("xwbg", (x, w, b, grad_y)))
    assert not xm.flags.writeable
    np.testing.assert_array_equal(conv(xm, wm, bm, stride=2), y_ref)
    for got, exp in zip(conv_backward(gm, xm, wm, stride=2), g_ref):
        np.testing.assert_array_equal(got, exp)


def test_inputs_are_not_modified():
    rng = np.random.default_rng(16)
    x, w, b = random_problem(rng, 3, 2, 2, (6,), (3,), np.float64)
    copies = [a.copy() for a in (x, w, b)]
    y = conv(x, w, b, padding="same", stride=2)
    grad_y = rng.standard_normal(y.shape)
    g_copy = grad_y.copy()
    conv_backward(grad_y, x, w, padding="same", stride=2)
    for a, c in zip((x, w, b, grad_y), copies + [g_copy]):
        np.testing.assert_array_equal(a, c)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "in_shape,kernel,kw",
    [
        ((7,), (3,), dict(stride=2, padding="same")),
        ((6, 5), (3, 2), dict(padding=1)),
        ((4, 5, 3), (2, 2, 2), dict(stride=(1, 2, 1), dilation=(2, 1, 1))),
    ],
)
def test_empty_batch(dtype, in_shape, kernel, kw):
    x = np.zeros((0, 2) + in_shape, dtype=dtype)
    w = np.ones((3, 2) + kernel, dtype=dtype)
    out = conv_output_shape(in_shape, kernel, **kw)
    y = conv(x, w, np.ones(3, dtype=dtype), **kw)
    assert y.shape == (0, 3) + out
    assert y.dtype == dtype
    grad_x, grad_w, grad_b = conv_backward(np.zeros((0, 3) + out, dtype=dtype), x, w, **kw)
    assert grad_x.shape == x.shape and grad_x.dtype == dtype
    assert grad_w.shape == w.shape and grad_w.dtype == dtype
    assert grad_b.shape == (3,) and grad_b.dtype == dtype
    np.testing.assert_array_equal(grad_w, 0)
    np.testing.assert_array_equal(grad_b, 0)


# ---------------------------------------------------------------------------------
# 6. argument checking
# ---------------------------------------------------------------------------------
X4 = np.zeros((2, 3, 5, 5))
W4 = np.zeros((4, 3, 3, 3))


def _shape(shape):
    return re.escape(str(tuple(shape)))


@pytest.mark.parametrize(
    "x_shape", [(3, 5), (1, 1, 2, 2, 2, 2), (7,)]
)
def test_bad_x_ndim(x_shape):
    x = np.zeros(x_shape)
    w = np.zeros((1,) * max(len(x_shape), 3))
    with pytest.raises(ValueError, match=rf"^x must .*\(N, C, \*spatial\).*{_shape(x_shape)}"):
        conv(x, w)
    with pytest.raises(ValueError, match=rf"^x must .*{_shape(x_shape)}"):
        conv_backward(np.zeros((1, 1, 1)), x, w)


def test_x_w_ndim_mismatch():
    w = np.zeros((4, 3, 3))
    msg = rf"^w must .*x has shape {_shape(X4.shape)}.*w has shape {_shape(w.shape)}"
    with pytest.raises(ValueError, match=msg):
        conv(X4, w)
    with pytest.raises(ValueError, match=rf"^w must .*{_shape(w.shape)}"):
        conv_backward(np.zeros((2, 4, 3)), X4, w)


def test_channel_mismatch():
    w = np.zeros((4, 2, 3, 3))
    with pytest.raises(ValueError, match=rf"channel.*3.*{_shape(X4.shape)}.*2.*{_shape(w.shape)}"):
        conv(X4, w)


@pytest.mark.parametrize(
    "w_shape,kw",
    [((4, 3, 6, 3), {}), ((4, 3, 3, 3), dict(dilation=3)), ((4, 3, 8, 1), dict(padding=1)),
     ((4, 3, 1, 7), dict(padding=(3, 0)))],
)
def test_kernel_larger_than_padded_input(w_shape, kw):
    w = np.zeros(w_shape)
    msg = (
        rf"^kernel {_shape(w_shape[2:])} .*larger than the padded input"
        rf".*x spatial shape {_shape(X4.shape[2:])}"
    )
    with pytest.raises(ValueError, match=msg):
        conv(X4, w, **kw)
    with pytest.raises(ValueError, match=msg):
        conv_backward(np.zeros((2, 4, 1, 1)), X4, w, **kw)


@pytest.mark.parametrize("name", ["stride", "dilation"])
@pytest.mark.parametrize("value", [0, -1, (1, 0)])
def test_stride_dilation_below_one(name, value):
    msg = rf"^{name} must be >= 1 on every axis, got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=msg):
        conv(X4, W4, **{name: value})
    with pytest.raises(ValueError, match=msg):
        conv_backward(np.zeros((2, 4, 3, 3)), X4, W4, **{name: value})


@pytest.mark.parametrize("value", [-1, (1, -2)])
def test_negative_padding(value):
    msg = rf"^padding must be >= 0 on every axis, got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=msg):
        conv(X4, W4, padding=value)


@pytest.mark.parametrize("value", ["full", "causal", ""])
def test_unknown_padding_string(value):
    with pytest.raises(ValueError, match=rf"^padding must be .*'valid' or 'same', got {value!r}"):
        conv(X4, W4, padding=value)


@pytest.mark.parametrize("name,value", [("padding", (1, 1, 1)), ("stride", (1,)),
                                        ("dilation", (1, 2, 3)), ("padding", ())])
def test_per_axis_tuple_of_wrong_length(name, value):
    msg = rf"^{name} has {len(value)} entries but the input has 2 spatial axes"
    with pytest.raises(ValueError, match=msg):
        conv(X4, W4, **{name: value})


def test_output_shape_argument_errors():
    with pytest.raises(ValueError, match=r"^kernel_shape has 1 entries but the input has 2"):
        conv_output_shape((5, 5), (3,))
    with pytest.raises(ValueError, match=r"^in_shape must have 1 to 3 spatial axes"):
        conv_output_shape((1, 2, 3, 4), (1, 1, 1, 1))


@pytest.mark.parametrize("b_shape", [(3,), (4, 1), (), (5,)])
def test_bias_shape(b_shape):
    msg = rf"^b must have shape \(4,\).*{_shape(W4.shape)}.*got shape {_shape(b_shape)}"
    with pytest.raises(ValueError, match=msg):
        conv(X4, W4, np.zeros(b_shape))


@pytest.mark.parametrize("g_shape", [(2, 4, 3, 2), (2, 4, 3), (1, 4, 3, 3), (2, 3, 3, 3)])
def test_grad_y_shape(g_shape):
    msg = rf"^grad_y must have shape \(2, 4, 3, 3\).*got shape {_shape(g_shape)}"
    with pytest.raises(ValueError, match=msg):
        conv_backward(np.zeros(g_shape), X4, W4)


@pytest.mark.parametrize("which", ["x", "w", "b", "grad_y"])
@pytest.mark.parametrize("bad", ["complex", "str", "object"])
def test_non_numeric_dtype(which, bad):
    arrays = dict(x=X4, w=W4, b=np.zeros(4), grad_y=np.zeros((2, 4, 3, 3)))
    src = arrays[which]
    arrays[which] = {
        "complex": src.astype(np.complex128),
        "str": np.full(src.shape, "a"),
        "object": np.full(src.shape, None, dtype=object),
    }[bad]
    msg = rf"^{which} must hold real numbers, got dtype .* with shape {_shape(src.shape)}"
    with pytest.raises(TypeError, match=msg):
        if which == "grad_y":
            conv_backward(arrays["grad_y"], arrays["x"], arrays["w"])
        else:
            conv(arrays["x"], arrays["w"], arrays["b"])


def test_ragged_input():
    with pytest.raises(TypeError, match=r"^x must be array-like of numbers"):
        conv([[[1.0, 2.0], [1.0]]], [[[1.0]]])


@pytest.mark.parametrize("n_jobs,exc,msg", [(0, ValueError, r"^n_jobs == 0"),
                                            (1.5, TypeError, r"^n_jobs must be None or an int"),
                                            (True, TypeError, r"^n_jobs must be None or an int"),
                                            ("2", TypeError, r"^n_jobs must be None or an int")])
def test_bad_n_jobs(n_jobs, exc, msg):
    with pytest.raises(exc, match=msg):
        conv(X4, W4, n_jobs=n_jobs)
    with pytest.raises(exc, match=msg):
        conv_backward(np.zeros((2, 4, 3, 3)), X4, W4, n_jobs=n_jobs)


@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
@pytest.mark.parametrize("value", [True, 2.0, (1, 2.0), (1, True), None])
def test_non_int_geometry_is_type_error(name, value):
    # padding also names its string forms in the message.
    allowed = "an int, a tuple of 2 ints, 'valid' or 'same'" if name == "padding" else (
        "an int or a tuple of 2 ints")
    with pytest.raises(TypeError, match=rf"^{name} must be {allowed}, got "):
        conv(X4, W4, **{name: value})


@pytest.mark.parametrize("name", ["stride", "dilation", "padding"])
@pytest.mark.parametrize("value", [2**31, 2**63, (1, 2**63), 2**70])
def test_huge_geometry_is_value_error_naming_it(name, value):
    # Used to be an OverflowError from the compiled layer (or, for padding, numpy's
    # "Maximum allowed dimension exceeded").
    match = rf"^{name} must be at most 2147483647 on every axis .*got {re.escape(repr(value))}"
    with pytest.raises(ValueError, match=match):
        conv(X4, W4, **{name: value})
    with pytest.raises(ValueError, match=match):
        conv_backward(np.zeros((2, 4, 3, 3)), X4, W4, **{name: value})
    with pytest.raises(ValueError, match=match):
        conv_output_shape((5, 5), (3, 3), **{name: value})


def test_largest_geometry_runs():
    # The bound itself is accepted: one output cell per axis.
    rng = np.random.default_rng(3)
    x, w, b = random_problem(rng, 2, 3, 4, (5, 5), (3, 3), np.float64)
    np.testing.assert_array_equal(conv(x, w, b, stride=2**31 - 1),
                                  conv(x, w, b, stride=5))


@pytest.mark.parametrize("dilation", [2**31 - 4, 2**20])
def test_padded_copies_beyond_any_memory_are_refused(dilation):
    # 'same' padding with a huge dilation keeps a small output, but the stride-1
    # kernels pad each sample by the kernel's reach: their scratch size used to
    # overflow C integers (a wrapped size, then a MemoryError at best).
    rng = np.random.default_rng(4)
    x, w, b = random_problem(rng, 2, 3, 4, (5, 5), (3, 3), np.float64)
    match = r"^padding='same' and dilation .* make the zero-padded copies of one sample"
    with pytest.raises(ValueError, match=match):
        conv(x, w, b, dilation=dilation, padding="same")
    with pytest.raises(ValueError, match=match):
        conv_backward(np.zeros((2, 4, 5, 5)), x, w, dilation=dilation, padding="same")
    with pytest.raises(ValueError, match=match):
        blocks._conv_pool(x, w, b, dilation=dilation, padding="same")
    # Stride 2 takes im2col there (its polyphase copy would span the padding), which
    # pads nothing: it runs, every tap but the centre on padding. The 1x1 kernel
    # takes the polyphase copy, which sums in another order than BLAS.
    np.testing.assert_allclose(
        conv(x, w, b, dilation=dilation, padding="same", stride=2),
        conv(x, w[:, :, 1:2, 1:2], b, stride=2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("padding", ["SAME", "Same", "VALID", "Valid", " same"])
def test_padding_strings_are_lowercase(padding):
    # Was case-insensitive here but not in the estimator (scikit-learn's StrOptions):
    # one rule now, the estimator's.
    match = (rf"^padding must be an int, a tuple of ints, 'valid' or 'same', got "
             rf"{re.escape(repr(padding))} \(the strings are lowercase\)$")
    with pytest.raises(ValueError, match=match):
        conv(X4, W4, padding=padding)
    with pytest.raises(ValueError, match=match):
        conv_output_shape((5, 5), (3, 3), padding=padding)
    with pytest.raises(ValueError, match=match):
        _ops.pool(X4, 2, padding=padding)


def test_kernel_variants_are_those_of_the_build():
    # A default GCC build for x86-64 Linux carries three clones of each kernel, picked
    # at load time; a SKCONV_ISA build (setup.py) exactly the one it was forced to,
    # which is what lets CI test the baseline and AVX2 code on an AVX-512 machine.
    from skconv._kernels import build_config

    isa = getattr(build_config, "ISA", None)
    compiled = pathlib.Path(_conv.__file__).read_bytes()
    has_clones = b".arch_x86_64_v4" in compiled and b".arch_x86_64_v3" in compiled
    if isa is not None:
        assert isa in ("baseline", "avx2", "avx512")
        assert not has_clones
    elif (platform.machine() == "x86_64" and sys.platform == "linux"
          and "gcc" in (sysconfig.get_config_var("CC") or "")):
        assert has_clones


def test_numpy_integers_are_accepted():
    rng = np.random.default_rng(17)
    x, w, b = random_problem(rng, 2, 3, 4, (7, 6), (3, 3), np.float64)
    kw_np = dict(stride=np.int64(2), padding=(np.int32(1), np.int64(0)), dilation=np.uint8(1))
    kw_py = dict(stride=2, padding=(1, 0), dilation=1)
    np.testing.assert_array_equal(conv(x, w, b, **kw_np), conv(x, w, b, **kw_py))


# ---------------------------------------------------------------------------------
# 7. PyTorch cross-checks
# ---------------------------------------------------------------------------------
def _torch_configs(seed, count):
    rng = np.random.default_rng(seed)
    configs = []
    while len(configs) < count:
        n_axes = int(rng.integers(1, 4))
        kernel = tuple(int(k) for k in rng.integers(1, 5 if n_axes < 3 else 4, n_axes))
        dilation = tuple(int(d) for d in rng.integers(1, 3, n_axes))
        stride = tuple(int(s) for s in rng.integers(1, 4, n_axes))
        in_shape = tuple(int(s) for s in rng.integers(1, 10 if n_axes < 3 else 7, n_axes))
        if rng.random() < 0.5:
            padding = int(rng.integers(0, 3))
        else:
            padding = tuple(int(p) for p in rng.integers(0, 3, n_axes))
        cfg = dict(n_axes=n_axes, in_shape=in_shape, kernel=kernel, stride=stride,
                   padding=padding, dilation=dilation)
        if _fits(cfg):
            configs.append(cfg)
    return configs


def _torch_conv(F, n_axes):
    return {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}[n_axes]


def _compare_with_torch(torch, x, w, b, dtype, skconv_kw, torch_kw, pre_pad=None):
    """Forward and autograd backward of torch vs skconv for one problem."""
    F = torch.nn.functional
    n_axes = x.ndim - 2
    fn = _torch_conv(F, n_axes)
    y = conv(x, w, b, **skconv_kw)
    grad_y = np.random.default_rng(0).standard_normal(y.shape).astype(dtype)
    grads = conv_backward(grad_y, x, w, **skconv_kw)

    def run(xa, wa, ba, ga, requires_grad):
        xt = torch.tensor(xa, requires_grad=requires_grad)
        wt = torch.tensor(wa, requires_grad=requires_grad)
        bt = torch.tensor(ba, requires_grad=requires_grad)
        xin = xt if pre_pad is None else F.pad(xt, pre_pad)
        yt = fn(xin, wt, bt, **torch_kw)
        if requires_grad:
            (yt * torch.tensor(ga)).sum().backward()
            return yt.detach().numpy(), xt.grad.numpy(), wt.grad.numpy(), bt.grad.numpy()
        return yt.numpy()

    yt, gxt, gwt, gbt = run(x, w, b, grad_y, True)
    # rounding scale: torch in float64 on absolute values
    f64 = np.float64
    y_s, gx_s, gw_s, gb_s = run(np.abs(x).astype(f64), np.abs(w).astype(f64),
                                np.abs(b).astype(f64), np.abs(grad_y).astype(f64), True)
    # Both sides carry a rounding error bounded by tol * scale: their difference by twice.
    tol_factor = 2.0
    assert_close_scaled(y, yt.astype(f64), tol_factor * y_s, dtype, "y vs torch")
    for name, got, exp, sc in zip(("grad_x", "grad_w", "grad_b"), grads,
                                  (gxt, gwt, gbt), (gx_s, gw_s, gb_s)):
        assert_close_scaled(got, exp.astype(f64), tol_factor * sc, dtype, f"{name} vs torch")


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_random_configs(dtype):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(20)
    for cfg in _torch_configs(21, 30):
        x, w, b = random_problem(rng, int(rng.integers(1, 4)), int(rng.integers(1, 4)),
                                 int(rng.integers(1, 4)), cfg["in_shape"], cfg["kernel"], dtype)
        kw = dict(stride=cfg["stride"], padding=cfg["padding"], dilation=cfg["dilation"])
        n_axes = cfg["n_axes"]
        torch_kw = dict(stride=cfg["stride"], dilation=cfg["dilation"],
                        padding=ref.expand(cfg["padding"], n_axes))
        _compare_with_torch(torch, x, w, b, dtype, kw, torch_kw)


@pytest.mark.torch
@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "in_shape,kernel,dilation",
    [((9,), (4,), 1), ((8,), (3,), 2), ((7, 6), (2, 3), 1), ((6, 7), (4, 2), (1, 2)),
     ((5, 4, 6), (2, 3, 2), (2, 1, 1))],
)
def test_torch_same_padding_stride_1(dtype, in_shape, kernel, dilation):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(22)
    x, w, b = random_problem(rng, 2, 2, 3, in_shape, kernel, dtype)
    n_axes = len(in_shape)
    _compare_with_torch(
        torch, x, w, b, dtype,
        dict(padding="same", dilation=dilation),
        dict(padding="same", dilation=ref.expand(dilation, n_axes)),
    )


@pytest.mark.torch
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "in_shape,kernel,stride,dilation",
    [((9,), (4,), 2, 1), ((10,), (3,), 4, 2), ((7, 6), (2, 3), (2, 3), 1),
     ((6, 7), (4, 2), (3, 2), (1, 2)), ((5, 5, 6), (2, 3, 3), (2, 3, 4), (2, 1, 1))],
)
def test_torch_same_padding_with_stride_via_asymmetric_pad(
    dtype, in_shape, kernel, stride, dilation
):
    # PyTorch has no 'same' for stride > 1: pad explicitly (extra cell at the end,
    # TensorFlow's rule) with F.pad and run a valid convolution.
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(23)
    x, w, b = random_problem(rng, 2, 2, 3, in_shape, kernel, dtype)
    n_axes = len(in_shape)
    s, d = ref.expand(stride, n_axes), ref.expand(dilation, n_axes)
    pads = ref.same_padding(in_shape, kernel, s, d)
    assert any(lo != hi for lo, hi in pads)  # the cases exercise asymmetry
    torch_pad = [p for lo_hi in reversed(pads) for p in lo_hi]  # last axis first
    _compare_with_torch(
        torch, x, w, b, dtype,
        dict(padding="same", stride=stride, dilation=dilation),
        dict(stride=s, dilation=d),
        pre_pad=torch_pad,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("stride", [1, 2])
def test_out_arrays_receive_the_same_results(dtype, stride):
    # Networks pass workspaces through out=: the results must be the same bits as
    # freshly allocated ones, written into (and returned as) the given arrays, even
    # when those hold garbage.
    rng = np.random.default_rng(40)
    x, w, b = random_problem(rng, 5, 3, 4, (9, 8), (3, 2), dtype)
    y = conv(x, w, b, stride=stride, padding="same")
    out = np.full_like(y, np.nan)
    assert conv(x, w, b, stride=stride, padding="same", out=out) is out
    np.testing.assert_array_equal(out, y)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    expected = conv_backward(grad_y, x, w, stride=stride, padding="same")
    buffers = tuple(np.full_like(a, np.nan) for a in expected)
    got = conv_backward(grad_y, x, w, stride=stride, padding="same", out=buffers)
    for g, buffer, e in zip(got, buffers, expected):
        assert g is buffer
        np.testing.assert_array_equal(g, e)
    got = conv_backward(grad_y, x, w, stride=stride, padding="same",
                        compute_grad_x=False, out=(None,) + buffers[1:])
    assert got[0] is None
    np.testing.assert_array_equal(got[1], expected[1])


def test_out_arrays_that_overlap_each_other_are_rejected():
    # Each was checked against the inputs only: these ran and returned wrong values
    # (one gradient written over another).
    rng = np.random.default_rng(21)
    x, w, _ = random_problem(rng, 2, 1, 3, (5, 5), (3, 3), np.float64)
    grad_y = rng.standard_normal((2, 3, 3, 3))
    gx, gw = np.empty_like(x), np.empty_like(w)
    with pytest.raises(ValueError, match=r"^out\[2\] \(grad_b\) must not share memory "
                                         r"with out\[1\] \(grad_w\)$"):
        conv_backward(grad_y, x, w, out=(gx, gw, gw.reshape(-1)[3:6]))
    with pytest.raises(ValueError, match=r"^out\[1\] \(grad_w\) must not share memory "
                                         r"with out\[0\] \(grad_x\)$"):
        conv_backward(grad_y, x, w, out=(gx, gx.reshape(-1)[:w.size].reshape(w.shape),
                                         np.empty(3)))
    with pytest.raises(ValueError, match=r"^out\[2\] \(grad_b\) must not share memory "
                                         r"with out\[0\] \(grad_x\)$"):
        conv_backward(grad_y, x, w, out=(gx, gw, gx.reshape(-1)[-3:]))
    # Disjoint parts of one buffer are fine (and give the fresh arrays' values).
    buffer = np.empty(x.size + w.size + 3)
    parts = (buffer[:x.size].reshape(x.shape),
             buffer[x.size:x.size + w.size].reshape(w.shape), buffer[-3:])
    got = conv_backward(grad_y, x, w, out=parts)
    for g, e in zip(got, conv_backward(grad_y, x, w)):
        np.testing.assert_array_equal(g, e)
    # Without grad_x, its slot is not an output: it may overlap the others.
    got = conv_backward(grad_y, x, w, compute_grad_x=False,
                        out=(gw, gw, np.empty(3)))
    np.testing.assert_array_equal(got[1], conv_backward(grad_y, x, w)[1])


def test_bad_out_arrays_are_rejected():
    x = np.zeros((2, 1, 5, 5), np.float32)
    w = np.zeros((3, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 3, 3\) and dtype float32"):
        conv(x, w, out=np.empty((2, 3, 3, 3), np.float64))
    with pytest.raises(ValueError, match=r"out must have shape \(2, 3, 3, 3\)"):
        conv(x, w, out=np.empty((2, 3, 3, 4), np.float32))
    with pytest.raises(ValueError, match="writeable C-contiguous"):
        conv(x, w, out=np.empty((2, 3, 3, 6), np.float32)[..., ::2])
    with pytest.raises(TypeError, match="out must be a numpy array"):
        conv(x, w, out=[[0.0]])
    same = np.zeros((1, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="must not share memory with the inputs"):
        conv(same, np.ones((1, 1, 1, 1), np.float32), out=same)
    grad_y = np.zeros((2, 3, 3, 3), np.float32)
    with pytest.raises(TypeError, match=r"out must be a tuple \(grad_x, grad_w, grad_b\)"):
        conv_backward(grad_y, x, w, out=np.zeros_like(x))
    with pytest.raises(ValueError, match=r"out\[1\] \(grad_w\) must have shape \(3, 1, 3, 3\)"):
        conv_backward(grad_y, x, w, out=(np.zeros_like(x), np.zeros((3, 3)), np.zeros(3)))
