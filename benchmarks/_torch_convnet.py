"""The network ``ConvNetClassifier`` builds, as a layer plan and in PyTorch (1-D to 3-D).

``plan_convnet`` turns the estimator's architecture parameters into a list of layers
with every size resolved (padding split, clipped pooling windows, flattened size), so
that a peer framework can build exactly the same network; ``torch_convnet`` builds it
with ``torch.nn``. Both follow skconv's LeNet-5 builder: ``[conv -> activation ->
pool] * len(filters)``, flatten, ``[dense -> activation] * len(hidden_layer_sizes)``,
dense output (logits), with the activation after the pooling for max and min pooling
with relu or identity (the same function, and the order skconv runs).
"""

import math
import numbers

ACTIVATIONS = ("relu", "tanh", "logistic", "identity")
# skconv's rule: max/min pooling commutes with these, so it pools first.
POOL_FIRST_ACTIVATIONS = ("relu", "identity")


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _per_layer(value, n_layers, n_axes, name):
    """One entry per conv layer, with skconv's reading of a tuple.

    A scalar (int, str or None) applies to every layer; a tuple of ``n_layers``
    entries is per layer (each a scalar or a per-axis tuple), also when its length is
    the number of axes too; another tuple of ``n_axes`` ints is per axis for every
    layer.
    """
    if value is None or _is_int(value) or isinstance(value, str):
        return [value] * n_layers
    value = tuple(value)
    if len(value) == n_layers:
        return list(value)
    if len(value) == n_axes and all(_is_int(v) for v in value):
        return [value] * n_layers
    raise ValueError(f"{name}={value!r} fits neither {n_layers} conv layers nor "
                     f"{n_axes} spatial axes")


def _per_axis(value, n_axes):
    return (int(value),) * n_axes if _is_int(value) else tuple(int(v) for v in value)


def _conv_padding(padding, spatial, kernel, stride):
    """Per-axis ``(low, high)`` zero padding, as skconv pads (TensorFlow's 'same')."""
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return [(0, 0)] * len(spatial)
        if padding.lower() != "same":
            raise ValueError(f"padding must be an int, a tuple, 'same' or 'valid', "
                             f"got {padding!r}")
        pads = []
        for size, k, s in zip(spatial, kernel, stride):
            out = -(-size // s)
            total = max((out - 1) * s + k - size, 0)
            # The extra cell goes at the end: PyTorch's own 'same' does not do this
            # for stride > 1, hence the explicit split.
            pads.append((total // 2, total - total // 2))
        return pads
    return [(p, p) for p in _per_axis(padding, len(spatial))]


def plan_convnet(input_shape, n_classes=10, *, filters=(6, 16), kernel_size=5,
                 stride=1, padding="same", activation="relu", pooling="max",
                 pool_size=2, pool_stride=None, hidden_layer_sizes=(120, 84),
                 batch_norm=False, head="flatten"):
    """The layers of ``ConvNetClassifier``'s network, every size resolved.

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)`` with 1 to 3 spatial axes.
    n_classes : int, default=10
    filters, kernel_size, stride, padding, activation, pooling, pool_size, \
pool_stride, hidden_layer_sizes, batch_norm, head
        As in ``ConvNetClassifier`` (dilation 1, pooling without padding; no
        'auto').

    Returns
    -------
    list of (str, dict)
        ``('conv', {in_channels, filters, kernel, stride, pads, init})``,
        ``('norm', {channels})`` (batch normalisation), ``('pool', {mode, window,
        stride})``, ``('act', {name})``, ``('flatten', {})`` or ``('global_pool',
        {mode})`` and ``('dense', {n_in, units, init})``, in order. ``pads`` is a list of
        ``(low, high)`` per axis; ``window`` is already clipped to small maps; ``init``
        is 'he_uniform' or 'glorot_uniform' as skconv draws it.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")
    channels, spatial = int(input_shape[0]), tuple(int(s) for s in input_shape[1:])
    n_axes = len(spatial)
    if not 1 <= n_axes <= 3:
        raise ValueError(f"input_shape must be (C, *spatial) with 1 to 3 spatial axes, "
                         f"got {input_shape!r}")
    filters = (filters,) if _is_int(filters) else tuple(filters)
    hidden = (hidden_layer_sizes,) if _is_int(hidden_layer_sizes) else tuple(
        hidden_layer_sizes)
    n_conv = len(filters)
    kernels = _per_layer(kernel_size, n_conv, n_axes, "kernel_size")
    strides = _per_layer(stride, n_conv, n_axes, "stride")
    paddings = _per_layer(padding, n_conv, n_axes, "padding")
    modes = _per_layer(pooling, n_conv, n_axes, "pooling")
    windows = _per_layer(pool_size, n_conv, n_axes, "pool_size")
    pool_strides = _per_layer(pool_stride, n_conv, n_axes, "pool_stride")
    hidden_init = "he_uniform" if activation == "relu" else "glorot_uniform"
    if batch_norm not in (False, True, "all", "conv"):
        raise ValueError(f"batch_norm must be False, True, 'all' or 'conv', got "
                         f"{batch_norm!r}")
    conv_norm, dense_norm = bool(batch_norm), batch_norm in (True, "all")
    if head not in ("flatten", "avg", "max", "min"):
        raise ValueError(f"head must be 'flatten', 'avg', 'max' or 'min', got {head!r}")

    plan = []
    for i in range(n_conv):
        kernel = _per_axis(kernels[i], n_axes)
        conv_stride = _per_axis(strides[i], n_axes)
        pads = _conv_padding(paddings[i], spatial, kernel, conv_stride)
        spatial = tuple((size + lo + hi - k) // s + 1 for size, k, s, (lo, hi)
                        in zip(spatial, kernel, conv_stride, pads))
        if min(spatial) < 1:
            raise ValueError(f"conv layer {i} leaves no output on input {input_shape}")
        conv = ("conv", dict(in_channels=channels, filters=int(filters[i]),
                             kernel=kernel, stride=conv_stride, pads=pads,
                             init=hidden_init))
        channels = int(filters[i])
        window = _per_axis(windows[i], n_axes)
        window_stride = window if pool_strides[i] is None else _per_axis(
            pool_strides[i], n_axes)
        # skconv clips a window larger than the map, so a tiny map pools to one cell.
        window = tuple(min(k, size) for k, size in zip(window, spatial))
        spatial = tuple((size - k) // s + 1
                        for size, k, s in zip(spatial, window, window_stride))
        pool = ("pool", dict(mode=modes[i], window=window, stride=window_stride))
        act = ("act", dict(name=activation))
        # skconv's order: the batch norm right after the convolution.
        plan += [conv, ("norm", dict(channels=channels))] if conv_norm else [conv]
        if modes[i] in ("max", "min") and activation in POOL_FIRST_ACTIVATIONS:
            plan += [pool, act]
        else:
            plan += [act, pool]
    if head == "flatten":
        plan.append(("flatten", {}))
        n_in = channels * math.prod(spatial)
    else:
        plan.append(("global_pool", dict(mode=head)))
        n_in = channels
    for units in hidden:
        plan.append(("dense", dict(n_in=n_in, units=int(units), init=hidden_init)))
        if dense_norm:
            plan.append(("norm", dict(channels=int(units))))
        plan.append(("act", dict(name=activation)))
        n_in = int(units)
    plan.append(("dense", dict(n_in=n_in, units=int(n_classes), init="glorot_uniform")))
    return plan


def torch_convnet(input_shape, n_classes=10, init="skconv", **params):
    """``ConvNetClassifier``'s network in PyTorch (float32, channels first).

    Parameters
    ----------
    input_shape : tuple of int
        ``(C, *spatial)``, 1 to 3 spatial axes.
    n_classes : int, default=10
    init : {'skconv', 'default'}, default='skconv'
        'skconv' draws as skconv does: He-uniform (``+-sqrt(6 / fan_in)``) for the
        layers followed by relu, Glorot-uniform for the others and the output layer,
        zero biases. 'default' keeps PyTorch's.
    **params
        Architecture parameters of :func:`plan_convnet`.

    Returns
    -------
    torch.nn.Sequential
    """
    import torch
    from torch import nn

    n_axes = len(input_shape) - 1
    conv_cls = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[n_axes - 1]
    pad_cls = (nn.ConstantPad1d, nn.ConstantPad2d, nn.ConstantPad3d)[n_axes - 1]
    max_cls = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)[n_axes - 1]
    avg_cls = (nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d)[n_axes - 1]
    activations = {"relu": nn.ReLU, "tanh": nn.Tanh, "logistic": nn.Sigmoid,
                   "identity": nn.Identity}
    # skconv's batch norm: momentum 0.1 and eps 1e-5, PyTorch's defaults.
    conv_norm_cls = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)[n_axes - 1]

    class MinPool(nn.Module):
        """Min pooling, which PyTorch lacks: ``-maxpool(-x)``."""

        def __init__(self, window, stride):
            super().__init__()
            self.pool = max_cls(window, stride)

        def forward(self, x):
            return -self.pool(-x)

    class GlobalPool(nn.Module):
        """Global average, max or min over the spatial axes: (N, C, ...) -> (N, C)."""

        def __init__(self, mode):
            super().__init__()
            self.mode = mode

        def forward(self, x):
            flat = x.flatten(2)
            if self.mode == "avg":
                return flat.mean(dim=2)
            return flat.amax(dim=2) if self.mode == "max" else flat.amin(dim=2)

    modules, inits = [], []
    for kind, spec in plan_convnet(input_shape, n_classes, **params):
        if kind == "conv":
            lows, highs = zip(*spec["pads"])
            padding = lows
            if lows != highs:
                # Uneven 'same' padding: pad explicitly (last axis first, as F.pad).
                modules.append(pad_cls([p for lo_hi in reversed(spec["pads"])
                                        for p in lo_hi], 0.0))
                padding = 0
            modules.append(conv_cls(spec["in_channels"], spec["filters"],
                                    spec["kernel"], spec["stride"], padding))
            inits.append((modules[-1], spec["init"]))
        elif kind == "pool":
            cls = {"max": max_cls, "avg": avg_cls, "min": MinPool}[spec["mode"]]
            modules.append(cls(spec["window"], spec["stride"]))
        elif kind == "act":
            modules.append(activations[spec["name"]]())
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "norm":
            after_conv = not any(isinstance(m, (nn.Flatten, GlobalPool)) for m in modules)
            modules.append((conv_norm_cls if after_conv else nn.BatchNorm1d)(
                spec["channels"]))
        elif kind == "global_pool":
            modules.append(GlobalPool(spec["mode"]))
        else:
            modules.append(nn.Linear(spec["n_in"], spec["units"]))
            inits.append((modules[-1], spec["init"]))
    net = nn.Sequential(*modules)
    if init == "skconv":
        with torch.no_grad():
            for layer, how in inits:
                # PyTorch's fans are skconv's: in_channels * taps and filters * taps.
                if how == "he_uniform":
                    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu")
                else:
                    nn.init.xavier_uniform_(layer.weight)
                layer.bias.zero_()
    elif init != "default":
        raise ValueError(f"init must be 'skconv' or 'default', got {init!r}")
    return net
