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

Both take a learning-rate schedule (:data:`LR_SCHEDULES`): scikit-learn's 'constant',
'invscaling' and 'adaptive' (which ``MLPClassifier`` applies to SGD only; here they
scale Adam's step too, before its bias correction, as PyTorch's schedulers do) and
'cosine', a decay from the initial rate to 0 over a planned number of epochs,
evaluated at every update (PyTorch's ``CosineAnnealingLR`` with ``eta_min=0``,
stepped per minibatch).
"""

import math
from numbers import Integral

import numpy as np

from .._ops.update import adam_step

__all__ = ["Adam", "LR_SCHEDULES", "SGD", "add_l2", "cosine_learning_rate"]

#: The learning-rate schedules of both optimizers.
LR_SCHEDULES = ("constant", "invscaling", "adaptive", "cosine")

#: 'adaptive' stops training instead of dividing the rate once it is this small
#: (scikit-learn's threshold).
_ADAPTIVE_MIN_RATE = 1e-6


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


def cosine_learning_rate(learning_rate_init, position, n_epochs):
    """The cosine schedule's rate at ``position`` epochs into a cycle of ``n_epochs``.

    ``learning_rate_init * (1 + cos(pi * p / n_epochs)) / 2`` with
    ``p = position mod n_epochs``: ``learning_rate_init`` at the start, 0 at the end of
    the cycle, and a new cycle (a warm restart) beyond it. An update ``i`` (from 0) of
    an epoch of ``n`` minibatches, ``e`` epochs into the cycle, is at ``e + i / n``.

    Parameters
    ----------
    learning_rate_init : float
    position : float
        Epochs done in the schedule, fractions included (>= 0).
    n_epochs : int
        Epochs of one cycle (>= 1).

    Returns
    -------
    float
    """
    fraction = math.fmod(position, n_epochs) / n_epochs
    return learning_rate_init * (1.0 + math.cos(math.pi * fraction)) / 2.0


class _BaseOptimizer:
    """Shared bookkeeping: the parameter list, the learning-rate schedule and the step
    counter.

    Parameters
    ----------
    params : list of ndarray
    learning_rate : float
        Initial learning rate.
    lr_schedule : {'constant', 'invscaling', 'adaptive', 'cosine'}, default='constant'
        How :attr:`base_learning_rate` changes: 'invscaling' sets it to
        ``learning_rate / (time_step + 1) ** power_t`` at each :meth:`iteration_ends`
        (``time_step``: training samples seen); 'adaptive' divides it by 5 in
        :meth:`trigger_stopping`; 'cosine' sets it before every update to
        :func:`cosine_learning_rate` at the update's position in the epochs of the
        schedule (the minibatches of the current epoch come from
        :meth:`begin_epoch`).
    power_t : float, default=0.5
        Exponent of 'invscaling'.
    n_epochs : int or None, default=None
        Epochs of the cosine's cycle (required by 'cosine', ignored otherwise).
    """

    # Class-level defaults: optimizers pickled before the schedules existed had a
    # constant rate (and a fixed learning_rate_init), which these reproduce.
    lr_schedule = "constant"
    power_t = 0.5
    n_epochs = None
    epochs_done = 0
    _batch = 0
    _n_batches = 1

    def __init__(self, params, learning_rate, lr_schedule="constant", power_t=0.5,
                 n_epochs=None):
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES}, got "
                             f"{lr_schedule!r}")
        if lr_schedule == "cosine" and not (
                isinstance(n_epochs, Integral) and n_epochs >= 1):
            raise ValueError(f"lr_schedule='cosine' needs n_epochs, a positive int, "
                             f"got {n_epochs!r}")
        self.params = list(params)
        self.learning_rate_init = float(learning_rate)
        self.learning_rate = float(learning_rate)
        self.base_learning_rate = float(learning_rate)
        self.lr_schedule = lr_schedule
        self.power_t = float(power_t)
        self.n_epochs = n_epochs
        self.t = 0
        self.epochs_done = 0
        self._batch = 0
        self._n_batches = 1

    def __setstate__(self, state):
        # Pickles made before the schedules: the rate was learning_rate (SGD) or
        # learning_rate_init (Adam, whose learning_rate was bias-corrected).
        self.__dict__.update(state)
        if "base_learning_rate" not in state:
            self.base_learning_rate = (self.learning_rate if isinstance(self, SGD)
                                       else self.learning_rate_init)

    def _buffers(self):
        """The arrays that training changes besides the parameters."""
        return []

    def _set_base_rate(self, rate):
        self.base_learning_rate = rate

    def state(self):
        """A copy of what training changes: buffers, step count, learning rates and
        the position in the schedule.

        Returns
        -------
        dict
            To give back to :meth:`load_state`.
        """
        return {"buffers": [b.copy() for b in self._buffers()], "t": self.t,
                "learning_rate": self.learning_rate,
                "base_learning_rate": self.base_learning_rate,
                "position": (self.epochs_done, self._batch, self._n_batches)}

    def load_state(self, state):
        """Restore a :meth:`state`, in place (the buffers keep their identity)."""
        buffers = self._buffers()
        if len(state["buffers"]) != len(buffers):
            raise ValueError(f"state holds {len(state['buffers'])} buffers, the optimizer "
                             f"{len(buffers)}")
        for dst, src in zip(buffers, state["buffers"]):
            dst[...] = src
        self.t, self.learning_rate = state["t"], state["learning_rate"]
        self.base_learning_rate = state["base_learning_rate"]
        self.epochs_done, self._batch, self._n_batches = state["position"]

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

    def _schedule_step(self):
        """Set the rate of the coming update (the cosine moves at every update)."""
        if self.lr_schedule == "cosine":
            position = self.epochs_done + self._batch / self._n_batches
            self._set_base_rate(cosine_learning_rate(
                self.learning_rate_init, position, self.n_epochs))
        self._batch += 1

    def begin_epoch(self, n_minibatches):
        """Hook called before each epoch with its number of minibatches (updates).

        Parameters
        ----------
        n_minibatches : int
            The cosine schedule spreads one epoch of its cycle over them.
        """
        self._batch, self._n_batches = 0, max(int(n_minibatches), 1)

    def iteration_ends(self, time_step):
        """Hook called at the end of each epoch (scikit-learn's name).

        Parameters
        ----------
        time_step : int
            Training samples seen so far (drives the 'invscaling' schedule).
        """
        self.epochs_done += 1
        self._batch = 0
        if self.lr_schedule == "invscaling":
            self._set_base_rate(
                self.learning_rate_init / (time_step + 1) ** self.power_t)

    @property
    def lowers_rate_on_plateau(self):
        """Whether :meth:`trigger_stopping` would divide the rate (and not stop)."""
        return (self.lr_schedule == "adaptive"
                and self.base_learning_rate > _ADAPTIVE_MIN_RATE)

    def trigger_stopping(self, msg, verbose):
        """Whether training should stop when it has stalled (scikit-learn's rule).

        Returns
        -------
        bool
            True (stop); the 'adaptive' schedule divides the learning rate by 5 and
            returns False instead while it is above 1e-6.
        """
        if self.lr_schedule != "adaptive":
            if verbose:
                print(msg + " Stopping.")
            return True
        if not self.lowers_rate_on_plateau:
            if verbose:
                print(msg + " Learning rate too small. Stopping.")
            return True
        self._set_base_rate(self.base_learning_rate / 5.0)
        if verbose:
            print(msg + " Setting learning rate to %f" % self.base_learning_rate)
        return False


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
    lr_schedule : {'constant', 'invscaling', 'adaptive', 'cosine'}, default='constant'
        See :class:`_BaseOptimizer` ('invscaling' and 'adaptive' are scikit-learn's).
    power_t : float, default=0.5
    n_epochs : int or None, default=None
        The cosine's cycle, in epochs.

    Attributes
    ----------
    velocities : list of ndarray
        One per parameter, same shape and dtype.
    t : int
        Number of :meth:`update` calls.
    learning_rate : float
        The rate of the next step (the schedule's, :attr:`base_learning_rate`).
    """

    def __init__(self, params, learning_rate=0.1, momentum=0.9, nesterov=True,
                 lr_schedule="constant", power_t=0.5, n_epochs=None):
        super().__init__(params, learning_rate, lr_schedule, power_t, n_epochs)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.velocities = [np.zeros_like(p) for p in self.params]

    def _buffers(self):
        return self.velocities

    def _set_base_rate(self, rate):
        self.base_learning_rate = self.learning_rate = rate

    def update(self, grads, l2=None, n_threads=1):
        grads = self._check_grads(grads)
        self._schedule_step()
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
    lr_schedule : {'constant', 'invscaling', 'adaptive', 'cosine'}, default='constant'
        See :class:`_BaseOptimizer`: the schedule sets ``lr`` above
        (:attr:`base_learning_rate`), the bias correction applies on top of it.
    power_t : float, default=0.5
    n_epochs : int or None, default=None
        The cosine's cycle, in epochs.

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
                 epsilon=1e-8, lr_schedule="constant", power_t=0.5, n_epochs=None):
        super().__init__(params, learning_rate, lr_schedule, power_t, n_epochs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.ms = [np.zeros_like(p) for p in self.params]
        self.vs = [np.zeros_like(p) for p in self.params]

    def _buffers(self):
        return self.ms + self.vs

    def update(self, grads, l2=None, n_threads=1):
        grads = self._check_grads(grads)
        self._schedule_step()
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        self.learning_rate = (
            self.base_learning_rate * math.sqrt(1 - b2**self.t) / (1 - b1**self.t)
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
