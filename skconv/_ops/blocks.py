"""Prepared ops: fused multi-layer blocks (convolution, pooling, activation).

A network runs the same shapes every minibatch, and a convolution followed by a
pooling (and an activation) is cheaper as one kernel call that pools each sample's
convolution while it is in cache than as three passes over memory. This module is
the ops layer's interface for such blocks:

- :func:`prepare_conv_block` takes one block's settings - one sample's input shape,
  the number of filters, a :class:`ConvSpec`, an optional :class:`PoolSpec` and an
  optional activation - and returns a prepared block, or None when no fused kernel
  exists for those settings (the caller then runs the plain ops one by one);
- a block checks its geometry once, when prepared, and then has ``forward`` and
  ``backward`` methods whose results equal the plain ops' bit for bit.

Implementations are classes listed in ``_IMPLEMENTATIONS``, each with a ``prepare``
class method that returns an instance or None; a new fused kernel after a
convolution (other dimensions, windows, strides or modes) is one more class there,
and no caller changes. A batch normalisation sits between a convolution and its
pooling and needs the whole batch's convolution first, so it is a prepared op of its
own, :class:`skconv._ops.norm.NormPoolBlock` (the normalisation, the pooling and the
relu), which the network asks for at a batch norm layer. Today here: :class:`ConvPool2x2Block`, a 2-D convolution of any stride followed
by a 2x2/stride-2 max or min pooling and optionally a relu (LeNet's blocks), or by
optionally a relu then a 2x2/stride-2 average pooling;
:class:`ConvPool1dBlock`, for signals: a convolution of any stride, then max or min
pooling of any window and stride (then relu), or relu then average pooling; and
:class:`ConvReluBlock`, any convolution and the relu right after it, for the
blocks whose pooling no kernel fuses (volumes, other windows and strides).
"""

import functools
import math
from typing import NamedTuple

import numpy as np

from .._kernels import conv as _kernel
from .conv import (
    _check_conv_inputs,
    _check_padded_size,
    _conv,
    _conv_backward_arrays,
    _conv_geometry,
    conv_backward,
)
from .pool import pool_backward_indices, pool_output_shape
from .threads import effective_n_threads, threads_for_cells, threads_for_work
from .validation import (
    as_float_array,
    check_out,
    common_float_dtype,
    contiguous,
    normalize_padding,
    per_axis,
    to_3d,
    view_3d,
)

__all__ = ["ConvPool1dBlock", "ConvPool2x2Block", "ConvReluBlock", "ConvSpec",
           "PoolSpec", "prepare_conv_block"]


class ConvSpec(NamedTuple):
    """A convolution's settings, as :func:`skconv.ops.conv` takes them.

    Attributes
    ----------
    kernel_shape : tuple of int
        Spatial kernel shape, one int per spatial axis.
    stride, padding, dilation
        As in :func:`skconv.ops.conv`.
    """

    kernel_shape: tuple
    stride: object = 1
    padding: object = 0
    dilation: object = 1


class PoolSpec(NamedTuple):
    """A pooling's settings, as :func:`skconv.ops.pool` takes them.

    Attributes
    ----------
    pool_size : tuple of int
        The window, one int per spatial axis (after any clipping to a small map).
    stride : tuple of int
        One int per spatial axis.
    padding : int, tuple of int, 'valid' or 'same'
    mode : {'max', 'avg', 'min'}
    """

    pool_size: tuple
    stride: tuple
    padding: object = 0
    mode: str = "max"


def prepare_conv_block(input_shape, filters, conv, following=(), dtype=np.float32):
    """A fused block for a convolution and the steps after it, or None when no fused
    kernel exists for them.

    Parameters
    ----------
    input_shape : tuple of int
        One sample's shape ``(C, *spatial)`` (no batch axis).
    filters : int
        Filters D of the convolution.
    conv : ConvSpec
    following : tuple, default=()
        What comes after the convolution, in order: :class:`PoolSpec` for a pooling,
        a string for an activation by name (as in
        :func:`skconv._nn.activations.get_activation`). A block covers all of them or
        is not made.
    dtype : float32 or float64, default=float32

    Returns
    -------
    block : object with ``forward`` and ``backward``, or None
        See :class:`ConvPool2x2Block` for the attributes and methods every block has.
    """
    dtype = np.dtype(dtype)
    input_shape = tuple(int(s) for s in input_shape)
    following = tuple(following)
    for implementation in _IMPLEMENTATIONS:
        block = implementation.prepare(input_shape, int(filters), conv, following, dtype)
        if block is not None:
            return block
    return None


class ConvPool2x2Block:
    """A 2-D convolution (any stride), a 2x2/stride-2 max or min pooling and
    optionally a relu (or optionally a relu, then a 2x2/stride-2 average pooling), as
    one kernel call per pass.

    Built by :func:`prepare_conv_block`. The convolution's output is never stored
    for the batch: each sample's is pooled in cache, and the backward rebuilds each
    sample's convolution gradient in cache (an average's backward makes it for the
    batch in one pass, then runs ``conv_backward``). Results equal
    ``pool_with_indices`` of ``conv`` (then relu), or ``pool`` of relu of ``conv``,
    and their backward bit for bit.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, H, W)``, one sample (``(C, W)`` for :class:`ConvPool1dBlock`).
    filters : int
    conv : ConvSpec
    pool : PoolSpec
        Max or min, unpadded at the start (see :meth:`prepare`).
    relu : bool
    dtype : float32 or float64

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        One sample's input and output shapes.
    dtype : numpy dtype
    """

    #: Batch shapes whose prepared arrays are kept (an epoch's last, smaller
    #: minibatch gets its own; partial_fit with many sizes starts over past this).
    _MAX_PREPARED = 16

    #: Spatial axes of the maps this block takes.
    _N_AXES = 2

    def __init__(self, input_shape, filters, conv, pool, relu, dtype):
        self.input_shape = tuple(input_shape)
        self.filters = filters
        self.conv = conv
        self.pool_size, self.pool_stride = tuple(pool.pool_size), tuple(pool.stride)
        self.mode = pool.mode
        self.relu = bool(relu)
        self.dtype = np.dtype(dtype)
        geometry = _cached_conv_pool_geometry(
            self.input_shape, tuple(conv.kernel_shape), self.pool_size,
            self.pool_stride, _hashable(conv.stride), _hashable(conv.padding),
            _hashable(conv.dilation))
        self.output_shape = (filters,) + geometry[1]
        self._prepared = {}
        self._last = None

    @classmethod
    def prepare(cls, input_shape, filters, conv, following, dtype):
        """An instance for these settings (see :func:`prepare_conv_block`), or None
        when they are not this block's: a max or min :class:`PoolSpec`, optionally
        followed by ``'relu'``, or an average one, optionally after
        ``'relu'``, that the fused kernel covers (:func:`_conv_pool_supported`) and
        that pads nothing before the start of an axis."""
        pools = [i for i, step in enumerate(following) if isinstance(step, PoolSpec)]
        if len(pools) != 1 or len(following) > 2:
            return None
        pool = following[pools[0]]
        others = tuple(step for step in following if step is not pool)
        # The order of the layers: relu after a max or min pooling (they commute),
        # before an average one (they do not).
        if others not in ((), ("relu",)) or (others and (pools[0] == 0) != (
                pool.mode != "avg")):
            return None
        if len(input_shape) != 1 + cls._N_AXES or dtype not in (np.float32, np.float64):
            return None
        kernel = tuple(conv.kernel_shape)
        window, stride = tuple(pool.pool_size), tuple(pool.stride)
        if not _conv_pool_supported(input_shape, kernel, pool_size=window,
                                    pool_stride=stride, mode=pool.mode,
                                    stride=conv.stride, padding=conv.padding,
                                    dilation=conv.dilation):
            return None
        # The pooling must not be padded at the start, and its output must be the
        # kernel's (every window inside the convolution's output).
        _, _, _, conv_out = _conv_geometry(input_shape[1:], kernel, conv.stride,
                                           conv.padding, conv.dilation)
        try:
            pooled = pool_output_shape(conv_out, window, stride=stride,
                                       padding=pool.padding)
            unpadded = _unpadded_start(conv_out, window, stride, pool.padding)
        except (TypeError, ValueError):
            return None
        expected = _cached_conv_pool_geometry(
            input_shape, kernel, window, stride, _hashable(conv.stride),
            _hashable(conv.padding), _hashable(conv.dilation))[1]
        if tuple(pooled) != expected or not unpadded:
            return None
        return cls(input_shape, filters, conv, pool, bool(others), dtype)

    def _pool_kwargs(self):
        return dict(stride=self.conv.stride, padding=self.conv.padding,
                    dilation=self.conv.dilation, pool_size=self.pool_size,
                    pool_stride=self.pool_stride, mode=self.mode, relu=self.relu)

    def forward(self, x, w, b, n_threads, training, out=None):
        """The block's output for a batch.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
        w : ndarray of shape (D, C, *kernel_shape)
        b : ndarray of shape (D,) or None
        n_threads : int
            Threads to use at most (an effective count, not ``n_jobs``).
        training : bool
            Keep what :meth:`backward` needs. The output is then the block's own
            array, overwritten by the next training forward of the same batch size;
            an inference output is a fresh array, or ``out``.
        out : ndarray of shape (N, *output_shape), default=None
            Inference only: where to write the output (C-contiguous, ``w``'s dtype).

        Returns
        -------
        y : ndarray of shape (N, *output_shape)
        """
        if not training:
            y, _ = _conv_pool(x, w, b, n_jobs=n_threads, want_codes=False, out=out,
                              **self._pool_kwargs())
            return y
        if out is not None:
            raise ValueError("out is for inference: a training forward writes into the "
                             "block's own arrays")
        batch = self._batch(np.shape(x), np.shape(w))
        y, _ = batch.forward(x, w, b, n_threads)
        self._last = batch
        return y

    def backward(self, grad_y, x, w, grad_w, grad_b, n_threads, compute_grad_x=True):
        """Gradients after a training :meth:`forward` on the same ``x`` and ``w``.

        Parameters
        ----------
        grad_y : ndarray of shape (N, *output_shape)
            Gradient with respect to the forward's output.
        x, w : ndarray
            The forward's inputs.
        grad_w, grad_b : ndarray
            Where to write the weight and bias gradients (C-contiguous, of the
            shapes of ``w`` and (D,), the block's dtype).
        n_threads : int
        compute_grad_x : bool, default=True

        Returns
        -------
        grad_x : ndarray of shape (N, *input_shape) or None
            The block's own array (overwritten by the next backward).
        """
        batch, self._last = self._last, None
        if batch is None:
            raise RuntimeError("backward needs a preceding forward with training=True")
        return batch.backward(grad_y, x, w, grad_w, grad_b, n_threads,
                              compute_grad_x=compute_grad_x)

    def _batch(self, x_shape, w_shape):
        key = (tuple(x_shape), tuple(w_shape))
        batch = self._prepared.get(key)
        if batch is None:
            if len(self._prepared) >= self._MAX_PREPARED:
                self._prepared.clear()
            batch = self._prepared[key] = _PreparedBatch(x_shape, w_shape, self.dtype,
                                                         **self._pool_kwargs())
        return batch

    def __getstate__(self):
        # Prepared arrays are workspaces: never pickle them.
        state = self.__dict__.copy()
        state["_prepared"], state["_last"] = {}, None
        return state

    def __repr__(self):
        return (f"{type(self).__name__}(input_shape={self.input_shape}, "
                f"filters={self.filters}, mode={self.mode!r}, relu={self.relu})")


class ConvPool1dBlock(ConvPool2x2Block):
    """A 1-D convolution of any stride, then a max or min pooling of any window and
    stride and optionally a relu, or optionally a relu then an average pooling (of at
    most ``_MAX_AVG_CELLS`` cells): signals' blocks, one kernel call per forward.

    As :class:`ConvPool2x2Block`, for ``input_shape = (C, W)``. The forward computes
    the convolution one window cell at a time on a polyphase copy of each sample, so
    the pooling of a window is an elementwise max, min or sum in vector registers,
    and the convolution's output is never stored. The backward of max or min after a
    stride-1 convolution is the 2-D block's (the convolution's gradient made per
    sample, in cache); otherwise it makes that gradient for the batch in one pass and
    runs ``conv_backward``. Results equal the unfused layers' (``conv``, then
    ``pool_with_indices`` then relu, or relu then ``pool``) and their backward bit for
    bit, for any windows inside the convolution's output (overlapping ones included).
    """

    _N_AXES = 1

    def __repr__(self):
        return (f"ConvPool1dBlock(input_shape={self.input_shape}, filters={self.filters}, "
                f"stride={self.conv.stride!r}, pool_size={self.pool_size}, "
                f"pool_stride={self.pool_stride}, mode={self.mode!r}, relu={self.relu})")


class ConvReluBlock:
    """A convolution (1 to 3 spatial axes, any stride, padding and dilation) and the
    relu right after it: one kernel call forward, the relu applied to each sample's
    output while it is in cache, instead of a second pass over the batch's maps.

    Built by :func:`prepare_conv_block` when the layers after the convolution are a
    relu and nothing that a pooling block fuses (a pooling after the relu stays a
    layer of its own). Results equal ``numpy.maximum(conv(...), 0)`` and the two
    layers' backward (``grad * (y > 0)``, then ``conv_backward``) bit for bit.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``, one sample.
    filters : int
    conv : ConvSpec
    dtype : float32 or float64

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        One sample's input and output shapes.
    dtype : numpy dtype
    """

    def __init__(self, input_shape, filters, conv, dtype):
        self.input_shape = tuple(input_shape)
        self.filters = filters
        self.conv = conv
        self.dtype = np.dtype(dtype)
        _, _, _, conv_out = _conv_geometry(self.input_shape[1:], tuple(conv.kernel_shape),
                                           conv.stride, conv.padding, conv.dilation)
        self.output_shape = (filters,) + tuple(conv_out)
        # The training forward's output (the relu's, for its backward) and the
        # backward's arrays, per batch shape: workspaces, as a layer's.
        self._arrays = {}
        self._last = None

    @classmethod
    def prepare(cls, input_shape, filters, conv, following, dtype):
        """An instance for these settings (see :func:`prepare_conv_block`), or None
        when ``following`` is not exactly ``('relu',)`` or the geometry is invalid."""
        if tuple(following) != ("relu",) or dtype not in (np.float32, np.float64):
            return None
        if not 2 <= len(input_shape) <= 4:
            return None
        try:
            _conv_geometry(tuple(input_shape[1:]), tuple(conv.kernel_shape), conv.stride,
                           conv.padding, conv.dilation)
        except (TypeError, ValueError):
            return None
        return cls(input_shape, filters, conv, dtype)

    def _conv_kwargs(self):
        return dict(stride=self.conv.stride, padding=self.conv.padding,
                    dilation=self.conv.dilation)

    def _array(self, name, shape):
        key = (name, tuple(shape))
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= 3 * ConvPool2x2Block._MAX_PREPARED:
                self._arrays.clear()
            array = self._arrays[key] = np.empty(shape, dtype=self.dtype)
        return array

    def forward(self, x, w, b, n_threads, training, out=None):
        """The block's output for a batch (see :meth:`ConvPool2x2Block.forward`)."""
        if training and out is not None:
            raise ValueError("out is for inference: a training forward writes into the "
                             "block's own arrays")
        if training:
            out = self._array("y", (len(x),) + self.output_shape)
        y = _conv(x, w, b, n_jobs=n_threads, out=out, relu=True, **self._conv_kwargs())
        self._last = y if training else None
        return y

    def backward(self, grad_y, x, w, grad_w, grad_b, n_threads, compute_grad_x=True):
        """Gradients after a training :meth:`forward` on the same ``x`` and ``w``
        (see :meth:`ConvPool2x2Block.backward`)."""
        y, self._last = self._last, None
        if y is None:
            raise RuntimeError("backward needs a preceding forward with training=True")
        grad_y = np.asarray(grad_y)
        if grad_y.shape != y.shape:
            raise ValueError(f"grad_y must have shape {y.shape} (the forward's output), "
                             f"got shape {grad_y.shape}")
        # The relu's backward, the activation layer's values in one pass.
        grad_y = contiguous(as_float_array(grad_y, "grad_y"), self.dtype)
        grad_conv = self._array("grad_conv", y.shape)
        _kernel.relu_backward(grad_y.reshape(-1), y.reshape(-1), grad_conv.reshape(-1),
                              threads_for_cells(n_threads, y.size))
        grad_x = self._array("grad_x", np.shape(x)) if compute_grad_x else None
        grad_x, _, _ = conv_backward(grad_conv, x, w, n_jobs=n_threads,
                                     compute_grad_x=compute_grad_x,
                                     out=(grad_x, grad_w, grad_b), **self._conv_kwargs())
        return grad_x

    def __getstate__(self):
        # Workspaces: never pickle them.
        state = self.__dict__.copy()
        state["_arrays"], state["_last"] = {}, None
        return state

    def __repr__(self):
        return (f"ConvReluBlock(input_shape={self.input_shape}, filters={self.filters}, "
                f"stride={self.conv.stride!r}, padding={self.conv.padding!r})")


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _unpadded_start(conv_out, pool_size, pool_stride, padding):
    """Whether a pooling with this padding adds no cell before the start of an axis."""
    pads = normalize_padding(padding, tuple(conv_out), tuple(pool_size),
                             tuple(pool_stride), (1,) * len(conv_out))
    return all(lo == 0 for lo, _ in pads)


#: Cells of a fused pooling window at most (the codes are bytes).
_MAX_WINDOW_CELLS = _kernel.MAX_WINDOW_CELLS


def _pool_args(n_axes, pool_size, pool_stride):
    """``(window, stride)`` per axis (stride defaults to the window); ValueError or
    TypeError when malformed."""
    window = per_axis(pool_size, n_axes, "pool_size")
    stride = window if pool_stride is None else per_axis(pool_stride, n_axes,
                                                         "pool_stride")
    return window, stride


def _conv_pool_supported(x_shape, kernel_shape, *, pool_size=2, pool_stride=None,
                         mode="max", stride=1, padding=0, dilation=1):
    """Whether :func:`_conv_pool` can fuse this convolution with this pooling.

    On images ``(C, H, W)``, a convolution of any stride (whose polyphase copy fits,
    see ``_kernel.uses_blas``) then a 2x2/stride-2 max, min or average pooling of an
    output of at least 2x2; on signals ``(C, W)``, a convolution of any stride then a max or min
    pooling of any window of at most ``_MAX_WINDOW_CELLS`` cells and any stride, or an
    average one of at most ``_MAX_AVG_CELLS`` cells, every window inside the
    convolution's output. ``x_shape`` is one sample's shape.
    """
    try:
        geometry = _cached_conv_pool_geometry.__wrapped__(
            tuple(x_shape), tuple(kernel_shape), _hashable(pool_size),
            _hashable(pool_stride), _hashable(stride), _hashable(padding),
            _hashable(dilation))
    except (TypeError, ValueError):
        return False
    return geometry is not None and _mode_fits(mode, geometry)


#: Cells of a fused average pooling's window at most: its codes are relu bit masks.
_MAX_AVG_CELLS = _kernel.MAX_AVG_CELLS


def _mode_fits(mode, geometry):
    """Whether the fused kernel pools this geometry (from
    :func:`_cached_conv_pool_geometry`) with ``mode``."""
    if mode in ("max", "min"):
        return True
    # The codes of an average are relu's bit masks: a bit per cell of the window.
    return mode == "avg" and math.prod(geometry[4]) <= _MAX_AVG_CELLS


def _conv_pool_geometry(x, w, stride, padding, dilation, pool_size, pool_stride, mode):
    """Checked (conv_out, pooled_out, pad_lo, dilation, window, pool_stride, stride)
    of the fused path, all but ``pooled_out`` as the kernel takes them."""
    if mode not in ("max", "min", "avg"):
        raise ValueError(f"mode must be 'max', 'min' or 'avg', got {mode!r}")
    args = (x.shape[1:], w.shape[2:], pool_size, pool_stride, stride, padding, dilation)
    try:
        geometry = _cached_conv_pool_geometry(*args)
    except TypeError:  # unhashable padding or dilation (a list): not cached
        geometry = _cached_conv_pool_geometry.__wrapped__(*map(_hashable, args))
    if geometry is None or not _mode_fits(mode, geometry):
        raise ValueError(
            f"the fused convolution and pooling needs either 2-D maps and a "
            f"2x2/stride-2 max, min or avg pooling of a convolution output of at least "
            f"2x2, or 1-D maps with max or min windows of at most {_MAX_WINDOW_CELLS} "
            f"cells (average: {_MAX_AVG_CELLS}) inside the convolution output: x has "
            f"shape {x.shape}, w has shape {w.shape}, stride={stride!r}, "
            f"padding={padding!r}, dilation={dilation!r}, pool_size={pool_size!r}, "
            f"pool_stride={pool_stride!r}, mode={mode!r}"
        )
    n_axes = x.ndim - 2
    conv_out, _, _, dilation_3d, _, _, stride_3d = geometry
    _check_padded_size(x.shape, w.shape, stride_3d[3 - n_axes:], conv_out[3 - n_axes:],
                       padding, dilation_3d[3 - n_axes:])
    return geometry


@functools.lru_cache(maxsize=64, typed=True)
def _cached_conv_pool_geometry(x_shape, kernel_shape, pool_size, pool_stride, stride,
                               padding, dilation):
    # A network calls the fused op with the same few geometries every minibatch;
    # checking them costs as much as the kernel on a small batch. None: unsupported.
    n_axes = len(x_shape) - 1
    if n_axes not in (1, 2) or len(kernel_shape) != n_axes:
        return None
    window, pool_stride = _pool_args(n_axes, pool_size, pool_stride)
    try:
        stride, pads, dilation, conv_out = _conv_geometry(x_shape[1:], kernel_shape,
                                                          stride, padding, dilation)
    except (TypeError, ValueError):
        return None
    pad_lo, stride_3d = to_3d([lo for lo, _ in pads], 0), to_3d(stride, 1)
    if n_axes == 2:
        if window != (2, 2) or pool_stride != (2, 2) or min(conv_out) < 2:
            return None
        # A strided convolution whose polyphase copy would dwarf the data takes
        # im2col (see _kernel.uses_blas), which no fused kernel pools.
        if any(s != 1 for s in stride) and not _kernel.strided_images_fused(
                (1, x_shape[0], 1) + tuple(x_shape[1:]),
                (1, x_shape[0], 1) + tuple(kernel_shape), (1, 1, 1) + tuple(conv_out),
                stride_3d, pad_lo, to_3d(dilation, 1)):
            return None
        pooled = tuple(size // 2 for size in conv_out)
    else:
        if not 1 <= window[0] <= min(conv_out[0], _MAX_WINDOW_CELLS):
            return None
        pooled = ((conv_out[0] - window[0]) // pool_stride[0] + 1,)
    return (to_3d(conv_out, 1), pooled, pad_lo, to_3d(dilation, 1),
            to_3d(window, 1)[1:], to_3d(pool_stride, 1)[1:], stride_3d)


def _conv_pool(x, w, b=None, *, stride=1, padding=0, dilation=1, pool_size=2,
               pool_stride=None, mode="max", relu=False, n_jobs=None, out=None,
               codes=None, want_codes=True):
    """A convolution followed by max, min or average pooling (and relu), fused.

    The kernel call of :class:`ConvPool2x2Block` and :class:`ConvPool1dBlock`, also
    usable alone: images with a convolution of any stride and a 2x2/stride-2 max or
    min pooling, or signals with any stride, window and pooling stride (see
    :func:`_conv_pool_supported`). Max and min: the result equals
    ``pool_with_indices(conv(x, w, b, ...), pool_size, stride=pool_stride,
    mode=mode)`` (then ``np.maximum(y, 0)``) bit for bit; instead of flat indices it
    returns ``codes``, the winning cell's place in its window (row-major, 0 to 3 for
    2x2; 0 to p - 1 for a window of p cells). Average: relu, if asked, comes first
    (as in a network: conv, relu, average pooling), the result equals
    ``pool(np.maximum(conv(...), 0), ..., mode='avg')`` bit for bit, and the codes are
    relu's bit masks (bit t: cell t of the window was positive). Either way the
    convolution's output is never stored (each sample's is pooled in cache), and
    :func:`_conv_pool_backward` takes the codes.

    Parameters
    ----------
    x, w, b, stride, padding, dilation, n_jobs
        As in :func:`conv`, with 1-D or 2-D maps.
    pool_size, pool_stride : int or tuple of int, default=2 and None (the window)
    mode : {'max', 'min', 'avg'}
    relu : bool, default=False
        Apply relu: to the pooled output (max, min), to every cell (avg).
    out, codes : ndarray, default=None
        Where to write the pooled output and the codes (uint8), as ``out`` in
        :func:`conv`.
    want_codes : bool, default=True
        False skips the codes (inference) and returns None for them.

    Returns
    -------
    y : ndarray of shape (N, D, *pooled)
    codes : ndarray of uint8, same shape, or None
    """
    x, w, b = _check_conv_inputs(x, w, b)
    conv_out, pooled, pad_lo, dilation, window, pool_stride, stride = (
        _conv_pool_geometry(x, w, stride, padding, dilation, pool_size, pool_stride,
                            mode))
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
                                 _forward_work(w.size, conv_out, pooled, window,
                                               x.shape[0]))
    _kernel.conv_pool_forward(view_3d(x), view_3d(w), b, view_3d(y),
                              None if codes is None else view_3d(codes), conv_out, stride,
                              pad_lo, dilation, window, pool_stride, mode == "min",
                              mode == "avg", bool(relu), n_threads)
    return y, codes


def _forward_work(w_size, conv_out, pooled, window, n_samples):
    """Multiply-adds of a fused forward (signals compute each window's cells, more
    than the convolution's output when windows overlap)."""
    if window == (2, 2):
        return w_size * math.prod(conv_out) * n_samples
    return w_size * pooled[0] * window[1] * n_samples


def _conv_pool_backward(grad_y, codes, x, w, *, stride=1, padding=0, dilation=1,
                        pool_size=2, pool_stride=None, mode="max", relu_output=None,
                        relu=None, n_jobs=None, compute_grad_x=True, out=None):
    """Gradients of :func:`_conv_pool` with respect to x, w and b.

    Equal to the unfused backward bit for bit: max and min, ``conv_backward`` of
    ``pool_backward_indices`` of ``grad_y`` (through the relu's backward first, with
    ``relu_output``); average, ``conv_backward`` of the relu's backward (with
    ``relu``) of ``pool_backward``. For max and min after a 2-D convolution or a
    stride-1 one of signals the convolution's gradient is made per sample, in cache,
    never stored for the batch; the other cases make it for the batch in one pass,
    then call ``conv_backward``.

    Parameters
    ----------
    grad_y : ndarray of shape (N, D, *pooled)
        Gradient with respect to the pooled output.
    codes : ndarray of uint8, same shape
        As returned by the forward.
    relu_output : ndarray, same shape, default=None
        Max and min: the forward's output when it applied relu.
    relu : bool, default=None
        Whether the forward applied relu; None: whether ``relu_output`` is given. An
        average needs it (its codes hold relu's bits), max and min need
        ``relu_output``.
    x, w, stride, padding, dilation, n_jobs, compute_grad_x, out
        As in :func:`conv_backward`.
    pool_size, pool_stride, mode
        As in :func:`_conv_pool`.

    Returns
    -------
    grad_x, grad_w, grad_b
        As in :func:`conv_backward`.
    """
    x, w, _ = _check_conv_inputs(x, w, None)
    conv_out, pooled, pad_lo, dilation_3d, window, pool_stride_2d, stride_3d = (
        _conv_pool_geometry(x, w, stride, padding, dilation, pool_size, pool_stride,
                            mode))
    relu = relu_output is not None if relu is None else bool(relu)
    if relu and mode != "avg" and relu_output is None:
        raise ValueError("relu_output (the forward's output) is needed for the relu's "
                         "backward after a max or min pooling")
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
    unfused = (grad_x, grad_w, grad_b)
    if not _fused_backward(mode, stride_3d, x.ndim):
        return _conv_pool_backward_unfused(grad_y, codes, relu_output if relu else None,
                                           x, w, conv_out, window, pool_stride_2d, mode,
                                           relu, stride, padding, dilation, n_jobs,
                                           compute_grad_x, unfused)
    n_threads = threads_for_work(effective_n_threads(n_jobs),
                                 2 * w.size * math.prod(conv_out) * x.shape[0])
    if _kernel.conv_pool_backward(
        view_3d(grad_y), view_3d(codes),
        None if relu_output is None or mode == "avg" else view_3d(relu_output),
        view_3d(x), view_3d(w),
        None if grad_x is None else view_3d(grad_x), view_3d(grad_w), grad_b, conv_out,
        stride_3d, pad_lo, dilation_3d, window, pool_stride_2d, n_threads, mode == "avg",
        relu,
    ):
        return grad_x, grad_w, grad_b
    return _conv_pool_backward_unfused(grad_y, codes, relu_output, x, w, conv_out,
                                       window, pool_stride_2d, mode, relu, stride,
                                       padding, dilation, n_jobs, compute_grad_x, unfused)


def _fused_backward(mode, stride_3d, ndim):
    """Whether the backward of a fused block has a fused kernel: after a 2-D
    convolution of any stride, or after a stride-1 one of signals (a strided
    signal's convolution backward is the polyphase rows', which the fused kernel
    does not share)."""
    return ndim == 4 or all(s == 1 for s in stride_3d)


def _conv_pool_backward_unfused(grad_y, codes, relu_output, x, w, conv_out, window,
                                pool_stride, mode, relu, stride, padding, dilation,
                                n_jobs, compute_grad_x, out):
    """:func:`_conv_pool_backward` through the convolution's gradient for the whole
    batch, then ``conv_backward``: the way of an average pooling, of a strided
    convolution of signals, and of max or min when the fused kernel declined (an inf
    or a NaN in x, w or grad_y, which its shifted path cannot take; rare: a diverged
    network).
    The convolution's gradient is the plain ops' (the same sums). ``conv_out``,
    ``window`` and ``pool_stride`` as the kernel takes them; ``out`` as in
    :func:`conv_backward`."""
    spatial = conv_out[3 - (x.ndim - 2):]
    if mode == "avg":
        grad_conv = np.empty(grad_y.shape[:2] + spatial, dtype=grad_y.dtype)
        n_planes = grad_y.shape[0] * grad_y.shape[1]
        _kernel.conv_pool_avg_backward(
            grad_y.reshape(n_planes, -1), codes.reshape(n_planes, -1) if relu else None,
            grad_conv.reshape(n_planes, -1), window, pool_stride, grad_y.shape[-1],
            spatial[-1], threads_for_cells(effective_n_threads(n_jobs), grad_conv.size))
    else:
        if relu_output is not None:
            with np.errstate(invalid="ignore"):  # inf * 0 = NaN, as the kernel gives
                grad_y = grad_y * (relu_output > 0)  # the relu's backward
        grad_conv = _unpool(grad_y, codes, spatial, window, pool_stride)
    return conv_backward(grad_conv, x, w, stride=stride, padding=padding,
                         dilation=dilation, n_jobs=n_jobs, compute_grad_x=compute_grad_x,
                         out=out)


class _PreparedBatch:
    """:func:`_conv_pool` and its backward, prepared for one batch shape.

    The training path of a :class:`ConvPool2x2Block` (or :class:`ConvPool1dBlock`),
    which runs the same shapes every minibatch. Everything that depends on the
    shapes alone - the argument checks, the geometry, the outputs - is done once here; a call then checks that its arrays
    still have the prepared shapes and dtype (so no kernel ever sees another shape)
    and runs the kernel. The results are those of :func:`_conv_pool` and
    :func:`_conv_pool_backward` bit for bit (the same kernels).

    The outputs (``y``, ``codes``, ``grad_x``) belong to the step and are overwritten
    by the next call, like a layer's workspaces: one step serves one caller at a time.
    The backward refuses inputs that share memory with its ``grad_x``.

    Parameters
    ----------
    x_shape : tuple of int
        ``(N, C, H, W)`` or ``(N, C, W)``.
    w_shape : tuple of int
        ``(D, C, K1, K2)`` or ``(D, C, K)``.
    dtype : float32 or float64
    stride, padding, dilation, pool_size, pool_stride, mode, relu
        As in :func:`_conv_pool`.
    """

    def __init__(self, x_shape, w_shape, dtype, *, stride=1, padding=0, dilation=1,
                 pool_size=2, pool_stride=None, mode="max", relu=False):
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        # The full checks of the general op, once, on arrays of the prepared shapes.
        x, w, _ = _check_conv_inputs(np.empty(x_shape, self.dtype),
                                     np.empty(w_shape, self.dtype), None)
        (conv_out, pooled, self._pad_lo, self._dilation, self._window,
         self._pool_stride, self._stride) = _conv_pool_geometry(
            x, w, stride, padding, dilation, pool_size, pool_stride, mode)
        self._conv_out = conv_out
        self.x_shape, self.w_shape = x.shape, w.shape
        self.y_shape = x.shape[:1] + w.shape[:1] + pooled
        self.stride_arg, self.padding, self.dilation_arg = stride, padding, dilation
        self.mode, self._relu = mode, bool(relu)
        self._fused_backward = _fused_backward(mode, self._stride, x.ndim)
        self.y = np.empty(self.y_shape, dtype=self.dtype)
        self.codes = np.empty(self.y_shape, dtype=np.uint8)
        self.grad_x = np.empty(self.x_shape, dtype=self.dtype)
        self._x5, self._w5 = view_3d(x).shape, view_3d(w).shape
        self._y5 = view_3d(self.y)
        self._codes5 = view_3d(self.codes)
        self._grad_x5 = view_3d(self.grad_x)
        self._forward_work = _forward_work(w.size, conv_out, pooled, self._window,
                                           x.shape[0])
        self._backward_work = 2 * w.size * math.prod(conv_out) * x.shape[0]

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
        _kernel.conv_pool_forward(
            x.reshape(self._x5), w.reshape(self._w5), b, self._y5, self._codes5,
            self._conv_out, self._stride, self._pad_lo, self._dilation, self._window,
            self._pool_stride, self.mode == "min", self.mode == "avg", self._relu,
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
        if self._fused_backward and _kernel.conv_pool_backward(
            grad_y.reshape(self._y5.shape), self._codes5,
            self._y5 if self._relu and self.mode != "avg" else None, x.reshape(self._x5),
            w.reshape(self._w5), self._grad_x5 if compute_grad_x else None,
            grad_w.reshape(self._w5), grad_b, self._conv_out, self._stride, self._pad_lo,
            self._dilation, self._window, self._pool_stride,
            threads_for_work(n_threads, self._backward_work), self.mode == "avg",
            self._relu,
        ):
            return grad_x
        grad_x, _, _ = _conv_pool_backward_unfused(
            grad_y, self.codes, self.y if self._relu and self.mode != "avg" else None, x,
            w, self._conv_out, self._window, self._pool_stride, self.mode, self._relu,
            self.stride_arg, self.padding, self.dilation_arg, n_threads, compute_grad_x,
            (grad_x, grad_w, grad_b))
        return grad_x


def _unpool(grad_y, codes, conv_out, window, stride):
    """The convolution's gradient from a fused pooling's gradient and codes: the
    codes as the flat indices of :func:`pool_with_indices`, then the plain op's
    backward (so the same sums). ``conv_out`` is the spatial shape, ``window`` and
    ``stride`` the kernel's ``(rows, cols)``."""
    p_rows, p_cols = (1,) * (4 - grad_y.ndim) + grad_y.shape[2:]
    codes = codes.astype(np.intp).reshape(grad_y.shape[:2] + (p_rows, p_cols))
    rows = np.arange(p_rows)[:, None] * stride[0] + codes // window[1]
    cols = np.arange(p_cols)[None, :] * stride[1] + codes % window[1]
    indices = (rows * conv_out[-1] + cols).reshape(grad_y.shape)
    return pool_backward_indices(grad_y, indices, grad_y.shape[:2] + tuple(conv_out))


#: The fused blocks, tried in order by :func:`prepare_conv_block`.
_IMPLEMENTATIONS = (ConvPool2x2Block, ConvPool1dBlock, ConvReluBlock)
