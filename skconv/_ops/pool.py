"""Pooling ops: max, average and min pooling (windowed and global), forward and backward.

Layout and dtype rules as in :mod:`skconv._ops.conv`. Pooling has no parameters: a
window, a stride (default: the window), padding and a mode. Padded cells never win a
max or min and are not counted in an average; the gradient of a max or min goes to the
first extreme cell of its window in row-major order (the seeds' rule).
"""

import math

import numpy as np

from .._kernels import pool as _kernel
from .threads import effective_n_threads, threads_for_cells
from .validation import (
    MAX_GEOMETRY_VALUE,
    as_float_array,
    check_batch,
    check_out,
    check_pool_windows,
    common_float_dtype,
    contiguous,
    normalize_padding,
    output_shape,
    per_axis,
    to_3d,
)

__all__ = [
    "POOL_MODES",
    "global_pool",
    "global_pool_backward",
    "pool",
    "pool_backward",
    "pool_backward_indices",
    "pool_output_shape",
    "pool_with_indices",
]

#: The pooling operations, by name (min pooling is the seeds'; no major framework has
#: it). The one list of them: layers, the LeNet builder and the estimators' parameter
#: constraints take it from here.
POOL_MODES = ("max", "avg", "min")

_KERNEL_MODES = {"max": _kernel.MODE_MAX, "avg": _kernel.MODE_AVG, "min": _kernel.MODE_MIN}


def _pool_threads(n_jobs, x_shape, y_shape, window):
    """Thread count for a pooling call: ``n_jobs`` capped by the cells it visits."""
    cells = math.prod(x_shape) + math.prod(y_shape) * math.prod(window)
    return threads_for_cells(effective_n_threads(n_jobs), cells)


def pool_output_shape(in_shape, pool_size, *, stride=None, padding=0):
    """Spatial output shape of a pooling.

    Per axis: ``floor((W + p_lo + p_hi - w) / s) + 1``, the convolution formula with
    dilation 1.

    Parameters
    ----------
    in_shape : tuple of int
        Spatial input shape (no batch or channel axes), 1 to 3 axes.
    pool_size, stride, padding
        As in :func:`pool`.

    Returns
    -------
    tuple of int
        Spatial output shape.

    Examples
    --------
    >>> pool_output_shape((28, 28), 2)
    (14, 14)
    >>> pool_output_shape((7, 5), (3, 2), stride=1, padding="same")
    (7, 5)
    """
    in_shape = per_axis(tuple(in_shape), len(tuple(in_shape)), "in_shape")
    if not 1 <= len(in_shape) <= 3:
        raise ValueError(f"in_shape must have 1 to 3 spatial axes, got {in_shape}")
    return _pool_geometry(in_shape, pool_size, stride, padding, "in_shape")[-1]


def _pool_mode(mode, allowed=POOL_MODES):
    """Kernel code of a pooling mode; raises on anything else."""
    if not isinstance(mode, str) or mode not in allowed:
        options = ", ".join(repr(m) for m in allowed)
        raise ValueError(f"mode must be one of {options}, got {mode!r}")
    return _KERNEL_MODES[mode]


def _pool_geometry(in_shape, pool_size, stride, padding, name="x"):
    """Normalised (window, stride, pads, out_shape); raises if some window is empty."""
    n_axes = len(in_shape)
    ones = (1,) * n_axes
    window = per_axis(pool_size, n_axes, "pool_size", maximum=MAX_GEOMETRY_VALUE)
    # The seeds' default: windows side by side, no overlap.
    stride = window if stride is None else per_axis(stride, n_axes, "stride",
                                                    maximum=MAX_GEOMETRY_VALUE)
    pads = normalize_padding(padding, in_shape, window, stride, ones)
    check_pool_windows(in_shape, window, stride, pads, name)
    return window, stride, pads, output_shape(in_shape, window, stride, pads, ones)


def _check_pool_input(x, name="x"):
    """``x`` as a float32/float64 ``(N, C, *spatial)`` array (not yet contiguous)."""
    x = as_float_array(x, name)
    check_batch(x, name)
    return x


def _planes(array):
    """View ``(N, C, *spatial)`` as ``(N*C, S0, S1, S2)``: pooling treats planes alone."""
    return array.reshape((array.shape[0] * array.shape[1],) + to_3d(array.shape[2:], 1))


def _flat_planes(array):
    """View ``(N, C, *spatial)`` as ``(N*C, prod(spatial))``."""
    return array.reshape(array.shape[0] * array.shape[1], -1)


def _pool_forward(x, window, stride, pads, out_shape, code, n_jobs, with_indices,
                  out=None):
    """Allocate (or check ``out``) and run the forward kernel on a checked ``x``."""
    y_shape = x.shape[:2] + out_shape
    if out is None:
        y = np.empty(y_shape, dtype=x.dtype)
        indices = np.empty(y_shape, dtype=np.int64) if with_indices else None
    elif with_indices:
        if not isinstance(out, tuple) or len(out) != 2:
            raise TypeError("out must be a tuple (y, indices)")
        y = check_out(out[0], y_shape, x.dtype, "out[0] (y)", (x,))
        indices = check_out(out[1], y_shape, np.int64, "out[1] (indices)", (x,),
                            [("out[0] (y)", y)])
    else:
        y = check_out(out, y_shape, x.dtype, "out", (x,))
        indices = None
    n_threads = _pool_threads(n_jobs, x.shape, y.shape, window)
    if x.shape[0] > 0:
        # High padding needs no work in the kernel: it only lengthens the output,
        # and windows are clipped to the input.
        _kernel.pool_forward(
            _planes(x), _planes(y), None if indices is None else _planes(indices),
            to_3d(window, 1), to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0),
            code, n_threads,
        )
    return y, indices


def _pool_backward(grad_y, x, window, stride, pads, code, n_jobs, out=None):
    """Allocate (or check ``out``) and run the backward kernel on checked inputs."""
    dtype = common_float_dtype(grad_y, x)
    grad_y = contiguous(grad_y, dtype)
    x = contiguous(x, dtype)
    n_threads = _pool_threads(n_jobs, x.shape, grad_y.shape, window)
    # Zeroed plane by plane in the kernel.
    if out is None:
        grad_x = np.empty(x.shape, dtype=dtype)
    else:
        grad_x = check_out(out, x.shape, dtype, "out", (grad_y, x))
    if x.shape[0] > 0:
        _kernel.pool_backward(
            _planes(grad_y), _planes(x), _flat_planes(grad_x),
            to_3d(window, 1), to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0),
            code, n_threads,
        )
    return grad_x


def pool(x, pool_size, *, stride=None, padding=0, mode="max", n_jobs=None, out=None):
    """Max, average or min pooling of each channel of a batch (depth is kept).

    ``y[n, c, j...]`` is the max, mean or min of the real (non-padded) cells of the
    window of ``x[n, c]`` that starts at ``j*s - p_lo``, for 1, 2 or 3 spatial axes.

    Parameters
    ----------
    x : array-like of shape (N, C, *spatial)
        Input batch, 1 to 3 spatial axes.
    pool_size : int or tuple of int
        Window size per spatial axis (>= 1); windows may be non-square.
    stride : int or tuple of int, default=None
        Step per spatial axis (>= 1). None means the window size (no overlap).
    padding : int, tuple of int, 'valid' or 'same', default=0
        As in :func:`conv`. Padded cells never win a max or a min and are not
        counted in an average (it divides by the number of real cells), so every
        window must keep at least one real cell: padding below the window size.
    mode : {'max', 'avg', 'min'}, default='max'
        Operation. For max and min, a NaN in a window is the result.
    n_jobs : int, default=None
        Threads, as in :func:`conv`. The result does not depend on it.
    out : ndarray, default=None
        Where to write ``y``, as in :func:`conv`.

    Returns
    -------
    y : ndarray of shape (N, C, *out)
        Same dtype as ``x`` if float32 or float64, else float64. ``out`` is given by
        :func:`pool_output_shape`.

    See Also
    --------
    pool_backward : Gradient with respect to ``x``.
    pool_with_indices : Max or min pooling that also returns where each value came
        from.

    Examples
    --------
    The seeds' example: window 2, stride 2 halves width and height, keeps the depth.

    >>> x = np.arange(16.0).reshape(1, 1, 4, 4)
    >>> pool(x, 2)
    array([[[[ 5.,  7.],
             [13., 15.]]]])
    >>> pool(x, 2, mode="avg")
    array([[[[ 2.5,  4.5],
             [10.5, 12.5]]]])
    >>> pool(np.zeros((8, 6, 28, 28)), 2).shape
    (8, 6, 14, 14)
    """
    code = _pool_mode(mode)
    x = _check_pool_input(x)
    window, stride, pads, out_shape = _pool_geometry(x.shape[2:], pool_size, stride, padding)
    x = contiguous(x, x.dtype)
    return _pool_forward(x, window, stride, pads, out_shape, code, n_jobs, False, out)[0]


def pool_with_indices(x, pool_size, *, stride=None, padding=0, mode="max", n_jobs=None,
                      out=None):
    """Max or min pooling that also returns the position of each extreme.

    For layers that cache the positions in the forward pass and pass them to
    :func:`pool_backward_indices` instead of scanning ``x`` again.

    Parameters
    ----------
    x, pool_size, stride, padding, n_jobs
        As in :func:`pool`.
    mode : {'max', 'min'}, default='max'
        Average pooling has no positions.
    out : tuple (y, indices), default=None
        Where to write the results (``indices`` int64), as in :func:`conv`.

    Returns
    -------
    y : ndarray of shape (N, C, *out)
        Equal to ``pool(x, ...)``.
    indices : ndarray of int64 and shape (N, C, *out)
        Flat (row-major) index, within the spatial plane ``x[n, c]``, of the first
        extreme cell of each window.

    Examples
    --------
    >>> y, idx = pool_with_indices([[[3.0, 1.0, 2.0, 5.0]]], 2)
    >>> y, idx
    (array([[[3., 5.]]]), array([[[0, 3]]]))
    """
    code = _pool_mode(mode, allowed=("max", "min"))
    x = _check_pool_input(x)
    window, stride, pads, out_shape = _pool_geometry(x.shape[2:], pool_size, stride, padding)
    x = contiguous(x, x.dtype)
    return _pool_forward(x, window, stride, pads, out_shape, code, n_jobs, True, out)


def pool_backward(grad_y, x, pool_size, *, stride=None, padding=0, mode="max",
                  n_jobs=None, out=None):
    """Gradient of :func:`pool` with respect to its input.

    Max and min send each window's gradient to the first extreme cell of the window
    in row-major order; average spreads it evenly over the window's real cells.
    Overlapping windows (stride below the window) add up.

    Parameters
    ----------
    grad_y : array-like of shape (N, C, *out)
        Gradient of the loss with respect to ``pool(x, ...)``.
    x : array-like of shape (N, C, *spatial)
        The forward input.
    pool_size, stride, padding, mode, n_jobs
        As in :func:`pool`.
    out : ndarray, default=None
        Where to write ``grad_x``, as in :func:`conv`.

    Returns
    -------
    grad_x : ndarray of shape (N, C, *spatial)
        In the common dtype of ``grad_y`` and ``x``. Bitwise identical for any
        ``n_jobs``.

    Examples
    --------
    >>> pool_backward([[[1.0, 10.0]]], [[[3.0, 1.0, 2.0, 5.0]]], 2)
    array([[[ 1.,  0.,  0., 10.]]])
    """
    code = _pool_mode(mode)
    x = _check_pool_input(x)
    grad_y = as_float_array(grad_y, "grad_y")
    window, stride, pads, out_shape = _pool_geometry(x.shape[2:], pool_size, stride, padding)
    expected = x.shape[:2] + out_shape
    if grad_y.shape != expected:
        raise ValueError(
            f"grad_y must have shape {expected} (the output of pool for x with shape "
            f"{x.shape}), got shape {grad_y.shape}"
        )
    return _pool_backward(grad_y, x, window, stride, pads, code, n_jobs, out)


def pool_backward_indices(grad_y, indices, x_shape, *, n_jobs=None, out=None):
    """Gradient of max or min pooling from the indices of :func:`pool_with_indices`.

    Gives the same result, bit for bit, as :func:`pool_backward` on the forward input.

    Parameters
    ----------
    grad_y : array-like of shape (N, C, *out)
        Gradient of the loss with respect to the pooled output.
    indices : array-like of int and shape (N, C, *out)
        The positions returned by :func:`pool_with_indices`.
    x_shape : tuple of int
        Shape ``(N, C, *spatial)`` of the forward input.
    n_jobs : int, default=None
        Threads, as in :func:`conv`.
    out : ndarray, default=None
        Where to write ``grad_x``, as in :func:`conv`.

    Returns
    -------
    grad_x : ndarray of shape x_shape
        Same dtype as ``grad_y`` if float32 or float64, else float64.
    """
    grad_y = as_float_array(grad_y, "grad_y")
    check_batch(grad_y, "grad_y")
    indices = np.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"indices must hold integers, got dtype {indices.dtype}")
    if indices.shape != grad_y.shape:
        raise ValueError(
            f"indices must have the shape of grad_y {grad_y.shape}, got shape "
            f"{indices.shape}"
        )
    x_shape = per_axis(tuple(x_shape), len(tuple(x_shape)), "x_shape", minimum=0)
    if len(x_shape) != grad_y.ndim or x_shape[:2] != grad_y.shape[:2]:
        raise ValueError(
            f"x_shape {x_shape} must be (N, C, *spatial) with the N, C and number of "
            f"spatial axes of grad_y with shape {grad_y.shape}"
        )
    if any(size == 0 for size in x_shape[2:]):
        raise ValueError(f"x_shape has an empty spatial axis: {x_shape}")
    plane_size = int(np.prod(x_shape[2:]))
    # The kernel writes grad_x[indices] with bounds checks off: a bad index would
    # corrupt memory, so check the range here.
    if indices.size and (indices.min() < 0 or indices.max() >= plane_size):
        raise ValueError(
            f"indices must lie in [0, {plane_size}) (flat positions in a plane of "
            f"x_shape {x_shape}), got values in [{indices.min()}, {indices.max()}]"
        )
    grad_y = contiguous(grad_y, grad_y.dtype)
    indices = contiguous(indices, np.int64)
    if out is None:
        grad_x = np.empty(x_shape, dtype=grad_y.dtype)
    else:
        grad_x = check_out(out, x_shape, grad_y.dtype, "out", (grad_y, indices))
    n_threads = _pool_threads(n_jobs, x_shape, grad_y.shape, (1,))
    if x_shape[0] > 0:
        _kernel.pool_backward_indices(
            _flat_planes(grad_y), _flat_planes(indices), _flat_planes(grad_x), n_threads
        )
    return grad_x


def global_pool(x, mode="avg", n_jobs=None):
    """Max, average or min over all spatial axes: ``(N, C, *spatial) -> (N, C)``.

    Parameters
    ----------
    x : array-like of shape (N, C, *spatial)
        Input batch, 1 to 3 spatial axes.
    mode : {'avg', 'max', 'min'}, default='avg'
        Operation. For max and min, a NaN in a plane is the result.
    n_jobs : int, default=None
        Threads, as in :func:`conv`.

    Returns
    -------
    y : ndarray of shape (N, C)
        Same dtype as ``x`` if float32 or float64, else float64.

    Examples
    --------
    >>> global_pool([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, -1.0], [4.0, 1.0]]]])
    array([[3., 1.]])
    >>> global_pool([[[[1.0, 2.0], [3.0, 6.0]], [[0.0, -1.0], [4.0, 1.0]]]], "min")
    array([[ 1., -1.]])
    """
    code = _pool_mode(mode)
    x = _check_pool_input(x)
    x = contiguous(x, x.dtype)
    y = np.empty(x.shape[:2], dtype=x.dtype)
    n_threads = _pool_threads(n_jobs, x.shape, y.shape, (1,))
    if x.shape[0] > 0:
        _kernel.global_forward(_flat_planes(x), y.reshape(-1), code, n_threads)
    return y


def global_pool_backward(grad_y, x, mode="avg", n_jobs=None):
    """Gradient of :func:`global_pool` with respect to its input.

    Max and min send the gradient to the first extreme cell of each plane in
    row-major order; average spreads it evenly over the plane.

    Parameters
    ----------
    grad_y : array-like of shape (N, C)
        Gradient of the loss with respect to ``global_pool(x, mode)``.
    x : array-like of shape (N, C, *spatial)
        The forward input.
    mode, n_jobs
        As in :func:`global_pool`.

    Returns
    -------
    grad_x : ndarray of shape (N, C, *spatial)
        In the common dtype of ``grad_y`` and ``x``.

    Examples
    --------
    >>> global_pool_backward([[4.0]], [[[[1.0, 3.0], [3.0, 0.0]]]], "max")
    array([[[[0., 4.],
             [0., 0.]]]])
    """
    code = _pool_mode(mode)
    x = _check_pool_input(x)
    grad_y = as_float_array(grad_y, "grad_y")
    if grad_y.shape != x.shape[:2]:
        raise ValueError(
            f"grad_y must have shape {x.shape[:2]} (the output of global_pool for x "
            f"with shape {x.shape}), got shape {grad_y.shape}"
        )
    dtype = common_float_dtype(grad_y, x)
    grad_y = contiguous(grad_y, dtype)
    x = contiguous(x, dtype)
    grad_x = np.empty(x.shape, dtype=dtype)
    n_threads = _pool_threads(n_jobs, x.shape, grad_y.shape, (1,))
    if x.shape[0] > 0:
        _kernel.global_backward(
            grad_y.reshape(-1), _flat_planes(x), _flat_planes(grad_x), code, n_threads
        )
    return grad_x
