"""Loss ops: softmax and softmax cross-entropy on a classifier's raw scores (logits).

Everything goes through a max-shifted log-sum-exp, so no ``exp`` ever overflows and no
``log`` ever sees 0, whatever the magnitude of the logits. float32 logits give float32
probabilities and gradients. The per-row loop of the cross-entropy is compiled
(``skconv._kernels.loss``).
"""

import numpy as np

from .._kernels import loss as _kernel

__all__ = ["softmax", "softmax_cross_entropy"]


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
