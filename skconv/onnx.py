"""ONNX export of fitted skconv estimators, through skl2onnx.

Importing this module registers skconv's estimators with ``skl2onnx`` (a shape
calculator and a converter each), after which scikit-learn's usual export works for
a fitted estimator and for a pipeline that contains one::

    import skconv.onnx  # noqa: F401  (registers the converters)
    from skl2onnx import to_onnx

    onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})

Needs the optional extra ``onnx`` (``skl2onnx``, ``onnx``, and ``onnxruntime`` to run
the models). Covered: :class:`~skconv.ConvNetClassifier` (single-label and
multilabel), :class:`~skconv.ConvNetRegressor` (one target or several) and
:class:`~skconv.ConvNetTransformer`, on 1-D, 2-D and 3-D inputs, every pooling mode,
padding, stride, dilation and activation, batch normalisation and dropout. The model
takes the input ``predict`` takes: flat ``(N, n_features)`` or N-d ``(N, C,
*spatial)``.

The graph, built from the network's own description (``Network.describe``)::

    X -> Cast(float32) -> Reshape(-1, *image_shape_)
      -> per layer: Conv (asymmetric pads spell out 'same' with any stride),
         MaxPool / AveragePool(count_include_pad=0) / min pool as -MaxPool(-x)
         (ONNX has no MinPool; padded cells are ignored by MaxPool, so this is exact),
         GlobalMaxPool / GlobalAveragePool, Relu / LeakyRelu / Tanh / Sigmoid,
         batch normalisation as Mul and Add by the per-channel constants skconv's
         inference computes (``scale``, ``shift``), Flatten, Gemm; dropout adds no
         node (the identity at inference)
      -> network output (logits, the regressor's prediction), or for the
         transformer the output of its feature layer
      -> head, by estimator:
         classifier: Softmax -> probabilities; ArgMax(logits) -> Gather(classes_)
             -> label
         multilabel classifier: Sigmoid -> probabilities; Binarizer(0.5) -> Cast
             -> the int64 indicator matrix (skl2onnx's multilabel MLPClassifier)
         regressor, transformer: none

The graph computes in float32 whatever the model's dtype: onnxruntime's CPU provider
implements Conv and AveragePool for float32 only. A float64 model therefore gets
float32 copies of its weights (its outputs then agree with skconv's to float32
rounding), and the float outputs are cast to float64 for a float64 input.

Outputs, as skl2onnx's converters of the scikit-learn estimators that are alike:

- classifier: ``label`` and ``probabilities``; labels are int64 for numeric and bool
  classes (bool as 0/1), strings for string classes, and for a multilabel model the
  ``(N, n_labels)`` int64 indicator matrix ``predict`` returns (as
  ``MLPClassifier``'s). skl2onnx's classifier options apply: ``zipmap`` (True, False
  or 'columns') and ``nocl`` (the label is the class index; no effect on a
  multilabel model).
- regressor: ``variable`` of shape ``(N, n_outputs_)``: ``(N, 1)`` for one target,
  skl2onnx's shape for every regressor (``MLPRegressor``, ``LinearRegression``)
  where ``predict`` gives ``(N,)`` for a 1-D ``y``.
- transformer: ``variable`` of shape ``(N, n_features_out)``, what ``transform``
  returns for the ``feature_layer`` set at conversion time.

Adding an estimator: build the input and the network graph with
:func:`_network_output`, then its own head, and register a shape calculator and a
converter as the end of this module does.
"""

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import (
    BooleanTensorType,
    DoubleTensorType,
    FloatTensorType,
    Int64TensorType,
    guess_proto_type,
)
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes
from skl2onnx.common.utils import (
    check_input_and_output_numbers,
    check_input_and_output_types,
)

from ._estimators.classifier import ConvNetClassifier
from ._estimators.inspection import feature_layer_of, network_of
from ._estimators.regressor import ConvNetRegressor
from ._estimators.transformer import ConvNetTransformer

__all__ = ["MIN_OPSET", "convert_convnet_classifier", "convert_convnet_regressor",
           "convert_convnet_transformer", "convnet_classifier_shape_calculator",
           "convnet_regressor_shape_calculator", "convnet_transformer_shape_calculator"]

#: The oldest ONNX opset the converters target (and the tests run): every op used
#: exists there with the attributes used (Softmax(axis=1) on 2-D logits means the
#: same before and after opset 13's change of its rule).
MIN_OPSET = 11

# skconv's activation names -> ONNX ops (identity adds no node).
_ACTIVATION_OPS = {"relu": "Relu", "leaky_relu": "LeakyRelu", "tanh": "Tanh",
                   "logistic": "Sigmoid", "identity": None}


class _Graph:
    """Adds nodes and constants to skl2onnx's container under unique names."""

    def __init__(self, scope, container):
        self.scope = scope
        self.container = container

    def name(self, hint):
        return self.scope.get_unique_variable_name(hint)

    def node(self, op, inputs, hint, output=None, **attrs):
        """One node; returns the name of its (new, or given) output."""
        output = output or self.name(hint)
        self.container.add_node(op, inputs, output,
                                name=self.scope.get_unique_operator_name(op), **attrs)
        return output

    def constant(self, hint, values, proto=TensorProto.FLOAT):
        name = self.name(hint)
        values = np.asarray(values)
        if proto == TensorProto.STRING:
            content = [str(v).encode("utf-8") for v in values.ravel()]
        elif proto == TensorProto.FLOAT:
            content = values.astype(np.float32).ravel().tolist()
        else:
            content = values.ravel().tolist()
        self.container.add_initializer(name, proto, list(values.shape), content)
        return name


def _onnx_pads(pads):
    """ONNX's pads attribute: every axis' low side, then every axis' high side."""
    return [int(lo) for lo, _ in pads] + [int(hi) for _, hi in pads]


def _pool(g, x, mode, **attrs):
    if mode == "max":
        return g.node("MaxPool", [x], "max_pool", **attrs)
    if mode == "avg":
        # Padded cells not counted in the average, as in skconv.
        return g.node("AveragePool", [x], "avg_pool", count_include_pad=0, **attrs)
    # min(x) = -max(-x): exact, and MaxPool's padded cells never win.
    negated = g.node("Neg", [x], "negated")
    return g.node("Neg", [g.node("MaxPool", [negated], "max_pool", **attrs)], "min_pool")


def _global_pool(g, x, mode):
    if mode == "max":
        y = g.node("GlobalMaxPool", [x], "global_max_pool")
    elif mode == "avg":
        y = g.node("GlobalAveragePool", [x], "global_avg_pool")
    else:
        negated = g.node("Neg", [x], "negated")
        y = g.node("Neg", [g.node("GlobalMaxPool", [negated], "global_max_pool")],
                   "global_min_pool")
    # ONNX keeps the spatial axes (size 1); skconv's output is (N, C).
    return g.node("Flatten", [y], "global_pool_flat", axis=1)


def _layer(g, x, layer):
    """The nodes of one layer of ``Network.describe()``; returns the output name."""
    kind = layer["kind"]
    if kind == "conv":
        inputs = [x, g.constant("conv_weights", layer["weights"]),
                  g.constant("conv_bias", layer["bias"])]
        return g.node("Conv", inputs, "conv", kernel_shape=list(layer["kernel_shape"]),
                      strides=list(layer["strides"]),
                      dilations=list(layer["dilations"]),
                      pads=_onnx_pads(layer["pads"]))
    if kind == "pool":
        return _pool(g, x, layer["mode"], kernel_shape=list(layer["pool_size"]),
                     strides=list(layer["strides"]), pads=_onnx_pads(layer["pads"]))
    if kind == "global_pool":
        return _global_pool(g, x, layer["mode"])
    if kind == "activation":
        op = _ACTIVATION_OPS.get(layer["name"], NotImplemented)
        if op is NotImplemented:
            raise NotImplementedError(
                f"no ONNX conversion for the activation {layer['name']!r}")
        if op is None:
            return x
        if op == "LeakyRelu":
            return g.node(op, [x], "leaky_relu", alpha=float(layer["negative_slope"]))
        return g.node(op, [x], layer["name"])
    if kind == "batch_norm":
        # The constants skconv's inference folds the statistics into, applied as it
        # applies them: y = x * scale + shift, per channel (axis 1 of the batch).
        per_channel = (-1,) + (1,) * (len(layer["input_shape"]) - 1)
        scale = g.constant("bn_scale", np.reshape(layer["scale"], per_channel))
        shift = g.constant("bn_shift", np.reshape(layer["shift"], per_channel))
        scaled = g.node("Mul", [x, scale], "bn_scaled")
        return g.node("Add", [scaled, shift], "batch_norm")
    if kind == "input_scale":
        return g.node("Div", [x, g.constant("input_divisor",
                                            np.array(layer["divisor"]))], "input_scale")
    if kind in ("dropout", "random_shift", "random_scale"):
        return x  # the identity at inference
    if kind == "flatten":
        return g.node("Flatten", [x], "flatten", axis=1)
    if kind == "dense":
        # skconv keeps W as (n_in, units): y = x @ W + b, Gemm without a transpose.
        inputs = [x, g.constant("dense_weights", layer["weights"]),
                  g.constant("dense_bias", layer["bias"])]
        return g.node("Gemm", inputs, "dense")
    raise NotImplementedError(f"no ONNX conversion for a {kind!r} layer")


def _network_output(g, operator, estimator, upto=None):
    """Input cast and reshape, then every layer (up to layer ``upto`` included, when
    given): the name of the network's output, float32.

    Shared by every estimator's converter; what follows (the head) is theirs.
    """
    if g.container.target_opset < MIN_OPSET:
        raise RuntimeError(f"{type(estimator).__name__} needs target_opset >= "
                           f"{MIN_OPSET}, got {g.container.target_opset}")
    x = g.node("Cast", [operator.inputs[0].full_name], "x_float32", to=TensorProto.FLOAT)
    # Flat or N-d input: one sample is image_shape_ either way (C order).
    shape = g.constant("image_shape", (-1,) + tuple(estimator.image_shape_),
                       TensorProto.INT64)
    x = g.node("Reshape", [x, shape], "images")
    layers = network_of(estimator).describe()
    for layer in layers if upto is None else layers[:upto + 1]:
        x = _layer(g, x, layer)
    return x


def _emit(g, x, variable):
    """Write the float32 tensor ``x`` to the declared output ``variable``, cast to its
    type (float64 for a float64 input)."""
    proto = guess_proto_type(variable.type)
    if proto == TensorProto.FLOAT:
        g.node("Identity", [x], variable.onnx_name, output=variable.full_name)
    else:
        g.node("Cast", [x], variable.onnx_name, output=variable.full_name, to=proto)


def _float_output_type(operator):
    """The tensor type of a float output: the input's (float32 or float64), float32
    for any other input type."""
    input_type = operator.inputs[0].type
    if isinstance(input_type, (FloatTensorType, DoubleTensorType)):
        return type(input_type)
    return FloatTensorType


def _matrix_shape_calculator(operator, width):
    """One input of any tensor type skl2onnx's linear models take, one float output
    ``(N, width)``."""
    check_input_and_output_numbers(operator, input_count_range=1, output_count_range=1)
    check_input_and_output_types(operator, good_input_types=[
        BooleanTensorType, DoubleTensorType, FloatTensorType, Int64TensorType])
    n = operator.inputs[0].get_first_dimension()
    operator.outputs[0].type = _float_output_type(operator)([n, int(width)])


# -------------------------------------------------------------------------------------
# ConvNetClassifier
# -------------------------------------------------------------------------------------
def _label_constant(g, classes):
    """The classes as an ONNX constant of the label type skl2onnx declares: strings
    when every class is a string, else int64 (a classifier's float classes are
    integral: scikit-learn refuses others as continuous targets)."""
    values = np.asarray(classes).tolist()
    if all(isinstance(c, str) for c in values):
        return g.constant("classes", np.array(values, dtype=str), TensorProto.STRING)
    return g.constant("classes", np.array([int(c) for c in values], dtype=np.int64),
                      TensorProto.INT64)


def _is_multilabel(classifier):
    return classifier.out_activation_ == "logistic"


def convert_convnet_classifier(scope, operator, container):
    """skl2onnx converter of a fitted :class:`~skconv.ConvNetClassifier`.

    Outputs: the label (ArgMax of the logits, first index on ties, as ``predict``)
    and the probabilities (softmax of the logits, as ``predict_proba``). For a
    multilabel model, the probabilities are the sigmoids of the logits and the label
    is the int64 indicator matrix of the probabilities above 0.5, as
    ``predict_proba`` and ``predict`` compute them (and as skl2onnx converts a
    multilabel ``MLPClassifier``).
    """
    estimator = operator.raw_operator
    g = _Graph(scope, container)
    logits = _network_output(g, operator, estimator)
    label, probabilities = operator.outputs[0], operator.outputs[1]

    if _is_multilabel(estimator):
        proba = g.node("Sigmoid", [logits], "probabilities")
        _emit(g, proba, probabilities)
        # Strictly above the threshold, as predict: Binarizer's rule (x > threshold).
        on = g.node("Binarizer", [proba], "labels_on", op_domain="ai.onnx.ml",
                    threshold=0.5)
        g.node("Cast", [on], "label", output=label.full_name, to=TensorProto.INT64)
        return

    _emit(g, g.node("Softmax", [logits], "probabilities", axis=1), probabilities)
    if container.get_options(estimator, dict(nocl=False))["nocl"]:
        # skl2onnx's option: the label is the index of the class in classes_.
        g.node("ArgMax", [logits], "label", output=label.full_name, axis=1,
               keepdims=0)
        return
    index = g.node("ArgMax", [logits], "class_index", axis=1, keepdims=0)
    g.node("Gather", [_label_constant(g, estimator.classes_), index], "label",
           output=label.full_name, axis=0)


def convnet_classifier_shape_calculator(operator):
    """Output types: label ``(N,)`` (int64 or string; ``(N, n_labels)`` int64 for a
    multilabel model), probabilities ``(N, n_classes)`` of the input's float type
    (float32 for any other input type)."""
    calculate_linear_classifier_output_shapes(operator)
    probabilities = operator.outputs[1]
    probabilities.type = _float_output_type(operator)(probabilities.type.shape)
    estimator = operator.raw_operator
    if _is_multilabel(estimator):
        n = operator.inputs[0].get_first_dimension()
        operator.outputs[0].type = Int64TensorType([n, len(estimator.classes_)])


# -------------------------------------------------------------------------------------
# ConvNetRegressor
# -------------------------------------------------------------------------------------
def convert_convnet_regressor(scope, operator, container):
    """skl2onnx converter of a fitted :class:`~skconv.ConvNetRegressor`: the network's
    linear output is the prediction, ``(N, n_outputs_)`` (``predict`` has no
    scaling or offset after the network)."""
    g = _Graph(scope, container)
    _emit(g, _network_output(g, operator, operator.raw_operator), operator.outputs[0])


def convnet_regressor_shape_calculator(operator):
    """Output type: ``(N, n_outputs_)`` of the input's float type (float32 for any
    other input type); ``(N, 1)`` for one target, as skl2onnx's regressors."""
    _matrix_shape_calculator(operator, operator.raw_operator.n_outputs_)


# -------------------------------------------------------------------------------------
# ConvNetTransformer
# -------------------------------------------------------------------------------------
def convert_convnet_transformer(scope, operator, container):
    """skl2onnx converter of a fitted :class:`~skconv.ConvNetTransformer`: the network
    up to the layer ``transform`` reads (its ``feature_layer``), whose output is the
    features."""
    estimator = operator.raw_operator
    g = _Graph(scope, container)
    features = _network_output(g, operator, estimator, upto=feature_layer_of(estimator))
    _emit(g, features, operator.outputs[0])


def convnet_transformer_shape_calculator(operator):
    """Output type: ``(N, n_features_out)`` of the input's float type (float32 for
    any other input type)."""
    estimator = operator.raw_operator
    layer = network_of(estimator).layers[feature_layer_of(estimator)]
    _matrix_shape_calculator(operator, np.prod(layer.output_shape))


# -------------------------------------------------------------------------------------
# Registration
# -------------------------------------------------------------------------------------
# Declaring the 'zipmap' option makes skl2onnx parse the classifier with its own
# classifier parser (label and probabilities outputs, ZipMap unless zipmap=False), as
# for its own classifiers; its shape calculator reads 'nocl'. The regressor and the
# transformer get skl2onnx's parser of other models: one output.
update_registered_converter(
    ConvNetClassifier, "SkconvConvNetClassifier", convnet_classifier_shape_calculator,
    convert_convnet_classifier, overwrite=True,
    options={"zipmap": [True, False, "columns"], "nocl": [False, True]},
)
update_registered_converter(
    ConvNetRegressor, "SkconvConvNetRegressor", convnet_regressor_shape_calculator,
    convert_convnet_regressor, overwrite=True,
)
update_registered_converter(
    ConvNetTransformer, "SkconvConvNetTransformer", convnet_transformer_shape_calculator,
    convert_convnet_transformer, overwrite=True,
)
