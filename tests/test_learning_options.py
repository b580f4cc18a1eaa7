"""The estimators' learning options: batch normalisation, dropout, the global-pooling
head, the learning-rate schedules and the update budget for small data.

Each option must build what it says into the network and train; the randomness it adds
(dropout masks) must come from ``random_state`` alone, bit for bit the same for any
``n_jobs``; the schedules must give the documented rates at every update (read from the
optimizer, which the tests wrap); ``min_updates`` must give the documented number of
epochs. The estimator checks on estimators with these options are in
test_estimator_checks.py, persistence in test_persistence.py, ONNX in test_onnx.py.
"""

import copy
import math
import warnings

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier
from sklearn.utils._param_validation import InvalidParameterError

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer
from skconv._estimators import base as estimator_base
from skconv._estimators.base import (AUTO_IMAGE_SHORT_OPTIONS, AUTO_OTHER_OPTIONS,
                                     AUTO_SIGNAL_OPTIONS)
from skconv._estimators.inspection import network_of
from skconv._nn.layers import Dense, Dropout, Flatten, RandomShift
from skconv._nn.network import Network
from skconv._nn.optimizers import SGD, Adam

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import (LEARNING_OPTIONS, SMALL, layer_kinds, quiet_fit,
                                     ramps)
except ImportError:
    from _estimator_helpers import (LEARNING_OPTIONS, SMALL, layer_kinds, quiet_fit,
                                    ramps)

ESTIMATORS = [ConvNetClassifier, ConvNetRegressor, ConvNetTransformer]
#: Quick to fit and quick to learn the ramps: no stopping rule, a larger step.
LEARN = {**SMALL, "max_iter": 30, "learning_rate_init": 0.01,
         "n_iter_no_change": np.inf}


def _targets(cls, y):
    return 2.0 * y - 1.0 if cls is ConvNetRegressor else y


def _make(cls, **params):
    """``cls(**params)`` with the learning options off unless given: on these
    signals the classifier's 'auto' would turn them on (tested on its own below).
    A batch norm stays where 'auto' puts it on signals, before the pooling."""
    options = {name: value for name, value in AUTO_OTHER_OPTIONS.items()
               if name != "batch_norm_position"}
    return cls(**{**options, "input_scaling": None, **params})


def _fit(cls, X, y, **params):
    return quiet_fit(_make(cls, **params), X, _targets(cls, y))


def _state(est):
    """Every trained array: parameters and the batch norms' running statistics."""
    return network_of(est).get_state()


@pytest.fixture
def rates(monkeypatch):
    """The schedule's rate of every update, in order, of both optimizers."""
    seen = []
    for cls in (SGD, Adam):
        def update(self, grads, l2=None, n_threads=1, _original=cls.update):
            _original(self, grads, l2, n_threads)
            seen.append(self.base_learning_rate)
        monkeypatch.setattr(cls, "update", update)
    return seen


def _cosine(lr0, k, n_updates):
    return lr0 * (1 + math.cos(math.pi * k / n_updates)) / 2


# ------------------------------------------------------------------------------------
# The network each option builds
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ESTIMATORS)
def test_defaults_build_lenet_without_the_options(cls):
    # Flat X of 16 columns (a signal that is not declared as one): LeNet-5.
    X, y = ramps(n=40, length=16)
    est = quiet_fit(cls(**{**SMALL, "max_iter": 1}), X.reshape(40, -1), _targets(cls, y))
    kinds = layer_kinds(est)
    assert "batch_norm" not in kinds and "random_shift" not in kinds
    assert "global_pool" not in kinds and kinds.count("flatten") == 1
    # Only the regressor's default has dropout: one after each hidden dense layer.
    expected = len(SMALL["hidden_layer_sizes"]) if cls is ConvNetRegressor else 0
    assert kinds.count("dropout") == expected


@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("head", ["avg", "max", "min"])
def test_options_build_their_layers(cls, head):
    X, y = ramps(n=40, length=16)
    est = _fit(cls, X, y, **{**SMALL, "max_iter": 1}, batch_norm=True, dropout=0.25,
               spatial_dropout=0.125, head=head)
    described = network_of(est).describe()
    kinds = [d["kind"] for d in described]
    n_conv, n_hidden = len(SMALL["filters"]), len(SMALL["hidden_layer_sizes"])
    # A batch norm after every conv and hidden dense layer, before its activation.
    assert kinds.count("batch_norm") == n_conv + n_hidden
    for i, kind in enumerate(kinds):
        if kind in ("conv", "dense") and i < len(kinds) - 1:
            assert kinds[i + 1] == "batch_norm"
    dropouts = [d for d in described if d["kind"] == "dropout"]
    assert sorted((d["spatial"], d["rate"]) for d in dropouts) == (
        [(False, 0.25)] * n_hidden + [(True, 0.125)] * n_conv)
    pools = [d for d in described if d["kind"] == "global_pool"]
    assert [d["mode"] for d in pools] == [head] and "flatten" not in kinds
    # The dense part sees one value per channel of the last conv block.
    assert est.coefs_[0].shape[0] == SMALL["filters"][-1]
    if cls is ConvNetTransformer:
        assert est.set_params(feature_layer="conv").transform(X).shape == (
            len(X), SMALL["filters"][-1])


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_batch_norm_conv_normalises_the_conv_layers_only(cls):
    X, y = ramps(n=40, length=16)
    kinds = layer_kinds(_fit(cls, X, y, **{**SMALL, "max_iter": 1}, batch_norm="conv"))
    assert kinds.count("batch_norm") == len(SMALL["filters"])
    assert [kinds[i - 1] for i, kind in enumerate(kinds) if kind == "batch_norm"] == (
        ["conv"] * len(SMALL["filters"]))
    assert "batch_norm" not in kinds[kinds.index("dense"):]


def test_global_pooling_head_takes_the_channel_statistic():
    # The dense part's input is the pooled last conv block, channel by channel.
    X, y = ramps(n=30, length=16)
    for head, reduce in (("avg", np.mean), ("max", np.max), ("min", np.min)):
        est = _fit(ConvNetTransformer, X, y, **{**SMALL, "max_iter": 1}, head=head,
                   feature_layer="conv")
        blocks = network_of(est).block_outputs(X.astype(np.float64))
        np.testing.assert_allclose(est.transform(X), reduce(blocks[-1][1], axis=2),
                                   rtol=1e-12)


# ------------------------------------------------------------------------------------
# Each option trains
# ------------------------------------------------------------------------------------
OPTIONS = {
    "batch_norm": dict(batch_norm=True),
    "batch_norm_conv": dict(batch_norm="conv"),
    "dropout": dict(dropout=0.3),
    "spatial_dropout": dict(spatial_dropout=0.3),
    "head_avg": dict(head="avg"),
    "head_max": dict(head="max"),
    "head_min": dict(head="min"),
    "cosine_adam": dict(learning_rate="cosine"),
    "cosine_sgd": dict(learning_rate="cosine", solver="sgd", learning_rate_init=0.05),
    "invscaling_adam": dict(learning_rate="invscaling", learning_rate_init=0.05),
    "adaptive_sgd": dict(learning_rate="adaptive", solver="sgd",
                         learning_rate_init=0.05),
    "all": LEARNING_OPTIONS,
}


@pytest.mark.parametrize("cls", [ConvNetClassifier, ConvNetRegressor])
@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_each_option_trains(cls, option):
    X, y = ramps(n=80, length=16)
    est = _fit(cls, X, y, **{**LEARN, **OPTIONS[option]})
    assert est.n_iter_ == LEARN["max_iter"]
    if cls is ConvNetClassifier:
        assert est.loss_curve_[-1] < 0.2 * est.loss_curve_[0]
        assert est.score(X, y) >= 0.95
    else:
        assert est.loss_curve_[-1] < 0.3 * est.loss_curve_[0]
        assert est.score(X, _targets(cls, y)) > 0.7


def test_batch_norm_learns_raw_unscaled_digits(digits_small):
    # What batch normalisation is for: inputs far from [0, 1] (raw pixels 0-16), on
    # which the same short training gets further with it.
    X, y = digits_small
    params = dict(filters=(4, 8), hidden_layer_sizes=(32,), max_iter=15, random_state=0)
    plain = quiet_fit(_make(ConvNetClassifier, **params), X * 16, y)
    normed = quiet_fit(_make(ConvNetClassifier, batch_norm=True, **params), X * 16, y)
    assert normed.score(X * 16, y) > plain.score(X * 16, y) + 0.1
    assert normed.loss_curve_[-1] < plain.loss_curve_[-1]


# ------------------------------------------------------------------------------------
# Input scaling
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_max_abs_input_scaling_is_the_users_own_division(cls, dtype, digits):
    # Raw 0-16 digits with 'max_abs' train, predict and transform bit for bit as
    # X / 16 without it (an exact division); input_scale_ says what it divided by.
    # No dropout: its masks are keyed by the rows as given, which differ.
    X, y = digits
    X, y = (X[:300] * 16).astype(dtype), _targets(cls, y[:300])
    params = dict(SMALL, max_iter=2, dropout=0.0)
    scaled = quiet_fit(cls(input_scaling="max_abs", **params), X, y)
    plain = quiet_fit(cls(input_scaling=None, **params), X / dtype(16), y)
    assert scaled.input_scale_ == 16.0 and plain.input_scale_ == 1.0
    assert layer_kinds(scaled)[0] == "input_scale" and "input_scale" not in (
        layer_kinds(plain))
    for a, b in zip(_state(scaled), _state(plain)):
        assert_array_equal(a, b)
    method = "transform" if cls is ConvNetTransformer else "predict"
    assert_array_equal(getattr(scaled, method)(X), getattr(plain, method)(X / 16))


def test_input_scale_comes_from_the_first_fit_and_rows_of_positive_weight(digits):
    X, y = digits
    X, y = X[:200] * 16, y[:200]
    params = dict(SMALL, max_iter=1, input_scaling="max_abs")
    # A row of weight 0 trains as its absence: its values do not count.
    loud = np.vstack([X, np.full((1, X.shape[1]), -1000.0)])
    weights = np.r_[np.ones(len(X)), 0.0]
    est = quiet_fit(ConvNetClassifier(**params), loud, np.r_[y, y[0]],
                    sample_weight=weights)
    assert est.input_scale_ == 16.0
    assert quiet_fit(ConvNetClassifier(**params), loud, np.r_[y, y[0]]
                     ).input_scale_ == 1000.0
    # partial_fit and warm starts keep the first fit's divisor.
    est = ConvNetClassifier(**params)
    est.partial_fit(X[:100] / 2, y[:100], classes=np.unique(y))
    est.partial_fit(X[100:], y[100:])
    assert est.input_scale_ == 8.0
    est = quiet_fit(ConvNetClassifier(**params, warm_start=True), X / 4, y)
    assert quiet_fit(est, X, y).input_scale_ == 4.0
    # All zeros: nothing to divide by.
    assert quiet_fit(ConvNetClassifier(**params), np.zeros_like(X), y
                     ).input_scale_ == 1.0


def test_auto_input_scaling_follows_the_kind_of_input():
    # 'auto' (the classifier's default): 'max_abs' for non-negative images and flat
    # X, None for declared signals and for data with negative values (a row of
    # weight 0 does not count).
    X, y = ramps(n=40, length=16)
    X = np.abs(X) * 50
    images = np.repeat(X, 16, axis=1).reshape(40, 1, 16, 16)
    params = dict(SMALL, max_iter=1)
    for data, expected in [(images, "max_abs"), (X.reshape(40, -1), "max_abs"),
                           (X, None), (images - 1, None),
                           (X.reshape(40, -1) - 1, None)]:
        est = quiet_fit(ConvNetClassifier(**params), data, y)
        assert est.auto_options_["input_scaling"] == expected
        assert est.input_scale_ == (np.abs(data).max() if expected else 1.0)
        assert ("input_scale" in layer_kinds(est)) == (expected is not None)
    negative_row = images.copy()
    negative_row[0] = -1.0
    weights = np.r_[0.0, np.ones(39)]
    est = quiet_fit(ConvNetClassifier(**params), negative_row, y, sample_weight=weights)
    assert est.auto_options_["input_scaling"] == "max_abs"
    assert est.input_scale_ == np.abs(images[1:]).max()


# ------------------------------------------------------------------------------------
# Randomness: from random_state only, whatever n_jobs is
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ESTIMATORS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("batch_norm", [True, "conv"])
def test_batch_norm_and_dropout_do_not_depend_on_n_jobs(cls, dtype, batch_norm):
    X, y = ramps(n=70, length=24, channels=2)
    X = X.astype(dtype)
    params = {**SMALL, "max_iter": 4, "batch_size": 16, **LEARNING_OPTIONS,
              "batch_norm": batch_norm}
    one = _fit(cls, X, y, n_jobs=1, **params)
    two = _fit(cls, X, y, n_jobs=2, **params)
    again = _fit(cls, X, y, n_jobs=2, **params)
    assert one.coefs_[0].dtype == dtype
    for a, b, c in zip(_state(one), _state(two), _state(again)):
        assert_array_equal(a, b)
        assert_array_equal(a, c)
    assert one.loss_curve_ == two.loss_curve_ == again.loss_curve_
    method = {ConvNetClassifier: "predict_proba", ConvNetRegressor: "predict",
              ConvNetTransformer: "transform"}[cls]
    assert_array_equal(getattr(one, method)(X), getattr(two, method)(X))
    # The running statistics were trained (not left at 0 and 1).
    stats = [d for d in network_of(one).describe() if d["kind"] == "batch_norm"]
    assert all(np.abs(d["running_mean"]).max() > 1e-3 for d in stats)


def test_dropout_masks_come_from_random_state():
    X, y = ramps(n=60, length=16)
    params = {**SMALL, "max_iter": 3}
    plain = _fit(ConvNetClassifier, X, y, **params)
    dropped = _fit(ConvNetClassifier, X, y, dropout=0.5, **params)
    same = _fit(ConvNetClassifier, X, y, dropout=0.5, **params)
    # The same initial weights (dropout draws nothing at initialisation), then masks.
    assert not np.array_equal(plain.coefs_[0], dropped.coefs_[0])
    assert_array_equal(dropped.coefs_[0], same.coefs_[0])
    # Predictions use every unit: deterministic, whatever the masks were.
    assert_array_equal(dropped.predict_proba(X), dropped.predict_proba(X))
    # A new fit of a warm-started model draws its masks from a stream seeded by its
    # new RandomState: one stream for every dropout layer, apart from the shuffles'.
    layers = [layer for layer in network_of(dropped).layers
              if isinstance(layer, Dropout)]
    before = layers[0]._random_state
    dropped.set_params(warm_start=True, random_state=1)
    quiet_fit(dropped, X, y)
    assert layers and all(layer._random_state is layers[0]._random_state
                          for layer in layers)
    assert layers[0]._random_state is not before
    assert layers[0]._random_state is not dropped._random_state
    twin = _fit(ConvNetClassifier, X, y, dropout=0.5, **params)
    twin.set_params(warm_start=True, random_state=1)
    quiet_fit(twin, X, y)
    assert_array_equal(dropped.coefs_[0], twin.coefs_[0])


def test_dropout_masks_are_keyed_by_the_rows_content():
    """Equal input rows get equal masks wherever they sit in the minibatch; the masks
    change from one forward to the next and between different rows."""
    rng = np.random.RandomState(0)
    network = Network([Flatten(), Dense(64), Dropout(0.5)])
    network.initialize((3, 5), np.random.RandomState(1), np.float64)
    network.use_random_state(np.random.RandomState(2))
    x = rng.rand(6, 3, 5)
    x[4] = x[1]
    first = network.forward(x, 1, training=True) != 0
    assert_array_equal(first[4], first[1])
    assert not np.array_equal(first[0], first[1])
    # The same rows reordered: each keeps its mask (the same forward's draw).
    network.use_random_state(np.random.RandomState(2))
    order = rng.permutation(6)
    assert_array_equal(network.forward(x[order], 1, training=True) != 0, first[order])
    # The next forward draws other masks; about half the units are dropped.
    second = network.forward(x, 1, training=True) != 0
    assert not np.array_equal(first, second)
    assert 0.35 < first.mean() < 0.65


def test_warm_start_with_dropout_is_reproducible():
    X, y = ramps(n=60, length=16)
    first = _fit(ConvNetClassifier, X, y, **{**SMALL, "max_iter": 2}, dropout=0.5,
                 spatial_dropout=0.3, warm_start=True)
    twin = copy.deepcopy(first)
    for est in (first, twin):
        quiet_fit(est, X, y)
    assert_array_equal(first.coefs_[0], twin.coefs_[0])
    assert first.loss_curve_ == twin.loss_curve_


# ------------------------------------------------------------------------------------
# Learning-rate schedules
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_cosine_rate_follows_the_formula_at_every_update(rates, solver):
    X, y = ramps(n=100, length=16)  # batch 32: 4 minibatches per epoch
    lr0, n_epochs = 0.02, 6
    est = _fit(ConvNetClassifier, X, y, **{**SMALL, "max_iter": n_epochs},
               batch_size=32, solver=solver, learning_rate="cosine",
               learning_rate_init=lr0, n_iter_no_change=np.inf)
    assert est.n_iter_ == n_epochs and len(rates) == 4 * n_epochs
    # The first update of chosen epochs, and every update.
    for epoch in (0, 1, 3, 5):
        assert rates[4 * epoch] == pytest.approx(
            lr0 * (1 + math.cos(math.pi * epoch / n_epochs)) / 2, rel=1e-12)
    expected = [_cosine(lr0, k, 4 * n_epochs) for k in range(4 * n_epochs)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert rates[0] == lr0 and rates[-1] < 0.01 * lr0


def test_cosine_cycle_counts_the_epochs_min_updates_adds(rates):
    X, y = ramps(n=100, length=16)  # 4 minibatches per epoch
    est = _fit(ConvNetClassifier, X, y, **{**SMALL, "max_iter": 2}, batch_size=32,
               learning_rate="cosine", min_updates=30, n_iter_no_change=np.inf)
    assert est.n_iter_ == 8  # ceil(30 / 4)
    np.testing.assert_allclose(rates, [_cosine(1e-3, k, 32) for k in range(32)],
                               rtol=1e-12)


def test_cosine_with_early_stopping_uses_the_training_part(rates):
    # 100 samples, 20 held out: 80 train in 3 minibatches of 32.
    X, y = ramps(n=100, length=16)
    est = _fit(ConvNetClassifier, X, y, **{**SMALL, "max_iter": 5}, batch_size=32,
               learning_rate="cosine", early_stopping=True, validation_fraction=0.2,
               n_iter_no_change=np.inf)
    assert est.n_iter_ == 5 and len(rates) == 15
    np.testing.assert_allclose(rates, [_cosine(1e-3, k, 15) for k in range(15)],
                               rtol=1e-12)


def test_cosine_across_partial_fit_calls_and_warm_starts(rates):
    X, y = ramps(n=40, length=16)  # batch 20: 2 minibatches per call
    params = dict(**{**SMALL, "max_iter": 3}, batch_size=20, learning_rate="cosine",
                  learning_rate_init=0.01)
    est = _make(ConvNetClassifier, **params)
    for _ in range(7):
        est.partial_fit(X, y, classes=[0, 1])
    # Each call is an epoch of a 3-epoch cycle; the fourth starts a new cycle.
    expected = [_cosine(0.01, k % 6, 6) for k in range(14)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)
    assert est.n_iter_ == 7
    # A (warm-started) fit starts its own schedule with a fresh optimizer.
    del rates[:]
    quiet_fit(est.set_params(warm_start=True, n_iter_no_change=np.inf), X, y)
    np.testing.assert_allclose(rates, [_cosine(0.01, k, 6) for k in range(6)],
                               rtol=1e-12)


def test_invscaling_scales_adams_step_by_the_samples_seen(rates):
    X, y = ramps(n=40, length=16)
    _fit(ConvNetClassifier, X, y, **{**SMALL, "max_iter": 4}, batch_size=20,
         learning_rate="invscaling", learning_rate_init=0.01, power_t=0.25,
         n_iter_no_change=np.inf)
    # Epoch e runs at 0.01 / (40 e + 1) ** 0.25 (scikit-learn's rule, per epoch).
    expected = [0.01 / (40 * e + 1) ** 0.25 for e in range(4) for _ in range(2)]
    np.testing.assert_allclose(rates, expected, rtol=1e-12)


@pytest.mark.parametrize("early_stopping", [False, True])
def test_adaptive_follows_scikit_learns_rule(rates, early_stopping):
    # tol=10: no epoch improves, so the rate is divided by 5 every third epoch
    # (n_iter_no_change=2) until it is at most 1e-6, then training stops; with
    # early stopping the validation score is what does not improve.
    X, y = ramps(n=60, length=16)
    params = dict(learning_rate="adaptive", learning_rate_init=1e-3, tol=10,
                  n_iter_no_change=2, max_iter=100, early_stopping=early_stopping,
                  random_state=0)
    flat = X.reshape(60, -1)
    mlp = MLPClassifier(solver="sgd", batch_size="auto", **params).fit(flat, y)
    for solver in ("sgd", "adam"):
        del rates[:]
        est = quiet_fit(_make(ConvNetClassifier, solver=solver, filters=(2,),
                                          hidden_layer_sizes=(4,), **params), X, y)
        assert est.n_iter_ == mlp.n_iter_ == 19
        # One minibatch per epoch: the rate of each epoch.
        assert rates == pytest.approx(
            [1e-3 / 5 ** ((epoch - 1) // 3) if epoch else 1e-3 for epoch in range(19)])
    # scikit-learn's Adam ignores learning_rate (and stops at the first stall).
    adam = MLPClassifier(solver="adam", batch_size="auto", **params).fit(flat, y)
    assert adam.n_iter_ == 4


# ------------------------------------------------------------------------------------
# The update budget
# ------------------------------------------------------------------------------------
def _budget_fit(n=20, **params):
    X, y = ramps(n=n, length=16)
    est = _make(ConvNetClassifier, **{**SMALL, "batch_size": 8, **params})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        est.fit(X, y)
    messages = [str(w.message) for w in caught if w.category is ConvergenceWarning]
    return est, messages


@pytest.mark.parametrize("max_iter, min_updates, epochs", [
    (5, 0, 5), (5, 100, 34), (50, 100, 50), (5, 15, 5), (5, 16, 6)])
def test_min_updates_runs_ceil_of_updates_per_minibatches(max_iter, min_updates,
                                                          epochs):
    # 20 samples in minibatches of 8: 3 per epoch.
    est, messages = _budget_fit(max_iter=max_iter, min_updates=min_updates,
                                n_iter_no_change=np.inf)
    assert est.n_iter_ == len(est.loss_curve_) == epochs
    assert est.t_ == 20 * epochs
    assert len(messages) == 1 and f"Maximum iterations ({epochs}" in messages[0]
    assert (f"min_updates={min_updates} takes at 3 minibatches" in messages[0]) == (
        epochs > max_iter)


def test_min_updates_counts_the_minibatches_of_the_training_part():
    # 20 samples, 5 held out by early stopping: 15 train in 2 minibatches of 8.
    est, _ = _budget_fit(max_iter=5, min_updates=100, early_stopping=True,
                         validation_fraction=0.25, n_iter_no_change=np.inf)
    assert est.n_iter_ == len(est.validation_scores_) == 50


def test_stopping_rule_waits_for_min_updates():
    # tol=10: the loss never improves enough, so the rule would stop at epoch 4.
    stall = dict(max_iter=100, tol=10, n_iter_no_change=2)
    est, messages = _budget_fit(**stall)
    assert est.n_iter_ == 4 and not messages
    est, messages = _budget_fit(**stall, min_updates=100)
    assert est.n_iter_ == 34 and not messages  # stopped by the rule, at the budget


def test_adaptive_lowers_the_rate_before_min_updates(rates):
    est, messages = _budget_fit(max_iter=100, tol=10, n_iter_no_change=2,
                                learning_rate="adaptive", min_updates=100)
    # Divided five times (epochs 4, 7, ..., 16), down to 3.2e-7; then it would stop at
    # epoch 19, but waits for the budget's 34 epochs.
    assert est.n_iter_ == 34 and not messages
    assert rates[-1] == pytest.approx(1e-3 / 5 ** 5)
    # 3 minibatches per epoch: the first division is after epoch 4.
    assert rates[4 * 3 - 1] == 1e-3 and rates[4 * 3] == pytest.approx(2e-4)


def test_partial_fit_runs_one_epoch_whatever_min_updates():
    X, y = ramps(n=20, length=16)
    est = _make(ConvNetClassifier, **SMALL, min_updates=1000)
    est.partial_fit(X, y, classes=[0, 1])
    assert est.n_iter_ == 1


# ------------------------------------------------------------------------------------
# Parameters: validation and grid search
# ------------------------------------------------------------------------------------
@pytest.mark.parametrize("param, value", [
    ("batch_norm", "yes"), ("batch_norm", "dense"), ("batch_norm", 1),
    ("dropout", 1.0), ("dropout", -0.1),
    ("spatial_dropout", 1.5), ("head", "sum"), ("learning_rate", "step"),
    ("power_t", -1.0), ("min_updates", -1), ("min_updates", 2.5),
    ("input_scaling", "standard"), ("input_scaling", 255),
    ("batch_norm_position", "after"), ("batch_norm_position", True),
    ("learning_rate_init", "fast"), ("learning_rate_init", 0.0)])
def test_invalid_options_are_refused(param, value):
    X, y = ramps(n=20, length=16)
    with pytest.raises(InvalidParameterError, match=param):
        ConvNetClassifier(**{param: value}).fit(X, y)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_options_are_parameters_with_defaults_off(cls):
    # Off, except the regressor's dropout (its measured default) and the classifier's
    # 'auto' (off but for declared signals, see below).
    params = cls().get_params()
    auto = cls is ConvNetClassifier
    assert {name: params[name] for name in (
        "batch_norm", "batch_norm_position", "dropout", "spatial_dropout", "head",
        "augment_shift", "augment_flip", "learning_rate", "learning_rate_init",
        "power_t", "min_updates", "input_scaling")} == dict(
            batch_norm="auto" if auto else False, batch_norm_position="auto",
            learning_rate_init="auto" if auto else 1e-3,
            dropout=0.2 if cls is ConvNetRegressor else 0.0, spatial_dropout=0.0,
            head="auto" if auto else "flatten", augment_shift="auto" if auto else 0.0,
            augment_flip=False, learning_rate="auto" if auto else "constant",
            power_t=0.5, min_updates="auto" if auto else 0,
            input_scaling="auto" if auto else None)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_auto_options_follow_the_declared_kind_of_input(cls, monkeypatch):
    # 'auto' is the signals' recipe for samples declared with one spatial axis (N-d X
    # (n, C, L), or image_shape=(L,)), LeNet-5's for the rest, with wider 3x3 blocks
    # for images on short budgets (as here); the model is then bit for bit the one
    # the resolved values give explicitly, and auto_options_ lists what 'auto' stood
    # for.
    assert AUTO_SIGNAL_OPTIONS == dict(filters=(16, 32, 64), kernel_size=7,
                                       batch_norm=True, batch_norm_position="before_pool",
                                       head="avg", learning_rate="cosine",
                                       learning_rate_init=1e-3, min_updates=2000,
                                       augment_shift=0.1, input_scaling=None)
    assert AUTO_OTHER_OPTIONS == dict(filters=(6, 16), kernel_size=5, batch_norm=False,
                                      batch_norm_position="after_pool", head="flatten",
                                      learning_rate="constant", learning_rate_init=1e-3,
                                      min_updates=0, augment_shift=0.0,
                                      input_scaling="max_abs")
    # Fewer updates than the real 2,000, so that the test runs in a second.
    monkeypatch.setitem(AUTO_SIGNAL_OPTIONS, "min_updates", 30)
    X, y = ramps(n=40, length=16)
    t = _targets(cls, y)
    auto = dict.fromkeys(AUTO_SIGNAL_OPTIONS, "auto")
    # SMALL's own filters would hide what 'auto' gives them.
    small = {name: value for name, value in SMALL.items() if name not in auto}
    small.update(max_iter=2, random_state=0)
    # The ramps have negative values: 'max_abs' is for non-negative X (tested below).
    other = {**AUTO_OTHER_OPTIONS, "input_scaling": None}
    assert AUTO_IMAGE_SHORT_OPTIONS == dict(filters=(16, 32), kernel_size=3)
    images = {**other, **AUTO_IMAGE_SHORT_OPTIONS}
    cases = [(X, AUTO_SIGNAL_OPTIONS, {}),
             (X.reshape(40, -1), AUTO_SIGNAL_OPTIONS, {"image_shape": (16,)}),
             (X.reshape(40, -1), images, {}),  # 16 features: read as 4 x 4
             (X.reshape(40, -1)[:, :15], other, {}),  # tabular
             (np.repeat(X, 16, axis=1).reshape(40, 1, 16, 16), images, {}),
             (np.repeat(X, 4, axis=1).reshape(40, 1, 4, 4, 4), other, {})]
    for data, expected, extra in cases:
        est = quiet_fit(cls(**small, **auto, **extra), data, t)
        assert est.auto_options_ == expected
        explicit = quiet_fit(cls(**small, **expected, **extra), data, t)
        assert explicit.auto_options_ == {}
        assert est.n_iter_ == explicit.n_iter_
        for a, b in zip(_state(est), _state(explicit)):
            assert_array_equal(a, b)
    # Only the options left at 'auto' are resolved.
    est = quiet_fit(cls(**small, **{**auto, "head": "max"}), X, t)
    assert "head" not in est.auto_options_ and layer_kinds(est).count("global_pool") == 1


def test_auto_learning_rate_of_images_follows_the_planned_updates(monkeypatch, rates):
    # Images' learning_rate='auto' is 'cosine' from AUTO_COSINE_MIN_UPDATES planned
    # updates on (max_iter or min_updates' epochs, times the minibatches of the
    # training rows, early stopping's validation part left out), 'constant' below;
    # the fit is then the one the resolved value gives explicitly.
    assert estimator_base.AUTO_COSINE_MIN_UPDATES == 4000
    monkeypatch.setattr(estimator_base, "AUTO_COSINE_MIN_UPDATES", 20)
    X, y = ramps(n=40, length=16)
    images = np.repeat(X, 16, axis=1).reshape(40, 1, 16, 16)
    params = {**SMALL, "batch_size": 8, "n_iter_no_change": np.inf}
    cases = [  # 5 minibatches an epoch, 4 with 20% of 40 rows held out
        ({"max_iter": 4}, "cosine", 20),
        ({"max_iter": 3}, "constant", 15),
        ({"max_iter": 3, "min_updates": 20}, "cosine", 20),
        ({"max_iter": 4, "early_stopping": True, "validation_fraction": 0.2},
         "constant", 16),
        ({"max_iter": 5, "early_stopping": True, "validation_fraction": 0.2},
         "cosine", 20),
    ]
    for extra, expected, n_updates in cases:
        del rates[:]
        est = quiet_fit(ConvNetClassifier(**{**params, **extra}), images, y)
        assert est.auto_options_["learning_rate"] == expected
        assert len(rates) == n_updates  # n_iter_no_change=inf: no early stop
        lr0 = est.auto_options_["learning_rate_init"]  # 1e-3: 20 < 4,000 updates
        expected_rates = ([_cosine(lr0, k, n_updates) for k in range(len(rates))]
                          if expected == "cosine" else [lr0] * len(rates))
        np.testing.assert_allclose(rates, expected_rates, rtol=1e-12)
        explicit = quiet_fit(
            ConvNetClassifier(**{**params, **extra, "learning_rate": expected}),
            images, y)
        for a, b in zip(_state(est), _state(explicit)):
            assert_array_equal(a, b)
    # Signals keep the cosine whatever the budget.
    est = quiet_fit(ConvNetClassifier(**{**params, "max_iter": 1, "min_updates": 0}),
                    X, y)
    assert est.auto_options_["learning_rate"] == "cosine"


def volumes_of(images):
    """Volumes (n, 1, 4, H, W) made of each image repeated four times."""
    return np.repeat(images, 4, axis=1).reshape(len(images), 1, 4, *images.shape[2:])


def test_auto_long_budget_options_of_images_follow_the_planned_updates(monkeypatch):
    # Images (two spatial axes, N-d or flat square X) get batch norm after the
    # pooling, learning_rate_init=5e-3 and one-pixel shifts from
    # AUTO_IMAGE_LONG_MIN_UPDATES planned updates on, LeNet-5's options below; signals
    # and volumes never. The fit is the one the resolved values give explicitly.
    assert estimator_base.AUTO_IMAGE_LONG_MIN_UPDATES == 4000
    assert estimator_base.AUTO_IMAGE_LONG_OPTIONS == dict(
        batch_norm=True, learning_rate_init=5e-3, augment_shift=0.04)
    monkeypatch.setattr(estimator_base, "AUTO_IMAGE_LONG_MIN_UPDATES", 20)
    X, y = ramps(n=40, length=16)
    images = np.repeat(X, 16, axis=1).reshape(40, 1, 16, 16) + 1.0  # non-negative
    params = {**SMALL, "batch_size": 8, "n_iter_no_change": np.inf}
    long_options = dict(batch_norm=True, batch_norm_position="after_pool",
                        learning_rate_init=5e-3, augment_shift=0.04)
    cases = [(images, {"max_iter": 4}, True),  # 5 minibatches an epoch: 20 updates
             (images.reshape(40, -1), {"max_iter": 4}, True),  # read as 16 x 16
             (images, {"max_iter": 3}, False),
             (images, {"max_iter": 3, "min_updates": 20}, True)]
    for data, extra, long_budget in cases:
        est = quiet_fit(ConvNetClassifier(**{**params, **extra}), data, y)
        for name, value in long_options.items():
            expected = value if long_budget else AUTO_OTHER_OPTIONS[name]
            assert est.auto_options_[name] == expected, name
        n_norms = len(SMALL["filters"]) + len(SMALL["hidden_layer_sizes"])
        assert layer_kinds(est).count("batch_norm") == (n_norms if long_budget else 0)
        assert any(isinstance(layer, RandomShift)
                   for layer in network_of(est).layers) == long_budget
        explicit = quiet_fit(ConvNetClassifier(**{**params, **extra,
                                                  **est.auto_options_}), data, y)
        assert explicit.auto_options_ == {}
        for a, b in zip(_state(est), _state(explicit)):
            assert_array_equal(a, b)
    # The conv blocks left at 'auto': LeNet-5's on long budgets, two wider blocks of
    # 3x3 kernels (AUTO_IMAGE_SHORT_OPTIONS) on short ones; volumes keep LeNet-5's.
    blocks = dict.fromkeys(("filters", "kernel_size"), "auto")
    for data, extra, (filters, size) in [(images, {"max_iter": 4}, ((6, 16), 5)),
                                         (images, {"max_iter": 3}, ((16, 32), 3)),
                                         (volumes_of(images), {"max_iter": 3},
                                          ((6, 16), 5))]:
        est = quiet_fit(ConvNetClassifier(**{**params, **extra, **blocks}), data, y)
        assert (est.auto_options_["filters"], est.auto_options_["kernel_size"]) == (
            filters, size)
        kernel = (size,) * (data.ndim - 2)
        assert [w.shape for w in est.conv_weights_] == [
            (filters[0], 1, *kernel), (filters[1], filters[0], *kernel)]
    # The rate the optimizer starts from is the resolved one.
    est = quiet_fit(ConvNetClassifier(**{**params, "max_iter": 4, "solver": "sgd"}),
                    images, y)
    assert est._optimizer.learning_rate_init == 5e-3
    # A batch norm asked for on images goes after the pooling ('auto'), on short
    # budgets too, unless placed explicitly.
    for position, second in (("auto", "pool"), ("before_pool", "batch_norm")):
        est = quiet_fit(ConvNetClassifier(**{**params, "max_iter": 1, "batch_norm": True,
                                             "batch_norm_position": position}), images, y)
        kinds = layer_kinds(est)
        assert kinds[kinds.index("conv") + 1] == second
    # Signals and volumes keep their own options whatever the budget.
    est = quiet_fit(ConvNetClassifier(**{**params, "max_iter": 4, "min_updates": 0}), X, y)
    assert est.auto_options_["batch_norm_position"] == "before_pool"
    assert est.auto_options_["learning_rate_init"] == 1e-3
    est = quiet_fit(ConvNetClassifier(**{**params, "max_iter": 4}), volumes_of(images),
                    y)
    assert est.auto_options_["batch_norm"] is False
    assert est.auto_options_["augment_shift"] == 0.0


def test_grid_search_over_the_options():
    X, y = ramps(n=60, length=16)
    grid = [{"batch_norm": [False, True], "head": ["flatten", "avg"],
             "learning_rate": ["constant", "cosine"], "dropout": [0.0, 0.3]},
            {"spatial_dropout": [0.2], "min_updates": [20],
             "learning_rate": ["invscaling"], "power_t": [0.25]}]
    search = GridSearchCV(_make(ConvNetClassifier, **{**SMALL, "max_iter": 3}), grid,
                          cv=2,
                          error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert len(search.cv_results_["params"]) == 17
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    best, kinds = search.best_params_, layer_kinds(search.best_estimator_)
    assert ("batch_norm" in kinds) == best.get("batch_norm", False)
    assert ("global_pool" in kinds) == (best.get("head", "flatten") == "avg")
    assert ("dropout" in kinds) == (bool(best.get("dropout"))
                                    or bool(best.get("spatial_dropout")))


def test_grid_search_over_where_batch_norm_goes():
    X, y = ramps(n=60, length=16)
    values = [False, True, "conv", "all"]
    search = GridSearchCV(_make(ConvNetClassifier, **{**SMALL, "max_iter": 2}),
                          {"batch_norm": values}, cv=2, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert [p["batch_norm"] for p in search.cv_results_["params"]] == values
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    # True and its spelling 'all' are one model.
    scores = dict(zip(map(str, values), search.cv_results_["mean_test_score"]))
    assert scores["True"] == scores["all"]
    best = search.best_params_["batch_norm"]
    n_norms = layer_kinds(search.best_estimator_).count("batch_norm")
    n_layers = len(SMALL["filters"]) + len(SMALL["hidden_layer_sizes"])
    assert n_norms == {False: 0, True: n_layers, "all": n_layers,
                       "conv": len(SMALL["filters"])}[best]
