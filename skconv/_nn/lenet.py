"""The LeNet-5 builder and its per-layer parameter grammar.

:func:`build_lenet5` turns the estimators' architecture parameters (``filters``,
``kernel_size``, ``pooling``, ...) into a :class:`~skconv._nn.network.Network` of
layers; the rule by which a parameter applies to every conv layer, to each layer or
to each spatial axis lives here, once.
"""

import math

import numpy as np

from .._ops.pool import POOL_MODES
from .._ops.validation import MAX_GEOMETRY_VALUE, MAX_SPATIAL_DIMS, is_int
from .activations import get_activation
from .layers import (Activation, BatchNorm, Conv, Dense, Dropout, Flatten, GlobalPool,
                     InputScale, Pool, RandomScale, RandomShift)
from .network import Network

__all__ = ["BATCH_NORM_PLACES", "BATCH_NORM_POSITIONS", "HEADS",
           "POOL_COMMUTING_ACTIVATIONS", "build_lenet5"]

#: What follows the last conv block: a flatten (LeNet-5) or a global pooling.
HEADS = ("flatten", "avg", "max", "min")

#: Where ``batch_norm`` may put batch normalisation besides True (``'all'``) and
#: False: after every conv and hidden dense layer, or after the conv layers only.
BATCH_NORM_PLACES = ("all", "conv")

#: Where a conv block's batch normalisation goes: between the convolution and the
#: pooling, or after the pooling (then the block is conv -> pool -> batch norm ->
#: activation, and the normalisation sees the pooled map).
BATCH_NORM_POSITIONS = ("before_pool", "after_pool")


def _batch_norm_places(batch_norm):
    """``(after the conv layers, after the hidden dense layers)`` for ``batch_norm``."""
    if isinstance(batch_norm, str) and batch_norm in BATCH_NORM_PLACES:
        return True, batch_norm == "all"
    if isinstance(batch_norm, (bool, np.bool_)):
        return bool(batch_norm), bool(batch_norm)
    raise ValueError(f"batch_norm must be a bool or one of {BATCH_NORM_PLACES}, got "
                     f"{batch_norm!r}")


def _is_axis_tuple(value, n_axes):
    return (isinstance(value, (tuple, list)) and len(value) == n_axes
            and all(is_int(v) for v in value))


def _per_layer(value, n_layers, n_axes, name, scalar_ok, axis_tuple_ok=True):
    """Expand a conv/pool parameter to one value per conv layer.

    A scalar (``scalar_ok(value)``) applies to every layer. A tuple or list with one
    entry per layer gives per-layer values, each a scalar or (when ``axis_tuple_ok``) a
    per-axis tuple of ints. A tuple of ints whose length is not the number of layers
    but is the number of spatial axes applies per-axis to every layer. When the length
    equals both, it is read as per-layer. Anything else raises ValueError naming
    ``name``.
    """
    expected = (
        f"a single value, a tuple of {n_layers} per-layer values"
        + (f", or a tuple of {n_axes} ints (one per spatial axis)"
           if axis_tuple_ok else "")
    )
    # The ops refuse larger values too, but their message would name the layer's
    # argument (a pool's "stride") instead of this one ("pool_stride").
    ints = [value] if is_int(value) else [
        v for entry in (value if isinstance(value, (tuple, list)) else ())
        for v in (entry if isinstance(entry, (tuple, list)) else (entry,)) if is_int(v)]
    if any(v > MAX_GEOMETRY_VALUE for v in ints):
        raise ValueError(
            f"{name} must be at most {MAX_GEOMETRY_VALUE} (the kernels' index range), "
            f"got {value!r}"
        )
    if scalar_ok(value):
        return [value] * n_layers
    if not isinstance(value, (tuple, list)):
        raise ValueError(f"{name} must be {expected}; got {value!r}")
    value = tuple(value)
    if len(value) != n_layers:
        if axis_tuple_ok and _is_axis_tuple(value, n_axes):
            return [value] * n_layers
        raise ValueError(
            f"{name} must be {expected} (the network has {n_layers} conv layers and "
            f"{n_axes} spatial axes); got {value!r}"
        )
    for i, entry in enumerate(value):
        if not (scalar_ok(entry) or (axis_tuple_ok and _is_axis_tuple(entry, n_axes))):
            raise ValueError(
                f"{name}[{i}] (conv layer {i}) must be "
                + ("a single value or a tuple of {n_axes} ints".format(n_axes=n_axes)
                   if axis_tuple_ok else "a single value")
                + f"; got {entry!r} in {name}={value!r}"
            )
    return [tuple(v) if isinstance(v, list) else v for v in value]


#: Activations that max and min pooling commute with, gradients included, bit for bit.
#: For a non-decreasing f, max(f(x)) = f(max(x)), so the values agree. The gradient
#: goes to the first extreme cell in both orders: relu and identity map no two
#: distinct values of a window with a positive extreme to one value, and a window of
#: relu's whose extreme is not positive gets a zero gradient both ways (relu' = 0
#: there, taken from the output). Tanh, logistic and leaky relu can round two
#: distinct inputs to one output, which moves a tie, so they keep the plain order.
POOL_COMMUTING_ACTIVATIONS = ("relu", "identity")


def build_lenet5(
    image_shape,
    n_classes,
    *,
    filters=(6, 16),
    kernel_size=5,
    stride=1,
    padding="same",
    dilation=1,
    activation="relu",
    pooling="max",
    pool_size=2,
    pool_stride=None,
    hidden_layer_sizes=(120, 84),
    batch_norm=False,
    batch_norm_position="before_pool",
    spatial_dropout=0.0,
    dropout=0.0,
    head="flatten",
    augment_shift=0.0,
    augment_flip=False,
    augment_scale=0.0,
    augment_noise=0.0,
    input_divisor=1.0,
):
    """A configurable LeNet-5: [conv -> activation -> pool] * len(filters), flatten,
    [dense -> activation] * len(hidden_layer_sizes), dense(n_classes) (logits).

    Options beyond LeNet-5 (all off by default): ``batch_norm`` puts a
    :class:`BatchNorm` after every conv and hidden dense layer (True or ``'all'``)
    or after every conv layer only (``'conv'``), before the activation, and in a
    conv block before or after the pooling (``batch_norm_position``);
    ``spatial_dropout`` ends every conv block with a channel-wise
    :class:`Dropout`, ``dropout`` every hidden dense layer with an element-wise one;
    ``head`` replaces the flatten after the last conv block by a global pooling
    (``'avg'``, ``'max'`` or ``'min'``), which makes the dense part independent of the
    input's size; ``augment_shift`` and ``augment_flip`` start the network with a
    :class:`RandomShift`, ``augment_scale`` and ``augment_noise`` follow it with a
    :class:`RandomScale` (training-time augmentations, the identity at inference).

    With max or min pooling and a relu or identity activation, a block is built as
    conv -> pool -> activation instead: the same function and the same gradients (see
    :data:`POOL_COMMUTING_ACTIVATIONS`), with the activation on a quarter of the cells
    for 2x2 pooling.

    The conv/pool parameters (``kernel_size``, ``stride``, ``padding``, ``dilation``,
    ``pooling``, ``pool_size``, ``pool_stride``) each take

    - a scalar, applied to every conv layer (``kernel_size=5``, ``padding='same'``);
    - a tuple/list with one entry per conv layer, each entry a scalar or a per-axis
      tuple: ``kernel_size=((5, 3), (3, 3))``;
    - a tuple of ints with one entry per spatial axis, applied to every layer:
      ``kernel_size=(5, 3)`` with 2-D images and three conv layers.

    Ambiguity rule: a tuple of ints whose length equals both the number of conv
    layers and the number of spatial axes is read as PER-LAYER (``kernel_size=(5, 3)``
    with two conv layers on images means 5x5 then 3x3). Anything else raises
    ValueError naming the parameter. ``pooling`` takes a string or one string per
    layer; ``pool_stride`` entries may be None (stride = window).

    Weights of a layer followed by relu / leaky_relu use He-uniform initialisation,
    tanh / logistic / identity (and the output layer) Glorot-uniform; biases are zero.

    Parameters
    ----------
    image_shape : tuple of int
        ``(C, *spatial)`` with 1 to 3 spatial axes.
    n_classes : int
        Output units (logits for a softmax).
    filters : int or tuple of int, default=(6, 16)
        Filters of each conv layer; its length is the number of conv layers (may be 0).
    kernel_size, stride, padding, dilation
        See above and :class:`skconv._nn.layers.Conv`. Default 5, 1, 'same', 1.
    activation : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu'}, default='relu'
        Used after every conv and hidden dense layer.
    pooling : {'max', 'avg', 'min'} or tuple of them, default='max'
    pool_size : int or tuple, default=2
    pool_stride : None, int or tuple, default=None
        None means the window. Windows larger than a (small) map are clipped, see
        :class:`skconv._nn.layers.Pool`.
    hidden_layer_sizes : tuple of int, default=(120, 84)
    batch_norm : bool or {'all', 'conv'}, default=False
        True and ``'all'`` are the same.
    batch_norm_position : {'before_pool', 'after_pool'}, default='before_pool'
        A conv block with batch norm is conv -> batch norm -> pool -> activation
        (the activation before the pooling when they do not commute) or conv ->
        pool -> batch norm -> activation. The second normalises a quarter of the
        cells after a 2x2 pooling and lets the convolution pool its own output in
        cache; it is a different function, not a reordering of the same one.
    spatial_dropout, dropout : float, default=0.0
        Drop rates in [0, 1) (0: no Dropout layer).
    augment_shift : float, default=0.0
        :class:`RandomShift`'s ``shift``, in [0, 0.5).
    augment_flip : bool, default=False
        :class:`RandomShift`'s ``flip``. No RandomShift layer when both are off.
    augment_scale, augment_noise : float, default=0.0
        :class:`RandomScale`'s ``scale`` (in [0, 1)) and ``noise`` (>= 0), after the
        RandomShift. No RandomScale layer when both are 0.
    input_divisor : float, default=1.0
        An :class:`InputScale` first, dividing the input by it; none when 1.
    head : {'flatten', 'avg', 'max', 'min'}, default='flatten'

    Returns
    -------
    Network
        Not yet initialized: call ``network.initialize(image_shape, random_state,
        dtype)``. Its shapes have been checked against ``image_shape``.

    Raises
    ------
    ValueError
        For malformed parameters (naming the parameter) or a configuration that cannot
        take ``image_shape`` (naming the layer index and type and the shapes).
    """
    try:
        image_shape = tuple(image_shape)
    except TypeError:
        raise ValueError(f"image_shape must be a tuple (C, *spatial), got "
                         f"{image_shape!r}") from None
    if (not 2 <= len(image_shape) <= 1 + MAX_SPATIAL_DIMS
            or not all(is_int(s) and s >= 1 for s in image_shape)):
        raise ValueError(
            f"image_shape must be (C, *spatial) with 1 to {MAX_SPATIAL_DIMS} spatial "
            f"axes of positive ints, got {image_shape!r}"
        )
    n_axes = len(image_shape) - 1
    if not is_int(n_classes) or n_classes < 1:
        raise ValueError(f"n_classes must be a positive int, got {n_classes!r}")

    if is_int(filters):
        filters = (filters,)
    if not isinstance(filters, (tuple, list)) or not all(
        is_int(f) and f >= 1 for f in filters
    ):
        raise ValueError(f"filters must be a tuple of positive ints, got {filters!r}")
    if is_int(hidden_layer_sizes):
        hidden_layer_sizes = (hidden_layer_sizes,)
    if not isinstance(hidden_layer_sizes, (tuple, list)) or not all(
        is_int(h) and h >= 1 for h in hidden_layer_sizes
    ):
        raise ValueError(
            f"hidden_layer_sizes must be a tuple of positive ints, got "
            f"{hidden_layer_sizes!r}"
        )
    try:
        get_activation(activation)
    except ValueError as exc:
        raise ValueError(f"activation: {exc}") from None

    n_conv = len(filters)
    is_str = lambda v: isinstance(v, str)  # noqa: E731
    kernels = _per_layer(kernel_size, n_conv, n_axes, "kernel_size", is_int)
    strides = _per_layer(stride, n_conv, n_axes, "stride", is_int)
    paddings = _per_layer(padding, n_conv, n_axes, "padding",
                          lambda v: is_int(v) or is_str(v))
    dilations = _per_layer(dilation, n_conv, n_axes, "dilation", is_int)
    modes = _per_layer(pooling, n_conv, n_axes, "pooling", is_str, axis_tuple_ok=False)
    for mode in modes:
        if mode not in POOL_MODES:
            raise ValueError(f"pooling must be one of {POOL_MODES}, got {pooling!r}")
    pool_sizes = _per_layer(pool_size, n_conv, n_axes, "pool_size", is_int)
    pool_strides = _per_layer(pool_stride, n_conv, n_axes, "pool_stride",
                              lambda v: v is None or is_int(v))

    if head not in HEADS:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    for name, rate in (("spatial_dropout", spatial_dropout), ("dropout", dropout)):
        if not (isinstance(rate, (int, float)) and 0 <= rate < 1):
            raise ValueError(f"{name} must be a float in [0, 1), got {rate!r}")

    if not (isinstance(augment_shift, (int, float)) and 0 <= augment_shift < 0.5):
        raise ValueError(f"augment_shift must be a float in [0, 0.5), got "
                         f"{augment_shift!r}")
    if not (isinstance(augment_scale, (int, float)) and 0 <= augment_scale < 1):
        raise ValueError(f"augment_scale must be a float in [0, 1), got "
                         f"{augment_scale!r}")
    if not (isinstance(augment_noise, (int, float)) and 0 <= augment_noise < math.inf):
        raise ValueError(f"augment_noise must be a finite float >= 0, got "
                         f"{augment_noise!r}")

    hidden_init = "he_uniform" if activation in ("relu", "leaky_relu") else (
        "glorot_uniform")
    conv_norm, dense_norm = _batch_norm_places(batch_norm)
    if batch_norm_position not in BATCH_NORM_POSITIONS:
        raise ValueError(f"batch_norm_position must be one of {BATCH_NORM_POSITIONS}, "
                         f"got {batch_norm_position!r}")
    layers = [InputScale(input_divisor)] if input_divisor != 1 else []
    if augment_shift or augment_flip:
        layers.append(RandomShift(augment_shift, bool(augment_flip)))
    if augment_scale or augment_noise:
        layers.append(RandomScale(augment_scale, augment_noise))
    for i in range(n_conv):
        conv = Conv(int(filters[i]), kernels[i], strides[i], paddings[i], dilations[i],
                    init=hidden_init)
        pool = Pool(pool_sizes[i], pool_strides[i], mode=modes[i])
        if conv_norm and batch_norm_position == "after_pool":
            layers += [conv, pool, BatchNorm(), Activation(activation)]
        else:
            # A batch normalisation is per-channel affine with a scale of either
            # sign: before the pooling, it stays next to the convolution.
            layers += [conv, BatchNorm()] if conv_norm else [conv]
            if modes[i] in ("max", "min") and activation in POOL_COMMUTING_ACTIVATIONS:
                # Same values and gradients, with the activation on the pooled map.
                layers += [pool, Activation(activation)]
            else:
                layers += [Activation(activation), pool]
        if spatial_dropout:
            layers.append(Dropout(spatial_dropout, spatial=True))
    layers.append(Flatten() if head == "flatten" else GlobalPool(head))
    for units in hidden_layer_sizes:
        layers.append(Dense(int(units), init=hidden_init))
        if dense_norm:
            layers.append(BatchNorm())
        layers.append(Activation(activation))
        if dropout:
            layers.append(Dropout(dropout))
    layers.append(Dense(int(n_classes), init="glorot_uniform"))

    network = Network(layers)
    network.compute_output_shape(image_shape)
    return network
