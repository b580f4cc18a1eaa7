"""Functional API: convolution and pooling on batches of 1-D, 2-D or 3-D data.

Layout is channels-first: a batch is ``(N, C, *spatial)`` with one, two or three
spatial axes. Every function checks its arguments (raising ``ValueError`` or
``TypeError`` naming the argument and the shapes), normalises stride, dilation and
padding, allocates the output and makes one call into a compiled kernel.

dtype rules: float32 stays float32 and float64 stays float64; other real numeric
input becomes float64; a mix of float32 and float64 computes in float64.
Non-contiguous and read-only arrays are accepted (copied only when needed).

The functions live in the ops layer's modules (``skconv._ops.conv`` and
``skconv._ops.pool``); this module is their public name.
"""

from ._ops.conv import conv, conv_backward, conv_output_shape
from ._ops.pool import (
    global_pool,
    global_pool_backward,
    pool,
    pool_backward,
    pool_backward_indices,
    pool_output_shape,
    pool_with_indices,
)

__all__ = [
    "conv",
    "conv_backward",
    "conv_output_shape",
    "global_pool",
    "global_pool_backward",
    "pool",
    "pool_backward",
    "pool_backward_indices",
    "pool_output_shape",
    "pool_with_indices",
]
