"""The training-time augmentations (``RandomShift``, the estimators' ``augment_shift``
and ``augment_flip``; ``RandomScale``, their ``augment_scale`` and ``augment_noise``):
the moves and the amplitudes against obvious per-sample twins, the backward as the
exact adjoint, the keyed draws, and the estimators' wiring."""

import math
import pickle

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from skconv import ConvNetClassifier, ConvNetRegressor
from skconv._estimators.inspection import network_of
from skconv._nn.layers import Dense, Flatten, InputScale, RandomScale, RandomShift
from skconv._nn.network import Network


def _moved_twin(sample, shifts, flip):
    """One sample (C, *spatial) flipped along its last axis if ``flip``, then moved
    by ``shifts`` cells: out[c, i] = sample[c, i - d] where that is inside, else 0."""
    if flip:
        sample = sample[..., ::-1]
    out = np.zeros_like(sample)
    for index in np.ndindex(*sample.shape[1:]):
        source = tuple(i - d for i, d in zip(index, shifts))
        if all(0 <= s < n for s, n in zip(source, sample.shape[1:])):
            out[(slice(None),) + index] = sample[(slice(None),) + source]
    return out


@pytest.mark.parametrize("spatial", [(11,), (6, 7), (3, 4, 5)])
@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_moves_match_the_twin_and_backward_is_the_adjoint(spatial, flip, dtype):
    rng = np.random.RandomState(len(spatial) + 7 * flip)
    layer = RandomShift(0.4, flip)
    layer.initialize((2,) + spatial, np.random.RandomState(3), dtype)
    assert layer.max_shifts == tuple(int(np.floor(0.4 * n + 0.5)) for n in spatial)
    x = rng.standard_normal((40, 2) + spatial).astype(dtype)
    y = layer.forward(x, 1, training=True)
    moves = layer._moves.copy()
    assert y.dtype == dtype
    # Every move in range, and (40 samples) both signs and no move at all occur.
    assert (np.abs(moves[:, :-1]) <= np.array(layer.max_shifts)).all()
    assert (moves[:, :-1] > 0).any() and (moves[:, :-1] < 0).any()
    assert set(np.unique(moves[:, -1])) == ({0, 1} if flip else {0})
    for i in range(len(x)):
        assert_array_equal(y[i], _moved_twin(x[i], moves[i, :-1], moves[i, -1]))
    # The backward is the transpose: <y, g> == <x, backward(g)> for any g.
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = layer.backward(grad_y, 1, need_input_grad=True)
    assert_allclose(np.vdot(y.astype(np.float64), grad_y),
                    np.vdot(x.astype(np.float64), grad_x), rtol=1e-5)


def test_inference_and_no_shift_pass_the_input_through():
    layer = RandomShift(0.3)
    layer.initialize((1, 10), np.random.RandomState(0), np.float64)
    x = np.random.RandomState(1).rand(5, 1, 10)
    assert layer.forward(x, 1, training=False) is x
    still = RandomShift(0.0)
    still.initialize((1, 4), np.random.RandomState(0), np.float64)
    assert still.max_shifts == (0,) and not still.draws
    assert still.forward(x[..., :4], 1, training=True) is not None
    assert_array_equal(still.backward(x[..., :4], 1, True), x[..., :4])


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(shift=0.5), "shift must be in"), (dict(shift=-0.1), "shift must be in")])
def test_bad_shift_is_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RandomShift(**kwargs).initialize((1, 8), np.random.RandomState(0), np.float64)
    with pytest.raises(ValueError, match=r"needs an input of shape \(C, \*spatial\)"):
        RandomShift().initialize((8,), np.random.RandomState(0), np.float64)


def test_moves_are_keyed_by_the_rows_content():
    """In a network, equal rows move alike wherever they are; moves change from one
    forward to the next."""
    network = Network([RandomShift(0.3, flip=True), Flatten(), Dense(3)])
    network.initialize((1, 9, 9), np.random.RandomState(0), np.float64)
    network.use_random_state(np.random.RandomState(5))
    x = np.random.RandomState(1).rand(30, 1, 9, 9)
    x[7] = x[2]
    network.forward(x, 1, training=True)
    shift = network.layers[0]
    first = shift._moves.copy()
    network.backward(np.ones((30, 3)), 1)
    assert_array_equal(first[7], first[2])
    network.use_random_state(np.random.RandomState(5))
    order = np.random.RandomState(2).permutation(30)
    network.forward(x[order], 1, training=True)
    assert_array_equal(shift._moves, first[order])
    network.backward(np.ones((30, 3)), 1)
    network.forward(x, 1, training=True)
    assert not np.array_equal(shift._moves, first)


def test_the_first_conv_skips_its_input_gradient_behind_an_augmentation():
    """The augmentation has no parameters (nor has the input scaling before it,
    'max_abs' on these images): the conv after them must not compute an input
    gradient nobody uses, and the network's backward returns None as before."""
    net = ConvNetClassifier(filters=(2,), hidden_layer_sizes=(), augment_shift=0.2,
                            max_iter=1, random_state=0)
    X = np.random.RandomState(0).rand(12, 1, 6, 6)
    net.fit(X, np.arange(12) % 2)
    network = network_of(net)
    asked = []
    assert [type(step.layers[0]) for step in network.steps[:2]] == [InputScale,
                                                                    RandomShift]
    conv_step = network.steps[2]
    backward = conv_step.backward

    def spy(grad, n_jobs, need_input_grad):
        asked.append(need_input_grad)
        return backward(grad, n_jobs, need_input_grad)

    conv_step.backward = spy
    network.forward(X, 1, training=True)
    assert network.backward(np.ones((12, 2)), 1) is None
    assert asked == [False]
    network.forward(X, 1, training=True)
    assert network.backward(np.ones((12, 2)), 1, need_input_grad=True).shape == X.shape
    assert asked == [False, True]


@pytest.mark.parametrize("Estimator", [ConvNetClassifier, ConvNetRegressor])
def test_estimators_build_the_layer_and_stay_deterministic(Estimator):
    rng = np.random.RandomState(0)
    X = rng.rand(48, 1, 8, 8).astype(np.float32)
    y = (X[:, 0, :4].sum(axis=(1, 2)) > X[:, 0, 4:].sum(axis=(1, 2))).astype(int)
    params = dict(filters=(3,), hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                  augment_shift=0.15, augment_flip=True)
    one = Estimator(n_jobs=1, **params).fit(X, y)
    two = Estimator(n_jobs=2, **params).fit(X, y)
    plain = Estimator(n_jobs=1, **{**params, "augment_shift": 0.0,
                                   "augment_flip": False}).fit(X, y)
    shifts = [layer for layer in network_of(one).layers if isinstance(layer, RandomShift)]
    assert len(shifts) == 1 and shifts[0].max_shifts == (1, 1)
    assert not any(isinstance(layer, RandomShift) for layer in network_of(plain).layers)
    for a, b in zip(one.coefs_, two.coefs_):
        assert_array_equal(a, b)
    assert not np.array_equal(one.coefs_[0], plain.coefs_[0])
    # Prediction does not augment: the same output on every call.
    out = one.predict_proba if Estimator is ConvNetClassifier else one.predict
    assert_array_equal(out(X), out(X))


@pytest.mark.parametrize("value", [0.5, -0.01, "0.1"])
def test_estimator_validates_augment_shift(value):
    X = np.random.RandomState(0).rand(8, 1, 6, 6)
    with pytest.raises(ValueError, match="augment_shift"):
        ConvNetClassifier(augment_shift=value, max_iter=1).fit(X, np.arange(8) % 2)


def test_pickled_model_continues_with_the_same_draws():
    X = np.random.RandomState(0).rand(40, 1, 12)
    y = np.arange(40) % 2
    params = dict(filters=(3,), hidden_layer_sizes=(8,), max_iter=2, random_state=0,
                  augment_shift=0.2, dropout=0.3, warm_start=True)
    model = ConvNetClassifier(**params).fit(X, y)
    twin = pickle.loads(pickle.dumps(model))
    for est in (model, twin):
        est.partial_fit(X, y)
    for a, b in zip(model.coefs_, twin.coefs_):
        assert_array_equal(a, b)


@pytest.mark.parametrize("spatial", [(9,), (5, 6), (3, 4, 5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_move_samples_op_any_moves_and_its_adjoint(spatial, dtype):
    # The op behind the layer, with moves past the edges too (the whole sample
    # leaves: zeros), on 1 and 2 threads; the inverse is the exact transpose.
    from skconv._ops.augment import move_samples

    rng = np.random.RandomState(len(spatial))
    x = rng.randint(-3, 4, size=(12, 2) + spatial).astype(dtype)
    moves = np.column_stack([rng.randint(-n - 2, n + 3, 12) for n in spatial]
                            + [rng.randint(0, 2, 12)])
    for n_jobs in (1, 2):
        y = move_samples(x, moves, n_jobs=n_jobs)
        for i in range(len(x)):
            assert_array_equal(y[i], _moved_twin(x[i], moves[i, :-1], moves[i, -1]))
        g = rng.randint(-3, 4, size=y.shape).astype(dtype)
        back = move_samples(g, moves, inverse=True, n_jobs=n_jobs)
        # Integers: the two inner products are exact.
        assert np.vdot(y.astype(np.float64), g) == np.vdot(x.astype(np.float64), back)
    with pytest.raises(ValueError, match=r"moves must be an int array of shape \(12, "):
        move_samples(x, moves[:, :-1])
    with pytest.raises(TypeError, match="x must be a float32 or float64 array"):
        move_samples(x.astype(np.int64), moves)
    with pytest.raises(ValueError, match="out must not share memory with the inputs"):
        move_samples(x, moves, out=x)


# ------------------------------------------------------------------------------------
# RandomScale: amplitude scaling and jitter
# ------------------------------------------------------------------------------------
def _scaled_twin(sample, uniforms, scale, noise):
    """One sample scaled and jittered from its row of uniforms, value by value:
    factor 1 + scale * (2 u_0 - 1); normal pairs by Box-Muller from (u_1, u_2),
    (u_3, u_4)..., the cosines of all pairs first, then their sines."""
    factor = 1 + scale * (2 * uniforms[0] - 1)
    flat = sample.reshape(-1)
    n_pairs = (flat.size + 1) // 2 if noise else 0
    cosines, sines = [], []
    for j in range(n_pairs):
        radius = math.sqrt(-2 * math.log(1 - uniforms[1 + 2 * j]))
        angle = 2 * math.pi * uniforms[2 + 2 * j]
        cosines.append(radius * math.cos(angle))
        sines.append(radius * math.sin(angle))
    normal = (cosines + sines)[:flat.size] if noise else [0.0] * flat.size
    out = [factor * v + noise * z for v, z in zip(flat, normal)]
    return np.array(out).reshape(sample.shape), factor


@pytest.mark.parametrize("spatial", [(11,), (3, 5), (2, 3, 3)])
@pytest.mark.parametrize("scale, noise", [(0.3, 0.0), (0.0, 0.2), (0.25, 0.1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_scale_and_noise_match_the_twin_and_backward_is_the_adjoint(spatial, scale,
                                                                      noise, dtype):
    rng = np.random.RandomState(len(spatial))
    layer = RandomScale(scale, noise)
    layer.initialize((2,) + spatial, np.random.RandomState(3), dtype)
    x = rng.standard_normal((20, 2) + spatial).astype(dtype)
    n_cells = x[0].size
    # Without row keys the layer draws its uniforms from its RandomState directly.
    uniforms = np.random.RandomState(3).random_sample(
        (20, 1 + (2 * ((n_cells + 1) // 2) if noise else 0)))
    y = layer.forward(x, 1, training=True)
    assert y.dtype == dtype and y.shape == x.shape
    tolerance = 1e-12 if dtype == np.float64 else 2e-6
    factors = []
    for i in range(len(x)):
        expected, factor = _scaled_twin(x[i].astype(np.float64), uniforms[i], scale,
                                        noise)
        assert_allclose(y[i], expected, rtol=tolerance, atol=tolerance)
        factors.append(factor)
    assert all(1 - scale <= f < 1 + scale or f == 1 for f in factors)
    # The backward is the transpose of x -> f x (the noise is a constant).
    grad_y = rng.standard_normal(y.shape).astype(dtype)
    grad_x = layer.backward(grad_y, 1, need_input_grad=True)
    assert_allclose(grad_x, grad_y * np.array(factors, dtype).reshape(
        (-1,) + (1,) * (x.ndim - 1)), rtol=tolerance)


def test_scale_and_noise_have_the_asked_spread():
    layer = RandomScale(0.2, 0.5)
    layer.initialize((1, 400), np.random.RandomState(0), np.float64)
    ones = np.ones((300, 1, 400))
    y = layer.forward(ones, 1, training=True)
    factors = layer._mask.reshape(-1)
    assert factors.min() >= 0.8 and factors.max() < 1.2
    assert factors.min() < 0.82 and factors.max() > 1.18  # the whole range is used
    # uniform on [0.8, 1.2): std 0.4 / sqrt(12)
    assert abs(factors.std() - 0.4 / math.sqrt(12)) < 0.01
    noise = (y - factors.reshape(-1, 1, 1)).reshape(-1)
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 0.5) < 0.01
    # Gaussian, not uniform: 68.3% within one standard deviation.
    assert abs(np.mean(np.abs(noise) < 0.5) - 0.6827) < 0.01


def test_scale_inference_and_zero_options_pass_the_input_through():
    layer = RandomScale(0.3, 0.1)
    layer.initialize((1, 10), np.random.RandomState(0), np.float64)
    x = np.random.RandomState(1).rand(5, 1, 10)
    assert layer.forward(x, 1, training=False) is x
    still = RandomScale(0.0, 0.0)
    still.initialize((1, 10), np.random.RandomState(0), np.float64)
    assert not still.draws
    assert still.forward(x, 1, training=True) is x
    assert_array_equal(still.backward(x, 1, True), x)


@pytest.mark.parametrize("kwargs, pattern", [
    (dict(scale=1.0), "scale must be in"), (dict(scale=-0.1), "scale must be in"),
    (dict(noise=-0.5), "noise must be >= 0"), (dict(noise=math.inf), "noise must be")])
def test_bad_scale_or_noise_is_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        RandomScale(**kwargs).initialize((1, 8), np.random.RandomState(0), np.float64)


def test_scales_and_noise_are_keyed_by_the_rows_content():
    network = Network([RandomShift(0.2), RandomScale(0.3, 0.2), Flatten(), Dense(3)])
    network.initialize((1, 9), np.random.RandomState(0), np.float64)
    network.use_random_state(np.random.RandomState(5))
    x = np.random.RandomState(1).rand(30, 1, 9)
    x[7] = x[2]
    first = network.forward(x, 1, training=True).copy()  # the output is reused
    factors = network.layers[1]._mask.copy()
    network.backward(np.ones((30, 3)), 1)
    assert_array_equal(first[7], first[2])
    network.use_random_state(np.random.RandomState(5))
    order = np.random.RandomState(2).permutation(30)
    assert_array_equal(network.forward(x[order], 1, training=True), first[order])
    assert_array_equal(network.layers[1]._mask, factors[order])
    network.backward(np.ones((30, 3)), 1)
    assert not np.array_equal(network.forward(x, 1, training=True), first)


@pytest.mark.parametrize("Estimator", [ConvNetClassifier, ConvNetRegressor])
def test_estimators_build_the_scale_layer_and_stay_deterministic(Estimator):
    rng = np.random.RandomState(0)
    X = rng.rand(48, 2, 20).astype(np.float32)
    y = (X[:, 0].sum(axis=1) > X[:, 1].sum(axis=1)).astype(int)
    params = dict(filters=(3,), hidden_layer_sizes=(8,), max_iter=3, random_state=0,
                  min_updates=0, augment_scale=0.2, augment_noise=0.1)
    one = Estimator(n_jobs=1, **params).fit(X, y)
    two = Estimator(n_jobs=2, **params).fit(X, y)
    plain = Estimator(n_jobs=1, **{**params, "augment_scale": 0.0,
                                   "augment_noise": 0.0}).fit(X, y)
    scales = [layer for layer in network_of(one).layers
              if isinstance(layer, RandomScale)]
    assert len(scales) == 1 and (scales[0].scale, scales[0].noise) == (0.2, 0.1)
    assert not any(isinstance(layer, RandomScale) for layer in network_of(plain).layers)
    for a, b in zip(one.coefs_ + one.conv_weights_, two.coefs_ + two.conv_weights_):
        assert_array_equal(a, b)
    assert not np.array_equal(one.coefs_[0], plain.coefs_[0])
    out = one.predict_proba if Estimator is ConvNetClassifier else one.predict
    assert_array_equal(out(X), out(X))


@pytest.mark.parametrize("name, value", [("augment_scale", 1.0), ("augment_scale", -0.1),
                                         ("augment_noise", -1.0),
                                         ("augment_noise", "0.1")])
def test_estimator_validates_augment_scale_and_noise(name, value):
    X = np.random.RandomState(0).rand(8, 1, 6, 6)
    with pytest.raises(ValueError, match=name):
        ConvNetClassifier(**{name: value}, max_iter=1).fit(X, np.arange(8) % 2)
