"""ONNX export (skconv.onnx): onnxruntime gives what predict, predict_proba and
transform give, for the classifier (single-label and multilabel), the regressor and
the transformer, alone and in pipelines.

Needs the optional extra ``onnx`` (skl2onnx, onnx, onnxruntime); skipped without it.
The graph computes in float32, so outputs agree to float32 rounding (1e-5) and
labels agree except where a decision is closer than that to its threshold (two
classes' probabilities, a multilabel probability and 0.5).
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

pytest.importorskip("skl2onnx", reason="needs the 'onnx' extra (skl2onnx)")
ort = pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra (onnxruntime)")
from skl2onnx import to_onnx  # noqa: E402

import skconv.onnx  # noqa: E402,F401  (registers the converters)
from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer  # noqa: E402
from skconv._estimators.inspection import network_of  # noqa: E402
from skconv._nn.layers import Activation, Conv, Dense, Flatten, GlobalPool, Pool  # noqa: E402
from skconv._nn.network import Network  # noqa: E402

pytestmark = pytest.mark.onnx

TOL = 1e-5
SMALL = dict(hidden_layer_sizes=(6,), max_iter=2, batch_size=16, random_state=0)
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "logistic", "identity")
POOL_MODES = ("max", "avg", "min")
SPATIAL = {1: (14, 31), 2: (7, 13), 3: (4, 8)}  # size ranges per number of axes


def _data(sample_shape, n=40, n_classes=3, seed=0, dtype=np.float32, target="labels"):
    """Random X, and targets: ``labels`` (every class present), ``indicator`` (a
    multilabel matrix with ``n_classes`` labels, each on and off somewhere) or
    ``values`` (1-D regression targets of order one; ``values2`` for two)."""
    rng = np.random.RandomState(seed)
    X = rng.rand(n, *sample_shape).astype(dtype)
    if target == "indicator":
        y = (rng.rand(n, n_classes) > 0.5).astype(int)
        y[0], y[1] = 0, 1
    elif target.startswith("values"):
        y = rng.randn(n, int(target[6:] or 1))
        y = y[:, 0] if target == "values" else y
    else:
        y = rng.randint(0, n_classes, n)
        y[:n_classes] = np.arange(n_classes)
    return X, y


def _fit(estimator, X, y):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return estimator.fit(X, y)


def _run(onx, X):
    session = ort.InferenceSession(onx.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: X})


def _check_outputs(label, proba, model, X, tol=TOL):
    expected = model.predict_proba(X)
    assert proba.shape == expected.shape
    np.testing.assert_allclose(proba, expected, rtol=0, atol=tol)
    predicted = model.predict(X)
    if predicted.ndim == 2:  # multilabel: a label may differ only at 0.5 +- rounding
        assert label.shape == predicted.shape and label.dtype == np.int64
        decided = np.abs(expected - 0.5) > tol
        assert np.array_equal(label[decided], predicted[decided])
        return np.abs(proba - expected).max()
    # A label may differ only where two classes tie to float32 rounding.
    top2 = np.sort(expected, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > tol
    assert np.array_equal(np.asarray(label)[decided], predicted[decided])
    return np.abs(proba - expected).max()


def _check_values(values, expected, tol=TOL):
    """A regressor's (N, n_outputs) or a transformer's (N, n_features) output."""
    expected = np.asarray(expected)
    expected = expected.reshape(len(expected), -1)  # predict's (N,) for one target
    assert values.shape == expected.shape
    np.testing.assert_allclose(values, expected, rtol=tol, atol=tol)
    return np.abs(values - expected).max()


def _check_graph(model, X):
    """The converted ``model`` on ``X`` against what the model itself returns."""
    if isinstance(model, ConvNetClassifier):
        label, proba = _run(to_onnx(model, X[:1], options={"zipmap": False}), X)
        _check_outputs(label, proba, model, X)
    elif isinstance(model, ConvNetRegressor):
        _check_values(_run(to_onnx(model, X[:1]), X)[0], model.predict(X))
    else:
        _check_values(_run(to_onnx(model, X[:1]), X)[0], model.transform(X))


def _random_params(rng, i):
    """One architecture: dims, pool modes and activations cycle (every one is
    covered), the rest is drawn."""
    n_axes = i % 3 + 1
    channels = int(rng.randint(1, 4))
    spatial = tuple(int(s) for s in rng.randint(*SPATIAL[n_axes], size=n_axes))
    n_conv = int(rng.randint(1, 3))

    def per_axis(low, high):  # an int, or one per axis
        values = tuple(int(v) for v in rng.randint(low, high + 1, size=n_axes))
        return values[0] if rng.rand() < 0.5 else values

    params = dict(
        filters=tuple(int(f) for f in rng.randint(2, 5, size=n_conv)),
        kernel_size=tuple(per_axis(1, 4) for _ in range(n_conv)),
        stride=tuple(int(rng.randint(1, 3)) for _ in range(n_conv)),
        padding=tuple(["same", "valid", int(rng.randint(0, 3))][rng.randint(3)]
                      for _ in range(n_conv)),
        dilation=tuple(int(rng.randint(1, 3)) for _ in range(n_conv)),
        pooling=tuple(POOL_MODES[(i + k) % 3] for k in range(n_conv)),
        pool_size=tuple(per_axis(1, 3) for _ in range(n_conv)),
        pool_stride=tuple([None, 1, 2][rng.randint(3)] for _ in range(n_conv)),
        activation=ACTIVATIONS[i % len(ACTIVATIONS)],
    )
    return (channels,) + spatial, params


def _random_models(n_models, seed=0, make=ConvNetClassifier, target="labels",
                   **fixed):
    """(params, X, fitted model) for n_models drawn architectures that fit their
    input (draws whose maps shrink to nothing are drawn again); ``make(**params)``
    builds the estimator, trained on ``target`` (see :func:`_data`); ``fixed``
    parameters override the drawn ones (a callable of the draw's index gives one
    per model)."""
    rng = check_random_state(seed)
    models, i = [], 0
    while len(models) < n_models:
        sample_shape, params = _random_params(rng, i)
        params.update({k: v(i) if callable(v) else v for k, v in fixed.items()})
        X, y = _data(sample_shape, seed=i, target=target)
        try:
            model = _fit(make(**{**SMALL, **params}), X, y)
        except ValueError as exc:
            assert "cannot take input shape" in str(exc), exc
            continue
        models.append((params, X, model))
        i += 1
    return models


def _described(models):
    return [layer for _, _, m in models for layer in network_of(m).describe()]


def _assert_every_dimension(models):
    convs = [d for d in _described(models) if d["kind"] == "conv"]
    assert {len(d["kernel_shape"]) for d in convs} == {1, 2, 3}


def test_random_architectures_match_predict():
    models = _random_models(12)
    described = _described(models)
    # What the draws covered: every activation, pool mode and dimension, 'same'
    # padding with stride 2 (asymmetric pads) and dilation.
    assert {d["name"] for d in described if d["kind"] == "activation"} == set(ACTIVATIONS)
    assert {d["mode"] for d in described if d["kind"] == "pool"} == set(POOL_MODES)
    _assert_every_dimension(models)
    convs = [d for d in described if d["kind"] == "conv"]
    assert any(lo != hi for d in convs for lo, hi in d["pads"])
    assert any(max(d["dilations"]) > 1 for d in convs)
    for params, X, model in models:
        flat = X.reshape(len(X), -1)
        onx = to_onnx(model, flat[:1], options={"zipmap": False})
        label, proba = _run(onx, flat)
        _check_outputs(label, proba, model, flat)


@pytest.mark.parametrize("opset", [skconv.onnx.MIN_OPSET, 13, None])
def test_nd_input_and_opsets(opset):
    X, y = _data((2, 9, 11))
    model = _fit(ConvNetClassifier(filters=(3, 4), kernel_size=(3, 2), stride=2,
                                   padding="same", pooling=("min", "avg"), **SMALL), X, y)
    onx = to_onnx(model, X[:1], options={"zipmap": False}, target_opset=opset)
    assert onx.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 2
    label, proba = _run(onx, X)
    _check_outputs(label, proba, model, X)


def test_float64_model_and_input():
    # The graph computes in float32 (onnxruntime's Conv has no float64 kernel) and
    # returns float64 probabilities for a float64 input.
    X, y = _data((1, 10, 10), dtype=np.float64)
    model = _fit(ConvNetClassifier(filters=(3,), kernel_size=3, **SMALL), X, y)
    onx = to_onnx(model, X[:1], options={"zipmap": False})
    label, proba = _run(onx, X)
    assert proba.dtype == np.float64
    _check_outputs(label, proba, model, X)


def test_string_labels_and_nocl():
    X, y = _data((1, 20))
    names = np.array(["cat", "dog", "emu"])
    model = _fit(ConvNetClassifier(filters=(3,), kernel_size=3, **SMALL), X, names[y])
    label, proba = _run(to_onnx(model, X[:1], options={"zipmap": False}), X)
    assert label.dtype == object
    _check_outputs(label, proba, model, X)
    label, _ = _run(to_onnx(model, X[:1], options={"zipmap": False, "nocl": True}), X)
    assert np.array_equal(names[label], model.predict(X))


def test_pipeline_with_zipmap():
    X, y = _data((1, 8, 8))
    X = X.reshape(len(X), -1) * 255
    pipe = _fit(make_pipeline(StandardScaler(),
                              ConvNetClassifier(filters=(3,), kernel_size=3, **SMALL)),
                X.astype(np.float32), y)
    label, proba = _run(to_onnx(pipe, X[:1].astype(np.float32)), X.astype(np.float32))
    proba = np.array([[row[c] for c in pipe.classes_] for row in proba],
                     dtype=np.float32)
    _check_outputs(label, proba, pipe, X.astype(np.float32))


def test_float_and_bool_classes_give_int64_labels():
    X, y = _data((1, 16), n_classes=2)
    for classes in (y + 1.0, y.astype(bool)):
        model = _fit(ConvNetClassifier(filters=(2,), kernel_size=3, **SMALL), X, classes)
        label, proba = _run(to_onnx(model, X[:1], options={"zipmap": False}), X)
        assert label.dtype == np.int64
        _check_outputs(label, proba, model, X)


@pytest.mark.parametrize("n_axes, mode, tail", [(1, "min", "global_min"),
                                                (2, "avg", "global_avg"),
                                                (3, "max", "global_max"),
                                                (2, "min", "flatten")])
def test_layers_the_lenet_builder_does_not_make(n_axes, mode, tail):
    # Padded pooling and global pooling exist in the engine (and in the networks of
    # estimators to come); swapped into a fitted classifier to reach the converter.
    shape = (2,) + (9, 8, 6)[:n_axes]
    X, y = _data(shape)
    model = _fit(ConvNetClassifier(filters=(2,), kernel_size=2, **SMALL), X, y)
    layers = [Conv(3, 3, stride=2, padding="same"), Activation("tanh"),
              Pool(3, stride=2, padding="same", mode=mode),
              Pool(2, stride=1, padding=1, mode=mode)]
    layers += [Flatten()] if tail == "flatten" else [GlobalPool(tail.split("_")[1])]
    layers += [Dense(5), Activation("leaky_relu"), Dense(3)]
    network = Network(layers)
    network.initialize(shape, check_random_state(1), np.float32)
    model._network = network
    model._expose_weights()
    flat = X.reshape(len(X), -1)
    label, proba = _run(to_onnx(model, flat[:1], options={"zipmap": False}), flat)
    _check_outputs(label, proba, model, flat)


# -------------------------------------------------------------------------------------
# Multilabel classifier, regressor, transformer
# -------------------------------------------------------------------------------------
def test_multilabel_classifier_gives_sigmoids_and_the_indicator_matrix():
    # skl2onnx's multilabel MLPClassifier: probabilities (N, n_labels) and the int64
    # indicator matrix of the probabilities above 0.5 as the label.
    models = _random_models(6, seed=1, target="indicator")
    _assert_every_dimension(models)
    decisions = set()
    for _, X, model in models:
        assert model.out_activation_ == "logistic"
        onx = to_onnx(model, X[:1], options={"zipmap": False})
        label, proba = _run(onx, X)
        assert not np.allclose(proba.sum(axis=1), 1)  # not a softmax
        _check_outputs(label, proba, model, X)
        decisions.update(np.unique(label).tolist())
    assert decisions == {0, 1}


def test_multilabel_classifier_with_zipmap_and_nocl():
    X, Y = _data((1, 12), target="indicator")
    model = _fit(ConvNetClassifier(filters=(3,), kernel_size=3, **SMALL), X, Y)
    label, maps = _run(to_onnx(model, X[:1]), X)  # ZipMap: a dict per sample
    proba = np.array([[row[c] for c in model.classes_] for row in maps])
    _check_outputs(label, proba, model, X)
    # nocl changes nothing for an indicator matrix.
    label, proba = _run(to_onnx(model, X[:1], options={"zipmap": False, "nocl": True}), X)
    _check_outputs(label, proba, model, X)


@pytest.mark.parametrize("target", ["values", "values2"])
def test_regressor_random_architectures_match_predict(target):
    models = _random_models(6, seed=2, make=ConvNetRegressor, target=target)
    _assert_every_dimension(models)
    for _, X, model in models:
        flat = X.reshape(len(X), -1)
        (values,) = _run(to_onnx(model, flat[:1]), flat)
        # skl2onnx's regressors give (N, n_outputs), (N, 1) for one target.
        assert values.shape == (len(X), model.n_outputs_) and values.dtype == np.float32
        _check_values(values, model.predict(flat))


def test_regressor_column_target_and_nd_input():
    X, y = _data((2, 6, 7), target="values")
    model = _fit(ConvNetRegressor(filters=(3,), kernel_size=(3, 2), stride=2,
                                  padding="same", pooling="min", **SMALL), X, y[:, None])
    (values,) = _run(to_onnx(model, X[:1]), X)
    assert model.predict(X).shape == values.shape == (len(X), 1)
    _check_values(values, model.predict(X))


def test_transformer_random_architectures_match_transform():
    # feature_layer cycles over the conv features and both hidden dense layers.
    layers = ("conv", 0, -1)
    models = _random_models(6, seed=3, make=ConvNetTransformer,
                            hidden_layer_sizes=(6, 5),
                            feature_layer=lambda i: layers[i % 3])
    _assert_every_dimension(models)
    for params, X, model in models:
        (features,) = _run(to_onnx(model, X[:1]), X)
        assert features.shape[1] == len(model.get_feature_names_out())
        if params["feature_layer"] != "conv":
            assert features.shape[1] == (6, 5)[params["feature_layer"]]
        _check_values(features, model.transform(X))


def test_transformer_follows_feature_layer_set_after_fit():
    X, y = _data((1, 9, 9))
    model = _fit(ConvNetTransformer(filters=(3,), kernel_size=3,
                                    **{**SMALL, "hidden_layer_sizes": (7, 4)}), X, y)
    widths = []
    for layer in (-1, 0, "conv"):
        model.set_params(feature_layer=layer)
        (features,) = _run(to_onnx(model, X[:1]), X)
        _check_values(features, model.transform(X))
        widths.append(features.shape[1])
    assert widths == [4, 7, 3 * 4 * 4]


@pytest.mark.parametrize("make, target", [(ConvNetRegressor, "values2"),
                                          (ConvNetTransformer, "labels"),
                                          (ConvNetClassifier, "indicator")])
def test_float64_models_of_every_estimator(make, target):
    # Computed in float32, returned in float64 for a float64 input, as for the
    # single-label classifier (test_float64_model_and_input).
    X, y = _data((1, 11, 9), dtype=np.float64, target=target)
    model = _fit(make(filters=(3,), kernel_size=3, **SMALL), X, y)
    outputs = _run(to_onnx(model, X[:1], options={"zipmap": False}
                           if make is ConvNetClassifier else None), X)
    assert outputs[-1].dtype == np.float64
    if make is ConvNetClassifier:
        _check_outputs(*outputs, model, X)
    elif make is ConvNetRegressor:
        _check_values(outputs[0], model.predict(X))
    else:
        _check_values(outputs[0], model.transform(X))


def test_pipelines_with_the_regressor_and_the_transformer():
    X, y = _data((1, 8, 8), target="values")
    X = (X.reshape(len(X), -1) * 255).astype(np.float32)
    small = dict(filters=(3,), kernel_size=3, **SMALL)
    regression = _fit(make_pipeline(StandardScaler(), ConvNetRegressor(**small)), X, y)
    (values,) = _run(to_onnx(regression, X[:1]), X)
    _check_values(values, regression.predict(X))

    labels = (y > 0).astype(int) + (y > 1)
    features = _fit(make_pipeline(StandardScaler(), ConvNetTransformer(**small),
                                  LogisticRegression()), X, labels)
    label, proba = _run(to_onnx(features, X[:1], options={"zipmap": False}), X)
    _check_outputs(label, proba, features, X)


# -------------------------------------------------------------------------------------
# Batch normalisation, dropout and augmentation
# -------------------------------------------------------------------------------------
@pytest.mark.parametrize("make, target, head", [
    (ConvNetClassifier, "labels", "flatten"), (ConvNetClassifier, "indicator", "min"),
    (ConvNetRegressor, "values2", "avg"), (ConvNetTransformer, "labels", "max")])
def test_batch_norm_and_dropout(make, target, head):
    # Set through the estimators' parameters, as a user sets them.
    options = dict(batch_norm=True, dropout=0.3, spatial_dropout=0.2, head=head,
                   augment_shift=0.2, augment_flip=True, augment_scale=0.2,
                   augment_noise=0.05)
    for n_axes, shape in ((1, (2, 17)), (2, (1, 9, 8)), (3, (1, 6, 5, 6))):
        X, y = _data(shape, seed=n_axes, target=target)
        model = _fit(make(filters=(3, 4), kernel_size=2, activation="tanh", **options,
                          **{**SMALL, "hidden_layer_sizes": (6, 5), "max_iter": 3}), X, y)
        described = network_of(model).describe()
        kinds = [d["kind"] for d in described]
        assert kinds.count("batch_norm") == 4 and kinds.count("dropout") == 4
        # The identity in the graph, as in predict; after the classifier's
        # input_scaling ('max_abs' on images and volumes, None on signals).
        first = 1 if make is ConvNetClassifier and n_axes > 1 else 0
        assert kinds[:first] == ["input_scale"] * first
        assert kinds[first:first + 2] == ["random_shift", "random_scale"]
        assert kinds[kinds.index("dense") - 1] == (
            "flatten" if head == "flatten" else "global_pool")
        # batch_norm_position='auto': after the pooling but on signals, so the graph
        # is checked with both.
        assert kinds[kinds.index("conv") + 1] == ("batch_norm" if n_axes == 1
                                                  else "pool")
        # Trained: statistics and scales away from their starting values.
        norms = [d for d in described if d["kind"] == "batch_norm"]
        assert all(np.abs(d["running_mean"]).max() > 1e-3 for d in norms)
        assert all(np.abs(d["gamma"] - 1).max() > 1e-4 for d in norms)
        _check_graph(model, X.reshape(len(X), -1))


@pytest.mark.parametrize("make, target", [
    (ConvNetClassifier, "labels"), (ConvNetRegressor, "values"),
    (ConvNetTransformer, "labels")])
def test_input_scaling_divides_in_the_graph(make, target):
    # Pixels of 0-255: the graph divides by input_scale_ first, as predict does.
    for shape in ((1, 9, 8), (2, 17)):
        X, y = _data(shape, seed=3, target=target)
        X = np.round(np.abs(X) * 80).astype(np.float32)
        model = _fit(make(input_scaling="max_abs", **SMALL), X, y)
        assert model.input_scale_ == np.abs(X).max() > 1
        assert [d["kind"] for d in network_of(model).describe()][0] == "input_scale"
        _check_graph(model, X.reshape(len(X), -1))


@pytest.mark.parametrize("make, target", [
    (ConvNetClassifier, "labels"), (ConvNetRegressor, "values"),
    (ConvNetTransformer, "labels")])
def test_batch_norm_after_the_conv_layers_only(make, target):
    X, y = _data((1, 9, 8), seed=4, target=target)
    model = _fit(make(filters=(3, 4), kernel_size=2, batch_norm="conv",
                      **{**SMALL, "hidden_layer_sizes": (6, 5), "max_iter": 3}), X, y)
    kinds = [d["kind"] for d in network_of(model).describe()]
    assert kinds.count("batch_norm") == 2 and "batch_norm" not in kinds[kinds.index(
        "dense"):]
    _check_graph(model, X.reshape(len(X), -1))
