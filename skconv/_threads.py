"""Thread-count rule shared by every public entry point (scikit-learn's ``n_jobs``)."""

import numbers
import os

from ._build_config import OPENMP
from ._openmp_helpers import _openmp_max_threads


def openmp_enabled():
    """Whether the compiled kernels use OpenMP.

    Returns
    -------
    bool
        False when the package was built without OpenMP; every kernel then runs on one
        thread whatever ``n_jobs`` says.
    """
    return OPENMP


def _usable_cpu_count():
    # sched_getaffinity respects taskset/cgroup cpusets; os.cpu_count does not.
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


def effective_n_threads(n_jobs):
    """Number of OpenMP threads a kernel call may use.

    Parameters
    ----------
    n_jobs : int or None
        scikit-learn's convention: None or -1 means every usable core, as limited by
        ``OMP_NUM_THREADS`` and threadpoolctl (so a nested joblib worker stays within
        its share); a positive int means that many threads; ``-2`` all but one, and so
        on. Zero is an error.

    Returns
    -------
    int
        At least 1. Always 1 when the package was built without OpenMP.
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
    ):
        raise TypeError(f"n_jobs must be None or an int, got {n_jobs!r}")
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, -1 or a positive int")
    if not OPENMP:
        return 1
    max_threads = min(_openmp_max_threads(), _usable_cpu_count())
    if n_jobs is None or n_jobs == -1:
        return max_threads
    if n_jobs < 0:
        return max(max_threads + 1 + int(n_jobs), 1)
    return int(n_jobs)


_BLAS_CONTROLLER = None


def single_threaded_blas():
    """Context manager limiting BLAS to one thread while our OpenMP threads call it.

    The kernels call ``sgemm``/``dgemm`` from inside ``prange``; a multi-threaded BLAS
    there would put ``n_threads * blas_threads`` threads on the cores. The
    ``ThreadpoolController`` is built once, because scanning the loaded libraries is
    what costs.
    """
    global _BLAS_CONTROLLER
    if _BLAS_CONTROLLER is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_CONTROLLER = ThreadpoolController()
    return _BLAS_CONTROLLER.limit(limits=1, user_api="blas")


# Below this many multiply-adds per thread, waking another OpenMP thread costs more
# than it saves (and on a loaded machine a call can wait for a free core).
MIN_WORK_PER_THREAD = 200_000


def threads_for_work(n_threads, work):
    """Cap ``n_threads`` so that each thread gets at least ``MIN_WORK_PER_THREAD``.

    Results do not depend on the thread count (the kernels are bitwise invariant), so
    this only changes speed.
    """
    return max(1, min(n_threads, int(work) // MIN_WORK_PER_THREAD))
