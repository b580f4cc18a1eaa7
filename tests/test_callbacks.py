"""scikit-learn's callbacks (``sklearn.callback``, scikit-learn >= 1.9) on the three
estimators: the task tree they report (fit -> epoch -> minibatch), ScoringMonitor,
ProgressBar, the stop signal, partial_fit, propagation through Pipeline and
GridSearchCV, and that callbacks never change the fitted model.

The tests need scikit-learn >= 1.9 and skip without it; the ProgressBar tests also
need rich (the ``callbacks`` extra, marker ``callbacks``). One test checks that the
estimators work without ``sklearn.callback``, as on an older scikit-learn.
"""

import math
import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_array_equal
from sklearn.base import is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import skconv
from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer

try:  # tests/ imported as a package (rootdir conftest / __init__.py) or as a path
    from ._estimator_helpers import SMALL, quiet_fit
except ImportError:
    from _estimator_helpers import SMALL, quiet_fit

HAVE_CALLBACKS = find_spec("sklearn.callback") is not None
needs_callbacks = pytest.mark.skipif(
    not HAVE_CALLBACKS, reason="needs scikit-learn >= 1.9 (sklearn.callback)")
#: ProgressBar draws with rich: the 'callbacks' extra (and its marker).
needs_rich = pytest.mark.skipif(
    not HAVE_CALLBACKS or find_spec("rich") is None,
    reason="needs scikit-learn >= 1.9 and rich (the 'callbacks' extra)")

if HAVE_CALLBACKS:
    from sklearn.callback import ProgressBar, ScoringMonitor

ROOT = Path(__file__).resolve().parents[1]

#: name -> (estimator class, targets from the digits' labels)
CASES = {
    "classifier": (ConvNetClassifier, lambda y: y),
    "regressor": (ConvNetRegressor, lambda y: y / 3.0),
    "transformer": (ConvNetTransformer, lambda y: y),
}
cases = pytest.mark.parametrize("case", sorted(CASES))

#: 100 samples in minibatches of 32: 4 minibatches per epoch, the last one of 4.
N, BATCH = 100, 32
QUICK = {**SMALL, "max_iter": 3, "batch_size": BATCH}


def _data(digits_small, case, n=N):
    X, y = digits_small
    return X[:n], CASES[case][1](y[:n])


def _make(case, **params):
    return CASES[case][0](**{**QUICK, **params})


def _weights(est):
    return est.conv_weights_ + est.conv_biases_ + est.coefs_ + est.intercepts_


# ------------------------------------------------------------------------------------
# Callbacks that record what they are told (the FitCallback protocol)
# ------------------------------------------------------------------------------------
def _depth(context):
    depth = 0
    while context.parent is not None:
        context, depth = context.parent, depth + 1
    return depth


class Recorder:
    """Records every hook call: which task, where in the tree, with what data."""

    def __init__(self):
        self.events = []

    def setup(self, estimator, context):
        self.events.append({"hook": "setup", "estimator": type(estimator).__name__})

    def teardown(self, estimator, context):
        self.events.append({"hook": "teardown", "estimator": type(estimator).__name__})

    def _record(self, hook, context, X, y, metadata, fitted_estimator=None):
        self.events.append({
            "hook": hook, "estimator": context.estimator_name,
            "task": context.task_name, "task_id": context.task_id,
            "depth": _depth(context), "max_subtasks": context.max_subtasks,
            "source": context.source_estimator_name,
            "context": id(context), "parent": id(context.parent),
            "n_rows": None if X is None else len(X),
            "n_targets": None if y is None else y.shape[0],
            "sample_weight": None if metadata is None else metadata["sample_weight"],
            "fitted": fitted_estimator is not None,
        })

    def on_fit_task_begin(self, estimator, context, *, X=None, y=None, metadata=None):
        self._record("begin", context, X, y, metadata)

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        self._record("end", context, X, y, metadata, fitted_estimator)

    def tasks(self, hook="end", estimator=None, **match):
        return [e for e in self.events if e["hook"] == hook
                and (estimator is None or e["estimator"] == estimator)
                and all(e[key] == value for key, value in match.items())]


class AutoRecorder(Recorder):
    """A Recorder that meta-estimators propagate to their sub-estimators."""

    max_propagation_depth = None


class StopAfter(Recorder):
    """Asks to stop at the end of epoch ``n_epochs`` (or of every minibatch)."""

    def __init__(self, n_epochs=None, at_minibatches=False):
        super().__init__()
        self.n_epochs, self.at_minibatches = n_epochs, at_minibatches

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        super().on_fit_task_end(estimator, context, X=X, y=y, metadata=metadata)
        if context.task_name == "minibatch":
            return self.at_minibatches
        return context.task_name == "epoch" and context.task_id + 1 >= self.n_epochs


class KeepModels(Recorder):
    """Keeps the model it is given at the end of each epoch."""

    def __init__(self):
        super().__init__()
        self.models = []

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        super().on_fit_task_end(estimator, context, X=X, y=y, metadata=metadata,
                                fitted_estimator=fitted_estimator)
        if context.task_name == "epoch":
            self.models.append(fitted_estimator)


class Meddler(Recorder):
    """Uses the model it is given as hard as it can: predicts with it and trains it
    one more epoch. None of this may reach the estimator being fitted."""

    def on_fit_task_end(self, estimator, context, *, X=None, y=None, metadata=None,
                        fitted_estimator=None):
        super().on_fit_task_end(estimator, context, X=X, y=y, metadata=metadata,
                                fitted_estimator=fitted_estimator)
        if fitted_estimator is not None:
            out = (fitted_estimator.transform(X) if hasattr(fitted_estimator, "transform")
                   else fitted_estimator.predict(X))
            assert np.isfinite(np.asarray(out, dtype=float)).all()
            # (without the callbacks it shares with the estimator: they would meddle
            # with the fit of the copy in turn)
            fitted_estimator.set_callbacks()
            fitted_estimator.set_params(warm_start=True, max_iter=1, early_stopping=False)
            quiet_fit(fitted_estimator, X, y)


def _assert_nested(events):
    """Every task that begins ends, after all its subtasks and before its parent."""
    stack = []
    for event in events:
        if event["hook"] == "begin":
            stack.append(event["context"])
        elif event["hook"] == "end":
            assert stack and stack.pop() == event["context"], event
    assert stack == []


# ------------------------------------------------------------------------------------
# The task tree
# ------------------------------------------------------------------------------------
@needs_callbacks
@cases
def test_fit_reports_the_root_every_epoch_and_every_minibatch(digits_small, case):
    X, y = _data(digits_small, case)
    recorder = Recorder()
    est = _make(case).set_callbacks(recorder)
    quiet_fit(est, X, y)
    n_minibatches = math.ceil(N / BATCH)
    assert est.n_iter_ == 3 and n_minibatches == 4

    for hook in ("begin", "end"):
        assert Counter(e["depth"] for e in recorder.tasks(hook)) == {
            0: 1, 1: est.n_iter_, 2: est.n_iter_ * n_minibatches}
    [root] = recorder.tasks(depth=0)
    assert (root["task"], root["max_subtasks"], root["n_rows"]) == ("fit", 3, N)
    for epoch in recorder.tasks(depth=1):
        assert epoch["task"] == "epoch" and epoch["max_subtasks"] == n_minibatches
        assert epoch["n_rows"] == epoch["n_targets"] == N and epoch["fitted"]
    assert [e["task_id"] for e in recorder.tasks(depth=1)] == [0, 1, 2]
    for minibatch in recorder.tasks(depth=2):
        # leaves: progress only, no data and no model
        assert minibatch["task"] == "minibatch" and minibatch["max_subtasks"] == 0
        assert minibatch["n_rows"] is None and not minibatch["fitted"]
    _assert_nested(recorder.events)
    assert [e["hook"] for e in recorder.events if e["hook"] in ("setup", "teardown")] \
        == ["setup", "teardown"]
    assert recorder.events[0]["hook"] == "setup"
    assert recorder.events[-1]["hook"] == "teardown"
    # the context of the fit does not outlive it
    assert not hasattr(est, "_callback_fit_ctx")


@needs_callbacks
def test_sample_weight_and_labels_reach_the_callbacks(digits_small):
    X, y = _data(digits_small, "classifier")
    labels = np.array(list("abcdefghij"))[y]  # labels as given, not their encoding
    sample_weight = np.linspace(0.5, 1.5, N)
    seen = {}

    class Scorer(Recorder):
        def on_fit_task_end(self, estimator, context, *, X=None, y=None,
                            metadata=None, fitted_estimator=None):
            if context.task_name == "epoch":
                seen["y"], seen["metadata"] = y, metadata
                seen["score"] = fitted_estimator.score(X, y)

    clf = _make("classifier").set_callbacks(Scorer())
    quiet_fit(clf, X, labels, sample_weight=sample_weight)
    assert_array_equal(seen["y"], labels)
    assert_array_equal(seen["metadata"]["sample_weight"], sample_weight)
    assert seen["score"] == clf.score(X, labels)  # the last epoch is the fitted model


@needs_callbacks
@pytest.mark.parametrize("max_iter, stopped_by", [(20, "early stopping"), (2, "max_iter")])
def test_early_stopping_epochs_are_the_iterations_run(digits_small, max_iter, stopped_by):
    X, y = _data(digits_small, "classifier")
    sample_weight = np.linspace(0.5, 1.5, N)
    recorder = Recorder()
    # tol=1: accuracy can never improve that much, so the count of epochs without
    # improvement grows from the second epoch on and stops fit after the third.
    clf = _make("classifier", max_iter=max_iter, early_stopping=True,
                validation_fraction=0.2, n_iter_no_change=1, tol=1.0)
    quiet_fit(clf.set_callbacks(recorder), X, y, sample_weight=sample_weight)
    assert clf.n_iter_ == (3 if stopped_by == "early stopping" else 2)
    assert len(clf.validation_scores_) == clf.n_iter_

    [root] = recorder.tasks(depth=0)
    assert root["max_subtasks"] == max_iter and root["n_rows"] == N
    assert len(root["sample_weight"]) == N
    epochs = recorder.tasks(depth=1)
    assert len(epochs) == clf.n_iter_
    n_train = N - 20  # the epochs train on what the validation split leaves
    for epoch in epochs:
        assert epoch["n_rows"] == epoch["n_targets"] == len(epoch["sample_weight"]) \
            == n_train
        assert epoch["max_subtasks"] == math.ceil(n_train / BATCH)
    assert len(recorder.tasks(depth=2)) == clf.n_iter_ * math.ceil(n_train / BATCH)


@needs_callbacks
@pytest.mark.parametrize("early_stopping, epochs", [(False, 8), (True, 10)])
def test_min_updates_raises_the_epochs_reported(digits_small, early_stopping, epochs):
    # 30 updates: 8 epochs of 4 minibatches, or of the 80 rows early stopping leaves,
    # 10 epochs of 3; more than max_iter=3, so that is what the fit may run and does.
    X, y = _data(digits_small, "classifier")
    recorder = Recorder()
    clf = _make("classifier", min_updates=30, early_stopping=early_stopping,
                validation_fraction=0.2, n_iter_no_change=np.inf)
    quiet_fit(clf.set_callbacks(recorder), X, y)
    [root] = recorder.tasks(depth=0)
    assert root["max_subtasks"] == clf.n_iter_ == epochs
    assert len(recorder.tasks(depth=1)) == epochs


@needs_callbacks
@pytest.mark.parametrize("case", ["classifier", "regressor"])
def test_partial_fit_reports_one_epoch_per_call(digits_small, case):
    X, y = _data(digits_small, case, n=120)
    recorder = Recorder()
    est = _make(case, batch_size=16).set_callbacks(recorder)
    extra = {"classes": np.arange(10)} if is_classifier(est) else {}
    for rows in np.array_split(np.arange(120), 3):
        est.partial_fit(X[rows], y[rows], **extra)
    assert est.n_iter_ == 3
    roots = recorder.tasks(depth=0)
    assert [(r["task"], r["max_subtasks"], r["n_rows"]) for r in roots] == [("fit", 1, 40)] * 3
    assert len(recorder.tasks(depth=1)) == 3
    assert len(recorder.tasks(depth=2)) == 3 * math.ceil(40 / 16)
    hooks = [e["hook"] for e in recorder.events if e["hook"] in ("setup", "teardown")]
    assert hooks == ["setup", "teardown"] * 3  # one run per call
    _assert_nested(recorder.events)


# ------------------------------------------------------------------------------------
# Stopping
# ------------------------------------------------------------------------------------
@needs_callbacks
@pytest.mark.parametrize("early_stopping", [False, True])
def test_a_callback_stops_training_at_the_end_of_an_epoch(digits_small, early_stopping):
    X, y = _data(digits_small, "classifier")
    stopper = StopAfter(n_epochs=2)
    clf = _make("classifier", max_iter=10, early_stopping=early_stopping,
                n_iter_no_change=50).set_callbacks(stopper)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a stop is no failure
        clf.fit(X, y)
    assert clf.n_iter_ == len(clf.loss_curve_) == 2
    assert len(stopper.tasks(depth=1)) == 2
    assert len(stopper.tasks(depth=0)) == 1  # the fit still ends
    if early_stopping:
        assert clf.best_validation_score_ == max(clf.validation_scores_)


@needs_callbacks
def test_a_stop_at_a_minibatch_end_is_ignored(digits_small):
    X, y = _data(digits_small, "classifier")
    stopper = StopAfter(n_epochs=math.inf, at_minibatches=True)
    clf = _make("classifier").set_callbacks(stopper)
    quiet_fit(clf, X, y)
    assert clf.n_iter_ == 3
    assert len(stopper.tasks(depth=2)) == 3 * math.ceil(N / BATCH)


@needs_callbacks
def test_keyboard_interrupt_ends_every_open_task(digits_small):
    X, y = _data(digits_small, "classifier")

    class Interrupt(Recorder):
        def on_fit_task_begin(self, estimator, context, *, X=None, y=None,
                              metadata=None):
            super().on_fit_task_begin(estimator, context, X=X, y=y, metadata=metadata)
            if context.task_name == "minibatch" and context.parent.task_id == 1 \
                    and context.task_id == 2:
                raise KeyboardInterrupt

    recorder = Interrupt()
    clf = _make("classifier").set_callbacks(recorder)
    with pytest.warns(UserWarning, match="interrupted"):
        clf.fit(X, y)
    assert clf.n_iter_ == 1
    _assert_nested(recorder.events)
    assert len(recorder.tasks(depth=1)) == 2  # the interrupted epoch ends too
    assert recorder.events[-1]["hook"] == "teardown"


# ------------------------------------------------------------------------------------
# The models the callbacks get
# ------------------------------------------------------------------------------------
@needs_callbacks
def test_scoring_monitor_scores_the_model_of_every_epoch(digits_small):
    X, y = _data(digits_small, "classifier")
    monitor, keeper = ScoringMonitor(scoring="accuracy"), KeepModels()
    clf = _make("classifier").set_callbacks(monitor, keeper)
    quiet_fit(clf, X, y)
    rows = monitor.get_logs().data
    assert [r["task_name"] for r in rows] == ["fit"] + ["epoch"] * clf.n_iter_
    assert [r["task_id"] for r in rows[1:]] == list(range(clf.n_iter_))
    # One model per epoch, the one that epoch made, each scored on the data.
    models = keeper.models
    assert [m.n_iter_ for m in models] == [1, 2, 3]
    assert [m.loss_curve_ for m in models] == [clf.loss_curve_[:i] for i in (1, 2, 3)]
    assert [r["accuracy"] for r in rows[1:]] == [m.score(X, y) for m in models]
    assert rows[0]["accuracy"] == rows[-1]["accuracy"] == clf.score(X, y)
    assert_array_equal(models[-1].predict_proba(X), clf.predict_proba(X))
    assert not np.array_equal(models[0].coefs_[0], models[-1].coefs_[0])
    # Copies: none shares an array with the estimator or with another copy.
    arrays = [a for m in models + [clf] for a in _weights(m)]
    assert not any(np.shares_memory(a, b) for i, a in enumerate(arrays)
                   for b in arrays[i + 1:])


@needs_callbacks
@cases
@pytest.mark.parametrize("early_stopping", [False, True])
def test_callbacks_do_not_change_the_fitted_model(digits_small, case, early_stopping):
    X, y = _data(digits_small, case)
    fraction = 0.3 if early_stopping and case != "regressor" else 0.2  # every class
    # A RandomState instance as random_state: a fit of a model's copy that drew from
    # it would change the estimator's random stream.
    params = lambda: dict(early_stopping=early_stopping,  # noqa: E731
                          validation_fraction=fraction,
                          random_state=np.random.RandomState(0))
    reference = quiet_fit(_make(case, **params()), X, y)

    callbacks = [Meddler(), KeepModels()]
    if case != "transformer":  # (scoring=None fails in scikit-learn 1.9.1's monitor)
        callbacks.append(ScoringMonitor(scoring="r2" if case == "regressor"
                                        else "accuracy"))
    est = quiet_fit(_make(case, **params()).set_callbacks(*callbacks), X, y)
    assert len(callbacks[0].tasks(fitted=True)) == est.n_iter_ + 1  # it did meddle

    assert est.n_iter_ == reference.n_iter_
    assert est.loss_curve_ == reference.loss_curve_
    assert est.validation_scores_ == reference.validation_scores_
    for a, b in zip(_weights(est), _weights(reference), strict=True):
        assert_array_equal(a, b)
    # the random stream too: the next partial_fit (or warm start) shuffles alike
    for a, b in zip(est._random_state.get_state(), reference._random_state.get_state()):
        assert_array_equal(a, b)


# ------------------------------------------------------------------------------------
# Meta-estimators
# ------------------------------------------------------------------------------------
@needs_callbacks
@pytest.mark.parametrize("where", ["final", "transformer"])
def test_pipeline_propagates_callbacks(digits_small, where):
    X, y = _data(digits_small, "classifier")
    if where == "final":
        pipe, name = make_pipeline(StandardScaler(), _make("classifier")), \
            "ConvNetClassifier"
    else:
        pipe, name = make_pipeline(_make("transformer"), LogisticRegression()), \
            "ConvNetTransformer"
    recorder = AutoRecorder()
    quiet_fit(pipe.set_callbacks(recorder), X, y)
    step = pipe[-1] if where == "final" else pipe[0]

    # The estimator's root is the pipeline's task for the step (depth 1).
    [root] = recorder.tasks(estimator=name, task="fit")
    assert root["depth"] == 1 and root["source"] == "Pipeline"
    epochs = recorder.tasks(estimator=name, task="epoch")
    assert len(epochs) == step.n_iter_ == 3 and {e["depth"] for e in epochs} == {2}
    minibatches = recorder.tasks(estimator=name, task="minibatch")
    assert len(minibatches) == 3 * math.ceil(N / BATCH)
    assert {e["depth"] for e in minibatches} == {3}
    _assert_nested(recorder.events)
    # set up and torn down once, by the pipeline; nothing left on the step
    assert [e["estimator"] for e in recorder.events if e["hook"] == "setup"] == ["Pipeline"]
    assert not hasattr(step, "_skl_callbacks")


def _count_per_fit(recorder, name):
    """Per fit of ``name``: (epochs, minibatches under each epoch vs its max_subtasks)."""
    roots = recorder.tasks(estimator=name, task="fit")
    epochs = recorder.tasks(estimator=name, task="epoch")
    minibatches = Counter(e["parent"] for e in recorder.tasks(estimator=name,
                                                              task="minibatch"))
    for epoch in epochs:
        assert minibatches[epoch["context"]] == epoch["max_subtasks"]
    per_root = Counter(e["parent"] for e in epochs)
    return len(roots), sorted(per_root.values())


@needs_callbacks
def test_grid_search_propagates_callbacks(digits_small):
    X, y = _data(digits_small, "classifier")
    recorder = AutoRecorder()
    search = GridSearchCV(_make("classifier"), {"kernel_size": [3, 5]}, cv=2)
    quiet_fit(search.set_callbacks(recorder), X, y)
    # 2 candidates x 2 splits, then the refit: each runs its 3 epochs
    assert _count_per_fit(recorder, "ConvNetClassifier") == (5, [3] * 5)
    _assert_nested(recorder.events)


@needs_callbacks
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_scoring_monitor_inside_grid_search(digits_small, n_jobs):
    # ScoringMonitor is not propagated: it is set on the inner estimator, and every
    # clone (in the worker processes too) reports to it.
    X, y = _data(digits_small, "classifier")
    monitor = ScoringMonitor(scoring="accuracy")
    inner = _make("classifier", max_iter=2).set_callbacks(monitor)
    search = GridSearchCV(inner, {"kernel_size": [3, 5]}, cv=2, n_jobs=n_jobs)
    quiet_fit(search, X, y)
    rows = monitor.get_logs().data
    assert Counter(r["task_name"] for r in rows) == {"fit": 5, "epoch": 5 * 2}
    assert all(0 <= r["accuracy"] <= 1 for r in rows)


# ------------------------------------------------------------------------------------
# ProgressBar (needs rich)
# ------------------------------------------------------------------------------------
@pytest.mark.callbacks
@needs_rich
@cases
def test_progress_bar_draws_fit_and_epochs_and_keeps_verbose_lines(digits_small, case,
                                                                   capsys):
    X, y = _data(digits_small, case)
    est = _make(case, verbose=True).set_callbacks(ProgressBar())
    quiet_fit(est, X, y)
    out = capsys.readouterr().out
    name = type(est).__name__
    assert f"{name} - fit" in out
    for i in range(3):
        assert f"{name} - epoch #{i}" in out
        assert f"Iteration {i + 1}, loss = " in out  # verbose's per-epoch lines stay
    assert "100%" in out


@pytest.mark.callbacks
@needs_rich
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_progress_bar_on_a_grid_search(digits_small, n_jobs, capsys):
    X, y = _data(digits_small, "classifier")
    search = GridSearchCV(_make("classifier", max_iter=2), {"kernel_size": [3, 5]},
                          cv=2, n_jobs=n_jobs)
    quiet_fit(search.set_callbacks(ProgressBar(max_propagation_depth=None)), X, y)
    out = capsys.readouterr().out
    assert "GridSearchCV - fit" in out
    assert out.count("ConvNetClassifier - epoch #1") == 5  # every fit's bars
    assert "100%" in out


# ------------------------------------------------------------------------------------
# Persistence, older scikit-learn
# ------------------------------------------------------------------------------------
@needs_callbacks
def test_pickle_keeps_callbacks_and_refits(digits_small):
    X, y = _data(digits_small, "classifier")
    monitor = ScoringMonitor(scoring="accuracy")
    clf = quiet_fit(_make("classifier").set_callbacks(monitor), X, y)
    loaded = pickle.loads(pickle.dumps(clf))
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    [callback] = loaded._skl_callbacks
    quiet_fit(loaded, X, y)
    assert len(callback.get_logs().data) == 1 + 3


@needs_callbacks
@pytest.mark.persist
def test_skops_files_name_callbacks_until_they_are_removed(digits_small, tmp_path):
    sio = pytest.importorskip("skops.io", reason="needs the 'persist' extra (skops)")
    X, y = _data(digits_small, "classifier")
    clf = quiet_fit(_make("classifier").set_callbacks(
        ScoringMonitor(scoring="accuracy")), X, y)
    path = tmp_path / "with_callbacks.skops"
    sio.dump(clf, path)
    assert any(t.startswith("sklearn.callback.")
               for t in sio.get_untrusted_types(file=path))
    # As the README says: remove the callbacks before saving.
    clf.set_callbacks()
    path = tmp_path / "model.skops"
    sio.dump(clf, path)
    types = sio.get_untrusted_types(file=path)
    assert all(t.startswith("skconv.") for t in types), types
    loaded = sio.load(path, trusted=types)
    assert_array_equal(loaded.predict_proba(X), clf.predict_proba(X))
    assert not hasattr(loaded, "_skl_callbacks")


OLD_SKLEARN = textwrap.dedent("""
    import sys, warnings
    import numpy as np
    try:  # scikit-learn >= 1.9: hide sklearn.callback from skconv as if it were older
        import sklearn.base, sklearn.callback._callback_support  # (used by _fit_context)
        import sklearn.linear_model, sklearn.model_selection, sklearn.pipeline
        import sklearn.preprocessing
        sys.modules["sklearn.callback"] = None
    except ImportError:
        pass
    from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer

    rng = np.random.RandomState(0)
    X, y = rng.rand(60, 64), rng.randint(0, 3, 60)
    warnings.simplefilter("ignore")
    for cls in (ConvNetClassifier, ConvNetRegressor, ConvNetTransformer):
        assert not hasattr(cls(), "set_callbacks"), cls
        est = cls(filters=(2, 3), hidden_layer_sizes=(5,), max_iter=2, batch_size=16,
                  early_stopping=True, validation_fraction=0.25, random_state=0)
        est.fit(X, y)
        assert est.n_iter_ == 2
        if hasattr(est, "partial_fit"):
            est.set_params(early_stopping=False).partial_fit(X, y)
            assert est.n_iter_ == 3
        print(cls.__name__, [w.sum() for w in est.coefs_])
""")


def test_estimators_work_without_sklearn_callback():
    # With scikit-learn < 1.9 there is no sklearn.callback: no set_callbacks, and fit
    # and partial_fit work as before (and give the same models).
    # The child imports the skconv this test imports (the source tree or the
    # installed package).
    env = {**os.environ, "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(Path(skconv.__file__).parents[1])}
    run = subprocess.run([sys.executable, "-P", "-c", OLD_SKLEARN], capture_output=True,
                         text=True, cwd=ROOT, env=env, check=False)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 3
    if HAVE_CALLBACKS:  # the same models as with callback support
        rng = np.random.RandomState(0)
        X, y = rng.rand(60, 64), rng.randint(0, 3, 60)
        for line, cls in zip(lines, (ConvNetClassifier, ConvNetRegressor,
                                     ConvNetTransformer)):
            est = cls(filters=(2, 3), hidden_layer_sizes=(5,), max_iter=2,
                      batch_size=16, early_stopping=True, validation_fraction=0.25,
                      random_state=0)
            quiet_fit(est, X, y)
            if hasattr(est, "partial_fit"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est.set_params(early_stopping=False).partial_fit(X, y)
            assert line == f"{cls.__name__} {[w.sum() for w in est.coefs_]}"
