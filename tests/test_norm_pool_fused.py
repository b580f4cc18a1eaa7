"""The fused batch norm + pooling (+ relu) block (``skconv._ops.norm.NormPoolBlock``):
against the three plain ops (``batch_norm_train``, ``pool_with_indices``,
``numpy.maximum``; their backward in reverse) bit for bit on random configurations,
with and without row weights, on 1 and 2 threads; which settings get the block; and
networks with batch norm against their layer-by-layer plan."""

import numpy as np
import pytest

from skconv._nn.lenet import build_lenet5
from skconv._nn.network import NormPoolStep
from skconv._ops.blocks import PoolSpec
from skconv._ops.norm import (NormPoolBlock, batch_norm_backward, batch_norm_inference,
                              batch_norm_train)
from skconv._ops.pool import pool_backward_indices, pool_with_indices
from skconv._nn.activations import relu_backward

try:  # tests/ imported as a package or as a path
    from ._bitwise import (assert_bitwise_equal, assert_block_gradients,
                           assert_network_is_the_layer_by_layer_network)
except ImportError:
    from _bitwise import (assert_bitwise_equal, assert_block_gradients,
                          assert_network_is_the_layer_by_layer_network)

DTYPES = (np.float32, np.float64)


def _spec(window, mode="max"):
    return PoolSpec(tuple(window), tuple(window), 0, mode)


def _plain_forward(x, gamma, beta, window, mode, relu, weights, n_jobs):
    """The three ops one after another: what the layers compute."""
    z, x_hat, mean, var, inv_std = batch_norm_train(x, gamma, beta, sample_weight=weights,
                                                    n_jobs=n_jobs)
    pooled, indices = pool_with_indices(z, window, mode=mode, n_jobs=n_jobs)
    y = np.maximum(pooled, 0.0) if relu else pooled
    return y, (x_hat, inv_std, indices, mean, var)


def _plain_backward(grad_y, y, cache, gamma, x_shape, relu, weights, n_jobs):
    x_hat, inv_std, indices, _, _ = cache
    grad = relu_backward(y, grad_y) if relu else grad_y
    grad_z = pool_backward_indices(grad, indices, x_shape, n_jobs=n_jobs)
    return batch_norm_backward(grad_z, x_hat, gamma, inv_std, sample_weight=weights,
                               n_jobs=n_jobs)


def _random_cases(n_cases, seed):
    """Signals and images, windows 1-4 per axis (the vector paths: 2x2 images and
    signals' windows of 2; the cell-by-cell one for the rest), odd and even sizes
    (cells past the last window), max and min, with and without the relu."""
    rng = np.random.RandomState(seed)
    cases = []
    for i in range(n_cases):
        if i % 2:
            window = (int(rng.choice([2, 2, 3, 4])),)
            spatial = (int(rng.randint(window[0], 70)),)
        else:
            window = (int(rng.choice([1, 2, 2, 3])), int(rng.choice([2, 2, 3])))
            spatial = tuple(int(rng.randint(w, 30)) for w in window)
        cases.append(dict(n=int(rng.randint(1, 9)), channels=int(rng.randint(1, 5)),
                          spatial=spatial, window=window,
                          mode=str(rng.choice(["max", "max", "min"])),
                          relu=bool(rng.rand() < 0.7), weighted=bool(rng.rand() < 0.4),
                          ties=bool(rng.rand() < 0.3)))
    return cases


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", _random_cases(60, 0))
def test_block_is_the_three_ops_bit_for_bit(case, dtype):
    rng = np.random.RandomState(1)
    shape = (case["n"], case["channels"]) + case["spatial"]
    if case["ties"]:  # equal cells in a window: the first one wins
        x = rng.randint(-2, 3, size=shape).astype(dtype)
    else:
        x = (rng.normal(size=shape) * 3 + 1).astype(dtype)
    gamma = rng.uniform(-1.5, 1.5, case["channels"]).astype(dtype)  # some negative
    beta = rng.normal(size=case["channels"]).astype(dtype)
    weights = rng.randint(0, 3, case["n"]).astype(float) if case["weighted"] else None
    if weights is not None and weights.sum() == 0:
        weights[0] = 1.0
    block = NormPoolBlock.prepare(shape[1:], _spec(case["window"], case["mode"]),
                                  case["relu"], dtype)
    assert block is not None
    for n_jobs in (1, 2):
        expected, cache = _plain_forward(x, gamma, beta, case["window"], case["mode"],
                                         case["relu"], weights, n_jobs)
        y, mean, var = block.forward_train(x, gamma, beta, eps=1e-5,
                                           sample_weight=weights, n_threads=n_jobs)
        assert block.output_shape == expected.shape[1:]
        assert_bitwise_equal(y, expected, "output")
        assert_bitwise_equal(mean, cache[3], "mean")
        assert_bitwise_equal(var, cache[4], "variance")
        grad_y = rng.normal(size=y.shape).astype(dtype)
        expected_grads = _plain_backward(grad_y, expected, cache, gamma, shape,
                                         case["relu"], weights, n_jobs)
        assert_block_gradients(
            block, lambda: block.forward_train(x, gamma, beta, eps=1e-5,
                                               sample_weight=weights, n_threads=n_jobs),
            grad_y, gamma, n_jobs, expected_grads)
        # Inference with given statistics.
        running_mean, running_var = rng.normal(size=(2, case["channels"]))
        running_var = np.abs(running_var) + 0.1
        z = batch_norm_inference(x, gamma, beta, running_mean, running_var)
        pooled, _ = pool_with_indices(z, case["window"], mode=case["mode"])
        want = np.maximum(pooled, 0.0) if case["relu"] else pooled
        got = block.infer(x, gamma, beta, running_mean, running_var, eps=1e-5,
                          n_threads=n_jobs)
        assert_bitwise_equal(got, want, "inference")


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_takes_the_window_as_in_the_pooling(dtype):
    # A NaN cell wins its window (the first NaN), in the vector and the cell-by-cell
    # paths; the other windows are untouched.
    for spatial, window, relu in [((6, 8), (2, 2), True), ((6, 8), (2, 2), False),
                                  ((20,), (2,), True), ((9, 9), (3, 3), True)]:
        rng = np.random.RandomState(2)
        x = rng.normal(size=(3, 2) + spatial).astype(dtype)
        x[1, 0].flat[5] = np.nan
        gamma, beta = np.ones(2, dtype), np.zeros(2, dtype)
        block = NormPoolBlock.prepare((2,) + spatial, _spec(window), relu, dtype)
        # The channel with the NaN has NaN statistics: compare the NaN-free channel
        # and where the NaN lands (np.testing treats NaN as equal to NaN).
        expected, _ = _plain_forward(x, gamma, beta, window, "max", relu, None, 1)
        y, _, _ = block.forward_train(x, gamma, beta, eps=1e-5)
        np.testing.assert_array_equal(y, expected)
        assert np.isnan(y[:, 0]).all() and not np.isnan(y[:, 1]).any()


@pytest.mark.parametrize(
    "input_shape,spec,expected",
    [
        ((3, 8, 8), _spec((2, 2)), True),
        ((3, 40), _spec((2,)), True),
        ((3, 40), _spec((5,), "min"), True),
        ((3, 7, 9), _spec((3, 2)), True),
        ((3, 8, 8), _spec((2, 2), "avg"), False),  # average pooling: the plain ops
        ((3, 8, 8), PoolSpec((3, 3), (2, 2), 0, "max"), False),  # overlapping windows
        ((3, 8, 8), PoolSpec((2, 2), (2, 2), 1, "max"), False),  # padded
        ((3, 8, 8), PoolSpec((2, 2), (2, 2), "same", "max"), True),  # no padding needed
        ((3, 9, 9), PoolSpec((2, 2), (2, 2), "same", "max"), False),  # 'same' pads 9
        ((3, 4, 4, 4), _spec((2, 2, 2)), False),  # volumes: the plain ops
        ((3, 300), _spec((256,)), False),  # a window's winner must fit a uint8
    ],
)
def test_which_settings_get_the_block(input_shape, spec, expected):
    for dtype in DTYPES:
        block = NormPoolBlock.prepare(input_shape, spec, True, dtype)
        assert (block is not None) == expected
    assert NormPoolBlock.prepare((3, 8, 8), _spec((2, 2)), True, np.int32) is None


def test_block_errors_name_the_argument():
    block = NormPoolBlock.prepare((2, 8, 8), _spec((2, 2)), True, np.float32)
    gamma = np.ones(2, np.float32)
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*\(2, 8, 8\)\)"):
        block.forward_train(np.zeros((3, 2, 8, 7), np.float32), gamma, gamma, eps=1e-5)
    with pytest.raises(ValueError, match="N >= 1"):
        block.forward_train(np.zeros((0, 2, 8, 8), np.float32), gamma, gamma, eps=1e-5)
    with pytest.raises(ValueError, match=r"gamma must have shape \(2,\)"):
        block.forward_train(np.zeros((3, 2, 8, 8), np.float32), np.ones(3), gamma,
                            eps=1e-5)
    with pytest.raises(ValueError, match="eps must be a positive finite float"):
        block.forward_train(np.zeros((3, 2, 8, 8), np.float32), gamma, gamma, eps=0.0)
    with pytest.raises(ValueError, match="sample_weight must have shape"):
        block.forward_train(np.zeros((3, 2, 8, 8), np.float32), gamma, gamma, eps=1e-5,
                            sample_weight=np.ones(2))
    with pytest.raises(RuntimeError, match="preceding forward_train"):
        block.backward(np.zeros((3, 2, 4, 4), np.float32), gamma)
    block.forward_train(np.zeros((3, 2, 8, 8), np.float32), gamma, gamma, eps=1e-5)
    with pytest.raises(ValueError, match=r"grad_y must have shape \(3, 2, 4, 4\)"):
        block.backward(np.zeros((3, 2, 4, 5), np.float32), gamma)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    "shape,options",
    [
        ((1, 12, 12), dict(batch_norm=True)),
        ((2, 11, 9), dict(batch_norm=True, activation="identity")),
        ((1, 12, 12), dict(batch_norm="conv", pooling="min")),
        ((2, 9, 11), dict(batch_norm=True, pool_size=3, kernel_size=3)),
        ((3, 30), dict(batch_norm=True, kernel_size=5)),
        ((2, 31), dict(batch_norm=True, pool_size=3, pooling="min",
                       activation="identity")),
        ((1, 33), dict(batch_norm=True, filters=(3, 4, 2), head="avg")),
    ],
)
def test_networks_with_batch_norm_are_their_layer_by_layer_plan(shape, options, dtype):
    net = build_lenet5(shape, 4, filters=options.pop("filters", (3, 4)),
                       hidden_layer_sizes=(5,), **options)
    assert_network_is_the_layer_by_layer_network(net, shape, dtype, object)
    fused = [step for step in net.steps if isinstance(step, NormPoolStep)]
    assert len(fused) == sum(1 for layer in net.layers
                             if type(layer).__name__ == "Conv")
    # The running averages moved as the layers' do.
    assert not np.array_equal(fused[0].layers[0].buffers[1], 1.0)


def test_weighted_rows_in_a_network_are_the_layer_by_layer_plan():
    # sample_weight reaches the fused step's statistics as it reaches the layer's.
    shape = (1, 10, 10)
    nets = []
    for fuse in (True, False):
        net = build_lenet5(shape, 3, filters=(2,), hidden_layer_sizes=(4,),
                           batch_norm=True)
        net.fuse = fuse
        net.initialize(shape, np.random.RandomState(0), np.float32)
        nets.append(net)
    x = np.random.RandomState(3).normal(size=(6,) + shape).astype(np.float32)
    weights = np.array([0.0, 1.0, 2.0, 0.5, 1.0, 3.0])
    outputs = [net.forward(x, 2, training=True, sample_weight=weights) for net in nets]
    assert_bitwise_equal(outputs[0], outputs[1], "logits")
    for net in nets:
        net.backward(np.ones_like(outputs[0]), 2)
    for a, b in zip(nets[0].grads, nets[1].grads):
        assert_bitwise_equal(a, b, "gradient")
    assert any(isinstance(step, NormPoolStep) for step in nets[0].steps)
