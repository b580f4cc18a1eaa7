"""Helpers shared by the estimator tests (the fixtures are in conftest.py)."""

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning

#: Small and quick: most tests train a slim LeNet for a few epochs. The kernel size
#: is LeNet-5's, explicit: the classifier's 'auto' gives images 3x3 kernels on short
#: budgets (tested in test_learning_options.py).
SMALL = dict(filters=(4, 8), kernel_size=5, hidden_layer_sizes=(16,), max_iter=5,
             random_state=0)


def quiet_fit(est, *args, **kwargs):
    """``est.fit(*args, **kwargs)`` without the ConvergenceWarning of short runs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return est.fit(*args, **kwargs)


def ramps(n=120, length=20, channels=1, seed=0):
    """Two classes of 1-D signals: a rising ramp or a falling ramp, plus noise.

    Returns ``X`` of shape ``(n, channels, length)`` and ``y`` in {0, 1}.
    """
    rng = np.random.RandomState(seed)
    y = rng.randint(0, 2, n)
    ramp = np.linspace(-1, 1, length)
    X = np.where(y[:, None, None] == 1, ramp, -ramp) * np.ones((n, channels, length))
    X = X + 0.3 * rng.randn(n, channels, length)
    return X, y


def digit_labels(y):
    """The multilabel targets of the digits tests: (odd, > 4, zero), as ints."""
    y = np.asarray(y)
    return np.column_stack([y % 2 == 1, y > 4, y == 0]).astype(int)


#: Every learning option of the estimators switched on (batch normalisation, both
#: dropouts, a global-pooling head, the cosine schedule): what the option tests, the
#: estimator checks and the persistence tests train with.
LEARNING_OPTIONS = dict(batch_norm=True, dropout=0.2, spatial_dropout=0.1, head="avg",
                        learning_rate="cosine")


def layer_kinds(est):
    """The kinds of the fitted network's layers, in order (``Network.describe``)."""
    from skconv._estimators.inspection import network_of

    return [d["kind"] for d in network_of(est).describe()]
