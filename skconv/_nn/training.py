"""One epoch of minibatch training: the loop the estimators call once per epoch.

:func:`run_epoch` owns the thread policy of a training step: it holds one
single-threaded BLAS limit for the whole epoch (the kernels call BLAS from inside
their own parallel regions, and the ops' own limits then nest at the cost of a lock),
gathers each minibatch on the threads, and runs forward, loss, L2 term, backward and
the optimizer step. Two optional hooks frame each minibatch, so that a caller can
report progress without the loop knowing who listens.
"""

import math

import numpy as np

from .._ops.threads import single_threaded_blas
from .network import l2_factors, l2_penalty

__all__ = ["NonFiniteTraining", "VanishingBatchWeight", "run_epoch"]

_SMALLEST_NORMAL = float(np.finfo(np.float64).smallest_normal)


class NonFiniteTraining(ArithmeticError):
    """The loss or the weights became non-finite during an epoch.

    Attributes
    ----------
    what : str
        Where, in words (``"loss became non-finite (nan) in minibatch 3 of"``).
    cause : str or None
        Why, in words, when the engine knows it; None when the loss or the weights
        overflowed (the optimization diverged).
    """

    def __init__(self, what, cause=None):
        super().__init__(what if cause is None else f"{what}: {cause}")
        self.what = what
        self.cause = cause


class VanishingBatchWeight(NonFiniteTraining):
    """A minibatch's total sample weight is positive but too small to divide by.

    The loss, its gradient and the L2 term are divided by the total: below float64's
    smallest normal number, ``1 / total`` overflows (or keeps no precision), so the
    training would become non-finite for a reason that is not divergence. Raised
    before the minibatch is trained on.

    Attributes
    ----------
    total_weight : float
    """

    def __init__(self, what, total_weight):
        super().__init__(
            what,
            cause=f"its total sample weight is {total_weight:.3g}, below float64's "
                  f"smallest normal number, so dividing by it overflows")
        self.total_weight = total_weight


def run_epoch(network, optimizer, X, targets, sample_weight, order, *, batch_size,
              alpha, loss, n_threads, minibatch_begin=None, minibatch_end=None):
    """One pass over ``X`` in the minibatches of ``order``.

    Parameters
    ----------
    network : Network
    optimizer : Adam or SGD
        Holding ``network.params``; told the epoch's number of minibatches first
        (``optimizer.begin_epoch``, for the cosine schedule).
    X : ndarray of shape (n_samples, *network.input_shape)
    targets : ndarray of shape (n_samples, ...)
        What ``loss`` takes for each sample.
    sample_weight : ndarray of shape (n_samples,) or None
    order : ndarray of int of shape (n_samples,)
        The samples in the order of the epoch (shuffled or not).
    batch_size : int
    alpha : float
        L2 strength, scaled by each minibatch's total weight (scikit-learn's MLP rule).
    loss : callable
        ``loss(logits, targets[idx], sample_weight[idx] or None) -> (value, grad)``.
    n_threads : int
    minibatch_begin, minibatch_end : callable or None
        ``f(n_batch)``, called before and after each minibatch (``n_batch`` counts
        from 0; a minibatch whose weights are all zero is skipped between the two),
        e.g. to report progress. What they return is ignored; the end of a minibatch
        that raises is not called.

    Returns
    -------
    mean_loss : float
        Loss plus L2 term of each minibatch, averaged with the minibatches' total
        weights (nan when every weight is zero).

    Raises
    ------
    NonFiniteTraining
        When a minibatch's loss or, after the last update, a weight is not finite.
    VanishingBatchWeight
        A :class:`NonFiniteTraining`: when a minibatch's total sample weight is
        positive but below float64's smallest normal number.
    """
    accumulated_loss = 0.0
    accumulated_weight = 0.0
    alpha = float(alpha)
    optimizer.begin_epoch(math.ceil(X.shape[0] / batch_size))
    with single_threaded_blas():
        for n_batch, start in enumerate(range(0, X.shape[0], batch_size)):
            if minibatch_begin is not None:
                minibatch_begin(n_batch)
            idx = order[start:start + batch_size]
            sw_batch = None if sample_weight is None else sample_weight[idx]
            batch_weight = (
                float(len(idx)) if sw_batch is None else float(sw_batch.sum()))
            # A minibatch whose weights are all zero has nothing to learn from.
            if batch_weight != 0:
                value = _train_minibatch(network, optimizer, X, targets, idx, sw_batch,
                                         batch_weight, n_batch, alpha, loss, n_threads)
                accumulated_loss += value * batch_weight
                accumulated_weight += batch_weight
            if minibatch_end is not None:
                minibatch_end(n_batch)
    # The last update may overflow too (the next loss would show it, but there may be
    # no next minibatch).
    if not all(np.isfinite(p).all() for p in network.params):
        raise NonFiniteTraining("weights became non-finite in")
    return accumulated_loss / accumulated_weight if accumulated_weight else math.nan


def _train_minibatch(network, optimizer, X, targets, idx, sw_batch, batch_weight,
                     n_batch, alpha, loss, n_threads):
    """Forward, loss, L2 term, backward and update on the rows ``idx`` of ``X``;
    returns the minibatch's loss plus L2 term."""
    if batch_weight < _SMALLEST_NORMAL:
        raise VanishingBatchWeight(f"minibatch {n_batch + 1} of", batch_weight)
    # The network gathers X[idx] on its threads.
    logits = network.forward(X, n_threads, training=True, rows=idx, sample_weight=sw_batch)
    value, grad = loss(logits, targets[idx], sw_batch)
    value += l2_penalty(network, alpha, batch_weight, n_threads)
    if not math.isfinite(value):
        raise NonFiniteTraining(f"loss became non-finite ({value}) in minibatch "
                                f"{n_batch + 1} of")
    network.backward(grad, n_threads)
    optimizer.update(network.grads, l2_factors(network, alpha, batch_weight), n_threads)
    return value
