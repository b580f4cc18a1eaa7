"""OpenMP introspection: how many threads a call may use."""

cdef extern from "common/openmp_compat.h" nogil:
    int skc_omp_max_threads()


def openmp_max_threads():
    """``omp_get_max_threads()``: honours ``OMP_NUM_THREADS`` and threadpoolctl limits.

    1 in a build without OpenMP.
    """
    return skc_omp_max_threads()
