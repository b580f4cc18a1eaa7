# Shared by the kernels that call BLAS (conv.pyx, dense.pyx): one typed wrapper of
# scipy's Fortran gemm for float and double.

from cython cimport floating

from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(char transa, char transb, int m, int n, int k,
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
