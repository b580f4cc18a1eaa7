"""Central differences for the gradient tests (one loop for every test module)."""

import numpy as np


def central_differences(loss, array, h, indices=None):
    """``(loss() - loss()) / (2 h)`` around ``array[idx] +- h`` for each index.

    ``array`` is perturbed in place, one entry at a time, and restored; ``loss`` takes
    no argument and reads it.

    Parameters
    ----------
    loss : callable
        Returns the scalar loss for the current content of ``array``.
    array : ndarray
        Perturbed in place (restored afterwards).
    h : float
        Step.
    indices : sequence of index tuples, default=None
        Where to differentiate; None: every entry.

    Returns
    -------
    ndarray of float64
        Of ``array``'s shape when ``indices`` is None, else one value per index.
    """
    if indices is None:
        return central_differences(loss, array, h,
                                   list(np.ndindex(array.shape))).reshape(array.shape)
    numeric = np.empty(len(indices))
    for k, idx in enumerate(indices):
        old = array[idx]
        array[idx] = old + h
        plus = loss()
        array[idx] = old - h
        minus = loss()
        array[idx] = old
        numeric[k] = (plus - minus) / (2 * h)
    return numeric
