"""``python -m skconv``: train LeNet-5 on small images in one command, no download.

By default the demo trains a :class:`~skconv.ConvNetClassifier` on scikit-learn's
bundled 8x8 digit images (``load_digits``, 1,797 images), with a stratified held-out
test split (25%), pixels scaled to [0, 1] (X / 16) in float32, and reports the test
accuracy and fit time next to scikit-learn's ``MLPClassifier`` trained on the same
split. ``--data DIR`` uses MNIST-format IDX files instead (MNIST, Fashion-MNIST,
KMNIST: ``train-*`` and ``t10k-*`` files, gzipped or not), scaled X / 255.
``--plot PATH`` saves the learned filters, the feature maps of one test image and the
loss curve as one PNG (needs matplotlib, the ``plot`` extra).

How per-epoch progress is shown, and why this way
--------------------------------------------------
The demo calls ``fit`` once, as a user would, with ``verbose=True``: the estimator
prints one line per epoch (loss, validation accuracy, epoch time, elapsed time,
images/s). The only parameter changed from the defaults is ``early_stopping=True``:

- the per-epoch validation accuracy is then the one early stopping computes anyway
  (on 10% of the *training* part, held out inside ``fit``, stratified), so progress
  costs nothing extra - no forward passes, no callbacks;
- the test part is never looked at during training, not even for display: watching
  test accuracy epoch by epoch and stopping when it looks good is how test sets get
  overfitted. It is scored once, at the end;
- on digits it stops after ~30 epochs instead of running ~90 to the training-loss
  rule, so the demo takes seconds, and the model kept is the best epoch on validation.

The alternative - scoring the held-out part after every epoch through ``warm_start``
and ``max_iter=1`` - would restart Adam at every epoch (a warm start gets a fresh
optimizer), so the model would not be the one ``fit`` gives; a ``partial_fit`` loop
would have to re-implement the stopping rule. The final model here is exactly what
``ConvNetClassifier(early_stopping=True).fit(X, y)`` returns.

Errors a user can cause (a bad option, a missing or corrupt data file, an unwritable
plot path, data too small to train on) end in one line on stderr and a non-zero exit
status - 2 for bad options (argparse's convention), 1 for the rest - never a
traceback.
"""

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

__all__ = ["main"]

PROG = "python -m skconv"
_PLOT_HINT = 'pip install "skconv[plot]"'


# -------------------------------------------------------------------------------------
# Command line
# -------------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message):
        # argparse prints the whole usage block first; one line is easier to read.
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _int_at_least(minimum):
    def convert(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return convert


def _n_jobs(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}")
    if value == 0:
        raise argparse.ArgumentTypeError(
            "0 has no meaning; use -1 (all cores) or a positive number")
    return value


def build_parser():
    """The argument parser of ``python -m skconv``."""
    parser = _Parser(
        prog=PROG,
        description=(
            "Train skconv's ConvNetClassifier (LeNet-5, Cython + OpenMP kernels) on "
            "scikit-learn's bundled digit images - no download - with a stratified "
            "held-out test split, print its progress per epoch, and compare its test "
            "accuracy and fit time with scikit-learn's MLPClassifier on the same "
            "split. Progress is measured on an internal validation split (early "
            "stopping); the test split is only scored at the end."
        ),
    )
    parser.add_argument(
        "--epochs", type=_int_at_least(1), default=100, metavar="N",
        help="maximum number of epochs of ConvNetClassifier, its max_iter (default: "
             "100; early stopping usually ends training sooner). The "
             "MLPClassifier reference keeps max_iter=300")
    parser.add_argument(
        "--batch-size", type=_int_at_least(1), default=64, metavar="N",
        help="minibatch size (default: 64)")
    parser.add_argument(
        "--n-jobs", type=_n_jobs, default=None, metavar="N",
        help="OpenMP threads of the kernels; -1 for all usable cores (default: all "
             "usable cores, respecting OMP_NUM_THREADS)")
    parser.add_argument(
        "--random-state", type=_int_at_least(0), default=0, metavar="SEED",
        help="seed of the split, the weights and the shuffling (default: 0)")
    parser.add_argument(
        "--plot", metavar="PATH",
        help="save the learned filters, the feature maps of one test image and the "
             f"loss curve as a PNG (needs matplotlib: {_PLOT_HINT})")
    parser.add_argument(
        "--data", metavar="DIR",
        help="train and test on MNIST-format IDX files in DIR "
             "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-"
             "ubyte, t10k-labels-idx1-ubyte, each optionally .gz) instead of the "
             "bundled digits; pixels are scaled by 1/255")
    return parser


class _UserError(Exception):
    """A problem the user can fix; reported in one line, exit status 1."""


def _one_line(exc):
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


# -------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------
def _load_digits(random_state):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    X = (X / 16).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=random_state)
    description = (
        "scikit-learn's digits (load_digits), stratified split 75/25 with "
        f"random_state={random_state}, X / 16 as float32")
    return X_train, X_test, y_train, y_test, (8, 8), description


def _load_idx_dir(directory):
    from .datasets import load_mnist

    if not os.path.isdir(directory):
        raise _UserError(f"--data: {directory} is not a directory")
    try:
        train_images, y_train = load_mnist(directory, "train")
        test_images, y_test = load_mnist(directory, "t10k")
    except (OSError, ValueError) as exc:
        raise _UserError(f"--data: {_one_line(exc)}") from None
    if train_images.shape[1:] != test_images.shape[1:]:
        raise _UserError(
            f"--data: training images are {train_images.shape[1]}x"
            f"{train_images.shape[2]} but test images are {test_images.shape[1]}x"
            f"{test_images.shape[2]}")
    image_shape = tuple(train_images.shape[1:])

    def scale(images):
        flat = images.reshape(len(images), -1).astype(np.float32)
        flat /= 255
        return flat

    description = f"IDX files in {directory} (train / t10k), X / 255 as float32"
    return (scale(train_images), scale(test_images), y_train.astype(np.intp),
            y_test.astype(np.intp), image_shape, description)


# -------------------------------------------------------------------------------------
# Training
# -------------------------------------------------------------------------------------
def _fit_timed(estimator, X, y):
    """Fit; return (seconds, whether max_iter ended training before convergence)."""
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        start = time.perf_counter()
        try:
            estimator.fit(X, y)
        except ValueError as exc:  # e.g. too few samples for the validation split
            raise _UserError(
                f"training {type(estimator).__name__} failed: {_one_line(exc)}"
            ) from None
        seconds = time.perf_counter() - start
    hit_max_iter = False
    for w in caught:
        if issubclass(w.category, ConvergenceWarning):
            hit_max_iter = True
        else:  # not ours to swallow
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return seconds, hit_max_iter


def _check_plot_target(path):
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise _UserError(
            f"--plot needs matplotlib, the optional 'plot' extra: {_PLOT_HINT}"
        ) from None
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise _UserError(f"--plot: directory {parent} does not exist")


def _save_plot(path, clf, sample, title):
    """Filters of the first conv layer, feature maps of ``sample``, loss curve."""
    from matplotlib.figure import Figure

    from .plot import FeatureMapsDisplay, FiltersDisplay, LossCurveDisplay

    # A bare Figure: no pyplot, so no GUI backend and no global figure state.
    fig = Figure(figsize=(10, 9), layout="constrained")
    top, middle, bottom = fig.subfigures(3, 1, height_ratios=[1.5, 2.2, 2.4])
    FiltersDisplay.from_estimator(clf, layer=0, fig=top)
    FeatureMapsDisplay.from_estimator(clf, sample, fig=middle)
    LossCurveDisplay.from_estimator(clf, fig=bottom)
    fig.suptitle(title, fontsize="x-large")
    try:
        fig.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise _UserError(f"--plot: cannot write {path}: {_one_line(exc)}") from None


def _run(args):
    from sklearn.neural_network import MLPClassifier

    from . import ConvNetClassifier, openmp_enabled
    from ._ops.threads import effective_n_threads

    if args.plot is not None:
        _check_plot_target(args.plot)  # before training, not after
    if args.data is None:
        X_train, X_test, y_train, y_test, image_shape, description = _load_digits(
            args.random_state)
        data_name = "digits"
    else:
        X_train, X_test, y_train, y_test, image_shape, description = _load_idx_dir(
            args.data)
        data_name = os.path.basename(os.path.normpath(args.data)) or args.data

    def say(*lines):
        for line in lines:
            print(line, flush=True)

    n_classes = len(np.unique(y_train))
    n_threads = effective_n_threads(args.n_jobs)
    say(f"data: {description}",
        f"      {len(X_train)} training and {len(X_test)} test images of "
        f"{image_shape[0]}x{image_shape[1]} pixels, {n_classes} classes",
        f"threads: {n_threads} ({'OpenMP' if openmp_enabled() else 'serial build'}"
        f", n_jobs={args.n_jobs})")

    clf = ConvNetClassifier(
        # image_shape is what the default infers for square images; given so that
        # non-square IDX images work too.
        image_shape=None if args.data is None else image_shape,
        batch_size=args.batch_size, max_iter=args.epochs, early_stopping=True,
        random_state=args.random_state, verbose=True, n_jobs=args.n_jobs)
    n_val = math.ceil(clf.validation_fraction * len(X_train))  # train_test_split's
    say("", f"{clf!r}",
        f"training on {len(X_train) - n_val} images; validation score = "
        f"accuracy on the other {n_val} (early stopping's hold-out, not the test "
        "set)")
    cnn_time, cnn_max_iter = _fit_timed(clf, X_train, y_train)  # prints progress
    cnn_acc = clf.score(X_test, y_test)

    mlp = MLPClassifier(hidden_layer_sizes=(100,), max_iter=300,
                        random_state=args.random_state)
    say("", f"reference: {mlp!r} on the same training images ...")
    mlp_time, mlp_max_iter = _fit_timed(mlp, X_train, y_train)
    mlp_acc = mlp.score(X_test, y_test)

    def row(name, acc, seconds, est, hit_max_iter):
        note = " (max_iter reached)" if hit_max_iter else ""
        return (f"{name:<18} {acc:>13.4f} {seconds:>9.2f} s {est.n_iter_:>7d}"
                f"{note}")

    say("", f"{'model':<18} {'test accuracy':>13} {'fit time':>11} {'epochs':>7}",
        row("ConvNetClassifier", cnn_acc, cnn_time, clf, cnn_max_iter),
        row("MLPClassifier", mlp_acc, mlp_time, mlp, mlp_max_iter))
    if clf.best_validation_score_ is not None:
        say(f"ConvNetClassifier keeps the weights of its best validation epoch "
            f"(accuracy {clf.best_validation_score_:.4f}).")

    if args.plot is not None:
        sample = X_test[0]
        title = (f"ConvNetClassifier on {data_name}: test accuracy {cnn_acc:.4f}; "
                 f"feature maps of test image 0 (label {y_test[0]})")
        _save_plot(args.plot, clf, sample, title)
        say(f"saved filters, feature maps and loss curve to {args.plot}")


def main(argv=None):
    """Run the demo; return the exit status (0 on success).

    Parameters
    ----------
    argv : list of str or None, default=None
        The options; None reads ``sys.argv[1:]``.

    Returns
    -------
    int
        0 on success, 1 for a data, plot or training error (one line on stderr),
        130 when interrupted. Bad options exit with status 2 (``SystemExit``).
    """
    args = build_parser().parse_args(argv)
    try:
        _run(args)
    except _UserError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0
