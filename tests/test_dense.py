"""Tests of the threaded dense kernels (``skconv._kernels.dense``) through the ``Dense`` layer.

Groups, in file order:

1. forward and backward against numpy products in float64, on shapes from batch 1
   and one unit up to ones that are cut into chunks along either side;
2. bitwise equality of outputs and gradients for any ``n_jobs``, and of the fused
   dense + relu step with the two layers;
3. central differences in float64;
4. layouts: strided inputs, inference against training, an empty batch.

Tolerances: each value is compared with the float64 product, the allowed error being
``(K + 1) * eps * scale``, where ``scale`` is the same product on the absolute values
of the operands and K the number of terms: the worst-case rounding error of a sum of
K products plus the bias in any order (doubled in float64, whose reference rounds
too).
"""

import numpy as np
import pytest

from skconv._ops import dense as _dense
from skconv._nn.layers import Activation, Dense

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._finite_differences import central_differences
except ImportError:
    from _finite_differences import central_differences

DTYPES = [np.float32, np.float64]

# (batch, features, units). The last ones are cut into several chunks (see
# test_chunking_covers_both_sides).
SHAPES = [
    (1, 1, 1),
    (1, 7, 3),
    (5, 13, 1),
    (3, 1, 4),
    (17, 33, 9),
    (64, 84, 10),
    (64, 120, 84),
    (64, 784, 120),      # LeNet-5's first dense layer: y in chunks of units
    (300, 203, 97),      # y and grad_x in chunks of batch rows, the last one shorter
    (37, 263, 1001),     # grad_W in chunks of its columns
]


def _layer(n_features, units, dtype, seed=0):
    layer = Dense(units)
    layer.initialize((n_features,), np.random.RandomState(seed), dtype)
    # Non-zero biases, so that their place in the sum is checked too.
    layer.params[1][...] = np.random.RandomState(seed + 1).standard_normal(units)
    return layer


def _problem(shape, dtype, seed=0):
    n, f, u = shape
    rng = np.random.default_rng(seed)
    layer = _layer(f, u, dtype, seed)
    x = rng.standard_normal((n, f)).astype(dtype)
    grad_y = rng.standard_normal((n, u)).astype(dtype)
    return layer, x, grad_y


def _run(layer, x, grad_y, n_jobs, need_input_grad=True):
    y = layer.forward(x, n_jobs, training=True).copy()
    grad_x = layer.backward(grad_y, n_jobs, need_input_grad)
    grad_x = None if grad_x is None else grad_x.copy()
    return y, grad_x, layer.grads[0].copy(), layer.grads[1].copy()


def _assert_close(actual, exact, scale, n_terms, dtype, name):
    eps = np.finfo(dtype).eps
    bound = (n_terms + 1) * eps * scale * (2 if dtype == np.float64 else 1)
    assert actual.dtype == dtype, name
    assert actual.shape == exact.shape, name
    err = np.abs(actual.astype(np.float64) - exact)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (
        f"{name}: error {err[worst]:.3g} > bound {bound[worst]:.3g} at {worst}")


# ---------------------------------------------------------------------------------
# 1. against numpy
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_forward_backward_match_numpy(shape, dtype):
    n, f, u = shape
    layer, x, grad_y = _problem(shape, dtype)
    w, b = (p.astype(np.float64) for p in layer.params)
    x64, g64 = x.astype(np.float64), grad_y.astype(np.float64)
    y, grad_x, grad_w, grad_b = _run(layer, x, grad_y, n_jobs=2)
    _assert_close(y, x64 @ w + b, np.abs(x64) @ np.abs(w) + np.abs(b), f, dtype, "y")
    _assert_close(grad_w, x64.T @ g64, np.abs(x64.T) @ np.abs(g64), n, dtype, "grad_w")
    _assert_close(grad_b, g64.sum(axis=0), np.abs(g64).sum(axis=0), n, dtype, "grad_b")
    _assert_close(grad_x, g64 @ w.T, np.abs(g64) @ np.abs(w.T), u, dtype, "grad_x")


def test_chunking_covers_every_side():
    # The shapes above exercise every way of cutting: for each of the two backward
    # products each side it can be cut along, into several chunks, and one chunk.
    seen = set()
    for n, f, u in SHAPES:
        grad_w, grad_x = _dense.backward_chunking(n, f, u)
        for name, (side, n_chunks) in (("grad_w", grad_w), ("grad_x", grad_x)):
            seen.add((name, side, n_chunks > 1))
    sides = {"grad_w": ("features", "units"), "grad_x": ("rows", "features")}
    for name, cuts in sides.items():
        for side in cuts:
            assert (name, side, True) in seen, (name, side)
        assert any((name, side, False) in seen for side in cuts), name


def test_lenet5_chunking():
    # The big backward products of LeNet-5 are shared between threads, the tiny ones
    # are not; its weight and input gradients are both cut along the features, so
    # that each thread works on the same rows of W in both.
    assert _dense.backward_chunking(64, 784, 120) == (("features", 2), ("features", 2))
    for f, u in ((120, 84), (84, 10)):
        assert [c for _, c in _dense.backward_chunking(64, f, u)] == [1, 1]


# ---------------------------------------------------------------------------------
# 2. thread invariance
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [s for s in SHAPES if s[0] * s[1] * s[2] >= 4 << 20]
                         + [(512, 784, 120), (100, 2000, 64), (64, 120, 84),
                            (64, 84, 10)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
def test_results_do_not_depend_on_n_jobs(shape, dtype):
    n, f, u = shape
    backward_tasks = sum(c for _, c in _dense.backward_chunking(n, f, u))
    # Otherwise there is nothing to share (the forward shares out tasks of 32 rows;
    # the backward's two products are two tasks at least: LeNet-5's small layers run
    # them side by side).
    assert n > 32 and backward_tasks > 1
    layer, x, grad_y = _problem(shape, dtype)
    expected = _run(layer, x, grad_y, n_jobs=1)
    for n_jobs in (2, 3, None, -1):
        got = _run(layer, x, grad_y, n_jobs)
        for name, a, e in zip(("y", "grad_x", "grad_w", "grad_b"), got, expected):
            np.testing.assert_array_equal(a, e, err_msg=f"{name} n_jobs={n_jobs}")
        # Without the input gradient the weight gradients are the same too.
        got = _run(layer, x, grad_y, n_jobs, need_input_grad=False)
        assert got[1] is None
        np.testing.assert_array_equal(got[2], expected[2])
        np.testing.assert_array_equal(got[3], expected[3])
        np.testing.assert_array_equal(layer.forward(x, n_jobs, training=False),
                                      expected[0])


@pytest.mark.parametrize("shape", [(1, 1, 1), (17, 33, 9), (64, 120, 84),
                                   (64, 784, 120), (300, 203, 97)], ids=str)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_fused_relu_is_bitwise_the_two_layers(shape, dtype, n_jobs):
    # Dense.forward_relu / backward_relu (the network's dense + relu step) against
    # Dense then Activation('relu'), on outputs with exact zeros (integer data; row 0
    # is the biases alone, half of them -0), NaN and inf (an infinite gradient on a
    # zeroed cell gives NaN).
    n, f, u = shape
    rng = np.random.default_rng(3)
    layer = _layer(f, u, dtype)
    layer.params[0][...] = rng.integers(-2, 3, size=(f, u))
    layer.params[1][...] = rng.integers(-2, 3, size=u)
    layer.params[1][: u // 2] = -0.0
    x = rng.integers(-1, 2, size=(n, f)).astype(dtype)
    x[0, :] = 0  # row 0: y = b exactly, with -0 biases
    if n > 2:
        x[1, 0] = np.nan
        x[2, -1] = np.inf
    grad_y = rng.integers(-3, 4, size=(n, u)).astype(dtype)
    grad_y[-1, 0] = np.inf
    relu = Activation("relu")
    relu.initialize((u,), None, dtype)
    with np.errstate(invalid="ignore"):
        y_ref = relu.forward(layer.forward(x, 1, training=True).copy(), 1, training=True)
        grad_ref = layer.backward(relu.backward(grad_y.copy(), 1, True), 1, True).copy()
        grads_ref = [g.copy() for g in layer.grads]
        y = layer.forward_relu(x, n_jobs, training=True).copy()
        grad_x = layer.backward_relu(grad_y.copy(), n_jobs, True)
    for name, got, expected in [("y", y, y_ref), ("grad_x", grad_x, grad_ref),
                                ("grad_w", layer.grads[0], grads_ref[0]),
                                ("grad_b", layer.grads[1], grads_ref[1])]:
        assert got.dtype == expected.dtype and got.shape == expected.shape, name
        np.testing.assert_array_equal(got.view(np.uint8), expected.view(np.uint8),
                                      err_msg=name)
    np.testing.assert_array_equal(layer.forward_relu(x, n_jobs, training=False), y)


@pytest.mark.parametrize("dtype", DTYPES)
def test_each_row_depends_on_its_own_input_alone(dtype):
    # A row of the forward's output is the same bits whatever the batch it is in:
    # alone, in any subset, in any order, on any number of threads, with relu or
    # not. Units below, at and above a vector's lanes (16 float32, 8 float64) and
    # between whole vectors; one pass of rows (W read in place) or several (W
    # packed in tiles), several parts of rows, several panels of units.
    rng = np.random.default_rng(7)
    for n, f, u in [(70, 400, 120), (45, 120, 84), (33, 84, 10), (40, 1, 1),
                    (37, 9, 16), (50, 31, 8), (66, 17, 23), (1, 300, 7),
                    (600, 260, 130)]:
        x = rng.standard_normal((n, f)).astype(dtype)
        w = rng.standard_normal((f, u)).astype(dtype)
        b = rng.standard_normal(u).astype(dtype)
        for relu in (False, True):
            whole = _dense.dense(x, w, b, relu=relu, n_threads=1)
            for n_threads in (1, 2, 3):
                np.testing.assert_array_equal(
                    _dense.dense(x, w, b, relu=relu, n_threads=n_threads), whole)
            for i in rng.choice(n, size=min(n, 5), replace=False):
                np.testing.assert_array_equal(
                    _dense.dense(x[i:i + 1], w, b, relu=relu), whole[i:i + 1])
            for _ in range(3):
                rows = rng.choice(n, size=rng.integers(1, n + 1), replace=False)
                np.testing.assert_array_equal(
                    _dense.dense(x[rows], w, b, relu=relu, n_threads=2), whole[rows])
        x64 = x.astype(np.float64)
        _assert_close(whole, np.maximum(x64 @ w.astype(np.float64) + b, 0),
                      np.abs(x64) @ np.abs(w.astype(np.float64)) + np.abs(b), f,
                      dtype, "y")


@pytest.mark.parametrize("relu", [False, True])
def test_no_features_gives_the_bias(relu):
    b = np.array([-1.5, 0.0, 2.0])
    y = _dense.dense(np.empty((4, 0)), np.empty((0, 3)), b, relu=relu)
    np.testing.assert_array_equal(y, np.tile(np.maximum(b, 0) if relu else b, (4, 1)))


# ---------------------------------------------------------------------------------
# 3. central differences
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(3, 5, 4), (64, 784, 120)], ids=str)
def test_gradients_match_central_differences(shape):
    # loss = sum(tanh(Dense(x)) * R): not linear in the parameters, so a transposed or
    # misplaced chunk could not pass. The big case is cut into chunks; a sample of
    # its entries is checked.
    n, f, u = shape
    layer, x, _ = _problem(shape, np.float64, seed=3)
    x = x.astype(np.float64)
    rng = np.random.default_rng(4)
    r = rng.standard_normal((n, u))

    def loss():
        return float(np.sum(np.tanh(layer.forward(x, 2, training=False)) * r))

    y = layer.forward(x, 2, training=True)
    grad_x = layer.backward(r * (1 - np.tanh(y) ** 2), 2, True)
    analytic = [grad_x.copy()] + [g.copy() for g in layer.grads]
    for arr, grad in zip([x] + layer.params, analytic):
        flat = range(arr.size) if arr.size <= 60 else rng.choice(arr.size, 60, replace=False)
        indices = [np.unravel_index(i, arr.shape) for i in flat]
        numeric = central_differences(loss, arr, 1e-6, indices)
        # Truncation ~ h^2 * |third derivative| ~ 1e-12; rounding ~ 1e-16 * |loss| /
        # h ~ 1e-8 for the big case, 1e-10 for the small one.
        np.testing.assert_allclose([grad[idx] for idx in indices], numeric, rtol=1e-6,
                                   atol=1e-7, err_msg=str(indices))


# ---------------------------------------------------------------------------------
# 4. layouts
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
def test_strided_and_fortran_inputs(dtype):
    layer, x, grad_y = _problem((64, 784, 120), dtype)
    expected = _run(layer, x, grad_y, n_jobs=2)
    wide = np.zeros((64, 2 * 784), dtype=dtype)
    wide[:, ::2] = x
    for view in (wide[:, ::2], np.asfortranarray(x)):
        got = _run(layer, view, np.asfortranarray(grad_y), n_jobs=2)
        for a, e in zip(got, expected):
            np.testing.assert_array_equal(a, e)


def test_inference_matches_training_and_is_fresh():
    layer, x, _ = _problem((64, 784, 120), np.float32)
    train = layer.forward(x, 2, training=True)
    infer = layer.forward(x, 2, training=False)
    np.testing.assert_array_equal(infer, train)
    assert infer is not train
    assert layer.forward(x, 2, training=False) is not infer


@pytest.mark.parametrize("need_input_grad", [True, False])
def test_empty_batch(need_input_grad):
    layer, _, _ = _problem((1, 5, 3), np.float64)
    layer.grads[0][...] = np.nan
    layer.grads[1][...] = np.nan
    y = layer.forward(np.empty((0, 5)), 2, training=True)
    assert y.shape == (0, 3)
    grad_x = layer.backward(np.empty((0, 3)), 2, need_input_grad)
    assert (grad_x is None) != need_input_grad
    if need_input_grad:
        assert grad_x.shape == (0, 5)
    np.testing.assert_array_equal(layer.grads[0], 0)
    np.testing.assert_array_equal(layer.grads[1], 0)
