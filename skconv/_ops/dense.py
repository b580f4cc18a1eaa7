"""Dense (fully connected) ops: ``y = x @ W + b`` (optionally then relu) and its gradients.

The products run in ``skconv._kernels.dense`` on up to ``n_threads`` OpenMP threads.
The forward sums every value in a fixed order in skconv's own micro-kernel, so a row
of the output depends on its own input row only, bit for bit, whatever the batch and
the thread count: a sample's prediction does not depend on the batch it comes in. The
backward's products are single-threaded BLAS calls on chunks cut by the shapes
alone, so gradients are bitwise identical for any thread count (the kernel module's
docstring says how the chunks are chosen). These functions check the shapes and
dtypes the kernels trust, cap the thread count by the amount of work and keep BLAS on
one thread around its calls.
"""

import numpy as np

from .._kernels import dense as _kernel
from .threads import single_threaded_blas, thread_scratch, threads_for_work

__all__ = ["dense", "dense_backward", "backward_chunking"]

#: How the kernel cuts the backward's products of these shapes: (weight gradient, input
#: gradient), each ("rows", "units" or "features", n_chunks).
backward_chunking = _kernel.backward_chunking


def _check_product(x, w, b, dtype):
    if (x.ndim != 2 or w.ndim != 2 or b.shape != (w.shape[1],) or x.shape[1] != w.shape[0]
            or not x.dtype == w.dtype == b.dtype == dtype):
        raise ValueError(
            f"dense needs x of shape (N, F), w of shape (F, U) and b of shape (U,), one "
            f"float dtype: got x {x.dtype} {x.shape}, w {w.dtype} {w.shape}, b "
            f"{b.dtype} {b.shape}"
        )


def _check_output(array, shape, dtype, name):
    if (type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype
            or not array.flags.c_contiguous or not array.flags.writeable):
        raise ValueError(f"{name} must be a writeable C-contiguous {dtype} array of shape "
                         f"{shape}")


def dense(x, w, b, *, relu=False, n_threads=1, out=None):
    """``x @ w + b``, then ``numpy.maximum(y, 0)`` if ``relu``.

    Parameters
    ----------
    x : ndarray of shape (N, F)
        Converted to ``w``'s dtype and made C-contiguous if needed.
    w : ndarray of shape (F, U), C-contiguous float32 or float64
    b : ndarray of shape (U,), C-contiguous, ``w``'s dtype
    relu : bool, default=False
        Apply relu to each chunk of the output while it is in cache.
    n_threads : int, default=1
        Threads to use at most (an effective count).
    out : ndarray of shape (N, U), default=None
        Where to write the result (writeable, C-contiguous, ``w``'s dtype).

    Returns
    -------
    y : ndarray of shape (N, U)
        Each row a function of the same row of ``x`` alone, bit for bit: the same
        whatever the other rows, their number and ``n_threads``.
    """
    x = np.ascontiguousarray(x, dtype=w.dtype)
    _check_product(x, w, b, w.dtype)
    shape = (x.shape[0], w.shape[1])
    if out is None:
        out = np.empty(shape, dtype=w.dtype)
    else:
        _check_output(out, shape, w.dtype, "out")
    n_threads = threads_for_work(n_threads, x.size * w.shape[1])
    if x.shape[1] == 0:
        # Empty sums (the kernel wants a feature): every row is 0 + b.
        np.add(np.zeros((), dtype=w.dtype), b, out=out)
        if relu:
            np.maximum(out, 0, out=out)
    else:
        _kernel.dense_forward(x, w, b, out, n_threads, relu, thread_scratch(
            "dense_forward", _kernel.forward_scratch_size(
                *x.shape, w.shape[1], w.dtype == np.float32, n_threads), w.dtype))
    return out


def dense_backward(grad_y, x, w, grad_w, grad_b, *, relu_output=None, n_threads=1,
                   grad_x=None):
    """Gradients of :func:`dense`, written into ``grad_w``, ``grad_b`` (and ``grad_x``).

    ``grad_w = x.T @ grad_y``, ``grad_b`` the column sums of ``grad_y`` (rows added in
    order), ``grad_x = grad_y @ w.T`` when ``grad_x`` is given. With ``relu_output``
    (the forward's output with ``relu=True``), ``grad_y`` is first overwritten with
    the relu's backward, ``grad_y * (relu_output > 0)`` as numpy computes it.

    Parameters
    ----------
    grad_y : ndarray of shape (N, U)
        C-contiguous, ``w``'s dtype; writeable when ``relu_output`` is given.
    x : ndarray of shape (N, F)
        The forward's input (C-contiguous, ``w``'s dtype).
    w : ndarray of shape (F, U)
    grad_w : ndarray of shape (F, U)
    grad_b : ndarray of shape (U,)
    relu_output : ndarray of shape (N, U), default=None
    n_threads : int, default=1
    grad_x : ndarray of shape (N, F), default=None
        None skips the input gradient.

    Returns
    -------
    grad_x : ndarray or None
    """
    dtype = w.dtype
    if type(grad_y) is not np.ndarray or grad_y.dtype != dtype or not grad_y.flags.c_contiguous:
        grad_y = np.ascontiguousarray(grad_y, dtype=dtype)
    if relu_output is not None and not grad_y.flags.writeable:
        grad_y = grad_y.copy()
    shape = (x.shape[0], w.shape[1])
    if x.ndim != 2 or x.dtype != dtype or not x.flags.c_contiguous or grad_y.shape != shape:
        raise ValueError(f"dense_backward needs grad_y of shape {shape} and a C-contiguous "
                         f"{dtype} x: got grad_y {grad_y.shape}, x {x.dtype} {x.shape}")
    _check_output(grad_w, w.shape, dtype, "grad_w")
    _check_output(grad_b, (w.shape[1],), dtype, "grad_b")
    if grad_x is not None:
        _check_output(grad_x, x.shape, dtype, "grad_x")
    # The weight gradient, and the input gradient if wanted: one forward each.
    work = x.size * w.shape[1] * (1 if grad_x is None else 2)
    n_threads = threads_for_work(n_threads, work)
    with single_threaded_blas():
        if relu_output is not None:
            if relu_output.shape != shape:
                raise ValueError(f"relu_output must have shape {shape}, got "
                                 f"{relu_output.shape}")
            _kernel.dense_relu_backward(grad_y, relu_output, x, w, grad_x, grad_w,
                                        grad_b, n_threads)
        else:
            _kernel.dense_backward(grad_y, x, w, grad_x, grad_w, grad_b, n_threads)
    return grad_x
