"""Tests for skconv.ConvNetTransformer: it trains the classifier's network, its
features are that network's activations, ``feature_layer``, feature names, pandas
output, pipelines and what its features are worth on the digits.

The behaviour shared with every estimator is tested in test_estimators_common.py
(its "transformer" case); scikit-learn's checks are in test_estimator_checks.py.
"""

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils._param_validation import InvalidParameterError

from skconv import ConvNetClassifier, ConvNetTransformer

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import SMALL, digit_labels, quiet_fit
except ImportError:
    from _estimator_helpers import SMALL, digit_labels, quiet_fit

TWO_HIDDEN = {**SMALL, "hidden_layer_sizes": (12, 10)}


@pytest.fixture(scope="module")
def fitted(digits_small):
    X, y = digits_small
    return quiet_fit(ConvNetTransformer(**TWO_HIDDEN), X, y)


@pytest.mark.parametrize("targets", [lambda y: y, digit_labels],
                         ids=["labels", "multilabel"])
def test_it_trains_the_classifiers_network(digits_small, targets):
    # One training machinery: the same parameters give the classifier's model, bit
    # for bit, for labels and for indicator matrices.
    X, y = digits_small
    tr = quiet_fit(ConvNetTransformer(**SMALL), X, targets(y))
    clf = quiet_fit(ConvNetClassifier(**SMALL), X, targets(y))
    assert tr.loss_curve_ == clf.loss_curve_
    assert_array_equal(tr.classes_, clf.classes_)
    for a, b in zip(tr.conv_weights_ + tr.coefs_ + tr.intercepts_,
                    clf.conv_weights_ + clf.coefs_ + clf.intercepts_):
        assert_array_equal(a, b)


def test_features_are_the_networks_hidden_activations(digits_small, fitted):
    X, y = digits_small
    features = fitted.transform(X)
    assert features.shape == (len(X), 10) and features.dtype == np.float64
    assert (features >= 0).all()  # after the relu
    # The output layer applied to them gives the logits of the whole forward.
    logits = fitted._forward(fitted._validate_predict_data(X))
    assert_allclose(features @ fitted.coefs_[-1] + fitted.intercepts_[-1], logits,
                    rtol=1e-10, atol=1e-12)
    # Each hidden layer feeds the next one.
    first = fitted.set_params(feature_layer=0).transform(X)
    assert_allclose(np.maximum(first @ fitted.coefs_[1] + fitted.intercepts_[1], 0),
                    features, rtol=1e-10, atol=1e-12)
    fitted.set_params(feature_layer=-1)


@pytest.mark.parametrize("feature_layer, n_features", [
    (-1, 10), (1, 10), (0, 12), (-2, 12), ("conv", 8 * 2 * 2)])
def test_feature_layer_picks_the_layer(digits_small, fitted, feature_layer, n_features):
    X, y = digits_small
    weights = [w.copy() for w in fitted.coefs_]
    fitted.set_params(feature_layer=feature_layer)
    try:
        features = fitted.transform(X)
        names = fitted.get_feature_names_out()
    finally:
        fitted.set_params(feature_layer=-1)
    assert features.shape == (len(X), n_features)
    assert_array_equal(names, [f"convnettransformer{i}" for i in range(n_features)])
    # Read at transform time: the network is not trained again.
    for a, b in zip(weights, fitted.coefs_):
        assert_array_equal(a, b)


def test_conv_features_are_the_last_conv_block_flattened(digits_small, fitted):
    X, y = digits_small
    fitted.set_params(feature_layer="conv")
    try:
        features = fitted.transform(X[:5])
    finally:
        fitted.set_params(feature_layer=-1)
    network = fitted._network
    blocks = network.block_outputs(fitted._validate_predict_data(X[:5]))
    assert_array_equal(features, blocks[-1][1].reshape(5, -1))


def test_bad_feature_layer(digits_small, fitted):
    X, y = digits_small
    for index in (2, -3):
        fitted.set_params(feature_layer=index)
        try:
            with pytest.raises(ValueError, match="2 hidden dense layers, valid indices "
                                                 "are 0 to 1"):
                fitted.transform(X)
        finally:
            fitted.set_params(feature_layer=-1)
    flat = quiet_fit(ConvNetTransformer(**{**SMALL, "hidden_layer_sizes": ()}), X, y)
    with pytest.raises(ValueError, match="use 'conv'"):
        flat.transform(X)
    assert flat.set_params(feature_layer="conv").transform(X).shape == (len(X), 32)
    with pytest.raises(InvalidParameterError):
        ConvNetTransformer(feature_layer="dense").fit(X, y)


def test_float32_features_stay_float32(digits_small):
    X, y = digits_small
    tr = quiet_fit(ConvNetTransformer(**SMALL), X.astype(np.float32), y)
    assert tr.transform(X).dtype == np.float32
    assert tr.fit_transform(X.astype(np.float32), y).dtype == np.float32


def test_fit_transform_equals_fit_then_transform(digits_small):
    X, y = digits_small
    a = quiet_fit(ConvNetTransformer(**SMALL), X, y).transform(X)
    b = ConvNetTransformer(**SMALL)
    with pytest.warns(Warning):  # the ConvergenceWarning of 5 epochs
        b = b.fit_transform(X, y)
    assert_array_equal(a, b)


def test_pandas_output(digits_small):
    pd = pytest.importorskip("pandas")
    X, y = digits_small
    df = pd.DataFrame(X, columns=[f"pixel_{i}" for i in range(64)],
                      index=np.arange(len(X)) + 1000)
    tr = ConvNetTransformer(**SMALL).set_output(transform="pandas")
    quiet_fit(tr, df, y)
    out = tr.transform(df)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == [f"convnettransformer{i}" for i in range(16)]
    assert_array_equal(out.index, df.index)
    assert_array_equal(out.to_numpy(), tr.set_output(transform="default").transform(df))


def test_pipeline_with_logistic_regression(digits_small):
    X, y = digits_small
    pipe = quiet_fit(make_pipeline(ConvNetTransformer(**{**SMALL, "max_iter": 20}),
                                   LogisticRegression(max_iter=500)), X, y)
    assert pipe.score(X, y) > 0.8
    assert_array_equal(pipe[:-1].get_feature_names_out(),
                       [f"convnettransformer{i}" for i in range(16)])


def test_no_predict_and_no_partial_fit():
    # A transformer: its classification head trains the features and stays inside.
    assert not hasattr(ConvNetTransformer(), "predict")
    assert not hasattr(ConvNetTransformer(), "partial_fit")


@pytest.mark.slow
def test_digits_features_in_front_of_logistic_regression(digits_split):
    # The bar: the default transformer's features give LogisticRegression
    # >= 0.97 test accuracy on the digits split. n_jobs=1 changes no result.
    X_train, X_test, y_train, y_test = digits_split
    pipe = quiet_fit(make_pipeline(ConvNetTransformer(random_state=0, n_jobs=1),
                                   LogisticRegression(max_iter=1000)), X_train, y_train)
    assert pipe.score(X_test, y_test) >= 0.97
