"""SGD (with momentum / Nesterov) and Adam, updating parameters in place.

The maths is scikit-learn's ``sklearn/neural_network/_stochastic_optimizers.py``
operation for operation (so float64 results match it bit for bit), but the moment
buffers are updated in place and the parameters are modified in place, so nothing is
allocated per step beyond one temporary per parameter. Adam's step (with the L2
term) runs as one fused compiled loop over every parameter
(:func:`skconv._ops.update.adam_step`), bit for bit the numpy code it replaces, which
stays as the fallback and the tests' reference. Hyper-parameters are kept as Python
floats, which never promote float32 arrays to float64.

Both optimizers pickle (plain attributes and arrays) and keep ``t``, the number of
updates made so far. :meth:`state` and :meth:`load_state` copy and restore everything
that changes while training (the estimators' snapshots for early stopping and
interrupted epochs).

SGD's learning-rate schedules ('invscaling', 'adaptive') are scikit-learn's; the
estimators expose them with the learning-rate schedules of the learning-quality work.
"""

import math

import numpy as np

from .._ops.update import adam_step

__all__ = ["Adam", "SGD", "add_l2"]


def add_l2(params, grads, l2):
    """``grad += factor * param`` in place for each parameter with a non-zero factor.

    Parameters
    ----------
    params, grads : list of ndarray
        Matching one to one.
    l2 : list of float or None
        One factor per parameter; None adds nothing.
    """
    if l2 is None:
        return
    for param, grad, factor in zip(params, grads, l2):
        if factor:
            grad += factor * param


class _BaseOptimizer:
    """Shared bookkeeping: the parameter list, learning rate and step counter."""

    def __init__(self, params, learning_rate):
        self.params = list(params)
        self.learning_rate_init = float(learning_rate)
        self.learning_rate = float(learning_rate)
        self.t = 0

    def _buffers(self):
        """The arrays that training changes besides the parameters."""
        return []

    def state(self):
        """A copy of what training changes: buffers, step count, learning rate.

        Returns
        -------
        dict
            To give back to :meth:`load_state`.
        """
        return {"buffers": [b.copy() for b in self._buffers()], "t": self.t,
                "learning_rate": self.learning_rate}

    def load_state(self, state):
        """Restore a :meth:`state`, in place (the buffers keep their identity)."""
        buffers = self._buffers()
        if len(state["buffers"]) != len(buffers):
            raise ValueError(f"state holds {len(state['buffers'])} buffers, the optimizer "
                             f"{len(buffers)}")
        for dst, src in zip(buffers, state["buffers"]):
            dst[...] = src
        self.t, self.learning_rate = state["t"], state["learning_rate"]

    def _check_grads(self, grads):
        grads = list(grads)
        if len(grads) != len(self.params) or any(
            g.shape != p.shape for g, p in zip(grads, self.params)
        ):
            raise ValueError(
                "grads do not match params: shapes "
                f"{[g.shape for g in grads]} vs {[p.shape for p in self.params]}"
            )
        return grads

    def update(self, grads, l2=None, n_threads=1):
        """Apply one step to ``params`` in place.

        Parameters
        ----------
        grads : list of ndarray
            Gradients matching ``params`` one to one.
        l2 : list of float or None, default=None
            One L2 factor per parameter: the step uses ``grad + l2 * param``
            (``grads`` may be modified to hold that sum). None: no L2 term.
        n_threads : int, default=1
            Threads for the fused Adam step (the result does not depend on it).
        """
        raise NotImplementedError


    def iteration_ends(self, time_step):
        """Hook called at the end of each epoch (scikit-learn's name).

        Parameters
        ----------
        time_step : int
            Training samples seen so far (drives the 'invscaling' schedule of SGD).
        """

    def trigger_stopping(self, msg, verbose):
        """Whether training should stop when it has stalled (scikit-learn's rule).

        Returns
        -------
        bool
            True (stop); SGD's 'adaptive' schedule divides the learning rate by 5
            and returns False instead while it is above 1e-6.
        """
        if verbose:
            print(msg + " Stopping.")
        return True


class SGD(_BaseOptimizer):
    """Stochastic gradient descent with momentum, as scikit-learn's MLP.

    ``v <- momentum * v - lr * g``; the step is ``v`` or, with Nesterov,
    ``momentum * v - lr * g`` (with the new ``v``).

    Parameters
    ----------
    params : list of ndarray
        Arrays updated in place (e.g. ``Network.params``).
    learning_rate : float, default=0.1
        Initial learning rate.
    momentum : float, default=0.9
    nesterov : bool, default=True
    lr_schedule : {'constant', 'invscaling', 'adaptive'}, default='constant'
        'invscaling': ``lr = learning_rate / (time_step + 1) ** power_t`` at each
        :meth:`iteration_ends`; 'adaptive': divided by 5 by :meth:`trigger_stopping`.
    power_t : float, default=0.5

    Attributes
    ----------
    velocities : list of ndarray
        One per parameter, same shape and dtype.
    t : int
        Number of :meth:`update` calls.
    """

    def __init__(self, params, learning_rate=0.1, momentum=0.9, nesterov=True,
                 lr_schedule="constant", power_t=0.5):
        super().__init__(params, learning_rate)
        if lr_schedule not in ("constant", "invscaling", "adaptive"):
            raise ValueError(
                "lr_schedule must be 'constant', 'invscaling' or 'adaptive', got "
                f"{lr_schedule!r}"
            )
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.lr_schedule = lr_schedule
        self.power_t = float(power_t)
        self.velocities = [np.zeros_like(p) for p in self.params]

    def _buffers(self):
        return self.velocities

    def update(self, grads, l2=None, n_threads=1):
        grads = self._check_grads(grads)
        add_l2(self.params, grads, l2)
        lr, momentum = self.learning_rate, self.momentum
        for param, velocity, grad in zip(self.params, self.velocities, grads):
            step = lr * grad
            velocity *= momentum
            velocity -= step
            if self.nesterov:
                param += momentum * velocity - step
            else:
                param += velocity
        self.t += 1

    def iteration_ends(self, time_step):
        if self.lr_schedule == "invscaling":
            self.learning_rate = (
                self.learning_rate_init / (time_step + 1) ** self.power_t)

    def trigger_stopping(self, msg, verbose):
        if self.lr_schedule != "adaptive":
            return super().trigger_stopping(msg, verbose)
        if self.learning_rate <= 1e-6:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self.learning_rate /= 5.0
        if verbose:
            print(msg + " Setting learning rate to %f" % self.learning_rate)
        return False


class Adam(_BaseOptimizer):
    """Adam (Kingma and Ba, 2014), as scikit-learn's MLP.

    ``m <- b1 m + (1 - b1) g``, ``v <- b2 v + (1 - b2) g**2``,
    ``lr_t = lr sqrt(1 - b2**t) / (1 - b1**t)``, ``param -= lr_t m / (sqrt(v) + eps)``.

    Parameters
    ----------
    params : list of ndarray
        Arrays updated in place.
    learning_rate : float, default=0.001
    beta_1 : float, default=0.9
    beta_2 : float, default=0.999
    epsilon : float, default=1e-8

    Attributes
    ----------
    ms, vs : list of ndarray
        First and second moment estimates, one per parameter.
    t : int
        Number of :meth:`update` calls (Adam's time step).
    learning_rate : float
        The bias-corrected rate of the last step (scikit-learn stores it the same way).
    """

    def __init__(self, params, learning_rate=0.001, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8):
        super().__init__(params, learning_rate)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.ms = [np.zeros_like(p) for p in self.params]
        self.vs = [np.zeros_like(p) for p in self.params]

    def _buffers(self):
        return self.ms + self.vs

    def update(self, grads, l2=None, n_threads=1):
        grads = self._check_grads(grads)
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.learning_rate = (
            self.learning_rate_init * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        )
        if l2 is None:
            l2 = [0.0] * len(grads)
        # One C call for every parameter (one pass over each), bit for bit the numpy
        # code below; it declines, changing nothing, unless every array is a
        # C-contiguous float32 or float64 array of the parameter's dtype.
        if adam_step(self.params, self.ms, self.vs, grads, l2, beta_1=b1, beta_2=b2,
                     learning_rate=self.learning_rate, epsilon=self.epsilon,
                     n_threads=n_threads):
            return
        add_l2(self.params, grads, l2)
        for param, m, v, grad in zip(self.params, self.ms, self.vs, grads):
            m *= b1
            m += (1 - b1) * grad
            v *= b2
            v += (1 - b2) * (grad**2)
            step = -self.learning_rate * m
            denom = np.sqrt(v)
            denom += self.epsilon
            step /= denom
            param += step
