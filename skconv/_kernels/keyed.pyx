# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""Kernels of the draws keyed by a sample's content (``skconv._ops.keyed``): one hash
per row of a minibatch, and uniform numbers from those hashes.

Each row is computed on its own, so the results never depend on the thread count.
Driven by ``skconv._ops.keyed``, which checks the arrays.
"""

cimport numpy as cnp
from cython cimport floating
from cython.parallel cimport prange
from libc.stdint cimport uint64_t

cnp.import_array()

cdef extern from *:
    """
    #include <stdint.h>
    #include <string.h>
    /* splitmix64's finaliser (Steele, Lea and Flood, 2014). */
    static inline uint64_t skc_mix64(uint64_t z) {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
        return z ^ (z >> 31);
    }
    #define SKC_GOLDEN 0x9E3779B97F4A7C15ULL
    /* FNV-1a over the float32 bit patterns of a row, in four interleaved lanes
       (word j goes to lane j % 4, so that four multiplies are in flight), the lanes
       then folded into one and mixed with the row's length. float64 rows are
       rounded to float32 first, so that a float64 network and a float32 one see
       the same keys. */
    #define SKC_FNV_OFFSET 0xCBF29CE484222325ULL
    #define SKC_FNV_PRIME 0x100000001B3ULL
    static inline uint64_t skc_fold_lanes(const uint64_t *h, Py_ssize_t n) {
        uint64_t z = h[0];
        for (int k = 1; k < 4; k++) z = (z ^ skc_mix64(h[k])) * SKC_FNV_PRIME;
        return skc_mix64(z + (uint64_t) n * SKC_GOLDEN);
    }
    static inline uint64_t skc_row_key_f(const float *row, Py_ssize_t n) {
        uint64_t h[4] = {SKC_FNV_OFFSET, SKC_FNV_OFFSET, SKC_FNV_OFFSET, SKC_FNV_OFFSET};
        uint32_t w;
        for (Py_ssize_t j = 0; j < n; j++) {
            memcpy(&w, row + j, 4);
            h[j & 3] = (h[j & 3] ^ w) * SKC_FNV_PRIME;
        }
        return skc_fold_lanes(h, n);
    }
    static inline uint64_t skc_row_key_d(const double *row, Py_ssize_t n) {
        uint64_t h[4] = {SKC_FNV_OFFSET, SKC_FNV_OFFSET, SKC_FNV_OFFSET, SKC_FNV_OFFSET};
        uint32_t w;
        float v;
        for (Py_ssize_t j = 0; j < n; j++) {
            v = (float) row[j];
            memcpy(&w, &v, 4);
            h[j & 3] = (h[j & 3] ^ w) * SKC_FNV_PRIME;
        }
        return skc_fold_lanes(h, n);
    }
    /* The top 53 bits as a double in [0, 1), as numpy makes its doubles. */
    static inline double skc_unit(uint64_t z) {
        return (double) (z >> 11) * (1.0 / 9007199254740992.0);
    }
    """
    uint64_t skc_mix64(uint64_t z) nogil
    uint64_t SKC_GOLDEN
    uint64_t skc_row_key_f(const float *row, Py_ssize_t n) nogil
    uint64_t skc_row_key_d(const double *row, Py_ssize_t n) nogil
    double skc_unit(uint64_t z) nogil


def row_keys(const floating[:, ::1] rows, uint64_t[::1] out, int n_threads):
    """``out[i]``: the key of row ``i`` of ``rows`` (its values as float32 bits)."""
    cdef Py_ssize_t i, n = rows.shape[1]
    for i in prange(rows.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        if floating is float:
            out[i] = skc_row_key_f(&rows[i, 0], n)
        else:
            out[i] = skc_row_key_d(&rows[i, 0], n)


def keyed_uniform(const uint64_t[::1] keys, uint64_t key, double[:, ::1] out,
                  int n_threads):
    """``out[i, j]``: a uniform number in [0, 1) from ``keys[i]``, ``key`` and ``j``."""
    cdef Py_ssize_t i, j, n = out.shape[1]
    cdef uint64_t seed
    for i in prange(out.shape[0], nogil=True, schedule="static", num_threads=n_threads):
        seed = skc_mix64(keys[i] ^ key)
        for j in range(n):
            out[i, j] = skc_unit(skc_mix64(seed + <uint64_t> (j + 1) * SKC_GOLDEN))
