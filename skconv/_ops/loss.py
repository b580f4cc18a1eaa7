"""Loss ops: each takes the network's raw outputs and the targets of a minibatch and
returns ``(loss, gradient with respect to the raw outputs)``.

- :func:`softmax_cross_entropy` (and :func:`softmax`): one class per sample;
- :func:`sigmoid_cross_entropy` (and :func:`sigmoid`): independent binary labels
  (multilabel classification);
- :func:`squared_error` and :func:`huber`: regression.

Every loss follows scikit-learn's MLP convention: the per-sample loss is summed over
the outputs (classes, labels or targets) and averaged over the samples with the sample
weights, ``loss = sum_i w_i * sum_k l_ik / sum_i w_i``, and the gradient is the exact
gradient of that value. When the weights sum to 0 there is nothing to learn from the
batch: the loss and the gradient are 0.

No ``exp`` overflows and no ``log`` sees 0, whatever the magnitude of the raw outputs:
the softmax goes through a max-shifted log-sum-exp, the sigmoid's log-likelihood
through ``logaddexp``. The sums of the loss are taken in float64; float32 outputs give
float32 probabilities and gradients. The per-row loop of the softmax cross-entropy is
compiled (``skconv._kernels.loss``); the others are a few whole-array numpy operations.
"""

import numpy as np
from scipy.special import expit

from .._kernels import loss as _kernel

__all__ = ["huber", "sigmoid", "sigmoid_cross_entropy", "softmax",
           "softmax_cross_entropy", "squared_error"]


def _check_logits(logits):
    logits = np.asarray(logits)
    if logits.dtype not in (np.float32, np.float64):
        logits = logits.astype(np.float64)
    if logits.ndim != 2:
        raise ValueError(
            f"logits must have shape (n_samples, n_classes), got shape {logits.shape}"
        )
    return logits


def softmax(logits):
    """Row-wise softmax, computed stably (for ``predict_proba``).

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes), float32 or float64

    Returns
    -------
    proba : ndarray of shape (n_samples, n_classes), dtype of ``logits``
        Rows sum to 1 (up to rounding); entries lie in [0, 1].
    """
    logits = _check_logits(logits)
    proba = logits - logits.max(axis=1, keepdims=True)
    np.exp(proba, out=proba)
    proba /= proba.sum(axis=1, keepdims=True)
    return proba


def softmax_cross_entropy(logits, y_index, sample_weight=None):
    """Mean softmax cross-entropy and its gradient with respect to the logits.

    ``loss = sum_i w_i * l_i / sum_i w_i`` with ``l_i = -log(softmax(logits)[i, y_i])``
    (``w_i = 1`` without weights, i.e. the plain mean), and
    ``grad_logits[i] = w_i * (softmax(logits)[i] - onehot(y_i)) / sum_j w_j``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_classes), float32 or float64
        Raw scores of the output layer.
    y_index : array-like of int of shape (n_samples,)
        True class of each sample, in ``[0, n_classes)``.
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights; a weight of 2 counts like a duplicated sample. When they
        sum to 0 there is nothing to learn from the batch: the loss and gradient are 0.

    Returns
    -------
    loss : float
        The (weighted) mean loss; the per-sample losses are summed in float64.
    grad_logits : ndarray of shape (n_samples, n_classes), dtype of ``logits``
        Exact gradient of ``loss`` with respect to ``logits``.

    Raises
    ------
    ValueError
        When shapes disagree or a class index is out of range.
    """
    logits = np.ascontiguousarray(_check_logits(logits))
    n_samples, n_classes = logits.shape
    y_index = np.asarray(y_index)
    if y_index.shape != (n_samples,):
        raise ValueError(
            f"y_index must have shape ({n_samples},) to match logits with shape "
            f"{logits.shape}, got shape {y_index.shape}"
        )
    if n_samples and y_index.dtype.kind not in "iu":
        raise ValueError(f"y_index must hold integers, got dtype {y_index.dtype}")
    if n_samples and n_classes == 0:
        raise ValueError(f"logits must have at least one class, got shape {logits.shape}")
    total_weight = float(n_samples)
    if sample_weight is not None:
        sample_weight = np.ascontiguousarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (n_samples,):
            raise ValueError(
                f"sample_weight must have shape ({n_samples},) to match logits with "
                f"shape {logits.shape}, got shape {sample_weight.shape}"
            )
        total_weight = float(sample_weight.sum())

    grad = np.empty_like(logits)
    if y_index.dtype != np.intp and n_samples:
        # Checked before the cast, which could wrap a large index into range.
        if y_index.min() < 0 or y_index.max() >= n_classes:
            bad_row = int(np.flatnonzero((y_index < 0) | (y_index >= n_classes))[0])
            _raise_bad_class(y_index, bad_row, logits.shape)
        y_index = y_index.astype(np.intp)
    loss_sum, bad_row = _kernel.cross_entropy_rows(
        logits, np.ascontiguousarray(y_index, dtype=np.intp), sample_weight,
        1.0 / total_weight if total_weight else 0.0, grad)
    if bad_row >= 0:
        _raise_bad_class(y_index, bad_row, logits.shape)
    if total_weight == 0:
        # Nothing to learn from the batch (also when n_samples is 0).
        grad[...] = 0
        return 0.0, grad
    return loss_sum / total_weight, grad


def _raise_bad_class(y_index, row, logits_shape):
    raise ValueError(
        f"y_index must lie in [0, {logits_shape[1]}) for logits with shape "
        f"{logits_shape}, got {y_index[row]} at row {row}"
    )


# -------------------------------------------------------------------------------------
# Element-wise losses: independent labels and regression
# -------------------------------------------------------------------------------------
def _check_elementwise(outputs, y, sample_weight, names):
    """Validated ``(outputs, y as float64, sample_weight or None, total weight)``.

    ``outputs`` is 2-D float32/float64 and ``y`` has its shape (1-D ``y`` is taken as
    one column when ``outputs`` has one column).
    """
    what, target = names
    outputs = np.asarray(outputs)
    if outputs.dtype not in (np.float32, np.float64):
        outputs = outputs.astype(np.float64)
    if outputs.ndim != 2:
        raise ValueError(f"{what} must have shape (n_samples, n_outputs), got shape "
                         f"{outputs.shape}")
    y = np.asarray(y, dtype=np.float64)
    if y.ndim == 1 and outputs.shape[1] == 1:
        y = y.reshape(-1, 1)
    if y.shape != outputs.shape:
        raise ValueError(f"{target} must have the shape of {what} {outputs.shape}, got "
                         f"shape {y.shape}")
    n_samples = outputs.shape[0]
    total_weight = float(n_samples)
    if sample_weight is not None:
        sample_weight = np.asarray(sample_weight, dtype=np.float64)
        if sample_weight.shape != (n_samples,):
            raise ValueError(
                f"sample_weight must have shape ({n_samples},) to match {what} with "
                f"shape {outputs.shape}, got shape {sample_weight.shape}")
        total_weight = float(sample_weight.sum())
    return outputs, y, sample_weight, total_weight


def _weighted_mean(per_element, grad_per_element, sample_weight, total_weight, dtype):
    """``sum_i w_i sum_k l_ik / W`` and ``w_i * dl_ik / W`` in ``dtype``.

    ``per_element`` and ``grad_per_element`` are float64 arrays of shape (n, k); the
    latter is overwritten. The sums are numpy's (pairwise, in an order fixed by the
    shape), so the loss does not depend on where the arrays sit in memory.
    """
    if total_weight == 0:
        return 0.0, np.zeros(grad_per_element.shape, dtype=dtype)
    per_sample = per_element.sum(axis=1)
    if sample_weight is None:
        loss = float(per_sample.sum()) / total_weight
        grad_per_element *= 1.0 / total_weight
    else:
        loss = float((per_sample * sample_weight).sum()) / total_weight
        grad_per_element *= (sample_weight / total_weight)[:, None]
    return loss, grad_per_element.astype(dtype, copy=False)


def squared_error(pred, y, sample_weight=None):
    """Half squared error, summed over the targets and averaged over the samples.

    ``loss = sum_i w_i * sum_k 0.5 * (pred_ik - y_ik)^2 / sum_i w_i`` and
    ``grad[i, k] = w_i * (pred_ik - y_ik) / sum_j w_j``.

    This is the objective ``MLPRegressor`` descends: its gradient is exactly this one
    (``(pred - y) * w / sum(w)``, summed over the targets). For one target the value
    is also the ``loss_`` it reports; for several, ``MLPRegressor`` reports the mean
    over the targets instead of the sum (its ``squared_loss``), which is not the
    function its gradient belongs to, so this op keeps the sum.

    Parameters
    ----------
    pred : ndarray of shape (n_samples, n_targets), float32 or float64
        The network's (linear) outputs.
    y : array-like of shape (n_samples, n_targets)
        True values (1-D when ``n_targets`` is 1).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights; a weight of 2 counts like a duplicated sample.

    Returns
    -------
    loss : float
        Computed in float64.
    grad : ndarray of shape (n_samples, n_targets), dtype of ``pred``
        Exact gradient of ``loss`` with respect to ``pred``.
    """
    pred, y, sample_weight, total = _check_elementwise(pred, y, sample_weight,
                                                       ("pred", "y"))
    residual = pred.astype(np.float64) - y  # exact for float32 pred
    return _weighted_mean(0.5 * residual * residual, residual, sample_weight, total,
                          pred.dtype)


def huber(pred, y, sample_weight=None, delta=1.0):
    """Huber loss: squared error near the target, absolute error beyond ``delta``.

    Per value, with ``r = pred - y``: ``0.5 * r^2`` when ``|r| <= delta``, else
    ``delta * (|r| - 0.5 * delta)`` (the two pieces meet with the same slope), summed
    over the targets and averaged over the samples as in :func:`squared_error`, which
    it equals when every ``|r| <= delta``. The gradient is ``w_i * clip(r, -delta,
    delta) / sum_j w_j``: an outlier pulls with at most ``delta``.

    Parameters
    ----------
    pred : ndarray of shape (n_samples, n_targets), float32 or float64
    y : array-like of shape (n_samples, n_targets)
    sample_weight : array-like of shape (n_samples,), default=None
    delta : float, default=1.0
        Where the loss turns from quadratic to linear, in the units of ``y``.

    Returns
    -------
    loss : float
    grad : ndarray of shape (n_samples, n_targets), dtype of ``pred``
    """
    delta = float(delta)
    if not delta > 0:
        raise ValueError(f"delta must be positive, got {delta!r}")
    pred, y, sample_weight, total = _check_elementwise(pred, y, sample_weight,
                                                       ("pred", "y"))
    residual = pred.astype(np.float64) - y
    size = np.abs(residual)
    per_element = np.where(size <= delta, 0.5 * residual * residual,
                           delta * (size - 0.5 * delta))
    np.clip(residual, -delta, delta, out=residual)
    return _weighted_mean(per_element, residual, sample_weight, total, pred.dtype)


def sigmoid(logits):
    """Element-wise logistic function ``1 / (1 + exp(-z))``, computed stably.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_labels), float32 or float64

    Returns
    -------
    proba : ndarray of shape (n_samples, n_labels), dtype of ``logits``
        Each label's probability, in [0, 1].
    """
    logits = _check_logits(logits)
    return expit(logits)


def sigmoid_cross_entropy(logits, y, sample_weight=None):
    """Binary cross-entropy of independent sigmoid outputs (multilabel targets).

    Per label, with ``p = sigmoid(z)``: ``-y log p - (1 - y) log(1 - p)``, computed as
    ``y * logaddexp(0, -z) + (1 - y) * logaddexp(0, z)`` with a term left out where
    its factor is 0 (no overflow, no ``log 0`` and no ``0 * inf`` for any ``z``: a
    label surely right, even at an infinite logit, costs 0), summed
    over the labels and averaged over the samples: ``MLPClassifier``'s multilabel
    loss (its ``binary_log_loss``), without its clipping of ``p`` to ``[eps, 1 -
    eps]``. ``grad[i, k] = w_i * (sigmoid(z_ik) - y_ik) / sum_j w_j``.

    Parameters
    ----------
    logits : ndarray of shape (n_samples, n_labels), float32 or float64
        Raw scores of the output layer.
    y : array-like of shape (n_samples, n_labels)
        The indicator matrix (0 or 1; values in between are soft labels).
    sample_weight : array-like of shape (n_samples,), default=None
        Non-negative weights.

    Returns
    -------
    loss : float
        Computed in float64.
    grad : ndarray of shape (n_samples, n_labels), dtype of ``logits``
        Exact gradient of ``loss`` with respect to ``logits``.
    """
    logits, y, sample_weight, total = _check_elementwise(logits, y, sample_weight,
                                                         ("logits", "y"))
    z = logits.astype(np.float64)
    per_element = np.multiply(y, np.logaddexp(0.0, -z), out=np.zeros_like(z),
                              where=y != 0)
    per_element += np.multiply(1.0 - y, np.logaddexp(0.0, z), out=np.zeros_like(z),
                               where=y != 1)
    grad = expit(z) - y
    return _weighted_mean(per_element, grad, sample_weight, total, logits.dtype)
