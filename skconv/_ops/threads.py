"""Thread policy of the ops layer: ``n_jobs`` to a thread count, the work each thread
must get, and single-threaded BLAS around our own threads.

Every threshold that decides how many threads a call uses lives here. Results never
depend on them (the kernels are bitwise invariant in the thread count); they only
change speed, as measured by ``benchmarks/bench_conv.py`` and ``bench_pool.py``.
"""

import numbers
import os
import threading
import warnings

import numpy as np

from .._kernels.build_config import OPENMP
from .._kernels.openmp_helpers import openmp_max_threads


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


# True in a child process made by fork (os.fork, multiprocessing's and joblib's
# "fork" start method). GNU OpenMP does not survive a fork: the child inherits the
# parent's thread-pool bookkeeping but none of its threads, so the child's first
# parallel region waits forever for them. A team of one never touches the pool,
# so such a child runs every kernel on one thread (PyTorch uses the same hook).
_IN_FORKED_CHILD = False
_FORK_WARNED = False


def _mark_forked_child():
    global _IN_FORKED_CHILD
    _IN_FORKED_CHILD = True


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_mark_forked_child)


def _warn_forked_child(n_threads):
    global _FORK_WARNED
    if not _FORK_WARNED:
        _FORK_WARNED = True
        warnings.warn(
            f"skconv runs on one thread instead of {n_threads} in this process: it "
            f"was started by fork, and OpenMP threads cannot be used after a fork. "
            f"Start workers with the 'spawn' or 'forkserver' method of "
            f"multiprocessing, or joblib's default 'loky' backend, to use several "
            f"threads in each.",
            RuntimeWarning,
            stacklevel=3,
        )


def effective_n_threads(n_jobs):
    """Number of OpenMP threads a kernel call may use.

    Parameters
    ----------
    n_jobs : int or None
        scikit-learn's convention: None or -1 means every usable core, as limited by
        ``OMP_NUM_THREADS`` and threadpoolctl (so a nested joblib worker stays within
        its share); a positive int means that many threads, but never more than the
        usable cores (results do not depend on the count, and more threads than
        cores only slow a call down, or abort the process where the system refuses
        a thread); ``-2`` all but one, and so on. Zero is an error.

    Returns
    -------
    int
        At least 1. Always 1 when the package was built without OpenMP, and in a
        child process started by fork (with a warning the first time it matters).
    """
    if n_jobs is not None and (
        isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral)
    ):
        raise TypeError(f"n_jobs must be None or an int, got {n_jobs!r}")
    if n_jobs == 0:
        raise ValueError("n_jobs == 0 has no meaning; use None, -1 or a positive int")
    if not OPENMP:
        return 1
    if n_jobs == 1:
        # Every kernel call comes here: skip the affinity query when it is not needed.
        return 1
    if n_jobs is not None and n_jobs > 0:
        # Not capped by OMP_NUM_THREADS: an explicit count overrides it, as in
        # scikit-learn; the cores are a hard limit.
        n_threads = min(int(n_jobs), _usable_cpu_count())
    else:
        max_threads = min(openmp_max_threads(), _usable_cpu_count())
        if n_jobs is None or n_jobs == -1:
            n_threads = max_threads
        else:
            n_threads = max(max_threads + 1 + int(n_jobs), 1)
    if _IN_FORKED_CHILD and n_threads > 1:
        _warn_forked_child(n_threads)
        return 1
    return n_threads


_BLAS_LIBRARIES = None


def _blas_libraries():
    """threadpoolctl's controllers of the loaded BLAS libraries, found once.

    Scanning the loaded libraries is what costs in threadpoolctl (about 30
    microseconds per ``threadpool_limits`` call); setting a thread count through a
    found controller is one ctypes call. Found after the conv kernels imported
    ``scipy.linalg.cython_blas``, so SciPy's BLAS is among them.
    """
    global _BLAS_LIBRARIES
    if _BLAS_LIBRARIES is None:
        from threadpoolctl import ThreadpoolController

        _BLAS_LIBRARIES = list(ThreadpoolController().select(user_api="blas").lib_controllers)
    return _BLAS_LIBRARIES


_LIMIT_LOCK = threading.Lock()
_LIMIT_DEPTH = 0  # how many single_threaded_blas blocks are open (any Python thread)
_LIMIT_SAVED = []  # the counts to restore when the outermost block closes


class single_threaded_blas:
    """Context manager limiting BLAS to one thread while our OpenMP threads call it.

    The kernels call ``sgemm``/``dgemm`` from inside ``prange``, and the dense layers
    call BLAS on minibatch-sized matrices where its own threads cost more than they
    save; a multi-threaded BLAS there would also put ``n_threads * blas_threads``
    threads on the cores. Restores the previous counts on exit.

    Blocks nest: only the outermost one sets and restores the counts (a few
    microseconds each), so the estimator wraps a whole epoch and the blocks of the
    network and its layers cost a lock each (a class, not a generator-based
    ``contextlib`` manager: it is entered several times per minibatch). The count is
    process-wide, so the blocks of all Python threads count as one.
    """

    __slots__ = ()

    def __enter__(self):
        global _LIMIT_DEPTH
        with _LIMIT_LOCK:
            if _LIMIT_DEPTH == 0:
                libraries = _blas_libraries()
                _LIMIT_SAVED[:] = [library.get_num_threads() for library in libraries]
                for library, count in zip(libraries, _LIMIT_SAVED):
                    if count != 1:
                        _set_blas_threads(library, 1)
            _LIMIT_DEPTH += 1
        return self

    def __exit__(self, *exc_info):
        global _LIMIT_DEPTH
        with _LIMIT_LOCK:
            _LIMIT_DEPTH -= 1
            if _LIMIT_DEPTH == 0:
                for library, count in zip(_blas_libraries(), _LIMIT_SAVED):
                    if count != 1:
                        _set_blas_threads(library, count)
                    _release_blas_control(library)
        return False


def _set_blas_threads(library, count):
    """Set a BLAS library's thread count from this Python thread, whichever it is.

    threadpoolctl (3.6 and later) lets only one Python thread, the first to set a
    limit, set the count of a pthreads OpenBLAS (its pool is process-wide); from any
    other thread the call silently does nothing. Our blocks are serialized by
    ``_LIMIT_LOCK`` and restore the count on exit, so the thread running one may
    take that control: otherwise a fit in a worker thread (a dask worker, a thread
    pool) ran BLAS on several threads, and its last bits differed from the same fit
    in the main thread.
    """
    library.set_num_threads(count)
    if library.get_num_threads() != count and hasattr(library,
                                                       "clear_controlling_thread"):
        library.clear_controlling_thread(force=True)
        library.set_num_threads(count)


def _release_blas_control(library):
    # Give up the control _set_blas_threads may have taken, as threadpoolctl's own
    # threadpool_limits does when it ends (a no-op when this thread does not hold it).
    if hasattr(library, "clear_controlling_thread"):
        library.clear_controlling_thread()


# Below this many multiply-adds per thread, waking another OpenMP thread costs more
# than it saves (and on a loaded machine a call can wait for a free core).
MIN_WORK_PER_THREAD = 200_000


def threads_for_work(n_threads, work):
    """Cap ``n_threads`` so that each thread gets at least ``MIN_WORK_PER_THREAD``.

    Results do not depend on the thread count (the kernels are bitwise invariant), so
    this only changes speed.
    """
    return max(1, min(n_threads, int(work) // MIN_WORK_PER_THREAD))


# Cells a pooling (or another memory-bound pass) must visit per thread before a
# second thread pays off: waking an OpenMP team costs microseconds on an idle machine
# and milliseconds on a busy one, while such a pass visits about a cell per
# nanosecond. PyTorch's grain size is the same 32k.
MIN_CELLS_PER_THREAD = 32768


def threads_for_cells(n_threads, cells):
    """Cap ``n_threads`` so that each thread visits at least ``MIN_CELLS_PER_THREAD``
    cells (memory-bound passes: pooling, optimizer steps, sums)."""
    return max(1, min(n_threads, int(cells) // MIN_CELLS_PER_THREAD))


# Scratch arrays kept per Python thread: a kernel call runs on one Python thread at a
# time, so a thread's scratch is never shared between two calls in flight.
_SCRATCH = threading.local()
# Bigger scratch is allocated fresh for each call (and freed) rather than kept.
MAX_KEPT_SCRATCH_BYTES = 64 << 20


def thread_scratch(name, size, dtype):
    """A 1-D array of at least ``size`` elements of ``dtype``, kept for the calling
    Python thread under ``name`` and reused by its next calls.

    A fresh array per kernel call pays its page faults every time (glibc hands large
    blocks back to the system when they are freed): the packed rows of a dense
    layer's input cost a third of a signal network's inference that way. The content
    is garbage; the caller overwrites what it reads.
    """
    dtype = np.dtype(dtype)
    if size * dtype.itemsize > MAX_KEPT_SCRATCH_BYTES:
        return np.empty(size, dtype=dtype)
    arrays = _SCRATCH.__dict__.setdefault("arrays", {})
    array = arrays.get((name, dtype))
    if array is None or array.shape[0] < size:
        array = arrays[(name, dtype)] = np.empty(size, dtype=dtype)
    return array
