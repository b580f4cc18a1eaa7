"""ONNX export of fitted skconv estimators, through skl2onnx.

Importing this module registers skconv's estimators with ``skl2onnx`` (a parser, a
shape calculator and a converter each), after which scikit-learn's usual export works
for a fitted estimator and for a pipeline that contains one::

    import skconv.onnx  # noqa: F401  (registers the converters)
    from skl2onnx import to_onnx

    onx = to_onnx(model, X[:1].astype(np.float32), options={"zipmap": False})

Needs the optional extra ``onnx`` (``skl2onnx``, ``onnx``, and ``onnxruntime`` to run
the models). Covered: :class:`~skconv.ConvNetClassifier` on 1-D, 2-D and 3-D inputs,
every pooling mode, padding, stride, dilation and activation. The model takes the
input ``predict`` takes: flat ``(N, n_features)`` or N-d ``(N, C, *spatial)``.

The graph, built from the network's own description (``Network.describe``)::

    X -> Cast(float32) -> Reshape(-1, *image_shape_)
      -> per layer: Conv (asymmetric pads spell out 'same' with any stride),
         MaxPool / AveragePool(count_include_pad=0) / min pool as -MaxPool(-x)
         (ONNX has no MinPool; padded cells are ignored by MaxPool, so this is exact),
         GlobalMaxPool / GlobalAveragePool, Relu / LeakyRelu / Tanh / Sigmoid,
         Flatten, Gemm
      -> network output (the classifier's logits)
      -> head: Softmax -> probabilities; ArgMax(logits) -> Gather(classes_) -> label

The graph computes in float32 whatever the model's dtype: onnxruntime's CPU provider
implements Conv and AveragePool for float32 only. A float64 model therefore gets
float32 copies of its weights (its probabilities then agree with ``predict_proba`` to
float32 rounding), and probabilities are cast back to float64 for a float64 input.

Labels follow skl2onnx's rule for classifiers: int64 for numeric and bool classes
(bool as 0/1), strings for string classes.
skl2onnx's classifier options apply: ``zipmap`` (True, False or 'columns') and
``nocl`` (the label is the class index).

Adding an estimator: build the input and the network graph with
:func:`_network_output`, then its own head (a regressor: the network output is the
prediction; a transformer: it is the features), and register a shape calculator and a
converter as :func:`_register_classifier` does.
"""

import numpy as np
from onnx import TensorProto
from skl2onnx import update_registered_converter
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, guess_proto_type
from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

from ._estimators.classifier import ConvNetClassifier
from ._estimators.inspection import network_of

__all__ = ["MIN_OPSET", "convert_convnet_classifier", "convnet_classifier_shape_calculator"]

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
    if kind == "flatten":
        return g.node("Flatten", [x], "flatten", axis=1)
    if kind == "dense":
        # skconv keeps W as (n_in, units): y = x @ W + b, Gemm without a transpose.
        inputs = [x, g.constant("dense_weights", layer["weights"]),
                  g.constant("dense_bias", layer["bias"])]
        return g.node("Gemm", inputs, "dense")
    raise NotImplementedError(f"no ONNX conversion for a {kind!r} layer")


def _network_output(g, operator, estimator):
    """Input cast and reshape, then every layer: the name of the network's output.

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
    for layer in network_of(estimator).describe():
        x = _layer(g, x, layer)
    return x


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


def convert_convnet_classifier(scope, operator, container):
    """skl2onnx converter of a fitted :class:`~skconv.ConvNetClassifier`.

    Outputs: the label (ArgMax of the logits, first index on ties, as ``predict``)
    and the probabilities (softmax of the logits, as ``predict_proba``).
    """
    estimator = operator.raw_operator
    if getattr(estimator, "out_activation_", "softmax") != "softmax":
        # The head below is the softmax of a single-label model; a multilabel model's
        # independent sigmoids are not built yet, and a softmax would be silently wrong.
        raise NotImplementedError(
            f"ONNX export of a multilabel ConvNetClassifier (out_activation_="
            f"{estimator.out_activation_!r}) is not supported yet")
    g = _Graph(scope, container)
    logits = _network_output(g, operator, estimator)

    label, probabilities = operator.outputs[0], operator.outputs[1]
    proba_type = guess_proto_type(probabilities.type)
    if proba_type == TensorProto.FLOAT:
        g.node("Softmax", [logits], "probabilities", output=probabilities.full_name,
               axis=1)
    else:
        proba = g.node("Softmax", [logits], "probabilities", axis=1)
        g.node("Cast", [proba], "probabilities", output=probabilities.full_name,
               to=proba_type)
    if container.get_options(estimator, dict(nocl=False))["nocl"]:
        # skl2onnx's option: the label is the index of the class in classes_.
        g.node("ArgMax", [logits], "label", output=label.full_name, axis=1,
               keepdims=0)
        return
    index = g.node("ArgMax", [logits], "class_index", axis=1, keepdims=0)
    g.node("Gather", [_label_constant(g, estimator.classes_), index], "label",
           output=label.full_name, axis=0)


def convnet_classifier_shape_calculator(operator):
    """Output types: label ``(N,)`` (int64 or string), probabilities ``(N, n_classes)``
    of the input's float type (float32 for any other input type)."""
    calculate_linear_classifier_output_shapes(operator)
    if not isinstance(operator.inputs[0].type, (FloatTensorType, DoubleTensorType)):
        operator.outputs[1].type = FloatTensorType(operator.outputs[1].type.shape)


def _register_classifier(estimator_class, alias):
    # Declaring the 'zipmap' option makes skl2onnx parse the model with its own
    # classifier parser (label and probabilities outputs, ZipMap unless
    # zipmap=False), as for its own classifiers; its shape calculator reads 'nocl'.
    update_registered_converter(
        estimator_class, alias, convnet_classifier_shape_calculator,
        convert_convnet_classifier, overwrite=True,
        options={"zipmap": [True, False, "columns"], "nocl": [False, True]},
    )


_register_classifier(ConvNetClassifier, "SkconvConvNetClassifier")
