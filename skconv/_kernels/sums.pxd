# Shared by the kernels (conv.pyx, dense.pyx): the fixed-order sum of a matrix's
# rows behind their thread-count-independent reductions.

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
