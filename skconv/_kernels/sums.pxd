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


# Sums of one contiguous run of cells in double, as SUM_LANES interleaved partial sums
# (cell i into sum i % SUM_LANES) added pairwise at the end. The order is fixed, so
# the bits do not depend on the thread count; the partial sums are independent
# chains, so the adds run side by side instead of each waiting on the one before
# (a single running sum costs one add latency per cell).
cdef enum:
    SUM_LANES = 8


cdef inline double _add_lanes(const double *acc) noexcept nogil:
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]))


cdef inline double lane_sum(const floating *x, Py_ssize_t n) noexcept nogil:
    """sum(x[0:n]) in double, in lanes (see above)."""
    cdef double acc[SUM_LANES]
    cdef Py_ssize_t i, j, n_main = n - n % SUM_LANES
    for j in range(SUM_LANES):
        acc[j] = 0
    for i in range(n_main // SUM_LANES):
        for j in range(SUM_LANES):
            acc[j] = acc[j] + x[i * SUM_LANES + j]
    for i in range(n_main, n):
        acc[i - n_main] = acc[i - n_main] + x[i]
    return _add_lanes(acc)


cdef inline double lane_sum_squared_deviations(const floating *x, Py_ssize_t n,
                                               double center) noexcept nogil:
    """sum((x[0:n] - center) ** 2) in double, in lanes."""
    cdef double acc[SUM_LANES]
    cdef double deviation
    cdef Py_ssize_t i, j, n_main = n - n % SUM_LANES
    for j in range(SUM_LANES):
        acc[j] = 0
    for i in range(n_main // SUM_LANES):
        for j in range(SUM_LANES):
            deviation = x[i * SUM_LANES + j] - center
            acc[j] = acc[j] + deviation * deviation
    for i in range(n_main, n):
        deviation = x[i] - center
        acc[i - n_main] = acc[i - n_main] + deviation * deviation
    return _add_lanes(acc)


cdef struct SumAndDot:
    double sum
    double dot


cdef inline SumAndDot lane_sum_and_dot(const floating *a, const floating *b,
                                       Py_ssize_t n) noexcept nogil:
    """``sum(a[0:n])`` and ``sum(a[0:n] * b[0:n])`` in double, in lanes, in one pass.

    Returned by value: in a ``prange`` body the assignment of the result makes the
    variable private to each thread (results written through a pointer would go to
    a variable the threads share).
    """
    cdef double acc[SUM_LANES]
    cdef double prod[SUM_LANES]
    cdef SumAndDot result
    cdef Py_ssize_t i, j, n_main = n - n % SUM_LANES
    for j in range(SUM_LANES):
        acc[j] = 0
        prod[j] = 0
    for i in range(n_main // SUM_LANES):
        for j in range(SUM_LANES):
            acc[j] = acc[j] + a[i * SUM_LANES + j]
            prod[j] = prod[j] + <double> a[i * SUM_LANES + j] * b[i * SUM_LANES + j]
    for i in range(n_main, n):
        acc[i - n_main] = acc[i - n_main] + a[i]
        prod[i - n_main] = prod[i - n_main] + <double> a[i] * b[i]
    result.sum = _add_lanes(acc)
    result.dot = _add_lanes(prod)
    return result
