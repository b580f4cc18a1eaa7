"""Distributed hyperparameter search: GridSearchCV on a Dask cluster through joblib.

Needs the optional extra ``distributed`` (``dask[distributed]``); every test skips
without it. One ``LocalCluster`` (2 worker processes with 1 thread each, loopback
only, no dashboard) serves the tests below and is closed even when a test fails;
the README's Dask snippet (which starts its own cluster) runs here too.

What Dask does about threads, and what these tests pin down: a worker started by a
nanny (``LocalCluster(processes=True)``, the ``dask worker`` command) runs with the
environment of the Dask config ``distributed.nanny.pre-spawn-environ``, which by
default sets ``OMP_NUM_THREADS=1`` (and MKL/OpenBLAS to 1) - whatever the worker's
``nthreads`` - unless that variable is already set where the nanny starts. So
``n_jobs=None`` (all usable cores as limited by ``OMP_NUM_THREADS``) gives one
OpenMP thread per task in a worker, and no code in skconv is needed for that.

The nanny sets those variables with ``os.environ.update`` in its own process, which
for a ``LocalCluster`` is this test process; the cluster fixture puts the
environment back afterwards so that later tests (and the subprocesses they start)
do not inherit ``OMP_NUM_THREADS=1``.

The workers import skconv the same way this process did: they are spawned
(multiprocessing's ``spawn``, Dask's default), which hands them this process's
``sys.path``, and the fixture also puts the directory holding the imported skconv
first on the workers' path if it is missing. That covers both an in-place build
(``python -m pytest`` from the repository root) and an installed package; a test
checks that the workers' ``skconv.__file__`` is this process's.
"""

import contextlib
import logging
import os
import pathlib
import re
import sys
import threading
import time
import warnings

import joblib
import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV

import skconv
from skconv import ConvNetClassifier, ConvNetRegressor
from skconv._ops.threads import effective_n_threads

pytestmark = pytest.mark.distributed

# Every blocking call on the cluster (start, client.run, the search, close) is
# bounded by this many seconds; the module takes ~10-20 s on 2 busy cores.
TIMEOUT = 60

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
GRID = {"kernel_size": [3, 5], "padding": ["same", 3]}
ESTIMATOR = dict(random_state=0, max_iter=5)


def _bounded(fn, *args, limit=TIMEOUT, **kwargs):
    """``fn(*args, **kwargs)`` in a daemon thread; fail the test after ``limit`` s.

    A daemon thread (not a concurrent.futures pool, whose threads are joined at
    exit) so that a hung call cannot keep the interpreter alive.
    """
    outcome = {}

    def target():
        try:
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the calling thread
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True,
                              name=f"bounded-{getattr(fn, '__name__', fn)}")
    thread.start()
    thread.join(limit)
    if thread.is_alive():
        pytest.fail(f"{getattr(fn, '__qualname__', fn)} did not finish within "
                    f"{limit} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


@contextlib.contextmanager
def _environ_restored():
    saved = dict(os.environ)
    try:
        yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


@contextlib.contextmanager
def _quiet_logger(name, level=logging.ERROR):
    # LocalCluster(silence_logs=...) only quiets the stream handlers; the scheduler
    # and nannies live in this process and would fill pytest's captured log.
    logger = logging.getLogger(name)
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


# Functions run on the workers (module-level and small: cloudpickle ships them).
def _put_first_on_sys_path(path):
    if path not in sys.path:
        sys.path.insert(0, path)


def _ignore_convergence_warnings():
    warnings.simplefilter("ignore", ConvergenceWarning)


def _worker_report():
    import skconv as worker_skconv
    from skconv._ops.threads import effective_n_threads as worker_n_threads

    return {
        "skconv": worker_skconv.__file__,
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "n_threads": worker_n_threads(None),
        "pid": os.getpid(),
    }


def _task_report(_):
    # Runs as a joblib task in a worker's task thread, like GridSearchCV's fits.
    return effective_n_threads(None), os.getpid()


@pytest.fixture(scope="module")
def client():
    pytest.importorskip("distributed")
    from dask.distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        stack.enter_context(_environ_restored())
        stack.enter_context(_quiet_logger("distributed"))
        # The nanny writes its pre-spawn environment (OMP_NUM_THREADS=1, ...,
        # PYTHONHASHSEED) into this process's os.environ: put it back afterwards.
        # Let Dask's default (OMP_NUM_THREADS=1 in the workers) apply: a value set
        # where the nanny starts would win over it.
        for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.pop(key, None)
        cluster = _bounded(
            LocalCluster, n_workers=2, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address=None,
            # No dashboard, but the scheduler still serves /health etc.: on a free
            # loopback port rather than 8787 (a warning when that is taken).
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.CRITICAL,
        )
        stack.callback(_bounded, cluster.close, timeout=TIMEOUT)
        dask_client = _bounded(Client, cluster, timeout=TIMEOUT)
        stack.callback(_bounded, dask_client.close, timeout=TIMEOUT)
        _bounded(dask_client.wait_for_workers, 2, timeout=TIMEOUT)
        # (timeout= goes to Dask; _bounded's own limit is TIMEOUT as well.)
        package_root = os.path.dirname(os.path.dirname(skconv.__file__))
        _bounded(dask_client.run, _put_first_on_sys_path, package_root)
        _bounded(dask_client.run, _ignore_convergence_warnings)
        yield dask_client


@pytest.fixture(scope="module")
def digits_small():
    X, y = load_digits(return_X_y=True)
    return (X[:300] / 16).astype(np.float32), y[:300]


def _search(n_jobs, cls=ConvNetClassifier):
    return GridSearchCV(cls(**ESTIMATOR), GRID, cv=2, n_jobs=n_jobs)


def _fit_on_dask(search, X, y):
    # joblib's backend setting is per thread: enter it in the thread that fits.
    with joblib.parallel_backend("dask"):
        return search.fit(X, y)


def _readme_dask_blocks():
    text = README.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    return [block for block in blocks if 'parallel_backend("dask")' in block]


@pytest.mark.distributed
def test_readme_distributed_search_runs():
    # The README's snippet starts its own LocalCluster (2 workers, loopback, no
    # dashboard). It runs here, before the module's cluster starts, with the
    # environment put back afterwards (tests/test_readme.py leaves it out: the
    # first CI stage has no Dask).
    pytest.importorskip("distributed")
    blocks = _readme_dask_blocks()
    assert blocks, ("README.md has no Python block using "
                    "joblib.parallel_backend(\"dask\")")
    for index, block in enumerate(blocks):
        code = compile(block, f"README.md dask block {index}", "exec")
        with _environ_restored(), _quiet_logger("distributed"), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            _bounded(exec, code, {"__name__": "__readme__"})


@pytest.mark.distributed
def test_workers_import_this_skconv_and_use_one_thread(client):
    pytest.importorskip("distributed")
    reports = _bounded(client.run, _worker_report)
    assert len(reports) == 2
    for address, report in reports.items():
        assert report["skconv"] == skconv.__file__, address
        # Dask's nanny default; n_jobs=None follows it.
        assert report["OMP_NUM_THREADS"] == "1", address
        assert report["n_threads"] == 1, address
    assert len({report["pid"] for report in reports.values()}) == 2


@pytest.mark.distributed
def test_joblib_tasks_on_workers_use_one_thread(client):
    # The same path as GridSearchCV's fits: joblib.Parallel with the dask backend,
    # each call in a worker's task thread.
    pytest.importorskip("distributed")

    def run():
        with joblib.parallel_backend("dask"):
            return joblib.Parallel(n_jobs=-1)(
                joblib.delayed(_task_report)(i) for i in range(8))

    results = _bounded(run)
    assert [n for n, _ in results] == [1] * 8
    assert os.getpid() not in {pid for _, pid in results}


@pytest.mark.distributed
@pytest.mark.parametrize("cls, method", [
    (ConvNetClassifier, "predict_proba"),
    # The regressor's R^2 shows every bit of the predictions (the classifier's accuracy
    # does not). The local fits run in a Python thread other than the main one
    # (_bounded), where single_threaded_blas must still hold BLAS to one thread.
    (ConvNetRegressor, "predict"),
])
def test_grid_search_on_dask_equals_a_local_run(client, digits_small, cls, method):
    pytest.importorskip("distributed")
    from dask.distributed import get_task_stream

    X, y = digits_small
    if cls is ConvNetRegressor:
        y = y / 3.0  # the digit's value
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        local = _bounded(_search(n_jobs=1, cls=cls).fit, X, y)
    local_time = time.perf_counter() - start

    start = time.perf_counter()
    with get_task_stream(client) as task_stream, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # the refit runs here
        remote = _bounded(_fit_on_dask, _search(n_jobs=-1, cls=cls), X, y)
    remote_time = time.perf_counter() - start

    # The fits ran on the workers, not here.
    workers = {task["worker"] for task in task_stream.data}
    assert workers and workers <= set(client.scheduler_info()["workers"])
    print(f"GridSearchCV({cls.__name__}), {len(local.cv_results_['params'])} "
          f"candidates x 2 folds: "
          f"local (n_jobs=1, {effective_n_threads(None)} OpenMP threads) "
          f"{local_time:.1f} s; dask (2 workers x 1 thread, {len(workers)} used) "
          f"{remote_time:.1f} s")

    # Bitwise the same results: random_state fixes everything, and the kernels do
    # not depend on the thread count (one thread on the workers, all cores here).
    keys = ["params", "mean_test_score", "std_test_score", "rank_test_score"]
    keys += [f"split{i}_test_score" for i in range(2)]
    for key in keys:
        if key == "params":
            assert remote.cv_results_[key] == local.cv_results_[key]
        else:
            assert_array_equal(remote.cv_results_[key], local.cv_results_[key],
                               err_msg=key)
    for name in GRID:
        assert_array_equal(remote.cv_results_[f"param_{name}"],
                           local.cv_results_[f"param_{name}"])
    assert np.isfinite(local.cv_results_["mean_test_score"]).all()
    assert remote.best_params_ == local.best_params_
    assert_array_equal(getattr(remote.best_estimator_, method)(X),
                       getattr(local.best_estimator_, method)(X))

