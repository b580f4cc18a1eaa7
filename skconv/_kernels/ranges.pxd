# Shared by the kernels that walk a window over an axis (conv.pyx, pool.pyx): which
# outputs o of a strided axis put a given tap inside the input, the one formula of
# the valid output range.


cdef inline Py_ssize_t first_valid(Py_ssize_t offset, Py_ssize_t stride,
                                   Py_ssize_t n_out) noexcept nogil:
    """Smallest o in [0, n_out] with o * stride + offset >= 0."""
    cdef Py_ssize_t o
    if offset >= 0:
        return 0
    # ceil(-offset / stride) with positive integers only (cdivision is on).
    o = (-offset + stride - 1) // stride
    return o if o < n_out else n_out


cdef inline Py_ssize_t end_valid(Py_ssize_t offset, Py_ssize_t stride,
                                 Py_ssize_t size, Py_ssize_t n_out) noexcept nogil:
    """Smallest o in [0, n_out] with o * stride + offset >= size (end of the valid run)."""
    cdef Py_ssize_t o
    if offset >= size:
        return 0
    # Valid while o * stride + offset <= size - 1.
    o = (size - 1 - offset) // stride + 1
    return o if o < n_out else n_out
