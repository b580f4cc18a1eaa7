"""Batch normalisation kernels: per-channel statistics over the batch and spatial axes.

Layout ``(N, C, S)``: ``S`` is the product of the spatial axes (1 after a dense layer).
Every channel is reduced by one thread, its values added in one fixed order (sample
by sample, cell by cell) into float64 accumulators, so the results are bitwise the
same for any thread count. Shapes are trusted: ``skconv._ops.norm`` checks them.

With row weights ``w`` (one per sample; each of a sample's ``S`` cells weighs ``w[n]``)
the statistics are weighted: ``mean = sum(w x) / W`` and ``var = sum(w (x - mean)^2) /
W`` with the effective count ``W = sum(w) * S``, a row of weight 0 being skipped in the
sums (it is still normalised). Without weights (None) the unweighted loops run, so
their results are exactly those of the kernels before weights existed.
"""

from cython cimport floating
from cython.parallel cimport prange
from libc.math cimport sqrt


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
        Py_ssize_t c, n, s
        double total, row_total, deviation
        double m, scale
        floating g, b, h
        bint weighted = weights is not None
    if not weighted:
        count = <double> (n_samples * n_cells)
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        total = 0
        if weighted:
            for n in range(n_samples):
                if weights[n] != 0:
                    row_total = 0
                    for s in range(n_cells):
                        row_total = row_total + x[n, c, s]
                    total = total + weights[n] * row_total
        else:
            for n in range(n_samples):
                for s in range(n_cells):
                    total = total + x[n, c, s]
        m = total / count
        total = 0
        if weighted:
            for n in range(n_samples):
                if weights[n] != 0:
                    row_total = 0
                    for s in range(n_cells):
                        deviation = x[n, c, s] - m
                        row_total = row_total + deviation * deviation
                    total = total + weights[n] * row_total
        else:
            for n in range(n_samples):
                for s in range(n_cells):
                    deviation = x[n, c, s] - m
                    total = total + deviation * deviation
        mean[c] = m
        var[c] = total / count
        scale = 1.0 / sqrt(total / count + eps)
        inv_std[c] = scale
        g = gamma[c]
        b = beta[c]
        for n in range(n_samples):
            for s in range(n_cells):
                h = <floating> ((x[n, c, s] - m) * scale)
                x_hat[n, c, s] = h
                y[n, c, s] = g * h + b


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
        Py_ssize_t c, n, s
        double sum_gy, sum_gy_xhat, k, share
        bint want_grad_x = grad_x is not None
        bint weighted = weights is not None
    if not weighted:
        count = <double> (n_samples * n_cells)
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        sum_gy = 0
        sum_gy_xhat = 0
        for n in range(n_samples):
            for s in range(n_cells):
                sum_gy = sum_gy + grad_y[n, c, s]
                sum_gy_xhat = sum_gy_xhat + grad_y[n, c, s] * x_hat[n, c, s]
        grad_beta[c] = <floating> sum_gy
        grad_gamma[c] = <floating> sum_gy_xhat
        if want_grad_x and weighted:
            k = gamma[c] * inv_std[c]
            for n in range(n_samples):
                share = weights[n] / count
                for s in range(n_cells):
                    grad_x[n, c, s] = <floating> (
                        k * (grad_y[n, c, s]
                             - share * (sum_gy + x_hat[n, c, s] * sum_gy_xhat)))
        elif want_grad_x:
            k = gamma[c] * inv_std[c] / count
            for n in range(n_samples):
                for s in range(n_cells):
                    grad_x[n, c, s] = <floating> (
                        k * (count * grad_y[n, c, s] - sum_gy
                             - x_hat[n, c, s] * sum_gy_xhat))


def forward_infer(const floating[:, :, ::1] x,      # IN  (N, C, S)
                  const floating[::1] scale,        # IN  (C,) gamma / sqrt(var + eps)
                  const floating[::1] shift,        # IN  (C,) beta - mean * scale
                  floating[:, :, ::1] y,            # OUT (N, C, S)
                  int n_threads):
    """``y = x * scale + shift`` per channel (the running statistics folded into one
    affine map per channel); each (sample, channel) plane is one task."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1], n_cells = x.shape[2]
        Py_ssize_t plane, n, c, s
        floating a, b
    for plane in prange(n_samples * n_channels, nogil=True, schedule="static",
                        num_threads=n_threads):
        n = plane // n_channels
        c = plane % n_channels
        a = scale[c]
        b = shift[c]
        for s in range(n_cells):
            y[n, c, s] = x[n, c, s] * a + b
