"""Batch normalisation kernels: per-channel statistics over the batch and spatial axes.

Layout ``(N, C, S)``: ``S`` is the product of the spatial axes (1 after a dense layer).
Every channel is reduced by one thread in one fixed order: each sample's row of ``S``
cells is summed in float64 lanes (``sums.pxd``), and the rows' sums are added sample by
sample. So the results are bitwise the same for any thread count. Shapes are trusted:
``skconv._ops.norm`` checks them.

With row weights ``w`` (one per sample; each of a sample's ``S`` cells weighs ``w[n]``)
the statistics are weighted: ``mean = sum(w x) / W`` and ``var = sum(w (x - mean)^2) /
W`` with the effective count ``W = sum(w) * S``, a row of weight 0 being skipped in the
sums (it is still normalised). Without weights (None) the rows' sums are added as
they are.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt

from .sums cimport (SumAndDot, lane_sum, lane_sum_and_dot,
                    lane_sum_squared_deviations)


# The elementwise passes, one row of a (sample, channel) plane each, on plain pointers:
# written on the memoryviews, every store could alias their shape and stride fields,
# which then reload at every cell and keep the loop from vectorising.
cdef inline void _normalize_row(const floating *x, floating *x_hat, floating *y,
                                Py_ssize_t n_cells, double center, double scale,
                                floating g, floating b) noexcept nogil:
    """``x_hat = (x - center) * scale`` (rounded to floating) and ``y = g * x_hat + b``."""
    cdef Py_ssize_t s
    cdef floating h
    for s in range(n_cells):
        h = <floating> ((x[s] - center) * scale)
        x_hat[s] = h
        y[s] = g * h + b


cdef inline void _input_grad_row(const floating *grad_y, const floating *x_hat,
                                 floating *grad_x, Py_ssize_t n_cells, double k,
                                 double a, double b, double c) noexcept nogil:
    """``grad_x = k * (a * grad_y - b - x_hat * c)``, in double, rounded once."""
    cdef Py_ssize_t s
    for s in range(n_cells):
        grad_x[s] = <floating> (k * (a * grad_y[s] - b - x_hat[s] * c))


cdef inline void _affine_row(const floating *x, floating *y, Py_ssize_t n_cells,
                             floating a, floating b) noexcept nogil:
    """``y = x * a + b``."""
    cdef Py_ssize_t s
    for s in range(n_cells):
        y[s] = x[s] * a + b


def forward_train(const floating[:, :, ::1] x,      # IN  (N, C, S)
                  const floating[::1] gamma,        # IN  (C,)
                  const floating[::1] beta,         # IN  (C,)
                  double eps,
                  const double[::1] weights,        # IN  (N,) row weights, or None
                  double count,                     # IN  sum(weights) * S (if weights)
                  floating[:, :, ::1] y,            # OUT (N, C, S)
                  floating[:, :, ::1] x_hat,        # OUT (N, C, S) normalised x
                  double[::1] mean,                 # OUT (C,)
                  double[::1] var,                  # OUT (C,) biased variance
                  double[::1] inv_std,              # OUT (C,) 1 / sqrt(var + eps)
                  int n_threads):
    """Normalise with the batch's (weighted) statistics: ``x_hat = (x - mean) *
    inv_std`` and ``y = gamma * x_hat + beta`` per channel (two passes: the mean, then
    the squared deviations, so the variance never cancels). With weights, each row's
    cells are summed first, then the row's sum is weighted."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1], n_cells = x.shape[2]
        Py_ssize_t c, n
        double total
        double m, scale
        floating g, b
        bint weighted = weights is not None
    if not weighted:
        count = <double> (n_samples * n_cells)
    if n_cells == 0:  # no cells: each row's sums are 0 (and its address is out of range)
        n_samples = 0
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        total = 0
        for n in range(n_samples):
            if not weighted:
                total = total + lane_sum(&x[n, c, 0], n_cells)
            elif weights[n] != 0:
                total = total + weights[n] * lane_sum(&x[n, c, 0], n_cells)
        m = total / count
        total = 0
        for n in range(n_samples):
            if not weighted:
                total = total + lane_sum_squared_deviations(&x[n, c, 0], n_cells, m)
            elif weights[n] != 0:
                total = total + weights[n] * lane_sum_squared_deviations(
                    &x[n, c, 0], n_cells, m)
        mean[c] = m
        var[c] = total / count
        scale = 1.0 / sqrt(total / count + eps)
        inv_std[c] = scale
        g = gamma[c]
        b = beta[c]
        for n in range(n_samples):
            _normalize_row(&x[n, c, 0], &x_hat[n, c, 0], &y[n, c, 0], n_cells, m, scale,
                           g, b)


def backward(const floating[:, :, ::1] grad_y,   # IN  (N, C, S)
             const floating[:, :, ::1] x_hat,    # IN  (N, C, S) from forward_train
             const floating[::1] gamma,          # IN  (C,)
             const double[::1] inv_std,          # IN  (C,) from forward_train
             const double[::1] weights,          # IN  (N,) forward_train's, or None
             double count,                       # IN  forward_train's (if weights)
             floating[:, :, ::1] grad_x,         # OUT (N, C, S) or None
             floating[::1] grad_gamma,           # OUT (C,)
             floating[::1] grad_beta,            # OUT (C,)
             int n_threads):
    """Gradients of ``forward_train``: ``grad_beta = sum(grad_y)``, ``grad_gamma =
    sum(grad_y * x_hat)`` per channel, and ``grad_x = gamma * inv_std / M * (M *
    grad_y - grad_beta - x_hat * grad_gamma)`` with ``M = N * S``; with weights
    (the mean and the variance then depend on a row in proportion to its weight)
    ``grad_x[n] = gamma * inv_std * (grad_y[n] - w[n] / W * (grad_beta + x_hat[n] *
    grad_gamma))``."""
    cdef:
        Py_ssize_t n_samples = grad_y.shape[0], n_channels = grad_y.shape[1]
        Py_ssize_t n_cells = grad_y.shape[2]
        Py_ssize_t c, n
        double sum_gy, sum_gy_xhat, k, share
        SumAndDot row
        bint want_grad_x = grad_x is not None
        bint weighted = weights is not None
    if not weighted:
        count = <double> (n_samples * n_cells)
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        sum_gy = 0
        sum_gy_xhat = 0
        for n in range(n_samples if n_cells > 0 else 0):  # see forward_train
            row = lane_sum_and_dot(&grad_y[n, c, 0], &x_hat[n, c, 0], n_cells)
            sum_gy = sum_gy + row.sum
            sum_gy_xhat = sum_gy_xhat + row.dot
        grad_beta[c] = <floating> sum_gy
        grad_gamma[c] = <floating> sum_gy_xhat
        if want_grad_x and weighted:
            k = gamma[c] * inv_std[c]
            for n in range(n_samples if n_cells > 0 else 0):
                share = weights[n] / count
                _input_grad_row(&grad_y[n, c, 0], &x_hat[n, c, 0], &grad_x[n, c, 0],
                                n_cells, k, 1.0, share * sum_gy, share * sum_gy_xhat)
        elif want_grad_x:
            k = gamma[c] * inv_std[c] / count
            for n in range(n_samples if n_cells > 0 else 0):
                _input_grad_row(&grad_y[n, c, 0], &x_hat[n, c, 0], &grad_x[n, c, 0],
                                n_cells, k, count, sum_gy, sum_gy_xhat)


def forward_infer(const floating[:, :, ::1] x,      # IN  (N, C, S)
                  const floating[::1] scale,        # IN  (C,) gamma / sqrt(var + eps)
                  const floating[::1] shift,        # IN  (C,) beta - mean * scale
                  floating[:, :, ::1] y,            # OUT (N, C, S)
                  int n_threads):
    """``y = x * scale + shift`` per channel (the running statistics folded into one
    affine map per channel); each (sample, channel) plane is one task."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1], n_cells = x.shape[2]
        Py_ssize_t plane, n, c
    if n_cells == 0:  # nothing to write (and the rows' addresses are out of range)
        return
    for plane in prange(n_samples * n_channels, nogil=True, schedule="static",
                        num_threads=n_threads):
        n = plane // n_channels
        c = plane % n_channels
        _affine_row(&x[n, c, 0], &y[n, c, 0], n_cells, scale[c], shift[c])
