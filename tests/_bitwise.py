"""Bitwise comparisons for the tests of the fused blocks (test_conv_pool_fused.py,
test_conv_pool1d_fused.py): fused results must equal the unfused ones to the bit."""

import numpy as np


def assert_bitwise_equal(actual, expected, what):
    assert actual.dtype == expected.dtype, what
    assert actual.shape == expected.shape, what
    # Compare the bits: NaN payloads, signed zeros and infinities included.
    np.testing.assert_array_equal(actual.view(np.uint8), expected.view(np.uint8),
                                  err_msg=what)


def assert_same_fused_results(results):
    """``results``: ``(output, codes, (grad_x, grad_w, grad_b))`` per thread count,
    all bitwise equal to the first."""
    for other in results[1:]:
        assert_bitwise_equal(other[0], results[0][0], "pooled output")
        np.testing.assert_array_equal(other[1], results[0][1])
        for got, exp in zip(other[2], results[0][2]):
            assert_bitwise_equal(got, exp, "gradient")
