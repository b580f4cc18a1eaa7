"""Tests for the pooling kernels (``skconv/_pool.pyx``) through ``skconv.ops``."""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import skconv
from skconv import ops
from skconv._ops import pool as pool_ops
from skconv._ops import threads

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from . import _reference_pool as ref
    from ._finite_differences import central_differences
except ImportError:
    import _reference_pool as ref
    from _finite_differences import central_differences

# The kernels' helpers are ``noexcept``: in the debug build (bounds checks on) an
# out-of-bounds access is reported as an unraisable exception, not raised. Make it fail.
pytestmark = pytest.mark.filterwarnings("error::pytest.PytestUnraisableExceptionWarning")

MODES = ["max", "avg", "min"]
DTYPES = [np.float32, np.float64]
# Tolerances of the comparisons with the float64 twin. Max and min select a value and
# the forward average sums in double like the twin, so forward results are compared
# for equality or near it; float32 backward accumulates float32 shares.
TOL = {np.float32: dict(rtol=1e-5, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-12)}


def _loss_grad_check(f, grad, x, r, h=1e-6):
    """Compare ``grad`` with central differences of ``sum(f(x) * r)`` at every cell."""
    numeric = central_differences(lambda: np.sum(f(x) * r), x, h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-8)


# --------------------------------------------------------------------------------
# The seeds' example and hand-computed values
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_seed_example_window_2_stride_2_halves_width_and_height(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 6, 8)).astype(dtype)
    blocks = x.reshape(2, 3, 3, 2, 4, 2)
    for mode, reduce in [("max", np.max), ("avg", np.mean), ("min", np.min)]:
        y = ops.pool(x, 2, mode=mode)
        # Depth (channels) kept, width and height halved.
        assert y.shape == (2, 3, 3, 4)
        assert y.dtype == dtype
        np.testing.assert_allclose(y, reduce(blocks, axis=(3, 5)), **TOL[dtype])


# A small hand-made image; the expected arrays below were worked out by hand.
HAND = np.array([[1.0, 5.0, 2.0, 0.0],
                 [3.0, 4.0, 8.0, 6.0],
                 [7.0, 0.0, 1.0, 9.0]])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode, expected", [
    ("max", [[5.0, 8.0]]),
    ("avg", [[3.25, 4.0]]),
    ("min", [[1.0, 0.0]]),
])
def test_hand_values_no_padding(dtype, mode, expected):
    # 3x4 input, window 2, stride 2: the last row is dropped (floor in the size formula).
    y = ops.pool(HAND[None, None].astype(dtype), 2, mode=mode)
    np.testing.assert_array_equal(y, np.array(expected, dtype=dtype)[None, None])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode, expected", [
    # Windows cover rows {0}, {1, 2} and columns {0}, {1, 2}, {3} of the real input.
    ("max", [[1.0, 5.0, 0.0], [7.0, 8.0, 9.0]]),
    # Divided by the number of real cells: 1/1, 7/2, 0/1, 10/2, 13/4, 15/2.
    ("avg", [[1.0, 3.5, 0.0], [5.0, 3.25, 7.5]]),
    # Padded zeros never win: the corner windows give 1 and 2, not 0.
    ("min", [[1.0, 2.0, 0.0], [3.0, 0.0, 6.0]]),
])
def test_hand_values_with_padding(dtype, mode, expected):
    y = ops.pool(HAND[None, None].astype(dtype), 2, padding=1, mode=mode)
    np.testing.assert_array_equal(y, np.array(expected, dtype=dtype)[None, None])


def test_padding_never_wins_a_max_of_negative_values():
    # With zero padding taking part, every corner window would give 0.
    y = ops.pool(-HAND[None, None], 2, padding=1, mode="max")
    np.testing.assert_array_equal(y[0, 0], [[-1.0, -2.0, -0.0], [-3.0, -0.0, -6.0]])
    assert np.all(y[0, 0, 0, :2] < 0)


def test_hand_values_3d_and_per_axis_window():
    x = np.arange(8.0).reshape(1, 1, 2, 2, 2)
    np.testing.assert_array_equal(ops.pool(x, 2, mode="max"), [[[[[7.0]]]]])
    np.testing.assert_array_equal(ops.pool(x, 2, mode="avg"), [[[[[3.5]]]]])
    np.testing.assert_array_equal(ops.pool(x, 2, mode="min"), [[[[[0.0]]]]])
    # Window (1, 2, 1): pairs along the middle axis, (x[i, 0, k], x[i, 1, k]).
    y = ops.pool(x, (1, 2, 1), mode="avg")
    np.testing.assert_array_equal(y[0, 0, :, 0, :], [[1.0, 2.0], [5.0, 6.0]])


def test_hand_values_same_padding_stride_2():
    # 'same', window 3, stride 2 on 5 cells: out = ceil(5/2) = 3, total pad
    # (3-1)*2 + 3 - 5 = 2 -> (1, 1); windows {0,1}, {1,2,3}, {3,4}.
    x = np.array([[[4.0, -2.0, 6.0, 1.0, 3.0]]])
    np.testing.assert_array_equal(ops.pool(x, 3, stride=2, padding="same"), [[[4.0, 6.0, 3.0]]])
    np.testing.assert_array_equal(
        ops.pool(x, 3, stride=2, padding="same", mode="min"), [[[-2.0, -2.0, 1.0]]]
    )
    np.testing.assert_array_equal(
        ops.pool(x, 3, stride=2, padding="same", mode="avg"), [[[1.0, 5.0 / 3.0, 2.0]]]
    )


@pytest.mark.parametrize("mode, expected", [
    # Windows {0,1,2}, {1,2,3}, {2,3,4} of [1, 3, 2, 3, 0]; grad_y = [1, 10, 100].
    ("max", [0.0, 11.0, 0.0, 100.0, 0.0]),  # the middle window's first 3 is cell 1
    ("min", [1.0, 0.0, 10.0, 0.0, 100.0]),
    ("avg", [1 / 3, 11 / 3, 111 / 3, 110 / 3, 100 / 3]),
])
def test_hand_backward_overlapping_windows_accumulate(mode, expected):
    x = np.array([[[1.0, 3.0, 2.0, 3.0, 0.0]]])
    grad_x = ops.pool_backward([[[1.0, 10.0, 100.0]]], x, 3, stride=1, mode=mode)
    np.testing.assert_allclose(grad_x[0, 0], expected, rtol=1e-15)


@pytest.mark.parametrize("mode, expected", [
    # Windows {0} and {1, 2} of [4, -1, 2] (padding 1); grad_y = [1, 2].
    ("max", [1.0, 0.0, 2.0]),
    ("min", [1.0, 2.0, 0.0]),
    ("avg", [1.0, 1.0, 1.0]),  # a whole 1 to the single real cell, 2/2 to each
])
def test_hand_backward_with_padding(mode, expected):
    x = np.array([[[4.0, -1.0, 2.0]]])
    np.testing.assert_array_equal(ops.pool_backward([[[1.0, 2.0]]], x, 2, padding=1, mode=mode)[0, 0], expected)


# --------------------------------------------------------------------------------
# Ties: the first cell in row-major order gets the gradient
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["max", "min"])
def test_ties_send_gradient_to_first_cell(mode):
    x = np.ones((1, 1, 4, 4))
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = np.zeros((4, 4))
    expected[0, 0], expected[0, 2], expected[2, 0], expected[2, 2] = 1, 2, 3, 4
    np.testing.assert_array_equal(ops.pool_backward(g, x, 2, mode=mode)[0, 0], expected)
    _, idx = ops.pool_with_indices(x, 2, mode=mode)
    np.testing.assert_array_equal(idx[0, 0], [[0, 2], [8, 10]])


@pytest.mark.parametrize("mode", ["max", "min"])
def test_ties_overlapping_and_padded(mode):
    x = np.full((1, 1, 3, 3), 7.0)
    g = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    # Window 2, stride 1: windows start at (0,0), (0,1), (1,0), (1,1).
    np.testing.assert_array_equal(
        ops.pool_backward(g, x, 2, stride=1, mode=mode)[0, 0],
        [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]],
    )
    # Padding 1, window 2, stride 2: windows hold rows {0}, {1, 2} x columns {0}, {1, 2};
    # the first REAL cell wins, never a padded one.
    np.testing.assert_array_equal(
        ops.pool_backward(g, x, 2, padding=1, mode=mode)[0, 0],
        [[1.0, 2.0, 0.0], [3.0, 4.0, 0.0], [0.0, 0.0, 0.0]],
    )


def test_global_ties_first_cell():
    x = np.full((2, 3, 2, 3, 2), -1.5)
    for mode in ["max", "min"]:
        grad_x = ops.global_pool_backward(np.ones((2, 3)), x, mode)
        expected = np.zeros_like(x)
        expected[:, :, 0, 0, 0] = 1.0
        np.testing.assert_array_equal(grad_x, expected)


def test_nan_propagates_and_takes_the_gradient():
    x = np.array([[[1.0, np.nan, 5.0, 2.0, np.nan, np.nan]]])
    for mode in ["max", "min"]:
        y = ops.pool(x, 3, mode=mode)
        assert np.isnan(y).all()
        # The first NaN of each window (cells 1 and 4), as in the twin.
        grad_x = ops.pool_backward([[[1.0, 2.0]]], x, 3, mode=mode)
        np.testing.assert_array_equal(grad_x[0, 0], [0.0, 1.0, 0.0, 0.0, 2.0, 0.0])
        np.testing.assert_array_equal(grad_x, ref.pool_backward(np.array([[[1.0, 2.0]]]), x, 3, mode=mode))
    assert np.isnan(ops.global_pool(x, "max")).all()


# --------------------------------------------------------------------------------
# Random configurations against the twin
# --------------------------------------------------------------------------------


@st.composite
def pool_configs(draw, allow_invalid=False):
    n_axes = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 3)) for _ in range(n_axes))
    stride = draw(st.one_of(
        st.none(),
        st.integers(1, 3),
        st.tuples(*[st.integers(1, 3) for _ in range(n_axes)]),
    ))
    max_pad = 5 if allow_invalid else min(window) - 1
    padding = draw(st.one_of(
        st.just("valid"),
        st.just("same"),
        st.integers(0, max_pad),
        st.tuples(*[st.integers(0, (5 if allow_invalid else k - 1)) for k in window]),
    ))
    low = 1 if allow_invalid else None
    spatial = tuple(draw(st.integers(low or max(1, k - 1), 6)) for k in window)
    pool_size = window[0] if len(set(window)) == 1 and draw(st.booleans()) else window
    n = draw(st.integers(1, 2))
    c = draw(st.integers(1, 3))
    return dict(
        shape=(n, c) + spatial, pool_size=pool_size, stride=stride, padding=padding,
        mode=draw(st.sampled_from(MODES)), dtype=draw(st.sampled_from(DTYPES)),
        ties=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)),
    )


def _random_input(cfg):
    rng = np.random.default_rng(cfg["seed"])
    if cfg["ties"]:
        # Few distinct values: ties in most windows exercise the first-extreme rule.
        x = rng.integers(-2, 3, size=cfg["shape"]).astype(cfg["dtype"])
    else:
        x = rng.standard_normal(cfg["shape"]).astype(cfg["dtype"])
    return x, rng


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(cfg=pool_configs())
def test_pool_matches_twin(cfg):
    geometry = ref.geometry(cfg["shape"][2:], cfg["pool_size"], cfg["stride"], cfg["padding"])
    assume(geometry is not None)
    x, rng = _random_input(cfg)
    kwargs = dict(stride=cfg["stride"], padding=cfg["padding"], mode=cfg["mode"])

    y = ops.pool(x, cfg["pool_size"], **kwargs)
    y_ref = ref.pool(x, cfg["pool_size"], **kwargs)
    assert y.dtype == x.dtype
    assert y.shape == y_ref.shape
    assert y.shape[2:] == ops.pool_output_shape(x.shape[2:], cfg["pool_size"],
                                                stride=cfg["stride"], padding=cfg["padding"])
    if cfg["mode"] == "avg":
        np.testing.assert_allclose(y, y_ref, **TOL[cfg["dtype"]])
    else:
        np.testing.assert_array_equal(y, y_ref)

    grad_y = rng.standard_normal(y.shape).astype(cfg["dtype"])
    grad_x = ops.pool_backward(grad_y, x, cfg["pool_size"], **kwargs)
    assert grad_x.dtype == x.dtype and grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, ref.pool_backward(grad_y, x, cfg["pool_size"], **kwargs),
                               **TOL[cfg["dtype"]])

    if cfg["mode"] != "avg":
        y_idx, idx = ops.pool_with_indices(x, cfg["pool_size"], **kwargs)
        np.testing.assert_array_equal(y_idx, y)
        assert idx.dtype == np.int64
        # The index points at the value that was returned.
        planes = x.reshape(x.shape[0], x.shape[1], -1)
        np.testing.assert_array_equal(
            np.take_along_axis(planes, idx.reshape(idx.shape[0], idx.shape[1], -1), axis=2),
            y.reshape(y.shape[0], y.shape[1], -1),
        )
        # The cached-index backward is the same computation, bit for bit.
        np.testing.assert_array_equal(ops.pool_backward_indices(grad_y, idx, x.shape), grad_x)


@settings(max_examples=150, deadline=None)
@given(cfg=pool_configs(allow_invalid=True))
def test_invalid_geometry_raises_exactly_when_twin_says_so(cfg):
    # A window larger than the padded input, or one holding no real cell, is an error.
    x = np.zeros(cfg["shape"])
    geometry = ref.geometry(x.shape[2:], cfg["pool_size"], cfg["stride"], cfg["padding"])
    kwargs = dict(stride=cfg["stride"], padding=cfg["padding"], mode=cfg["mode"])
    if geometry is None:
        with pytest.raises(ValueError, match="pool_size|padding"):
            ops.pool(x, cfg["pool_size"], **kwargs)
        with pytest.raises(ValueError, match="pool_size|padding"):
            ops.pool_output_shape(x.shape[2:], cfg["pool_size"], stride=cfg["stride"],
                                  padding=cfg["padding"])
    else:
        assert ops.pool(x, cfg["pool_size"], **kwargs).shape[2:] == geometry[3]


# --------------------------------------------------------------------------------
# Average pooling of any window: the separable kernel
# --------------------------------------------------------------------------------


@st.composite
def avg_configs(draw):
    # Windows 1..5 and strides 1..4 per axis, so that windows overlap by several
    # cells, tile the input or leave gaps; low and high padding up to window // 2;
    # odd and even sizes, from a window that needs all its padding up.
    n_axes = draw(st.integers(1, 3))
    window = tuple(draw(st.integers(1, 5)) for _ in range(n_axes))
    stride = tuple(draw(st.integers(1, 4)) for _ in range(n_axes))
    padding = tuple(draw(st.integers(0, k // 2)) for k in window)
    # Volumes stay small: the twin visits every cell of every window in Python.
    extra = 6 if n_axes < 3 else 3
    spatial = tuple(draw(st.integers(max(1, k - 2 * p), k + extra))
                    for k, p in zip(window, padding))
    return dict(
        shape=(draw(st.integers(1, 2)), draw(st.integers(1, 2))) + spatial,
        pool_size=window, stride=stride, padding=padding,
        dtype=draw(st.sampled_from(DTYPES)), seed=draw(st.integers(0, 2**32 - 1)),
    )


def _check_avg_against_twin(shape, pool_size, stride, padding, dtype, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, mode="avg")
    y = ops.pool(x, pool_size, **kwargs)
    y_ref = ref.pool(x, pool_size, **kwargs)
    assert y.dtype == dtype and y.shape == y_ref.shape
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = ops.pool_backward(grad_y, x, pool_size, **kwargs)
    assert grad_x.dtype == dtype and grad_x.shape == x.shape
    np.testing.assert_allclose(grad_x, ref.pool_backward(grad_y, x, pool_size, **kwargs),
                               **TOL[dtype])


@settings(max_examples=300, deadline=None)
@given(cfg=avg_configs())
def test_avg_any_window_matches_twin(cfg):
    _check_avg_against_twin(**cfg)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, pool_size, stride, padding", [
    # Each axis-0 window of a volume sums 5 slices that up to 5 windows share (the
    # ring of slices at its fullest), with high padding on the last axis.
    ((2, 2, 9, 5, 6), (5, 2, 3), (1, 1, 2), (2, 0, 1)),
    # Three windows per slice and row; stride above the window on the last axis.
    ((1, 3, 7, 8, 9), (3, 3, 2), (1, 1, 3), (1, 1, 0)),
    # Gaps between the windows of every axis: cells no window holds get 0.
    ((2, 1, 9, 10, 11), (2, 2, 2), (4, 3, 4), 0),
    # Window 1 on axes 0 and 1 of a volume; windows of axis 1 only; of axis 0 only.
    ((1, 2, 5, 6, 13), (1, 1, 4), (2, 1, 3), (0, 0, 2)),
    ((1, 2, 6, 11), (1, 4), (1, 1), (0, 2)),
    ((1, 2, 11, 6), (4, 1), (2, 1), (1, 0)),
    # Windows above 5 on the last axis (the loop without a literal window), 1-D too.
    ((2, 2, 30), 7, 3, 3),
    ((1, 2, 5, 17), (2, 9), (1, 2), (1, 4)),
    ((1, 1, 4, 4, 12), (2, 2, 8), (2, 2, 1), (1, 0, 0)),
    # The whole plane as one window, and 'same' padding with overlap.
    ((2, 3, 5, 7), (5, 7), None, 0),
    ((2, 2, 9, 8), 3, 1, "same"),
    ((1, 2, 7, 6, 5), 3, 2, "same"),
])
def test_avg_separable_paths_match_twin(shape, pool_size, stride, padding, dtype):
    _check_avg_against_twin(shape, pool_size, stride, padding, dtype, seed=11)


@pytest.mark.parametrize("dtype", DTYPES)
def test_avg_nan_and_inf_spread_to_their_windows(dtype):
    # Sums propagate NaN and infinities: exactly the windows that hold such a cell
    # are NaN or infinite (+inf and -inf in one window make NaN), as in the twin.
    rng = np.random.default_rng(12)
    x = rng.standard_normal((2, 2, 6, 7, 8)).astype(dtype)
    x[0, 0, 2, 3, 4] = np.nan
    x[0, 1, 1, 1, 1] = np.inf
    x[0, 1, 1, 2, 2] = -np.inf
    x[1, 0, 5, 6, 7] = np.inf
    kwargs = dict(stride=(1, 2, 2), padding=1, mode="avg")
    with np.errstate(invalid="ignore"):
        y = ops.pool(x, 3, **kwargs)
        y_ref = ref.pool(x, 3, **kwargs)
    assert np.isnan(y).any() and np.isinf(y).any()
    np.testing.assert_array_equal(np.isnan(y), np.isnan(y_ref))
    np.testing.assert_array_equal(np.isinf(y), np.isinf(y_ref))
    np.testing.assert_allclose(y, y_ref, **TOL[dtype])  # NaN == NaN here
    # A NaN gradient reaches every cell of its window and no other.
    grad_y = np.ones(y.shape, dtype=dtype)
    grad_y[1, 1, 2, 1, 3] = np.nan
    grad_x = ops.pool_backward(grad_y, x, 3, **kwargs)
    expected = ref.pool_backward(grad_y, x, 3, **kwargs)
    np.testing.assert_array_equal(np.isnan(grad_x), np.isnan(expected))
    assert np.isnan(grad_x[1, 1]).sum() == 3 * 3 * 3
    np.testing.assert_allclose(grad_x, expected, **TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, pool_size, stride, padding", [
    ((5, 3, 8, 9, 10), (4, 3, 3), (1, 2, 2), (1, 1, 1)),
    ((7, 4, 23, 19), (3, 5), (2, 1), (1, 2)),
    ((6, 5, 61), 5, 2, 2),
])
def test_avg_separable_bits_do_not_depend_on_threads_or_batch(
        shape, pool_size, stride, padding, dtype, monkeypatch):
    # Every plane is computed alone, in one order: the same bits for any thread count
    # (three threads on two cores, forced on small inputs) and any batch split.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    monkeypatch.setattr(threads, "MIN_CELLS_PER_THREAD", 1)
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, mode="avg")
    y = ops.pool(x, pool_size, n_jobs=1, **kwargs)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = ops.pool_backward(grad_y, x, pool_size, n_jobs=1, **kwargs)
    for n_jobs in [2, 3]:
        np.testing.assert_array_equal(ops.pool(x, pool_size, n_jobs=n_jobs, **kwargs), y)
        np.testing.assert_array_equal(
            ops.pool_backward(grad_y, x, pool_size, n_jobs=n_jobs, **kwargs), grad_x)
    for part in [slice(0, 1), slice(2, 5), slice(3, None)]:
        np.testing.assert_array_equal(
            ops.pool(x[part], pool_size, n_jobs=2, **kwargs), y[part])
        np.testing.assert_array_equal(
            ops.pool_backward(grad_y[part], x[part], pool_size, n_jobs=2, **kwargs),
            grad_x[part])


def test_avg_float32_backward_sums_rows_in_double():
    # Window 5, stride 1 on a volume: 125 windows hold each inner cell, the rows and
    # slices of their shares are added in double and rounded once, so the float32
    # gradient is within a few roundings of the float64 one.
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 2, 9, 9, 9))
    grad_y = rng.standard_normal(ops.pool_output_shape(x.shape[2:], 5, stride=1))
    grad_y = grad_y[None, None].repeat(2, axis=1)
    exact = ops.pool_backward(grad_y, x, 5, stride=1, mode="avg")
    got = ops.pool_backward(grad_y.astype(np.float32), x.astype(np.float32), 5, stride=1,
                            mode="avg")
    np.testing.assert_allclose(got, exact, rtol=2e-6, atol=1e-7)


# --------------------------------------------------------------------------------
# Finite differences (float64)
# --------------------------------------------------------------------------------

FD_CASES = [
    dict(shape=(2, 2, 7), pool_size=3, stride=2, padding=1),
    dict(shape=(1, 2, 5, 6), pool_size=2, stride=None, padding=0),
    dict(shape=(2, 1, 5, 4), pool_size=(3, 2), stride=1, padding=(1, 0)),
    dict(shape=(1, 2, 5, 5), pool_size=3, stride=2, padding="same"),
    dict(shape=(1, 1, 3, 4, 5), pool_size=(2, 3, 2), stride=(1, 2, 2), padding=(1, 1, 0)),
]
# For the average's separable kernel: several windows per slice and per row (its ring
# of slices, its sums of three or more rows), gaps between windows. The average is
# linear, so the differences are exact up to rounding even where many windows
# overlap (a max's loss there mixes many terms of r and loses digits).
AVG_FD_CASES = [
    dict(shape=(1, 1, 6, 4, 5), pool_size=(4, 3, 2), stride=(1, 2, 1), padding=(1, 1, 0)),
    dict(shape=(1, 2, 7, 6), pool_size=(5, 3), stride=1, padding=(2, 1)),
    dict(shape=(2, 1, 5, 9), pool_size=(2, 2), stride=(3, 4), padding=0),
    dict(shape=(2, 2, 13), pool_size=4, stride=1, padding=2),
]


@pytest.mark.parametrize("case", FD_CASES, ids=lambda c: str(c["shape"]))
@pytest.mark.parametrize("mode", MODES)
def test_pool_backward_finite_differences(case, mode):
    rng = np.random.default_rng(1)
    shape = case["shape"]
    kwargs = dict(stride=case["stride"], padding=case["padding"], mode=mode)
    if mode == "avg":
        x = rng.standard_normal(shape)
    else:
        # Distinct values one apart: a step of 1e-6 never changes which cell wins.
        x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
    r = rng.standard_normal(ops.pool(x, case["pool_size"], **kwargs).shape)
    grad = ops.pool_backward(r, x, case["pool_size"], **kwargs)
    assert np.any(grad != 0)
    _loss_grad_check(lambda v: ops.pool(v, case["pool_size"], **kwargs), grad, x, r)


@pytest.mark.parametrize("case", AVG_FD_CASES, ids=lambda c: str(c["shape"]))
def test_avg_pool_backward_finite_differences(case):
    rng = np.random.default_rng(8)
    kwargs = dict(stride=case["stride"], padding=case["padding"], mode="avg")
    x = rng.standard_normal(case["shape"])
    r = rng.standard_normal(ops.pool(x, case["pool_size"], **kwargs).shape)
    grad = ops.pool_backward(r, x, case["pool_size"], **kwargs)
    assert np.any(grad != 0)
    _loss_grad_check(lambda v: ops.pool(v, case["pool_size"], **kwargs), grad, x, r)


@pytest.mark.parametrize("shape", [(2, 3, 5), (2, 2, 3, 4), (1, 2, 2, 3, 3)])
@pytest.mark.parametrize("mode", MODES)
def test_global_pool_backward_finite_differences(shape, mode):
    rng = np.random.default_rng(2)
    if mode == "avg":
        x = rng.standard_normal(shape)
    else:
        x = rng.permutation(np.prod(shape)).reshape(shape).astype(np.float64)
    r = rng.standard_normal(shape[:2])
    grad = ops.global_pool_backward(r, x, mode)
    _loss_grad_check(lambda v: ops.global_pool(v, mode), grad, x, r)


# --------------------------------------------------------------------------------
# Global pooling
# --------------------------------------------------------------------------------


# Planes of 5, 9, 15, 24 and 200 cells: shorter than, equal to plus one, and
# multiples of the kernel's 8 accumulator lanes.
@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 2, 9), (2, 4, 5, 3), (2, 2, 3, 4, 2),
                                   (2, 2, 10, 20)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_global_pool_matches_twin_and_numpy(shape, dtype, mode):
    rng = np.random.default_rng(3)
    x = rng.integers(-3, 4, size=shape).astype(dtype)  # ties included
    axes = tuple(range(2, len(shape)))
    y = ops.global_pool(x, mode)
    assert y.shape == shape[:2] and y.dtype == dtype
    reduce = {"max": np.max, "avg": np.mean, "min": np.min}[mode]
    np.testing.assert_allclose(y, reduce(x.astype(np.float64), axis=axes), **TOL[dtype])
    np.testing.assert_allclose(y, ref.global_pool(x, mode), **TOL[dtype])
    # Same thing as pooling with the whole plane as the window.
    np.testing.assert_array_equal(y, ops.pool(x, shape[2:], mode=mode).reshape(shape[:2]))

    grad_y = rng.standard_normal(shape[:2]).astype(dtype)
    grad_x = ops.global_pool_backward(grad_y, x, mode)
    assert grad_x.shape == shape and grad_x.dtype == dtype
    np.testing.assert_allclose(grad_x, ref.global_pool_backward(grad_y, x, mode), **TOL[dtype])


def test_global_pool_signed_zero_and_nan():
    # The first maximum is the +0.0 in cell 1, not the -0.0 in cell 8 (same lane).
    x = np.array([[[-1.0, 0.0, -2.0, -3.0, -4.0, -5.0, -6.0, -7.0, -0.0]]])
    y = ops.global_pool(x, "max")
    assert y[0, 0] == 0.0 and not np.signbit(y[0, 0])
    np.testing.assert_array_equal(ops.global_pool_backward([[1.0]], x, "max")[0, 0],
                                  np.eye(9)[1])
    x = -x
    assert np.signbit(ops.global_pool(x, "min")[0, 0])  # first minimum is -0.0
    # NaN: the result, and the first NaN takes the gradient.
    x = np.arange(20.0).reshape(1, 1, 20)
    x[0, 0, [11, 3]] = np.nan
    for mode in ["max", "min"]:
        assert np.isnan(ops.global_pool(x, mode)).all()
        np.testing.assert_array_equal(ops.global_pool_backward([[2.0]], x, mode)[0, 0],
                                      2 * np.eye(20)[3])
    assert np.isnan(ops.global_pool(x, "avg")).all()


def test_global_pool_large_plane_float32_accuracy():
    # The average sums in double, so a float32 plane of 32k cells stays accurate.
    rng = np.random.default_rng(4)
    x = (rng.random((2, 3, 32, 32, 32)) + 1000.0).astype(np.float32)
    y = ops.global_pool(x, "avg")
    np.testing.assert_allclose(y, x.astype(np.float64).mean(axis=(2, 3, 4)), rtol=1e-7)


# --------------------------------------------------------------------------------
# Threads, dtypes, memory layouts
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("grain", ["default", "tiny"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_thread_count_does_not_change_results(dtype, mode, grain, monkeypatch):
    # n_jobs is capped at the usable cores: pretend to have more, so that 3 threads
    # run on a two-core machine too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    if grain == "tiny":
        # Small inputs normally run on one thread; force the team on every call.
        monkeypatch.setattr(threads, "MIN_CELLS_PER_THREAD", 1)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((6, 5, 33, 35)).astype(dtype)
    kwargs = dict(stride=2, padding=1, mode=mode)  # window 3, stride 2: overlapping
    y1 = ops.pool(x, 3, n_jobs=1, **kwargs)
    g = rng.standard_normal(y1.shape).astype(dtype)
    gx1 = ops.pool_backward(g, x, 3, n_jobs=1, **kwargs)
    for n_jobs in [2, 3, -1]:
        np.testing.assert_array_equal(ops.pool(x, 3, n_jobs=n_jobs, **kwargs), y1)
        np.testing.assert_array_equal(ops.pool_backward(g, x, 3, n_jobs=n_jobs, **kwargs), gx1)
    np.testing.assert_array_equal(ops.global_pool(x, mode, n_jobs=1), ops.global_pool(x, mode, n_jobs=2))
    gg = rng.standard_normal(x.shape[:2]).astype(dtype)
    np.testing.assert_array_equal(
        ops.global_pool_backward(gg, x, mode, n_jobs=1), ops.global_pool_backward(gg, x, mode, n_jobs=2)
    )
    if mode != "avg":
        _, idx = ops.pool_with_indices(x, 3, n_jobs=2, **kwargs)
        np.testing.assert_array_equal(ops.pool_backward_indices(g, idx, x.shape, n_jobs=2), gx1)


@pytest.mark.parametrize("in_dtype, out_dtype", [
    (np.float32, np.float32),
    (np.float64, np.float64),
    (np.int64, np.float64),
    (np.int8, np.float64),
    (np.uint8, np.float64),
    (np.bool_, np.float64),
    (np.float16, np.float64),
])
def test_dtype_rules(in_dtype, out_dtype):
    x = (np.arange(2 * 3 * 4 * 4) % 7).reshape(2, 3, 4, 4).astype(in_dtype)
    for mode in MODES:
        y = ops.pool(x, 2, mode=mode)
        assert y.dtype == out_dtype
        np.testing.assert_allclose(y, ref.pool(x.astype(np.float64), 2, mode=mode), rtol=1e-6)
        assert ops.pool_backward(np.ones(y.shape, dtype=in_dtype), x, 2, mode=mode).dtype == out_dtype
        assert ops.global_pool(x, mode).dtype == out_dtype
        assert ops.global_pool_backward(np.ones((2, 3), dtype=in_dtype), x, mode).dtype == out_dtype


def test_nested_lists_are_accepted():
    assert ops.pool([[[1, 2, 3, 4]]], 2).tolist() == [[[2.0, 4.0]]]


@pytest.mark.parametrize("x_dtype, g_dtype", [(np.float32, np.float64), (np.float64, np.float32)])
def test_mixed_dtypes_promote_to_float64(x_dtype, g_dtype):
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 2, 6, 6)).astype(x_dtype)
    g = rng.standard_normal((2, 2, 3, 3)).astype(g_dtype)
    for mode in MODES:
        grad_x = ops.pool_backward(g, x, 2, mode=mode)
        assert grad_x.dtype == np.float64
        np.testing.assert_allclose(
            grad_x, ref.pool_backward(g.astype(np.float64), x.astype(np.float64), 2, mode=mode),
            rtol=1e-12,
        )
        assert ops.global_pool_backward(g[:, :, 0, 0], x, mode).dtype == np.float64


def test_read_only_and_memmap_inputs(tmp_path):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, 8, 6)).astype(np.float32)
    mm = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=x.dtype, shape=x.shape)
    mm[...] = x
    mm.flush()
    del mm
    x_mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    g = rng.standard_normal((3, 2, 4, 3)).astype(np.float32)
    g.setflags(write=False)
    x_ro = x.copy()
    x_ro.setflags(write=False)
    for mode in MODES:
        expected = ops.pool(x, 2, mode=mode)
        expected_grad = ops.pool_backward(g.copy(), x, 2, mode=mode)
        for xin in (x_mm, x_ro):
            assert not xin.flags.writeable
            np.testing.assert_array_equal(ops.pool(xin, 2, mode=mode), expected)
            np.testing.assert_array_equal(ops.pool_backward(g, xin, 2, mode=mode), expected_grad)
            np.testing.assert_array_equal(ops.global_pool(xin, mode), ops.global_pool(x, mode))
    _, idx = ops.pool_with_indices(x_ro, 2)
    idx.setflags(write=False)
    np.testing.assert_array_equal(ops.pool_backward_indices(g, idx, x.shape), ops.pool_backward(g, x, 2))


def test_non_contiguous_inputs():
    rng = np.random.default_rng(8)
    big = rng.standard_normal((4, 3, 14, 12))
    views = [
        big[::2, :, ::2, ::-1],        # strided and reversed
        np.asfortranarray(big),        # Fortran order
        big.transpose(0, 1, 3, 2),     # swapped spatial axes
        big[:, 1:2, 3:10, 2:11],       # sliced
    ]
    for x in views:
        assert not x.flags.c_contiguous
        xc = np.ascontiguousarray(x)
        for mode in MODES:
            y = ops.pool(x, (3, 2), stride=(2, 1), padding=(1, 0), mode=mode)
            np.testing.assert_array_equal(y, ops.pool(xc, (3, 2), stride=(2, 1), padding=(1, 0), mode=mode))
            g = rng.standard_normal(y.shape)[..., ::-1]  # non-contiguous grad_y too
            np.testing.assert_array_equal(
                ops.pool_backward(g, x, (3, 2), stride=(2, 1), padding=(1, 0), mode=mode),
                ops.pool_backward(np.ascontiguousarray(g), xc, (3, 2), stride=(2, 1), padding=(1, 0), mode=mode),
            )
            np.testing.assert_array_equal(ops.global_pool(x, mode), ops.global_pool(xc, mode))


def test_empty_batch_returns_empty_results():
    x = np.zeros((0, 3, 5, 4), dtype=np.float32)
    for mode in MODES:
        y = ops.pool(x, 2, padding=1, mode=mode)
        assert y.shape == (0, 3, 3, 3) and y.dtype == np.float32
        grad_x = ops.pool_backward(np.zeros((0, 3, 3, 3)), x, 2, padding=1, mode=mode)
        assert grad_x.shape == x.shape
        assert ops.global_pool(x, mode).shape == (0, 3)
        assert ops.global_pool_backward(np.zeros((0, 3)), x, mode).shape == x.shape
    y, idx = ops.pool_with_indices(x, 2)
    assert y.shape == idx.shape == (0, 3, 2, 2)
    assert ops.pool_backward_indices(y, idx, x.shape).shape == x.shape


# --------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------

X4 = np.zeros((2, 3, 4, 4))


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(pool_size=2, mode="sum"), ValueError, r"mode must be one of 'max', 'avg', 'min', got 'sum'"),
    (dict(pool_size=2, mode=None), ValueError, r"mode must be one of .* got None"),
    (dict(pool_size=5), ValueError, r"pool_size \(5, 5\) is larger than the padded input .*\(4, 4\)"),
    (dict(pool_size=(2, 7), padding=1), ValueError, r"pool_size \(2, 7\) is larger .* axis 1"),
    (dict(pool_size=0), ValueError, r"pool_size must be >= 1"),
    (dict(pool_size=(2, 0)), ValueError, r"pool_size must be >= 1"),
    (dict(pool_size=(2, 2, 2)), ValueError, r"pool_size has 3 entries but the input has 2"),
    (dict(pool_size=2.5), TypeError, r"pool_size must be an int or a tuple"),
    (dict(pool_size=2, stride=0), ValueError, r"stride must be >= 1"),
    (dict(pool_size=2, stride=(1, -1)), ValueError, r"stride must be >= 1"),
    (dict(pool_size=2, padding=-1), ValueError, r"padding must be >= 0"),
    (dict(pool_size=2, padding=(0, -2)), ValueError, r"padding must be >= 0"),
    (dict(pool_size=2, padding="full"), ValueError, r"padding must be an int, a tuple of ints, 'valid' or 'same'"),
    (dict(pool_size=2, padding=2), ValueError, r"no real cell on spatial axis 0 .*\(4, 4\)"),
    (dict(pool_size=(3, 2), padding=(1, 2)), ValueError, r"no real cell on spatial axis 1"),
    # Overlapping windows, padding equal to the window on axis 1 only.
    (dict(pool_size=(2, 3), stride=1, padding=(0, 3)), ValueError, r"no real cell on spatial axis 1"),
    # Used to be an OverflowError from the compiled layer.
    (dict(pool_size=2, stride=2**63), ValueError, r"stride must be at most 2147483647 on every axis"),
    (dict(pool_size=2, stride=(1, 2**31)), ValueError, r"stride must be at most 2147483647"),
    (dict(pool_size=2**63), ValueError, r"pool_size must be at most 2147483647"),
    (dict(pool_size=2, padding=2**63), ValueError, r"padding must be at most 2147483647"),
    (dict(pool_size=2, n_jobs=0), ValueError, r"n_jobs == 0"),
    (dict(pool_size=2, n_jobs=1.5), TypeError, r"n_jobs must be None or an int"),
])
def test_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        ops.pool(X4, **kwargs)
    grad_kwargs = dict(kwargs)
    with pytest.raises(exc, match=match):
        ops.pool_backward(np.zeros((2, 3, 2, 2)), X4, **grad_kwargs)


@pytest.mark.parametrize("x, match", [
    (np.zeros((3, 4)), r"x must have shape \(N, C, \*spatial\) .* got ndim 2 with shape \(3, 4\)"),
    (np.zeros((1, 1, 2, 2, 2, 2)), r"got ndim 6 with shape \(1, 1, 2, 2, 2, 2\)"),
    (np.zeros((2, 0, 4)), r"x has an empty channel or spatial axis: shape \(2, 0, 4\)"),
    (np.zeros((2, 1, 4, 0)), r"x has an empty channel or spatial axis"),
])
def test_bad_input_shapes(x, match):
    with pytest.raises(ValueError, match=match):
        ops.pool(x, 1)
    with pytest.raises(ValueError, match=match):
        ops.global_pool(x)
    with pytest.raises(ValueError, match=match):
        ops.global_pool_backward(np.zeros(x.shape[:2]), x)


def test_bad_dtypes():
    with pytest.raises(TypeError, match=r"x must hold real numbers, got dtype complex128"):
        ops.pool(np.zeros((1, 1, 4), dtype=complex), 2)
    with pytest.raises(TypeError, match=r"x must hold real numbers, got dtype <U1"):
        ops.global_pool(np.full((1, 1, 4), "a"))
    with pytest.raises(TypeError, match=r"grad_y must hold real numbers"):
        ops.pool_backward(np.zeros((1, 1, 2), dtype=object), np.zeros((1, 1, 4)), 2)


def test_bad_grad_y_shapes():
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 2, 2\) .* x with shape "
                                         r"\(2, 3, 4, 4\)\), got shape \(2, 3, 4, 4\)"):
        ops.pool_backward(X4, X4, 2)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 3, 3\) .* got shape \(2, 3, 2, 2\)"):
        ops.pool_backward(np.zeros((2, 3, 2, 2)), X4, 2, stride=1)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3\) .* x with shape "
                                         r"\(2, 3, 4, 4\)\), got shape \(2, 3, 1, 1\)"):
        ops.global_pool_backward(np.zeros((2, 3, 1, 1)), X4)
    with pytest.raises(ValueError, match=r"mode must be one of"):
        ops.global_pool_backward(np.zeros((2, 3)), X4, "median")


def test_bad_indices():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    y, idx = ops.pool_with_indices(x, 2)
    with pytest.raises(ValueError, match=r"mode must be one of 'max', 'min', got 'avg'"):
        ops.pool_with_indices(x, 2, mode="avg")
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\) .* got values in \[6, 16\]"):
        ops.pool_backward_indices(y, idx + 1, x.shape)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 16\)"):
        ops.pool_backward_indices(y, idx - 6, x.shape)
    with pytest.raises(TypeError, match=r"indices must hold integers, got dtype float64"):
        ops.pool_backward_indices(y, idx.astype(float), x.shape)
    with pytest.raises(ValueError, match=r"indices must have the shape of grad_y \(1, 1, 2, 2\), "
                                         r"got shape \(1, 1, 4\)"):
        ops.pool_backward_indices(y, idx.reshape(1, 1, 4), x.shape)
    with pytest.raises(ValueError, match=r"x_shape \(1, 2, 4, 4\) must be \(N, C, \*spatial\)"):
        ops.pool_backward_indices(y, idx, (1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"x_shape \(1, 1, 16\) must be"):
        ops.pool_backward_indices(y, idx, (1, 1, 16))


# --------------------------------------------------------------------------------
# PyTorch cross-check
# --------------------------------------------------------------------------------

TORCH_CASES = [
    dict(shape=(2, 3, 11), pool_size=3, stride=2, padding=1),
    dict(shape=(2, 3, 9), pool_size=2, stride=None, padding=0),
    dict(shape=(4, 6, 28, 28), pool_size=2, stride=None, padding=0),
    dict(shape=(2, 3, 9, 10), pool_size=(3, 2), stride=(2, 1), padding=(1, 1)),
    dict(shape=(2, 2, 7, 8), pool_size=3, stride=1, padding=1),
    dict(shape=(2, 2, 5, 6, 7), pool_size=(2, 3, 2), stride=(2, 2, 1), padding=(1, 1, 0)),
    dict(shape=(1, 2, 6, 6, 6), pool_size=2, stride=None, padding=0),
]


@pytest.mark.torch
@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: str(c["shape"]))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mode", MODES)
def test_matches_torch(case, dtype, mode):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F

    n_axes = len(case["shape"]) - 2
    max_pool = [F.max_pool1d, F.max_pool2d, F.max_pool3d][n_axes - 1]
    avg_pool = [F.avg_pool1d, F.avg_pool2d, F.avg_pool3d][n_axes - 1]
    stride = case["stride"] if case["stride"] is not None else case["pool_size"]
    tkw = dict(kernel_size=case["pool_size"], stride=stride, padding=case["padding"])

    rng = np.random.default_rng(9)
    x = rng.standard_normal(case["shape"]).astype(dtype)
    kwargs = dict(stride=case["stride"], padding=case["padding"], mode=mode)
    y = ops.pool(x, case["pool_size"], **kwargs)
    g = rng.standard_normal(y.shape).astype(dtype)

    xt = torch.from_numpy(x.copy()).requires_grad_(True)
    if mode == "max":
        yt = max_pool(xt, **tkw)
    elif mode == "min":
        yt = -max_pool(-xt, **tkw)
    else:
        yt = avg_pool(xt, count_include_pad=False, **tkw)
    yt.backward(torch.from_numpy(g.copy()))

    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, yt.detach().numpy(), **tol)
    np.testing.assert_allclose(ops.pool_backward(g, x, case["pool_size"], **kwargs),
                               xt.grad.numpy(), **tol)


@pytest.mark.skipif(not skconv.openmp_enabled(), reason="serial build: always one thread")
def test_small_calls_run_on_one_thread_large_ones_use_n_jobs():
    # The work cap only ever lowers the thread count, never raises it above n_jobs.
    assert pool_ops._pool_threads(2, (1, 1, 4, 4), (1, 1, 2, 2), (2, 2)) == 1
    assert pool_ops._pool_threads(2, (64, 64, 32, 32), (64, 64, 16, 16), (2, 2)) == 2
    assert pool_ops._pool_threads(1, (64, 64, 32, 32), (64, 64, 16, 16), (2, 2)) == 1


@pytest.mark.parametrize("spatial, window, stride, padding, expected", [
    ((28, 28), 2, None, 0, "2x2 images"),
    ((7, 9), 2, None, 0, "2x2 images"),
    ((2, 2), 2, None, 0, "2x2 images"),
    ((16, 16, 16), 2, None, 0, "2x2x2 volumes"),
    ((3, 4, 5), 2, None, 0, "2x2x2 volumes"),
    ((1000,), 2, None, 0, "signal pairs"),
    ((3,), 2, None, 0, "signal pairs"),
    ((28, 28), 3, 2, 0, "general"),
    ((28, 28), 2, 1, 0, "general"),
    ((28, 28), 2, None, 1, "general"),
    ((1000,), 3, 2, 0, "general"),
    ((1000,), 2, None, 1, "general"),
    ((8, 8, 8), (1, 2, 2), None, 0, "general"),
])
@pytest.mark.parametrize("mode", ["max", "min", "avg"])
def test_the_fast_loops_are_taken(spatial, window, stride, padding, expected, mode):
    # The fast loops give the twin's bits, so only the kernel can say whether they
    # ran: asked with the planes exactly as ops.pool hands them over. Signal pairs
    # are max and min only; every other average takes the separable kernel.
    from skconv._kernels import pool as kernel
    from skconv._ops.pool import _planes
    from skconv._ops.validation import to_3d

    x = np.zeros((2, 3) + spatial, dtype=np.float32)
    y = ops.pool(x, window, stride=stride, padding=padding, mode=mode)
    pads = [padding] * len(spatial)
    n_axes = len(spatial)
    per_axis = (window,) * n_axes if isinstance(window, int) else window
    steps = per_axis if stride is None else (stride,) * n_axes
    code = {"max": kernel.MODE_MAX, "avg": kernel.MODE_AVG, "min": kernel.MODE_MIN}[mode]
    path = kernel.forward_path(_planes(x).shape, _planes(y).shape, to_3d(per_axis, 1),
                               to_3d(steps, 1), to_3d(pads, 0), code)
    if mode == "avg" and expected in ("signal pairs", "general"):
        expected = "separable average"
    assert path == expected


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["max", "min", "avg"])
@pytest.mark.parametrize(
    "spatial", [(8, 8), (7, 9), (2, 2), (5, 4), (28, 28), (14, 14), (15, 33), (3, 40),
                (16, 16, 16), (8, 8, 8), (2, 2, 2), (5, 7, 9), (3, 4, 40), (9, 17, 33),
                (2, 3, 2), (2,), (3,), (15,), (16,), (17,), (31,), (34,), (1000,)]
)
def test_lenet_window_fast_path_matches_twin(dtype, mode, spatial):
    # Window 2, stride 2, no padding on 2-D planes (2x2x2 on volumes, 2 on signals)
    # has its own loop, with or without indices: values, winning cells and gradients
    # must match the twin, with ties, NaN, infinities and -0.0/0.0 in the data. The
    # sizes put rows through the vector kernel (8 windows at a time, over two planes
    # for volumes, the last vector overrunning the row) and through the scalar loop
    # that takes the plane's last rows (on signals: the windows after the last whole
    # vector).
    rng = np.random.default_rng(len(spatial) * 100 + spatial[0] * 10 + spatial[-1])
    x = rng.integers(-2, 3, size=(3, 4) + spatial).astype(dtype)
    x[0, 0].flat[::5] = np.nan
    x[1, 1].flat[::3] = -0.0
    x[2, 2].flat[rng.integers(0, x[2, 2].size, 7)] = np.nan
    x[2, 3].flat[::4] = np.inf
    x[2, 3].flat[1::7] = -np.inf
    with np.errstate(invalid="ignore"):  # inf - inf in an average
        y = ops.pool(x, 2, mode=mode, n_jobs=2)
        np.testing.assert_array_equal(y, ref.pool(x, 2, mode=mode))
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    expected = ref.pool_backward(grad_y, x, 2, mode=mode)
    if mode == "avg":
        # Each cell's share, 0 + grad / cells (exact: a division by 2, 4 or 8), signed
        # zeros included.
        got = ops.pool_backward(grad_y, x, 2, mode=mode, n_jobs=2)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, expected)
        np.testing.assert_array_equal(np.signbit(got), np.signbit(expected))
        return
    y_idx, idx = ops.pool_with_indices(x, 2, mode=mode, n_jobs=2)
    np.testing.assert_array_equal(y_idx, y)
    np.testing.assert_array_equal(ops.pool_backward_indices(grad_y, idx, x.shape), expected)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["max", "avg", "min"])
def test_out_arrays_receive_the_same_results(dtype, mode):
    # Networks pass workspaces through out=: same bits as fresh arrays, written into
    # (and returned as) the given arrays even when those hold garbage.
    rng = np.random.default_rng(41)
    x = rng.standard_normal((3, 2, 9, 8)).astype(dtype)
    kwargs = dict(stride=2, padding="same", mode=mode)
    y = ops.pool(x, 3, **kwargs)
    out = np.full_like(y, np.nan)
    assert ops.pool(x, 3, out=out, **kwargs) is out
    np.testing.assert_array_equal(out, y)
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    expected = ops.pool_backward(grad_y, x, 3, **kwargs)
    grad_out = np.full_like(x, np.nan)
    assert ops.pool_backward(grad_y, x, 3, out=grad_out, **kwargs) is grad_out
    np.testing.assert_array_equal(grad_out, expected)
    if mode != "avg":
        buffers = (np.full_like(y, np.nan), np.full(y.shape, -7, np.int64))
        y_idx, idx = ops.pool_with_indices(x, 3, out=buffers, **kwargs)
        assert y_idx is buffers[0] and idx is buffers[1]
        np.testing.assert_array_equal(y_idx, y)
        grad_out[...] = np.nan
        assert ops.pool_backward_indices(grad_y, idx, x.shape, out=grad_out) is grad_out
        np.testing.assert_array_equal(grad_out, expected)


def test_out_arrays_that_overlap_each_other_are_rejected():
    # Ran and returned wrong values: the indices were written over the maxima.
    x = np.random.default_rng(2).standard_normal((1, 2, 4, 4))
    y = np.empty((1, 2, 2, 2))
    with pytest.raises(ValueError, match=r"^out\[1\] \(indices\) must not share memory "
                                         r"with out\[0\] \(y\)$"):
        ops.pool_with_indices(x, 2, out=(y, y.view(np.int64)))
    buffer = np.empty(16)  # disjoint halves of one buffer are fine
    got = ops.pool_with_indices(
        x, 2, out=(buffer[:8].reshape(y.shape), buffer[8:].view(np.int64).reshape(y.shape)))
    expected = ops.pool_with_indices(x, 2)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])


def test_bad_out_arrays_are_rejected():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with pytest.raises(ValueError, match=r"out must have shape \(1, 2, 2, 2\) and dtype float32"):
        ops.pool(x, 2, out=np.empty((1, 2, 2, 2)))
    with pytest.raises(TypeError, match=r"out must be a tuple \(y, indices\)"):
        ops.pool_with_indices(x, 2, out=np.empty((1, 2, 2, 2), np.float32))
    with pytest.raises(ValueError, match=r"out\[1\] \(indices\) must have shape .* dtype int64"):
        ops.pool_with_indices(x, 2, out=(np.empty((1, 2, 2, 2), np.float32),
                                         np.empty((1, 2, 2, 2), np.int32)))
    with pytest.raises(ValueError, match="must not share memory with the inputs"):
        ops.pool_backward(np.zeros((1, 2, 4, 4), np.float32), x, 1, out=x)
