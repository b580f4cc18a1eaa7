"""A sequential network of layers, its plan of steps, and the L2 penalty.

The estimators drive this module through a small surface: :meth:`Network.initialize`
(and :meth:`Network.use_random_state` for the dropout masks),
:meth:`Network.forward` / :meth:`Network.backward`, :meth:`Network.predict` (the
logits, or a hidden layer's output with ``upto``, at the layers
:meth:`Network.feature_ends` names), ``get_state`` / ``set_state``, parameters by kind
(:meth:`Network.params_of`), the outputs of the conv blocks
(:meth:`Network.block_outputs`) and the layers' resolved settings as plain values
(:meth:`Network.describe`, for exporters). A training step is
:func:`skconv._nn.training.run_epoch`'s business.

The plan: the network runs a list of steps, each a layer alone or a few layers run as
one. A conv layer and the layers after it become one :class:`ConvBlockStep` when the
ops layer has a prepared fused block for them (:func:`skconv._ops.blocks.prepare_conv_block`
decides; the network only asks), a batch normalisation with the pooling (and relu)
after it one :class:`NormPoolStep` when :class:`skconv._ops.norm.NormPoolBlock` takes
them, any other batch normalisation (with the relu after it, if one follows) one
:class:`NormStep`, and a dense layer with a relu after it one :class:`DenseReluStep`.
Every step gives the same results bit for bit as its layers one by one, which
``Network(fuse=False)`` runs (the reference in the tests).
"""

import math

import numpy as np

from .._ops.blocks import prepare_conv_block
from .._ops.keyed import row_keys
from .._ops.norm import NormBlock, NormPoolBlock, batch_norm_affine, batch_norm_count
from .._ops.threads import effective_n_threads, single_threaded_blas
from .._ops.update import gather_rows, sum_of_squares
from .._ops.validation import normalize_padding, per_axis
from .activations import LEAKY_RELU_SLOPE
from .layers import (Activation, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalPool,
                     InputScale, Layer, Pool, RandomScale, RandomShift,
                     _RandomLayer)

# Bytes of all of one inference batch's activations, its input and every step's
# output together: the batches reuse those arrays, and a batch whose activations stay
# in the caches (L2 and a shared L3) runs faster. Signals gain most (their samples'
# floats stream from memory into a first convolution that does little work per
# float); LeNet-sized images keep about 512 rows. README, "Performance", has the
# figures.
INFERENCE_CACHE_BYTES = 6 << 20
# Fewest rows the cache rule gives a batch: with fewer, each batch re-reads the dense
# layers' weights (megabytes after a long signal's conv blocks) for too few rows, and
# two threads split too few samples (64 rows made multichannel signals slower on two
# threads).
INFERENCE_MIN_ROWS = 128
# Bytes of the largest step output of one inference batch, whatever the cache rule
# gives: the bound on the activations' memory. Its buffers also come back from the
# allocator's heap instead of fresh (zeroed, faulted) pages. Large samples (volumes,
# long multichannel signals) get fewer rows per batch.
INFERENCE_BATCH_BYTES = 16 << 20

__all__ = ["ConvBlockStep", "DenseReluStep", "LayerStep", "Network", "NormPoolStep",
           "NormStep", "l2_factors", "l2_penalty"]


def _layer_step(i, layer, shape, network_input, fn, *args):
    """``fn(shape, *args)`` with any ValueError re-raised naming the layer."""
    try:
        return tuple(fn(shape, *args))
    except ValueError as exc:
        raise ValueError(
            f"layer {i} ({type(layer).__name__}) cannot take input shape {shape} "
            f"(network input shape {network_input}): {exc}"
        ) from None


def _is_relu(layer):
    return isinstance(layer, Activation) and layer.name == "relu"


def _layer_settings(layer):
    """One entry of :meth:`Network.describe` (for an initialized layer)."""
    settings = {"input_shape": tuple(layer.input_shape),
                "output_shape": tuple(layer.output_shape)}
    spatial = layer.input_shape[1:]
    ones = (1,) * len(spatial)
    if isinstance(layer, Conv):
        kernel = tuple(layer.kernel_shape)
        strides = per_axis(layer.stride, len(spatial), "stride")
        dilations = per_axis(layer.dilation, len(spatial), "dilation")
        pads = normalize_padding(layer.padding, spatial, kernel, strides, dilations)
        settings.update(kind="conv", filters=layer.output_shape[0], kernel_shape=kernel,
                        strides=strides, dilations=dilations, pads=tuple(pads),
                        weights=layer.params[0], bias=layer.params[1])
    elif isinstance(layer, Pool):
        window = tuple(layer.effective_pool_size)
        strides = tuple(layer.effective_stride)
        # The pads of the window actually used, as the pooling op derives them.
        pads = normalize_padding(layer.padding, spatial, window, strides, ones)
        settings.update(kind="pool", mode=layer.mode, pool_size=window,
                        strides=strides, pads=tuple(pads))
    elif isinstance(layer, GlobalPool):
        settings.update(kind="global_pool", mode=layer.mode)
    elif isinstance(layer, Activation):
        settings.update(kind="activation", name=layer.name)
        if layer.name == "leaky_relu":
            settings["negative_slope"] = LEAKY_RELU_SLOPE
    elif isinstance(layer, Flatten):
        settings.update(kind="flatten")
    elif isinstance(layer, Dense):
        settings.update(kind="dense", units=layer.output_shape[0],
                        weights=layer.params[0], bias=layer.params[1])
    elif isinstance(layer, BatchNorm):
        gamma, beta = layer.params
        mean, var = layer.buffers
        scale, shift = batch_norm_affine(gamma, beta, mean, var, eps=layer.eps,
                                         dtype=layer.dtype)
        settings.update(kind="batch_norm", axis=0, eps=layer.eps, gamma=gamma, beta=beta,
                        running_mean=mean, running_var=var, scale=scale, shift=shift)
    elif isinstance(layer, Dropout):
        settings.update(kind="dropout", rate=layer.rate, spatial=layer.spatial)
    elif isinstance(layer, RandomShift):
        settings.update(kind="random_shift", shift=layer.shift, flip=layer.flip,
                        max_shifts=layer.max_shifts)
    elif isinstance(layer, RandomScale):
        settings.update(kind="random_scale", scale=layer.scale, noise=layer.noise)
    elif isinstance(layer, InputScale):
        settings.update(kind="input_scale", divisor=layer.divisor)
    else:
        settings.update(kind=type(layer).__name__.lower())
    return settings


def _draws(layer):
    """Whether ``layer``'s training forward draws random numbers per row."""
    return isinstance(layer, _RandomLayer) and layer.draws


class LayerStep:
    """One layer run on its own.

    Attributes
    ----------
    layers : tuple of Layer
        The layers the step runs, in order (one here).
    """

    def __init__(self, layer):
        self.layers = (layer,)

    def forward(self, x, n_jobs, training):
        """The step's output for a minibatch (see :meth:`Layer.forward`)."""
        return self.layers[0].forward(x, n_jobs, training)

    def backward(self, grad, n_jobs, need_input_grad):
        """The gradient of the step's input (see :meth:`Layer.backward`)."""
        return self.layers[0].backward(grad, n_jobs, need_input_grad)

    def infer(self, x, n_jobs, buffer):
        """The inference output, written where the step can into
        ``buffer(shape, dtype)``, an array that the next batch of the same
        :meth:`Network.predict` call overwrites (the same values as
        ``forward(x, n_jobs, training=False)``)."""
        return self.layers[0].infer(x, n_jobs, buffer)


class DenseReluStep(LayerStep):
    """A :class:`Dense` layer and the relu after it, in one kernel call per pass."""

    def __init__(self, dense, relu):
        self.layers = (dense, relu)

    def forward(self, x, n_jobs, training):
        return self.layers[0].forward_relu(x, n_jobs, training)

    def backward(self, grad, n_jobs, need_input_grad):
        return self.layers[0].backward_relu(grad, n_jobs, need_input_grad)

    def infer(self, x, n_jobs, buffer):
        return self.layers[0].infer(x, n_jobs, buffer, relu=True)


class ConvBlockStep(LayerStep):
    """A :class:`Conv` layer and the layers after it, run as one prepared block.

    The parameters and gradients stay the conv layer's; the block (from
    :func:`skconv._ops.blocks.prepare_conv_block`) computes with them.

    Parameters
    ----------
    layers : tuple of Layer
        The conv layer first, then the layers the block covers.
    block : object
        The prepared block.
    """

    def __init__(self, layers, block):
        self.layers = tuple(layers)
        self.block = block
        self._x = None

    def forward(self, x, n_jobs, training):
        conv = self.layers[0]
        w, b = conv.params
        y = self.block.forward(x, w, b, effective_n_threads(n_jobs), training)
        self._x = x if training else None
        return y

    def infer(self, x, n_jobs, buffer):
        w, b = self.layers[0].params
        out = buffer((len(x),) + self.layers[-1].output_shape, w.dtype)
        return self.block.forward(x, w, b, effective_n_threads(n_jobs), False, out=out)

    def backward(self, grad, n_jobs, need_input_grad):
        x, self._x = self._x, None
        if x is None:
            raise RuntimeError(f"{self!r}: backward needs a preceding forward with "
                               f"training=True")
        conv = self.layers[0]
        return self.block.backward(grad, x, conv.params[0], conv.grads[0], conv.grads[1],
                                   effective_n_threads(n_jobs),
                                   compute_grad_x=need_input_grad)

    def __repr__(self):
        return f"ConvBlockStep({self.block!r})"


class NormStep(LayerStep):
    """A :class:`BatchNorm` layer, and the relu after it if one follows, run as one
    prepared op (:class:`skconv._ops.norm.NormBlock`).

    The parameters, gradients and running averages stay the batch norm layer's; the
    block computes with them.

    Parameters
    ----------
    layers : tuple of Layer
        The batch norm layer, then the layers the block covers.
    block : NormBlock or NormPoolBlock
    """

    def __init__(self, layers, block):
        self.layers = tuple(layers)
        self.block = block

    def forward(self, x, n_jobs, training):
        norm = self.layers[0]
        gamma, beta = norm.params
        n_threads = effective_n_threads(n_jobs)
        if not training:
            return self.block.infer(x, gamma, beta, *norm.buffers, eps=norm.eps,
                                    n_threads=n_threads)
        weights, norm.row_weights = norm.row_weights, None
        y, mean, var = self.block.forward_train(x, gamma, beta, eps=norm.eps,
                                                sample_weight=weights,
                                                n_threads=n_threads)
        norm.update_running_statistics(mean, var, batch_norm_count(x.shape, weights))
        return y

    def infer(self, x, n_jobs, buffer):
        norm = self.layers[0]
        out = buffer((len(x),) + self.layers[-1].output_shape, norm.dtype)
        return self.block.infer(x, *norm.params, *norm.buffers, eps=norm.eps,
                                n_threads=effective_n_threads(n_jobs), out=out)

    def backward(self, grad, n_jobs, need_input_grad):
        norm = self.layers[0]
        grad_x, _, _ = self.block.backward(grad, norm.params[0],
                                           n_threads=effective_n_threads(n_jobs),
                                           compute_grad_x=need_input_grad,
                                           out=tuple(norm.grads))
        return grad_x

    def __repr__(self):
        return f"{type(self).__name__}({self.block!r})"


class NormPoolStep(NormStep):
    """A :class:`BatchNorm` layer, the max or min pooling after it and the relu (or
    identity) after that, run as one prepared op
    (:class:`skconv._ops.norm.NormPoolBlock`); as :class:`NormStep` otherwise.

    Parameters
    ----------
    layers : tuple of Layer
        The batch norm layer, the pooling, and the activation if the block covers it.
    block : NormPoolBlock
    """


class Network:
    """A stack of layers applied in order.

    Parameters
    ----------
    layers : list of Layer
        The layers, first to last. The list is copied; the layers are not.
    fuse : bool, default=True
        Run a conv layer and the layers after it as one prepared block where the ops
        layer has one, a :class:`BatchNorm` layer and the pooling (and relu) after it
        likewise, and a :class:`Dense` layer and a relu after it as one step (see the
        module docstring). The results are the same bit for bit; False runs
        every layer on its own (the reference in the tests).

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
        self.input_shape = tuple(int(s) for s in input_shape)
        self.output_shape = shape
        self.dtype = dtype
        self._steps = self._plan_steps()
        return shape

    @property
    def draws_in_training(self):
        """Whether a training forward draws random numbers (dropout, augmentation)."""
        return any(_draws(layer) for layer in self.layers)

    def use_random_state(self, random_state):
        """Draw the dropout masks and augmentations from ``random_state`` from now on.

        :meth:`initialize` gives the dropout layers its RandomState; an owner that
        re-seeds (a new fit of a trained network) points them at the new one.

        Parameters
        ----------
        random_state : numpy.random.RandomState
        """
        for layer in self.layers:
            if isinstance(layer, _RandomLayer):
                layer._random_state = random_state

    # -- the plan ------------------------------------------------------------------------
    def _plan_steps(self):
        """The list of steps that :meth:`forward` runs (see the module docstring)."""
        steps, i = [], 0
        while i < len(self.layers):
            layer = self.layers[i]
            step = None
            if self.fuse and isinstance(layer, Conv):
                step = self._conv_block_step(i)
            if step is None and self.fuse and isinstance(layer, BatchNorm):
                step = self._norm_step(i)
            if step is None and self.fuse and isinstance(layer, Dense) and _is_relu(
                    self.layers[i + 1] if i + 1 < len(self.layers) else None):
                step = DenseReluStep(layer, self.layers[i + 1])
            steps.append(step or LayerStep(layer))
            i += len(steps[-1].layers)
        return steps

    def _conv_block_step(self, i):
        """The longest run of layers from conv layer ``i`` that the ops layer has a
        prepared block for, as a step; None when it has none."""
        conv = self.layers[i]
        following = []
        for layer in self.layers[i + 1:]:
            if isinstance(layer, Pool):
                following.append(layer.spec())
            elif isinstance(layer, Activation):
                following.append(layer.name)
            else:
                break
        for n in range(len(following), 0, -1):
            block = prepare_conv_block(conv.input_shape, conv.output_shape[0], conv.spec(),
                                       following[:n], self.dtype)
            if block is not None:
                return ConvBlockStep(self.layers[i:i + 1 + n], block)
        return None

    def _norm_step(self, i):
        """Batch norm layer ``i`` as a step: with the pooling (and relu) after it
        when the ops layer has a block for them, else with the relu after it if one
        follows."""
        step = self._norm_pool_step(i)
        if step is not None:
            return step
        layer = self.layers[i]
        relu = _is_relu(self.layers[i + 1] if i + 1 < len(self.layers) else None)
        return NormStep(self.layers[i:i + 1 + relu],
                        NormBlock(layer.input_shape, relu, self.dtype))

    def _norm_pool_step(self, i):
        """Batch norm layer ``i``, the pooling after it and the relu (or identity)
        after that, as a step, when the ops layer has a block for them; else None."""
        layers = self.layers[i + 1:i + 3]
        if not layers or not isinstance(layers[0], Pool):
            return None
        if len(layers) > 1 and not (isinstance(layers[1], Activation)
                                    and layers[1].name in ("relu", "identity")):
            layers = layers[:1]
        block = NormPoolBlock.prepare(self.layers[i].input_shape, layers[0].spec(),
                                      len(layers) > 1 and _is_relu(layers[1]), self.dtype)
        return None if block is None else NormPoolStep(self.layers[i:i + 1 + len(layers)],
                                                       block)

    @property
    def steps(self):
        """The plan: the steps :meth:`forward` runs, in order (after initialize)."""
        self._check_initialized()
        if self._steps is None:  # unpickled: plan again
            self._steps = self._plan_steps()
        return self._steps

    def _check_initialized(self):
        if self.dtype is None:
            raise RuntimeError("the network is not initialized; call initialize()")

    # -- computation ---------------------------------------------------------------------
    def forward(self, x, n_jobs, training=False, rows=None, sample_weight=None):
        """Logits for a minibatch.

        BLAS thread limits are the caller's: the ops limit BLAS to one thread around
        their own calls, and :meth:`predict` and the training loop
        (:func:`skconv._nn.training.run_epoch`) hold one limit for all of their calls.

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
        sample_weight : ndarray of shape (N,), default=None
            The minibatch rows' weights (aligned with ``rows`` when given), for the
            layers whose training forward weighs the rows (batch statistics); None
            weighs every row 1. Ignored at inference.

        Returns
        -------
        logits : ndarray of shape (N, *output_shape) (``len(rows)`` rows with
        ``rows``), the network's dtype
        """
        steps = self.steps
        x = self._check_input(x)
        if rows is not None:
            x = self._gather(x, rows, n_jobs, training)
        if training:
            self._set_row_context(x, sample_weight, n_jobs)
        for step in steps:
            x = step.forward(x, n_jobs, training)
        return x

    def _check_input(self, x):
        """``x`` in the network's dtype, after checking the shape of its samples."""
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"x must have shape (N, *{self.input_shape}), got shape {x.shape}"
            )
        return x.astype(self.dtype, copy=False)

    def _set_row_context(self, x, sample_weight, n_jobs):
        """Give the layers that draw per row (dropout, augmentation) the rows'
        content keys, and those that weigh rows (batch norm) the weights, before a
        training forward."""
        keys = None
        if sample_weight is not None:
            sample_weight = np.asarray(sample_weight, dtype=np.float64)
        for layer in self.layers:
            if _draws(layer):
                if keys is None:
                    keys = row_keys(x, n_jobs)
                layer.row_keys = keys
            elif isinstance(layer, BatchNorm):
                layer.row_weights = sample_weight

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
        steps = self.steps
        # A private copy, so that layers may overwrite their output gradients in place.
        grad = np.array(grad_logits, dtype=self.dtype, copy=True)
        if grad.shape[1:] != self.output_shape:
            raise ValueError(
                f"grad_logits must have shape (N, *{self.output_shape}), got shape "
                f"{grad.shape}"
            )
        # A step needs its input's gradient only when a step before it has
        # parameters (an augmentation first does not make the first conv pay).
        trained_below = [need_input_grad]
        for step in steps[:-1]:
            trained_below.append(trained_below[-1] or any(
                layer.params for layer in step.layers))
        for k in range(len(steps) - 1, -1, -1):
            grad = steps[k].backward(grad, n_jobs, trained_below[k])
            if grad is None:
                break
        return grad

    def predict(self, X, n_jobs, batch_size=512, *, upto=None, dtype=np.float64):
        """Outputs of every sample of ``X``, ``batch_size`` samples at a time.

        The batches bound the memory of the activations whatever ``len(X)`` is, and
        each is cast to the network's dtype on its own, so ``X`` is never copied
        whole. One BLAS thread limit holds for all the batches.

        Parameters
        ----------
        X : ndarray of shape (n_samples, *input_shape)
        n_jobs : int or None
        batch_size : int, default=512
        upto : int or None, default=None
            Stop after layer ``upto`` (an index into :attr:`layers`, negative from the
            end) and return its output: the hidden representation of the samples
            (:meth:`feature_ends` lists the usual ones). The values are those the
            whole forward computes on the way, bit for bit: the steps up to that layer
            run as in :meth:`forward`, and a fused step that ``upto`` cuts runs its
            first layers one by one (the same results, see the module docstring).
            None: the whole network (the logits).
        dtype : numpy dtype, default=float64
            Of the returned array (the computation is in the network's dtype either
            way).

        Returns
        -------
        out : ndarray of shape (n_samples, *layers[upto].output_shape)
            ``output_shape`` for the whole network.
        """
        self._check_initialized()
        if upto is None:
            shape = self.output_shape
        else:
            upto = self._check_layer_index(upto)
            shape = self.layers[upto].output_shape
        out = np.empty((X.shape[0],) + tuple(shape), dtype=dtype)
        # The steps' outputs, reused by the batches: a fresh array per batch and step
        # costs its page faults every time (on 1-D signals a third of the inference,
        # and more on two threads, which fault in the same address space).
        buffers = {}
        batch_size = self._inference_rows(batch_size)
        with single_threaded_blas():
            for start in range(0, X.shape[0], batch_size):
                stop = min(start + batch_size, X.shape[0])
                if upto is None:
                    out[start:stop] = self._infer(X[start:stop], n_jobs, buffers)
                else:
                    out[start:stop] = self._forward_upto(X[start:stop], n_jobs, upto)
        return out

    def _inference_rows(self, batch_size):
        """``batch_size``, fewer where one batch's activations would exceed
        :data:`INFERENCE_CACHE_BYTES` (but not below :data:`INFERENCE_MIN_ROWS`) or a
        step's output :data:`INFERENCE_BATCH_BYTES`."""
        itemsize = np.dtype(self.dtype).itemsize
        sizes = [math.prod(self.input_shape)] + [
            math.prod(step.layers[-1].output_shape) for step in self.steps]
        in_cache = max(INFERENCE_MIN_ROWS,
                       INFERENCE_CACHE_BYTES // (sum(sizes) * itemsize))
        in_memory = INFERENCE_BATCH_BYTES // (max(sizes) * itemsize)
        return max(1, min(batch_size, in_cache, in_memory))

    def _infer(self, x, n_jobs, buffers):
        """:meth:`forward` at inference, each step writing into its array of
        ``buffers`` (kept by the caller across batches) where it can."""
        x = self._check_input(x)
        for k, step in enumerate(self.steps):
            def buffer(shape, dtype, k=k):
                array = buffers.get(k)
                if array is None or array.shape != shape or array.dtype != dtype:
                    array = buffers[k] = np.empty(shape, dtype=dtype)
                return array
            x = step.infer(x, n_jobs, buffer)
        return x

    def _check_layer_index(self, index):
        n = len(self.layers)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not (
                -n <= index < n):
            raise ValueError(f"upto must be a layer index in [{-n}, {n}), got {index!r}")
        return int(index) % n

    def _forward_upto(self, x, n_jobs, last):
        """The output of layer ``last`` for a batch (inference; see :meth:`predict`)."""
        x = np.asarray(x)
        if x.shape[1:] != self.input_shape:
            raise ValueError(
                f"x must have shape (N, *{self.input_shape}), got shape {x.shape}"
            )
        x = x.astype(self.dtype, copy=False)
        done = 0  # layers run so far
        for step in self.steps:
            n = len(step.layers)
            if done + n - 1 <= last:
                x = step.forward(x, n_jobs, False)
            else:  # the step runs past `last`: its first layers alone
                for layer in step.layers[:last - done + 1]:
                    x = layer.forward(x, n_jobs, False)
            done += n
            if done > last:
                return x
        return x

    def feature_ends(self):
        """The layers whose outputs are the network's learned representations.

        Input side first: the layer that feeds the first :class:`Dense` layer (in a
        LeNet the flatten, or the global pooling, after the conv blocks: the conv
        features), then, for each hidden dense layer, the last layer before the next
        dense layer (its activated output, after any normalisation or dropout that
        follows it; dropout is the identity at inference). The output layer is not
        one.

        Returns
        -------
        list of int
            Indices into :attr:`layers`, for :meth:`predict`'s ``upto``; empty when
            no dense layer has a layer before it.
        """
        dense = [i for i, layer in enumerate(self.layers) if isinstance(layer, Dense)]
        if not dense or dense[0] == 0:
            return []
        return [i - 1 for i in dense]

    def block_outputs(self, x, n_jobs=1):
        """The outputs of the conv blocks for a batch, as the network computes them.

        A conv block is a conv layer and the layers after it up to the next conv
        layer or the first non-spatial layer (in a LeNet: conv, activation and
        pooling, the activation after the pooling when they commute).

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
        n_jobs : int or None, default=1

        Returns
        -------
        list of (list of Layer, ndarray)
            One entry per conv block: its layers and its output, a fresh array of
            shape ``(N, *layers[-1].output_shape)``.
        """
        self._check_initialized()
        out = np.asarray(x).astype(self.dtype, copy=False)
        blocks, current = [], None
        with single_threaded_blas():
            for i, layer in enumerate(self.layers):
                if current is None and blocks and not isinstance(layer, Conv):
                    break  # past the last conv block: the dense part is not needed
                if isinstance(layer, Conv):
                    current = []
                out = layer.forward(out, n_jobs, training=False)
                if current is None:
                    continue
                current.append(layer)
                nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
                if (len(layer.output_shape) >= 2
                        and (nxt is None or isinstance(nxt, Conv)
                             or len(nxt.output_shape) < 2)):
                    # A copy: the next layer may be an in-place activation.
                    blocks.append((current, np.array(out, copy=True)))
                    current = None
        return blocks

    def describe(self):
        """The layers and their resolved settings, as plain values.

        What a tool needs to rebuild the network elsewhere (:mod:`skconv.onnx`), with
        every rule already applied: one value per spatial axis, padding as cells
        before and after on each axis (so 'same' with any stride is spelled out), a
        pooling window after clipping to a small map. No layer class or private
        helper is needed to read it. (:meth:`Layer.describe` is the few words for
        plots.)

        Returns
        -------
        list of dict
            One per layer, in order. Every dict has ``kind``, ``input_shape`` and
            ``output_shape`` (one sample, no batch axis). By kind:

            - ``'conv'``: ``filters``, ``kernel_shape``, ``strides``, ``dilations``
              (tuples of int, one per spatial axis), ``pads`` (a ``(low, high)`` pair
              per axis), ``weights`` of shape ``(filters, C, *kernel_shape)`` and
              ``bias`` of shape ``(filters,)``; cross-correlation, zero padding.
            - ``'pool'``: ``mode`` ('max', 'avg' or 'min'), ``pool_size`` (the window
              used), ``strides``, ``pads``; padded cells never win a max or a min and
              are not counted in an average, output sizes round down.
            - ``'global_pool'``: ``mode``; ``(C, *spatial) -> (C,)``.
            - ``'activation'``: ``name`` (see
              :data:`skconv._nn.activations.ACTIVATIONS`), and ``negative_slope`` for
              'leaky_relu'.
            - ``'flatten'``: C order.
            - ``'dense'``: ``units``, ``weights`` of shape ``(n_in, units)`` and
              ``bias`` of shape ``(units,)``: ``y = x @ weights + bias``.
            - ``'batch_norm'``: per channel, the channels being ``axis`` (0) of a
              sample, ``(C,)`` or ``(C, *spatial)``: ``gamma``, ``beta``,
              ``running_mean``, ``running_var`` (float64) and ``eps``, and what
              inference computes from them, ``y = x * scale + shift`` in the
              network's dtype with ``scale = gamma / sqrt(running_var + eps)`` and
              ``shift = beta - running_mean * scale`` (computed in float64, then
              rounded: :func:`skconv._ops.norm.batch_norm_affine`).
            - ``'dropout'``: ``rate`` and ``spatial``; the identity at inference.
            - ``'random_shift'``: ``shift``, ``flip`` and ``max_shifts``; the identity
              at inference.
            - ``'input_scale'``: ``divisor``; ``y = x / divisor`` in the network's
              dtype.
            - any other layer: ``kind`` is its class name in lower case.

            ``weights`` and ``bias`` are the network's own arrays: read them, do not
            write to them.
        """
        self._check_initialized()
        return [_layer_settings(layer) for layer in self.layers]

    # -- parameters ----------------------------------------------------------------------
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

    def params_of(self, kind):
        """The parameters of the layers of one kind, layer by layer.

        Parameters
        ----------
        kind : {'conv', 'dense'}

        Returns
        -------
        list of list of ndarray
            ``[weights, bias]`` of each such layer, the network's own arrays (updated
            in place by training).
        """
        kinds = {"conv": Conv, "dense": Dense}
        if kind not in kinds:
            raise ValueError(f"kind must be one of {sorted(kinds)}, got {kind!r}")
        return [list(layer.params) for layer in self.layers
                if isinstance(layer, kinds[kind])]

    def _state_arrays(self):
        """The parameters, then the buffers (running statistics), layer by layer."""
        return self.params + [b for layer in self.layers
                              for b in getattr(layer, "buffers", [])]

    def get_state(self):
        """A copy of every parameter and buffer (e.g. the best weights for early
        stopping, with the running statistics that go with them).

        Returns
        -------
        list of ndarray
            Copies: the parameters in the order of :attr:`params`, then each layer's
            buffers.
        """
        return [p.copy() for p in self._state_arrays()]

    def set_state(self, state):
        """Restore a state saved by :meth:`get_state`, in place.

        In place, so that an optimizer holding the parameter arrays keeps working.
        """
        arrays = self._state_arrays()
        if len(state) != len(arrays) or any(
            np.shape(s) != p.shape for s, p in zip(state, arrays)
        ):
            raise ValueError(
                "state does not match the network's parameters and buffers: shapes "
                f"{[np.shape(s) for s in state]} vs {[p.shape for p in arrays]}"
            )
        for p, s in zip(arrays, state):
            p[...] = s

    def __getstate__(self):
        # The training batch and the plan's prepared blocks are workspaces: never
        # pickle them (the plan is made again on first use).
        state = self.__dict__.copy()
        state["_batch"] = None
        state["_steps"] = None
        # The dtype by name, as in Layer.__getstate__ (skops trusts no dtype object).
        if state.get("dtype") is not None:
            state["dtype"] = np.dtype(state["dtype"]).name
        return state

    def __setstate__(self, state):
        # Pickles made before the plan was a list of step objects hold index tuples,
        # and those made before the dtype was stored by name the dtype itself.
        state["_steps"] = None
        if state.get("dtype") is not None:
            state["dtype"] = np.dtype(state["dtype"])
        self.__dict__.update(state)

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
    # One compiled pass over the weights: no float64 copy and no threaded BLAS call
    # (see skconv._ops.update.sum_of_squares).
    total = sum_of_squares(network.weights, n_threads)
    return 0.5 * alpha * total / batch_size


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
