# The pooling loops of include/pool/poolkernels.h that other kernels run on their own
# output while it is in cache (what they compute is described there): conv.pyx pools
# each sample's convolution, norm.pyx each normalised plane. ``pool2x2_codes_row``
# picks the float or double one for a fused ``floating`` caller.

from cython cimport floating
from libc.stdint cimport uint8_t

cdef extern from "pool/poolkernels.h" nogil:
    enum: SKC_POOL_LANES
    void skc_pool2x2_codes_row_f(const float *r0, Py_ssize_t pitch, Py_ssize_t n_vectors,
                                 float bias, int want_min, int relu, float *y,
                                 uint8_t *code)
    void skc_pool2x2_codes_row_d(const double *r0, Py_ssize_t pitch,
                                 Py_ssize_t n_vectors, double bias, int want_min,
                                 int relu, double *y, uint8_t *code)
    void skc_pool2x2_avg_row_f(const float *r0, Py_ssize_t pitch, Py_ssize_t n_vectors,
                               float bias, int relu, float *y, uint8_t *code)
    void skc_pool2x2_avg_row_d(const double *r0, Py_ssize_t pitch, Py_ssize_t n_vectors,
                               double bias, int relu, double *y, uint8_t *code)
    void skc_pool_taps_codes_row_f(const float *rows, Py_ssize_t tap_stride, int n_taps,
                                   Py_ssize_t n_vectors, float bias, int want_min,
                                   int relu, float *y, uint8_t *code)
    void skc_pool_taps_codes_row_d(const double *rows, Py_ssize_t tap_stride,
                                   int n_taps, Py_ssize_t n_vectors, double bias,
                                   int want_min, int relu, double *y, uint8_t *code)
    void skc_pool_taps_avg_row_f(const float *rows, Py_ssize_t tap_stride, int n_taps,
                                 Py_ssize_t n_vectors, float bias, int relu, float *y,
                                 uint8_t *code)
    void skc_pool_taps_avg_row_d(const double *rows, Py_ssize_t tap_stride, int n_taps,
                                 Py_ssize_t n_vectors, double bias, int relu, double *y,
                                 uint8_t *code)
    void skc_relu_backward_f(const float *grad, const float *out, Py_ssize_t n,
                             float *dst)
    void skc_relu_backward_d(const double *grad, const double *out, Py_ssize_t n,
                             double *dst)


cdef inline void pool2x2_codes_row(const floating *row, Py_ssize_t pitch,
                                   Py_ssize_t n_vectors, floating bias, bint want_min,
                                   bint relu, floating *y, uint8_t *code) noexcept nogil:
    """One row of 2x2/stride-2 windows, each cell plus ``bias``: see
    ``skc_pool2x2_codes_row`` in include/pool/poolkernels.h."""
    if floating is float:
        skc_pool2x2_codes_row_f(row, pitch, n_vectors, bias, want_min, relu, y, code)
    else:
        skc_pool2x2_codes_row_d(row, pitch, n_vectors, bias, want_min, relu, y, code)
