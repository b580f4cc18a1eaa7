"""Batch normalisation kernels: per-channel statistics over the batch and spatial axes.

Layout ``(N, C, S)``: ``S`` is the product of the spatial axes (1 after a dense layer).
Every channel is reduced by one thread in one fixed order: each sample's row of ``S``
cells is summed in float64 lanes (``sums.pxd``'s ``lane_sum`` and its siblings in
``include/norm/normkernels.h``), and the rows' sums are added sample by sample. So the
results are bitwise the same for any thread count. Shapes are trusted:
``skconv._ops.norm`` checks them.

``forward_pool_train``, ``forward_pool_infer`` and ``backward_pool`` are batch
normalisation fused with the max or min pooling (and relu) after it, for
``skconv._ops.norm.NormPoolBlock`` (see the comment above them).

With row weights ``w`` (one per sample; each of a sample's ``S`` cells weighs ``w[n]``)
the statistics are weighted: ``mean = sum(w x) / W`` and ``var = sum(w (x - mean)^2) /
W`` with the effective count ``W = sum(w) * S``, a row of weight 0 being skipped in the
sums (it is still normalised). Without weights (None) the rows' sums are added as
they are.
"""

from cython cimport floating
from cython.parallel cimport prange, threadid
from libc.math cimport sqrt
from libc.stdint cimport uint8_t
from libc.string cimport memcpy, memset

from .poolkernels cimport (SKC_POOL_LANES, pool2x2_codes_row, skc_relu_backward_d,
                          skc_relu_backward_f)
from .relu cimport relu_run
from .sums cimport lane_sum

import numpy as np


cdef extern from "norm/normkernels.h" nogil:
    ctypedef struct skc_sum_dot:
        double sum
        double dot
    double skc_norm_squared_deviations_f(const float *x, Py_ssize_t n, double center)
    double skc_norm_squared_deviations_d(const double *x, Py_ssize_t n, double center)
    void skc_norm_row_f(const float *x, Py_ssize_t n, double center, double scale,
                        float g, float b, float *x_hat, float *y)
    void skc_norm_row_d(const double *x, Py_ssize_t n, double center, double scale,
                        double g, double b, double *x_hat, double *y)
    void skc_norm_x_hat_row_f(const float *x, Py_ssize_t n, double center, double scale,
                              float *x_hat)
    void skc_norm_x_hat_row_d(const double *x, Py_ssize_t n, double center,
                              double scale, double *x_hat)
    void skc_norm_affine_row_f(const float *x, Py_ssize_t n, float a, float b, float *y)
    void skc_norm_affine_row_d(const double *x, Py_ssize_t n, double a, double b,
                               double *y)
    skc_sum_dot skc_norm_sum_and_dot_f(const float *a, const float *b, Py_ssize_t n)
    skc_sum_dot skc_norm_sum_and_dot_d(const double *a, const double *b, Py_ssize_t n)
    void skc_norm_input_grad_row_f(const float *grad, const float *x_hat, Py_ssize_t n,
                                   double k, double a, double b, double c, float *grad_x)
    void skc_norm_input_grad_row_d(const double *grad, const double *x_hat,
                                   Py_ssize_t n, double k, double a, double b, double c,
                                   double *grad_x)
    void skc_norm_input_grad_zero_row_f(const float *x, Py_ssize_t n, double center,
                                        double scale, double k, double a, double b,
                                        double c, float *grad_x)
    void skc_norm_input_grad_zero_row_d(const double *x, Py_ssize_t n, double center,
                                        double scale, double k, double a, double b,
                                        double c, double *grad_x)
    void skc_norm_unpool2x2_row_f(const float *g, const uint8_t *code, Py_ssize_t n_out,
                                  Py_ssize_t n_vectors, float *r0, Py_ssize_t pitch)
    void skc_norm_unpool2x2_row_d(const double *g, const uint8_t *code, Py_ssize_t n_out,
                                  Py_ssize_t n_vectors, double *r0, Py_ssize_t pitch)
    void skc_norm_input_grad_winners_f(const float *x, const float *g,
                                       const uint8_t *winners, Py_ssize_t out_h,
                                       Py_ssize_t out_w, Py_ssize_t width, int pool_h,
                                       int pool_w, const Py_ssize_t *offsets,
                                       double center, double scale, double k, double a,
                                       double b, double c, float *grad_x)
    void skc_norm_input_grad_winners_d(const double *x, const double *g,
                                       const uint8_t *winners, Py_ssize_t out_h,
                                       Py_ssize_t out_w, Py_ssize_t width, int pool_h,
                                       int pool_w, const Py_ssize_t *offsets,
                                       double center, double scale, double k, double a,
                                       double b, double c, double *grad_x)
    void skc_norm_unpool2_row_f(const float *g, const uint8_t *code, Py_ssize_t n_out,
                                Py_ssize_t n_vectors, float *cells)
    void skc_norm_unpool2_row_d(const double *g, const uint8_t *code, Py_ssize_t n_out,
                                Py_ssize_t n_vectors, double *cells)
    void skc_norm_pool2_codes_row_f(const float *z, Py_ssize_t n_vectors, int want_min,
                                    int relu, float *y, uint8_t *code)
    void skc_norm_pool2_codes_row_d(const double *z, Py_ssize_t n_vectors, int want_min,
                                    int relu, double *y, uint8_t *code)


# The passes over one row of a (sample, channel) plane, in the C kernels of
# include/norm/normkernels.h (vectors of 8 cells on every CPU clone); their scalar
# definitions are in each docstring, and the C code computes exactly those.
cdef inline double _row_squared_deviations(const floating *x, Py_ssize_t n,
                                           double center) noexcept nogil:
    """``sum((x[0:n] - center) ** 2)`` in double, in ``lane_sum``'s lanes."""
    if floating is float:
        return skc_norm_squared_deviations_f(x, n, center)
    else:
        return skc_norm_squared_deviations_d(x, n, center)


cdef inline void _normalize_row(const floating *x, floating *x_hat, floating *y,
                                Py_ssize_t n_cells, double center, double scale,
                                floating g, floating b) noexcept nogil:
    """``x_hat = (x - center) * scale`` (in double, rounded to floating; ``x_hat``
    may be NULL) and ``y = g * x_hat + b``."""
    if floating is float:
        skc_norm_row_f(x, n_cells, center, scale, g, b, x_hat, y)
    else:
        skc_norm_row_d(x, n_cells, center, scale, g, b, x_hat, y)


cdef inline void _x_hat_row(const floating *x, floating *x_hat, Py_ssize_t n_cells,
                            double center, double scale) noexcept nogil:
    """``_normalize_row``'s ``x_hat`` alone."""
    if floating is float:
        skc_norm_x_hat_row_f(x, n_cells, center, scale, x_hat)
    else:
        skc_norm_x_hat_row_d(x, n_cells, center, scale, x_hat)


cdef inline skc_sum_dot _row_sum_and_dot(const floating *a, const floating *b,
                                         Py_ssize_t n) noexcept nogil:
    """``sum(a)`` and ``sum(a * b)`` in double, in ``lane_sum``'s lanes (returned by
    value: in a ``prange`` body the assignment makes the result thread-private)."""
    if floating is float:
        return skc_norm_sum_and_dot_f(a, b, n)
    else:
        return skc_norm_sum_and_dot_d(a, b, n)


cdef inline void _input_grad_row(const floating *grad_y, const floating *x_hat,
                                 floating *grad_x, Py_ssize_t n_cells, double k,
                                 double a, double b, double c) noexcept nogil:
    """``grad_x = k * (a * grad_y - b - x_hat * c)``, in double, rounded once."""
    if floating is float:
        skc_norm_input_grad_row_f(grad_y, x_hat, n_cells, k, a, b, c, grad_x)
    else:
        skc_norm_input_grad_row_d(grad_y, x_hat, n_cells, k, a, b, c, grad_x)


cdef inline void _input_grad_zero_row(const floating *x, floating *grad_x,
                                      Py_ssize_t n_cells, double center, double scale,
                                      double k, double a, double b,
                                      double c) noexcept nogil:
    """``_input_grad_row`` for ``grad_y = 0`` and ``x_hat = _x_hat_row(x)``."""
    if floating is float:
        skc_norm_input_grad_zero_row_f(x, n_cells, center, scale, k, a, b, c, grad_x)
    else:
        skc_norm_input_grad_zero_row_d(x, n_cells, center, scale, k, a, b, c, grad_x)


cdef inline void _relu_backward(const floating *grad, const floating *out, Py_ssize_t n,
                                floating *dst) noexcept nogil:
    """``dst = grad * (out > 0)``, numpy's relu backward (include/pool/poolkernels.h)."""
    if floating is float:
        skc_relu_backward_f(grad, out, n, dst)
    else:
        skc_relu_backward_d(grad, out, n, dst)


cdef inline void _unpool_pairs(const floating *g,      # IN  (Ho, Wo) + 8 readable
                               const uint8_t *winners,  # IN  (Ho, Wo) + 8 readable
                               floating *grad_z,        # OUT (H, W) + scratch_cells' room
                               int pool_h, Py_ssize_t out_h, Py_ssize_t out_w,
                               Py_ssize_t width, Py_ssize_t n_cells) noexcept nogil:
    """The gradient that a 2x2/stride-2 pooling (or, ``pool_h`` 1, a 1-D one of
    windows of 2) passes back to its input plane, from the window gradients ``g``
    and their winning cells: row pair by row pair (or the row) in whole
    vectors (include/norm/normkernels.h; one vector more than the windows, so that
    the cell past the last window of a row of odd width gets its zero too), then
    zeros on the rows below the last window."""
    cdef Py_ssize_t i, n_vectors = out_w // SKC_POOL_LANES + 1
    if pool_h == 1:  # a signal: one row
        if floating is float:
            skc_norm_unpool2_row_f(g, winners, out_w, n_vectors, grad_z)
        else:
            skc_norm_unpool2_row_d(g, winners, out_w, n_vectors, grad_z)
        return
    for i in range(out_h):
        if floating is float:
            skc_norm_unpool2x2_row_f(g + i * out_w, winners + i * out_w, out_w, n_vectors,
                                     grad_z + 2 * i * width, width)
        else:
            skc_norm_unpool2x2_row_d(g + i * out_w, winners + i * out_w, out_w, n_vectors,
                                     grad_z + 2 * i * width, width)
    memset(grad_z + 2 * out_h * width, 0, (n_cells - 2 * out_h * width) * sizeof(floating))


cdef inline void _affine_row(const floating *x, floating *y, Py_ssize_t n_cells,
                             floating a, floating b) noexcept nogil:
    """``y = x * a + b``."""
    if floating is float:
        skc_norm_affine_row_f(x, n_cells, a, b, y)
    else:
        skc_norm_affine_row_d(x, n_cells, a, b, y)


cdef inline void _channel_statistics(const floating *x,  # IN  row n at x + n * row_stride
                                     Py_ssize_t row_stride, Py_ssize_t n_samples,
                                     Py_ssize_t n_cells,
                                     const double *weights,  # IN (N,) or NULL
                                     double count, double eps,
                                     double *mean, double *var,
                                     double *inv_std) noexcept nogil:
    """One channel's (weighted) mean, biased variance and ``1 / sqrt(var + eps)``, from
    its ``n_samples`` rows of ``n_cells`` cells: the mean first, then the squared
    deviations from it, so the variance never cancels. Every forward that normalises
    with batch statistics calls this, so their statistics agree to the bit."""
    cdef:
        Py_ssize_t n
        double total = 0, m
    for n in range(n_samples):
        if weights == NULL:
            total = total + lane_sum(x + n * row_stride, n_cells)
        elif weights[n] != 0:
            total = total + weights[n] * lane_sum(x + n * row_stride, n_cells)
    m = total / count
    total = 0
    for n in range(n_samples):
        if weights == NULL:
            total = total + _row_squared_deviations(x + n * row_stride, n_cells, m)
        elif weights[n] != 0:
            total = total + weights[n] * _row_squared_deviations(
                x + n * row_stride, n_cells, m)
    mean[0] = m
    var[0] = total / count
    inv_std[0] = 1.0 / sqrt(total / count + eps)


# Batch normalisation after a dense layer (one cell per row, S = 1): a channel's rows
# are a column of the (N, C) matrix, so the passes run down the rows with the
# channels as the inner, contiguous loop, a block of channels per task. A row's sum
# of one cell is the cell itself (+0 for -0, which changes no sum: a sum that starts
# at +0 is never -0), so these are the per-channel loops' sums, in the same order,
# to the bit.
cdef enum:
    _COLUMN_BLOCK = 64


cdef void _columns_forward_train(const floating *x, Py_ssize_t n_samples,
                                 Py_ssize_t n_channels, Py_ssize_t c0, Py_ssize_t c1,
                                 const floating *gamma, const floating *beta, double eps,
                                 const double *weights, double count, floating *y,
                                 floating *x_hat, double *mean, double *var,
                                 double *inv_std, bint relu) noexcept nogil:
    """``forward_train`` of channels [c0, c1) of an (N, C) batch (see above), then
    the relu with ``relu``."""
    cdef Py_ssize_t n, c
    cdef double w, deviation
    cdef floating h
    for c in range(c0, c1):
        mean[c] = 0
        var[c] = 0
    for n in range(n_samples):
        if weights == NULL:
            for c in range(c0, c1):
                mean[c] = mean[c] + x[n * n_channels + c]
        elif weights[n] != 0:
            w = weights[n]
            for c in range(c0, c1):
                mean[c] = mean[c] + w * x[n * n_channels + c]
    for c in range(c0, c1):
        mean[c] = mean[c] / count
    for n in range(n_samples):
        if weights == NULL:
            for c in range(c0, c1):
                deviation = x[n * n_channels + c] - mean[c]
                var[c] = var[c] + deviation * deviation
        elif weights[n] != 0:
            w = weights[n]
            for c in range(c0, c1):
                deviation = x[n * n_channels + c] - mean[c]
                var[c] = var[c] + w * (deviation * deviation)
    for c in range(c0, c1):
        inv_std[c] = 1.0 / sqrt(var[c] / count + eps)
        var[c] = var[c] / count
    for n in range(n_samples):
        for c in range(c0, c1):
            h = <floating> ((x[n * n_channels + c] - mean[c]) * inv_std[c])
            x_hat[n * n_channels + c] = h
            y[n * n_channels + c] = gamma[c] * h + beta[c]
        if relu:
            relu_run(y + n * n_channels + c0, c1 - c0)


cdef void _columns_backward(const floating *grad_y, const floating *x_hat,
                            Py_ssize_t n_samples, Py_ssize_t n_channels, Py_ssize_t c0,
                            Py_ssize_t c1, const floating *gamma, const double *inv_std,
                            const double *weights, double count, floating *grad_x,
                            floating *grad_gamma, floating *grad_beta,
                            double *sums) noexcept nogil:
    """``backward`` of channels [c0, c1) of an (N, C) batch (see above); ``sums``:
    (2, C) doubles of scratch."""
    cdef Py_ssize_t n, c, i
    cdef double k, share
    cdef double *sum_gy = sums
    cdef double *sum_gy_xhat = sums + n_channels
    for c in range(c0, c1):
        sum_gy[c] = 0
        sum_gy_xhat[c] = 0
    for n in range(n_samples):
        for c in range(c0, c1):
            i = n * n_channels + c
            sum_gy[c] = sum_gy[c] + grad_y[i]
            sum_gy_xhat[c] = sum_gy_xhat[c] + <double> grad_y[i] * x_hat[i]
    for c in range(c0, c1):
        grad_beta[c] = <floating> sum_gy[c]
        grad_gamma[c] = <floating> sum_gy_xhat[c]
    if grad_x == NULL:
        return
    for n in range(n_samples):
        if weights != NULL:
            share = weights[n] / count
            for c in range(c0, c1):
                i = n * n_channels + c
                k = gamma[c] * inv_std[c]
                grad_x[i] = <floating> (k * (1.0 * grad_y[i] - share * sum_gy[c]
                                             - x_hat[i] * (share * sum_gy_xhat[c])))
        else:
            for c in range(c0, c1):
                i = n * n_channels + c
                k = gamma[c] * inv_std[c] / count
                grad_x[i] = <floating> (k * (count * grad_y[i] - sum_gy[c]
                                             - x_hat[i] * sum_gy_xhat[c]))


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
                  int n_threads,
                  bint relu=False):
    """Normalise with the batch's (weighted) statistics: ``x_hat = (x - mean) *
    inv_std`` and ``y = gamma * x_hat + beta`` per channel (two passes: the mean, then
    the squared deviations, so the variance never cancels). With weights, each row's
    cells are summed first, then the row's sum is weighted. ``relu``: then ``y =
    numpy.maximum(y, 0)``, each row while it is in cache."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1], n_cells = x.shape[2]
        Py_ssize_t c, n
        const double *row_weights = &weights[0] if weights is not None else NULL
    if weights is None:
        count = <double> (n_samples * n_cells)
    if n_cells == 0:  # no cells: each row's sums are 0 (and its address is out of range)
        n_samples = 0
    if n_cells == 1 and n_samples > 0:
        for c in prange((n_channels + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK, nogil=True,
                        schedule="static", num_threads=n_threads):
            _columns_forward_train(&x[0, 0, 0], n_samples, n_channels, c * _COLUMN_BLOCK,
                                   min((c + 1) * _COLUMN_BLOCK, n_channels), &gamma[0],
                                   &beta[0], eps, row_weights, count, &y[0, 0, 0],
                                   &x_hat[0, 0, 0], &mean[0], &var[0], &inv_std[0], relu)
        return
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        _channel_statistics(&x[0, c, 0] if n_samples > 0 else NULL, n_channels * n_cells,
                            n_samples, n_cells, row_weights, count, eps, &mean[c],
                            &var[c], &inv_std[c])
        for n in range(n_samples):
            _normalize_row(&x[n, c, 0], &x_hat[n, c, 0], &y[n, c, 0], n_cells, mean[c],
                           inv_std[c], gamma[c], beta[c])
            if relu:
                relu_run(&y[n, c, 0], n_cells)


def backward(const floating[:, :, ::1] grad_y,   # IN  (N, C, S)
             const floating[:, :, ::1] x_hat,    # IN  (N, C, S) from forward_train
             const floating[::1] gamma,          # IN  (C,)
             const double[::1] inv_std,          # IN  (C,) from forward_train
             const double[::1] weights,          # IN  (N,) forward_train's, or None
             double count,                       # IN  forward_train's (if weights)
             floating[:, :, ::1] grad_x,         # OUT (N, C, S) or None
             floating[::1] grad_gamma,           # OUT (C,)
             floating[::1] grad_beta,            # OUT (C,)
             int n_threads,
             const floating[:, :, ::1] relu_output=None,  # IN (N, C, S) or None
             floating[:, :, ::1] relu_grad=None):         # OUT (N, C, S) or None
    """Gradients of ``forward_train``: ``grad_beta = sum(grad_y)``, ``grad_gamma =
    sum(grad_y * x_hat)`` per channel, and ``grad_x = gamma * inv_std / M * (M *
    grad_y - grad_beta - x_hat * grad_gamma)`` with ``M = N * S``; with weights
    (the mean and the variance then depend on a row in proportion to its weight)
    ``grad_x[n] = gamma * inv_std * (grad_y[n] - w[n] / W * (grad_beta + x_hat[n] *
    grad_gamma))``.

    With ``relu_output`` (the ``y`` of ``forward_train(..., relu=True)``),
    ``grad_y`` is the gradient of that relu's output: ``relu_grad = grad_y *
    (relu_output > 0)`` (numpy's relu backward) is written first, row by row, and
    is the ``grad_y`` of the formulas. ``relu_grad`` may be ``grad_x`` itself (each
    cell of the input gradient is computed from the same cell of it)."""
    cdef:
        Py_ssize_t n_samples = grad_y.shape[0], n_channels = grad_y.shape[1]
        Py_ssize_t n_cells = grad_y.shape[2]
        Py_ssize_t c, n, c0, c1
        double sum_gy, sum_gy_xhat, k, share
        skc_sum_dot row
        bint want_grad_x = grad_x is not None
        bint weighted = weights is not None
        bint relu = relu_output is not None
        const floating *grad_rows = NULL
        double[:, ::1] sums_view
    if n_samples * n_cells > 0:
        grad_rows = &relu_grad[0, 0, 0] if relu else &grad_y[0, 0, 0]
    if not weighted:
        count = <double> (n_samples * n_cells)
    if n_cells == 1 and n_samples > 0:
        sums = np.empty((2, n_channels))
        sums_view = sums
        for c in prange((n_channels + _COLUMN_BLOCK - 1) // _COLUMN_BLOCK, nogil=True,
                        schedule="static", num_threads=n_threads):
            c0 = c * _COLUMN_BLOCK
            c1 = min((c + 1) * _COLUMN_BLOCK, n_channels)
            if relu:
                for n in range(n_samples):
                    _relu_backward(&grad_y[n, c0, 0], &relu_output[n, c0, 0], c1 - c0,
                                   &relu_grad[n, c0, 0])
            _columns_backward(grad_rows, &x_hat[0, 0, 0], n_samples, n_channels, c0, c1,
                              &gamma[0], &inv_std[0],
                              &weights[0] if weighted else NULL, count,
                              &grad_x[0, 0, 0] if want_grad_x else NULL, &grad_gamma[0],
                              &grad_beta[0], &sums_view[0, 0])
        return
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        sum_gy = 0
        sum_gy_xhat = 0
        for n in range(n_samples if n_cells > 0 else 0):  # see forward_train
            if relu:
                _relu_backward(&grad_y[n, c, 0], &relu_output[n, c, 0], n_cells,
                               &relu_grad[n, c, 0])
            row = _row_sum_and_dot(grad_rows + (n * n_channels + c) * n_cells,
                                   &x_hat[n, c, 0], n_cells)
            sum_gy = sum_gy + row.sum
            sum_gy_xhat = sum_gy_xhat + row.dot
        grad_beta[c] = <floating> sum_gy
        grad_gamma[c] = <floating> sum_gy_xhat
        if want_grad_x and weighted:
            k = gamma[c] * inv_std[c]
            for n in range(n_samples if n_cells > 0 else 0):
                share = weights[n] / count
                _input_grad_row(grad_rows + (n * n_channels + c) * n_cells,
                                &x_hat[n, c, 0], &grad_x[n, c, 0],
                                n_cells, k, 1.0, share * sum_gy, share * sum_gy_xhat)
        elif want_grad_x:
            k = gamma[c] * inv_std[c] / count
            for n in range(n_samples if n_cells > 0 else 0):
                _input_grad_row(grad_rows + (n * n_channels + c) * n_cells,
                                &x_hat[n, c, 0], &grad_x[n, c, 0],
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


# Batch normalisation fused with the non-overlapping max (or min) pooling and the relu
# after it: (N, C, H, W) maps (a signal is H = 1), windows of pool_h x pool_w cells
# with the window as the stride and no padding; the cells past the last whole window
# are in no window. The training forward writes the pooled output and, per window,
# the winning cell (its row-major index in the window) instead of the normalised maps,
# the pooling's input and its indices (a fraction of the memory traffic); the
# backward rebuilds the gradient of each normalised plane in a per-thread scratch
# plane, in cache, instead of reading a full-size one. Each plane goes through the
# same row functions as batch normalisation on its own (_normalize_row, _affine_row,
# _row_sum_and_dot, _input_grad_row), so every value equals the layer-by-layer
# network's (normalise, pool, relu) to the bit.


cdef inline void _window_offsets(Py_ssize_t width, int pool_h, int pool_w,
                                 Py_ssize_t *offsets) noexcept nogil:
    """``offsets[k]``: cell ``k`` (row-major) of a window, from its first cell."""
    cdef int r, q
    for r in range(pool_h):
        for q in range(pool_w):
            offsets[r * pool_w + q] = r * width + q


cdef inline void _pool_plane(const floating *z,  # IN  (H, W) the normalised plane
                             floating *y,        # OUT (Ho, Wo)
                             uint8_t *winners,   # OUT (Ho, Wo), or NULL
                             Py_ssize_t width, int pool_h, int pool_w,
                             Py_ssize_t out_h, Py_ssize_t out_w,
                             const Py_ssize_t *offsets, bint want_min,
                             bint relu) noexcept nogil:
    """Pool and relu one normalised plane: the first extreme of each window in
    row-major order wins, a NaN over any number (the first NaN), as in
    ``skconv._kernels.pool``; the relu is numpy's ``maximum(v, 0)``."""
    cdef:
        Py_ssize_t i, j, k, best_k, n_window = pool_h * pool_w
        const floating *window
        floating v, best
        bint take, saw_nan
    for i in range(out_h):
        for j in range(out_w):
            window = z + i * pool_h * width + j * pool_w
            best = window[0]
            best_k = 0
            saw_nan = best != best
            for k in range(1, n_window):
                v = window[offsets[k]]
                # Which cell wins is unpredictable: selects, not branches.
                take = (v < best) if want_min else (v > best)
                best_k = k if take else best_k
                best = v if take else best
                saw_nan = saw_nan | (v != v)
            if saw_nan:  # rare: the window's first NaN wins
                for k in range(n_window):
                    if window[offsets[k]] != window[offsets[k]]:
                        best = window[offsets[k]]
                        best_k = k
                        break
            if relu and not (best > 0 or best != best):
                best = 0
            y[i * out_w + j] = best
            if winners != NULL:
                winners[i * out_w + j] = <uint8_t> best_k


cdef inline void _pool_normalized(const floating *z,  # IN  (H, W) padded, see ``scratch``
                                  floating *y,        # OUT (Ho, Wo)
                                  uint8_t *winners,   # OUT (Ho, Wo), or NULL
                                  Py_ssize_t width, int pool_h, int pool_w,
                                  Py_ssize_t out_h, Py_ssize_t out_w,
                                  const Py_ssize_t *offsets, bint want_min, bint relu,
                                  floating *row_y,       # scratch: whole vectors of a row
                                  uint8_t *row_code) noexcept nogil:
    """``_pool_plane``; 2x2 windows with a relu after them (``include/pool/
    poolkernels.h``) and a signal's windows of 2 (``include/norm/normkernels.h``) in
    whole vectors of windows, row by row into ``row_y`` and ``row_code`` then copied,
    since the last lanes of a row compute junk."""
    cdef Py_ssize_t i, n_vectors = (out_w + SKC_POOL_LANES - 1) // SKC_POOL_LANES
    if pool_h == 1 and pool_w == 2 and out_h == 1:  # a signal, windows of 2
        if floating is float:
            skc_norm_pool2_codes_row_f(z, n_vectors, want_min, relu, row_y, row_code)
        else:
            skc_norm_pool2_codes_row_d(z, n_vectors, want_min, relu, row_y, row_code)
        memcpy(y, row_y, out_w * sizeof(floating))
        if winners != NULL:
            memcpy(winners, row_code, out_w)
        return
    if not (relu and pool_h == 2 and pool_w == 2):
        _pool_plane(z, y, winners, width, pool_h, pool_w, out_h, out_w, offsets,
                    want_min, relu)
        return
    for i in range(out_h):
        # Bias 0: exact with the relu after it, which turns a -0 into +0 as numpy does.
        pool2x2_codes_row(z + 2 * i * width, width, n_vectors, 0, want_min, relu, row_y,
                          row_code)
        memcpy(y + i * out_w, row_y, out_w * sizeof(floating))
        if winners != NULL:
            memcpy(winners + i * out_w, row_code, out_w)


def scratch_cells(Py_ssize_t n_cells, Py_ssize_t out_w):
    """Cells of each per-thread scratch plane of the fused kernels for planes of
    ``n_cells`` cells and pooled rows of ``out_w`` windows: the plane, and room for the
    whole vectors of 2x2 windows that read and write past it (the arrays of window
    values and winners that the backward reads need ``SKC_POOL_LANES`` readable
    values past their end)."""
    cdef Py_ssize_t n_vectors = out_w // SKC_POOL_LANES + 1
    return n_cells + 2 * SKC_POOL_LANES * n_vectors + SKC_POOL_LANES


def forward_pool_train(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                       const floating[::1] gamma,        # IN  (C,)
                       const floating[::1] beta,         # IN  (C,)
                       double eps,
                       const double[::1] weights,        # IN  (N,) row weights, or None
                       double count,                     # IN  sum(weights) * H * W
                       int pool_h, int pool_w, bint want_min, bint relu,
                       floating[:, :, :, ::1] y,         # OUT (N, C, Ho, Wo) pooled
                       uint8_t[:, :, :, ::1] winners,    # OUT (N, C, Ho, Wo)
                       double[::1] mean,                 # OUT (C,)
                       double[::1] var,                  # OUT (C,) biased variance
                       double[::1] inv_std,              # OUT (C,)
                       floating[:, :, ::1] scratch,      # (n_threads, 2, scratch_cells)
                       uint8_t[:, ::1] code_scratch,     # (n_threads, scratch_cells)
                       int n_threads):
    """``forward_train``, then the pooling of each window of ``pool_h x pool_w``
    cells (max, or min if ``want_min``), then (if ``relu``) the relu: the pooled
    output and each window's winning cell. Needs N >= 1, every window within the
    maps and at most 255 cells in a window (checked by ``skconv._ops.norm``)."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1]
        Py_ssize_t width = x.shape[3], n_cells = x.shape[2] * x.shape[3]
        Py_ssize_t out_h = y.shape[2], out_w = y.shape[3]
        Py_ssize_t c, n, t
        Py_ssize_t offsets[256]
        const double *row_weights = &weights[0] if weights is not None else NULL
    if weights is None:
        count = <double> (n_samples * n_cells)
    _window_offsets(width, pool_h, pool_w, offsets)
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        t = threadid()
        _channel_statistics(&x[0, c, 0, 0], n_channels * n_cells, n_samples, n_cells,
                            row_weights, count, eps, &mean[c], &var[c], &inv_std[c])
        for n in range(n_samples):
            _normalize_row(&x[n, c, 0, 0], <floating *> NULL, &scratch[t, 0, 0], n_cells,
                           mean[c], inv_std[c], gamma[c], beta[c])
            _pool_normalized(&scratch[t, 0, 0], &y[n, c, 0, 0], &winners[n, c, 0, 0],
                             width, pool_h, pool_w, out_h, out_w, offsets, want_min, relu,
                             &scratch[t, 1, 0], &code_scratch[t, 0])


def forward_pool_infer(const floating[:, :, :, ::1] x,   # IN  (N, C, H, W)
                       const floating[::1] scale,        # IN  (C,) gamma / sqrt(var + eps)
                       const floating[::1] shift,        # IN  (C,) beta - mean * scale
                       int pool_h, int pool_w, bint want_min, bint relu,
                       floating[:, :, :, ::1] y,         # OUT (N, C, Ho, Wo) pooled
                       floating[:, :, ::1] scratch,      # (n_threads, 2, scratch_cells)
                       uint8_t[:, ::1] code_scratch,     # (n_threads, scratch_cells)
                       int n_threads):
    """``forward_infer``, then the pooling and the relu of ``forward_pool_train``;
    each (sample, channel) plane is one task."""
    cdef:
        Py_ssize_t n_samples = x.shape[0], n_channels = x.shape[1], width = x.shape[3]
        Py_ssize_t n_cells = x.shape[2] * x.shape[3]
        Py_ssize_t out_h = y.shape[2], out_w = y.shape[3]
        Py_ssize_t plane, n, c, t
        Py_ssize_t offsets[256]
    _window_offsets(width, pool_h, pool_w, offsets)
    for plane in prange(n_samples * n_channels, nogil=True, schedule="static",
                        num_threads=n_threads):
        t = threadid()
        n = plane // n_channels
        c = plane % n_channels
        _affine_row(&x[n, c, 0, 0], &scratch[t, 0, 0], n_cells, scale[c], shift[c])
        _pool_normalized(&scratch[t, 0, 0], &y[n, c, 0, 0], NULL, width, pool_h, pool_w,
                         out_h, out_w, offsets, want_min, relu, &scratch[t, 1, 0],
                         &code_scratch[t, 0])


cdef inline Py_ssize_t _winner_cell(const uint8_t *winners, Py_ssize_t i,
                                    Py_ssize_t j, Py_ssize_t out_w, Py_ssize_t width,
                                    int pool_h, int pool_w,
                                    const Py_ssize_t *offsets) noexcept nogil:
    """The plane's index of the winning cell of window (i, j)."""
    return i * pool_h * width + j * pool_w + offsets[winners[i * out_w + j]]


def backward_pool(const floating[:, :, :, ::1] grad_y,   # IN  (N, C, Ho, Wo)
                  const floating[:, :, :, ::1] y,        # IN  (N, C, Ho, Wo) the output
                  const uint8_t[:, :, :, ::1] winners,   # IN  (N, C, Ho, Wo)
                  const floating[:, :, :, ::1] x,        # IN  (N, C, H, W) the input
                  const floating[::1] gamma,             # IN  (C,)
                  const double[::1] mean,                # IN  (C,) from forward_pool_train
                  const double[::1] inv_std,             # IN  (C,) from forward_pool_train
                  const double[::1] weights,             # IN  (N,) forward's, or None
                  double count,                          # IN  forward's (if weights)
                  int pool_h, int pool_w, bint relu,
                  floating[:, :, :, ::1] grad_x,         # OUT (N, C, H, W) or None
                  floating[::1] grad_gamma,              # OUT (C,)
                  floating[::1] grad_beta,               # OUT (C,)
                  floating[:, :, :, ::1] grad_windows,   # scratch (N, C, Ho, Wo)
                  floating[:, :, ::1] scratch,           # (n_threads, 2, >= H * W)
                  int n_threads):
    """Gradients of ``forward_pool_train``: ``backward``'s, given the gradient that
    the relu and the pooling pass back to the normalised maps (the relu's backward,
    ``grad * (y > 0)``, scattered into zeros: ``0 + grad`` at each winning cell).

    The sums are ``backward``'s on each plane's gradient and ``x_hat``, rebuilt in
    the thread's scratch planes. The input gradient is ``backward``'s formula with
    a zero gradient on every cell, then again with its gradient on each winning cell:
    the same values, without building the planes a second time."""
    cdef:
        Py_ssize_t n_samples = grad_y.shape[0], n_channels = grad_y.shape[1]
        Py_ssize_t out_h = grad_y.shape[2], out_w = grad_y.shape[3]
        Py_ssize_t n_out = out_h * out_w
        Py_ssize_t width = x.shape[3], n_cells = x.shape[2] * x.shape[3]
        Py_ssize_t c, n, t, i, j, s
        Py_ssize_t offsets[256]
        double sum_gy, sum_gy_xhat, k, a, b_term, c_term, m, scale
        skc_sum_dot row
        floating *g
        floating *x_hat
        floating *grad_z
        floating *gx
        const floating *xs
        bint want_grad_x = grad_x is not None
        bint weighted = weights is not None
        bint two_by_two = pool_w == 2 and (pool_h == 2 or (pool_h == 1 and out_h == 1))
    if not weighted:
        count = <double> (n_samples * n_cells)
    _window_offsets(width, pool_h, pool_w, offsets)
    for c in prange(n_channels, nogil=True, schedule="static", num_threads=n_threads):
        t = threadid()
        m = mean[c]
        scale = inv_std[c]
        x_hat = &scratch[t, 0, 0]
        grad_z = &scratch[t, 1, 0]
        sum_gy = 0
        sum_gy_xhat = 0
        for n in range(n_samples):
            xs = &x[n, c, 0, 0]
            g = &grad_windows[n, c, 0, 0]
            if relu:
                _relu_backward(&grad_y[n, c, 0, 0], &y[n, c, 0, 0], n_out, g)
            else:
                memcpy(g, &grad_y[n, c, 0, 0], n_out * sizeof(floating))
            _x_hat_row(xs, x_hat, n_cells, m, scale)
            if two_by_two:
                _unpool_pairs(g, &winners[n, c, 0, 0], grad_z, pool_h, out_h, out_w,
                              width, n_cells)
            else:
                memset(grad_z, 0, n_cells * sizeof(floating))
                for i in range(out_h):
                    for j in range(out_w):
                        s = _winner_cell(&winners[n, c, 0, 0], i, j, out_w, width,
                                         pool_h, pool_w, offsets)
                        grad_z[s] = grad_z[s] + g[i * out_w + j]
            row = _row_sum_and_dot(grad_z, x_hat, n_cells)
            sum_gy = sum_gy + row.sum
            sum_gy_xhat = sum_gy_xhat + row.dot
        grad_beta[c] = <floating> sum_gy
        grad_gamma[c] = <floating> sum_gy_xhat
        if want_grad_x:
            # backward's grad_x = k * (a * grad - b - x_hat * c), per sample.
            if weighted:
                k = gamma[c] * inv_std[c]
                a = 1.0
            else:
                k = gamma[c] * inv_std[c] / count
                a = count
            for n in range(n_samples):
                b_term = weights[n] / count * sum_gy if weighted else sum_gy
                c_term = weights[n] / count * sum_gy_xhat if weighted else sum_gy_xhat
                xs = &x[n, c, 0, 0]
                gx = &grad_x[n, c, 0, 0]
                g = &grad_windows[n, c, 0, 0]
                if two_by_two:
                    _x_hat_row(xs, x_hat, n_cells, m, scale)
                    _unpool_pairs(g, &winners[n, c, 0, 0], grad_z, pool_h, out_h, out_w,
                                  width, n_cells)
                    _input_grad_row(grad_z, x_hat, gx, n_cells, k, a, b_term, c_term)
                    continue
                _input_grad_zero_row(xs, gx, n_cells, m, scale, k, a, b_term, c_term)
                if floating is float:
                    skc_norm_input_grad_winners_f(
                        xs, g, &winners[n, c, 0, 0], out_h, out_w, width, pool_h,
                        pool_w, offsets, m, scale, k, a, b_term, c_term, gx)
                else:
                    skc_norm_input_grad_winners_d(
                        xs, g, &winners[n, c, 0, 0], out_h, out_w, width, pool_h,
                        pool_w, offsets, m, scale, k, a, b_term, c_term, gx)
