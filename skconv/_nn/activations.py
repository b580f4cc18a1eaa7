"""Element-wise activation functions and their derivatives (private).

Every activation has a forward ``f(x, out=None) -> y`` and a backward
``f_backward(y, grad_y, out=None) -> grad_x`` written in terms of the forward OUTPUT
``y``: relu, leaky relu, tanh and logistic all allow this, so a layer need not keep
its input alive between forward and backward, and the forward may overwrite its input
(``out=x``) when the caller owns it. Likewise the backward may overwrite ``grad_y``
(``out=grad_y``).

dtype: float32 stays float32 and float64 stays float64 (scalar constants are Python
floats, which never promote an array).

The registry :data:`ACTIVATIONS` maps a name ('relu', 'tanh', 'logistic', 'identity',
'leaky_relu') to an :class:`ActivationFunction` holding both functions.
"""

from typing import Callable, NamedTuple

import numpy as np
from scipy.special import expit

__all__ = [
    "ACTIVATIONS",
    "LEAKY_RELU_SLOPE",
    "ActivationFunction",
    "get_activation",
    "identity",
    "identity_backward",
    "leaky_relu",
    "leaky_relu_backward",
    "logistic",
    "logistic_backward",
    "relu",
    "relu_backward",
    "tanh",
    "tanh_backward",
]

#: Slope of leaky relu for negative inputs.
LEAKY_RELU_SLOPE = 0.01


def _output(x, out):
    # The caller's buffer when given (possibly x itself), else a new array like x.
    return np.empty_like(x) if out is None else out


def identity(x, out=None):
    """Identity ``y = x``.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64
    out : ndarray of the same shape and dtype, default=None
        Where to write ``y``; may be ``x`` itself (then nothing is done).

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
        ``out`` if given, else a copy of ``x``.
    """
    if out is None:
        return x.copy()
    if out is not x:
        out[...] = x
    return out


def identity_backward(y, grad_y, out=None):
    """Gradient of :func:`identity`: ``grad_x = grad_y``.

    Parameters
    ----------
    y : ndarray
        Forward output (unused; kept for a uniform signature).
    grad_y : ndarray, same shape as ``y``
    out : ndarray, default=None
        Where to write ``grad_x``; may be ``grad_y``.

    Returns
    -------
    grad_x : ndarray, same shape and dtype as ``grad_y``
    """
    return identity(grad_y, out)


def relu(x, out=None):
    """Rectified linear unit ``y = max(x, 0)``.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64
    out : ndarray of the same shape and dtype, default=None
        Where to write ``y``; may be ``x`` itself.

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    """
    return np.maximum(x, 0.0, out=_output(x, out))


def relu_backward(y, grad_y, out=None):
    """Gradient of :func:`relu` from its output: ``grad_x = grad_y * (y > 0)``.

    The derivative at 0 is taken as 0 (``y > 0`` iff ``x > 0``).

    Parameters
    ----------
    y : ndarray
        Forward output of :func:`relu`.
    grad_y : ndarray, same shape as ``y``
        Gradient of the loss with respect to ``y``.
    out : ndarray, default=None
        Where to write ``grad_x``; may be ``grad_y``.

    Returns
    -------
    grad_x : ndarray, same shape and dtype as ``grad_y``
    """
    out = _output(grad_y, out)
    np.multiply(grad_y, y > 0, out=out)
    return out


def leaky_relu(x, out=None):
    """Leaky relu ``y = x if x > 0 else 0.01 * x``.

    Computed as ``max(x, 0.01 * x)``, exact for a slope below 1.

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64
    out : ndarray of the same shape and dtype, default=None
        Where to write ``y``; may be ``x`` itself.

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    """
    return np.maximum(x, LEAKY_RELU_SLOPE * x, out=_output(x, out))


def leaky_relu_backward(y, grad_y, out=None):
    """Gradient of :func:`leaky_relu` from its output.

    ``grad_x = grad_y`` where ``y > 0`` (equivalently ``x > 0``: the slope is
    positive) and ``0.01 * grad_y`` elsewhere; the derivative at 0 is the slope.

    Parameters
    ----------
    y : ndarray
        Forward output of :func:`leaky_relu`.
    grad_y : ndarray, same shape as ``y``
    out : ndarray, default=None
        Where to write ``grad_x``; may be ``grad_y``.

    Returns
    -------
    grad_x : ndarray, same shape and dtype as ``grad_y``
    """
    out = _output(grad_y, out)
    scale = np.where(y > 0, 1.0, LEAKY_RELU_SLOPE).astype(grad_y.dtype, copy=False)
    np.multiply(grad_y, scale, out=out)
    return out


def tanh(x, out=None):
    """Hyperbolic tangent (saturates to +-1 without overflow).

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64
    out : ndarray of the same shape and dtype, default=None
        Where to write ``y``; may be ``x`` itself.

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    """
    return np.tanh(x, out=_output(x, out))


def tanh_backward(y, grad_y, out=None):
    """Gradient of :func:`tanh` from its output: ``grad_x = grad_y * (1 - y**2)``.

    Parameters
    ----------
    y : ndarray
        Forward output of :func:`tanh`.
    grad_y : ndarray, same shape as ``y``
    out : ndarray, default=None
        Where to write ``grad_x``; may be ``grad_y``.

    Returns
    -------
    grad_x : ndarray, same shape and dtype as ``grad_y``
    """
    out = _output(grad_y, out)
    derivative = np.square(y)
    np.subtract(1.0, derivative, out=derivative)
    np.multiply(grad_y, derivative, out=out)
    return out


def logistic(x, out=None):
    """Logistic sigmoid ``y = 1 / (1 + exp(-x))``.

    Uses :func:`scipy.special.expit`, which neither overflows nor warns for large
    ``|x|`` (it saturates to exactly 0 or 1).

    Parameters
    ----------
    x : ndarray of any shape, float32 or float64
    out : ndarray of the same shape and dtype, default=None
        Where to write ``y``; may be ``x`` itself.

    Returns
    -------
    y : ndarray, same shape and dtype as ``x``
    """
    return expit(x, out=_output(x, out))


def logistic_backward(y, grad_y, out=None):
    """Gradient of :func:`logistic` from its output: ``grad_x = grad_y * y * (1 - y)``.

    Parameters
    ----------
    y : ndarray
        Forward output of :func:`logistic`.
    grad_y : ndarray, same shape as ``y``
    out : ndarray, default=None
        Where to write ``grad_x``; may be ``grad_y``.

    Returns
    -------
    grad_x : ndarray, same shape and dtype as ``grad_y``
    """
    out = _output(grad_y, out)
    derivative = np.subtract(1.0, y)
    derivative *= y
    np.multiply(grad_y, derivative, out=out)
    return out


class ActivationFunction(NamedTuple):
    """An activation's forward and output-based backward.

    Attributes
    ----------
    name : str
    forward : callable ``(x, out=None) -> y``
    backward : callable ``(y, grad_y, out=None) -> grad_x``
    """

    name: str
    forward: Callable
    backward: Callable


#: Registry of activations by name.
ACTIVATIONS = {
    "identity": ActivationFunction("identity", identity, identity_backward),
    "relu": ActivationFunction("relu", relu, relu_backward),
    "leaky_relu": ActivationFunction("leaky_relu", leaky_relu, leaky_relu_backward),
    "tanh": ActivationFunction("tanh", tanh, tanh_backward),
    "logistic": ActivationFunction("logistic", logistic, logistic_backward),
}


def get_activation(name):
    """Look an activation up by name.

    Parameters
    ----------
    name : str
        One of the keys of :data:`ACTIVATIONS`.

    Returns
    -------
    ActivationFunction

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"unknown activation {name!r}; expected one of {sorted(ACTIVATIONS)}"
        ) from None
