"""Functional API: convolution and pooling on batches of 1-D, 2-D or 3-D data.

Layout is channels-first: a batch is ``(N, C, *spatial)`` with one, two or three
spatial axes. Every function checks its arguments (raising ``ValueError`` or
``TypeError`` naming the argument and the shapes), normalises stride, dilation and
padding, allocates the output and makes one call into a compiled kernel.

dtype rules: float32 stays float32 and float64 stays float64; other real numeric
input becomes float64; a mix of float32 and float64 computes in float64.
Non-contiguous and read-only arrays are accepted (copied only when needed).
"""

import contextlib
import functools
import math

import numpy as np

from . import _conv, _pool
from ._threads import effective_n_threads, single_threaded_blas, threads_for_work
from ._validation import (
    MAX_GEOMETRY_VALUE,
    as_float_array,
    check_batch,
    check_out,
    check_pool_windows,
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
    "global_pool",
    "global_pool_backward",
    "pool",
    "pool_backward",
    "pool_backward_indices",
    "pool_output_shape",
    "pool_with_indices",
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
    with _blas_guard(stride):
        _conv.conv_forward(
            view_3d(x), view_3d(w), b, view_3d(y), stride, pad_lo, dilation, n_threads
        )
    return y


def _blas_guard(stride_3d, inputs_finite=True):
    """Single-threaded BLAS around kernel calls that use it, a no-op otherwise.

    Limiting costs tens of microseconds per call (threadpoolctl), so it is paid only
    on the im2col path.
    """
    if _conv.uses_blas(stride_3d, inputs_finite):
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

    grad_x, grad_w, grad_b, chunks = _conv_backward_outputs(x, w, grad_y, dtype,
                                                            compute_grad_x, out)
    if chunks is None:
        return grad_x, grad_w, grad_b
    stride, pad_lo, dilation = to_3d(stride, 1), to_3d([lo for lo, _ in pads], 0), to_3d(dilation, 1)
    # Only the stride-1 path needs finite inputs (see _conv.conv_backward).
    inputs_finite = _conv.uses_blas(stride) or _all_finite(x, w, grad_y)
    with _blas_guard(stride, inputs_finite):
        _conv.conv_backward(
            view_3d(grad_y), view_3d(x), view_3d(w),
            None if grad_x is None else view_3d(grad_x),
            *chunks, stride, pad_lo, dilation, n_threads, inputs_finite,
        )
    return _add_chunks(chunks, grad_x, grad_w, grad_b)


def _conv_pool2x2_supported(x_shape, kernel_shape, *, stride=1, padding=0, dilation=1):
    """Whether :func:`_conv_pool2x2` can fuse this convolution with a 2x2 pooling.

    Internal (used by :class:`skconv._network.Network`): 2-D maps, stride 1 and a
    convolution output of at least 2x2. ``x_shape`` is one sample's ``(C, H, W)``.
    """
    if len(x_shape) != 3 or len(kernel_shape) != 2:
        return False
    try:
        stride, _, _, out = _conv_geometry(x_shape[1:], kernel_shape, stride, padding,
                                           dilation)
    except (TypeError, ValueError):
        return False
    return all(s == 1 for s in stride) and all(size >= 2 for size in out)


def _conv_pool2x2_geometry(x, w, padding, dilation):
    """Checked (conv_out, pooled_out, pad_lo, dilation) of the fused 2-D path."""
    try:
        geometry = _cached_conv_pool2x2_geometry(x.shape[1:], w.shape[2:], padding,
                                                 dilation)
    except TypeError:  # unhashable padding or dilation (a list): not cached
        geometry = _cached_conv_pool2x2_geometry.__wrapped__(x.shape[1:], w.shape[2:],
                                                             padding, dilation)
    if geometry is None:
        raise ValueError(
            f"the fused convolution and 2x2 pooling needs 2-D maps, stride 1 and a "
            f"convolution output of at least 2x2: x has shape {x.shape}, w has shape "
            f"{w.shape}, padding={padding!r}, dilation={dilation!r}"
        )
    conv_out, _, _, dilation_3d = geometry
    _check_padded_size(x.shape, w.shape, (1, 1), conv_out[1:], padding,
                       dilation_3d[1:])
    return geometry


@functools.lru_cache(maxsize=64, typed=True)
def _cached_conv_pool2x2_geometry(x_shape, kernel_shape, padding, dilation):
    # A network calls the fused op with the same few geometries every minibatch;
    # checking them costs as much as the kernel on a small batch. None: unsupported.
    if not _conv_pool2x2_supported(x_shape, kernel_shape, padding=padding,
                                  dilation=dilation):
        return None
    _, pads, dilation, conv_out = _conv_geometry(x_shape[1:], kernel_shape, 1, padding,
                                                 dilation)
    pooled = tuple(size // 2 for size in conv_out)
    return ((1,) + conv_out, pooled, to_3d([lo for lo, _ in pads], 0),
            to_3d(dilation, 1))


def _conv_pool2x2(x, w, b=None, *, padding=0, dilation=1, mode="max", relu=False,
                  n_jobs=None, out=None, codes=None, want_codes=True):
    """A stride-1 2-D convolution followed by 2x2/stride-2 max or min pooling (and
    relu), fused.

    Internal: the network's path for a Conv layer followed by such a Pool layer (and a
    relu Activation). The result equals ``pool_with_indices(conv(x, w, b, ...), 2,
    mode=mode)`` (then ``np.maximum(y, 0)``) bit for bit, without storing the
    convolution's output (its pooling is done per sample, in cache). Instead of flat
    indices it returns ``codes``: the winning cell's place in its window (0 to 3,
    row-major), which :func:`_conv_pool2x2_backward` takes.

    Parameters
    ----------
    x, w, b, padding, dilation, n_jobs
        As in :func:`conv` (stride is 1), with 2-D maps.
    mode : {'max', 'min'}
    relu : bool, default=False
        Apply relu to the pooled output.
    out, codes : ndarray, default=None
        Where to write the pooled output and the codes (uint8), as ``out`` in
        :func:`conv`.
    want_codes : bool, default=True
        False skips the codes (inference) and returns None for them.

    Returns
    -------
    y : ndarray of shape (N, D, floor(H_out / 2), floor(W_out / 2))
    codes : ndarray of uint8, same shape, or None
    """
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    x, w, b = _check_conv_inputs(x, w, b)
    conv_out, pooled, pad_lo, dilation = _conv_pool2x2_geometry(x, w, padding, dilation)
    y_shape = x.shape[:1] + w.shape[:1] + pooled
    inputs = (x, w, b)
    y = (np.empty(y_shape, dtype=x.dtype) if out is None
         else check_out(out, y_shape, x.dtype, "out", inputs))
    if want_codes:
        codes = (np.empty(y_shape, dtype=np.uint8) if codes is None
                 else check_out(codes, y_shape, np.uint8, "codes", inputs,
                                [("out", y)]))
    else:
        codes = None
    n_threads = threads_for_work(effective_n_threads(n_jobs),
                                 w.size * math.prod(conv_out) * x.shape[0])
    _conv.conv_pool_forward(view_3d(x), view_3d(w), b, view_3d(y),
                            None if codes is None else view_3d(codes), conv_out, pad_lo,
                            dilation, mode == "min", bool(relu), n_threads)
    return y, codes


def _conv_pool2x2_backward(grad_y, codes, x, w, *, padding=0, dilation=1, relu_output=None,
                           n_jobs=None, compute_grad_x=True, out=None):
    """Gradients of :func:`_conv_pool2x2` with respect to x, w and b.

    Internal. Equals ``conv_backward`` of ``pool_backward_indices`` of ``grad_y`` (of
    the relu's backward first, with ``relu_output``) bit for bit, without storing the
    convolution's gradient for the whole batch.

    Parameters
    ----------
    grad_y : ndarray of shape (N, D, P1, P2)
        Gradient with respect to the pooled output.
    codes : ndarray of uint8, same shape
        As returned by the forward.
    relu_output : ndarray, same shape, default=None
        The forward's output when it applied relu.
    x, w, padding, dilation, n_jobs, compute_grad_x, out
        As in :func:`conv_backward`.

    Returns
    -------
    grad_x, grad_w, grad_b
        As in :func:`conv_backward`.
    """
    x, w, _ = _check_conv_inputs(x, w, None)
    conv_out, pooled, pad_lo, dilation_3d = _conv_pool2x2_geometry(x, w, padding,
                                                                   dilation)
    grad_y = as_float_array(grad_y, "grad_y")
    expected = x.shape[:1] + w.shape[:1] + pooled
    codes = np.asarray(codes)
    named = [("grad_y", grad_y), ("codes", codes)]
    if relu_output is not None:
        relu_output = as_float_array(relu_output, "relu_output")
        named.append(("relu_output", relu_output))
    for name, array in named:
        if array.shape != expected:
            raise ValueError(
                f"{name} must have shape {expected} (the pooled output for x with shape "
                f"{x.shape} and w with shape {w.shape}), got shape {array.shape}"
            )
    if codes.dtype != np.uint8:
        raise TypeError(f"codes must be uint8 (from the forward), got {codes.dtype}")
    dtype = common_float_dtype(grad_y, x, w)
    grad_y, x, w = contiguous(grad_y, dtype), contiguous(x, dtype), contiguous(w, dtype)
    codes = np.ascontiguousarray(codes)
    if relu_output is not None:
        relu_output = contiguous(relu_output, dtype)
    grad_x, grad_w, grad_b = _conv_backward_arrays(x, w, grad_y, dtype, compute_grad_x,
                                                   out)
    n_threads = threads_for_work(effective_n_threads(n_jobs),
                                 2 * w.size * math.prod(conv_out) * x.shape[0])
    if _conv.conv_pool_backward(
        view_3d(grad_y), view_3d(codes),
        None if relu_output is None else view_3d(relu_output), view_3d(x), view_3d(w),
        None if grad_x is None else view_3d(grad_x), view_3d(grad_w), grad_b, conv_out,
        pad_lo, dilation_3d, n_threads,
    ):
        return grad_x, grad_w, grad_b
    return _conv_pool2x2_backward_general(grad_y, codes, relu_output, x, w, conv_out,
                                          padding, dilation, n_jobs, compute_grad_x,
                                          (grad_x, grad_w, grad_b))


def _conv_pool2x2_backward_general(grad_y, codes, relu_output, x, w, conv_out, padding,
                                   dilation, n_jobs, compute_grad_x, out):
    """:func:`_conv_pool2x2_backward` when the fused kernel declined: an inf or a NaN
    in x, w or grad_y (the kernel checks as it reads them). The fused kernel is the
    shifted path, which needs finite inputs, so unpool in numpy and take the general
    path (rare: a diverged network). ``out`` as in :func:`conv_backward`."""
    if relu_output is not None:
        with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as the kernel gives
            grad_y = grad_y * (relu_output > 0)  # the relu's backward
    return conv_backward(_unpool2x2(grad_y, codes, conv_out[1:]), x, w,
                         padding=padding, dilation=dilation, n_jobs=n_jobs,
                         compute_grad_x=compute_grad_x, out=out)


class _ConvPool2x2Step:
    """:func:`_conv_pool2x2` and its backward, prepared for one layer's input shape.

    Internal: the training path of a network layer, which runs the same shapes every
    minibatch. Everything that depends on the shapes alone - the argument checks,
    the geometry, the outputs - is done once here; a call then checks that its arrays
    still have the prepared shapes and dtype (so no kernel ever sees another shape)
    and runs the kernel. The results are those of :func:`_conv_pool2x2` and
    :func:`_conv_pool2x2_backward` bit for bit (the same kernels).

    The outputs (``y``, ``codes``, ``grad_x``) belong to the step and are overwritten
    by the next call, like a layer's workspaces: one step serves one caller at a time.
    The backward refuses inputs that share memory with its ``grad_x``.

    Parameters
    ----------
    x_shape : tuple of int
        ``(N, C, H, W)``.
    w_shape : tuple of int
        ``(D, C, K1, K2)``.
    dtype : float32 or float64
    padding, dilation, mode, relu
        As in :func:`_conv_pool2x2`.
    """

    def __init__(self, x_shape, w_shape, dtype, *, padding=0, dilation=1, mode="max",
                 relu=False):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        # The full checks of the general op, once, on arrays of the prepared shapes.
        x, w, _ = _check_conv_inputs(np.empty(x_shape, self.dtype),
                                     np.empty(w_shape, self.dtype), None)
        conv_out, pooled, self._pad_lo, self._dilation = _conv_pool2x2_geometry(
            x, w, padding, dilation)
        self._conv_out = conv_out
        self.x_shape, self.w_shape = x.shape, w.shape
        self.y_shape = x.shape[:1] + w.shape[:1] + pooled
        self.padding, self.dilation_arg = padding, dilation
        self._want_min, self._relu = mode == "min", bool(relu)
        self.y = np.empty(self.y_shape, dtype=self.dtype)
        self.codes = np.empty(self.y_shape, dtype=np.uint8)
        self.grad_x = np.empty(self.x_shape, dtype=self.dtype)
        self._x5, self._w5 = view_3d(x).shape, view_3d(w).shape
        self._y5 = view_3d(self.y)
        self._codes5 = view_3d(self.codes)
        self._grad_x5 = view_3d(self.grad_x)
        work = w.size * math.prod(conv_out) * x.shape[0]
        self._forward_work, self._backward_work = work, 2 * work

    def _checked(self, array, shape, name):
        """``array`` as a C-contiguous array of the step's dtype and ``shape``."""
        if (type(array) is not np.ndarray or array.dtype != self.dtype
                or not array.flags.c_contiguous):
            array = np.ascontiguousarray(as_float_array(array, name), dtype=self.dtype)
        if array.shape != shape:
            raise ValueError(f"{name} must have shape {shape} (the prepared shape), got "
                             f"shape {array.shape}")
        return array

    def forward(self, x, w, b, n_threads):
        """The pooled output and its codes (the step's own arrays).

        Parameters
        ----------
        x : ndarray of shape ``x_shape``
        w : ndarray of shape ``w_shape``
        b : ndarray of shape (D,) or None
        n_threads : int
            Threads to use at most (an effective count, not ``n_jobs``).

        Returns
        -------
        y, codes : ndarray of shape ``y_shape`` (codes uint8)
        """
        x = self._checked(x, self.x_shape, "x")
        w = self._checked(w, self.w_shape, "w")
        if b is not None:
            b = self._checked(b, self.w_shape[:1], "b")
        _conv.conv_pool_forward(
            x.reshape(self._x5), w.reshape(self._w5), b, self._y5, self._codes5,
            self._conv_out, self._pad_lo, self._dilation, self._want_min, self._relu,
            threads_for_work(n_threads, self._forward_work))
        return self.y, self.codes

    def backward(self, grad_y, x, w, grad_w, grad_b, n_threads, compute_grad_x=True):
        """Gradients after :meth:`forward` on the same ``x`` and ``w``.

        Parameters
        ----------
        grad_y : ndarray of shape ``y_shape``
            Gradient with respect to the forward's (pooled, relu'd) output.
        x, w : ndarray
            The forward's inputs.
        grad_w, grad_b : ndarray
            Where to write the weight and bias gradients (C-contiguous, of shapes
            ``w_shape`` and (D,) and the step's dtype).
        n_threads : int
        compute_grad_x : bool, default=True

        Returns
        -------
        grad_x : ndarray of shape ``x_shape`` (the step's own array) or None
        """
        grad_y = self._checked(grad_y, self.y_shape, "grad_y")
        x = self._checked(x, self.x_shape, "x")
        w = self._checked(w, self.w_shape, "w")
        inputs = (grad_y, x, w, self.y)
        grad_x = self.grad_x if compute_grad_x else None
        outputs = [("the step's grad_x", grad_x)]
        grad_w = check_out(grad_w, self.w_shape, self.dtype, "grad_w", inputs, outputs)
        outputs.append(("grad_w", grad_w))
        grad_b = check_out(grad_b, self.w_shape[:1], self.dtype, "grad_b", inputs,
                           outputs)
        if compute_grad_x and any(np.may_share_memory(grad_x, a) for a in inputs):
            raise ValueError("the inputs must not share memory with the step's grad_x")
        if _conv.conv_pool_backward(
            grad_y.reshape(self._y5.shape), self._codes5,
            self._y5 if self._relu else None, x.reshape(self._x5), w.reshape(self._w5),
            self._grad_x5 if compute_grad_x else None, grad_w.reshape(self._w5), grad_b,
            self._conv_out, self._pad_lo, self._dilation,
            threads_for_work(n_threads, self._backward_work),
        ):
            return grad_x
        grad_x, _, _ = _conv_pool2x2_backward_general(
            grad_y, self.codes, self.y if self._relu else None, x, w, self._conv_out,
            self.padding, self.dilation_arg, n_threads, compute_grad_x,
            (grad_x, grad_w, grad_b))
        return grad_x


def _unpool2x2(grad_y, codes, conv_out):
    """The convolution's gradient from a 2x2 pooling's gradient and codes (numpy)."""
    n, d, p1, p2 = grad_y.shape
    cells = np.zeros((n, d, p1, p2, 4), dtype=grad_y.dtype)
    np.put_along_axis(cells, codes[..., None].astype(np.intp), grad_y[..., None], axis=-1)
    full = np.zeros((n, d) + tuple(conv_out), dtype=grad_y.dtype)
    full[:, :, :2 * p1, :2 * p2] = (
        cells.reshape(n, d, p1, p2, 2, 2).transpose(0, 1, 2, 4, 3, 5)
        .reshape(n, d, 2 * p1, 2 * p2))
    return full


def _all_finite(*arrays):
    """Whether every value of these C-contiguous float arrays is finite."""
    return all(_conv.all_finite(array.reshape(-1)) for array in arrays)


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


def _conv_backward_outputs(x, w, grad_y, dtype, compute_grad_x, out):
    """Outputs and scratch of a convolution's backward.

    Returns ``(grad_x or None, grad_w, grad_b, chunks)``: new arrays, or ``out``
    checked, and ``chunks``, the kernel's per-chunk partial sums of grad_w and grad_b
    (see ``_conv.conv_backward``), or None for an empty batch, whose grad_w and grad_b
    are then zeros.
    """
    grad_x, grad_w, grad_b = _conv_backward_arrays(x, w, grad_y, dtype, compute_grad_x,
                                                   out)
    n_chunks = _conv.n_reduction_chunks(x.shape[0])
    if n_chunks == 0:
        grad_w[...] = 0
        grad_b[...] = 0
        return grad_x, grad_w, grad_b, None
    chunks = (np.empty((n_chunks, w.size), dtype=dtype),
              np.empty((n_chunks, w.shape[0]), dtype=dtype))
    return grad_x, grad_w, grad_b, chunks


def _add_chunks(chunks, grad_x, grad_w, grad_b):
    """Fixed-order sums of the per-chunk partials into grad_w and grad_b (one
    compiled call, rows added in order); returns the three gradients."""
    _conv.sum_chunks(chunks[0], chunks[1], grad_w.reshape(-1), grad_b)
    return grad_x, grad_w, grad_b


# ---------------------------------------------------------------------------------
# Pooling
# ---------------------------------------------------------------------------------

_POOL_MODES = {"max": _pool.MODE_MAX, "avg": _pool.MODE_AVG, "min": _pool.MODE_MIN}

# Cells a pooling call must visit before a second thread pays off. Waking an OpenMP
# team costs microseconds on an idle machine and milliseconds on a busy one, while
# pooling visits about a cell per nanosecond; PyTorch's grain size is the same 32k.
# Results do not depend on the thread count, so this only affects speed.
_POOL_GRAIN = 32768


def _pool_threads(n_jobs, x_shape, y_shape, window):
    """Thread count for a pooling call: ``n_jobs`` capped by the amount of work."""
    n_threads = effective_n_threads(n_jobs)
    work = math.prod(x_shape) + math.prod(y_shape) * math.prod(window)
    return max(1, min(n_threads, work // _POOL_GRAIN))


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


def _pool_mode(mode, allowed=("max", "avg", "min")):
    """Kernel code of a pooling mode; raises on anything else."""
    if not isinstance(mode, str) or mode not in allowed:
        options = ", ".join(repr(m) for m in allowed)
        raise ValueError(f"mode must be one of {options}, got {mode!r}")
    return _POOL_MODES[mode]


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
        _pool.pool_forward(
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
        _pool.pool_backward(
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
        _pool.pool_backward_indices(
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
        _pool.global_forward(_flat_planes(x), y.reshape(-1), code, n_threads)
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
        _pool.global_backward(
            grad_y.reshape(-1), _flat_planes(x), _flat_planes(grad_x), code, n_threads
        )
    return grad_x
