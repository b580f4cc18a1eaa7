"""Batch normalisation ops: per-channel normalisation over the batch and spatial axes.

``x`` is ``(N, C, *spatial)`` (after a convolution) or ``(N, C)`` (after a dense
layer); every channel ``c`` is normalised with the mean and the biased variance of
``x[:, c]`` over the batch and the spatial axes (Ioffe and Szegedy, 2015; PyTorch's
``BatchNorm1d/2d/3d`` in training mode), then scaled by ``gamma[c]`` and shifted by
``beta[c]``. The statistics are reduced per channel in one fixed order in float64
(``skconv._kernels.norm``), so results are bitwise the same for any ``n_jobs``;
float32 stays float32.

Training takes optional row weights (``sample_weight``, one per sample): then each cell
of sample ``n`` weighs ``w[n]`` in the mean and the biased variance, whose count is the
effective count ``W = sum(w) * S`` (:func:`batch_norm_count`; ``S`` the product of the
spatial axes), and the backward is the gradient of that weighted normalisation. The
weights are frequency weights: a row of weight 2 gives the statistics and gradients of
the row twice, a row of weight 0 those of the batch without it (it is still
normalised, and its input gradient is ``gamma * inv_std * grad_y``). Without weights
the results are exactly the unweighted ones.

The prepared ops (see :mod:`skconv._ops.blocks`): :class:`NormBlock` is batch
normalisation and optionally the relu after it, what a network runs where no pooling
follows; :class:`NormPoolBlock` is batch normalisation followed by a non-overlapping
max or min pooling and optionally a relu (the conv blocks of a LeNet-5 with batch
normalisation before the pooling): one pass over the maps
normalises, pools and applies the relu, and the backward never builds the gradient of
the normalised maps; the results equal the three ops' bit for bit.
"""

import functools
import math

import numpy as np

from .._kernels import norm as _kernel
from .threads import effective_n_threads, threads_for_cells
from .validation import (
    as_float_array,
    check_out,
    common_float_dtype,
    contiguous,
    normalize_padding,
)

__all__ = ["NormBlock", "NormPoolBlock", "batch_norm_affine", "batch_norm_backward",
           "batch_norm_count", "batch_norm_inference", "batch_norm_train"]


def _as_channels(x, name):
    """``x`` as an (N, C, S) view (S = product of the spatial axes, 1 for 2-D x)."""
    if x.ndim < 2 or x.shape[1] == 0:
        raise ValueError(f"{name} must have shape (N, C) or (N, C, *spatial) with C >= 1, "
                         f"got shape {x.shape}")
    return x.reshape(x.shape[0], x.shape[1], math.prod(x.shape[2:]))


def _check_channel_vector(value, n_channels, name, dtype):
    value = as_float_array(value, name)
    if value.shape != (n_channels,):
        raise ValueError(f"{name} must have shape ({n_channels},) (one value per channel), "
                         f"got shape {value.shape}")
    return contiguous(value, dtype)


def _check_eps(eps):
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a positive finite float, got {eps!r}")


def _check_row_weights(sample_weight, shape):
    """``sample_weight`` as a float64 (N,) array for a batch of ``shape``, or None."""
    if sample_weight is None:
        return None
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"sample_weight must be an array of numbers, got "
                         f"{type(sample_weight).__name__}") from None
    if weights.shape != tuple(shape[:1]):
        raise ValueError(f"sample_weight must have shape ({shape[0]},) (one weight per "
                         f"sample), got shape {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("sample_weight must be finite and non-negative")
    if not weights.sum() > 0:
        raise ValueError("sample_weight must have a positive sum (a batch whose "
                         "weights are all zero has no statistics)")
    return np.ascontiguousarray(weights)


def batch_norm_count(shape, sample_weight=None):
    """The count the statistics of a batch of ``shape`` divide by: ``N * S`` (an
    int) without weights, the effective count ``math.fsum(sample_weight) * S`` with
    them (``S`` the product of the spatial axes ``shape[2:]``). A network's
    unbiased running variance is ``var * count / (count - 1)``.

    Parameters
    ----------
    shape : tuple of int
        ``(N, C, *spatial)`` or ``(N, C)``.
    sample_weight : array-like of shape (N,), default=None
        Checked as :func:`batch_norm_train` checks it.

    Returns
    -------
    count : int or float
    """
    n_cells = math.prod(shape[2:])
    weights = _check_row_weights(sample_weight, shape)
    if weights is None:
        return shape[0] * n_cells
    return math.fsum(weights) * n_cells


#: Passes a batch normalisation makes over each cell of its input in training: the
#: mean, the squared deviations and the normalisation (the backward: the sums, then
#: the gradient, reading two arrays each). Its thread count counts them: a 64 x 16 x 7
#: x 7 batch (LeNet-5's second block after its pooling) runs in two thirds of the
#: time on two threads.
TRAIN_VISITS_PER_CELL = 3


def _threads(n_jobs, x, n_tasks, visits=1):
    return _block_threads(effective_n_threads(n_jobs), x, n_tasks, visits)


def _block_threads(n_threads, x, n_tasks, visits=1):
    """The threads for ``n_tasks`` tasks over the cells of ``x``, from an effective
    count (what the prepared ops take, as the conv blocks do)."""
    return max(1, min(threads_for_cells(n_threads, x.size * visits), n_tasks))


def batch_norm_train(x, gamma, beta, *, eps=1e-5, sample_weight=None, n_jobs=None,
                     out=None, relu=False):
    """Normalise ``x`` with its own (weighted) batch statistics.

    Parameters
    ----------
    x : array-like of shape (N, C) or (N, C, *spatial)
        N >= 1.
    gamma, beta : array-like of shape (C,)
        Scale and shift per channel.
    eps : float, default=1e-5
        Added to the variance before the square root.
    sample_weight : array-like of shape (N,), default=None
        Row weights (finite, non-negative, positive sum) of the statistics; None
        weighs every row 1. Pass the same to :func:`batch_norm_backward`.
    n_jobs : int, default=None
        Threads (channels are shared out; the result does not depend on it).
    out : tuple of 2 ndarray, default=None
        Where to write ``(y, x_hat)`` (writeable, C-contiguous, the result's dtype).
    relu : bool, default=False
        Apply a relu to ``y`` (``numpy.maximum(y, 0)``, each row while it is in
        cache): a batch norm and the relu after it in one pass.

    Returns
    -------
    y : ndarray, shape of ``x``
        ``gamma * x_hat + beta`` (then the relu).
    x_hat : ndarray, shape of ``x``
        The normalised input, kept for :func:`batch_norm_backward`.
    mean, var, inv_std : ndarray of shape (C,), float64
        The batch's (weighted) mean and biased variance per channel, and ``1 /
        sqrt(var + eps)``.
    """
    x = as_float_array(x, "x")
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must have shape (N, C) or (N, C, *spatial) with N >= 1, got "
                         f"shape {x.shape}")
    dtype = common_float_dtype(x, np.asarray(gamma), np.asarray(beta))
    x = contiguous(x, dtype)
    n_channels = x.shape[1]
    gamma = _check_channel_vector(gamma, n_channels, "gamma", dtype)
    beta = _check_channel_vector(beta, n_channels, "beta", dtype)
    _check_eps(eps)
    weights = _check_row_weights(sample_weight, x.shape)
    count = batch_norm_count(x.shape, weights)
    if out is None:
        y, x_hat = np.empty_like(x), np.empty_like(x)
    else:
        y = check_out(out[0], x.shape, dtype, "out[0] (y)", (x, gamma, beta))
        x_hat = check_out(out[1], x.shape, dtype, "out[1] (x_hat)", (x, gamma, beta),
                          [("out[0] (y)", y)])
    mean, var, inv_std = (np.empty(n_channels) for _ in range(3))
    _kernel.forward_train(_as_channels(x, "x"), gamma, beta, float(eps), weights,
                          float(count), _as_channels(y, "y"),
                          _as_channels(x_hat, "x_hat"), mean, var, inv_std,
                          _threads(n_jobs, x, n_channels, TRAIN_VISITS_PER_CELL),
                          bool(relu))
    return y, x_hat, mean, var, inv_std


def batch_norm_backward(grad_y, x_hat, gamma, inv_std, *, sample_weight=None,
                        n_jobs=None, compute_grad_x=True, out=None, relu_output=None):
    """Gradients of :func:`batch_norm_train` with respect to x, gamma and beta.

    Parameters
    ----------
    grad_y : array-like, shape of ``x``
    x_hat : ndarray, shape of ``x``
        From :func:`batch_norm_train`.
    gamma : array-like of shape (C,)
    inv_std : array-like of shape (C,)
        From :func:`batch_norm_train`.
    sample_weight : array-like of shape (N,), default=None
        The row weights given to :func:`batch_norm_train`. ``grad_y`` is the
        gradient of the loss as it is (a weighted loss already weighs its rows);
        the weights enter through the mean and the variance.
    n_jobs : int, default=None
    compute_grad_x : bool, default=True
        False skips the input gradient (returns None for it).
    out : tuple of 3 ndarray, default=None
        Where to write ``(grad_x, grad_gamma, grad_beta)`` (``grad_x`` None when
        ``compute_grad_x`` is False).
    relu_output : ndarray, shape of ``x``, default=None
        The ``y`` of ``batch_norm_train(..., relu=True)``: ``grad_y`` is then the
        gradient of the relu's output, and its backward (``grad_y * (relu_output >
        0)``, as the relu layer computes it) runs first, row by row in the same pass.

    Returns
    -------
    grad_x : ndarray, shape of ``x``, or None
    grad_gamma, grad_beta : ndarray of shape (C,)
    """
    x_hat = as_float_array(x_hat, "x_hat")
    grad_y = as_float_array(grad_y, "grad_y")
    if grad_y.shape != x_hat.shape:
        raise ValueError(f"grad_y must have the shape of x_hat {x_hat.shape}, got shape "
                         f"{grad_y.shape}")
    dtype = common_float_dtype(grad_y, x_hat)
    grad_y, x_hat = contiguous(grad_y, dtype), contiguous(x_hat, dtype)
    n_channels = _as_channels(x_hat, "x_hat").shape[1]
    gamma = _check_channel_vector(gamma, n_channels, "gamma", dtype)
    inv_std = _check_channel_vector(inv_std, n_channels, "inv_std", np.float64)
    weights = _check_row_weights(sample_weight, x_hat.shape)
    if relu_output is not None:
        relu_output = as_float_array(relu_output, "relu_output")
        if relu_output.shape != x_hat.shape:
            raise ValueError(f"relu_output must have the shape of x_hat {x_hat.shape}, "
                             f"got shape {relu_output.shape}")
        relu_output = contiguous(relu_output, dtype)
    inputs = (grad_y, x_hat, gamma, relu_output)
    if out is None:
        grad_x = np.empty_like(x_hat) if compute_grad_x else None
        grad_gamma, grad_beta = np.empty(n_channels, dtype), np.empty(n_channels, dtype)
    else:
        grad_gamma = check_out(out[1], (n_channels,), dtype, "out[1] (grad_gamma)", inputs)
        grad_beta = check_out(out[2], (n_channels,), dtype, "out[2] (grad_beta)",
                              inputs, [("out[1] (grad_gamma)", grad_gamma)])
        grad_x = None
        if compute_grad_x:
            grad_x = check_out(out[0], x_hat.shape, dtype, "out[0] (grad_x)", inputs,
                               [("out[1] (grad_gamma)", grad_gamma),
                                ("out[2] (grad_beta)", grad_beta)])
    relu_grad = None
    if relu_output is not None:
        # The relu's gradient is written where grad_x goes, which it becomes in place.
        relu_grad = _as_channels(grad_x if grad_x is not None else np.empty_like(x_hat),
                                 "grad_x")
        relu_output = _as_channels(relu_output, "relu_output")
    _kernel.backward(_as_channels(grad_y, "grad_y"), _as_channels(x_hat, "x_hat"), gamma,
                     inv_std, weights, float(batch_norm_count(x_hat.shape, weights)),
                     None if grad_x is None else _as_channels(grad_x, "grad_x"),
                     grad_gamma, grad_beta,
                     _threads(n_jobs, x_hat, n_channels, TRAIN_VISITS_PER_CELL),
                     relu_output, relu_grad)
    return grad_x, grad_gamma, grad_beta


def batch_norm_inference(x, gamma, beta, mean, var, *, eps=1e-5, n_jobs=None, out=None):
    """Normalise ``x`` with given statistics (a network's running averages):
    ``y = x * scale + shift`` with ``scale = gamma / sqrt(var + eps)`` and
    ``shift = beta - mean * scale``, per channel.

    Parameters
    ----------
    x : array-like of shape (N, C) or (N, C, *spatial)
    gamma, beta, mean, var : array-like of shape (C,)
    eps : float, default=1e-5
    n_jobs : int, default=None
    out : ndarray, default=None

    Returns
    -------
    y : ndarray, shape of ``x``
    """
    x = as_float_array(x, "x")
    dtype = common_float_dtype(x, np.asarray(gamma), np.asarray(beta))
    x = contiguous(x, dtype)
    n_channels = _as_channels(x, "x").shape[1]
    gamma, beta, mean, var = (
        _check_channel_vector(v, n_channels, name, np.float64)
        for v, name in ((gamma, "gamma"), (beta, "beta"), (mean, "mean"), (var, "var")))
    scale, shift = batch_norm_affine(gamma, beta, mean, var, eps=eps, dtype=dtype)
    y = np.empty_like(x) if out is None else check_out(out, x.shape, dtype, "out", (x,))
    if x.shape[0]:
        _kernel.forward_infer(_as_channels(x, "x"), scale, shift, _as_channels(y, "y"),
                              _threads(n_jobs, x, x.shape[0] * n_channels))
    return y


def batch_norm_affine(gamma, beta, mean, var, *, eps=1e-5, dtype=np.float64):
    """The per-channel affine map of :func:`batch_norm_inference`, exactly as it
    computes it: ``scale = gamma / sqrt(var + eps)`` and ``shift = beta - mean *
    scale`` in float64, then each rounded to ``dtype``; the inference is then
    ``y = x * scale + shift`` in ``dtype``. An exporter that applies these two
    constants (:meth:`skconv._nn.network.Network.describe` hands them out) computes
    what the inference computes.

    Parameters
    ----------
    gamma, beta, mean, var : array-like of shape (C,)
    eps : float, default=1e-5
    dtype : float32 or float64, default=float64
        The computation dtype of the inference.

    Returns
    -------
    scale, shift : ndarray of shape (C,), ``dtype``
    """
    gamma, beta, mean, var = (np.asarray(v, dtype=np.float64)
                              for v in (gamma, beta, mean, var))
    scale = gamma / np.sqrt(var + eps)
    shift = beta - mean * scale
    return scale.astype(dtype), shift.astype(dtype)


class _PreparedNorm:
    """What the prepared batch normalisation ops share: their workspaces (kept per
    batch shape, never pickled), the checks of their inputs and the gradient outputs.
    Subclasses set ``input_shape``, ``output_shape``, ``dtype``, ``_arrays = {}``
    and ``_cache = None``."""

    _MAX_PREPARED = 4  # batch shapes whose arrays are kept
    _READABLE_PAST_END = 16  # values a kernel's whole vectors may read past an array

    def _array(self, name, shape, dtype):
        """A workspace kept per batch shape; the kernels may read a few values past
        its end (see ``skconv._kernels.norm.scratch_cells``), so it has them."""
        key = (name, tuple(shape))
        array = self._arrays.get(key)
        if array is None:
            if len(self._arrays) >= 6 * self._MAX_PREPARED:
                self._arrays.clear()
            size = math.prod(shape)
            array = np.empty(size + self._READABLE_PAST_END, dtype=dtype)[:size]
            array = self._arrays[key] = array.reshape(shape)
        return array

    def _check_input(self, x):
        x = contiguous(as_float_array(x, "x"), self.dtype)
        if x.shape[1:] != self.input_shape or len(x) == 0:
            raise ValueError(f"x must have shape (N, *{self.input_shape}) with N >= 1, "
                             f"got shape {x.shape}")
        return x

    def _check_channels(self, values, names, dtype):
        n_channels = self.input_shape[0]
        return [_check_channel_vector(v, n_channels, name, dtype)
                for v, name in zip(values, names)]

    def _take_cache(self):
        """What the last training forward kept for the backward (then forgotten)."""
        if self._cache is None:
            raise RuntimeError("backward needs a preceding forward_train")
        cache, self._cache = self._cache, None
        return cache

    def _check_grad_y(self, grad_y, shape):
        grad_y = as_float_array(grad_y, "grad_y")
        if grad_y.shape != shape:
            raise ValueError(f"grad_y must have shape {shape} (the forward's output), "
                             f"got shape {grad_y.shape}")
        return contiguous(grad_y, self.dtype)

    def _grad_params(self, out, grad_y):
        """``(grad_gamma, grad_beta)``: ``out`` checked, or fresh arrays."""
        n_channels = self.input_shape[0]
        if out is None:
            return tuple(np.empty(n_channels, self.dtype) for _ in range(2))
        grad_gamma = check_out(out[0], (n_channels,), self.dtype, "out[0] (grad_gamma)",
                               (grad_y,))
        grad_beta = check_out(out[1], (n_channels,), self.dtype, "out[1] (grad_beta)",
                              (grad_y,), [("out[0] (grad_gamma)", grad_gamma)])
        return grad_gamma, grad_beta

    def __getstate__(self):
        # Workspaces and the training cache: never pickled.
        state = self.__dict__.copy()
        state["_arrays"], state["_cache"] = {}, None
        return state


class NormBlock(_PreparedNorm):
    """Batch normalisation, optionally followed by a relu, as a prepared op for one
    sample shape: what a network runs at a :class:`BatchNorm` layer that no pooling
    follows (after a dense layer, or after a conv block that pooled its own output).

    The same kernels as :func:`batch_norm_train` and :func:`batch_norm_backward` (with
    their ``relu`` and ``relu_output``), so the same results bit for bit as those ops
    and ``numpy.maximum(y, 0)``, for any ``n_threads``. The sample shape and the
    dtype are fixed when it is made, the outputs are the block's workspaces
    (overwritten by the next call), and ``n_threads`` is an effective count, as the
    conv blocks take it: a call checks less than the ops do.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)`` or ``(C,)``, one sample.
    relu : bool
    dtype : float32 or float64

    Attributes
    ----------
    input_shape, output_shape : tuple of int
    dtype : numpy dtype
    """

    def __init__(self, input_shape, relu, dtype):
        self.input_shape = self.output_shape = tuple(int(s) for s in input_shape)
        self.relu = bool(relu)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64) or not self.input_shape or min(
                self.input_shape) < 1:
            raise ValueError(f"NormBlock needs a float32 or float64 dtype and a sample "
                             f"shape (C, *spatial) of positive sizes, got {self.dtype} "
                             f"and {self.input_shape}")
        self._channels = (self.input_shape[0], math.prod(self.input_shape[1:]))
        self._arrays = {}
        self._cache = None

    def _as_channels(self, x):
        return x.reshape((len(x),) + self._channels)

    def forward_train(self, x, gamma, beta, *, eps, sample_weight=None, n_threads=1):
        """:func:`batch_norm_train` (then the relu), keeping what :meth:`backward`
        needs; the arguments and results are :meth:`NormPoolBlock.forward_train`'s
        (``y`` has the input's shape)."""
        x = self._check_input(x)
        gamma, beta = self._check_channels((gamma, beta), ("gamma", "beta"), self.dtype)
        _check_eps(eps)
        weights = _check_row_weights(sample_weight, x.shape)
        count = float(batch_norm_count(x.shape, weights))
        y = self._array("y", x.shape, self.dtype)
        x_hat = self._array("x_hat", x.shape, self.dtype)
        if np.may_share_memory(x, y) or np.may_share_memory(x, x_hat):
            x = x.copy()  # the block's own last output, given back to it
        n_channels = self.input_shape[0]
        mean, var, inv_std = (np.empty(n_channels) for _ in range(3))
        _kernel.forward_train(self._as_channels(x), gamma, beta, float(eps), weights,
                              count, self._as_channels(y), self._as_channels(x_hat),
                              mean, var, inv_std,
                              _block_threads(n_threads, x, n_channels,
                                             TRAIN_VISITS_PER_CELL),
                              self.relu)
        self._cache = (x_hat, y, inv_std, weights, count)
        return y, mean, var

    def infer(self, x, gamma, beta, mean, var, *, eps, n_threads=1, out=None):
        """:func:`batch_norm_inference` (then the relu) with the given statistics."""
        self._cache = None
        y = batch_norm_inference(x, gamma, beta, mean, var, eps=eps, n_jobs=n_threads,
                                 out=out)
        return np.maximum(y, 0.0, out=y) if self.relu else y

    def backward(self, grad_y, gamma, *, n_threads=1, compute_grad_x=True, out=None):
        """Gradients after a :meth:`forward_train`, as :func:`batch_norm_backward`
        (with the relu's backward first); the arguments and results are
        :meth:`NormPoolBlock.backward`'s."""
        x_hat, y, inv_std, weights, count = self._take_cache()
        grad_y = self._check_grad_y(grad_y, y.shape)
        (gamma,) = self._check_channels((gamma,), ("gamma",), self.dtype)
        grad_gamma, grad_beta = self._grad_params(out, grad_y)
        grad_x = self._array("grad_x", y.shape, self.dtype) if compute_grad_x else None
        relu_grad = None
        if self.relu:  # written where grad_x goes, which it becomes in place
            relu_grad = grad_x if compute_grad_x else self._array("relu_grad", y.shape,
                                                                  self.dtype)
        if any(np.may_share_memory(grad_y, out) for out in (grad_x, relu_grad)
               if out is not None):
            grad_y = grad_y.copy()  # the block's own last input gradient
        as_channels = self._as_channels
        _kernel.backward(as_channels(grad_y), as_channels(x_hat), gamma, inv_std, weights,
                         count, None if grad_x is None else as_channels(grad_x),
                         grad_gamma, grad_beta,
                         _block_threads(n_threads, y, self.input_shape[0],
                                        TRAIN_VISITS_PER_CELL),
                         as_channels(y) if self.relu else None,
                         None if relu_grad is None else as_channels(relu_grad))
        return grad_x, grad_gamma, grad_beta

    def __repr__(self):
        return f"NormBlock(input_shape={self.input_shape}, relu={self.relu})"


class NormPoolBlock(_PreparedNorm):
    """Batch normalisation, a max or min pooling of non-overlapping windows and
    optionally a relu, as one prepared op on one or two spatial axes.

    :meth:`prepare` makes one for a pooling whose stride is its window and that has no
    padding, on maps of 1 or 2 spatial axes, with at most 255 cells in a window;
    otherwise it returns None and the caller runs the three ops. The training forward
    writes the pooled output and the winning cell of each window, not the normalised
    maps; the backward gets the input gradient from them without building the
    gradient of the normalised maps. Results equal :func:`batch_norm_train`, the
    pooling, ``numpy.maximum(y, 0)`` and their backward bit for bit (for any
    ``n_threads``).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``, one sample: the maps that are normalised.
    pool : skconv._ops.blocks.PoolSpec
    relu : bool
        Whether a relu follows the pooling.
    dtype : float32 or float64

    Attributes
    ----------
    input_shape, output_shape : tuple of int
        One sample's input and output shapes.
    dtype : numpy dtype
    """

    _MAX_WINDOW_CELLS = 255  # the winner of a window is kept as a uint8

    def __init__(self, input_shape, pool, relu, dtype):
        self.input_shape = tuple(input_shape)
        self.pool = pool
        self.relu = bool(relu)
        self.dtype = np.dtype(dtype)
        window = tuple(pool.pool_size)
        self._window = (1,) * (2 - len(window)) + window  # (pool_h, pool_w)
        spatial = self.input_shape[1:]
        self.output_shape = (self.input_shape[0],) + tuple(
            size // w for size, w in zip(spatial, window))
        self._arrays = {}
        self._cache = None

    @classmethod
    def prepare(cls, input_shape, pool, relu, dtype):
        """An instance, or None when these settings have no fused kernel (see the
        class docstring)."""
        input_shape = tuple(int(s) for s in input_shape)
        dtype = np.dtype(dtype)
        if dtype not in (np.float32, np.float64) or not 2 <= len(input_shape) <= 3:
            return None
        spatial = input_shape[1:]
        window, strides = tuple(pool.pool_size), tuple(pool.stride)
        if (pool.mode not in ("max", "min") or len(window) != len(spatial)
                or strides != window or math.prod(window) > cls._MAX_WINDOW_CELLS
                or any(w < 1 or w > size for w, size in zip(window, spatial))):
            return None
        try:
            pads = normalize_padding(pool.padding, spatial, window, strides,
                                     (1,) * len(spatial))
        except (TypeError, ValueError):
            return None
        if any(any(pad) for pad in pads):
            return None
        return cls(input_shape, pool, relu, dtype)

    def _as_planes(self, x, shape):
        """``x`` of ``(N, C, *spatial)`` as ``(N, C, H, W)`` (H = 1 for signals)."""
        return x.reshape((len(x), shape[0]) + (1,) * (3 - len(shape)) + tuple(shape[1:]))

    def _scratch(self, n_threads):
        """The kernels' per-thread scratch: two planes, and a row of winners."""
        cells = _kernel.scratch_cells(math.prod(self.input_shape[1:]),
                                      self.output_shape[-1])
        return (self._array("scratch", (n_threads, 2, cells), self.dtype),
                self._array("code_scratch", (n_threads, cells), np.uint8))

    def forward_train(self, x, gamma, beta, *, eps, sample_weight=None, n_threads=1):
        """Normalise with the batch's statistics, pool, relu; keep what
        :meth:`backward` needs.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
            Kept (not copied) until :meth:`backward`: do not modify it before.
        gamma, beta : array-like of shape (C,)
        eps : float
        sample_weight : array-like of shape (N,), default=None
            As in :func:`batch_norm_train`.
        n_threads : int, default=1

        Returns
        -------
        y : ndarray of shape (N, *output_shape)
            The block's array, overwritten by the next training forward.
        mean, var : ndarray of shape (C,), float64
            The batch's statistics, as :func:`batch_norm_train` returns them.
        """
        x = self._check_input(x)
        gamma, beta = self._check_channels((gamma, beta), ("gamma", "beta"), self.dtype)
        _check_eps(eps)
        weights = _check_row_weights(sample_weight, x.shape)
        count = float(batch_norm_count(x.shape, weights))
        shape = (len(x),) + self.output_shape
        y = self._array("y", shape, self.dtype)
        winners = self._array("winners", shape, np.uint8)
        n_channels = self.input_shape[0]
        mean, var, inv_std = (np.empty(n_channels) for _ in range(3))
        pool_h, pool_w = self._window
        threads = _block_threads(n_threads, x, n_channels)
        _kernel.forward_pool_train(
            self._as_planes(x, self.input_shape), gamma, beta, float(eps), weights,
            count, pool_h, pool_w, self.pool.mode == "min", self.relu,
            self._as_planes(y, self.output_shape),
            self._as_planes(winners, self.output_shape), mean, var, inv_std,
            *self._scratch(threads), threads)
        self._cache = (x, y, winners, mean, inv_std, weights, count)
        return y, mean, var

    def infer(self, x, gamma, beta, mean, var, *, eps, n_threads=1, out=None):
        """The inference output with the given statistics (a network's running
        averages), as :func:`batch_norm_inference` then the pooling and the relu.

        Parameters
        ----------
        x : ndarray of shape (N, *input_shape)
        gamma, beta, mean, var : array-like of shape (C,)
        eps : float
        n_threads : int, default=1
        out : ndarray of shape (N, *output_shape), default=None

        Returns
        -------
        y : ndarray of shape (N, *output_shape)
        """
        x = contiguous(as_float_array(x, "x"), self.dtype)
        if x.shape[1:] != self.input_shape:
            raise ValueError(f"x must have shape (N, *{self.input_shape}), got shape "
                             f"{x.shape}")
        self._cache = None
        values = self._check_channels((gamma, beta, mean, var),
                                      ("gamma", "beta", "mean", "var"), np.float64)
        scale, shift = batch_norm_affine(*values, eps=eps, dtype=self.dtype)
        shape = (len(x),) + self.output_shape
        y = np.empty(shape, self.dtype) if out is None else check_out(
            out, shape, self.dtype, "out", (x,))
        if len(x):
            pool_h, pool_w = self._window
            threads = _block_threads(n_threads, x, len(x) * self.input_shape[0])
            _kernel.forward_pool_infer(
                self._as_planes(x, self.input_shape), scale, shift, pool_h, pool_w,
                self.pool.mode == "min", self.relu, self._as_planes(y, self.output_shape),
                *self._scratch(threads), threads)
        return y

    def backward(self, grad_y, gamma, *, n_threads=1, compute_grad_x=True, out=None):
        """Gradients after a :meth:`forward_train`.

        Parameters
        ----------
        grad_y : array-like of shape (N, *output_shape)
        gamma : array-like of shape (C,)
            The forward's.
        n_threads : int, default=1
        compute_grad_x : bool, default=True
        out : tuple of 2 ndarray of shape (C,), default=None
            Where to write ``(grad_gamma, grad_beta)``.

        Returns
        -------
        grad_x : ndarray of shape (N, *input_shape), or None
            The block's array, overwritten by the next backward.
        grad_gamma, grad_beta : ndarray of shape (C,)
        """
        x, y, winners, mean, inv_std, weights, count = self._take_cache()
        grad_y = self._check_grad_y(grad_y, y.shape)
        (gamma,) = self._check_channels((gamma,), ("gamma",), self.dtype)
        n_channels = self.input_shape[0]
        grad_gamma, grad_beta = self._grad_params(out, grad_y)
        grad_x = self._array("grad_x", x.shape, self.dtype) if compute_grad_x else None
        pool_h, pool_w = self._window
        threads = _block_threads(n_threads, x, n_channels)
        pooled = functools.partial(self._as_planes, shape=self.output_shape)
        grad_windows = self._array("grad_windows", y.shape, self.dtype)
        _kernel.backward_pool(
            pooled(grad_y), pooled(y), pooled(winners),
            self._as_planes(x, self.input_shape), gamma, mean, inv_std, weights, count,
            pool_h, pool_w, self.relu,
            None if grad_x is None else self._as_planes(grad_x, self.input_shape),
            grad_gamma, grad_beta, pooled(grad_windows), self._scratch(threads)[0], threads)
        return grad_x, grad_gamma, grad_beta

    def __repr__(self):
        return (f"NormPoolBlock(input_shape={self.input_shape}, "
                f"pool_size={tuple(self.pool.pool_size)}, mode={self.pool.mode!r}, "
                f"relu={self.relu})")
