# Shared by dense.pyx and norm.pyx: the relu that a kernel applies to its own output
# while it is in cache, with the relu layer's values (numpy's maximum(v, 0)).

from cython cimport floating


cdef inline void relu_run(floating *values, Py_ssize_t n) noexcept nogil:
    """relu in place on n contiguous values, as numpy's ``maximum(v, 0)`` computes
    it: negatives and -0 become +0, NaN is kept."""
    cdef Py_ssize_t u
    for u in range(n):
        # A select, not a conditional store, so that the loop vectorises.
        values[u] = 0 if values[u] <= 0 else values[u]
