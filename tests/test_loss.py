"""Tests for skconv._ops.loss: softmax and softmax cross-entropy; the element-wise
losses (sigmoid cross-entropy, squared error, Huber) against scikit-learn's MLP losses,
central differences in float64, their dtype rule and their edge cases."""

import warnings

import numpy as np
import pytest

from skconv._ops.loss import (
    huber,
    sigmoid,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    squared_error,
)

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._finite_differences import central_differences
except ImportError:
    from _finite_differences import central_differences


def _naive_log_softmax(z):
    z = np.asarray(z, dtype=np.float64)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def _silently(fn, *args, **kwargs):
    # Underflow to 0 is the intended saturation; overflow, 0/0 or log(0) are not.
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise",
                                                invalid="raise"):
        warnings.simplefilter("error")
        return fn(*args, **kwargs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_matches_formula(dtype):
    rng = np.random.RandomState(0)
    z = rng.normal(scale=3.0, size=(7, 4)).astype(dtype)
    expected = _naive_log_softmax(z)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    p = softmax(z)
    assert p.dtype == dtype
    np.testing.assert_allclose(p, np.exp(expected), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=rtol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_loss_matches_formula(dtype):
    rng = np.random.RandomState(1)
    z = rng.normal(size=(9, 5)).astype(dtype)
    y = rng.randint(0, 5, size=9)
    loss, grad = softmax_cross_entropy(z, y)
    expected = -_naive_log_softmax(z)[np.arange(9), y].mean()
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    assert isinstance(loss, float)
    assert loss == pytest.approx(expected, rel=rtol)
    assert grad.dtype == dtype and grad.shape == z.shape
    onehot = np.eye(5)[y]
    np.testing.assert_allclose(grad, (np.exp(_naive_log_softmax(z)) - onehot) / 9,
                               rtol=rtol * 10, atol=rtol)


@pytest.mark.parametrize("weighted", [False, True])
def test_gradient_matches_central_differences(weighted):
    rng = np.random.RandomState(2)
    z = rng.normal(scale=2.0, size=(6, 4))
    y = rng.randint(0, 4, size=6)
    w = rng.uniform(0.1, 3.0, size=6) if weighted else None
    _, grad = softmax_cross_entropy(z, y, w)
    numeric = central_differences(lambda: softmax_cross_entropy(z, y, w)[0], z, 1e-6)
    # atol: the central difference's rounding floor is ~ 1e-16 * |loss| / eps ~ 1e-10.
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_logits_are_finite_and_silent(dtype):
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4], [1e4, 1e4, 1e4]], dtype=dtype)
    y = np.array([0, 0, 2])
    p = _silently(softmax, z)
    loss, grad = _silently(softmax_cross_entropy, z, y)
    for a in (p, grad):
        assert a.dtype == dtype and np.all(np.isfinite(a))
    assert np.isfinite(loss)
    # Row 0 is surely right (0), row 1 wrong by a gap of 2e4 (+log 2 for the tie),
    # row 2 a three-way tie.
    expected = (0.0 + 2e4 + np.log(2.0) + np.log(3.0)) / 3
    assert loss == pytest.approx(expected, rel=1e-6)
    np.testing.assert_allclose(p[2], 1 / 3, rtol=1e-6)


def test_weight_two_equals_duplicating_a_sample():
    rng = np.random.RandomState(3)
    z = rng.normal(size=(5, 3))
    y = rng.randint(0, 3, size=5)
    w = np.ones(5)
    w[2] = 2.0
    loss_w, grad_w = softmax_cross_entropy(z, y, w)
    z_dup = np.vstack([z, z[2:3]])
    y_dup = np.append(y, y[2])
    loss_dup, grad_dup = softmax_cross_entropy(z_dup, y_dup)
    assert loss_w == pytest.approx(loss_dup, rel=1e-12)
    # The duplicated sample's two gradient rows add up to the weighted row.
    expected = grad_dup[:5].copy()
    expected[2] += grad_dup[5]
    np.testing.assert_allclose(grad_w, expected, rtol=1e-12, atol=1e-15)


def test_unit_and_scaled_weights_equal_unweighted():
    rng = np.random.RandomState(4)
    z = rng.normal(size=(4, 3)).astype(np.float32)
    y = rng.randint(0, 3, size=4)
    loss, grad = softmax_cross_entropy(z, y)
    for w in (np.ones(4), np.full(4, 7.5)):
        loss_w, grad_w = softmax_cross_entropy(z, y, w)
        assert grad_w.dtype == np.float32
        assert loss_w == pytest.approx(loss, rel=1e-6)
        np.testing.assert_allclose(grad_w, grad, rtol=1e-6, atol=1e-7)


def test_zero_total_weight_gives_zero_loss_and_gradient():
    z = np.array([[1.0, 2.0], [3.0, -1.0]])
    loss, grad = softmax_cross_entropy(z, [0, 1], [0.0, 0.0])
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_does_not_modify_logits():
    z = np.array([[1.0, 2.0, 3.0]])
    z0 = z.copy()
    softmax_cross_entropy(z, [1])
    softmax(z)
    np.testing.assert_array_equal(z, z0)


def test_errors():
    z = np.zeros((3, 2))
    with pytest.raises(ValueError, match="y_index must have shape"):
        softmax_cross_entropy(z, [0, 1])
    with pytest.raises(ValueError, match=r"y_index must lie in \[0, 2\)"):
        softmax_cross_entropy(z, [0, 1, 2])
    with pytest.raises(ValueError, match="y_index must hold integers"):
        softmax_cross_entropy(z, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        softmax_cross_entropy(z, [0, 1, 1], [1.0, 1.0])
    with pytest.raises(ValueError, match="logits must have shape"):
        softmax_cross_entropy(np.zeros(3), [0, 1, 1])
    with pytest.raises(ValueError, match=r"got -1 at row 1"):
        softmax_cross_entropy(z, np.array([0, -1, 1], dtype=np.int8))
    with pytest.raises(ValueError, match=r"got 1099511627778 at row 2"):
        softmax_cross_entropy(z, np.array([0, 1, 2**40 + 2], dtype=np.uint64))


def _reference_loss_and_grad(z, y, w):
    # In long double, straight from the definition (no shift: |z| stays small here).
    z = np.asarray(z, dtype=np.longdouble)
    w = np.ones(len(y), dtype=np.longdouble) if w is None else np.asarray(w, np.longdouble)
    log_norm = np.log(np.exp(z).sum(axis=1))
    nll = log_norm - z[np.arange(len(y)), y]
    proba = np.exp(z - log_norm[:, None])
    proba[np.arange(len(y)), y] -= 1
    return (w * nll).sum() / w.sum(), proba * (w / w.sum())[:, None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_compiled_rows_match_the_definition_over_many_shapes(dtype, weighted):
    # The rows are computed in float64 and only the gradient is rounded: a float32
    # gradient must be the float64 value correctly rounded, whatever the shape, the class count (1 included) and the class indices' dtype.
    rng = np.random.default_rng(7)
    for n, k in [(1, 1), (1, 2), (3, 1), (64, 10), (5, 37), (200, 3), (17, 100)]:
        z = rng.normal(scale=4.0, size=(n, k)).astype(dtype)
        y = rng.integers(0, k, size=n).astype(rng.choice([np.int64, np.int32, np.uint8]))
        w = rng.uniform(0.0, 3.0, size=n) if weighted else None
        loss, grad = softmax_cross_entropy(z, y, w)
        loss_ref, grad_ref = _reference_loss_and_grad(z, y.astype(np.intp), w)
        assert grad.dtype == dtype and grad.shape == (n, k)
        assert loss == pytest.approx(float(loss_ref), rel=1e-13, abs=1e-15)
        # float32: half a unit in the last place of rounding (2**-24 relative) plus
        # float64's own error, which is absolute where softmax - onehot cancels.
        rtol = 2.0**-24 if dtype == np.float32 else 1e-13
        np.testing.assert_allclose(grad.astype(np.float64), grad_ref.astype(np.float64),
                                   rtol=rtol, atol=1e-15)


def test_non_finite_logits_make_a_non_finite_loss():
    # The estimator stops on a non-finite loss: NaN and +inf logits must give one
    # (never a silently finite value), -inf on the true class gives +inf.
    for row, target in [([np.nan, 1.0, 2.0], 1), ([1.0, np.nan, 2.0], 0),
                        ([np.inf, 1.0, 2.0], 2), ([-np.inf, 1.0, 2.0], 0)]:
        with np.errstate(invalid="ignore"):
            loss, grad = softmax_cross_entropy(np.array([row, [0.0, 1.0, 2.0]]),
                                               [target, 1])
        assert not np.isfinite(loss), row
    loss, grad = softmax_cross_entropy(np.array([[-np.inf, 1.0, 2.0]]), [2])
    assert np.isfinite(loss) and np.isfinite(grad).all() and grad[0, 0] == 0.0


# ------------------------------------------------------------------------------------
# Element-wise losses: sigmoid cross-entropy (multilabel), squared error, Huber
# ------------------------------------------------------------------------------------
def _huber_wide(pred, y, sample_weight=None):
    return huber(pred, y, sample_weight, delta=0.7)


ELEMENTWISE = {
    "sigmoid_cross_entropy": sigmoid_cross_entropy,
    "squared_error": squared_error,
    "huber": _huber_wide,
}


def _targets(name, rng, shape):
    if name == "sigmoid_cross_entropy":
        return rng.randint(0, 2, size=shape).astype(np.float64)
    return rng.normal(size=shape)


def _reference(name, z, y, w):
    """The definitions, per value, in float64: loss and gradient."""
    w = np.ones(len(z)) if w is None else np.asarray(w, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    if name == "sigmoid_cross_entropy":
        p = 1 / (1 + np.exp(-z))
        per, d = -y * np.log(p) - (1 - y) * np.log(1 - p), p - y
    elif name == "squared_error":
        per, d = 0.5 * (z - y) ** 2, z - y
    else:
        r = z - y
        per = np.where(np.abs(r) <= 0.7, 0.5 * r**2, 0.7 * (np.abs(r) - 0.35))
        d = np.clip(r, -0.7, 0.7)
    return (w * per.sum(axis=1)).sum() / w.sum(), d * (w / w.sum())[:, None]


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("weighted", [False, True])
def test_elementwise_losses_match_their_definition(name, dtype, weighted):
    rng = np.random.RandomState(5)
    z = rng.normal(scale=2.0, size=(9, 3)).astype(dtype)
    y = _targets(name, rng, (9, 3))
    w = rng.uniform(0.0, 3.0, size=9) if weighted else None
    loss, grad = ELEMENTWISE[name](z, y, w)
    loss_ref, grad_ref = _reference(name, z, y, w)
    assert isinstance(loss, float)
    assert grad.dtype == dtype and grad.shape == z.shape  # float32 stays float32
    # The loss is summed in float64 from the (exact) float64 values of z.
    assert loss == pytest.approx(loss_ref, rel=1e-12)
    rtol = 2.0**-24 if dtype == np.float32 else 1e-12  # one rounding to float32
    np.testing.assert_allclose(grad, grad_ref, rtol=rtol, atol=1e-15)


@pytest.mark.parametrize("name", ELEMENTWISE)
@pytest.mark.parametrize("weighted", [False, True])
def test_elementwise_gradients_match_central_differences(name, weighted):
    rng = np.random.RandomState(6)
    z = rng.normal(scale=2.0, size=(6, 4))
    y = _targets(name, rng, (6, 4))
    if name == "huber":  # keep every residual away from the kinks at +-delta
        r = z - y
        z[np.abs(np.abs(r) - 0.7) < 0.05] += 0.2
    w = rng.uniform(0.1, 3.0, size=6) if weighted else None
    loss_fn = ELEMENTWISE[name]
    _, grad = loss_fn(z, y, w)
    numeric = central_differences(lambda: loss_fn(z, y, w)[0], z, 1e-6)
    np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-9)


def test_sigmoid_cross_entropy_is_mlp_classifiers_multilabel_loss():
    # MLPClassifier's multilabel loss (binary_log_loss: mean over the samples, sum
    # over the labels) and its output delta (p - y) * w / sum(w).
    from sklearn.neural_network._base import binary_log_loss

    rng = np.random.RandomState(7)
    z = rng.normal(size=(8, 3))
    y = rng.randint(0, 2, size=(8, 3))
    w = rng.uniform(0.5, 2.0, size=8)
    p = sigmoid(z)
    for weights in (None, w):
        loss, grad = sigmoid_cross_entropy(z, y, weights)
        assert loss == pytest.approx(binary_log_loss(y, p, weights), rel=1e-12)
        scale = np.ones(8) if weights is None else weights
        np.testing.assert_allclose(grad, (p - y) * (scale / scale.sum())[:, None],
                                   rtol=1e-12)


def test_squared_error_is_what_mlp_regressor_descends():
    # MLPRegressor's output delta is (p - y) * w / sum(w) for every target: the
    # gradient of the loss summed over the targets. Its reported squared_loss averages
    # over the targets instead, so it is this loss divided by n_targets.
    from sklearn.neural_network._base import squared_loss

    rng = np.random.RandomState(8)
    z = rng.normal(size=(10, 3))
    y = rng.normal(size=(10, 3))
    w = rng.uniform(0.5, 2.0, size=10)
    for weights in (None, w):
        loss, grad = squared_error(z, y, weights)
        assert loss == pytest.approx(3 * squared_loss(y, z, weights), rel=1e-12)
        scale = np.ones(10) if weights is None else weights
        np.testing.assert_allclose(grad, (z - y) * (scale / scale.sum())[:, None],
                                   rtol=1e-12)
    # One target: the very value MLPRegressor reports.
    loss, _ = squared_error(z[:, :1], y[:, 0])
    assert loss == pytest.approx(squared_loss(y[:, :1], z[:, :1]), rel=1e-12)


def test_huber_is_squared_error_within_delta_and_linear_beyond():
    z = np.array([[0.1], [-0.3], [5.0], [-7.0]])
    y = np.zeros(4)
    loss_small, grad_small = huber(z[:2], y[:2], delta=1.0)
    expected_small = squared_error(z[:2], y[:2])
    assert loss_small == expected_small[0]
    np.testing.assert_array_equal(grad_small, expected_small[1])
    loss, grad = huber(z, y, delta=2.0)
    assert loss == pytest.approx((0.005 + 0.045 + 2 * 4.0 + 2 * 6.0) / 4, rel=1e-12)
    # An outlier pulls with at most delta (divided by the batch weight).
    np.testing.assert_allclose(grad[:, 0], [0.1 / 4, -0.3 / 4, 2.0 / 4, -2.0 / 4])
    with pytest.raises(ValueError, match="delta must be positive"):
        huber(z, y, delta=0.0)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_weight_two_equals_a_duplicated_sample(name):
    rng = np.random.RandomState(9)
    z = rng.normal(size=(5, 2))
    y = _targets(name, rng, (5, 2))
    w = np.ones(5)
    w[3] = 2.0
    loss_w, grad_w = ELEMENTWISE[name](z, y, w)
    loss_dup, grad_dup = ELEMENTWISE[name](np.vstack([z, z[3:4]]), np.vstack([y, y[3:4]]))
    assert loss_w == pytest.approx(loss_dup, rel=1e-12)
    expected = grad_dup[:5].copy()
    expected[3] += grad_dup[5]
    np.testing.assert_allclose(grad_w, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_zero_total_weight_and_no_samples(name):
    z = np.array([[1.0, -2.0], [0.5, 3.0]])
    loss, grad = ELEMENTWISE[name](z, np.ones((2, 2)), [0.0, 0.0])
    assert loss == 0.0
    np.testing.assert_array_equal(grad, 0.0)
    loss, grad = ELEMENTWISE[name](np.empty((0, 2)), np.empty((0, 2)))
    assert loss == 0.0 and grad.shape == (0, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_cross_entropy_extreme_logits_are_finite_and_silent(dtype):
    z = np.array([[1e4, -1e4], [-1e4, 1e4], [0.0, 30.0]], dtype=dtype)
    y = np.array([[1, 0], [1, 0], [1, 1]])
    p = _silently(sigmoid, z)
    loss, grad = _silently(sigmoid_cross_entropy, z, y)
    assert p.dtype == grad.dtype == dtype
    assert np.all(np.isfinite(p)) and np.all(np.isfinite(grad)) and np.isfinite(loss)
    # Row 0 surely right (0), row 1 wrong by 1e4 twice, row 2: log 2 + log1p(e^-30).
    expected = (0.0 + 2e4 + np.log(2.0) + np.log1p(np.exp(-30.0))) / 3
    assert loss == pytest.approx(expected, rel=1e-12)
    # Even an infinite logit on the right side costs nothing.
    inf = np.array([[np.inf, -np.inf]], dtype=dtype)
    assert _silently(sigmoid_cross_entropy, inf, [[1, 0]])[0] == 0.0


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_non_finite_outputs_make_a_non_finite_loss(name):
    # The estimators stop on a non-finite loss: NaN and +-inf outputs that are wrong
    # must give one.
    for value, target in [(np.nan, 0.0), (np.nan, 1.0), (np.inf, 0.0), (-np.inf, 1.0)]:
        z = np.array([[value], [0.5]])
        with np.errstate(invalid="ignore"):
            loss, _ = ELEMENTWISE[name](z, np.array([[target], [1.0]]))
        assert not np.isfinite(loss), (value, target)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_shapes_and_errors(name):
    loss_fn = ELEMENTWISE[name]
    z = np.zeros((3, 1))
    # A 1-D y goes with a single output column.
    assert loss_fn(z, np.ones(3))[0] == loss_fn(z, np.ones((3, 1)))[0]
    with pytest.raises(ValueError, match="must have the shape of"):
        loss_fn(np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="must have shape \\(n_samples, n_outputs\\)"):
        loss_fn(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        loss_fn(z, np.ones(3), [1.0, 2.0])
    z0 = np.array([[1.0, -2.0]])
    loss_fn(z0, np.array([[1.0, 0.0]]))
    np.testing.assert_array_equal(z0, [[1.0, -2.0]])  # not modified
