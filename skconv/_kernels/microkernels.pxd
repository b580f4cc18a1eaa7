# The register-blocked micro-kernels of include/conv/microkernels.h (what they compute
# and their determinism are described there), for the kernels that use them:
# conv.pyx (convolutions) and dense.pyx (the dense forward). ``rowgemm``,
# ``rowgemm_pack`` and ``densegemm`` pick the float or double one for a fused
# ``floating`` caller.

from cython cimport floating

cdef extern from "conv/microkernels.h" nogil:
    enum: SKC_SLACK
    void skc_rowgemm_pack_f(Py_ssize_t M, Py_ssize_t K, const float *A,
                            Py_ssize_t a_row, Py_ssize_t a_col, float *A_packed)
    void skc_rowgemm_f(Py_ssize_t M, Py_ssize_t n_vec, const Py_ssize_t *vec_at,
                       Py_ssize_t K, const float *A_packed,
                       const float *B, const Py_ssize_t *b_off,
                       float *C, Py_ssize_t ldc, int accumulate)
    void skc_rowgemm_pack_d(Py_ssize_t M, Py_ssize_t K, const double *A,
                            Py_ssize_t a_row, Py_ssize_t a_col, double *A_packed)
    void skc_rowgemm_d(Py_ssize_t M, Py_ssize_t n_vec, const Py_ssize_t *vec_at,
                       Py_ssize_t K, const double *A_packed,
                       const double *B, const Py_ssize_t *b_off,
                       double *C, Py_ssize_t ldc, int accumulate)
    void skc_densegemm_f(Py_ssize_t M, Py_ssize_t n_vec, Py_ssize_t K,
                         const float *A, Py_ssize_t lda, const float *B, Py_ssize_t ldb,
                         float *C, Py_ssize_t ldc, int accumulate)
    void skc_densegemm_d(Py_ssize_t M, Py_ssize_t n_vec, Py_ssize_t K,
                         const double *A, Py_ssize_t lda, const double *B,
                         Py_ssize_t ldb, double *C, Py_ssize_t ldc, int accumulate)
    void skc_wgrad_f(Py_ssize_t R, Py_ssize_t DV, Py_ssize_t n_pos,
                     const Py_ssize_t *pos, const float *B, const Py_ssize_t *b_off,
                     const float *G, Py_ssize_t ldg, float *W, Py_ssize_t ldw)
    void skc_wgrad_d(Py_ssize_t R, Py_ssize_t DV, Py_ssize_t n_pos,
                     const Py_ssize_t *pos, const double *B, const Py_ssize_t *b_off,
                     const double *G, Py_ssize_t ldg, double *W, Py_ssize_t ldw)
    void skc_wgrad_wide_f(Py_ssize_t D, Py_ssize_t R, Py_ssize_t Q,
                          const float *G, Py_ssize_t ldg,
                          const float *B, const Py_ssize_t *b_off, float *ACC)
    void skc_wgrad_wide_d(Py_ssize_t D, Py_ssize_t R, Py_ssize_t Q,
                          const double *G, Py_ssize_t ldg,
                          const double *B, const Py_ssize_t *b_off, double *ACC)
    void skc_deinterleave_f(const float *src, Py_ssize_t n_groups, Py_ssize_t S,
                            float *dst, Py_ssize_t ld)
    void skc_deinterleave_d(const double *src, Py_ssize_t n_groups, Py_ssize_t S,
                            double *dst, Py_ssize_t ld)


cdef inline void rowgemm(Py_ssize_t M, Py_ssize_t n_vec, const Py_ssize_t *vec_at,
                         Py_ssize_t K, const floating *A_packed,
                         const floating *B, const Py_ssize_t *b_off,
                         floating *C, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C[i, p] (+)= sum_k A[i, k] * B[b_off[k] + p] for p in the vectors starting at
    vec_at[:n_vec], A packed by ``rowgemm_pack``."""
    if floating is float:
        skc_rowgemm_f(M, n_vec, vec_at, K, A_packed, B, b_off, C, ldc, accumulate)
    else:
        skc_rowgemm_d(M, n_vec, vec_at, K, A_packed, B, b_off, C, ldc, accumulate)


cdef inline void rowgemm_pack(Py_ssize_t M, Py_ssize_t K, const floating *A,
                              Py_ssize_t a_row, Py_ssize_t a_col,
                              floating *A_packed) noexcept nogil:
    """A[i*a_row + k*a_col] (i < M, k < K) packed for ``rowgemm`` (M*K values)."""
    if floating is float:
        skc_rowgemm_pack_f(M, K, A, a_row, a_col, A_packed)
    else:
        skc_rowgemm_pack_d(M, K, A, a_row, a_col, A_packed)


cdef inline void densegemm(Py_ssize_t M, Py_ssize_t n_vec, Py_ssize_t K,
                           const floating *A, Py_ssize_t lda,
                           const floating *B, Py_ssize_t ldb,
                           floating *C, Py_ssize_t ldc, bint accumulate) noexcept nogil:
    """C[i, p] (+)= sum_k A[i*lda + k] * B[k*ldb + p] for p < n_vec vectors, both
    operands read in place."""
    if floating is float:
        skc_densegemm_f(M, n_vec, K, A, lda, B, ldb, C, ldc, accumulate)
    else:
        skc_densegemm_d(M, n_vec, K, A, lda, B, ldb, C, ldc, accumulate)
