"""Random draws tied to a sample's content: the same sample gets the same draw.

Training draws (dropout masks, augmentations) are usually made per row of a
minibatch. Then a sample of weight 2 is not the same as the sample twice: the two
copies get two draws, the weighted row one. Here each row's draw comes from a hash of
the row's values (:func:`row_keys`) mixed with a number the caller takes from its
RandomState once per minibatch (:func:`draw_key`), so duplicated rows draw alike and
a weight of 2 is exactly a duplicated sample (scikit-learn's sample-weight
equivalence), while the draws still change from one minibatch to the next, follow
the RandomState and never depend on the thread count or on a row's position.
"""

import numpy as np

from .._kernels import keyed as _kernel
from .threads import effective_n_threads, threads_for_cells

__all__ = ["draw_key", "keyed_uniform", "row_keys"]


def row_keys(x, n_jobs=None):
    """One uint64 key per row of ``x``: a hash of the row's values.

    The values are hashed as float32 bit patterns (float64 rows rounded first), so
    that a float64 network and a float32 one fitted on the same data draw alike.

    Parameters
    ----------
    x : ndarray of shape (N, ...), float32 or float64
    n_jobs : int or None, default=None

    Returns
    -------
    keys : ndarray of uint64 of shape (N,)
        Equal for rows equal in float32.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64) or x.ndim < 1:
        raise TypeError(f"x must be a float32 or float64 array with a batch axis, got "
                        f"{x.dtype} of shape {x.shape}")
    rows = np.ascontiguousarray(x).reshape(x.shape[0], int(np.prod(x.shape[1:])))
    keys = np.empty(x.shape[0], dtype=np.uint64)
    if rows.shape[0]:
        _kernel.row_keys(rows, keys, threads_for_cells(effective_n_threads(n_jobs),
                                                       rows.size))
    return keys


def draw_key(random_state):
    """One uint64 from ``random_state``: a caller's draw for one minibatch."""
    return np.uint64(np.frombuffer(random_state.bytes(8), dtype=np.uint64)[0])


def keyed_uniform(keys, key, n, n_jobs=None):
    """Uniform numbers in [0, 1), ``n`` per row, from the rows' keys and ``key``.

    Parameters
    ----------
    keys : ndarray of uint64 of shape (N,)
        From :func:`row_keys`.
    key : int or numpy.uint64
        From :func:`draw_key`: changes the draws of every row.
    n : int
        Numbers per row.
    n_jobs : int or None, default=None

    Returns
    -------
    u : ndarray of float64 of shape (N, n)
        Row ``i`` depends only on ``keys[i]``, ``key`` and ``n``:
        ``mix(mix(keys[i] ^ key) + (j + 1) * golden)`` for ``j < n``, its top 53 bits
        as a double (``mix`` is splitmix64's finaliser, ``golden`` 0x9E3779B97F4A7C15).
    """
    keys = np.ascontiguousarray(keys)
    if keys.dtype != np.uint64 or keys.ndim != 1:
        raise TypeError(f"keys must be a 1-D uint64 array, got {keys.dtype} of shape "
                        f"{keys.shape}")
    if int(n) < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.empty((keys.shape[0], int(n)), dtype=np.float64)
    if out.size:
        _kernel.keyed_uniform(keys, int(key), out,
                              threads_for_cells(effective_n_threads(n_jobs), out.size))
    return out
