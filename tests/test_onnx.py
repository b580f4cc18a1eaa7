"""ONNX export (skconv.onnx): onnxruntime gives what predict and predict_proba give.

Needs the optional extra ``onnx`` (skl2onnx, onnx, onnxruntime); skipped without it.
The graph computes in float32, so probabilities agree to float32 rounding (1e-5) and
labels agree except where two classes' probabilities are closer than that.
"""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state

pytest.importorskip("skl2onnx", reason="needs the 'onnx' extra (skl2onnx)")
ort = pytest.importorskip("onnxruntime", reason="needs the 'onnx' extra (onnxruntime)")
from skl2onnx import to_onnx  # noqa: E402

import skconv.onnx  # noqa: E402,F401  (registers the converters)
from skconv import ConvNetClassifier  # noqa: E402
from skconv._estimators.inspection import network_of  # noqa: E402
from skconv._nn.layers import Activation, Conv, Dense, Flatten, GlobalPool, Pool  # noqa: E402
from skconv._nn.network import Network  # noqa: E402

pytestmark = pytest.mark.onnx

TOL = 1e-5
SMALL = dict(hidden_layer_sizes=(6,), max_iter=2, batch_size=16, random_state=0)
ACTIVATIONS = ("relu", "leaky_relu", "tanh", "logistic", "identity")
POOL_MODES = ("max", "avg", "min")
SPATIAL = {1: (14, 31), 2: (7, 13), 3: (4, 8)}  # size ranges per number of axes


def _data(sample_shape, n=40, n_classes=3, seed=0, dtype=np.float32):
    rng = np.random.RandomState(seed)
    X = rng.rand(n, *sample_shape).astype(dtype)
    y = rng.randint(0, n_classes, n)
    y[:n_classes] = np.arange(n_classes)  # every class present
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
    # A label may differ only where two classes tie to float32 rounding.
    top2 = np.sort(expected, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > tol
    predicted = model.predict(X)
    assert np.array_equal(np.asarray(label)[decided], predicted[decided])
    return np.abs(proba - expected).max()


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


def _random_models(n_models, seed=0):
    """(params, X, fitted model) for n_models drawn architectures that fit their
    input (draws whose maps shrink to nothing are drawn again)."""
    rng = check_random_state(seed)
    models, i = [], 0
    while len(models) < n_models:
        sample_shape, params = _random_params(rng, i)
        X, y = _data(sample_shape, seed=i)
        try:
            model = _fit(ConvNetClassifier(**SMALL, **params), X, y)
        except ValueError as exc:
            assert "cannot take input shape" in str(exc), exc
            continue
        models.append((params, X, model))
        i += 1
    return models


def test_random_architectures_match_predict():
    models = _random_models(12)
    described = [layer for _, _, m in models for layer in
                 network_of(m).describe()]
    # What the draws covered: every activation, pool mode and dimension, 'same'
    # padding with stride 2 (asymmetric pads) and dilation.
    assert {d["name"] for d in described if d["kind"] == "activation"} == set(ACTIVATIONS)
    assert {d["mode"] for d in described if d["kind"] == "pool"} == set(POOL_MODES)
    convs = [d for d in described if d["kind"] == "conv"]
    assert {len(d["kernel_shape"]) for d in convs} == {1, 2, 3}
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
