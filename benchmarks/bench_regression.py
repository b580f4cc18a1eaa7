"""ConvNetRegressor against its anchors, and its training speed against the classifier's.

What it measures
----------------
``quality`` (default): on scikit-learn's digits (1,797 8x8 images), split 75/25
stratified with ``random_state=0``, ``X / 16``, the regressors predict the digit's value
(0-9) as a number. It prints the test R^2 and the fit time of

- ``ConvNetRegressor()`` with its defaults, one row per ``--seeds`` value of
  ``random_state`` (the split stays the same), then their mean;
- the anchors with their defaults: ``MLPRegressor(random_state=seed)`` for the same
  seeds, and ``SVR()`` (deterministic), the figures the issue quotes (0.876, 0.849);
- for reference, ``ConvNetClassifier()``'s predicted class read as the value, and the
  multilabel classifier and the transformer + ``LogisticRegression`` of the same issue
  (per-label accuracy on (odd, > 4, zero) and accuracy), seed 0 only, with
  ``--others``.

``speed``: the time of one training epoch of ``ConvNetRegressor`` and of
``ConvNetClassifier`` on MNIST-shaped data (``--n`` random 28x28 float32 images;
the speed of the kernels does not depend on the pixel values), the defaults otherwise,
``--threads`` OpenMP threads. The two estimators alternate, ``--repeats`` times, and
the table gives the median and the spread of each and their ratio. The networks differ
only in the output layer (1 unit and a squared error against 10 units and a softmax
cross-entropy), so the ratio measures what the regression's loss costs per step.
On a machine shared with other work the spread says how far to trust the ratio.

Commands
--------
Run from the repository root (``PYTHONPATH=.`` for the in-place build)::

    PYTHONPATH=. python benchmarks/bench_regression.py quality --seeds 0 1 2 3 4
    PYTHONPATH=. python benchmarks/bench_regression.py quality --seeds 0 --others
    PYTHONPATH=. OMP_NUM_THREADS=2 python benchmarks/bench_regression.py speed \\
        --n 6000 --repeats 5 --threads 2
"""

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVR

from skconv import ConvNetClassifier, ConvNetRegressor, ConvNetTransformer


def _timed_fit(est, X, y):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    return est, time.perf_counter() - start


def _row(name, score, seconds, extra=""):
    print(f"{name:<44} {score:>8.4f} {seconds:>8.1f}  {extra}", flush=True)


def quality(seeds, threads, others):
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(
        X / 16, y, test_size=0.25, stratify=y, random_state=0)
    print(f"digits, 75/25 stratified split (random_state=0), X / 16: "
          f"{len(X_train)} train, {len(X_test)} test; target: the digit's value")
    print(f"{'model':<44} {'test R2':>8} {'fit s':>8}  notes")
    scores = {"cnn": [], "mlp": []}
    for seed in seeds:
        reg, seconds = _timed_fit(ConvNetRegressor(random_state=seed, n_jobs=threads),
                                  X_train, y_train)
        scores["cnn"].append(reg.score(X_test, y_test))
        _row(f"ConvNetRegressor(random_state={seed})", scores["cnn"][-1], seconds,
             f"{reg.n_iter_} epochs")
    for seed in seeds:
        mlp, seconds = _timed_fit(MLPRegressor(random_state=seed), X_train, y_train)
        scores["mlp"].append(mlp.score(X_test, y_test))
        _row(f"MLPRegressor(random_state={seed})", scores["mlp"][-1], seconds,
             f"{mlp.n_iter_} epochs")
    svr, seconds = _timed_fit(SVR(), X_train, y_train)
    _row("SVR()", svr.score(X_test, y_test), seconds)
    if len(seeds) > 1:
        for key, name in (("cnn", "ConvNetRegressor"), ("mlp", "MLPRegressor")):
            values = scores[key]
            print(f"{name}: mean {np.mean(values):.4f}, min {min(values):.4f}, "
                  f"max {max(values):.4f} over seeds {list(seeds)}")
    if not others:
        return
    seed = seeds[0]
    clf, seconds = _timed_fit(ConvNetClassifier(random_state=seed, n_jobs=threads),
                              X_train, y_train)
    _row(f"ConvNetClassifier(random_state={seed}), class as value",
         r2_score(y_test, clf.predict(X_test)), seconds,
         f"accuracy {clf.score(X_test, y_test):.4f}")

    def labels(v):
        return np.column_stack([v % 2 == 1, v > 4, v == 0]).astype(int)

    multi, seconds = _timed_fit(ConvNetClassifier(random_state=seed, n_jobs=threads),
                                X_train, labels(y_train))
    per_label = (multi.predict(X_test) == labels(y_test)).mean(axis=0)
    print(f"{'multilabel ConvNetClassifier (odd, >4, zero)':<44} per-label accuracy "
          f"{np.round(per_label, 4).tolist()}, subset {multi.score(X_test, labels(y_test)):.4f},"
          f" fit {seconds:.1f} s")
    pipe, seconds = _timed_fit(make_pipeline(
        ConvNetTransformer(random_state=seed, n_jobs=threads),
        LogisticRegression(max_iter=1000)), X_train, y_train)
    print(f"{'ConvNetTransformer + LogisticRegression':<44} accuracy "
          f"{pipe.score(X_test, y_test):.4f}, fit {seconds:.1f} s")


def speed(n, repeats, threads):
    rng = np.random.default_rng(0)
    X = rng.random((n, 784), dtype=np.float32)
    labels = rng.integers(0, 10, n)
    values = labels.astype(np.float64)
    print(f"one epoch on {n} random 28x28 float32 images, batch 64, {threads} "
          f"thread(s), {repeats} alternating runs each")
    times = {"ConvNetClassifier": [], "ConvNetRegressor": []}
    for _ in range(repeats):
        for cls, y in ((ConvNetClassifier, labels), (ConvNetRegressor, values)):
            est = cls(max_iter=1, random_state=0, n_jobs=threads)
            _, seconds = _timed_fit(est, X, y)
            times[cls.__name__].append(seconds)
    print(f"{'estimator':<20} {'median s':>9} {'min s':>7} {'max s':>7} {'images/s':>9}")
    for name, values_ in times.items():
        median = statistics.median(values_)
        print(f"{name:<20} {median:>9.3f} {min(values_):>7.3f} {max(values_):>7.3f} "
              f"{n / median:>9.0f}")
    ratio = (statistics.median(times["ConvNetRegressor"])
             / statistics.median(times["ConvNetClassifier"]))
    print(f"regressor / classifier epoch time: {ratio:.3f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what")
    q = sub.add_parser("quality")
    q.add_argument("--seeds", type=int, nargs="+", default=[0])
    q.add_argument("--threads", type=int, default=None)
    q.add_argument("--others", action="store_true")
    s = sub.add_parser("speed")
    s.add_argument("--n", type=int, default=6000)
    s.add_argument("--repeats", type=int, default=5)
    s.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.what == "speed":
        speed(args.n, args.repeats, args.threads)
    else:
        quality(getattr(args, "seeds", [0]), getattr(args, "threads", None),
                getattr(args, "others", False))


if __name__ == "__main__":
    main()
