"""Batch normalisation with the relu after it in one pass: the ops' ``relu`` and
``relu_output`` (``skconv._ops.norm.batch_norm_train`` and ``batch_norm_backward``)
against the op then numpy's relu, bit for bit; central differences in float64; the
prepared op ``NormBlock`` against the ops; and networks whose conv blocks put batch
norm after the pooling (``batch_norm_position='after_pool'``) against their
layer-by-layer plan."""

import numpy as np
import pytest

from skconv._nn.activations import relu_backward
from skconv._nn.layers import Activation, BatchNorm, Conv, Pool
from skconv._nn.lenet import build_lenet5
from skconv._nn.network import NormPoolStep, NormStep
from skconv._ops.norm import (NormBlock, batch_norm_backward, batch_norm_inference,
                              batch_norm_train)

try:  # tests/ imported as a package or as a path
    from ._bitwise import (assert_bitwise_equal, assert_block_gradients,
                           assert_network_is_the_layer_by_layer_network)
    from ._finite_differences import central_differences
except ImportError:
    from _bitwise import (assert_bitwise_equal, assert_block_gradients,
                          assert_network_is_the_layer_by_layer_network)
    from _finite_differences import central_differences

DTYPES = (np.float32, np.float64)


def _random_cases(n_cases, seed):
    """Dense (N, C) batches, whose statistics run down the columns, and maps of 1 to 3
    spatial axes (row by row), with and without row weights; some with integer
    values, so that normalised cells land exactly on 0 (the relu's edge)."""
    rng = np.random.RandomState(seed)
    cases = []
    for i in range(n_cases):
        spatial = tuple(int(s) for s in rng.randint(1, 12, size=i % 4))
        cases.append(dict(shape=(int(rng.randint(1, 10)), int(rng.randint(1, 80 if not
                                                                         spatial else 6)))
                          + spatial,
                          weighted=bool(rng.rand() < 0.4), ties=bool(rng.rand() < 0.3)))
    return cases


def _problem(case, dtype, seed=1):
    rng = np.random.RandomState(seed)
    shape = case["shape"]
    if case["ties"]:
        x = rng.randint(-2, 3, size=shape).astype(dtype)
    else:
        x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    gamma = rng.uniform(-1.5, 1.5, shape[1]).astype(dtype)  # some negative
    beta = (rng.normal(size=shape[1]) if not case["ties"]
            else np.zeros(shape[1])).astype(dtype)
    weights = None
    if case["weighted"]:
        weights = rng.randint(0, 3, shape[0]).astype(float)
        weights[0] = max(weights[0], 1.0)
    return x, gamma, beta, weights, rng.normal(size=shape).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _random_cases(40, 0))
def test_relu_in_the_pass_is_the_op_then_the_relu_bit_for_bit(case, dtype):
    x, gamma, beta, weights, grad_y = _problem(case, dtype)
    for n_jobs in (1, 2):
        z, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta,
                                                        sample_weight=weights,
                                                        n_jobs=n_jobs)
        expected = np.maximum(z, 0.0)
        y, x_hat2, mean2, var2, inv_std2 = batch_norm_train(
            x, gamma, beta, sample_weight=weights, n_jobs=n_jobs, relu=True)
        assert_bitwise_equal(y, expected, "output")
        for got, want, what in ((x_hat2, x_hat, "x_hat"), (mean2, mean, "mean"),
                                (var2, var, "var"), (inv_std2, inv_std, "inv_std")):
            assert_bitwise_equal(got, want, what)
        want = batch_norm_backward(relu_backward(expected, grad_y), x_hat, gamma, inv_std,
                                   sample_weight=weights, n_jobs=n_jobs)
        got = batch_norm_backward(grad_y, x_hat, gamma, inv_std, sample_weight=weights,
                                  n_jobs=n_jobs, relu_output=y)
        for g, w, what in zip(got, want, ("grad_x", "grad_gamma", "grad_beta")):
            assert_bitwise_equal(g, w, what)
        # Without the input gradient, the parameters' are the same.
        grad_x, grad_gamma, grad_beta = batch_norm_backward(
            grad_y, x_hat, gamma, inv_std, sample_weight=weights, n_jobs=n_jobs,
            relu_output=y, compute_grad_x=False)
        assert grad_x is None
        assert_bitwise_equal(grad_gamma, want[1], "grad_gamma alone")
        assert_bitwise_equal(grad_beta, want[2], "grad_beta alone")


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_keeps_nan_and_numpys_signed_zeros(dtype):
    # numpy.maximum(v, 0) keeps NaN and makes every negative and -0.0 +0; the relu
    # in the pass must give the same bits. A NaN input makes its channel's
    # statistics NaN; beta = -0.0 with gamma = 0 makes -0.0 before the relu.
    x = np.array([[1.0, -2.0, np.nan], [3.0, 0.5, 1.0], [-1.0, 4.0, 2.0]], dtype=dtype)
    gamma = np.array([0.0, 1.0, 1.0], dtype=dtype)
    beta = np.array([-0.0, 0.0, 0.0], dtype=dtype)
    for shape in ((3, 3), (3, 3, 1)):
        xs = x.reshape(shape)
        z = batch_norm_train(xs, gamma, beta)[0]
        y = batch_norm_train(xs, gamma, beta, relu=True)[0]
        assert_bitwise_equal(y, np.maximum(z, 0.0), f"relu of {shape}")
        assert np.signbit(z[:, 0]).any() and not np.signbit(y[:, 0]).any()
        assert np.isnan(y[:, 2]).all()


@pytest.mark.parametrize("shape", [(6, 4), (5, 2, 7), (4, 2, 3, 5)])
def test_relu_gradients_match_central_differences(shape):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 2 + 0.3
    gamma = rng.uniform(0.5, 2.0, shape[1])
    beta = rng.standard_normal(shape[1]) * 0.3
    weights = rng.standard_normal(shape)

    def loss():
        return float((batch_norm_train(x, gamma, beta, relu=True)[0] * weights).sum())

    y, x_hat, _, _, inv_std = batch_norm_train(x, gamma, beta, relu=True)
    # Away from the relu's kink, where the central difference is the derivative.
    assert np.abs(batch_norm_train(x, gamma, beta)[0]).min() > 1e-4
    grad_x, grad_gamma, grad_beta = batch_norm_backward(weights, x_hat, gamma, inv_std,
                                                        relu_output=y)
    for analytic, wrt in ((grad_x, x), (grad_gamma, gamma), (grad_beta, beta)):
        numeric = central_differences(loss, wrt, 1e-6)
        np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)


def test_relu_output_must_match_the_batch():
    x = np.random.default_rng(0).standard_normal((4, 3, 5))
    y, x_hat, _, _, inv_std = batch_norm_train(x, np.ones(3), np.zeros(3), relu=True)
    with pytest.raises(ValueError, match=r"relu_output must have the shape of x_hat "
                                         r"\(4, 3, 5\), got shape \(4, 3, 4\)"):
        batch_norm_backward(x, x_hat, np.ones(3), inv_std, relu_output=y[..., :4])
    grad_x = np.empty_like(x)
    with pytest.raises(ValueError, match="must not share memory with the inputs"):
        batch_norm_backward(x, x_hat, np.ones(3), inv_std, relu_output=grad_x,
                            out=(grad_x, np.empty(3), np.empty(3)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("case", _random_cases(16, 7))
def test_block_is_the_ops_bit_for_bit(case, relu, dtype):
    x, gamma, beta, weights, grad_y = _problem(case, dtype, seed=2)
    block = NormBlock(case["shape"][1:], relu, dtype)
    assert block.output_shape == block.input_shape == case["shape"][1:]
    for n_jobs in (1, 2):
        y_op, x_hat, mean_op, var_op, inv_std = batch_norm_train(
            x, gamma, beta, sample_weight=weights, n_jobs=n_jobs, relu=relu)
        y, mean, var = block.forward_train(x, gamma, beta, eps=1e-5,
                                           sample_weight=weights, n_threads=n_jobs)
        assert_bitwise_equal(y, y_op, "output")
        assert_bitwise_equal(mean, mean_op, "mean")
        assert_bitwise_equal(var, var_op, "var")
        want = batch_norm_backward(grad_y, x_hat, gamma, inv_std, sample_weight=weights,
                                   n_jobs=n_jobs, relu_output=y_op if relu else None)
        assert_block_gradients(
            block, lambda: block.forward_train(x, gamma, beta, eps=1e-5,
                                               sample_weight=weights, n_threads=n_jobs),
            grad_y, gamma, n_jobs, want)
        running_mean = np.linspace(-1, 1, x.shape[1])
        running_var = np.linspace(0.5, 2, x.shape[1])
        z = batch_norm_inference(x, gamma, beta, running_mean, running_var)
        assert_bitwise_equal(block.infer(x, gamma, beta, running_mean, running_var,
                                         eps=1e-5, n_threads=n_jobs),
                             np.maximum(z, 0.0) if relu else z, "inference")


@pytest.mark.parametrize("relu", [False, True])
def test_block_takes_its_own_outputs_back(relu):
    # Its outputs are workspaces: given back as inputs, they are read before the
    # block overwrites them, as the ops would read fresh arrays.
    rng = np.random.RandomState(3)
    x = rng.normal(size=(5, 3, 4)).astype(np.float32)
    gamma, beta = rng.normal(size=(2, 3)).astype(np.float32)
    block = NormBlock((3, 4), relu, np.float32)
    y = block.forward_train(x, gamma, beta, eps=1e-5)[0]
    first = y.copy()
    want = batch_norm_train(first, gamma, beta, relu=relu)
    got = block.forward_train(y, gamma, beta, eps=1e-5)[0]
    assert_bitwise_equal(got, want[0], "forward of its own output")
    grad_x = block.backward(rng.normal(size=y.shape).astype(np.float32), gamma)[0]
    block.forward_train(first, gamma, beta, eps=1e-5)
    expected = batch_norm_backward(grad_x.copy(), want[1], gamma, want[4],
                                   relu_output=want[0] if relu else None)
    got = block.backward(grad_x, gamma)
    for g, w, what in zip(got, expected, ("grad_x", "grad_gamma", "grad_beta")):
        assert_bitwise_equal(g, w, what)


def test_block_errors_name_the_argument():
    block = NormBlock((3, 4), True, np.float32)
    ones = np.ones(3, np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*\(3, 4\)\)"):
        block.forward_train(np.zeros((2, 3, 5), np.float32), ones, ones, eps=1e-5)
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        block.forward_train(np.zeros((2, 3, 4), np.float32), ones, ones[:2], eps=1e-5)
    with pytest.raises(ValueError, match="eps must be a positive finite float"):
        block.forward_train(np.zeros((2, 3, 4), np.float32), ones, ones, eps=-1.0)
    with pytest.raises(RuntimeError, match="preceding forward_train"):
        block.backward(np.zeros((2, 3, 4), np.float32), ones)
    block.forward_train(np.zeros((2, 3, 4), np.float32), ones, ones, eps=1e-5)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(2, 3, 4\)"):
        block.backward(np.zeros((2, 3, 3), np.float32), ones)
    with pytest.raises(ValueError, match="NormBlock needs a float32 or float64 dtype"):
        NormBlock((3, 4), True, np.int64)
    with pytest.raises(ValueError, match="sample shape"):
        NormBlock((3, 0), True, np.float32)


def test_after_pool_puts_batch_norm_between_the_pooling_and_the_activation():
    for activation, pooling in (("relu", "max"), ("tanh", "avg")):
        net = build_lenet5((1, 12, 12), 3, filters=(2, 3), hidden_layer_sizes=(4,),
                           batch_norm=True, batch_norm_position="after_pool",
                           activation=activation, pooling=pooling)
        kinds = [type(layer) for layer in net.layers]
        assert kinds[:8] == [Conv, Pool, BatchNorm, Activation] * 2
        before = build_lenet5((1, 12, 12), 3, filters=(2, 3), hidden_layer_sizes=(4,),
                              batch_norm=True, activation=activation, pooling=pooling)
        assert [type(layer) for layer in before.layers][:2] == [Conv, BatchNorm]
    with pytest.raises(ValueError, match="batch_norm_position must be one of "
                                         r"\('before_pool', 'after_pool'\), got 'after'"):
        build_lenet5((1, 12, 12), 3, batch_norm=True, batch_norm_position="after")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,options",
    [
        ((1, 12, 12), dict(batch_norm=True)),
        ((2, 11, 9), dict(batch_norm=True, activation="tanh", pooling="avg")),
        ((1, 12, 12), dict(batch_norm="conv", pooling="min")),
        ((3, 30), dict(batch_norm=True, kernel_size=5)),
        ((1, 6, 6, 6), dict(batch_norm=True, kernel_size=3)),
        ((1, 33), dict(batch_norm=True, filters=(3, 4, 2), head="avg")),
        ((2, 10, 10), dict(batch_norm=True, spatial_dropout=0.3, dropout=0.2)),
    ],
)
def test_after_pool_networks_are_their_layer_by_layer_plan(shape, options, dtype):
    net = build_lenet5(shape, 4, filters=options.pop("filters", (3, 4)),
                       hidden_layer_sizes=(5,), batch_norm_position="after_pool",
                       **options)
    assert_network_is_the_layer_by_layer_network(net, shape, dtype, object)
    norms = [step for step in net.steps if isinstance(step, NormStep)]
    assert len(norms) == sum(isinstance(layer, BatchNorm) for layer in net.layers)
    assert not any(isinstance(step, NormPoolStep) for step in norms)
    relus = [step for step in norms if len(step.layers) == 2]
    assert all(isinstance(step.layers[1], Activation) and step.layers[1].name == "relu"
               for step in relus)
    assert len(relus) == (len(norms) if options.get("activation", "relu") == "relu"
                          else 0)
