"""Argument checking shared by the public ops: arrays, dtypes, per-axis tuples, padding.

Kernels run with bounds checks off, so everything a kernel relies on is checked here
and reported with the argument's name and the shapes involved.
"""

import numbers

import numpy as np

from .._kernels import conv as _conv_kernel
from .threads import effective_n_threads, threads_for_cells

MAX_SPATIAL_DIMS = 3

#: The padding modes given by name (an int or a per-axis tuple pads explicitly).
PADDING_MODES = ("same", "valid")

#: Largest stride, dilation, padding or window the ops take. The kernels do their
#: index arithmetic in C ``Py_ssize_t``: below this bound no sum or product of two
#: such values with an array's size can overflow (a larger value would only give an
#: OverflowError from the compiled layer, or wrap around).
MAX_GEOMETRY_VALUE = 2**31 - 1


def as_float_array(value, name):
    """Return ``value`` as an ndarray of float32 or float64 (not yet contiguous).

    float32 and float64 are kept; any other real numeric dtype (ints, bools, float16)
    becomes float64. Complex, object and string data raise ``TypeError``.
    """
    try:
        array = np.asarray(value)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be array-like of numbers: {exc}") from None
    if array.dtype in (np.float32, np.float64):
        return array
    if array.dtype.kind in "biuf":
        return array.astype(np.float64)
    raise TypeError(
        f"{name} must hold real numbers, got dtype {array.dtype} with shape {array.shape}"
    )


def common_float_dtype(*arrays):
    """float32 when every array is float32, else float64 (mixed inputs promote)."""
    if all(a.dtype == np.float32 for a in arrays if a is not None):
        return np.float32
    return np.float64


def contiguous(array, dtype):
    """C-contiguous array of ``dtype``; no copy when it already is one."""
    return np.ascontiguousarray(array, dtype=dtype)


def check_batch(x, name, spatial_dims=None):
    """Check that ``x`` is ``(N, C, *spatial)`` with 1-3 spatial axes, all non-empty."""
    if spatial_dims is None:
        if not 3 <= x.ndim <= 2 + MAX_SPATIAL_DIMS:
            raise ValueError(
                f"{name} must have shape (N, C, *spatial) with 1 to "
                f"{MAX_SPATIAL_DIMS} spatial axes (ndim 3 to {2 + MAX_SPATIAL_DIMS}), "
                f"got ndim {x.ndim} with shape {x.shape}"
            )
    elif x.ndim != 2 + spatial_dims:
        raise ValueError(
            f"{name} must have ndim {2 + spatial_dims} (N, C and {spatial_dims} spatial "
            f"axes), got shape {x.shape}"
        )
    if any(size == 0 for size in x.shape[1:]):
        raise ValueError(
            f"{name} has an empty channel or spatial axis: shape {x.shape}"
        )


def is_int(value):
    """Whether ``value`` is an integer (a Python or numpy int; ``bool`` is not).

    The one test of "an int" of the package: the ops, the engine's layers and
    builder, the estimators and the plots all call it.
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def per_axis(value, n_axes, name, minimum=1, maximum=None):
    """Expand an int or a per-axis sequence to a tuple of ``n_axes`` ints >= ``minimum``
    (and <= ``maximum`` unless it is None)."""
    if is_int(value):
        values = (int(value),) * n_axes
    else:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(
                f"{name} must be an int or a tuple of {n_axes} ints, got {value!r}"
            ) from None
        if not all(is_int(v) for v in values):
            raise TypeError(
                f"{name} must be an int or a tuple of {n_axes} ints, got {value!r}"
            )
        if len(values) != n_axes:
            raise ValueError(
                f"{name} has {len(values)} entries but the input has {n_axes} spatial "
                f"axes: got {value!r}"
            )
        values = tuple(int(v) for v in values)
    if any(v < minimum for v in values):
        raise ValueError(f"{name} must be >= {minimum} on every axis, got {value!r}")
    if maximum is not None and any(v > maximum for v in values):
        raise ValueError(
            f"{name} must be at most {maximum} on every axis (the kernels' index "
            f"range), got {value!r}"
        )
    return values


def normalize_padding(padding, in_shape, window, stride, dilation, name="padding"):
    """Per-axis ``(low, high)`` zero padding.

    Parameters
    ----------
    padding : int, tuple of int, 'valid' or 'same'
        An int pads every axis on both sides; a tuple gives one symmetric amount per
        axis; 'valid' is no padding; 'same' gives ``out = ceil(in / stride)`` with the
        total padding split so that the extra cell goes at the end (TensorFlow's
        rule, for any stride). Strings are lowercase, case-sensitive, like every
        string option of skconv and scikit-learn's ``StrOptions`` (so the ops and
        the estimator accept the same values).
    in_shape, window, stride, dilation : tuple of int
        Spatial sizes, window (kernel) sizes, strides and dilations, one per axis.

    Returns
    -------
    list of (int, int)
    """
    n_axes = len(in_shape)
    if isinstance(padding, str):
        mode = padding
        if mode == "valid":
            return [(0, 0)] * n_axes
        if mode == "same":
            pads = []
            for size, k, s, d in zip(in_shape, window, stride, dilation):
                out = -(-size // s)
                total = max((out - 1) * s + d * (k - 1) + 1 - size, 0)
                pads.append((total // 2, total - total // 2))
            return pads
        raise ValueError(
            f"{name} must be an int, a tuple of ints, 'valid' or 'same', got "
            f"{padding!r} (the strings are lowercase)"
        )
    try:
        amounts = per_axis(padding, n_axes, name, minimum=0,
                           maximum=MAX_GEOMETRY_VALUE)
    except TypeError:
        raise TypeError(
            f"{name} must be an int, a tuple of {n_axes} ints, 'valid' or 'same', "
            f"got {padding!r}"
        ) from None
    return [(p, p) for p in amounts]


def output_shape(in_shape, window, stride, pads, dilation):
    """``floor((W + p_lo + p_hi - d*(w - 1) - 1) / s) + 1`` per axis (may be <= 0)."""
    return tuple(
        (size + lo + hi - d * (k - 1) - 1) // s + 1
        for size, k, s, (lo, hi), d in zip(in_shape, window, stride, pads, dilation)
    )


def check_window_fits(in_shape, window, pads, dilation, what, name):
    """Raise when a (dilated) window is larger than the padded input on some axis."""
    for axis, (size, k, (lo, hi), d) in enumerate(zip(in_shape, window, pads, dilation)):
        extent = d * (k - 1) + 1
        if extent > size + lo + hi:
            raise ValueError(
                f"{what} {tuple(window)} (dilation {tuple(dilation)}) is larger than the "
                f"padded input on spatial axis {axis}: {name} spatial shape "
                f"{tuple(in_shape)}, padding {[tuple(p) for p in pads]}"
            )


def to_3d(shape_or_tuple, fill):
    """Left-pad a per-axis tuple to three axes (the kernels always see three)."""
    return (fill,) * (MAX_SPATIAL_DIMS - len(shape_or_tuple)) + tuple(shape_or_tuple)


def view_3d(array):
    """View ``(N, C, *spatial)`` as ``(N, C, S0, S1, S2)`` with leading singleton axes."""
    return array.reshape(array.shape[:2] + to_3d(array.shape[2:], 1))


def check_pool_windows(in_shape, window, stride, pads, name):
    """Raise unless every pooling window fits the padded input and holds a real cell.

    Pooling skips padded cells, so a window made only of padding has no max, min or
    mean. Real cells are contiguous, so checking the first and the last window of each
    axis covers every window in between. 'same' padding always passes (its low pad is
    below the window and its last window starts inside the input).
    """
    for axis, (size, k, s, (lo, hi)) in enumerate(zip(in_shape, window, stride, pads)):
        if k > size + lo + hi:
            raise ValueError(
                f"pool_size {tuple(window)} is larger than the padded input on spatial "
                f"axis {axis}: {name} spatial shape {tuple(in_shape)}, padding "
                f"{[tuple(p) for p in pads]}"
            )
        n_out = (size + lo + hi - k) // s + 1
        last_start = (n_out - 1) * s - lo
        if lo >= k or last_start >= size:
            raise ValueError(
                f"padding {[tuple(p) for p in pads]} leaves a pooling window with no real "
                f"cell on spatial axis {axis} (pool_size {tuple(window)}, stride "
                f"{tuple(stride)}, {name} spatial shape {tuple(in_shape)}); padding must "
                f"be smaller than the window on each side"
            )


def check_out(out, shape, dtype, name, inputs=(), outputs=()):
    """Check a caller-supplied output array; return it.

    It must be a writeable, C-contiguous ndarray of exactly ``shape`` and ``dtype``
    that shares no memory with ``inputs`` (the kernels read their inputs while writing
    their outputs, and run with bounds checks off), nor with the call's other
    ``outputs``, given as ``(name, array)`` pairs (the kernels write them
    independently, so one would overwrite the other).
    """
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(out).__name__}")
    if out.shape != tuple(shape) or out.dtype != np.dtype(dtype):
        raise ValueError(
            f"{name} must have shape {tuple(shape)} and dtype {np.dtype(dtype)}, got "
            f"shape {out.shape} and dtype {out.dtype}"
        )
    if not out.flags.c_contiguous or not out.flags.writeable:
        raise ValueError(f"{name} must be a writeable C-contiguous array")
    for array in inputs:
        if array is not None and np.may_share_memory(out, array):
            raise ValueError(f"{name} must not share memory with the inputs")
    # Both are C-contiguous, so overlapping bounds (what may_share_memory checks)
    # means overlapping memory.
    for other_name, other in outputs:
        if other is not None and np.may_share_memory(out, other):
            raise ValueError(f"{name} must not share memory with {other_name}")
    return out


def all_finite(array, n_jobs=None):
    """Whether a float32 or float64 array holds no inf and no NaN (True when empty).

    One scan on up to ``n_jobs`` threads: the estimators' check of a large ``X``,
    which scikit-learn's ``assert_all_finite`` makes on one thread (the sum of all
    values, a pass over memory that cost a tenth of a multichannel signal's
    inference on two threads). Other dtypes are not checked here: True.
    """
    array = np.asarray(array)
    if array.dtype not in (np.float32, np.float64):
        return True
    values = np.ascontiguousarray(array).reshape(-1)
    return _conv_kernel.all_finite(
        values, threads_for_cells(effective_n_threads(n_jobs), values.size))
