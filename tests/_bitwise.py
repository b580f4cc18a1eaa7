"""Bitwise comparisons for the tests of the fused blocks (test_conv_pool_fused.py,
test_conv_pool1d_fused.py, test_conv_relu_fused.py, test_norm_pool_fused.py,
test_norm_relu_fused.py): fused results must equal the unfused ones to the bit."""

import copy

import numpy as np

from skconv._nn.network import ConvBlockStep, Network
from skconv._ops.loss import softmax_cross_entropy


def assert_bitwise_equal(actual, expected, what):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    # Compare the bits: NaN payloads, signed zeros and infinities included.
    np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8),
                                  err_msg=what)


def assert_block_gradients(block, forward, grad_y, gamma, n_jobs, expected):
    """A prepared batch-norm block's backward after ``forward()`` against
    ``expected`` = ``(grad_x, grad_gamma, grad_beta)``, bit for bit; then again after
    a new ``forward()`` without the input gradient, whose parameter gradients must be
    the same."""
    grads = block.backward(grad_y, gamma, n_threads=n_jobs)
    for got, want, what in zip(grads, expected, ("grad_x", "grad_gamma", "grad_beta")):
        assert_bitwise_equal(got, want, what)
    forward()
    grad_x, grad_gamma, grad_beta = block.backward(grad_y, gamma, n_threads=n_jobs,
                                                   compute_grad_x=False)
    assert grad_x is None
    assert_bitwise_equal(grad_gamma, expected[1], "grad_gamma alone")
    assert_bitwise_equal(grad_beta, expected[2], "grad_beta alone")


def assert_same_fused_results(results):
    """``results``: ``(output, codes, (grad_x, grad_w, grad_b))`` per thread count,
    all bitwise equal to the first."""
    for other in results[1:]:
        assert_bitwise_equal(other[0], results[0][0], "pooled output")
        np.testing.assert_array_equal(other[1], results[0][1])
        for got, exp in zip(other[2], results[0][2]):
            assert_bitwise_equal(got, exp, "gradient")


def assert_network_is_the_layer_by_layer_network(net, shape, dtype, block_type):
    """``net`` (uninitialized) against the same layers run one by one
    (``fuse=False``): training steps on 1 and 2 threads (logits and gradients) and
    an inference, bit for bit. Every fused conv step must be a ``block_type``;
    returns how many there are."""
    plain = Network(copy.deepcopy(net.layers), fuse=False)
    net.initialize(shape, np.random.RandomState(0), dtype)
    plain.initialize(shape, np.random.RandomState(0), dtype)
    plain.set_state(net.get_state())
    used = [step.block for step in net.steps if isinstance(step, ConvBlockStep)]
    assert all(isinstance(block, block_type) for block in used)
    rng = np.random.RandomState(5)
    for n_jobs in (1, 2):
        x = rng.randint(-2, 3, size=(7,) + shape).astype(dtype)  # ties in the windows
        y = np.arange(7) % 4
        outputs = []
        for network in (net, plain):
            logits = network.forward(x, n_jobs, training=True)
            _, grad = softmax_cross_entropy(logits, y)
            network.backward(grad, n_jobs)
            outputs.append((logits.copy(), [g.copy() for g in network.grads]))
        np.testing.assert_array_equal(outputs[0][0], outputs[1][0])
        for a, b in zip(outputs[0][1], outputs[1][1]):
            np.testing.assert_array_equal(a, b)
    x = rng.normal(size=(5,) + shape).astype(dtype)
    np.testing.assert_array_equal(net.forward(x, 2), plain.forward(x, 1))
    return len(used)
