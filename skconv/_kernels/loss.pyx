"""Softmax cross-entropy of a minibatch of logits, loss and gradient in one pass.

Kernel only: ``skconv._ops.loss.softmax_cross_entropy`` checks the arguments and keeps the
semantics (documented there). The numpy version it replaces made about fifteen array
operations on a (64, 10) array, each costing more in Python than in arithmetic, on
the serial part of every training step.

Each row is computed in float64 whatever the logits' dtype (shifted by its maximum,
so no ``exp`` overflows and the log-sum is at least ``log 1``), and only the
gradient is rounded to the logits' dtype.
"""

from cython cimport floating
from libc.math cimport exp, log
from libc.stdlib cimport free, malloc


def cross_entropy_rows(const floating[:, ::1] logits, const Py_ssize_t[::1] y,
                       const double[::1] row_factor, double grad_scale,
                       floating[:, ::1] grad):
    """Summed loss and gradient of the softmax cross-entropy, row by row.

    For row ``i`` with ``l_i = log(sum_j exp(z_ij)) - z_i,y_i`` (computed shifted) and
    ``c_i = row_factor[i]`` (1 when ``row_factor`` is None):
    ``grad[i, j] = c_i * grad_scale * (softmax(z_i)_j - [j == y_i])``.

    Parameters
    ----------
    logits : ndarray of shape (n, k)
    y : ndarray of intp of shape (n,)
        True classes; each is checked against ``[0, k)``.
    row_factor : ndarray of float64 of shape (n,) or None
        Per-row weights.
    grad_scale : float
        Common factor of the gradient (one over the total weight).
    grad : ndarray of shape (n, k), logits' dtype
        Written whole. Shapes are trusted.

    Returns
    -------
    loss_sum : float
        ``sum_i c_i * l_i``, summed in row order.
    bad_row : int
        -1, or the first row whose class is out of range (its gradient and loss
        are then not computed).
    """
    cdef:
        Py_ssize_t n = logits.shape[0], k = logits.shape[1], i, j, target
        Py_ssize_t bad_row = -1
        bint weighted = row_factor is not None
        double top, total, log_norm, factor, loss_sum = 0
        double *e
    if n == 0:
        return 0.0, -1
    e = <double *> malloc(k * sizeof(double))
    if e == NULL:
        raise MemoryError()
    with nogil:
        for i in range(n):
            target = y[i]
            if target < 0 or target >= k:
                bad_row = i
                break
            # The maximum (a NaN never wins the comparison, but its own exp below
            # makes the row NaN, as it should).
            top = logits[i, 0]
            for j in range(1, k):
                if logits[i, j] > top:
                    top = logits[i, j]
            total = 0
            for j in range(k):
                e[j] = exp(<double> logits[i, j] - top)
                total += e[j]
            log_norm = log(total)
            factor = row_factor[i] if weighted else 1.0
            loss_sum += factor * (log_norm - (<double> logits[i, target] - top))
            factor = factor * grad_scale
            for j in range(k):
                grad[i, j] = <floating> (factor * (e[j] / total - (j == target)))
    free(e)
    return loss_sum, bad_row
