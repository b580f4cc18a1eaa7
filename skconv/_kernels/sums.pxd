# Shared by the kernels (conv.pyx, dense.pyx, norm.pyx, pool.pyx): fixed-order sums behind
# their thread-count-independent reductions: the rows of a matrix in order, and runs
# of cells in lanes.

from cython cimport floating


cdef inline void sum_rows_in_order(const floating *rows,  # IN  (n_rows, n_cols)
                                   Py_ssize_t n_rows, Py_ssize_t n_cols,
                                   Py_ssize_t row_stride,  # IN  >= n_cols
                                   floating *total) noexcept nogil:  # OUT (n_cols,)
    """total = rows[0] + rows[1] + ..., added one row after another (n_rows >= 1);
    row ``i`` starts at ``rows + i * row_stride`` (a column block of a wider matrix
    when ``row_stride > n_cols``)."""
    cdef Py_ssize_t i, j
    for j in range(n_cols):
        total[j] = rows[j]
    for i in range(1, n_rows):
        for j in range(n_cols):
            total[j] = total[j] + rows[i * row_stride + j]


# Sums of one contiguous run of cells in double, as 8 interleaved partial sums (cell
# i into sum i % 8) added pairwise at the end: ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)).
# The order is fixed, so the bits do not depend on the thread count; the partial sums
# are independent chains, so the adds run side by side instead of each waiting on the
# one before (a single running sum costs one add latency per cell). The loop is C, in
# vectors of 8 cells on every CPU clone (include/norm/normkernels.h, which also holds
# batch normalisation's other lane sums).
cdef extern from "norm/normkernels.h" nogil:
    double skc_norm_sum_f(const float *x, Py_ssize_t n)
    double skc_norm_sum_d(const double *x, Py_ssize_t n)


cdef inline double lane_sum(const floating *x, Py_ssize_t n) noexcept nogil:
    """sum(x[0:n]) in double, in lanes (see above)."""
    if floating is float:
        return skc_norm_sum_f(x, n)
    else:
        return skc_norm_sum_d(x, n)
