"""Tests for skconv.ConvNetClassifier (the scikit-learn estimator).

scikit-learn's own estimator checks live in test_estimator_checks.py; the
whole-network gradient check lives in test_network.py.
"""

import io
import json
import os
import pickle
import re
import subprocess
import sys
import time
import warnings
from contextlib import redirect_stdout

import joblib
import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import InvalidParameterError
from sklearn.utils.class_weight import compute_sample_weight

from skconv import ConvNetClassifier, ops
from skconv._nn.network import Network
from skconv._ops.threads import effective_n_threads

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import SMALL
    from ._estimator_helpers import quiet_fit as _quiet_fit
    from ._estimator_helpers import ramps as _signals
except ImportError:
    from _estimator_helpers import SMALL
    from _estimator_helpers import quiet_fit as _quiet_fit
    from _estimator_helpers import ramps as _signals

# The digits fixtures (digits, digits_small, digits_split) are in conftest.py.


# ------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_digits_accuracy_with_default_parameters(digits_split):
    # The bar: >= 0.98 on a held-out quarter of load_digits with the
    # defaults (X scaled to [0, 1]). The fit takes ~5-15 s on 2 idle cores (float64,
    # about 90 epochs until the training loss stops improving).
    X_train, X_test, y_train, y_test = digits_split
    clf = ConvNetClassifier(random_state=0)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    elapsed = time.perf_counter() - start
    accuracy = clf.score(X_test, y_test)
    print(f"digits: test accuracy {accuracy:.4f}, {clf.n_iter_} epochs, "
          f"fit {elapsed:.1f} s")
    assert clf.image_shape_ == (1, 8, 8)
    assert clf.n_iter_ < clf.max_iter  # stopped by the convergence rule
    assert accuracy >= 0.98
    # Training converged smoothly: the loss fell by 100x, not a lucky epoch.
    assert clf.loss_curve_[-1] < clf.loss_curve_[0] / 100


def test_loss_decreases_on_digits(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(max_iter=15, random_state=0), X, y)
    assert len(clf.loss_curve_) == clf.n_iter_ == 15
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(X, y) > 0.9


# ------------------------------------------------------------------------------------
# scikit-learn integration
# ------------------------------------------------------------------------------------
def test_grid_search_over_conv_parameters(digits_small):
    X, y = digits_small
    grid = {
        "kernel_size": [3, 5],
        "stride": [1, 2],
        "padding": ["same", "valid"],
        "pooling": ["max", "avg"],
    }
    # 'valid' padding leaves too small a map for the second conv unless kernel 3
    # and stride 1 (8 -> 6 -> pool 3 -> 1): 5x5 gives 8 -> 4 -> 2 and stride 2
    # gives 8 -> 3 -> 1. Those candidates raise (ValueError naming the layer) and
    # score NaN; every other one trains.
    search = GridSearchCV(
        ConvNetClassifier(filters=(4, 8), hidden_layer_sizes=(32,), batch_size=32,
                          learning_rate_init=0.005, max_iter=10, random_state=0),
        grid, cv=2,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        search.fit(X, y)
    results = search.cv_results_
    scores = results["mean_test_score"]
    invalid = [
        i for i, p in enumerate(results["params"])
        if p["padding"] == "valid" and (p["kernel_size"] == 5 or p["stride"] == 2)
    ]
    assert np.isnan(scores[invalid]).all()
    valid = np.setdiff1d(np.arange(len(scores)), invalid)
    assert np.isfinite(scores[valid]).all()
    assert (scores[valid] > 0.25).all()  # 10 classes: chance is 0.1
    assert search.best_params_ in results["params"]
    assert search.best_score_ > 0.7
    assert search.best_estimator_.score(X, y) > 0.8


def test_grid_search_runs_in_parallel_workers(digits_small):
    X, y = digits_small
    grid = {"kernel_size": [3, 5], "padding": ["same", 1]}
    est = ConvNetClassifier(**SMALL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        serial = GridSearchCV(est, grid, cv=2, n_jobs=1).fit(X, y)
        parallel = GridSearchCV(est, grid, cv=2, n_jobs=2).fit(X, y)
    # Same random_state, other processes: bitwise the same scores.
    assert_array_equal(serial.cv_results_["mean_test_score"],
                       parallel.cv_results_["mean_test_score"])
    assert_array_equal(serial.best_estimator_.predict_proba(X),
                       parallel.best_estimator_.predict_proba(X))


def test_nested_workers_limit_their_threads():
    # joblib's loky workers cap OpenMP at their share of the cores, and n_jobs=None
    # respects that: no oversubscription in a parallel GridSearchCV.
    n_cpus = joblib.cpu_count()
    inner = joblib.Parallel(n_jobs=2)(
        joblib.delayed(effective_n_threads)(None) for _ in range(2))
    assert all(1 <= n <= max(1, n_cpus // 2) for n in inner)


def test_pipeline_with_standard_scaler(digits_small):
    X, y = digits_small
    pipe = make_pipeline(StandardScaler(),
                         ConvNetClassifier(max_iter=10, random_state=0))
    _quiet_fit(pipe, X * 16, y)  # unscaled pixels: the scaler fixes them
    assert pipe[-1].image_shape_ == (1, 8, 8)
    assert pipe.score(X * 16, y) > 0.9


def test_clone_gives_an_unfitted_copy_with_the_same_parameters(digits_small):
    X, y = digits_small
    est = ConvNetClassifier(kernel_size=((5, 3), 3), pooling=("max", "avg"),
                            random_state=3)
    _quiet_fit(est.set_params(max_iter=2), X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "classes_")
    with pytest.raises(NotFittedError):
        copy.predict(X)


@pytest.mark.parametrize("dumps, loads", [
    (pickle.dumps, pickle.loads),
    (lambda est: _joblib_dumps(est), lambda data: joblib.load(io.BytesIO(data))),
])
def test_pickle_and_joblib_round_trips(digits_small, dumps, loads):
    X, y = digits_small
    est = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    restored = loads(dumps(est))
    assert_array_equal(restored.predict_proba(X), est.predict_proba(X))
    # The exposed weights still share memory with the network that trains.
    assert restored.coefs_[0] is restored._network.layers[-3].params[0]
    # The optimizer state travels too: one more epoch gives the same model.
    est.partial_fit(X, y)
    restored.partial_fit(X, y)
    assert_array_equal(restored.predict_proba(X), est.predict_proba(X))


def _joblib_dumps(est):
    buffer = io.BytesIO()
    joblib.dump(est, buffer)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------
# Signals, images, volumes
# ------------------------------------------------------------------------------------
def test_one_dimensional_signals():
    X, y = _signals(length=20)
    X2d = X.reshape(len(X), -1)
    clf = _quiet_fit(ConvNetClassifier(max_iter=15, random_state=0), X2d, y)
    assert clf.image_shape_ == (1, 20)  # 20 is not a perfect square
    assert clf.conv_weights_[0].shape == (6, 1, 5)
    assert clf.score(X2d, y) > 0.95
    # The N-d form of the same data declares signals, whose 'auto' options are the
    # time series' (auto_options_); with those given, the flat form gives the same
    # model. (300 updates rather than the signals' 2,000 keep the test short.)
    clf_nd = _quiet_fit(ConvNetClassifier(max_iter=15, min_updates=300, random_state=0),
                        X, y)
    assert clf_nd.image_shape_ == (1, 20) and clf_nd.n_features_in_ == 20
    assert clf_nd.auto_options_["head"] == "avg" and clf.auto_options_["head"] == "flatten"
    assert clf_nd.score(X, y) > 0.95
    flat = _quiet_fit(ConvNetClassifier(max_iter=15, min_updates=300, random_state=0,
                                        **clf_nd.auto_options_), X2d, y)
    assert_array_equal(clf_nd.predict_proba(X), flat.predict_proba(X2d))


def test_multichannel_signals():
    X, y = _signals(length=16, channels=2)
    clf = _quiet_fit(ConvNetClassifier(max_iter=15, min_updates=300, random_state=0), X, y)
    assert clf.image_shape_ == (2, 16)
    assert clf.n_features_in_ == 32
    # Signals' 'auto' conv blocks: 16, 32 and 64 kernels of 7 taps.
    assert [w.shape for w in clf.conv_weights_] == [(16, 2, 7), (32, 16, 7), (64, 32, 7)]
    assert clf.score(X, y) > 0.95


def test_rgb_images():
    rng = np.random.RandomState(0)
    n = 60
    y = rng.randint(0, 3, n)
    X = 0.2 * rng.rand(n, 3, 8, 8)
    X[np.arange(n), y] += 0.8  # the bright channel is the class
    clf = _quiet_fit(ConvNetClassifier(max_iter=20, random_state=0), X, y)
    assert clf.image_shape_ == (3, 8, 8)
    assert clf.n_features_in_ == 192
    # 20 updates, a short budget: the images' 'auto' blocks, 16 and 32 3x3 kernels.
    assert clf.conv_weights_[0].shape == (16, 3, 3, 3)
    assert clf.conv_weights_[1].shape == (32, 16, 3, 3)
    assert clf.coefs_[0].shape == (32 * 2 * 2, 120)
    assert clf.score(X, y) > 0.9
    # Flattened rows (channels first) with image_shape give the same model.
    flat = _quiet_fit(
        ConvNetClassifier(image_shape=(3, 8, 8), max_iter=20, random_state=0),
        X.reshape(n, -1), y)
    assert_array_equal(flat.predict_proba(X.reshape(n, -1)), clf.predict_proba(X))
    # predict takes either form.
    assert_array_equal(clf.predict(X.reshape(n, -1)), clf.predict(X))


def test_volumes():
    rng = np.random.RandomState(0)
    n = 40
    y = rng.randint(0, 2, n)
    X = 0.3 * rng.randn(n, 1, 6, 6, 6)
    X[y == 1, :, :3] += 1.0  # class 1: the front half of the volume is bright
    clf = _quiet_fit(ConvNetClassifier(filters=(4, 8), max_iter=15, random_state=0),
                     X, y)
    assert clf.image_shape_ == (1, 6, 6, 6)
    assert clf.conv_weights_[0].shape == (4, 1, 5, 5, 5)
    # 6 -> same conv 6 -> pool 3 -> same conv 3 -> pool 1 (window 2, stride 2)
    assert clf.coefs_[0].shape == (8 * 1 * 1 * 1, 120)
    assert clf.predict(X).shape == (n,)
    assert clf.score(X, y) > 0.9


@pytest.mark.parametrize("image_shape, expected", [
    (None, (1, 8, 8)),
    ((8, 8), (1, 8, 8)),
    ((1, 8, 8), (1, 8, 8)),
    ((64,), (1, 64)),
    ((4, 16), (1, 4, 16)),
    ((4, 4, 4), (4, 4, 4)),
    ((1, 4, 4, 4), (1, 4, 4, 4)),
])
def test_image_shape_rule(digits_small, image_shape, expected):
    X, y = digits_small
    # min_updates=0: one epoch, also for the signals (whose 'auto' budget is 2,000).
    clf = ConvNetClassifier(image_shape=image_shape, max_iter=1, min_updates=0, **{
        k: v for k, v in SMALL.items() if k != "max_iter"})
    _quiet_fit(clf, X[:50], y[:50])
    assert clf.image_shape_ == expected
    assert clf.n_features_in_ == 64
    assert clf.conv_weights_[0].shape[1] == expected[0]
    assert clf.conv_weights_[0].ndim == len(expected) + 1


def test_three_dimensional_X_with_image_shape_override(digits):
    X, y = digits
    images = X[:60].reshape(60, 8, 8)
    # min_updates=0: one epoch is enough to read the shapes (signals' 'auto' budget
    # would train 2,000 updates).
    default = _quiet_fit(ConvNetClassifier(max_iter=1, min_updates=0, random_state=0),
                         images, y[:60])
    assert default.image_shape_ == (8, 8)  # (C, L): 8 channels of length 8
    gray = _quiet_fit(ConvNetClassifier(image_shape=(8, 8), max_iter=1,
                                        random_state=0), images, y[:60])
    assert gray.image_shape_ == (1, 8, 8)
    assert gray.predict(images).shape == (60,)


@pytest.mark.parametrize("n_features", [1, 2, 3])
def test_tiny_inputs_train(n_features):
    # Pooling never shrinks an axis below 1 and 'same' conv keeps the size.
    rng = np.random.RandomState(0)
    X = rng.randn(80, n_features)
    y = (X.sum(axis=1) > 0).astype(int)
    clf = _quiet_fit(ConvNetClassifier(max_iter=30, random_state=0), X, y)
    assert clf.image_shape_ == (1, n_features)
    assert clf.coefs_[0].shape == (16, 120)  # 16 channels of one cell
    assert clf.score(X, y) > 0.85


def test_invalid_network_names_layer_and_shapes(digits_small):
    X, y = digits_small
    clf = ConvNetClassifier(padding="valid", filters=(6, 16), kernel_size=5, max_iter=1)
    # 8x8 -> valid 5x5 -> 4x4 -> pool -> 2x2: the second 5x5 kernel cannot fit.
    with pytest.raises(ValueError, match=r"layer 3 \(Conv\).*\(6, 2, 2\)"):
        clf.fit(X, y)


# ------------------------------------------------------------------------------------
# Reproducibility
# ------------------------------------------------------------------------------------
def test_same_random_state_gives_identical_models(digits_small):
    X, y = digits_small
    a = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    b = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert a.loss_curve_ == b.loss_curve_
    c = _quiet_fit(ConvNetClassifier(**{**SMALL, "random_state": 1}), X, y)
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_results_do_not_depend_on_n_jobs(digits_small, dtype):
    X, y = digits_small
    X = X.astype(dtype)
    one = _quiet_fit(ConvNetClassifier(n_jobs=1, **SMALL), X, y)
    two = _quiet_fit(ConvNetClassifier(n_jobs=2, **SMALL), X, y)
    assert one.coefs_[0].dtype == dtype
    for w1, w2 in zip(one.conv_weights_ + one.coefs_, two.conv_weights_ + two.coefs_):
        assert_array_equal(w1, w2)
    proba = one.predict_proba(X)
    assert_array_equal(proba, two.predict_proba(X))
    assert_array_equal(proba, two.set_params(n_jobs=1).predict_proba(X))


def test_dtype_policy(digits_small):
    X, y = digits_small
    f32 = _quiet_fit(ConvNetClassifier(**SMALL), X.astype(np.float32), y)
    f64 = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    ints = _quiet_fit(ConvNetClassifier(**SMALL), (X * 16).astype(np.int64), y)
    assert all(w.dtype == np.float32 for w in f32.conv_weights_ + f32.coefs_)
    assert all(w.dtype == np.float64 for w in f64.conv_weights_ + f64.coefs_)
    assert ints.coefs_[0].dtype == np.float64
    proba32 = f32.predict_proba(X)
    assert proba32.dtype == np.float64
    # Same seed, same maths: float32 and float64 agree to float32 rounding.
    assert_allclose(proba32, f64.predict_proba(X), atol=1e-3)


# ------------------------------------------------------------------------------------
# Training state: warm start, partial_fit, early stopping, interruption
# ------------------------------------------------------------------------------------
def test_warm_start_continues_training(digits_small):
    X, y = digits_small
    cold = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    first_curve = list(cold.loss_curve_)
    weights = cold.coefs_[0]
    _quiet_fit(cold.set_params(warm_start=True), X, y)
    assert cold.coefs_[0] is weights  # same network, trained further
    assert len(cold.loss_curve_) == 2 * len(first_curve)
    assert cold.loss_curve_[:5] == first_curve
    assert cold.loss_curve_[5] < first_curve[0]
    assert cold.t_ == 10 * len(X)
    # Without warm_start the network is rebuilt and the history restarts.
    _quiet_fit(cold.set_params(warm_start=False), X, y)
    assert cold.loss_curve_ == first_curve


def test_warm_start_rejects_new_classes(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(warm_start=True, **SMALL), X, y)
    with pytest.raises(ValueError, match="same classes"):
        clf.fit(X[y < 5], y[y < 5])


def test_partial_fit(digits_small):
    X, y = digits_small
    clf = ConvNetClassifier(**{**SMALL, "learning_rate_init": 0.01})
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        clf.partial_fit(X, y)
    first = y < 5  # a batch need not hold every class
    clf.partial_fit(X[first], y[first], classes=np.arange(10))
    assert_array_equal(clf.classes_, np.arange(10))
    assert clf.n_iter_ == 1 and clf.t_ == first.sum()
    for _ in range(5):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 6
    assert len(clf.loss_curve_) == 6
    assert clf.score(X, y) > 0.5
    with pytest.raises(ValueError, match="classes not in"):
        clf.partial_fit(X[:5], np.full(5, 11))
    with pytest.raises(ValueError, match="X has 10 features"):
        clf.partial_fit(X[:, :10], y)


def test_partial_fit_rejects_early_stopping_and_balanced_weights(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="partial_fit does not support early_stop"):
        ConvNetClassifier(early_stopping=True).partial_fit(X, y, classes=np.arange(10))
    with pytest.raises(ValueError, match="'balanced' is not supported for partial_f"):
        ConvNetClassifier(class_weight="balanced").partial_fit(
            X, y, classes=np.arange(10))


class _RecordingClassifier(ConvNetClassifier):
    """Keeps the validation set that early stopping held out."""

    def _split_validation(self, X, y, sample_weight):
        parts = super()._split_validation(X, y, sample_weight)
        self.recorded_validation = parts[1], parts[3]
        return parts


def test_early_stopping_restores_the_best_weights(digits_small):
    X, y = digits_small
    clf = _RecordingClassifier(early_stopping=True, validation_fraction=0.3,
                               n_iter_no_change=3, max_iter=60,
                               learning_rate_init=0.01, random_state=0)
    _quiet_fit(clf, X, y)
    scores = clf.validation_scores_
    assert len(scores) == clf.n_iter_ < clf.max_iter
    assert clf.best_validation_score_ == max(scores)
    # The run ended after epochs worse than the best one ...
    assert scores[-1] < clf.best_validation_score_
    # ... and the model kept is the best one, not the last one.
    X_val, y_val = clf.recorded_validation
    val_pred = np.argmax(clf._forward(X_val), axis=1)
    assert np.mean(val_pred == y_val) == clf.best_validation_score_
    assert clf.best_loss_ is None


def test_early_stopping_validation_split_too_small():
    X, y = _signals(n=12)
    with pytest.raises(ValueError, match="validation"):
        ConvNetClassifier(early_stopping=True, validation_fraction=0.05).fit(
            X.reshape(12, -1), y)


def test_keyboard_interrupt_keeps_the_last_finished_epoch(digits_small, monkeypatch):
    X, y = digits_small  # 300 samples: 5 minibatches of 64 per epoch
    reference = _quiet_fit(ConvNetClassifier(**{**SMALL, "max_iter": 2}), X, y)

    calls = {"n": 0}
    original_forward = Network.forward

    def forward(self, x, n_jobs, training=False, **kwargs):
        if training:
            calls["n"] += 1
            if calls["n"] == 5 * 2 + 3:  # third minibatch of epoch 3
                raise KeyboardInterrupt
        return original_forward(self, x, n_jobs, training, **kwargs)

    monkeypatch.setattr(Network, "forward", forward)
    clf = ConvNetClassifier(**{**SMALL, "max_iter": 10})
    with pytest.warns(UserWarning, match="interrupted.*last finished epoch"):
        clf.fit(X, y)
    assert clf.n_iter_ == 2
    assert clf.loss_curve_ == reference.loss_curve_
    # The weights are those after epoch 2, not a half-applied epoch 3.
    assert_array_equal(clf.predict_proba(X), reference.predict_proba(X))
    # And training can go on from there.
    monkeypatch.setattr(Network, "forward", original_forward)
    clf.partial_fit(X, y)
    assert clf.n_iter_ == 3


def test_convergence_warning_at_max_iter(digits_small):
    X, y = digits_small
    with pytest.warns(ConvergenceWarning, match=r"Maximum iterations \(2\)"):
        ConvNetClassifier(max_iter=2, random_state=0).fit(X, y)


def test_stops_when_the_loss_stalls():
    X, y = _signals(n=60)
    clf = ConvNetClassifier(max_iter=500, tol=10.0, n_iter_no_change=2,
                            random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        clf.fit(X.reshape(60, -1), y)
    # tol=10: no epoch after the first counts as an improvement, and (scikit-learn's
    # rule) training stops once the count exceeds n_iter_no_change.
    assert clf.n_iter_ == 1 + 2 + 1


def test_sgd_solver(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(solver="sgd", learning_rate_init=0.05,
                                       max_iter=10, random_state=0), X, y)
    assert clf._optimizer.__class__.__name__ == "SGD"
    assert clf.loss_curve_[-1] < 0.5 * clf.loss_curve_[0]
    assert clf.score(X, y) > 0.8


def test_verbose_prints_every_epoch(digits_small):
    X, y = digits_small
    out = io.StringIO()
    with redirect_stdout(out):
        _quiet_fit(ConvNetClassifier(verbose=True, **SMALL), X, y)
    assert len(re.findall(r"Iteration \d+, loss = ", out.getvalue())) == 5


# ------------------------------------------------------------------------------------
# Weights
# ------------------------------------------------------------------------------------
def test_sample_weight_two_equals_a_duplicated_sample():
    # Full-batch float64 training: weight 2 and a duplicate give the same gradients
    # up to rounding, hence the same model (scikit-learn's check, on images).
    rng = np.random.RandomState(0)
    X = rng.rand(20, 16)
    y = np.arange(20) % 3
    sw = np.ones(20)
    sw[[0, 5, 11]] = 2
    sw[[3]] = 0
    X_dup = np.repeat(X, sw.astype(int), axis=0)
    y_dup = np.repeat(y, sw.astype(int))
    params = dict(max_iter=20, random_state=0, filters=(3, 4), hidden_layer_sizes=(8,))
    weighted = _quiet_fit(ConvNetClassifier(**params), X, y, sample_weight=sw)
    duplicated = _quiet_fit(ConvNetClassifier(**params), X_dup, y_dup)
    assert weighted.image_shape_ == (1, 4, 4)
    assert_allclose(weighted.predict_proba(X), duplicated.predict_proba(X), rtol=1e-7)
    unweighted = _quiet_fit(ConvNetClassifier(**params), X, y)
    assert not np.allclose(unweighted.predict_proba(X), weighted.predict_proba(X),
                           rtol=1e-4)


def test_class_weight_equals_sample_weight(digits_small):
    X, y = digits_small
    class_weight = {c: 1.0 + (c % 3) for c in range(10)}
    by_class = _quiet_fit(ConvNetClassifier(class_weight=class_weight, **SMALL), X, y)
    by_sample = _quiet_fit(ConvNetClassifier(**SMALL), X, y,
                           sample_weight=np.array([class_weight[c] for c in y]))
    assert_array_equal(by_class.predict_proba(X), by_sample.predict_proba(X))

    balanced = _quiet_fit(ConvNetClassifier(class_weight="balanced", **SMALL),
                          X[y < 3], y[y < 3])
    manual = _quiet_fit(ConvNetClassifier(**SMALL), X[y < 3], y[y < 3],
                        sample_weight=compute_sample_weight("balanced", y[y < 3]))
    assert_array_equal(balanced.predict_proba(X), manual.predict_proba(X))


def test_class_weight_shifts_predictions():
    X, y = _signals(n=100)
    X = X.reshape(100, -1) * 0.1  # make the classes overlap
    heavy = _quiet_fit(ConvNetClassifier(class_weight={0: 100.0, 1: 0.01},
                                         max_iter=20, random_state=0), X, y)
    assert np.mean(heavy.predict(X) == 0) > 0.9


def test_fitted_weights_are_live_views_of_the_network(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    assert [w.shape for w in clf.conv_weights_] == [(4, 1, 5, 5), (8, 4, 5, 5)]
    assert [b.shape for b in clf.conv_biases_] == [(4,), (8,)]
    assert [w.shape for w in clf.coefs_] == [(8 * 2 * 2, 16), (16, 10)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (10,)]
    before = clf.predict_proba(X)
    clf.intercepts_[-1][0] += 100.0  # editing the exposed arrays edits the model
    assert (clf.predict(X) == clf.classes_[0]).all()
    assert not np.array_equal(before, clf.predict_proba(X))


# ------------------------------------------------------------------------------------
# Prediction
# ------------------------------------------------------------------------------------
def test_predict_runs_in_bounded_batches(digits, monkeypatch):
    X, y = digits
    clf = _quiet_fit(ConvNetClassifier(**SMALL), X[:200], y[:200])
    expected = np.vstack([clf.predict_proba(X[i:i + 100])
                          for i in range(0, len(X), 100)])
    sizes = []
    original_infer = Network._infer

    def infer(self, x, n_jobs, buffers):
        sizes.append(len(x))
        return original_infer(self, x, n_jobs, buffers)

    monkeypatch.setattr(Network, "_infer", infer)
    proba = clf.predict_proba(X)  # 1797 samples
    assert max(sizes) == 512 and sum(sizes) == len(X)
    assert_allclose(proba, expected, rtol=1e-12, atol=1e-15)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(clf.predict(X), clf.classes_[np.argmax(proba, axis=1)])
    assert_allclose(clf.predict_log_proba(X), np.log(proba))


def test_string_labels(digits_small):
    X, y = digits_small
    names = np.array(["zero", "one", "two", "three", "four", "five", "six",
                      "seven", "eight", "nine"])
    clf = _quiet_fit(ConvNetClassifier(**SMALL), X, names[y])
    assert set(clf.predict(X)) <= set(names)
    assert_array_equal(clf.classes_, np.sort(names))


# ------------------------------------------------------------------------------------
# Bad input and failure
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("value, message", [
    (np.nan, "Input X contains NaN"),
    (np.inf, "Input X contains infinity"),
])
def test_non_finite_input(digits_small, value, message):
    X, y = digits_small
    X_bad = X.copy()
    X_bad[3, 7] = value
    with pytest.raises(ValueError, match=message):
        ConvNetClassifier(**SMALL).fit(X_bad, y)
    clf = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    with pytest.raises(ValueError, match=message):
        clf.predict(X_bad)


def test_wrong_number_of_features_at_predict(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(**SMALL), X, y)
    msg = "X has 63 features, but ConvNetClassifier is expecting 64 features"
    with pytest.raises(ValueError, match=msg):
        clf.predict(X[:, :63])
    with pytest.raises(ValueError, match="samples of shape \\(2, 32\\)"):
        clf.predict_proba(X.reshape(-1, 2, 32))


def test_image_shape_not_matching_n_features(digits_small):
    X, y = digits_small
    clf = ConvNetClassifier(image_shape=(3, 8, 8))
    with pytest.raises(ValueError, match=r"image_shape=\(3, 8, 8\).*192 values.*64"):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):  # no half-fitted state left behind
        clf.predict(X)
    with pytest.raises(ValueError, match="image_shape must be None or a tuple"):
        ConvNetClassifier(image_shape=(1, 1, 1, 8, 8)).fit(X, y)


def test_one_class_only(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="at least 2 classes.*only one class: 3"):
        ConvNetClassifier(**SMALL).fit(X[y == 3], y[y == 3])
    sw = (y == 3).astype(float)
    with pytest.raises(ValueError, match="2 classes with non-zero weight"):
        ConvNetClassifier(**SMALL).fit(X, y, sample_weight=sw)


def test_empty_input():
    with pytest.raises(ValueError, match="0 sample"):
        ConvNetClassifier().fit(np.empty((0, 64)), np.empty(0))
    with pytest.raises(ValueError, match="0 feature"):
        ConvNetClassifier().fit(np.empty((5, 0)), np.arange(5))


def test_bad_sample_weights(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="at least one non-zero"):
        ConvNetClassifier(**SMALL).fit(X, y, sample_weight=np.zeros(len(y)))
    with pytest.raises(ValueError, match="[Nn]egative"):
        ConvNetClassifier(**SMALL).fit(X, y, sample_weight=-np.ones(len(y)))


@pytest.mark.parametrize("weight", [-1.0, np.nan, np.inf, -np.inf])
def test_bad_class_weight_is_refused_naming_it(digits_small, weight):
    # A negative weight used to fit a model that never predicts the class; NaN said
    # "every sample has a zero weight", inf "try a smaller learning_rate_init".
    X, y = digits_small
    clf = ConvNetClassifier(class_weight={0: weight, 1: 2.0}, **SMALL)
    with pytest.raises(ValueError, match=r"class_weight must give every class a "
                       r"finite, non-negative weight, got \{0: " + re.escape(repr(weight))):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    with pytest.raises(ValueError, match="class_weight must give every class"):
        ConvNetClassifier(class_weight={3: weight}, **SMALL).partial_fit(
            X, y, classes=np.arange(10))


def test_sample_weights_whose_total_overflows(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match=r"sum to inf, beyond float64's range"):
        ConvNetClassifier(**SMALL).fit(X, y, sample_weight=np.full(len(y), 1e307))
    with pytest.raises(ValueError, match=r"sum to inf, beyond float64's range"):
        ConvNetClassifier(class_weight={0: 1e308}, **SMALL).fit(
            X, y, sample_weight=np.full(len(y), 10.0))


@pytest.mark.parametrize("weight", [1e-320, 4e-323])
def test_vanishing_sample_weights_name_the_total_weight(digits_small, weight):
    # Positive, but a minibatch's total is too small to divide by: used to say the
    # optimization diverged (try a smaller learning_rate_init).
    X, y = digits_small
    clf = ConvNetClassifier(**SMALL)
    with pytest.raises(ValueError, match=r"minibatch 1 of epoch 1: its total sample "
                       r"weight is .*e-3\d\d, below float64's smallest normal") as info:
        clf.fit(X, y, sample_weight=np.full(len(y), weight))
    assert "learning_rate_init" not in str(info.value)
    with pytest.raises(NotFittedError):
        clf.predict(X)
    # The same weights scaled up fit (the loss does not depend on their scale).
    _quiet_fit(clf, X, y, sample_weight=np.full(len(y), weight * 1e300))
    assert np.isfinite(clf.loss_)


@pytest.mark.parametrize("epsilon, dtype, shown", [
    (1e-50, np.float32, "0.0"), (1e39, np.float32, "inf"), (1e-320, np.float64, None)])
def test_epsilon_that_rounds_to_zero_in_the_compute_dtype(digits_small, epsilon, dtype,
                                                          shown):
    # float32 X trains in float32, where 1e-50 is 0: Adam's sqrt(v) + epsilon was 0
    # for dead units and the error said "try a smaller learning_rate_init".
    X, y = digits_small
    X = X.astype(dtype)
    clf = ConvNetClassifier(epsilon=epsilon, **SMALL)
    if shown is None:  # representable (subnormal) in float64: trains
        _quiet_fit(clf, X, y)
        assert np.isfinite(clf.loss_)
        return
    with pytest.raises(ValueError, match=re.escape(
            f"epsilon={epsilon!r} is {shown} in float32, the compute dtype "
            f"(compute_dtype='auto')")):
        clf.fit(X, y)
    _quiet_fit(clf.set_params(solver="sgd"), X, y)  # sgd has no epsilon
    assert np.isfinite(clf.loss_)


def test_continuous_target_rejected(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="Unknown label type"):
        ConvNetClassifier(**SMALL).fit(X, y + 0.5)


@pytest.mark.parametrize("params", [
    dict(kernel_size=0),
    dict(activation="softplus"),
    dict(pooling="median"),
    dict(solver="lbfgs"),
    dict(batch_size=0),
    dict(validation_fraction=1.0),
    dict(padding="full"),
])
def test_invalid_parameters(digits_small, params):
    X, y = digits_small
    with pytest.raises(InvalidParameterError):
        ConvNetClassifier(**params).fit(X, y)


@pytest.mark.parametrize("name", ["stride", "pool_stride", "dilation", "padding",
                                  "kernel_size", "pool_size"])
@pytest.mark.parametrize("value", [2**70, 2**31, ((1, 2**63), 1)])
def test_huge_integers_are_value_errors_naming_the_parameter(digits_small, name, value):
    # stride and pool_stride used to give an OverflowError from the compiled layer.
    X, y = digits_small
    clf = ConvNetClassifier(**{**SMALL, name: value})
    with pytest.raises(ValueError, match=rf"^{name} must be at most 2147483647 \(the "
                       rf"kernels' index range\), got {re.escape(repr(value))}"):
        clf.fit(X, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


_STRING_OPS = {
    "padding": lambda v: ops.conv(np.ones((1, 1, 4, 4)), np.ones((1, 1, 3, 3)), padding=v),
    "pooling": lambda v: ops.pool(np.ones((1, 1, 4, 4)), 2, mode=v),
}


@pytest.mark.parametrize("name, value", [
    ("padding", "same"), ("padding", "valid"), ("padding", "SAME"), ("padding", "Valid"),
    ("pooling", "max"), ("pooling", "avg"), ("pooling", "MAX"), ("pooling", "Min"),
])
def test_estimator_and_ops_take_the_same_strings(digits_small, name, value):
    # One rule for both (lowercase, case-sensitive): ops.conv(padding="SAME") used to
    # work where ConvNetClassifier(padding="SAME") was refused.
    X, y = digits_small
    try:
        _STRING_OPS[name](value)
        ops_accepts = True
    except ValueError as exc:
        ops_accepts = False
        assert re.search(r"'(same|max)'", str(exc)), exc  # lists the valid values
    try:
        _quiet_fit(ConvNetClassifier(**{**SMALL, "max_iter": 1, "kernel_size": 3,
                                        name: value}), X, y)
        estimator_accepts = True
    except InvalidParameterError:
        estimator_accepts = False
    assert ops_accepts == estimator_accepts == value.islower()


def test_malformed_per_layer_parameter(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="kernel_size"):
        ConvNetClassifier(kernel_size=(3, 3, 3), max_iter=1).fit(X, y)


def test_non_finite_loss_first_fit_leaves_estimator_unfitted(digits_small):
    X, y = digits_small
    # identity activations: nothing saturates or dies, the weights blow up.
    clf = ConvNetClassifier(solver="sgd", learning_rate_init=1e4, activation="identity",
                            random_state=0)
    with pytest.raises(ValueError, match="non-finite.*smaller learning_rate_init"):
        clf.fit(X * 1000, y)
    with pytest.raises(NotFittedError):
        clf.predict(X)


def test_non_finite_loss_keeps_the_previous_model(digits_small):
    X, y = digits_small
    clf = _quiet_fit(ConvNetClassifier(warm_start=True, activation="identity",
                                       **SMALL), X, y)
    proba = clf.predict_proba(X)
    curve = list(clf.loss_curve_)
    clf.set_params(solver="sgd", learning_rate_init=1e4)
    with pytest.raises(ValueError, match="learning_rate_init.*last finished epoch"):
        clf.fit(X * 1000, y)
    assert_array_equal(clf.predict_proba(X), proba)
    assert clf.loss_curve_ == curve
    assert all(np.isfinite(w).all() for w in clf.coefs_ + clf.conv_weights_)


def test_feature_names_from_a_data_frame(digits_small):
    pd = pytest.importorskip("pandas")
    X, y = digits_small
    columns = [f"pixel_{i}" for i in range(64)]
    df = pd.DataFrame(X, columns=columns)
    clf = _quiet_fit(ConvNetClassifier(**SMALL), df, y)
    assert_array_equal(clf.feature_names_in_, columns)
    assert clf.image_shape_ == (1, 8, 8)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        proba = clf.predict_proba(X)
    assert_array_equal(clf.predict_proba(df), proba)
    with pytest.raises(ValueError, match="feature names"):
        clf.predict(df[columns[::-1]])


# ------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------
_REPEATED_FITS = r"""
import gc, json, os, warnings
import numpy as np
from skconv import ConvNetClassifier

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

rng = np.random.RandomState(0)
X, y = rng.rand(32, 256), np.arange(32) % 3
warnings.simplefilter("ignore")

def fit(i):
    # float32 and float64, early stopping or not, one or two threads, and predict:
    # the paths whose workspaces, caches and prepared steps a fit allocates.
    clf = ConvNetClassifier(filters=(4, 8), hidden_layer_sizes=(16,), max_iter=1,
                            batch_size=16, random_state=i, early_stopping=i % 2 == 0,
                            validation_fraction=0.25, n_jobs=2 if i % 5 == 0 else 1)
    clf.fit(X.astype(np.float32) if i % 3 == 0 else X, y)
    clf.predict_proba(X)

for i in range(10):  # warm-up: lazy imports, allocator pools, lru caches
    fit(i)
readings = []
for window in range(2):
    gc.collect()
    readings.append(rss())
    for i in range(25):
        fit(10 + 25 * window + i)
gc.collect()
readings.append(rss())
print(json.dumps(readings))
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="Linux only")
def test_repeated_fits_do_not_grow_memory():
    # 50 small fits in a fresh interpreter. A leaked network per fit (about 200 KB
    # here) grows the resident set by 10-13 MiB; without a leak it moves by about
    # 0.1 MiB. Noise (an allocator pool filling up) lands in one of the two windows
    # of 25 fits; a leak grows both, hence the bound on the smaller one.
    # -P: import the installed package, not a source tree in the working directory.
    result = subprocess.run([sys.executable, "-P", "-c", _REPEATED_FITS],
                            capture_output=True, text=True, timeout=600, check=True)
    readings = json.loads(result.stdout.strip().splitlines()[-1])
    mib = 2**20
    growth = [(b - a) / mib for a, b in zip(readings, readings[1:])]
    assert min(growth) < 1.5, f"resident set grew by {growth} MiB per 25 fits"
    assert sum(growth) < 6, f"resident set grew by {growth} MiB per 25 fits"
