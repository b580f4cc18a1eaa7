"""N-d convolution (cross-correlation) kernels: forward and backward.

Every spatial case (1, 2 or 3 axes) runs through one 3-D kernel: the ops layer views
a 1-D signal ``(N, C, W)`` as ``(N, C, 1, 1, W)`` and an image as ``(N, C, 1, H, W)``.
Singleton axes cost nothing here because the innermost loops run over the last axis.

Layering (as in scikit-learn's ``_loss.pyx.tp``): point helpers (im2col / col2im of
one sample) -> ``prange`` loops over the batch with an explicit ``n_threads`` -> the
``def`` wrappers below, called only by ``skconv.ops`` which has checked every shape.

Each sample is lowered to a column matrix ``col`` of shape ``(C*K0*K1*K2, O0*O1*O2)``
(im2col) in a per-thread buffer, and the contraction over channels and kernel cells
is one GEMM through ``scipy.linalg.cython_blas``. Weight and bias gradients are summed
per fixed-size chunk of samples and the chunks are added in order afterwards, so the
result does not depend on the number of threads.
"""

from cython cimport floating
from cython.parallel cimport parallel, prange
from libc.stdlib cimport malloc, free
from libc.string cimport memset

from scipy.linalg.cython_blas cimport sgemm, dgemm

import numpy as np

# Samples per reduction chunk of the weight/bias gradients. A constant (not a
# function of n_threads) so that the summation order never changes.
_REDUCTION_CHUNKS = 16


cdef inline void _gemm(char transa, char transb, int m, int n, int k,
                       floating alpha, const floating *a, int lda,
                       const floating *b, int ldb, floating beta,
                       floating *c, int ldc) noexcept nogil:
    """Column-major C = alpha op(A) op(B) + beta C, for float or double."""
    if floating is float:
        sgemm(&transa, &transb, &m, &n, &k, &alpha, <float *> a, &lda,
              <float *> b, &ldb, &beta, c, &ldc)
    else:
        dgemm(&transa, &transb, &m, &n, &k, &alpha, <double *> a, &lda,
              <double *> b, &ldb, &beta, c, &ldc)


cdef inline Py_ssize_t _first_valid(Py_ssize_t offset, Py_ssize_t stride,
                                    Py_ssize_t n_out) noexcept nogil:
    """Smallest o in [0, n_out] with o * stride + offset >= 0."""
    cdef Py_ssize_t o
    if offset >= 0:
        return 0
    # ceil(-offset / stride) with positive integers only (cdivision is on).
    o = (-offset + stride - 1) // stride
    return o if o < n_out else n_out


cdef inline Py_ssize_t _end_valid(Py_ssize_t offset, Py_ssize_t stride,
                                  Py_ssize_t size, Py_ssize_t n_out) noexcept nogil:
    """Smallest o in [0, n_out] with o * stride + offset >= size (end of the valid run)."""
    cdef Py_ssize_t o
    if offset >= size:
        return 0
    # Valid while o * stride + offset <= size - 1.
    o = (size - 1 - offset) // stride + 1
    return o if o < n_out else n_out


cdef struct Geometry:
    # Input spatial sizes, kernel sizes, output sizes, strides, low paddings,
    # dilations: all per axis, for the three (possibly singleton) spatial axes.
    Py_ssize_t size[3]
    Py_ssize_t ksize[3]
    Py_ssize_t out[3]
    Py_ssize_t stride[3]
    Py_ssize_t pad[3]
    Py_ssize_t dil[3]
    Py_ssize_t channels
    Py_ssize_t n_rows     # channels * K0 * K1 * K2
    Py_ssize_t n_cols     # O0 * O1 * O2


cdef void _im2col(const floating[:, :, :, ::1] x,   # IN  (C, X0, X1, X2), one sample
                  const Geometry *g,
                  floating *col) noexcept nogil:      # OUT (n_rows, n_cols)
    """Lower one sample to its column matrix; padded cells become zeros."""
    cdef:
        Py_ssize_t c, k0, k1, k2, o0, o1, o2, i0, i1, i2
        Py_ssize_t lo2, hi2, off2
        Py_ssize_t n_out1 = g.out[1], n_out2 = g.out[2]
        Py_ssize_t s2 = g.stride[2]
        floating *row
        floating *dst
    row = col
    for c in range(g.channels):
        for k0 in range(g.ksize[0]):
            for k1 in range(g.ksize[1]):
                for k2 in range(g.ksize[2]):
                    off2 = k2 * g.dil[2] - g.pad[2]
                    lo2 = _first_valid(off2, s2, n_out2)
                    hi2 = _end_valid(off2, s2, g.size[2], n_out2)
                    if hi2 < lo2:
                        hi2 = lo2
                    dst = row
                    for o0 in range(g.out[0]):
                        i0 = o0 * g.stride[0] + k0 * g.dil[0] - g.pad[0]
                        for o1 in range(n_out1):
                            i1 = o1 * g.stride[1] + k1 * g.dil[1] - g.pad[1]
                            if i0 < 0 or i0 >= g.size[0] or i1 < 0 or i1 >= g.size[1]:
                                memset(dst, 0, n_out2 * sizeof(floating))
                            else:
                                for o2 in range(lo2):
                                    dst[o2] = 0
                                if s2 == 1:
                                    for o2 in range(lo2, hi2):
                                        dst[o2] = x[c, i0, i1, o2 + off2]
                                else:
                                    for o2 in range(lo2, hi2):
                                        dst[o2] = x[c, i0, i1, o2 * s2 + off2]
                                for o2 in range(hi2, n_out2):
                                    dst[o2] = 0
                            dst += n_out2
                    row += g.n_cols


cdef void _col2im_add(const floating *col,           # IN  (n_rows, n_cols)
                      const Geometry *g,
                      floating[:, :, :, ::1] grad_x) noexcept nogil:  # INOUT (C, X0, X1, X2)
    """Scatter-add a column matrix back onto one sample (adjoint of ``_im2col``)."""
    cdef:
        Py_ssize_t c, k0, k1, k2, o0, o1, o2, i0, i1
        Py_ssize_t lo2, hi2, off2
        Py_ssize_t n_out1 = g.out[1], n_out2 = g.out[2]
        Py_ssize_t s2 = g.stride[2]
        const floating *row
        const floating *src
    row = col
    for c in range(g.channels):
        for k0 in range(g.ksize[0]):
            for k1 in range(g.ksize[1]):
                for k2 in range(g.ksize[2]):
                    off2 = k2 * g.dil[2] - g.pad[2]
                    lo2 = _first_valid(off2, s2, n_out2)
                    hi2 = _end_valid(off2, s2, g.size[2], n_out2)
                    src = row
                    for o0 in range(g.out[0]):
                        i0 = o0 * g.stride[0] + k0 * g.dil[0] - g.pad[0]
                        for o1 in range(n_out1):
                            i1 = o1 * g.stride[1] + k1 * g.dil[1] - g.pad[1]
                            if not (i0 < 0 or i0 >= g.size[0] or i1 < 0 or i1 >= g.size[1]):
                                if s2 == 1:
                                    for o2 in range(lo2, hi2):
                                        grad_x[c, i0, i1, o2 + off2] += src[o2]
                                else:
                                    for o2 in range(lo2, hi2):
                                        grad_x[c, i0, i1, o2 * s2 + off2] += src[o2]
                            src += n_out2
                    row += g.n_cols


cdef Geometry _geometry(tuple x_shape, tuple w_shape, tuple y_shape,
                        tuple stride, tuple pad_lo, tuple dilation):
    cdef Geometry g
    cdef int a
    for a in range(3):
        g.size[a] = x_shape[2 + a]
        g.ksize[a] = w_shape[2 + a]
        g.out[a] = y_shape[2 + a]
        g.stride[a] = stride[a]
        g.pad[a] = pad_lo[a]
        g.dil[a] = dilation[a]
    g.channels = x_shape[1]
    g.n_rows = g.channels * g.ksize[0] * g.ksize[1] * g.ksize[2]
    g.n_cols = g.out[0] * g.out[1] * g.out[2]
    return g


cdef bint _is_pointwise(const Geometry *g) noexcept nogil:
    """1x1x1 kernel, stride 1, no padding: the sample itself is its column matrix."""
    cdef int a
    for a in range(3):
        if g.ksize[a] != 1 or g.stride[a] != 1 or g.pad[a] != 0:
            return False
    return True


def conv_forward(const floating[:, :, :, :, ::1] x,      # IN  (N, C, X0, X1, X2)
                 const floating[:, :, :, :, ::1] w,      # IN  (D, C, K0, K1, K2)
                 const floating[::1] b,                  # IN  (D,) or None
                 floating[:, :, :, :, ::1] y,            # OUT (N, D, O0, O1, O2)
                 tuple stride, tuple pad_lo, tuple dilation,
                 int n_threads):
    """y[n, d] = sum_c x[n, c] (*) w[d, c] + b[d] (cross-correlation, zero padding).

    Shapes are trusted: ``skconv.ops.conv`` checks them. ``y`` is overwritten.
    """
    cdef:
        Geometry g = _geometry((x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]), (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]),
                               (y.shape[0], y.shape[1], y.shape[2], y.shape[3], y.shape[4]), stride, pad_lo, dilation)
        Py_ssize_t n_samples = x.shape[0], n_filters = w.shape[0]
        Py_ssize_t n, d, p
        bint has_bias = b is not None
        bint pointwise = _is_pointwise(&g)
        floating beta
        floating *col = NULL
        const floating *col_in
        floating *y_n
    if n_samples == 0:
        return
    n_threads = max(1, min(n_threads, n_samples))
    with nogil, parallel(num_threads=n_threads):
        if not pointwise:
            col = <floating *> malloc(g.n_rows * g.n_cols * sizeof(floating))
        for n in prange(n_samples, schedule="static"):
            y_n = &y[n, 0, 0, 0, 0]
            if pointwise:
                col_in = &x[n, 0, 0, 0, 0]
            else:
                _im2col(x[n], &g, col)
                col_in = col
            beta = 0
            if has_bias:
                beta = 1
                for d in range(n_filters):
                    for p in range(g.n_cols):
                        y_n[d * g.n_cols + p] = b[d]
            # Row-major y_n (D, P) = w (D, R) @ col (R, P), written column-major.
            _gemm(c'N', c'N', <int> g.n_cols, <int> n_filters, <int> g.n_rows,
                  1, col_in, <int> g.n_cols, &w[0, 0, 0, 0, 0], <int> g.n_rows,
                  beta, y_n, <int> g.n_cols)
        free(col)


def n_reduction_chunks(Py_ssize_t n_samples):
    """Number of fixed-order reduction chunks for a batch (independent of threads)."""
    if n_samples <= 0:
        return 0
    return min(n_samples, _REDUCTION_CHUNKS)


def conv_backward(const floating[:, :, :, :, ::1] grad_y,  # IN  (N, D, O0, O1, O2)
                  const floating[:, :, :, :, ::1] x,       # IN  (N, C, X0, X1, X2)
                  const floating[:, :, :, :, ::1] w,       # IN  (D, C, K0, K1, K2)
                  floating[:, :, :, :, ::1] grad_x,        # OUT (N, C, X0, X1, X2) or None
                  floating[:, ::1] grad_w_chunks,          # OUT (n_chunks, D*R) scratch
                  floating[:, ::1] grad_b_chunks,          # OUT (n_chunks, D) scratch
                  tuple stride, tuple pad_lo, tuple dilation,
                  int n_threads):
    """Gradients of ``conv_forward`` with respect to x (if ``grad_x`` is given), w and b.

    Sample ``n`` belongs to chunk ``n * n_chunks // N``; row ``k`` of
    ``grad_w_chunks``/``grad_b_chunks`` receives that chunk's sum, samples added in
    order. The caller adds the rows in order. ``grad_x`` must be zero on entry.
    """
    cdef:
        Geometry g = _geometry((x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4]), (w.shape[0], w.shape[1], w.shape[2], w.shape[3], w.shape[4]),
                               (grad_y.shape[0], grad_y.shape[1], grad_y.shape[2], grad_y.shape[3], grad_y.shape[4]), stride, pad_lo, dilation)
        Py_ssize_t n_samples = x.shape[0], n_filters = w.shape[0]
        Py_ssize_t n_chunks = grad_w_chunks.shape[0]
        Py_ssize_t chunk, n, start, stop, d, p
        bint want_grad_x = grad_x is not None
        bint pointwise = _is_pointwise(&g)
        floating acc
        floating zero = 0, one = 1
        floating *col = NULL
        const floating *col_in
        const floating *gy_n
        floating *gw
    if n_samples == 0:
        return
    n_threads = max(1, min(n_threads, n_chunks))
    with nogil, parallel(num_threads=n_threads):
        col = <floating *> malloc(g.n_rows * g.n_cols * sizeof(floating))
        for chunk in prange(n_chunks, schedule="static"):
            start = (chunk * n_samples + n_chunks - 1) // n_chunks
            stop = ((chunk + 1) * n_samples + n_chunks - 1) // n_chunks
            gw = &grad_w_chunks[chunk, 0]
            for n in range(start, stop):
                gy_n = &grad_y[n, 0, 0, 0, 0]
                if pointwise:
                    col_in = &x[n, 0, 0, 0, 0]
                else:
                    _im2col(x[n], &g, col)
                    col_in = col
                # Row-major gw (D, R) += gy_n (D, P) @ col^T (P, R).
                _gemm(c'T', c'N', <int> g.n_rows, <int> n_filters, <int> g.n_cols,
                      1, col_in, <int> g.n_cols, gy_n, <int> g.n_cols,
                      zero if n == start else one, gw, <int> g.n_rows)
                for d in range(n_filters):
                    acc = 0
                    for p in range(g.n_cols):
                        acc = acc + gy_n[d * g.n_cols + p]
                    if n == start:
                        grad_b_chunks[chunk, d] = acc
                    else:
                        grad_b_chunks[chunk, d] += acc
                if want_grad_x:
                    if pointwise:
                        # Row-major grad_x[n] (C, P) = w^T (C, D) @ gy_n (D, P).
                        _gemm(c'N', c'T', <int> g.n_cols, <int> g.n_rows, <int> n_filters,
                              1, gy_n, <int> g.n_cols, &w[0, 0, 0, 0, 0], <int> g.n_rows,
                              0, &grad_x[n, 0, 0, 0, 0], <int> g.n_cols)
                    else:
                        _gemm(c'N', c'T', <int> g.n_cols, <int> g.n_rows, <int> n_filters,
                              1, gy_n, <int> g.n_cols, &w[0, 0, 0, 0, 0], <int> g.n_rows,
                              0, col, <int> g.n_cols)
                        _col2im_add(col, &g, grad_x[n])
        free(col)
