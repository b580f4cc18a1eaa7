"""Tests of batch normalisation: the ops (``skconv._ops.norm``, kernels in
``skconv/_kernels/norm.pyx``) against a slow numpy twin, central differences in
float64, bitwise thread invariance, and the engine's ``BatchNorm`` layer (running
averages, inference, state, gradients through a network)."""

import numpy as np
import pytest

from skconv._nn.layers import Activation, BatchNorm, Conv, Dense, Flatten, Pool
from skconv._nn.network import Network
from skconv._ops.loss import softmax_cross_entropy
from skconv._ops.norm import (batch_norm_backward, batch_norm_count, batch_norm_inference,
                              batch_norm_train)

try:  # tests/ imported as a package or as a path
    from ._finite_differences import central_differences
except ImportError:
    from _finite_differences import central_differences

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1), (7, 3), (4, 5, 9), (3, 2, 5, 6), (2, 3, 3, 4, 2), (16, 6, 14, 14)]


def _reference_train(x, gamma, beta, eps):
    """The textbook formulas in float64, axis by axis (the slow twin)."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(shape)) ** 2).mean(axis=axes)
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), x_hat, mean, var


def _problem(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 3 + 1).astype(dtype)
    c = shape[1]
    gamma = rng.uniform(0.5, 2.0, c).astype(dtype)
    beta = rng.standard_normal(c).astype(dtype)
    return x, gamma, beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_train_forward_matches_the_formulas(shape, dtype):
    x, gamma, beta = _problem(shape, dtype)
    y, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta, eps=1e-3)
    ref_y, ref_hat, ref_mean, ref_var = _reference_train(x, gamma.astype(float),
                                                         beta.astype(float), 1e-3)
    tol = 2e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype and x_hat.dtype == dtype and y.shape == shape
    np.testing.assert_allclose(y, ref_y, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(x_hat, ref_hat, rtol=tol, atol=tol * 10)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(ref_var + 1e-3), rtol=1e-12)


@pytest.mark.parametrize("shape", [(5, 3), (4, 2, 7), (3, 2, 4, 5), (2, 2, 3, 3, 2)])
def test_gradients_match_central_differences(shape):
    x, gamma, beta = _problem(shape, np.float64, seed=1)
    weights = np.random.default_rng(2).standard_normal(shape)

    def loss():
        return float((batch_norm_train(x, gamma, beta)[0] * weights).sum())

    _, x_hat, _, _, inv_std = batch_norm_train(x, gamma, beta)
    grad_x, grad_gamma, grad_beta = batch_norm_backward(weights, x_hat, gamma, inv_std)
    for analytic, wrt in ((grad_x, x), (grad_gamma, gamma), (grad_beta, beta)):
        numeric = central_differences(loss, wrt, 1e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_results_are_bitwise_the_same_for_any_thread_count(dtype, weighted, monkeypatch):
    # n_jobs is capped at the usable cores: pretend to have more, so that 3 threads
    # run on a two-core machine too.
    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    x, gamma, beta = _problem((9, 7, 6, 5), dtype, seed=3)
    grad = np.random.default_rng(4).standard_normal(x.shape).astype(dtype)
    w = np.random.default_rng(14).choice([0.0, 0.5, 1.0, 2.0, 3.3], 9) if weighted else (
        None)
    results = []
    for n_jobs in (1, 2, 3):
        y, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta, sample_weight=w,
                                                        n_jobs=n_jobs)
        grads = batch_norm_backward(grad, x_hat, gamma, inv_std, sample_weight=w,
                                    n_jobs=n_jobs)
        assert y.dtype == dtype and grads[0].dtype == dtype
        infer = batch_norm_inference(x, gamma, beta, mean, var, n_jobs=n_jobs)
        results.append((y, x_hat, mean, var, inv_std, *grads, infer))
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES)
def test_inference_uses_the_given_statistics(dtype):
    x, gamma, beta = _problem((6, 4, 3, 3), dtype, seed=5)
    mean = np.array([0.5, -1.0, 2.0, 0.0])
    var = np.array([1.0, 4.0, 0.25, 9.0])
    y = batch_norm_inference(x, gamma, beta, mean, var, eps=1e-5)
    shape = (1, -1, 1, 1)
    expected = ((x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + 1e-5)
                * gamma.reshape(shape) + beta.reshape(shape))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    assert y.dtype == dtype
    np.testing.assert_allclose(y, expected, rtol=tol, atol=tol)
    assert batch_norm_inference(x[:0], gamma, beta, mean, var).shape == (0, 4, 3, 3)


def test_bad_arguments_name_themselves():
    x, gamma, beta = _problem((4, 3, 5), np.float64)
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\)"):
        batch_norm_train(x, gamma[:2], beta)
    with pytest.raises(ValueError, match="N >= 1"):
        batch_norm_train(x[:0], gamma, beta)
    with pytest.raises(ValueError, match="eps must be a positive"):
        batch_norm_train(x, gamma, beta, eps=0.0)
    _, x_hat, _, _, inv_std = batch_norm_train(x, gamma, beta)
    with pytest.raises(ValueError, match="grad_y must have the shape of x_hat"):
        batch_norm_backward(np.ones((4, 3, 4)), x_hat, gamma, inv_std)
    with pytest.raises(ValueError, match="must not share memory"):
        batch_norm_train(x, gamma, beta, out=(x, np.empty_like(x)))


# -------------------------------------------------------------------------------------
# Sample-weighted statistics (frequency weights: weight 2 = the row twice)
# -------------------------------------------------------------------------------------
def _weighted_problem(seed):
    """A random configuration: shape (1 to 3 spatial axes, or none), weights with
    zeros, ones and non-integers, gamma, beta and an upstream gradient."""
    rng = np.random.default_rng(100 + seed)
    n_axes = int(rng.integers(0, 4))
    shape = (int(rng.integers(1, 7)), int(rng.integers(1, 5))) + tuple(
        int(v) for v in rng.integers(1, 5, n_axes))
    x = rng.standard_normal(shape) * rng.uniform(0.5, 3) + rng.uniform(-2, 2)
    weights = rng.choice([0.0, 1.0, 2.0, 0.3, 1.7], shape[0])
    weights[rng.integers(shape[0])] = rng.uniform(0.5, 3)  # a positive sum
    c = shape[1]
    gamma, beta = rng.uniform(0.5, 2.0, c), rng.standard_normal(c)
    return x, weights, gamma, beta, rng.standard_normal(shape)


def _reference_weighted_train(x, gamma, beta, eps, w):
    """The weighted formulas in float64, axis by axis (the slow twin)."""
    x = x.astype(np.float64)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    cells = np.broadcast_to(w.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    count = cells.sum(axis=axes)
    mean = (cells * x).sum(axis=axes) / count
    var = (cells * (x - mean.reshape(shape)) ** 2).sum(axis=axes) / count
    x_hat = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps)
    return gamma.reshape(shape) * x_hat + beta.reshape(shape), x_hat, mean, var


def _reference_weighted_backward(grad_y, x, gamma, eps, w):
    """The textbook staged backward (through x_hat, var and mean in turn), weighted."""
    _, x_hat, mean, var = _reference_weighted_train(x, gamma, 0 * gamma, eps, w)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    cells = np.broadcast_to(w.reshape((-1,) + (1,) * (x.ndim - 1)), x.shape)
    count = cells.sum(axis=axes).reshape(shape)
    centred = x - mean.reshape(shape)
    std = np.sqrt(var.reshape(shape) + eps)
    grad_hat = grad_y * gamma.reshape(shape)
    grad_var = (grad_hat * centred).sum(axis=axes).reshape(shape) * -0.5 / std ** 3
    grad_mean = (-grad_hat / std).sum(axis=axes).reshape(shape) + grad_var * (
        -2 * (cells * centred).sum(axis=axes).reshape(shape) / count)
    grad_x = (grad_hat / std + grad_var * 2 * cells * centred / count
              + grad_mean * cells / count)
    return grad_x, (grad_y * x_hat).sum(axis=axes), grad_y.sum(axis=axes)


@pytest.mark.parametrize("seed", range(40))
def test_weighted_statistics_and_gradients_match_the_slow_twin(seed):
    x, w, gamma, beta, grad_y = _weighted_problem(seed)
    y, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta, eps=1e-3,
                                                    sample_weight=w)
    ref_y, ref_hat, ref_mean, ref_var = _reference_weighted_train(x, gamma, beta, 1e-3, w)
    np.testing.assert_allclose(y, ref_y, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(x_hat, ref_hat, rtol=1e-11, atol=1e-11)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(var, ref_var, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(inv_std, 1 / np.sqrt(ref_var + 1e-3), rtol=1e-11)
    grads = batch_norm_backward(grad_y, x_hat, gamma, inv_std, sample_weight=w)
    for got, want in zip(grads, _reference_weighted_backward(grad_y, x, gamma, 1e-3, w)):
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", range(8))
def test_weighted_gradients_match_central_differences(seed):
    x, w, gamma, beta, grad_y = _weighted_problem(seed)
    # The loss weighs its rows as a weighted loss does: a zero-weight row's upstream
    # gradient is 0, and the statistics must not see the row either.
    grad_y = grad_y * w.reshape((-1,) + (1,) * (x.ndim - 1))

    def loss():
        return float((batch_norm_train(x, gamma, beta, sample_weight=w)[0]
                      * grad_y).sum())

    _, x_hat, _, _, inv_std = batch_norm_train(x, gamma, beta, sample_weight=w)
    grads = batch_norm_backward(grad_y, x_hat, gamma, inv_std, sample_weight=w)
    for analytic, wrt in zip(grads, (x, gamma, beta)):
        numeric = central_differences(loss, wrt, 1e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
    assert not grads[0][w == 0].any()


def _duplicated(w):
    """Rows (indices) that repeat row n w[n] times (integer weights)."""
    return np.repeat(np.arange(w.shape[0]), w.astype(int))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 3), (5, 4, 7), (4, 2, 3, 5), (3, 2, 2, 3, 2)])
def test_weight_two_is_the_row_twice_and_weight_zero_no_row(shape, dtype):
    x, gamma, beta = _problem(shape, dtype, seed=11)
    w = np.resize([2.0, 0.0, 1.0, 3.0], shape[0])
    rows = _duplicated(w)
    # The upstream gradient of a weighted loss: row n's is the sum of its copies'.
    copies = np.random.default_rng(12).standard_normal((rows.size,) + shape[1:]).astype(
        dtype)
    grad_y = np.zeros(shape, dtype)
    np.add.at(grad_y, rows, copies)
    y, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta, sample_weight=w)
    dup = batch_norm_train(x[rows], gamma, beta)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12,
                                                                      atol=1e-12)
    np.testing.assert_allclose(mean, dup[2], **tol)
    np.testing.assert_allclose(var, dup[3], **tol)
    np.testing.assert_allclose(y[rows], dup[0], **tol)
    per_channel = (1, -1) + (1,) * (x.ndim - 2)  # the removed row is normalised too
    np.testing.assert_allclose(x_hat[w == 0], ((x - mean.reshape(per_channel))
                                               * inv_std.reshape(per_channel))[w == 0],
                               **tol)
    grads = batch_norm_backward(grad_y, x_hat, gamma, inv_std, sample_weight=w)
    dup_grads = batch_norm_backward(copies, dup[1], gamma, dup[4])
    summed = np.zeros(shape)
    np.add.at(summed, rows, dup_grads[0])  # x feeds each of its copies
    np.testing.assert_allclose(grads[0][w > 0], summed[w > 0], **tol)
    np.testing.assert_array_equal(grads[0][w == 0], 0)
    for got, want in zip(grads[1:], dup_grads[1:]):
        np.testing.assert_allclose(got, want, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
def test_weights_of_one_match_no_weights(dtype):
    x, gamma, beta = _problem((5, 3, 4, 4), dtype, seed=16)
    grad = np.random.default_rng(17).standard_normal(x.shape).astype(dtype)
    plain = batch_norm_train(x, gamma, beta)
    ones = batch_norm_train(x, gamma, beta, sample_weight=np.ones(5))
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-12,
                                                                      atol=1e-12)
    for a, b in zip(plain, ones):
        np.testing.assert_allclose(a, b, **tol)
    for a, b in zip(batch_norm_backward(grad, plain[1], gamma, plain[4]),
                    batch_norm_backward(grad, ones[1], gamma, ones[4],
                                        sample_weight=np.ones(5))):
        np.testing.assert_allclose(a, b, **tol)
    assert batch_norm_count(x.shape) == 80
    assert batch_norm_count(x.shape, [0.5, 1, 0, 2, 1]) == 4.5 * 16


def test_bad_weights_name_themselves():
    x, gamma, beta = _problem((4, 3, 5), np.float64)
    _, x_hat, _, _, inv_std = batch_norm_train(x, gamma, beta)
    for bad, message in (([1.0, 2.0], r"sample_weight must have shape \(4,\)"),
                         (np.ones((4, 1)), r"sample_weight must have shape \(4,\)"),
                         ([1, -1, 1, 1], "finite and non-negative"),
                         ([1, np.nan, 1, 1], "finite and non-negative"),
                         ([0, 0, 0, 0], "positive sum"),
                         (["a", "b", "c", "d"], "array of numbers")):
        with pytest.raises(ValueError, match=message):
            batch_norm_train(x, gamma, beta, sample_weight=bad)
        with pytest.raises(ValueError, match=message):
            batch_norm_backward(x, x_hat, gamma, inv_std, sample_weight=bad)


def _bn_layer(shape, momentum=0.1):
    layer = BatchNorm(momentum=momentum)
    layer.initialize(shape, np.random.RandomState(0), np.float64)
    return layer


def test_layer_keeps_running_averages_as_pytorch_does():
    layer = _bn_layer((3, 4))
    rng = np.random.default_rng(6)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for _ in range(3):
        x = rng.standard_normal((5, 3, 4)) * 2 + 1
        layer.forward(x, 1, training=True)
        layer.backward(np.ones_like(x), 1, False)
        mean = x.mean(axis=(0, 2))
        var = x.var(axis=(0, 2), ddof=1)
        running_mean = 0.9 * running_mean + 0.1 * mean
        running_var = 0.9 * running_var + 0.1 * var
    np.testing.assert_allclose(layer.buffers[0], running_mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers[1], running_var, rtol=1e-12)
    # Inference normalises with them, and changes nothing.
    x = rng.standard_normal((2, 3, 4))
    y = layer.forward(x, 1, training=False)
    expected = batch_norm_inference(x, *layer.params, *layer.buffers)
    np.testing.assert_array_equal(y, expected)
    np.testing.assert_allclose(layer.buffers[0], running_mean, rtol=1e-12)


def _network(dense_bn=True, dtype=np.float64):
    layers = [Conv(3, 3, padding="same", init="he_uniform"), BatchNorm(),
              Activation("tanh"), Pool(2, mode="avg"), Flatten(), Dense(5)]
    if dense_bn:
        layers += [BatchNorm(), Activation("tanh")]
    layers.append(Dense(3))
    net = Network(layers)
    net.initialize((2, 6, 6), np.random.RandomState(0), dtype)
    return net


def test_network_gradients_through_batch_norm_match_central_differences():
    net = _network()
    rng = np.random.default_rng(7)
    x = rng.standard_normal((6, 2, 6, 6))
    y = np.arange(6) % 3
    for param in net.params:  # gamma and beta away from their initial 1 and 0
        param[...] += rng.uniform(-0.3, 0.3, param.shape)
    buffers = [b for layer in net.layers for b in layer.buffers]
    saved = [b.copy() for b in buffers]

    def loss():
        for b, s in zip(buffers, saved):  # the training forward moves the averages
            b[...] = s
        return softmax_cross_entropy(net.forward(x, 1, training=True), y)[0]

    logits = net.forward(x, 1, training=True)
    _, grad = softmax_cross_entropy(logits, y)
    net.backward(grad, 1)
    analytic = [g.copy() for g in net.grads]
    for g, p in zip(analytic, net.params):
        numeric = central_differences(loss, p, 1e-6)
        np.testing.assert_allclose(g, numeric, rtol=1e-5, atol=1e-8)


def test_state_carries_the_running_averages():
    net = _network()
    x = np.random.default_rng(8).standard_normal((4, 2, 6, 6))
    state = net.get_state()
    assert len(state) == len(net.params) + 4  # two BatchNorm layers, two buffers each
    net.forward(x, 1, training=True)
    moved = [layer.buffers[0].copy() for layer in net.layers if layer.buffers]
    net.set_state(state)
    restored = [layer.buffers[0] for layer in net.layers if layer.buffers]
    assert not np.array_equal(moved[0], restored[0])
    np.testing.assert_array_equal(restored[0], 0.0)


def test_network_with_batch_norm_is_bitwise_the_same_for_any_thread_count():
    x = np.random.default_rng(9).standard_normal((8, 2, 6, 6))
    y = np.arange(8) % 3
    runs = []
    for n_jobs in (1, 2):
        net = _network()
        logits = net.forward(x, n_jobs, training=True)
        net.backward(softmax_cross_entropy(logits, y)[1], n_jobs)
        runs.append([logits] + [g.copy() for g in net.grads]
                    + [b.copy() for layer in net.layers for b in layer.buffers])
    for a, b in zip(*runs):
        np.testing.assert_array_equal(a, b)

def test_layer_weighs_rows_in_its_running_averages():
    layer = _bn_layer((3, 4))
    rng = np.random.default_rng(18)
    x = rng.standard_normal((5, 3, 4)) * 2 + 1
    w = np.array([2.0, 0.0, 1.0, 0.5, 1.5])
    layer.row_weights = w
    layer.forward(x, 1, training=True)
    assert layer.row_weights is None  # taken by the forward
    layer.backward(np.ones_like(x), 1, True)
    cells = np.broadcast_to(w[:, None, None], x.shape)
    count = 5.0 * 4  # sum(w) * cells: frequency weights
    mean = (cells * x).sum(axis=(0, 2)) / count
    var = (cells * (x - mean[:, None]) ** 2).sum(axis=(0, 2)) / (count - 1)
    np.testing.assert_allclose(layer.buffers[0], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.buffers[1], 0.9 + 0.1 * var, rtol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_network_weight_two_trains_as_the_row_twice(dtype):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((6, 2, 6, 6)).astype(dtype)
    y = np.arange(6) % 3
    w = np.array([2.0, 1.0, 0.0, 1.0, 3.0, 1.0])
    rows = _duplicated(w)
    runs = []
    for x_run, y_run, w_run in ((x, y, w), (x[rows], y[rows], None)):
        net = _network(dtype=dtype)
        logits = net.forward(x_run, 1, training=True, sample_weight=w_run)
        net.backward(softmax_cross_entropy(logits, y_run, w_run)[1], 1)
        runs.append([g.copy() for g in net.grads]
                    + [b.copy() for layer in net.layers for b in layer.buffers])
    tol = dict(rtol=2e-4, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-10,
                                                                      atol=1e-12)
    for a, b in zip(*runs):
        np.testing.assert_allclose(a, b, **tol)



# -------------------------------------------------------------------------------------
# Dropout (a regulariser beside batch normalisation in the engine)
# -------------------------------------------------------------------------------------
from skconv._nn.layers import Dropout  # noqa: E402


def _dropout(shape, rate, spatial=False, seed=0, dtype=np.float64):
    layer = Dropout(rate, spatial=spatial)
    layer.initialize(shape, np.random.RandomState(seed), dtype)
    return layer


@pytest.mark.parametrize("spatial", [False, True])
def test_dropout_zeroes_and_rescales_from_the_random_state(spatial):
    shape = (4, 50, 30)
    x = np.random.default_rng(10).standard_normal((64,) + shape) + 3
    layer = _dropout(shape, 0.25, spatial=spatial, seed=3)
    y = layer.forward(x, 1, training=True)
    kept = y != 0
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-15)
    assert abs(kept.mean() - 0.75) < 0.02
    if spatial:  # whole channels: every cell of a (sample, channel) map alike
        assert np.all(kept.all(axis=(2, 3)) | (~kept).all(axis=(2, 3)))
    # The same seed gives the same mask; the backward applies it.
    again = _dropout(shape, 0.25, spatial=spatial, seed=3).forward(x, 2, training=True)
    np.testing.assert_array_equal(again, y)
    grad = layer.backward(np.ones_like(x), 1, True)
    np.testing.assert_array_equal(grad, (kept / 0.75))


def test_dropout_passes_inference_through_and_rejects_bad_rates():
    x = np.random.default_rng(11).standard_normal((3, 5))
    layer = _dropout((5,), 0.5)
    assert layer.forward(x, 1, training=False) is x
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        _dropout((5,), 1.0)
    with pytest.raises(ValueError, match="spatial dropout needs"):
        _dropout((5,), 0.5, spatial=True)
