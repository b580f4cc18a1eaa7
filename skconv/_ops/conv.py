"""Convolution ops: forward, backward and output shape, on batches of 1-D, 2-D or 3-D data.

Layout is channels-first: a batch is ``(N, C, *spatial)`` with one, two or three
spatial axes. Every function checks its arguments (raising ``ValueError`` or
``TypeError`` naming the argument and the shapes), normalises stride, dilation and
padding, allocates the output and makes one call into the compiled kernel
(``skconv._kernels.conv``).

dtype rules: float32 stays float32 and float64 stays float64; other real numeric
input becomes float64; a mix of float32 and float64 computes in float64.
Non-contiguous and read-only arrays are accepted (copied only when needed).
"""

import contextlib

import numpy as np

from .._kernels import conv as _kernel
from .threads import effective_n_threads, single_threaded_blas, threads_for_work
from .validation import (
    MAX_GEOMETRY_VALUE,
    as_float_array,
    check_batch,
    check_out,
    check_window_fits,
    common_float_dtype,
    contiguous,
    normalize_padding,
    output_shape,
    per_axis,
    to_3d,
    view_3d,
)

__all__ = ["conv", "conv_backward", "conv_output_shape"]


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
    geometry = _conv_geometry(in_shape, kernel_shape, stride, padding, dilation, "in_shape")
    return geometry[-1]


def _conv_geometry(in_shape, kernel_shape, stride, padding, dilation, name="x"):
    """Normalised (stride, pads, dilation, out_shape); raises if the kernel does not fit."""
    n_axes = len(in_shape)
    stride = per_axis(stride, n_axes, "stride", maximum=MAX_GEOMETRY_VALUE)
    dilation = per_axis(dilation, n_axes, "dilation", maximum=MAX_GEOMETRY_VALUE)
    pads = normalize_padding(padding, in_shape, kernel_shape, stride, dilation)
    check_window_fits(in_shape, kernel_shape, pads, dilation, "kernel", name)
    return stride, pads, dilation, output_shape(in_shape, kernel_shape, stride, pads, dilation)


#: Cells (all channels and filters) of a sample's zero-padded copies that the stride-1
#: kernels may be asked to size: beyond any memory, and far enough below 2**63 that
#: their size arithmetic in C cannot overflow.
_MAX_PADDED_CELLS = 2**44


def _check_padded_size(x_shape, w_shape, stride, out_shape, padding, dilation):
    """Refuse a stride-1 convolution whose padded scratch the kernels could not size.

    The stride-1 path copies each sample, zero-padded (``out + reach`` cells per
    axis, ``reach = dilation * (kernel - 1)``), into per-thread scratch, and in the
    backward also grad_y padded by the reach on both sides: a huge dilation or
    padding with a small output would make those sizes overflow C integers (and the
    scratch too small) rather than fail to allocate.
    """
    if any(s != 1 for s in stride):
        return
    cells = x_shape[1] + w_shape[0]
    for out, k, d in zip(out_shape, w_shape[2:], dilation):
        cells *= out + 2 * d * (k - 1)
    if cells > _MAX_PADDED_CELLS:
        raise ValueError(
            f"padding={padding!r} and dilation {tuple(dilation)} make the zero-padded "
            f"copies of one sample too large ({cells} cells, at most "
            f"{_MAX_PADDED_CELLS}) for x with shape {tuple(x_shape)} and w with "
            f"shape {tuple(w_shape)}"
        )


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


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, n_jobs=None, out=None):
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
        any stride, the odd extra cell going at the end (TensorFlow's rule). The
        strings are lowercase and case-sensitive, as in the estimator.
    dilation : int or tuple of int, default=1
        Spacing between kernel taps per axis (>= 1).
    n_jobs : int, default=None
        Threads: None or -1 for all usable cores (respecting ``OMP_NUM_THREADS`` and
        threadpoolctl limits), a positive int for that many (at most the usable
        cores).
    out : ndarray, default=None
        Where to write ``y`` (a network's workspace, reused across minibatches): a
        writeable C-contiguous array of the result's shape and dtype that shares no
        memory with the inputs.

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
    return _conv(x, w, b, stride=stride, padding=padding, dilation=dilation,
                 n_jobs=n_jobs, out=out)


def _conv(x, w, b=None, *, stride=1, padding=0, dilation=1, n_jobs=None, out=None,
          relu=False):
    """:func:`conv`, then ``numpy.maximum(y, 0)`` if ``relu``: the kernel applies it to
    each sample's output while it is in cache, with the same values as a separate
    pass (the forward of :class:`skconv._ops.blocks.ConvReluBlock`)."""
    x, w, b = _check_conv_inputs(x, w, b)
    spatial = x.shape[2:]
    stride, pads, dilation, out_shape = _conv_geometry(
        spatial, w.shape[2:], stride, padding, dilation
    )
    _check_padded_size(x.shape, w.shape, stride, out_shape, padding, dilation)
    y_shape = x.shape[:1] + w.shape[:1] + out_shape
    if out is None:
        y = np.empty(y_shape, dtype=x.dtype)
    else:
        y = check_out(out, y_shape, x.dtype, "out", (x, w, b))
    n_threads = threads_for_work(effective_n_threads(n_jobs), w.size * y.size // w.shape[0])
    if x.shape[0] == 0:
        return y
    # High padding needs no work in the kernel: it only lengthens the output, and
    # the kernel treats every index outside the input as a zero.
    stride, pad_lo, dilation = to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1)
    views = (view_3d(x), view_3d(w), view_3d(y))
    with _blas_guard(views, stride, pad_lo, dilation):
        _kernel.conv_forward(views[0], views[1], b, views[2], stride, pad_lo, dilation,
                             n_threads, relu)
    return y


def _uses_blas(views, stride_3d, pad_lo, dilation_3d, inputs_finite=True):
    """Whether the kernel call on these 5-D views (x, w, y or grad_y) takes im2col and
    BLAS: only strided calls may, or any whose inputs are not finite."""
    return not inputs_finite or (any(s != 1 for s in stride_3d) and _kernel.uses_blas(
        *(view.shape for view in views), stride_3d, pad_lo, dilation_3d))


def _blas_guard(views, stride_3d, pad_lo, dilation_3d, inputs_finite=True):
    """Single-threaded BLAS around kernel calls that use it, a no-op otherwise.

    Limiting costs tens of microseconds per call (threadpoolctl), so it is paid only
    on the im2col path (see ``_kernel.uses_blas``).
    """
    if _uses_blas(views, stride_3d, pad_lo, dilation_3d, inputs_finite):
        return single_threaded_blas()
    return contextlib.nullcontext()


def conv_backward(
    grad_y, x, w, *, stride=1, padding=0, dilation=1, n_jobs=None, compute_grad_x=True,
    out=None,
):
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
    compute_grad_x : bool, default=True
        False skips the input gradient (a network's first layer does not need it)
        and returns None in its place.
    out : tuple of 3 ndarray, default=None
        Where to write ``(grad_x, grad_w, grad_b)`` (``grad_x`` None when
        ``compute_grad_x`` is False), as in :func:`conv`.

    Returns
    -------
    grad_x : ndarray of shape (N, C, *spatial) or None
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
    _check_padded_size(x.shape, w.shape, stride, out_shape, padding, dilation)
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
    # Backward does about twice the forward's multiply-adds.
    n_threads = threads_for_work(
        effective_n_threads(n_jobs), 2 * w.size * grad_y.size // w.shape[0]
    )

    grad_x, grad_w, grad_b = _conv_backward_arrays(x, w, grad_y, dtype, compute_grad_x,
                                                   out)
    stride, pad_lo, dilation = to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1)
    views = (view_3d(x), view_3d(w), view_3d(grad_y))
    # Only the shifted and polyphase paths need finite inputs (see
    # _kernel.conv_backward); a call that takes im2col anyway skips the check.
    inputs_finite = (_uses_blas(views, stride, pad_lo, dilation)
                     or _all_finite(x, w, grad_y))
    with _blas_guard(views, stride, pad_lo, dilation, inputs_finite):
        _kernel.conv_backward(
            views[2], views[0], views[1],
            None if grad_x is None else view_3d(grad_x), view_3d(grad_w), grad_b,
            stride, pad_lo, dilation, n_threads, inputs_finite,
        )
    return grad_x, grad_w, grad_b


def _all_finite(*arrays):
    """Whether every value of these C-contiguous float arrays is finite."""
    return all(_kernel.all_finite(array.reshape(-1)) for array in arrays)


def _conv_backward_arrays(x, w, grad_y, dtype, compute_grad_x, out):
    """``(grad_x or None, grad_w, grad_b)`` of a convolution's backward: new arrays, or
    ``out`` checked."""
    if out is None:
        grad_x = np.empty(x.shape, dtype=dtype) if compute_grad_x else None
        grad_w, grad_b = np.empty(w.shape, dtype=dtype), np.empty(w.shape[0], dtype=dtype)
    else:
        if not isinstance(out, tuple) or len(out) != 3:
            raise TypeError("out must be a tuple (grad_x, grad_w, grad_b)")
        inputs = (grad_y, x, w)
        grad_x = None
        if compute_grad_x:
            grad_x = check_out(out[0], x.shape, dtype, "out[0] (grad_x)", inputs)
        outputs = [("out[0] (grad_x)", grad_x)]
        grad_w = check_out(out[1], w.shape, dtype, "out[1] (grad_w)", inputs, outputs)
        outputs.append(("out[1] (grad_w)", grad_w))
        grad_b = check_out(out[2], w.shape[:1], dtype, "out[2] (grad_b)", inputs,
                           outputs)
    return grad_x, grad_w, grad_b
