"""Layers of the private network engine: forward and backward over a minibatch.

Every layer computes through the ops layer (:mod:`skconv._ops.conv`,
:mod:`skconv._ops.pool`, :mod:`skconv._ops.dense`) or numpy (activations), never
through anything above it. Fused blocks of several layers are the network's
business (:mod:`skconv._nn.network`); a layer computes alone.
Shapes given to and returned by :meth:`Layer.initialize` exclude the batch axis;
arrays passed to :meth:`Layer.forward` and :meth:`Layer.backward` carry it first.

Life cycle of a layer::

    out_shape = layer.initialize(in_shape, random_state, dtype)   # allocates params
    y = layer.forward(x, n_jobs, training=True)                  # caches for backward
    grad_x = layer.backward(grad_y, n_jobs, need_input_grad=True)
    # layer.grads now holds d loss / d layer.params (overwritten, never accumulated)

A forward with ``training=False`` keeps no reference to its input or output. A backward
releases the cache, so each training forward allows exactly one backward.

dtype: parameters are created in the dtype given to :meth:`Layer.initialize`; inputs
of that dtype give outputs and gradients of that dtype (float32 stays float32).
"""

import math

import numpy as np

from .._ops.augment import move_samples
from .._ops.blocks import ConvSpec, PoolSpec
from .._ops.conv import conv, conv_backward, conv_output_shape
from .._ops.dense import dense, dense_backward
from .._ops.keyed import draw_key, keyed_uniform
from .._ops.norm import (batch_norm_backward, batch_norm_count, batch_norm_inference,
                         batch_norm_train)
from .._ops.pool import (
    POOL_MODES,
    global_pool,
    global_pool_backward,
    pool,
    pool_backward,
    pool_backward_indices,
    pool_output_shape,
    pool_with_indices,
)
from .._ops.threads import effective_n_threads
from .._ops.validation import MAX_SPATIAL_DIMS, is_int, normalize_padding, per_axis
from .activations import get_activation

__all__ = [
    "Activation",
    "BatchNorm",
    "Dropout",
    "Conv",
    "Dense",
    "Flatten",
    "GlobalPool",
    "InputScale",
    "Layer",
    "Pool",
    "POOL_MODES",
    "RandomScale",
    "RandomShift",
    "WEIGHT_INITS",
    "init_weights",
]

#: Weight initialisation schemes (biases always start at zero).
WEIGHT_INITS = ("he_normal", "he_uniform", "glorot_uniform")


def _check_positive_int(value, name, owner):
    if not is_int(value) or value < 1:
        raise ValueError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def _check_choice(value, choices, name, owner):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{owner}: {name} must be one of {choices}, got {value!r}")
    return value


def _check_image_shape(input_shape, owner):
    """(C, *spatial) with 1 to 3 spatial axes, all positive."""
    shape = tuple(input_shape)
    if not 2 <= len(shape) <= 1 + MAX_SPATIAL_DIMS or any(s < 1 for s in shape):
        raise ValueError(
            f"{owner} needs an input of shape (C, *spatial) with 1 to "
            f"{MAX_SPATIAL_DIMS} non-empty spatial axes, got input shape {shape}"
        )
    return shape


def init_weights(shape, fan_in, fan_out, init, random_state, dtype):
    """Draw a weight array from one RandomState.

    Parameters
    ----------
    shape : tuple of int
    fan_in, fan_out : int
        Inputs feeding one output unit and outputs fed by one input unit (for a
        convolution: ``C * prod(kernel)`` and ``D * prod(kernel)``).
    init : {'he_normal', 'he_uniform', 'glorot_uniform'}
        He (for relu-like activations): normal with std ``sqrt(2 / fan_in)`` or
        uniform on ``+-sqrt(6 / fan_in)``. Glorot (tanh, logistic, identity): uniform
        on ``+-sqrt(6 / (fan_in + fan_out))``.
    random_state : numpy.random.RandomState
    dtype : float32 or float64

    Returns
    -------
    ndarray of ``shape`` and ``dtype``
        Drawn in float64 and then cast, so float32 and float64 networks built from the
        same seed hold the same weights up to rounding.
    """
    if init == "he_normal":
        w = random_state.normal(0.0, math.sqrt(2.0 / fan_in), size=shape)
    elif init == "he_uniform":
        limit = math.sqrt(6.0 / fan_in)
        w = random_state.uniform(-limit, limit, size=shape)
    elif init == "glorot_uniform":
        limit = math.sqrt(6.0 / (fan_in + fan_out))
        w = random_state.uniform(-limit, limit, size=shape)
    else:
        raise ValueError(f"init must be one of {WEIGHT_INITS}, got {init!r}")
    return w.astype(dtype)


class Layer:
    """Base class: no parameters, identity shape, nothing cached.

    Attributes
    ----------
    params : list of ndarray
        Trainable arrays (updated in place by the optimizers).
    buffers : list of ndarray
        State that training changes but no optimizer updates (a batch
        normalisation's running averages); saved and restored with the parameters.
    grads : list of ndarray
        Same shapes as ``params``; overwritten by each :meth:`backward`.
    param_is_weight : tuple of bool
        Which entries of ``params`` get the L2 penalty (weights, not biases).
    input_shape, output_shape : tuple of int or None
        Set by :meth:`initialize` (no batch axis).
    dtype : numpy dtype or None
        Set by :meth:`initialize`.
    fresh_output : bool
        True when :meth:`forward` returns a new array that nothing else references,
        which a following :class:`Activation` may then overwrite in place.
    """

    fresh_output = True
    _cache_attributes = ()

    def __init__(self):
        self.params = []
        self.grads = []
        self.buffers = []
        self.param_is_weight = ()
        self.input_shape = None
        self.output_shape = None
        self.dtype = None

    # -- shapes and parameters ---------------------------------------------------------
    def compute_output_shape(self, input_shape):
        """Output shape for ``input_shape`` (no batch axis), without allocating.

        Raises
        ------
        ValueError
            When the layer cannot take that input, naming the layer and the shapes.
        """
        return tuple(input_shape)

    def initialize(self, input_shape, random_state, dtype):
        """Check the input shape, allocate parameters and gradients.

        Parameters
        ----------
        input_shape : tuple of int
            Shape of one sample (no batch axis).
        random_state : numpy.random.RandomState
            Source of every random draw (weights); biases start at zero.
        dtype : float32 or float64
            dtype of the parameters and of the expected inputs.

        Returns
        -------
        output_shape : tuple of int
        """
        input_shape = tuple(int(s) for s in input_shape)
        output_shape = self.compute_output_shape(input_shape)
        self._settle(input_shape)
        self.input_shape = input_shape
        self.output_shape = tuple(output_shape)
        self.dtype = np.dtype(dtype)
        self._init_params(random_state)
        self.grads = [np.zeros_like(p) for p in self.params]
        self._clear_cache()
        return self.output_shape

    def _settle(self, input_shape):
        """Record the settings resolved for ``input_shape`` (per-axis kernels, clipped
        windows) as public attributes; called by :meth:`initialize` only, so that
        :meth:`compute_output_shape` has no side effects."""

    def _init_params(self, random_state):
        self.params = []
        self.param_is_weight = ()

    # -- computation -------------------------------------------------------------------
    def forward(self, x, n_jobs, training):
        """Forward pass on a minibatch.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
        n_jobs : int or None
            Threads for the ops (scikit-learn's convention).
        training : bool
            Cache what :meth:`backward` needs; otherwise keep no reference.

        Returns
        -------
        y : ndarray of shape (N, *output_shape), dtype of ``x``
        """
        raise NotImplementedError

    def infer(self, x, n_jobs, buffer):
        """Inference forward: the values of ``forward(x, n_jobs, training=False)``.

        Layers whose op takes an output array write into ``buffer(shape, dtype)``,
        an array the caller owns and overwrites with its next batch: a fresh output
        per batch costs its page faults every time, and more so on two threads. The
        others return what :meth:`forward` returns.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
        n_jobs : int or None
        buffer : callable
            ``buffer(shape, dtype) -> ndarray`` of that shape and dtype.

        Returns
        -------
        y : ndarray of shape (N, *output_shape)
        """
        return self.forward(x, n_jobs, False)

    def _output_buffer(self, x, buffer):
        """``buffer`` for this layer's output on the batch ``x``."""
        return buffer((x.shape[0],) + self.output_shape, x.dtype)

    def backward(self, grad_y, n_jobs, need_input_grad):
        """Backward pass for the last training forward; fills :attr:`grads`.

        Parameters
        ----------
        grad_y : ndarray of shape (N, *output_shape)
            Gradient of the loss with respect to this layer's output. Layers may
            overwrite it.
        n_jobs : int or None
        need_input_grad : bool
            False for the first layer of a network: its input gradient is not needed
            and is skipped when the op allows.

        Returns
        -------
        grad_x : ndarray of shape (N, *input_shape) or None
            None when ``need_input_grad`` is False.
        """
        raise NotImplementedError

    def _take_cache(self, name):
        value = getattr(self, name, None)
        if value is None:
            raise RuntimeError(
                f"{self!r}: backward needs a preceding forward with training=True"
            )
        setattr(self, name, None)
        return value

    def _clear_cache(self):
        for name in self._cache_attributes:
            setattr(self, name, None)

    def _workspace(self, name, shape, dtype):
        """An output array kept across training minibatches (allocated once per fit).

        Fresh arrays every minibatch cost page faults and cache misses; a layer's
        training outputs live only until the next minibatch, so the layer reuses
        them. Keyed by shape: an epoch's last, smaller minibatch gets its own. Never
        used for inference, whose outputs callers may keep.
        """
        workspaces = self.__dict__.setdefault("_workspaces", {})
        key = (name, tuple(shape), np.dtype(dtype).str)
        array = workspaces.get(key)
        if array is None:
            if len(workspaces) >= 16:  # many batch sizes (partial_fit): start over
                workspaces.clear()
            array = workspaces[key] = np.empty(shape, dtype=dtype)
        return array

    def __getstate__(self):
        # Cached minibatch arrays and workspaces are transient; never pickle them.
        state = self.__dict__.copy()
        for name in self._cache_attributes:
            state[name] = None
        state.pop("_workspaces", None)
        # The dtype by name: skops trusts strings but no numpy dtype object, so a
        # dtype would put a foreign type on every model's list of types to review.
        if state.get("dtype") is not None:
            state["dtype"] = np.dtype(state["dtype"]).name
        return state

    def __setstate__(self, state):
        # Pickles made before the dtype was stored by name hold the dtype itself.
        if state.get("dtype") is not None:
            state["dtype"] = np.dtype(state["dtype"])
        self.__dict__.update(state)

    def describe(self):
        """A few words for the layer in plots and messages (``"conv"``, ``"relu"``,
        ``"max pool"``)."""
        return type(self).__name__.lower()

    def __repr__(self):
        return f"{type(self).__name__}()"


class Conv(Layer):
    """Convolution (cross-correlation) with D filters and a bias per filter.

    Parameters
    ----------
    filters : int
        Number of filters D (output channels).
    kernel_size : int or tuple of int
        Kernel size, one int for every spatial axis or one per axis.
    stride : int or tuple of int, default=1
    padding : int, tuple of int, 'valid' or 'same', default=0
        As in :func:`skconv.ops.conv` ('same' is TensorFlow's rule).
    dilation : int or tuple of int, default=1
    init : {'he_normal', 'he_uniform', 'glorot_uniform'}, default='glorot_uniform'
        Weight initialisation; fan_in ``C * prod(kernel)``, fan_out
        ``D * prod(kernel)``.

    Attributes
    ----------
    params : [W of shape (D, C, *kernel), b of shape (D,)]
    """

    _cache_attributes = ("_x",)

    def __init__(self, filters, kernel_size, stride=1, padding=0, dilation=1,
                 init="glorot_uniform"):
        super().__init__()
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.init = init
        self.kernel_shape = None
        self._x = None

    def _geometry(self, input_shape):
        """(kernel_shape, output_shape) for ``input_shape``; raises ValueError."""
        owner = repr(self)
        filters = _check_positive_int(self.filters, "filters", owner)
        _check_choice(self.init, WEIGHT_INITS, "init", owner)
        shape = _check_image_shape(input_shape, owner)
        spatial = shape[1:]
        try:
            kernel = per_axis(self.kernel_size, len(spatial), "kernel_size")
            out = conv_output_shape(spatial, kernel, stride=self.stride,
                                    padding=self.padding, dilation=self.dilation)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{owner} cannot take input shape {shape}: {exc}") from None
        return kernel, (filters,) + tuple(out)

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[1]

    def _settle(self, input_shape):
        self.kernel_shape = self._geometry(input_shape)[0]

    def spec(self):
        """The convolution's settings as the ops take them (after :meth:`initialize`).

        Returns
        -------
        skconv._ops.blocks.ConvSpec
        """
        return ConvSpec(self.kernel_shape, self.stride, self.padding, self.dilation)

    def _init_params(self, random_state):
        channels = self.input_shape[0]
        taps = math.prod(self.kernel_shape)
        shape = (self.output_shape[0], channels) + self.kernel_shape
        w = init_weights(shape, channels * taps, self.output_shape[0] * taps,
                         self.init, random_state, self.dtype)
        b = np.zeros(self.output_shape[0], dtype=self.dtype)
        self.params = [w, b]
        self.param_is_weight = (True, False)

    def forward(self, x, n_jobs, training):
        w, b = self.params
        out = None
        if training:
            out = self._workspace("y", (x.shape[0],) + self.output_shape, x.dtype)
        y = conv(x, w, b, stride=self.stride, padding=self.padding,
                 dilation=self.dilation, n_jobs=n_jobs, out=out)
        self._x = x if training else None
        return y

    def infer(self, x, n_jobs, buffer):
        w, b = self.params
        self._x = None
        return conv(x, w, b, stride=self.stride, padding=self.padding,
                    dilation=self.dilation, n_jobs=n_jobs,
                    out=self._output_buffer(x, buffer))

    def backward(self, grad_y, n_jobs, need_input_grad):
        x = self._take_cache("_x")
        # The first layer skips the input gradient: a third of its backward work.
        grad_x = self._workspace("grad_x", x.shape, x.dtype) if need_input_grad else None
        grad_x, _, _ = conv_backward(
            grad_y, x, self.params[0], stride=self.stride, padding=self.padding,
            dilation=self.dilation, n_jobs=n_jobs, compute_grad_x=need_input_grad,
            out=(grad_x, self.grads[0], self.grads[1]),
        )
        return grad_x

    def __setstate__(self, state):
        # Models pickled before 0.1.0.dev0's layout kept the kernel as _kernel.
        if "_kernel" in state and state.get("kernel_shape") is None:
            state["kernel_shape"] = state.pop("_kernel")
        for stale in ("_kernel", "_codes", "_relu_output", "_step"):
            state.pop(stale, None)
        super().__setstate__(state)

    def describe(self):
        return "conv"

    def __repr__(self):
        return (
            f"Conv(filters={self.filters!r}, kernel_size={self.kernel_size!r}, "
            f"stride={self.stride!r}, padding={self.padding!r}, "
            f"dilation={self.dilation!r})"
        )


class Pool(Layer):
    """Max, average or min pooling (no parameters; depth is kept).

    Tiny inputs: pooling never shrinks an axis below one cell. On an axis whose padded
    size ``W + p_lo + p_hi`` is smaller than the window, the window is clipped to that
    size (with the default ``padding=0``: ``min(window, W)``); the stride stays as
    given (its default is the unclipped window). So an axis of size 1 passes through
    unchanged, and an axis of 3 with window 2 and stride 2 gives
    ``floor((3 - 2) / 2) + 1 = 1`` cell. Output size per axis:
    ``floor((W + p_lo + p_hi - window_eff) / stride) + 1``.

    Parameters
    ----------
    pool_size : int or tuple of int
        Window, one int for every spatial axis or one per axis.
    stride : int, tuple of int or None, default=None
        None means the (unclipped) window.
    padding : int, tuple of int, 'valid' or 'same', default=0
        As in :func:`skconv.ops.pool`: it must stay below the (clipped) window so that
        every window holds a real cell. Padded cells never win a max or min and are
        not counted in an average.
    mode : {'max', 'avg', 'min'}, default='max'

    Attributes
    ----------
    effective_pool_size : tuple of int
        The window actually used, after clipping (set by :meth:`initialize`).
    effective_stride : tuple of int
        The stride per axis (set by :meth:`initialize`).
    """

    _cache_attributes = ("_x", "_indices", "_x_shape")

    def __init__(self, pool_size, stride=None, padding=0, mode="max"):
        super().__init__()
        self.pool_size = pool_size
        self.stride = stride
        self.padding = padding
        self.mode = mode
        self.effective_pool_size = None
        self.effective_stride = None
        self._x = None
        self._indices = None
        self._x_shape = None

    def _geometry(self, input_shape):
        """(window, stride, output_shape) for ``input_shape``; raises ValueError."""
        owner = repr(self)
        _check_choice(self.mode, POOL_MODES, "mode", owner)
        shape = _check_image_shape(input_shape, owner)
        spatial = shape[1:]
        n_axes = len(spatial)
        try:
            window = per_axis(self.pool_size, n_axes, "pool_size")
            stride = window if self.stride is None else per_axis(
                self.stride, n_axes, "stride")
            pads = normalize_padding(self.padding, spatial, window, stride,
                                     (1,) * n_axes)
            # Clip the window to the padded axis so that a tiny map pools to one
            # cell instead of failing ('same' padding always fits: no clipping).
            effective = tuple(min(k, size + lo + hi)
                              for k, size, (lo, hi) in zip(window, spatial, pads))
            out = pool_output_shape(spatial, effective, stride=stride,
                                    padding=self.padding)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"{owner} cannot take input shape {shape}: {exc}") from None
        return effective, stride, (shape[0],) + tuple(out)

    def compute_output_shape(self, input_shape):
        return self._geometry(input_shape)[2]

    def _settle(self, input_shape):
        self.effective_pool_size, self.effective_stride, _ = self._geometry(input_shape)

    def spec(self):
        """The pooling's settings as the ops take them (after :meth:`initialize`).

        Returns
        -------
        skconv._ops.blocks.PoolSpec
        """
        return PoolSpec(self.effective_pool_size, self.effective_stride, self.padding,
                        self.mode)

    def _pool_kwargs(self, n_jobs):
        return dict(stride=self.effective_stride, padding=self.padding, mode=self.mode,
                    n_jobs=n_jobs)

    def __setstate__(self, state):
        # Models pickled before 0.1.0.dev0's layout kept the stride as _stride.
        if "_stride" in state:
            state["effective_stride"] = state.pop("_stride")
        super().__setstate__(state)

    def forward(self, x, n_jobs, training):
        window = self.effective_pool_size
        self._clear_cache()
        if training and self.mode in ("max", "min"):
            # Keep where each extreme came from: the backward then scatters without
            # scanning the input again (bitwise identical to pool_backward, and
            # several times faster: benchmarks/bench_pool.py).
            shape = (x.shape[0],) + self.output_shape
            out = (self._workspace("y", shape, x.dtype),
                   self._workspace("indices", shape, np.int64))
            y, indices = pool_with_indices(x, window, out=out,
                                               **self._pool_kwargs(n_jobs))
            self._indices, self._x_shape = indices, x.shape
        else:
            out = None
            if training:
                out = self._workspace("y", (x.shape[0],) + self.output_shape, x.dtype)
            y = pool(x, window, out=out, **self._pool_kwargs(n_jobs))
            if training:
                self._x = x
        return y

    def infer(self, x, n_jobs, buffer):
        self._clear_cache()
        return pool(x, self.effective_pool_size, out=self._output_buffer(x, buffer),
                    **self._pool_kwargs(n_jobs))

    def backward(self, grad_y, n_jobs, need_input_grad):
        if self.mode in ("max", "min"):
            indices = self._take_cache("_indices")
            if not need_input_grad:
                return None
            out = self._workspace("grad_x", self._x_shape, grad_y.dtype)
            return pool_backward_indices(grad_y, indices, self._x_shape,
                                             n_jobs=n_jobs, out=out)
        x = self._take_cache("_x")
        if not need_input_grad:
            return None
        out = self._workspace("grad_x", x.shape, x.dtype)
        return pool_backward(grad_y, x, self.effective_pool_size, out=out,
                                 **self._pool_kwargs(n_jobs))

    def describe(self):
        return f"{self.mode} pool"

    def __repr__(self):
        return (
            f"Pool(pool_size={self.pool_size!r}, stride={self.stride!r}, "
            f"padding={self.padding!r}, mode={self.mode!r})"
        )


class GlobalPool(Layer):
    """Global max, average or min over all spatial axes: (C, *spatial) -> (C,).

    Parameters
    ----------
    mode : {'max', 'avg', 'min'}, default='avg'
    """

    _cache_attributes = ("_x",)

    def __init__(self, mode="avg"):
        super().__init__()
        self.mode = mode
        self._x = None

    def compute_output_shape(self, input_shape):
        owner = repr(self)
        _check_choice(self.mode, POOL_MODES, "mode", owner)
        shape = _check_image_shape(input_shape, owner)
        return (shape[0],)

    def forward(self, x, n_jobs, training):
        y = global_pool(x, mode=self.mode, n_jobs=n_jobs)
        self._x = x if training else None
        return y

    def backward(self, grad_y, n_jobs, need_input_grad):
        x = self._take_cache("_x")
        if not need_input_grad:
            return None
        return global_pool_backward(grad_y, x, mode=self.mode, n_jobs=n_jobs)

    def __repr__(self):
        return f"GlobalPool(mode={self.mode!r})"


class Flatten(Layer):
    """Reshape (C, *spatial) to (C * prod(spatial),) (a view, no copy)."""

    # The output is a view of the input, which its producer may still need.
    fresh_output = False

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ValueError(f"{self!r} cannot take input shape {shape}")
        return (math.prod(shape),)

    def forward(self, x, n_jobs, training):
        return x.reshape(x.shape[0], -1)

    def backward(self, grad_y, n_jobs, need_input_grad):
        if not need_input_grad:
            return None
        return grad_y.reshape((grad_y.shape[0],) + self.input_shape)


class Dense(Layer):
    """Fully connected layer ``y = x @ W + b``.

    The products run through :func:`skconv._ops.dense.dense` on up to ``n_jobs``
    threads, bitwise the same for any thread count. :meth:`forward_relu` and
    :meth:`backward_relu` also apply a following relu in the same kernel call (the
    network plans a dense layer and a relu after it as one step).

    Parameters
    ----------
    units : int
        Output features.
    init : {'he_normal', 'he_uniform', 'glorot_uniform'}, default='glorot_uniform'
        Weight initialisation (fan_in = input features, fan_out = units).

    Attributes
    ----------
    params : [W of shape (n_features, units), b of shape (units,)]
    """

    _cache_attributes = ("_x", "_y")

    def __init__(self, units, init="glorot_uniform"):
        super().__init__()
        self.units = units
        self.init = init
        self._x = None
        self._y = None

    def compute_output_shape(self, input_shape):
        owner = repr(self)
        units = _check_positive_int(self.units, "units", owner)
        _check_choice(self.init, WEIGHT_INITS, "init", owner)
        shape = tuple(input_shape)
        if len(shape) != 1 or shape[0] < 1:
            raise ValueError(
                f"{owner} needs a flat input of shape (n_features,), got input shape "
                f"{shape} (add a Flatten or GlobalPool layer before it)"
            )
        return (units,)

    def _init_params(self, random_state):
        n_in, n_out = self.input_shape[0], self.output_shape[0]
        w = init_weights((n_in, n_out), n_in, n_out, self.init, random_state,
                         self.dtype)
        self.params = [w, np.zeros(n_out, dtype=self.dtype)]
        self.param_is_weight = (True, False)

    def forward(self, x, n_jobs, training):
        return self._forward(x, n_jobs, training, relu=False)

    def forward_relu(self, x, n_jobs, training):
        """This layer then relu (``Activation('relu')``) in one pass: the relu runs on
        each chunk of the output while it is in cache. The same values bit for bit as
        the two layers."""
        return self._forward(x, n_jobs, training, relu=True)

    def infer(self, x, n_jobs, buffer, relu=False):
        """See :meth:`Layer.infer`; then relu with ``relu`` (as :meth:`forward_relu`)."""
        out = buffer((x.shape[0],) + self.output_shape, self.dtype)
        return self._forward(x, n_jobs, False, relu=relu, out=out)

    def _forward(self, x, n_jobs, training, relu, out=None):
        w, b = self.params
        # The kernel takes C-contiguous arrays of the layer's dtype (a first layer may
        # get a strided view).
        x = np.ascontiguousarray(x, dtype=self.dtype)
        shape = (x.shape[0],) + self.output_shape
        # Inference goes through the same kernel, so its values are the training ones.
        if training:
            out = self._workspace("y", shape, x.dtype)
        y = dense(x, w, b, relu=relu, n_threads=effective_n_threads(n_jobs), out=out)
        self._x = x if training else None
        self._y = y if training and relu else None
        return y

    def backward(self, grad_y, n_jobs, need_input_grad):
        return self._backward(grad_y, n_jobs, need_input_grad, relu=False)

    def backward_relu(self, grad_y, n_jobs, need_input_grad):
        """Backward of :meth:`forward_relu`; ``grad_y`` is the gradient of the relu's
        output and is overwritten with the relu's backward."""
        return self._backward(grad_y, n_jobs, need_input_grad, relu=True)

    def _backward(self, grad_y, n_jobs, need_input_grad, relu):
        x = self._take_cache("_x")
        relu_out = self._take_cache("_y") if relu else None
        grad_x = self._workspace("grad_x", x.shape, x.dtype) if need_input_grad else None
        return dense_backward(grad_y, x, self.params[0], self.grads[0], self.grads[1],
                              relu_output=relu_out, n_threads=effective_n_threads(n_jobs),
                              grad_x=grad_x)

    def __repr__(self):
        return f"Dense(units={self.units!r})"


class Activation(Layer):
    """Element-wise activation, by name (see :data:`skconv._nn.activations.ACTIVATIONS`).

    Its backward uses the cached OUTPUT, never the input.

    Parameters
    ----------
    name : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu'}

    Attributes
    ----------
    inplace_forward : bool, default False
        Overwrite the input with the output. :class:`skconv._nn.network.Network` turns it
        on when the input is a fresh array produced by the previous layer.
    inplace_backward : bool, default False
        Overwrite ``grad_y`` with ``grad_x``. The network turns it on (it hands the
        layers its own copy of the output gradient).
    """

    _cache_attributes = ("_y",)
    # The output is cached for backward (and may be the input buffer), so a following
    # activation must not overwrite it.
    fresh_output = False

    def __init__(self, name):
        super().__init__()
        self.name = name
        self.inplace_forward = False
        self.inplace_backward = False
        self._y = None

    def compute_output_shape(self, input_shape):
        try:
            get_activation(self.name)
        except ValueError as exc:
            raise ValueError(f"{self!r}: {exc}") from None
        return tuple(input_shape)

    def forward(self, x, n_jobs, training):
        out = x if self.inplace_forward else None
        y = get_activation(self.name).forward(x, out=out)
        self._y = y if training else None
        return y

    def infer(self, x, n_jobs, buffer):
        self._y = None
        # In place where the forward may (the previous layer's output is its own).
        out = x if self.inplace_forward else self._output_buffer(x, buffer)
        return get_activation(self.name).forward(x, out=out)

    def backward(self, grad_y, n_jobs, need_input_grad):
        y = self._take_cache("_y")
        if not need_input_grad:
            return None
        out = grad_y if self.inplace_backward else None
        return get_activation(self.name).backward(y, grad_y, out=out)

    def describe(self):
        return self.name

    def __repr__(self):
        return f"Activation({self.name!r})"


class BatchNorm(Layer):
    """Batch normalisation per channel (Ioffe and Szegedy, 2015).

    In training, each channel is normalised with the mean and biased variance of the
    minibatch over the batch and spatial axes, then scaled by ``gamma`` and shifted by
    ``beta`` (both learned); running averages of the statistics are kept for
    inference, as PyTorch keeps them: ``running = (1 - momentum) * running + momentum
    * batch``, with the unbiased variance. After a convolution the channels are the
    filters; after a dense layer, the units.

    The statistics weigh the rows by ``row_weights``, which the network sets from
    the minibatch's sample weights before each training forward (and the forward
    takes): each cell of a row weighs the row's weight, so that a sample of weight 2
    trains as the sample twice and one of weight 0 as no sample (it is still
    normalised). The unbiased variance of the running average then uses the
    effective count ``W = sum(row_weights) * cells`` as a frequency count: ``var *
    W / (W - 1)`` (the biased variance when ``W <= 1``, as for a single cell without
    weights); see :func:`skconv._ops.norm.batch_norm_count`.

    Parameters
    ----------
    momentum : float, default=0.1
        Weight of the newest minibatch in the running averages.
    eps : float, default=1e-5
        Added to the variance before its square root.

    Attributes
    ----------
    params : [gamma of shape (C,), beta of shape (C,)]
        Not penalised by L2 (``param_is_weight`` is False for both).
    buffers : [running_mean of shape (C,), running_var of shape (C,)]
    """

    _cache_attributes = ("_x_hat", "_inv_std", "_row_weights")

    def __init__(self, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self._x_hat = None
        self._inv_std = None
        self._row_weights = None
        # Set by the network before each training forward: the rows' sample
        # weights, or None (every row weighs 1); the forward takes them.
        self.row_weights = None

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        owner = repr(self)
        if len(shape) < 1 or any(s < 1 for s in shape):
            raise ValueError(f"{owner} needs an input of shape (C,) or (C, *spatial), got "
                             f"input shape {shape}")
        if not 0 <= self.momentum <= 1:
            raise ValueError(f"{owner}: momentum must be in [0, 1], got {self.momentum!r}")
        if not self.eps > 0:
            raise ValueError(f"{owner}: eps must be positive, got {self.eps!r}")
        return shape

    def _init_params(self, random_state):
        channels = self.input_shape[0]
        self.params = [np.ones(channels, dtype=self.dtype),
                       np.zeros(channels, dtype=self.dtype)]
        self.param_is_weight = (False, False)
        self.buffers = [np.zeros(channels), np.ones(channels)]

    def forward(self, x, n_jobs, training):
        gamma, beta = self.params
        if not training:
            return self._normalize(x, n_jobs, out=None)
        out = (self._workspace("y", x.shape, x.dtype),
               self._workspace("x_hat", x.shape, x.dtype))
        weights, self.row_weights = getattr(self, "row_weights", None), None
        y, self._x_hat, mean, var, self._inv_std = batch_norm_train(
            x, gamma, beta, eps=self.eps, sample_weight=weights, n_jobs=n_jobs, out=out)
        self._row_weights = weights
        self.update_running_statistics(mean, var, batch_norm_count(x.shape, weights))
        return y

    def update_running_statistics(self, mean, var, count):
        """Move the running averages towards a training batch's statistics.

        Parameters
        ----------
        mean, var : ndarray of shape (C,)
            The batch's mean and biased variance.
        count : int or float
            What the statistics divided by (:func:`skconv._ops.norm.batch_norm_count`).
        """
        unbiased = var * (count / (count - 1)) if count > 1 else var
        running_mean, running_var = self.buffers
        running_mean *= 1 - self.momentum
        running_mean += self.momentum * mean
        running_var *= 1 - self.momentum
        running_var += self.momentum * unbiased

    def infer(self, x, n_jobs, buffer):
        return self._normalize(x, n_jobs, out=self._output_buffer(x, buffer))

    def _normalize(self, x, n_jobs, out):
        """Inference: ``x`` normalised with the running statistics."""
        self._clear_cache()
        gamma, beta = self.params
        return batch_norm_inference(x, gamma, beta, *self.buffers, eps=self.eps,
                                    n_jobs=n_jobs, out=out)

    def backward(self, grad_y, n_jobs, need_input_grad):
        x_hat = self._take_cache("_x_hat")
        inv_std = self._take_cache("_inv_std")
        # None (every row weighs 1) is a valid cache here: no _take_cache.
        weights, self._row_weights = getattr(self, "_row_weights", None), None
        grad_x = (self._workspace("grad_x", x_hat.shape, x_hat.dtype) if need_input_grad
                  else None)
        grad_x, _, _ = batch_norm_backward(
            grad_y, x_hat, self.params[0], inv_std, sample_weight=weights, n_jobs=n_jobs,
            compute_grad_x=need_input_grad, out=(grad_x, self.grads[0], self.grads[1]))
        return grad_x

    def describe(self):
        return "batch norm"

    def __repr__(self):
        return f"BatchNorm(momentum={self.momentum!r}, eps={self.eps!r})"


class _RandomLayer(Layer):
    """A parameter-free layer that draws random numbers per row in training and is
    the identity at inference (dropout, augmentation).

    Each training forward takes one number from the layer's RandomState (the
    estimator's, given to :meth:`initialize` or by :meth:`Network.use_random_state`)
    and mixes it with the row keys the network sets before the forward
    (``row_keys``, a hash of each input row: :mod:`skconv._ops.keyed`), so
    equal samples draw alike, whatever their place in the minibatch or the thread
    count. Without keys (a forward outside a network) the rows draw from the
    RandomState directly.
    """

    # Inference returns its input: a following in-place activation must not
    # overwrite it.
    fresh_output = False

    def __init__(self):
        super().__init__()
        self._random_state = None
        # Set by the network before each training forward: one key per row.
        self.row_keys = None

    def _init_params(self, random_state):
        self.params, self.param_is_weight = [], ()
        self._random_state = random_state

    @property
    def draws(self):
        """Whether a training forward draws numbers (the layer is not a no-op)."""
        raise NotImplementedError

    def _row_uniforms(self, n_rows, per_row):
        """``(n_rows, per_row)`` uniform numbers in [0, 1) for this forward's rows;
        consumes the row keys."""
        keys, self.row_keys = getattr(self, "row_keys", None), None
        if keys is None:
            return self._random_state.random_sample((n_rows, per_row))
        if keys.shape != (n_rows,):
            raise ValueError(f"{self!r}: row_keys must have shape ({n_rows},), got "
                             f"shape {keys.shape}")
        return keyed_uniform(keys, draw_key(self._random_state), per_row, n_jobs=1)


class _RandomFactorLayer(_RandomLayer):
    """A random layer whose training forward multiplies its input by a factor it
    draws (per value, channel or sample, kept in ``_mask``, broadcast against the
    input), plus anything constant: its backward is the product with the same
    factor."""

    _cache_attributes = ("_mask",)

    def __init__(self):
        super().__init__()
        self._mask = None

    def backward(self, grad_y, n_jobs, need_input_grad):
        mask = self._take_cache("_mask")
        if not need_input_grad:
            return None
        return grad_y * mask


class Dropout(_RandomFactorLayer):
    """Dropout: in training, each value (or, with ``spatial``, each channel of each
    sample) is zeroed with probability ``rate`` and the rest scaled by
    ``1 / (1 - rate)``; inference passes the input through unchanged.

    The masks are keyed by the samples' content (:mod:`skconv._ops.keyed`):
    each training forward takes one number from the RandomState given to
    :meth:`initialize` (the estimator's ``random_state``, in network order) and mixes
    it with each row's key, which :meth:`Network.forward` sets from the minibatch's
    input rows (``row_keys``). Equal samples thus get equal masks, so that a sample
    weight of 2 is exactly a duplicated sample, and the masks never depend on the
    thread count or on a row's place in the minibatch. Without keys (a forward
    outside a network) the rows' masks are drawn from the RandomState directly.

    Parameters
    ----------
    rate : float, default=0.5
        Probability of dropping, in [0, 1).
    spatial : bool, default=False
        Drop whole channels of ``(C, *spatial)`` maps (Tompson et al., 2015), the
        dropout that suits convolutional maps, whose neighbouring cells are correlated.
    """

    def __init__(self, rate=0.5, spatial=False):
        super().__init__()
        self.rate = rate
        self.spatial = spatial

    def compute_output_shape(self, input_shape):
        if not 0 <= self.rate < 1:
            raise ValueError(f"{self!r}: rate must be in [0, 1), got {self.rate!r}")
        shape = tuple(input_shape)
        if self.spatial and len(shape) < 2:
            raise ValueError(f"{self!r}: spatial dropout needs an input of shape (C, "
                             f"*spatial), got input shape {shape}")
        return shape

    @property
    def draws(self):
        return bool(self.rate)

    def forward(self, x, n_jobs, training):
        if not training or not self.draws:
            self._mask = None if not training else np.ones((1,) * x.ndim, x.dtype)
            return x
        shape = x.shape[:2] + (1,) * (x.ndim - 2) if self.spatial else x.shape
        per_row = int(np.prod(shape[1:], dtype=np.int64))
        keep = self._row_uniforms(x.shape[0], per_row).reshape(shape) >= self.rate
        self._mask = keep.astype(x.dtype) * x.dtype.type(1 / (1 - self.rate))
        return x * self._mask

    def describe(self):
        return "spatial dropout" if self.spatial else "dropout"

    def __repr__(self):
        return f"Dropout(rate={self.rate!r}, spatial={self.spatial!r})"


class InputScale(Layer):
    """The input divided by a constant, ``y = x / divisor``, in training and inference.

    What a user's own ``X / divisor`` gives, bit for bit when the division is exact
    (a power of two): the estimators' ``input_scaling='max_abs'`` puts it first, with
    the training data's largest absolute value, so that 0-255 or 0-16 pixels train
    as the usual [0, 1] range does. No parameters.

    Parameters
    ----------
    divisor : float
        Positive and finite.
    """

    def __init__(self, divisor):
        super().__init__()
        if not (isinstance(divisor, (int, float)) and 0 < divisor < math.inf):
            raise ValueError(f"InputScale: divisor must be a positive finite number, "
                             f"got {divisor!r}")
        self.divisor = float(divisor)

    def forward(self, x, n_jobs, training):
        return np.divide(x, x.dtype.type(self.divisor))

    def backward(self, grad_y, n_jobs, need_input_grad):
        if not need_input_grad:
            return None
        return np.divide(grad_y, grad_y.dtype.type(self.divisor))

    def __repr__(self):
        return f"InputScale(divisor={self.divisor!r})"


class RandomShift(_RandomLayer):
    """Training-time augmentation: each sample moved by a random whole number of cells
    along every spatial axis (zeros enter at the edge), and optionally mirrored along
    its last spatial axis; inference passes the input through unchanged.

    A shift is a crop of the zero-padded sample (the standard "pad and random crop"
    augmentation of images), and for signals a random delay. The draws are keyed by
    the samples' content as dropout's are (:mod:`skconv._ops.keyed`): equal
    samples move alike, so a sample weight of 2 is a duplicated sample, and the draws
    never depend on the thread count.

    Parameters
    ----------
    shift : float, default=0.1
        Largest move, as a fraction of each spatial axis, in [0, 0.5): an axis of
        ``n`` cells moves by an integer drawn uniformly from ``[-m, m]``,
        ``m = round(shift * n)`` (8x8 digits with 0.1: up to 1 pixel; 28x28: 3).
    flip : bool, default=False
        Also mirror half of the samples along the last spatial axis (left-right for
        images). Off by default: it changes what a digit or a signal means.

    Attributes
    ----------
    max_shifts : tuple of int
        ``m`` per spatial axis, set by :meth:`initialize`.
    """

    _cache_attributes = ("_moves",)

    def __init__(self, shift=0.1, flip=False):
        super().__init__()
        self.shift = shift
        self.flip = flip
        self.max_shifts = None
        self._moves = None

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) < 2:
            raise ValueError(f"{self!r} needs an input of shape (C, *spatial), got "
                             f"input shape {shape}")
        if not 0 <= self.shift < 0.5:
            raise ValueError(f"{self!r}: shift must be in [0, 0.5), got {self.shift!r}")
        return shape

    def _settle(self, input_shape):
        # round() halves to even; floor(x + 0.5) rounds 0.5 up as users expect.
        self.max_shifts = tuple(int(math.floor(self.shift * n + 0.5))
                                for n in input_shape[1:])

    @property
    def draws(self):
        """Whether a training forward moves anything (and so draws numbers)."""
        return any(self.max_shifts or ()) or bool(self.flip)

    def forward(self, x, n_jobs, training):
        if not training or not self.draws:
            self.row_keys = None
            self._moves = None if not training else np.zeros((x.shape[0], 0), np.intp)
            return x
        n_axes = x.ndim - 2
        uniform = self._row_uniforms(x.shape[0], n_axes + 1)
        spans = np.array([2 * m + 1 for m in self.max_shifts])
        moves = np.empty((x.shape[0], n_axes + 1), dtype=np.intp)
        moves[:, :n_axes] = (np.floor(uniform[:, :n_axes] * spans).astype(np.intp)
                             - np.array(self.max_shifts))
        moves[:, n_axes] = (uniform[:, n_axes] < 0.5) if self.flip else 0
        self._moves = moves
        return self._move(x, moves, inverse=False, n_jobs=n_jobs)

    def backward(self, grad_y, n_jobs, need_input_grad):
        moves = self._take_cache("_moves")
        if not need_input_grad:
            return None
        if moves.shape[1] == 0:
            return grad_y
        return self._move(grad_y, moves, inverse=True, n_jobs=n_jobs)

    def _move(self, x, moves, inverse, n_jobs):
        """Each row of ``x`` flipped along its last axis where its last move is 1,
        then shifted by its other moves (cell ``i`` of the result is cell ``i - d``,
        zeros beyond the edge); with ``inverse``, the adjoint of that map, its
        gradient (:func:`skconv._ops.augment.move_samples`)."""
        out = self._workspace("grad_x" if inverse else "y", x.shape, x.dtype)
        return move_samples(x, moves, inverse=inverse, n_jobs=n_jobs, out=out)

    def describe(self):
        return "random shift" + (" and flip" if self.flip else "")

    def __repr__(self):
        return f"RandomShift(shift={self.shift!r}, flip={self.flip!r})"


class RandomScale(_RandomFactorLayer):
    """Training-time augmentation of the amplitude: each sample multiplied by a random
    factor, then random Gaussian noise added to each of its cells ("scaling" and
    "jitter", the usual augmentations of time series); inference passes the input
    through unchanged.

    ``y[i] = f_i * x[i] + noise * z[i]``, with ``f_i`` drawn uniformly from
    ``[1 - scale, 1 + scale)`` and every ``z`` standard normal (Box-Muller of keyed
    uniforms). The draws are keyed by the samples' content as dropout's are
    (:mod:`skconv._ops.keyed`): equal samples draw alike, so a sample weight of 2 is a
    duplicated sample, and the draws never depend on the thread count.

    Parameters
    ----------
    scale : float, default=0.1
        Largest relative change of a sample's amplitude, in [0, 1).
    noise : float, default=0.0
        Standard deviation of the added noise, in the units of the layer's input;
        >= 0 and finite.
    """

    def __init__(self, scale=0.1, noise=0.0):
        super().__init__()
        self.scale = scale
        self.noise = noise

    def compute_output_shape(self, input_shape):
        if not (isinstance(self.scale, (int, float)) and 0 <= self.scale < 1):
            raise ValueError(f"{self!r}: scale must be in [0, 1), got {self.scale!r}")
        if not (isinstance(self.noise, (int, float)) and 0 <= self.noise < math.inf):
            raise ValueError(f"{self!r}: noise must be >= 0 and finite, got "
                             f"{self.noise!r}")
        return tuple(input_shape)

    @property
    def draws(self):
        return bool(self.scale) or bool(self.noise)

    def forward(self, x, n_jobs, training):
        if not training or not self.draws:
            self._mask = None if not training else np.ones((1,) * x.ndim, x.dtype)
            return x
        n_cells = int(np.prod(x.shape[1:], dtype=np.int64))
        # One uniform for the factor, then pairs for Box-Muller (an odd cell count
        # draws one normal too many, unused).
        n_pairs = (n_cells + 1) // 2 if self.noise else 0
        uniform = self._row_uniforms(x.shape[0], 1 + 2 * n_pairs)
        factors = 1.0 + self.scale * (2.0 * uniform[:, 0] - 1.0)
        # The factors, one per sample, as the mask the backward multiplies by.
        self._mask = factors.astype(x.dtype).reshape((-1,) + (1,) * (x.ndim - 1))
        y = np.multiply(x, self._mask, out=self._workspace("y", x.shape, x.dtype))
        if n_pairs:
            # 1 - u is in (0, 1]: its log is finite.
            radius = np.sqrt(-2.0 * np.log1p(-uniform[:, 1::2]))
            angle = (2.0 * math.pi) * uniform[:, 2::2]
            normal = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)],
                                    axis=1)[:, :n_cells]
            y += (self.noise * normal).astype(x.dtype).reshape(x.shape)
        return y

    def describe(self):
        return "random scale" + (" and noise" if self.noise else "")

    def __repr__(self):
        return f"RandomScale(scale={self.scale!r}, noise={self.noise!r})"
