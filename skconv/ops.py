"""Functional API: convolution and pooling on batches of 1-D, 2-D or 3-D data.

Layout is channels-first: a batch is ``(N, C, *spatial)`` with one, two or three
spatial axes. Every function checks its arguments (raising ``ValueError`` or
``TypeError`` naming the argument and the shapes), normalises stride, dilation and
padding, allocates the output and makes one call into a compiled kernel.

dtype rules: float32 stays float32 and float64 stays float64; other real numeric
input becomes float64; a mix of float32 and float64 computes in float64.
Non-contiguous and read-only arrays are accepted (copied only when needed).
"""

import numpy as np

from . import _conv
from ._threads import effective_n_threads, single_threaded_blas
from ._validation import (
    as_float_array,
    check_batch,
    check_window_fits,
    common_float_dtype,
    contiguous,
    normalize_padding,
    output_shape,
    per_axis,
    to_3d,
    view_3d,
)

__all__ = [
    "conv",
    "conv_backward",
    "conv_output_shape",
]


def conv_output_shape(in_shape, kernel_shape, *, stride=1, padding=0, dilation=1):
    """Spatial output shape of a convolution.

    Per axis: ``floor((W + p_lo + p_hi - d*(w - 1) - 1) / s) + 1``.

    Parameters
    ----------
    in_shape : tuple of int
        Spatial input shape (no batch or channel axes), 1 to 3 axes.
    kernel_shape : tuple of int
        Spatial kernel shape, same number of axes.
    stride, padding, dilation
        As in :func:`conv`.

    Returns
    -------
    tuple of int
        Spatial output shape.

    Examples
    --------
    >>> conv_output_shape((28, 28), (5, 5), padding="same", stride=2)
    (14, 14)
    >>> conv_output_shape((32,), (3,), padding=1)
    (32,)
    """
    in_shape = per_axis(tuple(in_shape), len(tuple(in_shape)), "in_shape")
    n_axes = len(in_shape)
    if not 1 <= n_axes <= 3:
        raise ValueError(f"in_shape must have 1 to 3 spatial axes, got {in_shape}")
    kernel_shape = per_axis(kernel_shape, n_axes, "kernel_shape")
    geometry = _conv_geometry(in_shape, kernel_shape, stride, padding, dilation)
    return geometry[-1]


def _conv_geometry(in_shape, kernel_shape, stride, padding, dilation, name="x"):
    """Normalised (stride, pads, dilation, out_shape); raises if the kernel does not fit."""
    n_axes = len(in_shape)
    stride = per_axis(stride, n_axes, "stride")
    dilation = per_axis(dilation, n_axes, "dilation")
    pads = normalize_padding(padding, in_shape, kernel_shape, stride, dilation)
    check_window_fits(in_shape, kernel_shape, pads, dilation, "kernel", name)
    return stride, pads, dilation, output_shape(in_shape, kernel_shape, stride, pads, dilation)


def _check_conv_inputs(x, w, b):
    """Convert and check x, w and b; return them contiguous in their common dtype."""
    x = as_float_array(x, "x")
    w = as_float_array(w, "w")
    b = None if b is None else as_float_array(b, "b")
    check_batch(x, "x")
    if w.ndim != x.ndim:
        raise ValueError(
            f"w must have shape (D, C, *kernel) with as many axes as x: x has shape "
            f"{x.shape}, w has shape {w.shape}"
        )
    if any(size == 0 for size in w.shape):
        raise ValueError(f"w has an empty axis: shape {w.shape}")
    if w.shape[1] != x.shape[1]:
        raise ValueError(
            f"channel mismatch: x has {x.shape[1]} channels (shape {x.shape}) but w "
            f"expects {w.shape[1]} (shape {w.shape})"
        )
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(
            f"b must have shape ({w.shape[0]},) (one bias per filter of w with shape "
            f"{w.shape}), got shape {b.shape}"
        )
    dtype = common_float_dtype(x, w, b)
    x = contiguous(x, dtype)
    w = contiguous(w, dtype)
    b = None if b is None else contiguous(b, dtype)
    return x, w, b


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, n_jobs=None):
    """N-d convolution (cross-correlation, no kernel flip) of a batch.

    ``y[n, d, j...] = b[d] + sum_c sum_k x[n, c, j*s + k*dil - p_lo] * w[d, c, k]``
    with zero padding, for 1, 2 or 3 spatial axes.

    Parameters
    ----------
    x : array-like of shape (N, C, *spatial)
        Input batch, 1 to 3 spatial axes.
    w : array-like of shape (D, C, *kernel)
        D filters; kernels may be non-square.
    b : array-like of shape (D,), default=None
        Bias per filter.
    stride : int or tuple of int, default=1
        Step per spatial axis (>= 1).
    padding : int, tuple of int, 'valid' or 'same', default=0
        Zero padding. An int pads every axis on both sides, a tuple gives one amount
        per axis, 'valid' means none and 'same' gives ``out = ceil(in / stride)`` for
        any stride, the odd extra cell going at the end (TensorFlow's rule).
    dilation : int or tuple of int, default=1
        Spacing between kernel taps per axis (>= 1).
    n_jobs : int, default=None
        Threads: None or -1 for all usable cores (respecting ``OMP_NUM_THREADS`` and
        threadpoolctl limits), a positive int for that many.

    Returns
    -------
    y : ndarray of shape (N, D, *out)
        float32 if every input is float32, else float64. ``out`` is given by
        :func:`conv_output_shape`.

    Examples
    --------
    The seeds' 1-D example:

    >>> conv([[[0, 0, 0, 0, 1, 2, 3, 3]]], [[[-1, 1]]])
    array([[[0., 0., 0., 1., 1., 1., 0.]]])
    """
    x, w, b = _check_conv_inputs(x, w, b)
    spatial = x.shape[2:]
    stride, pads, dilation, out_shape = _conv_geometry(
        spatial, w.shape[2:], stride, padding, dilation
    )
    n_threads = effective_n_threads(n_jobs)
    y = np.empty(x.shape[:1] + w.shape[:1] + out_shape, dtype=x.dtype)
    if x.shape[0] == 0:
        return y
    # High padding needs no work in the kernel: it only lengthens the output, and
    # the kernel treats every index outside the input as a zero.
    with single_threaded_blas():
        _conv.conv_forward(
            view_3d(x), view_3d(w), b, view_3d(y),
            to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1),
            n_threads,
        )
    return y


def conv_backward(grad_y, x, w, *, stride=1, padding=0, dilation=1, n_jobs=None):
    """Gradients of :func:`conv` with respect to its input, weights and bias.

    Parameters
    ----------
    grad_y : array-like of shape (N, D, *out)
        Gradient of the loss with respect to ``conv(x, w, b, ...)``.
    x : array-like of shape (N, C, *spatial)
        The forward input.
    w : array-like of shape (D, C, *kernel)
        The forward weights.
    stride, padding, dilation, n_jobs
        As in :func:`conv`.

    Returns
    -------
    grad_x : ndarray of shape (N, C, *spatial)
    grad_w : ndarray of shape (D, C, *kernel)
    grad_b : ndarray of shape (D,)
        All in the common dtype of ``grad_y``, ``x`` and ``w``. The sums over the batch
        run in a fixed order, so results are bitwise identical for any ``n_jobs``.
    """
    x, w, _ = _check_conv_inputs(x, w, None)
    grad_y = as_float_array(grad_y, "grad_y")
    stride, pads, dilation, out_shape = _conv_geometry(
        x.shape[2:], w.shape[2:], stride, padding, dilation
    )
    expected = x.shape[:1] + w.shape[:1] + out_shape
    if grad_y.shape != expected:
        raise ValueError(
            f"grad_y must have shape {expected} (the output of conv for x with shape "
            f"{x.shape} and w with shape {w.shape}), got shape {grad_y.shape}"
        )
    dtype = common_float_dtype(grad_y, x, w)
    grad_y = contiguous(grad_y, dtype)
    x = contiguous(x, dtype)
    w = contiguous(w, dtype)
    n_threads = effective_n_threads(n_jobs)

    grad_x = np.zeros(x.shape, dtype=dtype)
    n_chunks = _conv.n_reduction_chunks(x.shape[0])
    if n_chunks == 0:
        return grad_x, np.zeros(w.shape, dtype=dtype), np.zeros(w.shape[0], dtype=dtype)
    grad_w_chunks = np.empty((n_chunks, w.size), dtype=dtype)
    grad_b_chunks = np.empty((n_chunks, w.shape[0]), dtype=dtype)
    with single_threaded_blas():
        _conv.conv_backward(
            view_3d(grad_y), view_3d(x), view_3d(w), view_3d(grad_x),
            grad_w_chunks, grad_b_chunks,
            to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1),
            n_threads,
        )
    # Fixed-order sum of the per-chunk partials (np.add.reduce on axis 0 of a small
    # C-contiguous array adds the rows one after another).
    grad_w = _sum_rows_in_order(grad_w_chunks).reshape(w.shape)
    grad_b = _sum_rows_in_order(grad_b_chunks)
    return grad_x, grad_w, grad_b


def _sum_rows_in_order(partials):
    """Sum the rows of a 2-D array strictly in row order (no pairwise reordering)."""
    total = partials[0].copy()
    for row in partials[1:]:
        total += row
    return total


# ---------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------
