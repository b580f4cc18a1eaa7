"""Tests for the private network engine: layers, Network, builder, optimizers."""

import copy
import pickle

import numpy as np
import pytest

from skconv._nn.layers import (
    Activation,
    BatchNorm,
    Conv,
    Dense,
    Dropout,
    Flatten,
    GlobalPool,
    Pool,
    init_weights,
)
from skconv._ops.loss import softmax_cross_entropy
from skconv._nn.lenet import build_lenet5
from skconv._nn.network import ConvBlockStep, Network, l2_factors, l2_penalty
from skconv._nn.optimizers import SGD, Adam, add_l2, cosine_learning_rate

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._finite_differences import central_differences
except ImportError:
    from _finite_differences import central_differences

# ------------------------------------------------------------------------------------
# Whole-network gradient check
# ------------------------------------------------------------------------------------
EPS = 1e-6
KINK_MARGIN = 1e-5  # far above the ~1e-6 change a parameter perturbation can cause


def _lenet_2d():
    return build_lenet5((1, 8, 8), 3, filters=(2, 3), kernel_size=3,
                        activation="tanh", pooling="max", hidden_layer_sizes=(5,))


def _lenet_1d():
    # 12 -> conv(3, pad 1) 12 -> pool 6 -> conv(3, dilation 2, same) 6 -> pool 3
    return build_lenet5((1, 12), 3, filters=(2, 3), kernel_size=(3,),
                        padding=(1, "same"), dilation=(1, 2), activation="logistic",
                        pooling="avg", hidden_layer_sizes=(4,))


def _lenet_rgb():
    # Non-square kernels, per-layer padding, relu, min pooling; the last pool window
    # is clipped on both axes (2x1 map, window 2): 6x6 -> 6x6 -> 3x3 -> 2x1 -> 1x1.
    return build_lenet5((3, 6, 6), 3, filters=(2, 3), kernel_size=((3, 2), (2, 3)),
                        padding=("same", "valid"), activation="relu", pooling="min",
                        hidden_layer_sizes=(5,))


def _strided_global_max():
    return Network([
        Conv(3, 3, stride=2, padding="same", init="he_normal"),
        Activation("leaky_relu"),
        Conv(4, (2, 3), padding=(1, 0)),
        Activation("tanh"),
        GlobalPool("max"),
        Dense(3),
    ])


def _volume_global_avg():
    return Network([
        Conv(2, 2),
        Activation("tanh"),
        Pool(2, stride=1, mode="max"),
        GlobalPool("avg"),
        Dense(3),
    ])


GRADIENT_CASES = {
    "lenet_8x8_tanh_max": (_lenet_2d, (1, 8, 8)),
    "lenet_1d_logistic_avg": (_lenet_1d, (1, 12)),
    "lenet_rgb_relu_min_clipped": (_lenet_rgb, (3, 6, 6)),
    "strided_leaky_globalmax": (_strided_global_max, (2, 7, 7)),
    "volume_globalavg": (_volume_global_avg, (1, 4, 4, 4)),
}


def _objective(net, x, y, alpha):
    logits = net.forward(x, 1, training=False)
    return softmax_cross_entropy(logits, y)[0] + l2_penalty(net, alpha, len(x))


def _layer_inputs(net, x):
    """The input of every layer (copied: activations may work in place)."""
    inputs = []
    for layer in net.layers:
        inputs.append(x.copy())
        x = layer.forward(x, 1, training=False)
    return inputs


def _window_values(x, window, stride):
    """All pooling windows (padding 0) of x as (N, C, *out, prod(window))."""
    view = np.lib.stride_tricks.sliding_window_view(
        x, window, axis=tuple(range(2, x.ndim)))
    steps = tuple(slice(None, None, s) for s in stride)
    view = view[(slice(None), slice(None)) + steps]
    return view.reshape(view.shape[:x.ndim] + (-1,))


def _assert_away_from_kinks(net, x):
    """Central differences are only valid away from kinks: check relu-like inputs are
    not near 0 and that the winner of every max/min window leads by a margin (exact
    ties of dead relu zeros are harmless: they get no gradient either way)."""
    for layer, inp in zip(net.layers, _layer_inputs(net, x)):
        if isinstance(layer, Activation) and layer.name in ("relu", "leaky_relu"):
            assert np.abs(inp).min() > KINK_MARGIN, layer
        if isinstance(layer, (Pool, GlobalPool)) and layer.mode in ("max", "min"):
            if isinstance(layer, Pool):
                assert layer.padding == 0
                values = _window_values(inp, layer.effective_pool_size, layer.effective_stride)
            else:
                values = inp.reshape(inp.shape[:2] + (1, -1))
            if layer.mode == "min":
                values = -values
            if values.shape[-1] < 2:
                continue
            top2 = np.sort(values, axis=-1)[..., -2:]
            gap = top2[..., 1] - top2[..., 0]
            assert not np.any((gap > 0) & (gap < KINK_MARGIN)), layer


@pytest.mark.parametrize("case", sorted(GRADIENT_CASES))
def test_whole_network_gradient_matches_central_differences(case):
    make, input_shape = GRADIENT_CASES[case]
    rng = np.random.RandomState(0)
    net = make()
    net.initialize(input_shape, rng, np.float64)
    # Non-zero biases: with zero biases a conv window over dead relus sits exactly on
    # the kink, and bias gradients would be checked only at one special point.
    for layer in net.layers:
        if layer.params:
            layer.params[1][...] = rng.uniform(-0.2, 0.2, size=layer.params[1].shape)
    x = rng.normal(size=(4,) + input_shape)
    y = np.array([0, 1, 2, 1])
    alpha = 0.3
    _assert_away_from_kinks(net, x)

    logits = net.forward(x, 1, training=True)
    _, grad_logits = softmax_cross_entropy(logits, y)
    grad_x = net.backward(grad_logits, 1, need_input_grad=True)
    add_l2(net.params, net.grads, l2_factors(net, alpha, len(x)))
    analytic = [g.copy() for g in net.grads]

    # Rounding floor of a central difference: ~1e-16 * |loss| / EPS ~ 1e-10.
    tol = dict(rtol=1e-5, atol=1e-9)
    def objective():
        return _objective(net, x, y, alpha)

    for param, grad in zip(net.params, analytic):
        np.testing.assert_allclose(grad, central_differences(objective, param, EPS), **tol)

    indices = [np.unravel_index(flat, x.shape)
               for flat in rng.choice(x.size, size=6, replace=False)]
    np.testing.assert_allclose([grad_x[idx] for idx in indices],
                               central_differences(objective, x, EPS, indices), **tol)


# ------------------------------------------------------------------------------------
# Shapes, the tiny-input pooling rule, errors
# ------------------------------------------------------------------------------------
def _shapes(net):
    return [layer.output_shape for layer in net.layers]


def test_lenet5_shapes_classic_and_same():
    net = build_lenet5((1, 32, 32), 10, padding="valid")
    net.initialize((1, 32, 32), np.random.RandomState(0), np.float64)
    # conv -> pool -> relu: relu commutes with max pooling and runs on fewer cells.
    assert _shapes(net)[:7] == [(6, 28, 28), (6, 14, 14), (6, 14, 14), (16, 10, 10),
                                (16, 5, 5), (16, 5, 5), (400,)]
    assert _shapes(net)[7:] == [(120,), (120,), (84,), (84,), (10,)]
    assert [p.shape for p in net.params] == [
        (6, 1, 5, 5), (6,), (16, 6, 5, 5), (16,), (400, 120), (120,), (120, 84), (84,),
        (84, 10), (10,)]

    net = build_lenet5((1, 28, 28), 10)
    assert net.compute_output_shape((1, 28, 28)) == (10,)
    net.initialize((1, 28, 28), np.random.RandomState(0), np.float32)
    assert _shapes(net)[6] == (16 * 7 * 7,)


@pytest.mark.parametrize(
    "spatial, window, stride, expected",
    [
        ((1,), 2, None, (1,)),          # size 1 passes through
        ((3,), 2, 2, (1,)),             # floor((3 - 2) / 2) + 1
        ((5,), 3, 1, (3,)),             # window fits: no clipping
        ((2, 1), 2, None, (1, 1)),      # clipped on axis 1 only
        ((1, 1, 1), (2, 2, 2), None, (1, 1, 1)),
        ((7, 1), (2, 3), (2, 1), (3, 1)),
    ],
)
def test_pool_never_shrinks_an_axis_below_one(spatial, window, stride, expected):
    layer = Pool(window, stride)
    out = layer.initialize((2,) + spatial, np.random.RandomState(0), np.float64)
    assert out == (2,) + expected
    x = np.random.RandomState(1).normal(size=(3, 2) + spatial)
    y = layer.forward(x, 1, training=True)
    assert y.shape == (3, 2) + expected
    assert layer.backward(np.ones_like(y), 1, True).shape == x.shape


@pytest.mark.parametrize("mode", ["max", "min", "avg"])
def test_pool_layer_backward_matches_op(mode):
    # max/min layers cache indices (ops.pool_with_indices) instead of the input.
    from skconv import ops

    layer = Pool((2, 3), stride=(1, 2), padding=(1, 0), mode=mode)
    layer.initialize((2, 5, 7), np.random.RandomState(0), np.float64)
    x = np.random.RandomState(1).normal(size=(3, 2, 5, 7))
    y = layer.forward(x, 1, training=True)
    np.testing.assert_array_equal(
        y, ops.pool(x, (2, 3), stride=(1, 2), padding=(1, 0), mode=mode))
    grad_y = np.random.RandomState(2).normal(size=y.shape)
    np.testing.assert_array_equal(
        layer.backward(grad_y, 1, True),
        ops.pool_backward(grad_y, x, (2, 3), stride=(1, 2), padding=(1, 0), mode=mode))
    layer.forward(x, 1, training=False)  # an inference forward leaves nothing behind
    with pytest.raises(RuntimeError, match="training=True"):
        layer.backward(grad_y, 1, True)


def test_pool_clipped_size_one_axis_is_identity():
    layer = Pool(2)
    layer.initialize((3, 1), np.random.RandomState(0), np.float64)
    x = np.random.RandomState(1).normal(size=(4, 3, 1))
    np.testing.assert_array_equal(layer.forward(x, 1, training=False), x)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_features_train_forward_backward(dtype):
    # 2 features seen as a 1-D signal (1, 2): every pooling clips to one cell.
    net = build_lenet5((1, 2), 2, kernel_size=5, hidden_layer_sizes=(8,))
    net.initialize((1, 2), np.random.RandomState(0), dtype)
    # conv -> max pool -> relu (see test_pool_before_activation_is_bitwise_...).
    assert _shapes(net)[:7] == [(6, 2), (6, 1), (6, 1), (16, 1), (16, 1), (16, 1),
                                (16,)]
    x = np.random.RandomState(1).normal(size=(5, 1, 2)).astype(dtype)
    logits = net.forward(x, None, training=True)
    assert logits.shape == (5, 2) and logits.dtype == dtype
    _, grad = softmax_cross_entropy(logits, [0, 1, 0, 1, 1])
    assert net.backward(grad, None) is None
    assert all(g.dtype == dtype and np.all(np.isfinite(g)) for g in net.grads)


def test_impossible_configuration_names_the_layer():
    with pytest.raises(ValueError, match=r"layer 0 \(Conv\).*\(1, 2, 2\)") as info:
        build_lenet5((1, 2, 2), 3, padding="valid")
    assert "kernel (5, 5)" in str(info.value)
    # Fails deeper: (1, 6, 6) -> conv3 valid (4, 4) -> pool (2, 2) -> conv3 valid.
    with pytest.raises(ValueError, match=r"layer 3 \(Conv\) cannot take input shape "
                                         r"\(6, 2, 2\)"):
        build_lenet5((1, 6, 6), 3, kernel_size=3, padding="valid")
    # The same checks run at initialize time.
    net = Network([Conv(2, 5, padding="valid"), Flatten(), Dense(2)])
    with pytest.raises(ValueError, match=r"layer 0 \(Conv\)"):
        net.initialize((1, 3, 3), np.random.RandomState(0), np.float64)
    with pytest.raises(ValueError, match=r"layer 1 \(Dense\).*Flatten"):
        Network([Conv(2, 1), Dense(2)]).compute_output_shape((1, 3, 3))
    with pytest.raises(ValueError, match=r"layer 0 \(Activation\).*unknown activation"):
        Network([Activation("swish")]).compute_output_shape((3,))
    with pytest.raises(ValueError, match=r"layer 1 \(Pool\).*padding"):
        Network([Conv(1, 1), Pool(2, padding=2)]).compute_output_shape((1, 4, 4))


def test_bad_builder_arguments():
    with pytest.raises(ValueError, match="image_shape"):
        build_lenet5((1, 2, 2, 2, 2), 3)
    with pytest.raises(ValueError, match="activation"):
        build_lenet5((1, 8, 8), 3, activation="swish")
    with pytest.raises(ValueError, match="pooling"):
        build_lenet5((1, 8, 8), 3, pooling="median")
    with pytest.raises(ValueError, match="filters"):
        build_lenet5((1, 8, 8), 3, filters=(2, 0))
    with pytest.raises(ValueError, match="n_classes"):
        build_lenet5((1, 8, 8), 0)


# ------------------------------------------------------------------------------------
# Per-layer / per-axis parameter rules
# ------------------------------------------------------------------------------------
def _convs(net):
    return [layer for layer in net.layers if isinstance(layer, Conv)]


def _pools(net):
    return [layer for layer in net.layers if isinstance(layer, Pool)]


def _kernels(net):
    # Shape inference alone has no side effects: initialize records the kernels.
    net.initialize(net._test_shape, np.random.RandomState(0), np.float64)
    return [layer.kernel_shape for layer in _convs(net)]


def _build(shape, **kwargs):
    net = build_lenet5(shape, 3, **kwargs)
    net._test_shape = shape
    return net


def test_scalar_applies_to_every_layer():
    net = _build((1, 16, 16), filters=(2, 3, 4), kernel_size=3, pool_size=1)
    assert _kernels(net) == [(3, 3)] * 3


def test_per_layer_with_per_axis_entries():
    net = _build((1, 16, 16), kernel_size=((5, 3), (3, 3)))
    assert _kernels(net) == [(5, 3), (3, 3)]
    net = _build((1, 16, 16), kernel_size=[(5, 3), 3])
    assert _kernels(net) == [(5, 3), (3, 3)]


def test_ambiguous_tuple_is_per_layer():
    # Two conv layers on 2-D images: (5, 3) is per-layer, not per-axis.
    net = _build((1, 16, 16), kernel_size=(5, 3))
    assert _kernels(net) == [(5, 5), (3, 3)]


def test_axis_tuple_for_every_layer_when_length_differs():
    net = _build((1, 16, 16), filters=(2, 3, 4), kernel_size=(5, 3), pool_size=1)
    assert _kernels(net) == [(5, 3)] * 3
    net = _build((1, 16), kernel_size=(3,))  # 1-D, two layers
    assert _kernels(net) == [(3,), (3,)]


def test_other_per_layer_parameters():
    net = _build((1, 16, 16), stride=[1, 2], padding=("same", "valid"), dilation=(2, 1),
                 pooling=("max", "avg"), pool_size=((2, 1), 2), pool_stride=(None, 1))
    c0, c1 = _convs(net)
    assert (c0.stride, c0.padding, c0.dilation) == (1, "same", 2)
    assert (c1.stride, c1.padding, c1.dilation) == (2, "valid", 1)
    p0, p1 = _pools(net)
    assert (p0.pool_size, p0.stride, p0.mode) == ((2, 1), None, "max")
    assert (p1.pool_size, p1.stride, p1.mode) == (2, 1, "avg")


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        (dict(kernel_size=(5, 3, 3)), r"kernel_size must be .*2 conv layers and 2 "),
        (dict(kernel_size=((5, 3), (3, 3, 3))), r"kernel_size\[1\] \(conv layer 1\)"),
        (dict(kernel_size=2.5), "kernel_size must be"),
        (dict(stride=(1, "2")), r"stride\[1\]"),
        (dict(padding=("same",)), "padding must be"),
        (dict(pooling=(("max", "avg"), "max")), r"pooling\[0\]"),
        (dict(pool_stride=(None, None, None)), "pool_stride must be"),
        (dict(dilation=(1, 2, 3)), "dilation must be"),
    ],
)
def test_malformed_parameters_raise_naming_them(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_lenet5((1, 16, 16), 3, **kwargs)


# ------------------------------------------------------------------------------------
# Initialisation, determinism, state, pickling
# ------------------------------------------------------------------------------------
def _init(net, seed, dtype=np.float64, shape=(1, 12, 12)):
    net.initialize(shape, np.random.RandomState(seed), dtype)
    return net


def test_same_seed_gives_identical_params():
    a = _init(build_lenet5((1, 12, 12), 4), 7)
    b = _init(build_lenet5((1, 12, 12), 4), 7)
    c = _init(build_lenet5((1, 12, 12), 4), 8)
    for pa, pb in zip(a.params, b.params):
        np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(a.params[0], c.params[0])
    f = _init(build_lenet5((1, 12, 12), 4), 7, np.float32)
    for pa, pf in zip(a.params, f.params):
        assert pf.dtype == np.float32
        np.testing.assert_array_equal(pf, pa.astype(np.float32))


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "logistic",
                                        "identity"])
def test_initialisation_scheme_follows_activation(activation):
    net = _init(build_lenet5((2, 12, 12), 4, kernel_size=3, activation=activation), 0,
                shape=(2, 12, 12))
    conv0 = _convs(net)[0]
    w = conv0.params[0]
    fan_in, fan_out = 2 * 9, 6 * 9
    if activation in ("relu", "leaky_relu"):
        limit = np.sqrt(6 / fan_in)
    else:
        limit = np.sqrt(6 / (fan_in + fan_out))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.9 * limit
    # The output layer is Glorot whatever the activation.
    out_w = net.layers[-1].params[0]
    assert np.abs(out_w).max() <= np.sqrt(6 / sum(out_w.shape))
    for layer in net.layers:
        if layer.params:
            np.testing.assert_array_equal(layer.params[1], 0.0)


def test_init_weights_he_normal_scale():
    w = init_weights((200, 300), 200, 300, "he_normal", np.random.RandomState(0),
                     np.float64)
    assert w.std() == pytest.approx(np.sqrt(2 / 200), rel=0.02)
    with pytest.raises(ValueError, match="init"):
        init_weights((2, 2), 2, 2, "lecun", np.random.RandomState(0), np.float64)


def test_get_state_set_state_restore_in_place():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    params = net.params
    state = net.get_state()
    for p in params:
        p += 1.0
    net.set_state(state)
    for p, s, same in zip(net.params, state, params):
        assert p is same
        np.testing.assert_array_equal(p, s)
    state[0] += 1.0  # the state is a copy
    assert not np.array_equal(net.params[0], state[0])
    with pytest.raises(ValueError, match="state does not match"):
        net.set_state(state[:-1])


def test_pickle_round_trip_drops_caches():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    x = np.random.RandomState(1).normal(size=(3, 1, 12, 12))
    expected = net.forward(x, 1, training=True)  # leaves caches behind
    clone = pickle.loads(pickle.dumps(net))
    assert all(getattr(layer, name) is None for layer in clone.layers
               for name in layer._cache_attributes)
    np.testing.assert_array_equal(clone.forward(x, 1), expected)


def _train_step(net, x, y, n_jobs):
    logits = net.forward(x, n_jobs, training=True)
    _, grad = softmax_cross_entropy(logits, y)
    net.backward(grad, n_jobs)
    return logits, [g.copy() for g in net.grads]


def _assert_same_step(step, other):
    """Bitwise equality of two (logits, grads) from :func:`_train_step`."""
    (logits, grads), (other_logits, other_grads) = step, other
    np.testing.assert_array_equal(logits, other_logits)
    assert len(grads) == len(other_grads)
    for a, b in zip(grads, other_grads):
        np.testing.assert_array_equal(a, b)


def test_grads_are_overwritten_and_input_untouched():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    x = np.random.RandomState(1).normal(size=(5, 1, 12, 12))
    x0 = x.copy()
    y = np.array([0, 1, 2, 3, 0])
    _, first = _train_step(net, x, y, 1)
    _, second = _train_step(net, x, y, 1)
    np.testing.assert_array_equal(x, x0)
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(RuntimeError, match="training=True"):
        net.backward(np.zeros((5, 4)), 1)


def test_in_place_activations_change_nothing():
    net = _init(build_lenet5((1, 12, 12), 4, hidden_layer_sizes=(6, 5)), 0)
    acts = [layer for layer in net.layers if isinstance(layer, Activation)]
    assert all(a.inplace_forward and a.inplace_backward for a in acts)
    x = np.random.RandomState(1).normal(size=(5, 1, 12, 12))
    y = np.array([0, 1, 2, 3, 0])
    logits, grads = _train_step(net, x, y, 1)
    for a in acts:
        a.inplace_forward = a.inplace_backward = False
    logits2, grads2 = _train_step(net, x, y, 1)
    np.testing.assert_array_equal(logits, logits2)
    for a, b in zip(grads, grads2):
        np.testing.assert_array_equal(a, b)
    # Never in place on the caller's array or on another activation's cached output.
    net = Network([Activation("tanh"), Activation("relu"), Dense(2)])
    net.initialize((3,), np.random.RandomState(0), np.float64)
    assert [layer.inplace_forward for layer in net.layers[:2]] == [False, False]


def test_results_do_not_depend_on_n_jobs():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    x = np.random.RandomState(1).normal(size=(9, 1, 12, 12))
    y = np.arange(9) % 4
    _assert_same_step(_train_step(net, x, y, 1), _train_step(net, x, y, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["max", "min"])
@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_pool_before_activation_is_bitwise_the_same_network(activation, mode, dtype):
    # build_lenet5 runs relu/identity after max/min pooling; the textbook order must
    # give the same logits and gradients bit for bit, with ties, zeros and windows of
    # non-positive cells in the data (integers: many exact ties).
    net = build_lenet5((2, 8, 8), 3, filters=(3, 2), kernel_size=3,
                       activation=activation, pooling=mode, hidden_layer_sizes=(4,))
    kinds = [type(layer).__name__ for layer in net.layers[:6]]
    assert kinds == ["Conv", "Pool", "Activation"] * 2
    layers = copy.deepcopy(net.layers)
    plain = Network([layers[i] for i in (0, 2, 1, 3, 5, 4)] + layers[6:])
    _init(net, 0, dtype, shape=(2, 8, 8))
    plain.initialize((2, 8, 8), np.random.RandomState(0), dtype)
    plain.set_state(net.get_state())
    rng = np.random.RandomState(3)
    x = rng.randint(-2, 3, size=(6, 2, 8, 8)).astype(dtype)
    y = np.arange(6) % 3
    _assert_same_step(_train_step(net, x, y, 1), _train_step(plain, x, y, 1))
    # Other activations and average pooling keep the textbook order.
    for kwargs in (dict(activation="tanh"), dict(pooling="avg")):
        other = build_lenet5((2, 8, 8), 3, **kwargs)
        assert [type(layer).__name__ for layer in other.layers[:3]] == [
            "Conv", "Activation", "Pool"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "kwargs",
    [dict(), dict(pooling="min", padding="valid"), dict(activation="tanh"),
     dict(activation="identity"), dict(kernel_size=3, dilation=2, padding=1)],
)
def test_fused_conv_pool_steps_are_bitwise_the_layer_by_layer_network(kwargs, dtype):
    # Network fuses each conv with the 2x2 max/min pool after it, and the relu after
    # that (the convolution's output is never stored); a few Adam steps must match
    # running every layer on its own, bit for bit, for logits, gradients, parameters
    # and inference.
    shape = (1, 16, 16)
    fused = build_lenet5(shape, 4, **kwargs)
    plain = Network(copy.deepcopy(fused.layers), fuse=False)
    _init(fused, 0, dtype, shape=shape)
    plain.initialize(shape, np.random.RandomState(0), dtype)
    plain.set_state(fused.get_state())
    fused_steps = [_indices(fused, step) for step in fused.steps if len(step.layers) > 1]
    activation = kwargs.get("activation", "relu")
    # tanh keeps the textbook order (conv, tanh, pool): nothing to fuse there.
    # Dense layers fuse with a relu after them.
    expected = {"relu": [(0, 1, 2), (3, 4, 5), (7, 8), (9, 10)],
                "identity": [(0, 1), (3, 4)], "tanh": []}[activation]
    assert fused_steps == expected
    assert all(len(step.layers) == 1 for step in plain.steps)
    rng = np.random.RandomState(5)
    optimizers = [Adam(net.params, learning_rate=1e-2) for net in (fused, plain)]
    for step in range(3):
        x = rng.randint(-2, 3, size=(7,) + shape).astype(dtype)  # ties in the windows
        y = np.arange(7) % 4
        _assert_same_step(_train_step(fused, x, y, 2), _train_step(plain, x, y, 1))
        for net, optimizer in zip((fused, plain), optimizers):
            optimizer.update(net.grads)
    x = rng.normal(size=(5,) + shape).astype(dtype)
    np.testing.assert_array_equal(fused.forward(x, 1), plain.forward(x, 1))


def _indices(net, step):
    """The indices in ``net.layers`` of the layers a step of the plan runs."""
    return tuple(next(i for i, layer in enumerate(net.layers) if layer is step_layer)
                 for step_layer in step.layers)


def test_fused_steps_reuse_workspaces():
    net = _init(build_lenet5((1, 12, 12), 3), 0, np.float32)
    x = np.random.default_rng(0).random((2, 5, 1, 12, 12), dtype=np.float32)
    step = net.steps[0]
    assert isinstance(step, ConvBlockStep) and _indices(net, step) == (0, 1, 2)
    outputs = []
    for x_batch in x:
        outputs.append(step.forward(x_batch, 1, training=True))
        step.backward(np.ones_like(outputs[-1]), 1, False)
    assert outputs[0] is outputs[1]
    # Inference keeps nothing for backward and returns a fresh array.
    y = step.forward(x[0], 1, training=False)
    assert step._x is None and y is not outputs[0]
    assert step.forward(x[0], 1, training=False) is not y
    with pytest.raises(RuntimeError, match="backward needs a preceding forward"):
        step.backward(np.ones_like(y), 1, False)


def _layer_outputs(net, x):
    """The output of every layer, one layer at a time (copied: activations may work
    in place)."""
    outputs = []
    for layer in net.layers:
        x = layer.forward(x, 1, training=False)
        outputs.append(x.copy())
    return outputs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape, kwargs", [
    ((1, 12, 12), dict()),  # fused conv blocks and dense + relu steps
    ((1, 12, 12), dict(activation="tanh", hidden_layer_sizes=(7, 5, 4))),
    ((2, 16), dict(activation="identity", pooling="avg")),
    ((1, 6, 6, 6), dict(filters=(3,), kernel_size=3)),
])
def test_predict_upto_a_layer_is_bitwise_what_the_forward_computes(shape, kwargs, dtype):
    # Every layer's output, in batches and on 1 or 2 threads, is the value the
    # layer-by-layer network computes: also where upto cuts a fused step.
    net = _init(build_lenet5(shape, 3, **kwargs), 0, dtype, shape=shape)
    plain = Network(copy.deepcopy(net.layers), fuse=False)
    plain.initialize(shape, np.random.RandomState(0), dtype)
    plain.set_state(net.get_state())
    x = np.random.RandomState(1).normal(size=(7,) + shape).astype(dtype)
    # A dense layer's products depend on the batch (documented): the reference runs
    # predict's batches of 3.
    expected = [np.concatenate(outs) for outs in zip(
        *(_layer_outputs(plain, x[i:i + 3]) for i in range(0, 7, 3)))]
    for i in range(len(net.layers)):
        for n_jobs in (1, 2):
            out = net.predict(x, n_jobs, batch_size=3, upto=i, dtype=dtype)
            assert out.dtype == dtype and out.shape == expected[i].shape
            np.testing.assert_array_equal(out, expected[i], err_msg=f"layer {i}")
    np.testing.assert_array_equal(net.predict(x, 1, upto=-1), net.predict(x, 1))
    np.testing.assert_array_equal(net.predict(x, 1, batch_size=3), expected[-1])
    with pytest.raises(ValueError, match="upto must be a layer index"):
        net.predict(x, 1, upto=len(net.layers))


def test_feature_ends_name_the_flattened_conv_output_and_the_hidden_layers():
    net = build_lenet5((1, 12, 12), 3, hidden_layer_sizes=(7, 5))
    names = [type(layer).__name__ for layer in net.layers]
    ends = net.feature_ends()
    assert [names[i] for i in ends] == ["Flatten", "Activation", "Activation"]
    assert [names[i - 1] for i in ends[1:]] == ["Dense", "Dense"]
    _init(net, 0, shape=(1, 12, 12))
    assert [net.layers[i].output_shape for i in ends] == [(16 * 3 * 3,), (7,), (5,)]
    assert build_lenet5((1, 12, 12), 3, hidden_layer_sizes=()).feature_ends() == [
        names.index("Flatten")]
    assert Network([Dense(3)]).feature_ends() == []


def test_forward_checks_input_shape():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    with pytest.raises(ValueError, match=r"x must have shape \(N, \*\(1, 12, 12\)\)"):
        net.forward(np.zeros((2, 1, 12, 11)), 1)


def test_l2_helpers_follow_sklearn_convention():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    for p in net.params:
        p[...] = np.random.RandomState(p.size).normal(size=p.shape)
    weights = [net.params[i] for i in range(0, len(net.params), 2)]
    expected = 0.5 * 0.01 * sum((w ** 2).sum() for w in weights) / 32
    assert l2_penalty(net, 0.01, 32) == pytest.approx(expected, rel=1e-12)
    for g in net.grads:
        g[...] = 1.0
    add_l2(net.params, net.grads, l2_factors(net, 0.01, 32))
    for i, (p, g) in enumerate(zip(net.params, net.grads)):
        if i % 2 == 0:  # weight
            np.testing.assert_allclose(g, 1.0 + 0.01 * p / 32, rtol=1e-15)
        else:  # bias: not penalised
            np.testing.assert_array_equal(g, 1.0)
    assert l2_penalty(net, 0.0, 32) == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 23, 31, 32, 33, 100, 10_001])
def test_sum_of_squares_is_accurate_and_fixed_order(n, dtype):
    from skconv._kernels.update import sum_of_squares_arrays

    def sum_of_squares(values):
        return sum_of_squares_arrays([values])

    rng = np.random.default_rng(n)
    values = rng.standard_normal(n).astype(dtype)
    expected = float(np.sum(values.astype(np.longdouble) ** 2))
    assert sum_of_squares(values) == pytest.approx(expected, rel=1e-13, abs=0)
    # Small integers: every partial sum is exact, so the result is too.
    integers = rng.integers(-50, 50, n).astype(dtype)
    assert sum_of_squares(integers) == float(np.sum(integers.astype(np.int64) ** 2))


def test_sum_of_squares_arrays_is_the_sum_of_the_per_array_sums():
    from skconv._kernels.update import sum_of_squares_arrays

    rng = np.random.default_rng(5)
    arrays = [rng.standard_normal(shape).astype(dtype) for shape, dtype in [
        ((6, 1, 5, 5), np.float32), ((0,), np.float32), ((17,), np.float64),
        ((120, 784), np.float32), ((3, 3), np.float64)]]
    expected = sum(sum_of_squares_arrays([a]) for a in arrays)
    assert sum_of_squares_arrays(arrays) == expected  # the same float, same order
    assert sum_of_squares_arrays([]) == 0.0
    with pytest.raises(ValueError, match="C-contiguous float32 or float64"):
        sum_of_squares_arrays([arrays[3][:, ::2]])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_sum_of_squares_is_blockwise_and_thread_invariant(n_threads):
    # The blocks of 8192 values are summed on the threads and added in order: the
    # same float as adding the blocks' own sums one after another, for any count.
    from skconv._kernels.update import _SUM_BLOCK, sum_of_squares_arrays

    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(size).astype(dtype) for size, dtype in [
        (94_080, np.float32), (2400, np.float32), (3 * _SUM_BLOCK, np.float64),
        (_SUM_BLOCK + 1, np.float32)]]
    blocks = [a[i:i + _SUM_BLOCK] for a in arrays for i in range(0, a.size, _SUM_BLOCK)]
    expected = 0.0
    for block in blocks:
        expected += sum_of_squares_arrays([block])
    assert sum_of_squares_arrays(arrays, n_threads) == expected
    assert sum_of_squares_arrays(arrays, n_threads) == sum_of_squares_arrays(arrays, 1)
    with pytest.raises(ValueError, match="C-contiguous float32 or float64"):
        sum_of_squares_arrays([np.ones(3, dtype=np.int64)])
    with pytest.raises(TypeError, match="ndarrays"):
        sum_of_squares_arrays([[1.0, 2.0]])


@pytest.mark.parametrize("spoil", ["dtype", "read-only m", "size", "not an array",
                                   "lengths"])
def test_multi_array_adam_declines_what_it_cannot_take(spoil):
    # It must change nothing and say so; Adam.update then takes the numpy path.
    from skconv._kernels.update import adam_step_arrays

    rng = np.random.default_rng(2)
    params = [rng.standard_normal(5).astype(np.float32) for _ in range(3)]
    ms = [np.zeros(5, np.float32) for _ in range(3)]
    vs = [np.zeros(5, np.float32) for _ in range(3)]
    grads = [np.ones(5, np.float32) for _ in range(3)]
    l2 = [0.0, 0.0, 0.0]
    if spoil == "dtype":
        grads[2] = grads[2].astype(np.float64)
    elif spoil == "read-only m":
        ms[1].flags.writeable = False
    elif spoil == "size":
        vs[2] = np.zeros(6, np.float32)
    elif spoil == "not an array":
        grads[1] = [1.0] * 5
    else:
        l2 = l2[:2]
    before = [p.copy() for p in params]
    assert adam_step_arrays(params, ms, vs, grads, l2, 0.9, 0.999, 1e-3, 1e-8, 2) is False
    for p, b in zip(params, before):
        np.testing.assert_array_equal(p, b)
    assert not any(m.any() for m in ms)
    # And with nothing spoiled it takes them.
    good = [np.zeros(5, np.float32) for _ in range(3)]
    assert adam_step_arrays(params, ms if spoil != "read-only m" else good,
                            [np.zeros(5, np.float32) for _ in range(3)],
                            [np.ones(5, np.float32) for _ in range(3)], [0.0] * 3,
                            0.9, 0.999, 1e-3, 1e-8, 2) is True
    assert all((p < b).all() for p, b in zip(params, before))


# ------------------------------------------------------------------------------------
# Optimizers
# ------------------------------------------------------------------------------------
def _tiny_problem(dtype=np.float64):
    rng = np.random.RandomState(0)
    params = [rng.normal(size=(3, 2)).astype(dtype), rng.normal(size=4).astype(dtype)]
    grad_seq = [[rng.normal(size=p.shape).astype(dtype) for p in params]
                for _ in range(4)]
    return params, grad_seq


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_hand_written_update(nesterov):
    params, grad_seq = _tiny_problem()
    expected = [p.copy() for p in params]
    velocity = [np.zeros_like(p) for p in params]
    lr, mu = 0.05, 0.9
    opt = SGD(params, learning_rate=lr, momentum=mu, nesterov=nesterov)
    for grads in grad_seq:
        opt.update(grads)
        for i, g in enumerate(grads):
            velocity[i] = mu * velocity[i] - lr * g
            step = mu * velocity[i] - lr * g if nesterov else velocity[i]
            expected[i] = expected[i] + step
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-14)
    assert opt.t == len(grad_seq)


def test_adam_matches_hand_written_update():
    params, grad_seq = _tiny_problem()
    expected = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    lr, b1, b2, eps = 0.01, 0.8, 0.99, 1e-7
    opt = Adam(params, learning_rate=lr, beta_1=b1, beta_2=b2, epsilon=eps)
    for t, grads in enumerate(grad_seq, start=1):
        opt.update(grads)
        for i, g in enumerate(grads):
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            m_hat = m[i] / (1 - b1 ** t)
            v_hat = v[i] / (1 - b2 ** t)
            # Adam's "efficient" form (as in sklearn) puts eps on sqrt(v), not on
            # sqrt(v_hat); so use that form here too.
            lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
            expected[i] = expected[i] - lr_t * m[i] / (np.sqrt(v[i]) + eps)
            del m_hat, v_hat
    for p, e in zip(params, expected):
        np.testing.assert_allclose(p, e, rtol=1e-13)
    assert opt.t == len(grad_seq)


def test_optimizers_match_sklearn_bitwise():
    sk = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    for ours_cls, sk_cls, kwargs, sk_kwargs in [
        (SGD, sk.SGDOptimizer, dict(learning_rate=0.1, momentum=0.9, nesterov=True),
         dict(learning_rate_init=0.1, momentum=0.9, nesterov=True)),
        (SGD, sk.SGDOptimizer, dict(learning_rate=0.1, momentum=0.5, nesterov=False),
         dict(learning_rate_init=0.1, momentum=0.5, nesterov=False)),
        (Adam, sk.AdamOptimizer, dict(learning_rate=0.001),
         dict(learning_rate_init=0.001)),
    ]:
        ours, grad_seq = _tiny_problem()
        theirs = [p.copy() for p in ours]
        opt = ours_cls(ours, **kwargs)
        sk_opt = sk_cls(theirs, **sk_kwargs)
        for grads in grad_seq:
            opt.update(grads)
            sk_opt.update_params(theirs, grads)
        for a, b in zip(ours, theirs):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_fused_adam_step_is_bitwise_the_numpy_step(dtype, n_threads):
    # Adam.update runs one C call over every parameter (with the L2 term);
    # non-contiguous gradients take the numpy code, which is scikit-learn's maths.
    # Both must agree bit for bit, for weights with an L2 factor and biases without,
    # over several steps, with arrays large enough to be split between threads (3
    # threads: the ranges of the second and third cross from one array to the next).
    rng = np.random.RandomState(0)
    shapes = [(300, 250), (250,), (7, 3, 5), (41_000,), (3,)]
    params = [rng.normal(size=s).astype(dtype) for s in shapes]
    fused, plain = [p.copy() for p in params], [p.copy() for p in params]
    fused_opt, plain_opt = Adam(fused, 0.01), Adam(plain, 0.01)
    l2 = [1e-4 / 64, 0.0, 0.3, 1e-3, 0.0]
    for step in range(4):
        grads = [rng.normal(scale=10.0 ** -step, size=s).astype(dtype) for s in shapes]
        grads[0][0, :3] = 0.0  # exact zeros: m and v start at zero
        # A strided copy is not C-contiguous: the numpy path.
        strided = [np.repeat(g[..., None], 2, axis=-1)[..., 0] for g in grads]
        assert not any(g.flags.c_contiguous for g in strided if g.ndim > 1)
        fused_opt.update([g.copy() for g in grads], l2, n_threads)
        plain_opt.update(strided, l2, n_threads)
        for a, b in zip(fused + fused_opt.ms + fused_opt.vs,
                        plain + plain_opt.ms + plain_opt.vs):
            assert a.dtype == dtype
            np.testing.assert_array_equal(a, b)
    # The L2 factors act as add_l2 does: grad + factor * param.
    assert not np.array_equal(fused[0], params[0])


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_optimizer_keeps_float32_and_pickles(cls):
    params, grad_seq = _tiny_problem(np.float32)
    opt = cls(params)
    opt.update(grad_seq[0])
    assert all(p.dtype == np.float32 for p in params)
    # Pickled together, params and optimizer stay linked; the copy continues exactly.
    params2, opt2 = pickle.loads(pickle.dumps((params, opt)))
    for grads in grad_seq[1:]:
        opt.update(grads)
        opt2.update(grads)
    for a, b in zip(params, params2):
        np.testing.assert_array_equal(a, b)
    assert opt2.t == opt.t == len(grad_seq)


def test_sgd_schedules():
    params, _ = _tiny_problem()
    opt = SGD(params, learning_rate=0.1, lr_schedule="invscaling", power_t=0.5)
    opt.iteration_ends(99)
    assert opt.learning_rate == pytest.approx(0.01)
    opt = SGD(params, learning_rate=0.1, lr_schedule="adaptive")
    assert opt.trigger_stopping("", False) is False
    assert opt.learning_rate == pytest.approx(0.02)
    assert SGD(params).trigger_stopping("", False) is True
    assert Adam(params).trigger_stopping("", False) is True
    with pytest.raises(ValueError, match="grads do not match"):
        Adam(params).update([np.zeros(3)])


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_schedules_apply_to_both_optimizers(cls):
    # invscaling and adaptive set the schedule's rate (Adam's before its bias
    # correction) for Adam as for SGD.
    params, grad_seq = _tiny_problem()
    opt = cls(params, learning_rate=0.1, lr_schedule="invscaling", power_t=0.5)
    opt.iteration_ends(99)
    assert opt.base_learning_rate == pytest.approx(0.01)
    opt = cls(params, learning_rate=0.1, lr_schedule="adaptive")
    assert opt.lowers_rate_on_plateau
    assert opt.trigger_stopping("", False) is False
    assert opt.base_learning_rate == pytest.approx(0.02)
    opt.base_learning_rate = 1e-6
    assert not opt.lowers_rate_on_plateau
    assert opt.trigger_stopping("", False) is True
    assert not cls(params).lowers_rate_on_plateau


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_cosine_schedule_moves_at_every_update(cls):
    params, grad_seq = _tiny_problem()
    lr0, n_epochs, n_batches = 0.1, 3, 4
    opt = cls(params, learning_rate=lr0, lr_schedule="cosine", n_epochs=n_epochs)
    rates = []
    for epoch in range(2 * n_epochs):  # two cycles: a warm restart after the first
        opt.begin_epoch(n_batches)
        for _ in range(n_batches):
            opt.update(grad_seq[0])
            rates.append(opt.base_learning_rate)
        opt.iteration_ends(0)
    k = np.arange(n_epochs * n_batches)
    expected = lr0 * (1 + np.cos(np.pi * k / (n_epochs * n_batches))) / 2
    np.testing.assert_allclose(rates, np.tile(expected, 2), rtol=1e-12)
    assert rates[0] == lr0 and 0 < rates[n_epochs * n_batches - 1] < 0.02 * lr0
    if cls is Adam:  # the bias correction applies on top of the schedule
        t = opt.t
        assert opt.learning_rate == pytest.approx(
            rates[-1] * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t))
    else:
        assert opt.learning_rate == rates[-1]
    assert cosine_learning_rate(lr0, 1.5, 3) == pytest.approx(lr0 / 2)
    with pytest.raises(ValueError, match="needs n_epochs"):
        cls(params, lr_schedule="cosine")
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        cls(params, lr_schedule="step")


@pytest.mark.parametrize("cls", [SGD, Adam])
def test_optimizer_state_restores_the_schedule(cls):
    params, grad_seq = _tiny_problem()
    opt = cls(params, learning_rate=0.1, lr_schedule="cosine", n_epochs=5)
    opt.begin_epoch(2)
    opt.update(grad_seq[0])
    saved = opt.state()
    opt.update(grad_seq[1])
    after = opt.base_learning_rate
    opt.iteration_ends(0)
    opt.begin_epoch(7)
    opt.load_state(saved)
    opt.update(grad_seq[1])
    assert opt.base_learning_rate == after


def test_optimizers_pickled_before_the_schedules_keep_their_rate():
    params, grad_seq = _tiny_problem()
    for opt, rate in ((SGD(params, learning_rate=0.05), 0.05),
                      (Adam(params, learning_rate=0.01), 0.01)):
        opt.update(grad_seq[0])
        state = {k: v for k, v in vars(opt).items()
                 if k not in ("base_learning_rate", "lr_schedule", "power_t",
                              "n_epochs", "epochs_done", "_batch", "_n_batches")}
        old = object.__new__(type(opt))
        old.__setstate__(state)
        assert old.base_learning_rate == rate and old.lr_schedule == "constant"
        old.update(grad_seq[1])
        assert old.t == 2


# ------------------------------------------------------------------------------------
# Smoke training
# ------------------------------------------------------------------------------------
def test_tiny_lenet_learns_digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]  # (1797, 1, 8, 8)
    y = digits.target
    rng = np.random.RandomState(0)
    net = build_lenet5((1, 8, 8), 10, filters=(4, 8), kernel_size=3,
                       hidden_layer_sizes=(32,))
    net.initialize((1, 8, 8), rng, np.float32)
    opt = Adam(net.params, learning_rate=0.01)
    alpha, batch = 1e-4, 64

    def full_loss():
        return softmax_cross_entropy(net.forward(x, None), y)[0] + l2_penalty(
            net, alpha, len(x))

    initial = full_loss()
    for _ in range(3):
        order = rng.permutation(len(x))
        for start in range(0, len(x), batch):
            idx = order[start:start + batch]
            logits = net.forward(x[idx], None, training=True)
            _, grad = softmax_cross_entropy(logits, y[idx])
            net.backward(grad, None)
            add_l2(net.params, net.grads, l2_factors(net, alpha, len(idx)))
            opt.update(net.grads)
    final = full_loss()
    assert final < 0.5 * initial
    accuracy = (net.forward(x, None).argmax(axis=1) == y).mean()
    assert accuracy > 0.8


def test_training_reuses_workspaces_and_inference_does_not():
    # Workspaces are allocated once per fit: a second training minibatch of the same
    # size writes into the first one's arrays; inference returns fresh arrays that a
    # caller may keep.
    # Layer by layer, so without the fused convolution + pooling steps.
    net = Network(build_lenet5((1, 8, 8), 3).layers, fuse=False)
    net.initialize((1, 8, 8), np.random.RandomState(0), np.float32)
    rng = np.random.default_rng(0)
    x1, x2 = rng.random((2, 5, 1, 8, 8), dtype=np.float32)
    outputs = {}
    for name, x in (("first", x1), ("second", x2)):
        h, per_layer = x, []
        for layer in net.layers:
            h = layer.forward(h, 1, True)
            per_layer.append(h)
        outputs[name] = per_layer
        net.backward(np.ones_like(h), 1)
    conv_layers = [i for i, layer in enumerate(net.layers) if isinstance(layer, Conv)]
    for i in conv_layers:
        assert outputs["first"][i] is outputs["second"][i]
    # The values are those of a fresh computation all the same.
    fresh = net.forward(x2, 1, training=False)
    np.testing.assert_array_equal(fresh, outputs["second"][-1])
    assert net.forward(x2, 1, training=False) is not fresh
    # A smaller last minibatch gets arrays of its own shape.
    small = net.layers[0].forward(x1[:2], 1, True)
    assert small.shape[0] == 2 and small is not outputs["first"][0]
    # Workspaces are not pickled.
    clone = pickle.loads(pickle.dumps(net))
    assert all("_workspaces" not in vars(layer) for layer in clone.layers)


def test_single_threaded_blas_nests_and_restores():
    # Only the outermost block sets and restores BLAS's thread count; the network
    # opens one per pass and its layers' own blocks are then free.
    from threadpoolctl import ThreadpoolController, threadpool_limits

    from skconv._ops.threads import single_threaded_blas

    def counts():
        info = ThreadpoolController().select(user_api="blas").info()
        return [lib["num_threads"] for lib in info]

    with threadpool_limits(limits=2, user_api="blas"):
        before = counts()
        assert before and all(count == 2 for count in before)
        with single_threaded_blas():
            assert all(count == 1 for count in counts())
            with single_threaded_blas():
                assert all(count == 1 for count in counts())
            # Leaving the inner block does not restore the counts yet.
            assert all(count == 1 for count in counts())
        assert counts() == before
        with pytest.raises(KeyError):
            with single_threaded_blas():
                raise KeyError("restored on errors too")
        assert counts() == before


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n_jobs", [1, 2, 3])
def test_forward_of_rows_is_forward_of_the_gathered_batch(dtype, n_jobs):
    # forward(X, rows=idx) gathers X[idx] on the threads: the same logits and (after
    # backward) gradients bit for bit, unsorted and repeated rows included, for
    # training and inference, and the caller's X untouched.
    shape = (1, 12, 12)
    net = _init(build_lenet5(shape, 4), 0, dtype, shape=shape)
    rng = np.random.RandomState(2)
    X = rng.normal(size=(40,) + shape).astype(dtype)
    X0 = X.copy()
    for rows in (np.array([39, 0, 7, 7, 12, 3, 38]), np.arange(40)[::-3],
                 np.array([5], dtype=np.int32)):
        y = np.arange(len(rows)) % 4
        logits = net.forward(X, n_jobs, training=True, rows=rows)
        _, grad = softmax_cross_entropy(logits, y)
        net.backward(grad, n_jobs)
        got = (logits.copy(), [g.copy() for g in net.grads])
        _assert_same_step(got, _train_step(net, X[rows], y, n_jobs))
        np.testing.assert_array_equal(net.forward(X, n_jobs, rows=rows),
                                      net.forward(X[rows], n_jobs))
    np.testing.assert_array_equal(X, X0)
    # A strided X is gathered by numpy instead, with the same result.
    Xs = np.repeat(X, 2, axis=0)[::2]
    np.testing.assert_array_equal(net.forward(Xs, n_jobs, rows=[3, 1]),
                                  net.forward(X[[3, 1]], n_jobs))


def test_forward_of_rows_checks_the_rows():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    X = np.zeros((10, 1, 12, 12))
    for bad in ([10], [-1], [0, 3, 11]):
        with pytest.raises(IndexError, match="out of range for source with 10 rows"):
            net.forward(X, 1, training=True, rows=np.array(bad))
    with pytest.raises(ValueError, match="rows must be a 1-D array of ints"):
        net.forward(X, 1, rows=np.array([[1, 2]]))
    with pytest.raises(ValueError, match="rows must be a 1-D array of ints"):
        net.forward(X, 1, rows=np.array([0.5]))


def test_training_batch_workspace_is_not_pickled():
    net = _init(build_lenet5((1, 12, 12), 4), 0)
    X = np.zeros((10, 1, 12, 12))
    net.forward(X, 1, training=True, rows=np.arange(6))
    assert net._batch is not None
    assert pickle.loads(pickle.dumps(net))._batch is None


@pytest.mark.parametrize("head", ["flatten", "avg", "max", "min"])
def test_builder_options_batch_norm_dropout_and_pooling_head(head):
    from skconv._nn.layers import BatchNorm, Dropout, GlobalPool

    net = build_lenet5((2, 12, 10), 3, filters=(4, 5), kernel_size=3,
                       hidden_layer_sizes=(7,), batch_norm=True, spatial_dropout=0.1,
                       dropout=0.2, head=head)
    kinds = [type(layer).__name__ for layer in net.layers]
    assert kinds == (["Conv", "BatchNorm", "Pool", "Activation", "Dropout"] * 2
                     + ["Flatten" if head == "flatten" else "GlobalPool"]
                     + ["Dense", "BatchNorm", "Activation", "Dropout", "Dense"])
    drops = [layer for layer in net.layers if isinstance(layer, Dropout)]
    assert [(d.rate, d.spatial) for d in drops] == [(0.1, True), (0.1, True), (0.2, False)]
    if head != "flatten":
        assert next(l for l in net.layers if isinstance(l, GlobalPool)).mode == head
    _init(net, 0, shape=(2, 12, 10))
    x = np.random.default_rng(0).standard_normal((6, 2, 12, 10))
    assert net.forward(x, 1, training=True).shape == (6, 3)
    # Batch norm between conv and pool: no fused block for those convolutions.
    assert all(len(step.layers) == 1 or not isinstance(step.layers[0], Conv)
               for step in net.steps)
    assert sum(isinstance(layer, BatchNorm) for layer in net.layers) == 3


@pytest.mark.parametrize("batch_norm, conv_norm, dense_norm", [
    (False, False, False), (True, True, True), ("all", True, True),
    ("conv", True, False), (np.bool_(True), True, True)])
def test_builder_puts_batch_norm_where_asked(batch_norm, conv_norm, dense_norm):
    from skconv._nn.layers import BatchNorm

    net = build_lenet5((1, 12, 10), 3, filters=(4, 5), kernel_size=3,
                       hidden_layer_sizes=(7, 6), batch_norm=batch_norm)
    layers = net.layers
    after = [type(layers[i - 1]).__name__ for i, layer in enumerate(layers)
             if isinstance(layer, BatchNorm)]
    assert after == ["Conv"] * (2 * conv_norm) + ["Dense"] * (2 * dense_norm)
    _init(net, 0, shape=(1, 12, 10))
    x = np.random.default_rng(1).standard_normal((5, 1, 12, 10))
    assert net.forward(x, 1, training=True).shape == (5, 3)


def test_builder_rejects_bad_options():
    with pytest.raises(ValueError, match="batch_norm must be a bool or one of"):
        build_lenet5((1, 8, 8), 2, batch_norm="dense")
    with pytest.raises(ValueError, match="batch_norm must be a bool or one of"):
        build_lenet5((1, 8, 8), 2, batch_norm=1)
    with pytest.raises(ValueError, match="head must be one of"):
        build_lenet5((1, 8, 8), 2, head="mean")
    with pytest.raises(ValueError, match=r"dropout must be a float in \[0, 1\)"):
        build_lenet5((1, 8, 8), 2, dropout=1.0)
    with pytest.raises(ValueError, match="spatial_dropout"):
        build_lenet5((1, 8, 8), 2, spatial_dropout=-0.1)


def test_describe_spells_out_the_resolved_settings():
    # 'same' with stride 2 on 7 cells (kernel 4): total padding 3, the extra cell at
    # the end; a window of 3 clipped to a map of 2; dtypes never leak in.
    net = Network([Conv(2, (4, 1), stride=2, padding="same", dilation=(1, 2)),
                   Activation("leaky_relu"), Pool(3, stride=1, mode="min"),
                   GlobalPool("max"), Dense(3)])
    net.initialize((1, 7, 3), np.random.RandomState(0), np.float32)
    conv, act, pool, gpool, dense = net.describe()
    assert conv["kind"] == "conv" and conv["filters"] == 2
    assert conv["kernel_shape"] == (4, 1) and conv["strides"] == (2, 2)
    assert conv["dilations"] == (1, 2) and conv["pads"] == ((1, 2), (0, 0))
    assert conv["weights"] is net.layers[0].params[0]
    assert conv["output_shape"] == (2, 4, 2)
    assert act == {"kind": "activation", "name": "leaky_relu", "negative_slope": 0.01,
                   "input_shape": (2, 4, 2), "output_shape": (2, 4, 2)}
    assert pool["mode"] == "min" and pool["pool_size"] == (3, 2)
    assert pool["strides"] == (1, 1) and pool["pads"] == ((0, 0), (0, 0))
    assert gpool["kind"] == "global_pool" and gpool["mode"] == "max"
    assert dense["kind"] == "dense" and dense["units"] == 3
    assert dense["bias"] is net.layers[-1].params[1]
    with pytest.raises(RuntimeError, match="not initialized"):
        Network([Flatten()]).describe()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_describe_gives_batch_norm_the_constants_of_its_inference(dtype):
    # An exporter applying scale and shift as y = x * scale + shift computes what the
    # layer's inference computes, bit for bit; dropout is described and is the
    # identity there.
    rng = np.random.RandomState(0)
    net = Network([Conv(3, 2), BatchNorm(eps=1e-3), Dropout(0.4, spatial=True),
                   Flatten(), Dense(4), BatchNorm(), Dropout(0.2)])
    net.initialize((2, 5, 6), rng, dtype)
    for layer in (net.layers[1], net.layers[5]):
        for array in layer.params + layer.buffers:
            array[...] = rng.uniform(0.2, 2.0, array.shape)
    x = rng.rand(7, 2, 5, 6).astype(dtype)
    conv, norm, drop, _, dense, norm_dense, drop_dense = net.describe()
    assert norm["kind"] == "batch_norm" and norm["axis"] == 0 and norm["eps"] == 1e-3
    assert norm["running_var"] is net.layers[1].buffers[1]
    assert norm["scale"].dtype == norm["shift"].dtype == dtype
    assert drop == {"kind": "dropout", "rate": 0.4, "spatial": True,
                    "input_shape": (3, 4, 5), "output_shape": (3, 4, 5)}
    assert drop_dense["rate"] == 0.2 and drop_dense["spatial"] is False
    h = net.layers[0].forward(x, 1, training=False)
    expected = net.layers[1].forward(h, 1, training=False)
    rebuilt = h * norm["scale"][:, None, None] + norm["shift"][:, None, None]
    np.testing.assert_array_equal(rebuilt, expected)
    h = net.layers[4].forward(expected.reshape(7, -1), 1, training=False)
    np.testing.assert_array_equal(h * norm_dense["scale"] + norm_dense["shift"],
                                  net.layers[5].forward(h, 1, training=False))
    assert not np.allclose(norm_dense["scale"], 1)


def test_dtypes_are_pickled_by_name():
    # skops trusts strings but no numpy dtype object; pickle keeps working.
    net = _init(build_lenet5((1, 8, 8), 3, filters=(2,)), 0, shape=(1, 8, 8))
    assert net.__getstate__()["dtype"] == "float64"
    assert all(layer.__getstate__()["dtype"] == "float64" for layer in net.layers)
    restored = pickle.loads(pickle.dumps(net))
    assert restored.dtype == np.float64 and isinstance(restored.dtype, np.dtype)
    assert all(isinstance(layer.dtype, np.dtype) for layer in restored.layers)


@pytest.mark.parametrize("shape, kwargs", [
    ((1, 40), dict(filters=(3, 4), kernel_size=5)),
    ((2, 9, 8), dict(filters=(3,), kernel_size=3, stride=2)),
    ((1, 6, 5, 6), dict(filters=(2,), kernel_size=3, pooling="avg")),
    ((1, 6, 5, 6), dict(filters=(2, 3), kernel_size=3, batch_norm=True,
                        activation="tanh", dropout=0.3)),
    ((3, 8, 9), dict(filters=(4,), kernel_size=3, batch_norm="conv", pooling="min",
                     pool_size=3, pool_stride=2, activation="leaky_relu"))])
def test_predict_reusing_its_buffers_is_bitwise_the_forward(shape, kwargs):
    """predict writes the steps' outputs into arrays reused from batch to batch (and
    resized for a smaller last batch): each batch's result is the plain forward's."""
    network = build_lenet5(shape, 3, hidden_layer_sizes=(7, 5), **kwargs)
    network.initialize(shape, np.random.RandomState(0), np.float64)
    for layer in network.layers:  # batch norm with statistics other than (0, 1)
        for buffer in getattr(layer, "buffers", ()):
            buffer += np.random.RandomState(2).uniform(0.1, 1, buffer.shape)
    X = np.random.RandomState(1).standard_normal((23,) + shape)
    out = network.predict(X, 1, batch_size=10)
    np.testing.assert_array_equal(out, np.vstack([network.forward(X[i:i + 10], 1)
                                       for i in range(0, 23, 10)]))
    np.testing.assert_array_equal(out, network.forward(X, 1))
    assert not np.shares_memory(out, X)


def _volume_network_for_batches():
    """A small 3-D network, 30 samples and their outputs from one forward."""
    shape = (1, 6, 8, 8)
    network = build_lenet5(shape, 3, filters=(4,), kernel_size=3, hidden_layer_sizes=(5,))
    network.initialize(shape, np.random.RandomState(0), np.float64)
    X = np.random.RandomState(1).standard_normal((30,) + shape)
    return network, X, network.forward(X, 1)


def _predict_batch_sizes(network, X, monkeypatch):
    """``network.predict(X, 1)`` and the number of rows of each of its batches."""
    batches = []
    forward_conv = network.steps[0].infer
    monkeypatch.setattr(network.steps[0], "infer",
                        lambda x, *args: batches.append(len(x)) or forward_conv(x, *args))
    return network.predict(X, 1), batches


def test_predict_batches_fit_the_inference_byte_budget(monkeypatch):
    """Large samples get fewer rows per inference batch (their step outputs stay
    within INFERENCE_BATCH_BYTES), with the same outputs."""
    from skconv._nn import network as network_module

    network, X, expected = _volume_network_for_batches()
    # The largest step output per sample: the 3-D conv's 4 x 6 x 8 x 8 float64 values.
    per_sample = 4 * 6 * 8 * 8 * 8
    monkeypatch.setattr(network_module, "INFERENCE_CACHE_BYTES", 1 << 40)
    assert network._inference_rows(512) == 512
    monkeypatch.setattr(network_module, "INFERENCE_BATCH_BYTES", 7 * per_sample + 1)
    assert network._inference_rows(512) == 7
    assert network._inference_rows(5) == 5
    out, batches = _predict_batch_sizes(network, X, monkeypatch)
    np.testing.assert_array_equal(out, expected)
    assert batches == [7, 7, 7, 7, 2]
    monkeypatch.setattr(network_module, "INFERENCE_BATCH_BYTES", 1)
    assert network._inference_rows(512) == 1


def test_predict_batches_keep_their_activations_within_the_cache_budget(monkeypatch):
    """A batch holds as many rows as fit all its activations (input and every step's
    output) in INFERENCE_CACHE_BYTES, never fewer than INFERENCE_MIN_ROWS nor more
    than the caller's batch size, with the same outputs."""
    from skconv._nn import network as network_module

    network, X, expected = _volume_network_for_batches()
    # Per sample, in float64: the input (6 x 8 x 8), the steps of the 3-D conv
    # block, which run unfused: the conv (4 x 6 x 8 x 8), the pooling, the relu and
    # the flattening (192 values each), then the hidden layer (5) and the logits (3).
    per_sample = (6 * 8 * 8 + 4 * 6 * 8 * 8 + 3 * 4 * 3 * 4 * 4 + 5 + 3) * 8
    monkeypatch.setattr(network_module, "INFERENCE_MIN_ROWS", 4)
    monkeypatch.setattr(network_module, "INFERENCE_CACHE_BYTES", 9 * per_sample + 7)
    assert network._inference_rows(512) == 9
    assert network._inference_rows(6) == 6
    monkeypatch.setattr(network_module, "INFERENCE_CACHE_BYTES", 9 * per_sample - 1)
    assert network._inference_rows(512) == 8
    monkeypatch.setattr(network_module, "INFERENCE_CACHE_BYTES", per_sample)
    assert network._inference_rows(512) == 4
    out, batches = _predict_batch_sizes(network, X, monkeypatch)
    np.testing.assert_array_equal(out, expected)
    assert batches == [4] * 7 + [2]
    # The memory bound still holds below the fewest rows of the cache rule.
    monkeypatch.setattr(network_module, "INFERENCE_BATCH_BYTES", 3 * 4 * 6 * 8 * 8 * 8)
    assert network._inference_rows(512) == 3
