"""Tests for skconv._nn.activations: values, output-based backward, stability, in place."""

import warnings

import numpy as np
import pytest

from skconv._nn.activations import (
    ACTIVATIONS,
    LEAKY_RELU_SLOPE,
    get_activation,
)

NAMES = ["identity", "relu", "leaky_relu", "tanh", "logistic"]

REFERENCE = {
    "identity": lambda x: x,
    "relu": lambda x: np.where(x > 0, x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, LEAKY_RELU_SLOPE * x),
    "tanh": np.tanh,
    "logistic": lambda x: 1.0 / (1.0 + np.exp(-x)),
}


def _away_from_zero(rng, shape):
    # relu and leaky relu have a kink at 0: keep every point at least 0.1 from it so
    # the central difference (eps 1e-6) never straddles it.
    x = rng.uniform(0.1, 3.0, size=shape)
    return x * rng.choice([-1.0, 1.0], size=shape)


def test_registry_names():
    assert sorted(ACTIVATIONS) == sorted(NAMES)
    for name in NAMES:
        assert get_activation(name).name == name
    with pytest.raises(ValueError, match="unknown activation 'softplus'"):
        get_activation("softplus")


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_forward_matches_formula_and_keeps_dtype(name, dtype):
    rng = np.random.RandomState(0)
    x = rng.normal(scale=3.0, size=(4, 3, 5)).astype(dtype)
    y = get_activation(name).forward(x)
    assert y.dtype == dtype
    assert y.shape == x.shape
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(y, REFERENCE[name](x.astype(np.float64)), rtol=rtol,
                               atol=rtol)


@pytest.mark.parametrize("name", NAMES)
def test_backward_matches_central_differences(name):
    rng = np.random.RandomState(1)
    x = _away_from_zero(rng, (3, 7))
    grad_y = rng.normal(size=x.shape)
    act = get_activation(name)
    y = act.forward(x)
    grad_x = act.backward(y, grad_y)
    eps = 1e-6
    # Element-wise function: d/dx_i sum_j grad_y_j f(x_j) = grad_y_i f'(x_i).
    numeric = grad_y * (act.forward(x + eps) - act.forward(x - eps)) / (2 * eps)
    np.testing.assert_allclose(grad_x, numeric, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_backward_keeps_dtype(name, dtype):
    rng = np.random.RandomState(2)
    x = rng.normal(size=(5, 4)).astype(dtype)
    act = get_activation(name)
    grad_x = act.backward(act.forward(x), np.ones_like(x))
    assert grad_x.dtype == dtype


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_extreme_inputs_are_finite_and_silent(name, dtype):
    x = np.array([-1e4, -1e3, -50.0, 0.0, 50.0, 1e3, 1e4], dtype=dtype)
    act = get_activation(name)
    # Underflow to 0 is the intended saturation; overflow, 0/0 or log(0) are not.
    with warnings.catch_warnings(), np.errstate(over="raise", divide="raise",
                                                invalid="raise"):
        warnings.simplefilter("error")
        y = act.forward(x)
        grad_x = act.backward(y, np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(grad_x))
    if name == "logistic":
        assert y[0] == 0.0 and y[-1] == 1.0
        assert grad_x[0] == 0.0 and grad_x[-1] == 0.0
    if name == "tanh":
        assert y[0] == -1.0 and y[-1] == 1.0


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_in_place_forward_and_backward_give_same_values(name, dtype):
    rng = np.random.RandomState(3)
    x = rng.normal(scale=2.0, size=(6, 5)).astype(dtype)
    grad_y = rng.normal(size=x.shape).astype(dtype)
    act = get_activation(name)
    y = act.forward(x)
    grad_x = act.backward(y, grad_y)

    buffer = x.copy()
    y_inplace = act.forward(buffer, out=buffer)
    assert y_inplace is buffer
    np.testing.assert_array_equal(y_inplace, y)

    grad_buffer = grad_y.copy()
    grad_inplace = act.backward(y_inplace, grad_buffer, out=grad_buffer)
    assert grad_inplace is grad_buffer
    np.testing.assert_array_equal(grad_inplace, grad_x)


@pytest.mark.parametrize("name", NAMES)
def test_out_of_place_does_not_touch_inputs(name):
    rng = np.random.RandomState(4)
    x = rng.normal(size=(3, 4))
    grad_y = rng.normal(size=x.shape)
    x0, g0 = x.copy(), grad_y.copy()
    act = get_activation(name)
    y = act.forward(x)
    act.backward(y, grad_y)
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(grad_y, g0)


def test_relu_like_derivatives_at_zero():
    x = np.zeros(3)
    g = np.ones(3)
    relu, leaky = get_activation("relu"), get_activation("leaky_relu")
    np.testing.assert_array_equal(relu.backward(relu.forward(x), g), 0.0)
    np.testing.assert_array_equal(leaky.backward(leaky.forward(x), g), LEAKY_RELU_SLOPE)
