"""Tests for ConvNetClassifier on multilabel targets (a 2-D binary indicator y):
sigmoid outputs, the binary cross-entropy, MLPClassifier's conventions for
``classes_``, ``predict`` and ``predict_proba``, the target checks and what it learns.

The behaviour shared with every estimator is tested in test_estimators_common.py
(its "multilabel" case); the single-label classifier in test_classifier.py.
"""

import warnings

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from scipy import sparse
from sklearn.exceptions import DataConversionWarning
from sklearn.metrics import accuracy_score

from skconv import ConvNetClassifier
from skconv._ops.loss import sigmoid_cross_entropy

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import SMALL, digit_labels, quiet_fit
except ImportError:
    from _estimator_helpers import SMALL, digit_labels, quiet_fit


@pytest.fixture(scope="module")
def fitted(digits_small):
    X, y = digits_small
    return quiet_fit(ConvNetClassifier(**SMALL), X, digit_labels(y))


def test_predict_is_the_indicator_matrix_of_the_probabilities(digits_small, fitted):
    X, y = digits_small
    assert_array_equal(fitted.classes_, [0, 1, 2])  # MLPClassifier's classes_
    assert fitted.out_activation_ == "logistic"  # and its out_activation_
    assert quiet_fit(ConvNetClassifier(**SMALL), X, y).out_activation_ == "softmax"
    assert fitted.coefs_[-1].shape == (16, 3)
    proba = fitted.predict_proba(X)
    assert proba.shape == (len(X), 3) and proba.dtype == np.float64
    assert ((proba > 0) & (proba < 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1.0)  # independent labels
    pred = fitted.predict(X)
    assert pred.shape == (len(X), 3) and pred.dtype == int
    assert_array_equal(pred, (proba > 0.5).astype(int))
    assert_allclose(fitted.predict_log_proba(X), np.log(proba))
    # score is the subset accuracy, as MLPClassifier's.
    assert fitted.score(X, digit_labels(y)) == accuracy_score(digit_labels(y), pred)


def test_loss_curve_is_the_summed_binary_cross_entropy(digits_small):
    # One full batch per epoch, no L2: the loss of epoch 2 is the op's value on the
    # logits of the model after epoch 1.
    X, y = digits_small
    Y = digit_labels(y)
    clf = ConvNetClassifier(**{**SMALL, "max_iter": 1}, alpha=0.0, batch_size=len(X),
                            warm_start=True)
    quiet_fit(clf, X, Y)
    logits = clf._forward(clf._validate_predict_data(X))
    expected, _ = sigmoid_cross_entropy(logits, Y)
    quiet_fit(clf, X, Y)
    assert clf.loss_curve_[1] == pytest.approx(expected, rel=1e-10)


def test_bool_sparse_and_list_indicators_give_the_same_model(digits_small, fitted):
    X, y = digits_small
    Y = digit_labels(y)
    expected = fitted.predict_proba(X)
    for form in (Y.astype(bool), sparse.csr_matrix(Y), Y.tolist()):
        other = quiet_fit(ConvNetClassifier(**SMALL), X, form)
        assert_array_equal(other.predict_proba(X), expected)
        assert other.predict(X).dtype == int


def test_a_label_always_off_trains(digits_small):
    X, y = digits_small
    Y = digit_labels(y)
    Y[:, 2] = 0
    clf = quiet_fit(ConvNetClassifier(**SMALL), X, Y)
    assert (clf.predict_proba(X)[:, 2] < 0.5).all()


def test_partial_fit(digits_small):
    X, y = digits_small
    Y = digit_labels(y)
    clf = ConvNetClassifier(**{**SMALL, "learning_rate_init": 0.01})
    # classes is required on the first call (scikit-learn's rule); for an indicator
    # matrix classes_ is arange(n_labels), as in MLPClassifier.
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, Y)
    clf.partial_fit(X, Y, classes=[0, 1, 2])
    assert_array_equal(clf.classes_, [0, 1, 2])
    for _ in range(5):
        clf.partial_fit(X, Y)
    assert clf.n_iter_ == 6 and len(clf.loss_curve_) == 6
    assert clf.loss_curve_[-1] < clf.loss_curve_[0]
    with pytest.raises(ValueError, match="y has 2 labels, but ConvNetClassifier was "
                                         "fitted with 3"):
        clf.partial_fit(X, Y[:, :2])
    with pytest.raises(ValueError, match="y must be a multilabel indicator matrix"):
        clf.partial_fit(X, y)


def test_warm_start_keeps_the_kind_of_targets(digits_small, fitted):
    X, y = digits_small
    clf = quiet_fit(ConvNetClassifier(warm_start=True, **SMALL), X, y)
    with pytest.raises(ValueError, match="y must be labels"):
        clf.fit(X, digit_labels(y))
    assert clf.predict(X).shape == (len(X),)
    # Without warm_start a new fit starts again with the new kind.
    clf.set_params(warm_start=False)
    quiet_fit(clf, X, digit_labels(y))
    assert_array_equal(clf.predict_proba(X), fitted.predict_proba(X))


def test_targets_that_are_not_an_indicator_matrix(digits_small):
    X, y = digits_small
    with pytest.raises(ValueError, match="binary indicator matrix.*multiclass-multiout"):
        ConvNetClassifier(**SMALL).fit(X, np.column_stack([y, y % 3]))
    with pytest.raises(ValueError, match="binary indicator matrix.*continuous-multiou"):
        ConvNetClassifier(**SMALL).fit(X, np.column_stack([y, y]) + 0.5)
    with pytest.raises(ValueError, match="class_weight is not supported for multilabel"):
        ConvNetClassifier(class_weight="balanced", **SMALL).fit(X, digit_labels(y))


def test_a_column_vector_is_read_as_labels(digits_small):
    # As in MLPClassifier: (n, 1) is a column of labels, with a warning.
    X, y = digits_small
    flat = quiet_fit(ConvNetClassifier(**SMALL), X, y)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataConversionWarning)
        column = quiet_fit(ConvNetClassifier(**SMALL), X, y[:, None])
    assert any(issubclass(w.category, DataConversionWarning) for w in caught)
    assert column.predict(X).shape == (len(X),)
    assert_array_equal(column.predict_proba(X), flat.predict_proba(X))


def test_early_stopping_scores_the_subset_accuracy(digits_small):
    X, y = digits_small
    Y = digit_labels(y)
    clf = quiet_fit(ConvNetClassifier(**{**SMALL, "max_iter": 8}, early_stopping=True),
                    X, Y)
    assert len(clf.validation_scores_) == clf.n_iter_
    assert all(0 <= s <= 1 for s in clf.validation_scores_)


@pytest.mark.slow
def test_digits_per_label_accuracy_with_default_parameters(digits_split):
    # The issue's bar: per-label accuracy >= 0.95 on the digits' (odd, > 4, zero).
    # n_jobs=1 changes no result (they do not depend on it) and keeps the test quick
    # on a machine whose cores are busy with other work.
    X_train, X_test, y_train, y_test = digits_split
    clf = quiet_fit(ConvNetClassifier(random_state=0, n_jobs=1), X_train,
                    digit_labels(y_train))
    per_label = (clf.predict(X_test) == digit_labels(y_test)).mean(axis=0)
    assert (per_label >= 0.95).all(), per_label
