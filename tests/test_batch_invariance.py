"""A sample's prediction does not depend on the batch it is predicted in.

Serving one request at a time, predicting a dask array block by block and predicting
offline must give the same bits: every layer computes each sample from that sample
alone (the dense layers sum in a fixed order in skconv's own kernel, not BLAS, whose
summation follows the matrix sizes). Checked on single rows, random subsets and
permutations, more samples than one internal predict batch, both dtypes, any
``n_jobs``, and the three estimators on 1-D, 2-D and 3-D inputs.
"""

import numpy as np
import pytest
from numpy.testing import assert_array_equal

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import quiet_fit
except ImportError:
    from _estimator_helpers import quiet_fit

# (estimator, the methods whose rows are compared, input shape of one sample, extra
# parameters): strided and 'same' convolutions, average pooling, several channels.
CASES = [
    (ConvNetClassifier, ("predict_proba", "predict"), (1, 12, 12), {}),
    (ConvNetClassifier, ("predict_proba",), (3, 11, 10),
     dict(stride=2, padding="same", pooling="avg")),
    (ConvNetClassifier, ("predict_proba",), (2, 40), dict(kernel_size=5)),
    (ConvNetRegressor, ("predict",), (1, 12, 12), {}),
    (ConvNetRegressor, ("predict",), (1, 8, 8, 8), dict(kernel_size=3)),
    (ConvNetTransformer, ("transform",), (1, 12, 12), {}),
]


def _data(shape, n, seed):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n,) + shape)
    y = (X.reshape(n, -1).mean(axis=1) > 0).astype(int)
    return X, y


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("cls, methods, shape, params", CASES,
                         ids=[f"{c[0].__name__}-{'x'.join(map(str, c[2]))}" for c in CASES])
def test_rows_do_not_depend_on_the_batch(cls, methods, shape, params, dtype):
    X, y = _data(shape, 60, seed=0)
    target = y + 0.5 * X.reshape(len(X), -1)[:, 0] if cls is ConvNetRegressor else y
    est = cls(filters=(4, 6), hidden_layer_sizes=(12,), max_iter=3, random_state=0,
              batch_size=16, **params)
    quiet_fit(est, X.astype(dtype), target)
    # More samples than the network's own predict batch (512), new to the model.
    X_new, _ = _data(shape, 1100, seed=1)
    X_new = X_new.astype(dtype)
    rng = np.random.default_rng(2)
    for method in methods:
        predict = getattr(est, method)
        whole = predict(X_new)
        for i in rng.choice(len(X_new), size=8, replace=False):
            assert_array_equal(predict(X_new[i:i + 1]), whole[i:i + 1], err_msg=method)
        for _ in range(3):
            rows = rng.choice(len(X_new), size=int(rng.integers(2, 700)), replace=False)
            assert_array_equal(predict(X_new[rows]), whole[rows], err_msg=method)
        order = rng.permutation(len(X_new))
        assert_array_equal(predict(X_new[order]), whole[order], err_msg=method)
        for n_jobs in (1, 2):
            est.set_params(n_jobs=n_jobs)
            assert_array_equal(predict(X_new[:37]), whole[:37], err_msg=method)
        est.set_params(n_jobs=None)
