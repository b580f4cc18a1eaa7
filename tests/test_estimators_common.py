"""What every skconv estimator promises, run on the kinds of targets test_classifier.py
does not cover: the multilabel classifier, the regressor (one and two targets) and the
transformer.

The classifier on 1-D labels has its own, longer versions of these tests in
test_classifier.py; the base class (``skconv._estimators.base``) they all go through
is the same. Each case names its estimator, its targets built from the digits' labels
and the method whose output is its result.
"""

import io
import pickle
import re
from contextlib import redirect_stdout

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import SMALL, digit_labels, quiet_fit
except ImportError:
    from _estimator_helpers import SMALL, digit_labels, quiet_fit

#: name -> (estimator class, targets from the digits' labels, output method)
CASES = {
    "multilabel": (ConvNetClassifier, digit_labels, "predict_proba"),
    "regressor": (ConvNetRegressor, lambda y: y / 3.0, "predict"),
    "regressor_2_targets": (
        ConvNetRegressor, lambda y: np.column_stack([y / 3.0, (y % 3) - 1.0]),
        "predict"),
    "transformer": (ConvNetTransformer, lambda y: y, "transform"),
}

cases = pytest.mark.parametrize("case", sorted(CASES))


def _make(case, **params):
    cls, targets, method = CASES[case]
    return cls(**{**SMALL, **params}), targets, method


def _output(est, method, X):
    return getattr(est, method)(X)


def _weights(est):
    return est.conv_weights_ + est.conv_biases_ + est.coefs_ + est.intercepts_


# ------------------------------------------------------------------------------------
# Reproducibility
# ------------------------------------------------------------------------------------
@cases
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_n_jobs(digits_small, case, dtype):
    X, y = digits_small
    X = X.astype(dtype)
    one, targets, method = _make(case, n_jobs=1)
    two, _, _ = _make(case, n_jobs=2)
    quiet_fit(one, X, targets(y))
    quiet_fit(two, X, targets(y))
    assert one.coefs_[0].dtype == dtype
    for w1, w2 in zip(_weights(one), _weights(two)):
        assert_array_equal(w1, w2)
    assert one.loss_curve_ == two.loss_curve_
    out = _output(one, method, X)
    assert_array_equal(out, _output(two, method, X))
    assert_array_equal(out, _output(two.set_params(n_jobs=1), method, X))


@cases
def test_same_random_state_gives_identical_models(digits_small, case):
    X, y = digits_small
    a, targets, method = _make(case)
    b, _, _ = _make(case)
    c, _, _ = _make(case, random_state=1)
    for est in (a, b, c):
        quiet_fit(est, X, targets(y))
    assert_array_equal(_output(a, method, X), _output(b, method, X))
    assert not np.array_equal(_output(a, method, X), _output(c, method, X))


@cases
@pytest.mark.parametrize("dumps, loads", [
    (pickle.dumps, pickle.loads),
    (lambda est: _joblib_dumps(est), lambda data: joblib.load(io.BytesIO(data))),
], ids=["pickle", "joblib"])
def test_pickle_and_joblib_round_trips(digits_small, case, dumps, loads):
    X, y = digits_small
    est, targets, method = _make(case, warm_start=True)
    quiet_fit(est, X, targets(y))
    restored = loads(dumps(est))
    assert_array_equal(_output(restored, method, X), _output(est, method, X))
    # The exposed weights are the network's, and training goes on alike.
    quiet_fit(est.set_params(max_iter=1), X, targets(y))
    quiet_fit(restored.set_params(max_iter=1), X, targets(y))
    assert_array_equal(_output(restored, method, X), _output(est, method, X))
    assert_array_equal(restored.coefs_[-1], est.coefs_[-1])


def _joblib_dumps(est):
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    return buffer.getvalue()


@cases
def test_clone_gives_an_unfitted_copy(digits_small, case):
    X, y = digits_small
    est, targets, method = _make(case, max_iter=1)
    quiet_fit(est, X, targets(y))
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    with pytest.raises(NotFittedError):
        _output(copy, method, X)


@cases
def test_dtype_policy(digits_small, case):
    X, y = digits_small
    f32, targets, method = _make(case)
    f64, _, _ = _make(case)
    quiet_fit(f32, X.astype(np.float32), targets(y))
    quiet_fit(f64, X, targets(y))
    assert all(w.dtype == np.float32 for w in _weights(f32))
    assert all(w.dtype == np.float64 for w in _weights(f64))
    out32, out64 = _output(f32, method, X), _output(f64, method, X)
    # Predictions and probabilities are float64; features keep the compute dtype.
    assert out32.dtype == (np.float32 if method == "transform" else np.float64)
    assert out64.dtype == np.float64
    # Same seed, same maths: the two agree to float32 rounding.
    assert_allclose(out32, out64, rtol=1e-3, atol=1e-3)


@cases
def test_large_float64_input_trains_as_float32(digits_small, case, monkeypatch):
    # compute_dtype='auto': above AUTO_FLOAT32_SAMPLES samples a float64 X computes in
    # float32, and gives bitwise the model that X.astype(float32) gives. (The limit is
    # lowered here so that the test stays small; the rule is the same.)
    from skconv._estimators import base

    X, y = digits_small
    X, n = X.astype(np.float64), len(X)
    monkeypatch.setattr(base, "AUTO_FLOAT32_SAMPLES", n - 1)
    large64, targets, method = _make(case)
    large32, _, _ = _make(case)
    quiet_fit(large64, X, targets(y))
    quiet_fit(large32, X.astype(np.float32), targets(y))
    assert all(w.dtype == np.float32 for w in _weights(large64))
    for a, b in zip(_weights(large64), _weights(large32)):
        assert_array_equal(a, b)
    assert_array_equal(_output(large64, method, X), _output(large32, method, X))
    # At the limit it stays float64; forced dtypes override the rule either way.
    small, _, _ = _make(case)
    quiet_fit(small, X[:n - 1], targets(y[:n - 1]))
    assert all(w.dtype == np.float64 for w in _weights(small))
    for forced, data in (("float64", X.astype(np.float32)), ("float32", X[:n - 1])):
        est, _, _ = _make(case, compute_dtype=forced)
        quiet_fit(est, data, targets(y[:len(data)]))
        assert all(w.dtype == np.dtype(forced) for w in _weights(est)), forced


def test_compute_dtype_is_validated():
    with pytest.raises(ValueError, match="compute_dtype"):
        ConvNetClassifier(compute_dtype="float16").fit(np.zeros((4, 16)), [0, 1, 0, 1])


# ------------------------------------------------------------------------------------
# Sample weights
# ------------------------------------------------------------------------------------
@cases
def test_sample_weight_two_equals_a_duplicated_sample(case):
    # Full-batch float64 training: weight 2 and a duplicate give the same gradients up
    # to rounding, hence the same model.
    rng = np.random.RandomState(0)
    X = rng.rand(20, 16)
    labels = np.arange(20) % 3
    sw = np.ones(20)
    sw[[0, 5, 11]] = 2
    sw[3] = 0
    repeat = sw.astype(int)
    params = dict(max_iter=20, filters=(3, 4), hidden_layer_sizes=(8,))
    weighted, targets, method = _make(case, **params)
    duplicated, _, _ = _make(case, **params)
    unweighted, _, _ = _make(case, **params)
    quiet_fit(weighted, X, targets(labels), sample_weight=sw)
    quiet_fit(duplicated, np.repeat(X, repeat, axis=0), np.repeat(targets(labels), repeat,
                                                                  axis=0))
    quiet_fit(unweighted, X, targets(labels))
    assert_allclose(_output(weighted, method, X), _output(duplicated, method, X),
                    rtol=1e-7, atol=1e-12)
    assert not np.allclose(_output(unweighted, method, X), _output(weighted, method, X),
                           rtol=1e-4)


# ------------------------------------------------------------------------------------
# Training state
# ------------------------------------------------------------------------------------
@cases
def test_warm_start_continues_training(digits_small, case):
    X, y = digits_small
    est, targets, _ = _make(case, warm_start=True)
    quiet_fit(est, X, targets(y))
    first_curve = list(est.loss_curve_)
    weights = est.coefs_[0]
    quiet_fit(est, X, targets(y))
    assert est.coefs_[0] is weights  # the same network, trained further
    assert est.loss_curve_[:5] == first_curve and len(est.loss_curve_) == 10
    assert est.loss_curve_[5] < first_curve[0]
    assert est.t_ == 10 * len(X)


def _recording(cls):
    """``cls`` keeping the validation set that early stopping held out."""

    def _split_validation(self, X, y, sample_weight):
        parts = cls._split_validation(self, X, y, sample_weight)
        self.recorded_validation = parts[1], parts[3]
        return parts

    return type(f"Recording{cls.__name__}", (cls,),
                {"_split_validation": _split_validation})


@cases
def test_early_stopping_keeps_the_best_epoch(digits_small, case):
    X, y = digits_small
    cls, targets, _ = CASES[case]
    est = _recording(cls)(**{**SMALL, "max_iter": 40}, early_stopping=True,
                          validation_fraction=0.3, n_iter_no_change=3,
                          learning_rate_init=0.01)
    quiet_fit(est, X, targets(y))
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ < est.max_iter
    assert est.best_validation_score_ == max(scores) and scores[-1] < max(scores)
    assert est.best_loss_ is None
    # The model kept is the best epoch's: it scores the best score again.
    X_val, y_val = est.recorded_validation
    assert est._validation_score(X_val, y_val, None, 1) == est.best_validation_score_


@cases
def test_verbose_prints_every_epoch(digits_small, case):
    X, y = digits_small
    est, targets, _ = _make(case, verbose=True)
    out = io.StringIO()
    with redirect_stdout(out):
        quiet_fit(est, X, targets(y))
    assert len(re.findall(r"Iteration \d+, loss = ", out.getvalue())) == 5


# ------------------------------------------------------------------------------------
# scikit-learn integration
# ------------------------------------------------------------------------------------
@cases
def test_grid_search_over_a_pipeline(digits_small, case):
    X, y = digits_small
    est, targets, _ = _make(case)
    steps = [StandardScaler(), est]
    if case == "transformer":  # a transformer is scored by the model after it
        steps.append(LogisticRegression(max_iter=300))
    pipe = make_pipeline(*steps)
    name = type(est).__name__.lower()
    if case == "transformer":
        grid = {f"{name}__feature_layer": [0, "conv"]}
    else:
        grid = {f"{name}__kernel_size": [3, 5]}
    search = GridSearchCV(pipe, grid, cv=2).fit(X * 16, targets(y))
    scores = search.cv_results_["mean_test_score"]
    assert len(scores) == 2 and np.isfinite(scores).all()
    assert search.best_estimator_[1].image_shape_ == (1, 8, 8)


# ------------------------------------------------------------------------------------
# Bad input
# ------------------------------------------------------------------------------------
@cases
@pytest.mark.parametrize("value, message", [
    (np.nan, "Input X contains NaN"),
    (np.inf, "Input X contains infinity"),
])
def test_non_finite_input(digits_small, case, value, message):
    X, y = digits_small
    est, targets, method = _make(case)
    X_bad = X.copy()
    X_bad[3, 7] = value
    with pytest.raises(ValueError, match=message):
        est.fit(X_bad, targets(y))
    quiet_fit(est, X, targets(y))
    with pytest.raises(ValueError, match=message):
        _output(est, method, X_bad)


@cases
def test_wrong_number_of_features(digits_small, case):
    X, y = digits_small
    est, targets, method = _make(case)
    quiet_fit(est, X, targets(y))
    name = type(est).__name__
    with pytest.raises(ValueError, match=f"X has 63 features, but {name} is expecting 64"):
        _output(est, method, X[:, :63])
    with pytest.raises(ValueError, match="samples of shape \\(2, 32\\)"):
        _output(est, method, X.reshape(-1, 2, 32))


@cases
def test_empty_and_mismatched_input(digits_small, case):
    X, y = digits_small
    est, targets, method = _make(case)
    with pytest.raises(ValueError, match="0 sample"):
        est.fit(X[:0], targets(y)[:0])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        est.fit(X, targets(y)[:-1])
    with pytest.raises(ValueError, match="at least one non-zero"):
        est.fit(X, targets(y), sample_weight=np.zeros(len(X)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        est.fit(X, targets(y), sample_weight=-np.ones(len(X)))
    with pytest.raises(ValueError, match="requires y to be passed"):
        est.fit(X, None)
    # No half-fitted state left behind by the failed fits.
    assert not hasattr(est, "n_features_in_")
    with pytest.raises(NotFittedError):
        _output(est, method, X)
