"""skops files: every skconv estimator round-trips, and a file names only skconv's own
types for review (``skops.io.get_untrusted_types``).

Needs the optional extra ``persist`` (skops); skipped without it. skops trusts
builtins, numpy arrays and scalars, ``RandomState`` and scikit-learn's estimators; so
the estimators store their state in those (dtypes by name, not as numpy dtype objects).
"""

import inspect
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import BaseEstimator, is_regressor
from sklearn.exceptions import ConvergenceWarning

import skconv
from skconv import ConvNetClassifier
from skconv._estimators.inspection import network_of

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import LEARNING_OPTIONS
except ImportError:
    from _estimator_helpers import LEARNING_OPTIONS

sio = pytest.importorskip("skops.io", reason="needs the 'persist' extra (skops)")

pytestmark = pytest.mark.persist

#: Every public estimator of the package (the regressor and transformer too, once
#: they exist).
ESTIMATORS = [obj for name in skconv.__all__
              if inspect.isclass(obj := getattr(skconv, name))
              and issubclass(obj, BaseEstimator)]
# min_updates=0: two epochs on signals too (their 'auto' budget of 2,000 updates
# would make the 1-D cases the slowest of the suite, and adds nothing to a round trip).
SMALL = dict(filters=(2, 3), kernel_size=3, hidden_layer_sizes=(5,), max_iter=2,
             min_updates=0, batch_size=16, random_state=0)
SHAPES = {"1d": (2, 20), "2d": (1, 8, 8), "2d_rgb": (3, 6, 6), "3d": (1, 4, 5, 4)}
LEGACY = Path(__file__).parent / "data" / "legacy_models_0.1.0.dev0.pkl"


def _data(estimator_class, sample_shape, dtype, n=40, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, *sample_shape).astype(dtype)
    y = rng.rand(n) if is_regressor(estimator_class()) else rng.randint(0, 3, n)
    return X, y


def _outputs(model, X):
    """Everything the model computes for X (predict, predict_proba, transform...)."""
    return {name: getattr(model, name)(X) for name in
            ("predict", "predict_proba", "decision_function", "transform")
            if hasattr(model, name)}


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fn(*args, **kwargs)


def _round_trip(model, tmp_path, name="model"):
    path = tmp_path / f"{name}.skops"
    sio.dump(model, path)
    untrusted = sio.get_untrusted_types(file=path)
    foreign = [t for t in untrusted if not t.startswith("skconv.")]
    assert foreign == [], foreign
    return sio.load(path, trusted=untrusted), untrusted


def _assert_same_outputs(a, b, X):
    out_a, out_b = _outputs(a, X), _outputs(b, X)
    assert out_a.keys() == out_b.keys()
    for name in out_a:
        assert_array_equal(out_a[name], out_b[name], err_msg=name)


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_fitted_round_trip_predicts_and_trains_on_identically(tmp_path, estimator_class,
                                                            dtype, shape):
    X, y = _data(estimator_class, SHAPES[shape], dtype)
    model = _quiet(estimator_class(**SMALL).fit, X, y)
    loaded, untrusted = _round_trip(model, tmp_path)
    assert f"{estimator_class.__module__}.{estimator_class.__name__}" in untrusted
    _assert_same_outputs(model, loaded, X)
    assert loaded.image_shape_ == model.image_shape_
    # Training goes on as it would have: weights and optimizer state came back.
    for m in (model, loaded):
        _quiet(m.set_params(warm_start=True, max_iter=1).fit, X, y)
    _assert_same_outputs(model, loaded, X)
    for a, b in zip(model.conv_weights_ + model.coefs_, loaded.conv_weights_ + loaded.coefs_):
        assert_array_equal(a, b)
        assert a.dtype == dtype


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
@pytest.mark.parametrize("batch_norm", [True, "conv"])
def test_learning_options_round_trip(tmp_path, estimator_class, batch_norm):
    # Batch norm (its running statistics are buffers, not parameters), dropout (its
    # masks come from the estimator's RandomState) and the cosine schedule (its
    # position is the optimizer's): a file and a pickle keep all three, so training
    # goes on bit for bit as it would have.
    X, y = _data(estimator_class, SHAPES["1d"], np.float32)
    model = _quiet(estimator_class(**{**SMALL, **LEARNING_OPTIONS,
                                      "batch_norm": batch_norm}).fit, X, y)
    stats = [d for d in network_of(model).describe() if d["kind"] == "batch_norm"]
    assert stats and all(np.abs(d["running_mean"]).max() > 0 for d in stats)
    loaded, _ = _round_trip(model, tmp_path)
    copies = [loaded, pickle.loads(pickle.dumps(model))]
    for copy in copies:
        _assert_same_outputs(model, copy, X)
        for a, b in zip(network_of(model).get_state(), network_of(copy).get_state()):
            assert_array_equal(a, b)
    go_on = ((lambda m: m.partial_fit(X, y)) if hasattr(model, "partial_fit") else
             (lambda m: _quiet(m.set_params(warm_start=True, max_iter=1).fit, X, y)))
    for m in [model] + copies:
        go_on(m)
    for copy in copies:
        _assert_same_outputs(model, copy, X)
        assert copy.loss_curve_ == model.loss_curve_


@pytest.mark.parametrize("estimator_class", ESTIMATORS)
def test_unfitted_round_trip(tmp_path, estimator_class):
    model = estimator_class(filters=(3,), padding="valid", pooling=("min",), max_iter=2,
                            random_state=0)
    loaded, untrusted = _round_trip(model, tmp_path)
    assert untrusted == [f"{estimator_class.__module__}.{estimator_class.__name__}"]
    assert loaded.get_params() == model.get_params()
    X, y = _data(estimator_class, (1, 8, 8), np.float32)
    _assert_same_outputs(_quiet(model.fit, X, y), _quiet(loaded.fit, X, y), X)


def test_classifier_variants_round_trip(tmp_path):
    # SGD with early stopping, class weights by label, string labels, partial_fit,
    # and a DataFrame's column names.
    rng = np.random.RandomState(0)
    X = rng.rand(60, 64).astype(np.float32)
    y = np.array(["a", "b", "c"])[rng.randint(0, 3, 60)]
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=[f"px{i}" for i in range(64)])
    models = {
        "sgd_early_stopping": _quiet(ConvNetClassifier(solver="sgd", early_stopping=True,
                                                       **SMALL).fit, X.astype(np.float64), y),
        "class_weight": _quiet(ConvNetClassifier(class_weight={"a": 1.0, "b": 2.0, "c": 0.5},
                                                 **SMALL).fit, X, y),
        "partial_fit": ConvNetClassifier(**SMALL).partial_fit(X, y, classes=["a", "b", "c"]),
        "data_frame": _quiet(ConvNetClassifier(**SMALL).fit, frame, y),
    }
    for name, model in models.items():
        loaded, _ = _round_trip(model, tmp_path, name)
        X_in = frame if name == "data_frame" else X
        _assert_same_outputs(model, loaded, X_in)
    assert_array_equal(loaded.feature_names_in_, frame.columns)


def test_legacy_pickles_dump_only_skconv_types(tmp_path):
    # Models pickled by 0.1.0.dev0 (dtype objects in their state) write clean files.
    with open(LEGACY, "rb") as f:
        legacy = pickle.load(f)
    for name, case in legacy.items():
        loaded, _ = _round_trip(case["model"], tmp_path, name)
        # As the unpickled model predicts now (tests/test_compat.py compares that with
        # what it predicted when it was pickled).
        assert_array_equal(loaded.predict_proba(case["X"]),
                           case["model"].predict_proba(case["X"]), err_msg=name)
