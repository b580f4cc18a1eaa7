"""Ops of the training loop's passes over whole arrays: the fused Adam step, the L2 sum
and the minibatch gather (kernels in ``skconv._kernels.update``).

The thread count of each pass is capped by the values it visits
(:func:`skconv._ops.threads.threads_for_cells`); none of the results depends on it.
"""

import numpy as np

from .._kernels import update as _kernel
from .threads import threads_for_cells

__all__ = ["adam_step", "gather_rows", "sum_of_squares"]


def adam_step(params, ms, vs, grads, l2, *, beta_1, beta_2, learning_rate, epsilon,
              n_threads=1):
    """One Adam step in place on several parameter arrays, from ``grad + l2 * param``.

    Parameters
    ----------
    params, ms, vs, grads : list of ndarray
        Matching one to one: parameters, first and second moments, gradients.
    l2 : list of float
        One L2 factor per parameter.
    beta_1, beta_2, learning_rate, epsilon : float
        ``learning_rate`` is the bias-corrected rate of this step.
    n_threads : int, default=1

    Returns
    -------
    bool
        False, with nothing changed, unless every array is a C-contiguous float32 or
        float64 array of one dtype (the caller then takes its numpy path).
    """
    total = sum(np.size(p) for p in params)
    return _kernel.adam_step_arrays(list(params), list(ms), list(vs), list(grads),
                                    list(l2), beta_1, beta_2, learning_rate, epsilon,
                                    threads_for_cells(n_threads, total))


def sum_of_squares(arrays, n_threads=1):
    """Sum of the squares of every value of ``arrays``, accumulated in float64.

    The order of the additions depends on the sizes only (see the kernel), never on
    ``n_threads``.

    Parameters
    ----------
    arrays : list of ndarray
        C-contiguous float32 or float64 arrays.
    n_threads : int, default=1

    Returns
    -------
    float
    """
    total = sum(np.size(a) for a in arrays)
    return _kernel.sum_of_squares_arrays(list(arrays), threads_for_cells(n_threads, total))


def gather_rows(source, rows, out, n_threads=1):
    """``out[i] = source[rows[i]]``, the rows shared out over the threads as the
    convolution kernels share out a batch's samples (each thread copies the samples
    it will compute on).

    Parameters
    ----------
    source : ndarray of shape (n_samples, ...), C-contiguous
    rows : ndarray of intp of shape (n_rows,)
        Every entry in ``[0, n_samples)`` (IndexError otherwise).
    out : ndarray of shape (n_rows, ...)
        C-contiguous, writeable, ``source``'s dtype.
    n_threads : int, default=1
    """
    _kernel.gather_rows(source, rows, out, n_threads)
