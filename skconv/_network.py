"""A sequential network of layers, the L2 penalty, and the LeNet-5 builder (private).

The estimator drives this module; it calls down into :mod:`skconv._layers` and never
the other way round. A typical training step::

    net = build_lenet5((1, 28, 28), n_classes=10)
    net.initialize((1, 28, 28), check_random_state(0), np.float32)
    optimizer = Adam(net.params, learning_rate=1e-3)
    ...
    logits = net.forward(x_batch, n_jobs, training=True)
    loss, grad = softmax_cross_entropy(logits, y_batch, sw_batch)
    # scikit-learn's MLP scales L2 by the batch's total sample weight
    batch_size = len(x_batch) if sw_batch is None else sw_batch.sum()
    loss += l2_penalty(net, alpha, batch_size)
    net.backward(grad, n_jobs)
    optimizer.update(net.grads, l2_factors(net, alpha, batch_size), n_jobs)
"""

import numbers

import numpy as np

from ._activations import get_activation
from ._layers import (
    POOL_MODES,
    Activation,
    Conv,
    Dense,
    Flatten,
    Layer,
    Pool,
)
from ._optimizers import add_l2
from ._threads import effective_n_threads, single_threaded_blas
from ._update import gather_rows, sum_of_squares_arrays
from ._validation import MAX_GEOMETRY_VALUE, MAX_SPATIAL_DIMS

__all__ = ["Network", "add_l2_gradient", "build_lenet5", "l2_factors", "l2_penalty"]


def _layer_step(i, layer, shape, network_input, fn, *args):
    """``fn(shape, *args)`` with any ValueError re-raised naming the layer."""
    try:
        return tuple(fn(shape, *args))
    except ValueError as exc:
        raise ValueError(
            f"layer {i} ({type(layer).__name__}) cannot take input shape {shape} "
            f"(network input shape {network_input}): {exc}"
        ) from None


class Network:
    """A stack of layers applied in order.

    Parameters
    ----------
    layers : list of Layer
        The layers, first to last. The list is copied; the layers are not.
    fuse : bool, default=True
        Run a :class:`Conv` and the 2x2 max/min :class:`Pool` after it (and a relu
        :class:`Activation` after that) as one fused step where
        :meth:`Conv.can_fuse_pool` allows: the convolution's output is then never
        stored. A :class:`Dense` layer and a relu after it are one step too. The
        results are the same bit for bit; False runs every layer on its own (the
        reference in the tests).

    Attributes
    ----------
    layers : list of Layer
    input_shape, output_shape : tuple of int or None
        Shapes of one sample (no batch axis), set by :meth:`initialize`.
    dtype : numpy dtype or None
        Parameter and computation dtype, set by :meth:`initialize`.
    """

    def __init__(self, layers, fuse=True):
        layers = list(layers)
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layer {i} is not a Layer: {layer!r}")
        self.layers = layers
        self.fuse = fuse
        self.input_shape = None
        self.output_shape = None
        self.dtype = None
        self._steps = None
        self._batch = None

    def compute_output_shape(self, input_shape):
        """Run shape inference only (no allocation) and return the output shape.

        Raises
        ------
        ValueError
            When some layer cannot take the shape produced by the previous ones; the
            message names the layer's index and type and the shapes.
        """
        network_input = shape = tuple(int(s) for s in input_shape)
        for i, layer in enumerate(self.layers):
            shape = _layer_step(i, layer, shape, network_input,
                                layer.compute_output_shape)
        return shape

    def initialize(self, input_shape, random_state, dtype):
        """Infer shapes and draw every parameter from one RandomState.

        Parameters
        ----------
        input_shape : tuple of int
            Shape of one sample, ``(C, *spatial)`` for a convolutional network.
        random_state : numpy.random.RandomState
            The only source of randomness; layers draw in order, so the same seed gives
            the same parameters.
        dtype : float32 or float64

        Returns
        -------
        output_shape : tuple of int
        """
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        network_input = shape = tuple(int(s) for s in input_shape)
        for i, layer in enumerate(self.layers):
            shape = _layer_step(i, layer, shape, network_input, layer.initialize,
                                random_state, dtype)
        # In-place activations: the forward may overwrite its input only when the
        # previous layer made it fresh (not the caller's array, not a cached output);
        # the backward always may, because backward() hands the layers a private copy
        # of the output gradient and every layer returns a new gradient array.
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Activation):
                layer.inplace_forward = i > 0 and self.layers[i - 1].fresh_output
                layer.inplace_backward = True
        self._steps = self._plan_steps()
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = shape
        self.dtype = dtype
        return shape

    def _plan_steps(self):
        """Indices of the layers each step runs: (i,) alone, (i, i + 1) for a
        convolution fused with the pooling after it or a dense layer fused with the
        relu after it, (i, i + 1, i + 2) for a convolution, pooling and relu."""
        steps, i = [], 0
        layers = self.layers + [None, None]
        is_relu = lambda layer: isinstance(layer, Activation) and layer.name == "relu"  # noqa: E731
        while i < len(self.layers):
            layer, following, activation = layers[i:i + 3]
            if self.fuse and isinstance(layer, Conv) and layer.can_fuse_pool(following):
                steps.append((i, i + 1, i + 2) if is_relu(activation) else (i, i + 1))
            elif self.fuse and isinstance(layer, Dense) and is_relu(following):
                steps.append((i, i + 1))
            else:
                steps.append((i,))
            i += len(steps[-1])
        return steps

    def _forward_step(self, step, x, n_jobs, training):
        """Run one step of :meth:`_plan_steps` forward."""
        layer = self.layers[step[0]]
        if len(step) == 1:
            return layer.forward(x, n_jobs, training)
        if isinstance(layer, Dense):
            return layer.forward_relu(x, n_jobs, training)
        return layer.forward_pooled(x, self.layers[step[1]], n_jobs, training,
                                    relu=len(step) == 3)

    def _backward_step(self, step, grad, n_jobs, need_input_grad):
        """Run one step of :meth:`_plan_steps` backward."""
        layer = self.layers[step[0]]
        if len(step) == 1:
            return layer.backward(grad, n_jobs, need_input_grad)
        if isinstance(layer, Dense):
            return layer.backward_relu(grad, n_jobs, need_input_grad)
        return layer.backward_pooled(grad, n_jobs, need_input_grad)

    def _check_initialized(self):
        if self.dtype is None:
            raise RuntimeError("the network is not initialized; call initialize()")

    def forward(self, x, n_jobs, training=False, rows=None):
        """Logits for a minibatch.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
            Converted to the network's dtype if needed; never modified.
        n_jobs : int or None
            Threads for the ops.
        training : bool, default=False
            Cache what :meth:`backward` needs.
        rows : ndarray of int, default=None
            Run the minibatch ``x[rows]`` instead of ``x``, gathered on the threads
            (each copies the samples its first layer computes on, so they start in
            its own cache). The same results as ``forward(x[rows])``.

        Returns
        -------
        logits : ndarray of shape (N, *output_shape) (``len(rows)`` rows with
        ``rows``), the network's dtype
        """
        self._check_initialized()
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"x must have shape (N, *{self.input_shape}), got shape {x.shape}"
            )
        x = x.astype(self.dtype, copy=False)
        if rows is not None:
            x = self._gather(x, rows, n_jobs, training)
        # One BLAS limit for the pass, not one per layer call (see single_threaded_blas).
        with single_threaded_blas():
            for step in self._steps:
                x = self._forward_step(step, x, n_jobs, training)
        return x

    def _gather(self, x, rows, n_jobs, training):
        """``x[rows]``, copied on the threads (see :meth:`forward`)."""
        rows = np.asarray(rows)
        if rows.ndim != 1 or (rows.size and rows.dtype.kind not in "iu"):
            raise ValueError(f"rows must be a 1-D array of ints, got {rows.dtype} with "
                             f"shape {rows.shape}")
        shape = (rows.shape[0],) + x.shape[1:]
        if not x.flags.c_contiguous:
            return x[rows]
        # A training batch is kept for the next one (the first layer caches it for
        # its backward, which comes first); inference batches are fresh.
        out = getattr(self, "_batch", None) if training else None
        if out is None or out.shape != shape or out.dtype != x.dtype:
            out = np.empty(shape, dtype=x.dtype)
            if training:
                self._batch = out
        gather_rows(x, np.ascontiguousarray(rows, dtype=np.intp), out,
                    effective_n_threads(n_jobs))
        return out

    def backward(self, grad_logits, n_jobs, need_input_grad=False):
        """Back-propagate after a training forward; fills every layer's ``grads``.

        Parameters
        ----------
        grad_logits : ndarray of shape (N, *output_shape)
            Gradient of the loss with respect to the logits; not modified.
        n_jobs : int or None
        need_input_grad : bool, default=False
            Whether to compute the gradient with respect to the network input (the
            first layer normally skips it).

        Returns
        -------
        grad_x : ndarray of shape (N, *input_shape) or None
        """
        self._check_initialized()
        # A private copy, so that layers may overwrite their output gradients in place.
        grad = np.array(grad_logits, dtype=self.dtype, copy=True)
        if grad.shape[1:] != self.output_shape:
            raise ValueError(
                f"grad_logits must have shape (N, *{self.output_shape}), got shape "
                f"{grad.shape}"
            )
        with single_threaded_blas():
            for step in reversed(self._steps):
                grad = self._backward_step(step, grad, n_jobs,
                                           step[0] > 0 or need_input_grad)
        return grad

    @property
    def params(self):
        """Every parameter array, layer by layer (weights before biases)."""
        return [p for layer in self.layers for p in layer.params]

    @property
    def grads(self):
        """Gradient arrays matching :attr:`params` one to one."""
        return [g for layer in self.layers for g in layer.grads]

    @property
    def weights(self):
        """The parameters that get the L2 penalty (weights; not biases)."""
        return [p for layer in self.layers
                for p, is_w in zip(layer.params, layer.param_is_weight) if is_w]

    @property
    def weight_grads(self):
        """Gradients matching :attr:`weights` one to one."""
        return [g for layer in self.layers
                for g, is_w in zip(layer.grads, layer.param_is_weight) if is_w]

    @property
    def n_params(self):
        """Total number of trainable scalars."""
        return sum(p.size for p in self.params)

    def get_state(self):
        """A copy of every parameter (e.g. the best weights for early stopping).

        Returns
        -------
        list of ndarray
            Copies, in the order of :attr:`params`.
        """
        return [p.copy() for p in self.params]

    def set_state(self, state):
        """Restore parameters saved by :meth:`get_state`, in place.

        In place, so that an optimizer holding the parameter arrays keeps working.
        """
        params = self.params
        if len(state) != len(params) or any(
            np.shape(s) != p.shape for s, p in zip(state, params)
        ):
            raise ValueError(
                "state does not match the network's parameters: shapes "
                f"{[np.shape(s) for s in state]} vs {[p.shape for p in params]}"
            )
        for p, s in zip(params, state):
            p[...] = s

    def __getstate__(self):
        # The training batch is a workspace: never pickle it.
        state = self.__dict__.copy()
        state["_batch"] = None
        return state

    def __repr__(self):
        inner = ",\n    ".join(repr(layer) for layer in self.layers)
        return f"Network([\n    {inner},\n])"


def l2_penalty(network, alpha, batch_size, n_threads=1):
    """scikit-learn MLP's L2 term: ``0.5 * alpha * sum(||W||^2) / batch_size``.

    Parameters
    ----------
    network : Network
    alpha : float
        L2 strength (biases are not penalised).
    batch_size : float
        Samples in the minibatch, or the sum of their sample weights when weighted
        (scikit-learn's convention).
    n_threads : int, default=1
        Threads for the sum (the result does not depend on them).

    Returns
    -------
    float
        Accumulated in float64.
    """
    if alpha == 0:
        return 0.0
    # One compiled pass over the weights, no float64 copy and no BLAS (a threaded
    # ddot costs ~4 ms per call for a (120, 84) layer on a busy 2-core machine).
    total = sum_of_squares_arrays(network.weights, n_threads)
    return 0.5 * alpha * total / batch_size


def add_l2_gradient(network, alpha, batch_size):
    """Add the gradient of :func:`l2_penalty`, ``alpha * W / batch_size``, in place.

    Call after :meth:`Network.backward` (which overwrites the gradients).

    Parameters
    ----------
    network : Network
    alpha : float
    batch_size : float
        As in :func:`l2_penalty`.
    """
    add_l2(network.params, network.grads, l2_factors(network, alpha, batch_size))


def l2_factors(network, alpha, batch_size):
    """Per-parameter factors of the L2 gradient: ``alpha / batch_size`` for weights,
    0 for biases (the ``l2`` argument of the optimizers' ``update``).

    Parameters
    ----------
    network : Network
    alpha : float
    batch_size : float
        As in :func:`l2_penalty`.

    Returns
    -------
    list of float
        In the order of :attr:`Network.params`.
    """
    scale = float(alpha) / float(batch_size) if alpha else 0.0
    return [scale if is_weight else 0.0
            for layer in network.layers for is_weight in layer.param_is_weight]


# -------------------------------------------------------------------------------------
# LeNet-5 builder
# -------------------------------------------------------------------------------------
def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_axis_tuple(value, n_axes):
    return (isinstance(value, (tuple, list)) and len(value) == n_axes
            and all(_is_int(v) for v in value))


def _per_layer(value, n_layers, n_axes, name, scalar_ok, axis_tuple_ok=True):
    """Expand a conv/pool parameter to one value per conv layer.

    A scalar (``scalar_ok(value)``) applies to every layer. A tuple or list with one
    entry per layer gives per-layer values, each a scalar or (when ``axis_tuple_ok``) a
    per-axis tuple of ints. A tuple of ints whose length is not the number of layers
    but is the number of spatial axes applies per-axis to every layer. When the length
    equals both, it is read as per-layer. Anything else raises ValueError naming
    ``name``.
    """
    expected = (
        f"a single value, a tuple of {n_layers} per-layer values"
        + (f", or a tuple of {n_axes} ints (one per spatial axis)"
           if axis_tuple_ok else "")
    )
    # The ops refuse larger values too, but their message would name the layer's
    # argument (a pool's "stride") instead of this one ("pool_stride").
    ints = [value] if _is_int(value) else [
        v for entry in (value if isinstance(value, (tuple, list)) else ())
        for v in (entry if isinstance(entry, (tuple, list)) else (entry,)) if _is_int(v)]
    if any(v > MAX_GEOMETRY_VALUE for v in ints):
        raise ValueError(
            f"{name} must be at most {MAX_GEOMETRY_VALUE} (the kernels' index range), "
            f"got {value!r}"
        )
    if scalar_ok(value):
        return [value] * n_layers
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    value = tuple(value)
    if len(value) != n_layers:
        if axis_tuple_ok and _is_axis_tuple(value, n_axes):
            return [value] * n_layers
        raise ValueError(
            f"{name} must be {expected} (the network has {n_layers} conv layers and "
            f"{n_axes} spatial axes); got {value!r}"
        )
    for i, entry in enumerate(value):
        if not (scalar_ok(entry) or (axis_tuple_ok and _is_axis_tuple(entry, n_axes))):
            raise ValueError(
                f"{name}[{i}] (conv layer {i}) must be "
                + ("a single value or a tuple of {n_axes} ints".format(n_axes=n_axes)
                   if axis_tuple_ok else "a single value")
                + f"; got {entry!r} in {name}={value!r}"
            )
    return [tuple(v) if isinstance(v, list) else v for v in value]


#: Activations that max and min pooling commute with, gradients included, bit for bit.
#: For a non-decreasing f, max(f(x)) = f(max(x)), so the values agree. The gradient
#: goes to the first extreme cell in both orders: relu and identity map no two
#: distinct values of a window with a positive extreme to one value, and a window of
#: relu's whose extreme is not positive gets a zero gradient both ways (relu' = 0
#: there, taken from the output). Tanh, logistic and leaky relu can round two
#: distinct inputs to one output, which moves a tie, so they keep the plain order.
POOL_COMMUTING_ACTIVATIONS = ("relu", "identity")


def build_lenet5(
    image_shape,
    n_classes,
    *,
    filters=(6, 16),
    kernel_size=5,
    stride=1,
    padding="same",
    dilation=1,
    activation="relu",
    pooling="max",
    pool_size=2,
    pool_stride=None,
    hidden_layer_sizes=(120, 84),
):
    """A configurable LeNet-5: [conv -> activation -> pool] * len(filters), flatten,
    [dense -> activation] * len(hidden_layer_sizes), dense(n_classes) (logits).

    With max or min pooling and a relu or identity activation, a block is built as
    conv -> pool -> activation instead: the same function and the same gradients (see
    :data:`POOL_COMMUTING_ACTIVATIONS`), with the activation on a quarter of the cells
    for 2x2 pooling.

    The conv/pool parameters (``kernel_size``, ``stride``, ``padding``, ``dilation``,
    ``pooling``, ``pool_size``, ``pool_stride``) each take

    - a scalar, applied to every conv layer (``kernel_size=5``, ``padding='same'``);
    - a tuple/list with one entry per conv layer, each entry a scalar or a per-axis
      tuple: ``kernel_size=((5, 3), (3, 3))``;
    - a tuple of ints with one entry per spatial axis, applied to every layer:
      ``kernel_size=(5, 3)`` with 2-D images and three conv layers.

    Ambiguity rule: a tuple of ints whose length equals both the number of conv
    layers and the number of spatial axes is read as PER-LAYER (``kernel_size=(5, 3)``
    with two conv layers on images means 5x5 then 3x3). Anything else raises
    ValueError naming the parameter. ``pooling`` takes a string or one string per
    layer; ``pool_stride`` entries may be None (stride = window).

    Weights of a layer followed by relu / leaky_relu use He-uniform initialisation,
    tanh / logistic / identity (and the output layer) Glorot-uniform; biases are zero.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, *spatial)`` with 1 to 3 spatial axes.
    n_classes : int
        Output units (logits for a softmax).
    filters : int or tuple of int, default=(6, 16)
        Filters of each conv layer; its length is the number of conv layers (may be 0).
    kernel_size, stride, padding, dilation
        See above and :class:`skconv._layers.Conv`. Default 5, 1, 'same', 1.
    activation : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu'}, default='relu'
        Used after every conv and hidden dense layer.
    pooling : {'max', 'avg', 'min'} or tuple of them, default='max'
    pool_size : int or tuple, default=2
    pool_stride : None, int or tuple, default=None
        None means the window. Windows larger than a (small) map are clipped, see
        :class:`skconv._layers.Pool`.
    hidden_layer_sizes : tuple of int, default=(120, 84)

    Returns
    -------
    Network
        Not yet initialized: call ``network.initialize(image_shape, random_state,
        dtype)``. Its shapes have been checked against ``image_shape``.

    Raises
    ------
    ValueError
        For malformed parameters (naming the parameter) or a configuration that cannot
        take ``image_shape`` (naming the layer index and type and the shapes).
    """
    try:
        image_shape = tuple(image_shape)
    except TypeError:
        raise ValueError(f"image_shape must be a tuple (C, *spatial), got "
                         f"{image_shape!r}") from None
    if (not 2 <= len(image_shape) <= 1 + MAX_SPATIAL_DIMS
            or not all(_is_int(s) and s >= 1 for s in image_shape)):
        raise ValueError(
            f"image_shape must be (C, *spatial) with 1 to {MAX_SPATIAL_DIMS} spatial "
            f"axes of positive ints, got {image_shape!r}"
        )
    n_axes = len(image_shape) - 1
    if not _is_int(n_classes) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")

    if _is_int(filters):
        filters = (filters,)
    if not isinstance(filters, (tuple, list)) or not all(
        _is_int(f) and f >= 1 for f in filters
    ):
        raise ValueError(f"filters must be a tuple of positive ints, got {filters!r}")
    if _is_int(hidden_layer_sizes):
        hidden_layer_sizes = (hidden_layer_sizes,)
    if not isinstance(hidden_layer_sizes, (tuple, list)) or not all(
        _is_int(h) and h >= 1 for h in hidden_layer_sizes
    ):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints, got "
            f"{hidden_layer_sizes!r}"
        )
    try:
        get_activation(activation)
    except ValueError as exc:
        raise ValueError(f"activation: {exc}") from None

    n_conv = len(filters)
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    kernels = _per_layer(kernel_size, n_conv, n_axes, "kernel_size", _is_int)
    strides = _per_layer(stride, n_conv, n_axes, "stride", _is_int)
    paddings = _per_layer(padding, n_conv, n_axes, "padding",
                          lambda v: _is_int(v) or is_str(v))
    dilations = _per_layer(dilation, n_conv, n_axes, "dilation", _is_int)
    modes = _per_layer(pooling, n_conv, n_axes, "pooling", is_str, axis_tuple_ok=False)
    for mode in modes:
        if mode not in POOL_MODES:
            raise ValueError(f"pooling must be one of {POOL_MODES}, got {pooling!r}")
    pool_sizes = _per_layer(pool_size, n_conv, n_axes, "pool_size", _is_int)
    pool_strides = _per_layer(pool_stride, n_conv, n_axes, "pool_stride",
                              lambda v: v is None or _is_int(v))

    hidden_init = "he_uniform" if activation in ("relu", "leaky_relu") else (
        "glorot_uniform")
    layers = []
    for i in range(n_conv):
        conv = Conv(int(filters[i]), kernels[i], strides[i], paddings[i], dilations[i],
                    init=hidden_init)
        pool = Pool(pool_sizes[i], pool_strides[i], mode=modes[i])
        if modes[i] in ("max", "min") and activation in POOL_COMMUTING_ACTIVATIONS:
            # Same values and gradients, with the activation on the pooled map only.
            layers += [conv, pool, Activation(activation)]
        else:
            layers += [conv, Activation(activation), pool]
    layers.append(Flatten())
    for units in hidden_layer_sizes:
        layers += [Dense(int(units), init=hidden_init), Activation(activation)]
    layers.append(Dense(int(n_classes), init="glorot_uniform"))

    network = Network(layers)
    network.compute_output_shape(image_shape)
    return network
