"""OpenMP introspection: whether the kernels were built with OpenMP, and how many
threads a call may use."""


cimport openmp


def _openmp_max_threads():
    """``omp_get_max_threads()``: honours ``OMP_NUM_THREADS`` and threadpoolctl limits.

    Without OpenMP support, Cython's ``openmp`` stub returns 1.
    """
    return openmp.omp_get_max_threads()
