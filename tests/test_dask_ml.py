"""dask-ml on a loopback Dask cluster: training by ``partial_fit`` over the blocks of a
dask array (``Incremental``) and prediction on the workers (``ParallelPostFit``).

Needs the optional extra ``distributed`` (dask.distributed and dask-ml); skipped
without it. One in-process ``LocalCluster`` (no nanny, so nothing is written to this
process's environment; TCP on 127.0.0.1, no dashboard) serves the module.

dask-ml takes 2-D arrays only (dask/dask-ml#972: it builds block keys and predict
metadata for two axes), so images, signals and volumes go in flattened,
``dX.reshape(n, -1)`` - free when only the sample axis is chunked - with
``image_shape`` telling the estimator the shape of a sample.
"""

import logging
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning

from skconv import ConvNetClassifier

pytest.importorskip("distributed", reason="needs the 'distributed' extra")
pytest.importorskip("dask_ml", reason="needs the 'distributed' extra (dask-ml)")
import dask.array as da  # noqa: E402
from dask.distributed import get_task_stream  # noqa: E402
from dask_ml.wrappers import Incremental, ParallelPostFit  # noqa: E402

pytestmark = pytest.mark.distributed

TIMEOUT = 60
BLOCK = 32
# n_jobs=1: the workers are threads of this process, each fit one OpenMP thread.
PARAMS = dict(filters=(2, 3), kernel_size=3, hidden_layer_sizes=(6,), batch_size=16,
              random_state=0, n_jobs=1)
CLASSES = [0, 1, 2]


@pytest.fixture(scope="module")
def client():
    from dask.distributed import Client, LocalCluster

    logger = logging.getLogger("distributed")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        # processes=False needs protocol="tcp://" with a host: the in-process
        # transport takes no host address.
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                          host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, \
                Client(cluster, timeout=TIMEOUT) as dask_client:
            yield dask_client
    finally:
        logger.setLevel(level)


@pytest.fixture(scope="module")
def images():
    rng = np.random.RandomState(0)
    X = rng.rand(3 * BLOCK, 1, 8, 8).astype(np.float32)
    y = rng.randint(0, 3, len(X))
    return X, y


def _partial_fit_in_order(X, y, **params):
    """The reference: partial_fit over the blocks, in order, here."""
    model = ConvNetClassifier(**{**PARAMS, **params})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for start in range(0, len(X), BLOCK):
            model.partial_fit(X[start:start + BLOCK], y[start:start + BLOCK],
                              classes=CLASSES)
    return model


def _assert_same_model(a, b, X):
    for name in ("conv_weights_", "conv_biases_", "coefs_", "intercepts_"):
        for p, q in zip(getattr(a, name), getattr(b, name)):
            assert_array_equal(p, q, err_msg=name)
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_incremental_equals_partial_fit_over_the_blocks(client, images):
    X, y = images
    flat = X.reshape(len(X), -1)
    expected = _partial_fit_in_order(flat, y)
    dX = da.from_array(flat, chunks=(BLOCK, -1))
    dy = da.from_array(y, chunks=BLOCK)
    # shuffle_blocks=False: the blocks in order (dask-ml's default shuffles them).
    incremental = Incremental(ConvNetClassifier(**PARAMS), shuffle_blocks=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        incremental.fit(dX, dy, classes=CLASSES)
    assert incremental.estimator_.image_shape_ == (1, 8, 8)
    _assert_same_model(incremental.estimator_, expected, flat)


def test_nd_stack_trains_flattened_with_image_shape(client, images):
    # An N-d stack chunked along samples, flattened blockwise for dask-ml; the
    # reference trains on the N-d blocks themselves.
    X, y = images
    expected = _partial_fit_in_order(X, y)
    dX = da.from_array(X, chunks=(BLOCK, -1, -1, -1))
    dy = da.from_array(y, chunks=BLOCK)
    flat = dX.reshape(dX.shape[0], -1)
    assert flat.numblocks == (dX.numblocks[0], 1)
    incremental = Incremental(ConvNetClassifier(image_shape=X.shape[1:], **PARAMS),
                              shuffle_blocks=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        incremental.fit(flat, dy, classes=CLASSES)
    _assert_same_model(incremental.estimator_, expected, X)


def test_parallel_post_fit_predicts_as_locally(client, images):
    X, y = images
    model = _partial_fit_in_order(X, y)
    dX = da.from_array(X, chunks=(BLOCK, -1, -1, -1)).reshape(len(X), -1)
    wrapped = ParallelPostFit(model)
    with get_task_stream(client) as tasks:
        assert_array_equal(wrapped.predict(dX).compute(), model.predict(X))
        assert_array_equal(wrapped.predict_proba(dX).compute(), model.predict_proba(X))
    # One task per block and method at least, run by the cluster's workers.
    assert {task["worker"] for task in tasks.data} <= set(client.scheduler_info()["workers"])
    assert len(tasks.data) >= 2 * dX.numblocks[0]
    assert wrapped.score(dX, da.from_array(y, chunks=BLOCK)) == model.score(X, y)
