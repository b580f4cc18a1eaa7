"""Tests for skconv._ops.threads: the thread-count rule, across processes and limits."""

import multiprocessing
import os
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal

import skconv
from skconv import ConvNetClassifier, ops
from skconv._ops.threads import MIN_WORK_PER_THREAD, _usable_cpu_count, effective_n_threads

needs_two_cores = pytest.mark.skipif(
    not skconv.openmp_enabled() or _usable_cpu_count() < 2,
    reason="needs an OpenMP build and two usable cores",
)
needs_fork = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="no fork here")


def _conv_inputs():
    # Enough work for two threads (threads_for_work) and a result to compare.
    rng = np.random.RandomState(0)
    return rng.standard_normal((8, 3, 32, 32)), rng.standard_normal((8, 3, 5, 5))


def _conv_in_child(x, w, n_jobs):
    """Run in a forked child: two multi-threaded convolutions, the warnings seen."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = ops.conv(x, w, n_jobs=n_jobs)
        ops.conv(x, w, n_jobs=n_jobs)
        n_threads = effective_n_threads(n_jobs)
    return y, n_threads, [(w.category.__name__, str(w.message)) for w in caught]


def _fit_in_child(X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf = ConvNetClassifier(filters=(2,), hidden_layer_sizes=(4,), max_iter=2,
                                random_state=0).fit(X, y)
    return clf.predict_proba(X)


# Python 3.12+ warns that fork in a multi-threaded process may deadlock; that is the
# very case under test.
@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@needs_fork
@needs_two_cores
def test_forked_child_runs_on_one_thread_instead_of_hanging():
    x, w = _conv_inputs()
    # The parent starts an OpenMP team of two first: its pool is what a forked
    # child inherits without the threads (a bare child would hang in this call).
    assert effective_n_threads(2) == 2
    expected = ops.conv(x, w, n_jobs=2)
    with multiprocessing.get_context("fork").Pool(1) as pool:
        # A timeout, so that a regression fails instead of hanging the test run.
        y, n_threads, caught = pool.apply_async(_conv_in_child, (x, w, 2)).get(60)
    assert_array_equal(y, expected)  # bitwise: results do not depend on threads
    assert n_threads == 1
    # One warning for the two calls, saying why and what to do instead.
    assert len(caught) == 1, caught
    category, message = caught[0]
    assert category == "RuntimeWarning"
    assert "one thread instead of 2" in message and "fork" in message
    assert "spawn" in message
    # The parent is not affected by its child.
    assert effective_n_threads(2) == 2


@pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")
@needs_fork
@needs_two_cores
def test_estimator_fits_in_a_forked_child():
    # The estimator decides its thread count in the child (n_jobs=None: all cores).
    rng = np.random.RandomState(0)
    X, y = rng.rand(40, 36), np.arange(40) % 2
    expected = _fit_in_child(X, y)  # the parent runs multi-threaded first
    with multiprocessing.get_context("fork").Pool(1) as pool:
        proba = pool.apply_async(_fit_in_child, (X, y)).get(60)
    assert_array_equal(proba, expected)


@needs_fork
def test_fork_hook_leaves_single_thread_calls_silent():
    # n_jobs=1 in a child needs no fallback, hence no warning.
    x, w = _conv_inputs()
    with multiprocessing.get_context("fork").Pool(1) as pool:
        _, n_threads, caught = pool.apply_async(_conv_in_child, (x, w, 1)).get(60)
    assert n_threads == 1
    assert caught == []


# ---------------------------------------------------------------------------------
# n_jobs above the cores
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("n_jobs", [10**6, 2**40, 2**70])
def test_huge_n_jobs_is_capped_at_the_usable_cores(n_jobs):
    expected = _usable_cpu_count() if skconv.openmp_enabled() else 1
    assert effective_n_threads(n_jobs) == expected


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="Linux only")
@pytest.mark.skipif(not skconv.openmp_enabled(), reason="serial build: no threads")
def test_huge_n_jobs_starts_no_more_threads_than_cores():
    def os_threads():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("Threads:"))

    cores = _usable_cpu_count()
    # Work for cores + 8 threads, so that only the cap on n_jobs limits the team.
    n = (cores + 8) * MIN_WORK_PER_THREAD // (3 * 9 * 8 * 30 * 30) + 1
    x = np.random.RandomState(0).standard_normal((n, 3, 32, 32))
    w = np.random.RandomState(1).standard_normal((8, 3, 3, 3))
    before = os_threads()
    y = ops.conv(x, w, n_jobs=10**6)
    # OpenMP keeps its pool's threads after the call; a team of at most `cores`
    # adds at most cores - 1 of them (the calling thread is the first).
    assert os_threads() <= before + cores - 1
    assert_array_equal(y, ops.conv(x, w, n_jobs=1))


def test_estimator_with_huge_n_jobs_fits():
    # Was an OverflowError from the compiled layer (2**40 does not fit a C int).
    rng = np.random.RandomState(0)
    X, y = rng.rand(20, 16), np.arange(20) % 2
    params = dict(filters=(2,), hidden_layer_sizes=(4,), max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        huge = ConvNetClassifier(n_jobs=2**40, **params).fit(X, y)
        one = ConvNetClassifier(n_jobs=1, **params).fit(X, y)
    assert_array_equal(huge.predict_proba(X), one.predict_proba(X))


@pytest.mark.parametrize("outer_limit", [None, 2])
def test_blas_is_single_threaded_in_any_python_thread(outer_limit):
    # threadpoolctl lets only the first Python thread that sets a pthreads OpenBLAS
    # count set it again; single_threaded_blas must hold in a worker thread too,
    # after the main thread used it, and while the main thread holds a limit of its
    # own (outer_limit), or a fit there runs BLAS on several threads and its last
    # bits differ from the same fit in the main thread.
    import threading

    from threadpoolctl import threadpool_limits

    from skconv._ops.dense import dense_backward
    from skconv._ops.threads import _blas_libraries, single_threaded_blas

    if not _blas_libraries():
        pytest.skip("threadpoolctl finds no BLAS library")
    rng = np.random.default_rng(0)
    x, w, grad_y = (rng.standard_normal(s).astype(np.float32)
                    for s in ((150, 64), (64, 120), (150, 120)))

    def gradients(seen):
        with single_threaded_blas():
            seen.append([library.get_num_threads() for library in _blas_libraries()])
            grad_w, grad_x = np.empty_like(w), np.empty_like(x)
            grad_b = np.empty(120, np.float32)
            dense_backward(grad_y, x, w, grad_w, grad_b, grad_x=grad_x)
        return grad_w, grad_x

    def in_thread(seen):
        results = []
        thread = threading.Thread(target=lambda: results.append(gradients(seen)))
        thread.start()
        thread.join()
        return results[0]

    seen = []
    with threadpool_limits(limits=outer_limit, user_api="blas"):
        here = gradients(seen)
        there = in_thread(seen)
        if outer_limit is not None:
            # The blocks gave the outer limit back.
            assert [library.get_num_threads() for library in _blas_libraries()] == [
                outer_limit] * len(_blas_libraries())
    assert seen == [[1] * len(_blas_libraries())] * 2
    for a, b in zip(here, there):
        assert_array_equal(a, b)


def test_thread_scratch_is_kept_per_thread_and_name():
    import threading

    from skconv._ops.threads import MAX_KEPT_SCRATCH_BYTES, thread_scratch

    first = thread_scratch("test-a", 100, np.float32)
    assert first.dtype == np.float32 and first.shape[0] >= 100
    assert thread_scratch("test-a", 50, np.float32) is first  # reused, big enough
    assert thread_scratch("test-a", 100, np.float64) is not first  # per dtype
    assert thread_scratch("test-b", 100, np.float32) is not first  # per name
    grown = thread_scratch("test-a", 1000, np.float32)
    assert grown.shape[0] >= 1000 and thread_scratch("test-a", 10, np.float32) is grown
    # Another Python thread gets its own array: two kernel calls never share one.
    other = []
    thread = threading.Thread(target=lambda: other.append(
        thread_scratch("test-a", 10, np.float32)))
    thread.start()
    thread.join()
    assert other[0] is not grown
    # Beyond the limit, a fresh array each time (nothing kept).
    huge = MAX_KEPT_SCRATCH_BYTES // 4 + 1
    assert thread_scratch("test-c", huge, np.float32) is not thread_scratch(
        "test-c", huge, np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_all_finite_finds_one_bad_value_anywhere_on_any_thread_count(dtype, n_jobs,
                                                                      monkeypatch):
    # The estimators' finiteness check of X: chunks shared out over the threads, so
    # that a single inf or NaN in any chunk (the first, a middle one, the last and
    # short one) is found whatever the thread count (3 on a two-core machine too).
    from skconv._ops.validation import all_finite

    monkeypatch.setattr("skconv._ops.threads._usable_cpu_count", lambda: 4)
    values = np.random.default_rng(0).standard_normal(3 * (1 << 16) + 6).astype(dtype)
    assert all_finite(values, n_jobs)
    assert all_finite(values.reshape(-1, 6)[:, ::2], n_jobs)  # strided view: copied
    assert all_finite(np.empty(0, dtype), n_jobs)
    for where in (0, 1 << 16, 2 * (1 << 16) + 77, values.size - 1):
        for bad in (np.nan, np.inf, -np.inf):
            broken = values.copy()
            broken[where] = bad
            assert not all_finite(broken, n_jobs), (where, bad)
            assert not all_finite(broken.reshape(2, 3, -1), n_jobs), (where, bad)
