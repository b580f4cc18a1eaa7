"""Shared machinery of the skconv estimators (private).

Everything here talks to the network engine (``skconv._nn``) through its small public
surface - ``build_lenet5``, ``Network.initialize/predict/get_state/set_state/
params_of``, the optimizers' ``state``/``load_state``, ``run_epoch`` - and never to the
ops or kernels: the estimator layer knows nothing of loops over pixels or minibatches.

What lives here:

- the parameters common to every estimator and their declared constraints;
- the input rules: 2-D ``X`` (n_samples, n_features) or N-d ``X`` (n_samples, C,
  *spatial), ``image_shape`` resolution, the dtype policy;
- one ``_fit(X, y, sample_weight, incremental)`` behind every ``fit`` and
  ``partial_fit`` (first pass, warm start, sample weights, the random state, what a
  failed first fit leaves behind);
- the epoch loop (early stopping, the ``n_iter_no_change`` rule, ``KeyboardInterrupt``
  and non-finite-loss handling) around the engine's :func:`run_epoch`, which tells
  scikit-learn's callbacks about the fit, each epoch and each minibatch through
  :class:`.callbacks.FitReport`.

A concrete estimator supplies the target handling (``_encode_targets``), the loss
(``_loss_and_grad``) and the validation score (``_validation_score``); the
classification estimators share theirs in :mod:`.classifier`.
"""

import copy
import math
import time
import warnings
from numbers import Integral, Real

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import assert_all_finite, check_random_state, shuffle
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from .._nn.activations import ACTIVATIONS
from .._nn.lenet import BATCH_NORM_PLACES, BATCH_NORM_POSITIONS, HEADS, build_lenet5
from .._nn.optimizers import LR_SCHEDULES, SGD, Adam
from .._nn.training import NonFiniteTraining, VanishingBatchWeight, run_epoch
from .._ops.pool import POOL_MODES
from .._ops.threads import effective_n_threads
from .._ops.validation import MAX_SPATIAL_DIMS, PADDING_MODES, all_finite, is_int
from .callbacks import CallbackSupportMixin, FitReport

__all__ = ["BaseConvNet"]

#: Samples per forward pass in predict: bounds the memory of the activations
#: whatever n_samples is.
PREDICT_BATCH_SIZE = 512

#: What 'auto' stands for in the learning options, by the kind of input. Signals are
#: samples declared with one spatial axis, N-d ``X`` of shape (n, C, L) or
#: ``image_shape=(L,)``: wider conv blocks (16, 32, 64 kernels of 7 taps), batch
#: norm, a global average pooling head, a cosine schedule, at least 2,000 updates
#: and random delays of up to a tenth of the length (the time-series study of the
#: README, "Learning options"). Everything else - images, volumes, and flat ``X`` of
#: tabular data - trains LeNet-5 as published, on non-negative ``X`` divided by its
#: largest value ('max_abs' applies to such X only, see ``_input_scale``), with the
#: cosine schedule on long budgets (AUTO_COSINE_MIN_UPDATES); images (two spatial
#: axes) keep that topology but get AUTO_IMAGE_LONG_OPTIONS on long budgets and the
#: wider 3x3 blocks of AUTO_IMAGE_SHORT_OPTIONS on short ones. A batch norm is
#: placed as it was measured: before the pooling on signals, after it elsewhere.
AUTO_SIGNAL_OPTIONS = dict(filters=(16, 32, 64), kernel_size=7, batch_norm=True,
                           batch_norm_position="before_pool", head="avg",
                           learning_rate="cosine", learning_rate_init=1e-3,
                           min_updates=2000, augment_shift=0.1, input_scaling=None)
AUTO_OTHER_OPTIONS = dict(filters=(6, 16), kernel_size=5, batch_norm=False,
                          batch_norm_position="after_pool", head="flatten",
                          learning_rate="constant", learning_rate_init=1e-3,
                          min_updates=0, augment_shift=0.0, input_scaling="max_abs")

#: What images (samples with two spatial axes) get instead when a fit plans at least
#: AUTO_IMAGE_LONG_MIN_UPDATES updates: batch norm after the pooling, a five times
#: higher rate and random shifts of one pixel in 28 (README, "Learning options":
#: 10 Fashion-MNIST epochs, 0.910 to 0.923 on the test split, chosen on a validation
#: split; an epoch costs 1.06-1.13x the round's starting code's). Short budgets keep
#: LeNet-5: on scikit-learn's digits (2,200 updates) batch norm at either rate costs
#: 1-3 points.
AUTO_IMAGE_LONG_OPTIONS = dict(batch_norm=True, learning_rate_init=5e-3,
                               augment_shift=0.04)
AUTO_IMAGE_LONG_MIN_UPDATES = 4000

#: What images get instead on shorter budgets: two wider conv blocks of 3x3 kernels
#: (16 and 32 of them, against LeNet-5's 6 and 16 of 5x5). Chosen on Fashion-MNIST
#: subsets of 500-2,000 training images scored on a validation split (+0.6 to +0.95
#: points), then judged on scikit-learn's digits (0.980 to 0.987). Their second
#: block costs about twice LeNet-5's, which short budgets afford; the long ones
#: keep LeNet-5's blocks for the MNIST-size epoch cost.
AUTO_IMAGE_SHORT_OPTIONS = dict(filters=(16, 32), kernel_size=3)

#: learning_rate='auto' for everything but signals: the cosine schedule when a fit
#: plans at least this many updates (its most epochs times the minibatches of one),
#: the constant rate on shorter budgets. Cosine halves the mean step, which a fit
#: that has not converged pays for: on scikit-learn's digits (X / 16) it cost 15
#: points of test accuracy at 75 updates and 1-1.7 at 250-330, was even at 880-2,200,
#: and 10 Fashion-MNIST epochs (9,380 updates) gained 0.9 points with it (the README,
#: "Learning options").
AUTO_COSINE_MIN_UPDATES = 4000

#: compute_dtype='auto' trains in float32 on more samples than this, whatever X's
#: dtype: float32 runs 2-3x faster, and on this much data its rounding is far below
#: the noise of training; below it float64 keeps the precision that small-data users
#: and scikit-learn's estimator checks (tolerances of 1e-7) expect.
AUTO_FLOAT32_SAMPLES = 10_000


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _flatten_nd(X):
    """Split N-d array-likes (ndim >= 3) into a 2-D view and the sample shape.

    2-D data, data frames, sparse matrices and anything that is not N-d are returned
    untouched (``validate_data`` then reports what is wrong with them).

    Returns
    -------
    X : array-like
        2-D ``(n_samples, prod(sample_shape))`` for N-d input (a view when possible).
    sample_shape : tuple of int or None
        ``X.shape[1:]`` of the N-d input, None otherwise.
    """
    if sparse.issparse(X) or hasattr(X, "iloc") or hasattr(X, "__dataframe__"):
        return X, None
    ndim = getattr(X, "ndim", None)
    if ndim is None:
        if not isinstance(X, (list, tuple)):
            return X, None
        try:
            array = np.asarray(X)
        except (ValueError, TypeError):
            return X, None  # ragged: let validate_data raise its usual message
        ndim = array.ndim
    else:
        array = X
    if ndim < 3:
        return X, None
    array = np.asarray(array)
    sample_shape = tuple(int(s) for s in array.shape[1:])
    return array.reshape(array.shape[0], math.prod(sample_shape)), sample_shape


def _resolve_image_shape(image_shape, n_features, sample_shape):
    """The shape of one sample, ``(C, *spatial)``, as the network sees it.

    Parameters
    ----------
    image_shape : None or tuple of int
        The estimator parameter.
    n_features : int
        Values per sample.
    sample_shape : tuple of int or None
        ``X.shape[1:]`` when ``X`` was N-d.

    Returns
    -------
    tuple of int
        ``(C, *spatial)`` with 1 to 3 spatial axes and ``prod == n_features``.
    """
    if image_shape is None:
        if sample_shape is not None:
            if not 2 <= len(sample_shape) <= 1 + MAX_SPATIAL_DIMS:
                raise ValueError(
                    f"N-d X must have shape (n_samples, C, *spatial) with 1 to "
                    f"{MAX_SPATIAL_DIMS} spatial axes, got samples of shape "
                    f"{sample_shape}"
                )
            return sample_shape
        side = math.isqrt(n_features)
        if side >= 2 and side * side == n_features:
            return (1, side, side)
        return (1, n_features)

    try:
        shape = tuple(image_shape)
    except TypeError:
        shape = None
    if (shape is None or not 1 <= len(shape) <= 1 + MAX_SPATIAL_DIMS
            or not all(is_int(s) and s >= 1 for s in shape)):
        raise ValueError(
            "image_shape must be None or a tuple of 1 to 4 positive ints: (L,) or "
            "(H, W) for one channel, (C, H, W) or (C, D, H, W); got "
            f"{image_shape!r}"
        )
    shape = tuple(int(s) for s in shape)
    if len(shape) <= 2:  # (L,) and (H, W): one channel
        shape = (1,) + shape
    if math.prod(shape) != n_features:
        origin = (f"samples of shape {sample_shape}" if sample_shape is not None
                  else f"n_features={n_features}")
        raise ValueError(
            f"image_shape={tuple(image_shape)!r} (read as (C, *spatial) = {shape}) "
            f"holds {math.prod(shape)} values per sample, but X has {origin} "
            f"({n_features} values per sample)"
        )
    return shape


class BaseConvNet(CallbackSupportMixin, BaseEstimator):
    """Base class of the LeNet-5 estimators. Not for direct use."""

    _parameter_constraints: dict = {
        "image_shape": [None, tuple, list],
        "filters": [Interval(Integral, 1, None, closed="left"), tuple, list,
                    StrOptions({"auto"})],
        "kernel_size": [Interval(Integral, 1, None, closed="left"), tuple, list,
                        StrOptions({"auto"})],
        "stride": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "padding": [
            Interval(Integral, 0, None, closed="left"),
            StrOptions(set(PADDING_MODES)),
            tuple,
            list,
        ],
        "dilation": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "activation": [StrOptions(set(ACTIVATIONS))],
        "pooling": [StrOptions(set(POOL_MODES)), tuple, list],
        "pool_size": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "pool_stride": [None, Interval(Integral, 1, None, closed="left"), tuple, list],
        "hidden_layer_sizes": [Interval(Integral, 1, None, closed="left"), tuple, list],
        "batch_norm": ["boolean", StrOptions(set(BATCH_NORM_PLACES) | {"auto"})],
        "batch_norm_position": [StrOptions(set(BATCH_NORM_POSITIONS) | {"auto"})],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "spatial_dropout": [Interval(Real, 0, 1, closed="left")],
        "head": [StrOptions(set(HEADS) | {"auto"})],
        "augment_shift": [Interval(Real, 0, 0.5, closed="left"), StrOptions({"auto"})],
        "augment_flip": ["boolean"],
        "augment_scale": [Interval(Real, 0, 1, closed="left")],
        "augment_noise": [Interval(Real, 0, None, closed="left")],
        "input_scaling": [None, StrOptions({"max_abs", "auto"})],
        "solver": [StrOptions({"adam", "sgd"})],
        "learning_rate": [StrOptions(set(LR_SCHEDULES) | {"auto"})],
        "learning_rate_init": [Interval(Real, 0, None, closed="neither"),
                               StrOptions({"auto"})],
        "power_t": [Interval(Real, 0, None, closed="left")],
        "alpha": [Interval(Real, 0, None, closed="left")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "min_updates": [Interval(Integral, 0, None, closed="left"), StrOptions({"auto"})],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_iter_no_change": [
            Interval(Integral, 1, None, closed="left"),
            Options(Real, {np.inf}),
        ],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "shuffle": ["boolean"],
        "momentum": [Interval(Real, 0, 1, closed="both")],
        "nesterovs_momentum": ["boolean"],
        "beta_1": [Interval(Real, 0, 1, closed="left")],
        "beta_2": [Interval(Real, 0, 1, closed="left")],
        "epsilon": [Interval(Real, 0, None, closed="neither")],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "verbose": ["verbose"],
        "compute_dtype": [StrOptions({"auto", "float32", "float64"})],
        "n_jobs": [Integral, None],
    }

    #: Whether fit converts ``y`` to numbers (regression) or keeps labels as they are.
    _y_numeric = False

    # ---------------------------------------------------------------------------------
    # Hooks for concrete estimators
    # ---------------------------------------------------------------------------------
    def _encode_targets(self, y, incremental, first_pass):
        """Check ``y`` and turn it into what ``_loss_and_grad`` takes.

        Sets the target attributes (``classes_``, ``n_outputs_``...) on a first pass
        and checks ``y`` against them otherwise.

        Returns
        -------
        targets : ndarray of shape (n_samples, ...)
        n_outputs : int
            Units of the network's output layer.
        """
        raise NotImplementedError

    def _combined_weights(self, targets, sample_weight, incremental):
        """The per-sample weights training uses (``sample_weight`` by default)."""
        return sample_weight

    def _check_learnable(self, targets, weights):
        """Raise when ``fit`` cannot learn from the (weighted) targets."""

    def _init_outputs(self, targets, weights):
        """Adjust the new network's output layer to the targets (nothing by default)."""

    def _loss_and_grad(self, logits, y, sample_weight):
        """Mean loss of a minibatch and its gradient with respect to ``logits``."""
        raise NotImplementedError

    def _validation_score(self, X, y, sample_weight, n_threads):
        """Score of the held-out set (higher is better) for early stopping."""
        raise NotImplementedError

    # ---------------------------------------------------------------------------------
    # Input handling
    # ---------------------------------------------------------------------------------
    def _compute_dtype(self, X):
        """The dtype policy of ``compute_dtype`` (see its docstring entry).

        ``validate_data(..., dtype=(np.float64, np.float32))`` keeps float32 and
        float64 and turns every other numeric dtype into float64.
        """
        if self.compute_dtype != "auto":
            return np.dtype(self.compute_dtype)
        if X.dtype == np.float32 or X.shape[0] > AUTO_FLOAT32_SAMPLES:
            return np.dtype(np.float32)
        return np.dtype(np.float64)

    def _validate_fit_data(self, X, y, reset):
        """Validate X and y for fit / partial_fit.

        Returns
        -------
        X : ndarray of shape (n_samples, *image_shape_), C-contiguous, compute dtype
        y : ndarray or sparse matrix of shape (n_samples,) or (n_samples, n_outputs)
            As ``validate_data(..., multi_output=True)`` returns it; the estimator's
            ``_encode_targets`` decides what it accepts.
        """
        X, sample_shape = _flatten_nd(X)
        X, y = validate_data(
            self, X, y, dtype=(np.float64, np.float32), reset=reset,
            multi_output=True, y_numeric=self._y_numeric,
        )
        if reset:
            self.image_shape_ = _resolve_image_shape(
                self.image_shape, X.shape[1], sample_shape)
            self._fit_sample_shape = sample_shape
            self._dtype = self._compute_dtype(X)
            self._auto_resolved = self._auto_table(self._n_train(X.shape[0]))
            self.auto_options_ = {name: value for name, value in
                                  self._auto_resolved.items()
                                  if _is_auto(getattr(self, name))}
        else:
            self._check_sample_shape(sample_shape)
        return self._as_images(X, self._dtype), y

    def _auto_table(self, n_train):
        """What 'auto' stands for with the data of the first fit.

        :data:`AUTO_SIGNAL_OPTIONS` for samples declared with one spatial axis (N-d
        ``X``, or ``image_shape``), :data:`AUTO_OTHER_OPTIONS` otherwise, whose
        learning rate is 'cosine' when a fit on ``n_train`` training rows plans at
        least :data:`AUTO_COSINE_MIN_UPDATES` updates, and which images (two spatial
        axes) update with :data:`AUTO_IMAGE_LONG_OPTIONS` from
        :data:`AUTO_IMAGE_LONG_MIN_UPDATES` on, with :data:`AUTO_IMAGE_SHORT_OPTIONS`
        below (``n_train`` None: not known, none of these).
        """
        declared = (getattr(self, "_fit_sample_shape", None) is not None
                    or self.image_shape is not None)
        if declared and len(self.image_shape_) == 2:
            return AUTO_SIGNAL_OPTIONS
        table = dict(AUTO_OTHER_OPTIONS)
        if n_train is not None:
            min_updates = (table["min_updates"] if _is_auto(self.min_updates)
                           else self.min_updates)
            n_epochs, _, n_minibatches = self._epoch_plan(n_train, min_updates)
            planned = n_epochs * n_minibatches
            if planned >= AUTO_COSINE_MIN_UPDATES:
                table["learning_rate"] = "cosine"
            if len(self.image_shape_) == 3:
                table.update(AUTO_IMAGE_LONG_OPTIONS
                             if planned >= AUTO_IMAGE_LONG_MIN_UPDATES
                             else AUTO_IMAGE_SHORT_OPTIONS)
        return table

    def _option(self, name):
        """The learning option ``name`` as this fit uses it ('auto' resolved)."""
        value = getattr(self, name)
        if not _is_auto(value):
            return value
        # What the first fit resolved, also for 'auto' set later (a warm start).
        resolved = getattr(self, "_auto_resolved", None)
        if resolved is None or name not in resolved:
            # Pickled before the whole table was kept, or before this option was.
            resolved = {**self._auto_table(None), **getattr(self, "auto_options_", {})}
        return resolved[name]

    def _check_sample_shape(self, sample_shape):
        if sample_shape is None:
            return
        allowed = {self.image_shape_, getattr(self, "_fit_sample_shape", None)}
        if sample_shape not in allowed:
            raise ValueError(
                f"X has samples of shape {sample_shape}, but {type(self).__name__} "
                f"was fitted on samples of shape {self.image_shape_} "
                f"(n_features_in_={self.n_features_in_}); pass X as "
                f"(n_samples, {self.n_features_in_}) or "
                f"(n_samples, *{self.image_shape_})"
            )

    def _as_images(self, X, dtype):
        """(n_samples, n_features) -> C-contiguous (n_samples, *image_shape_)."""
        X = np.ascontiguousarray(X, dtype=dtype)
        return X.reshape((X.shape[0],) + tuple(self.image_shape_))

    def _validate_predict_data(self, X):
        """Validated X of shape (n_samples, *image_shape_), input dtype (float32/64).

        Not cast to the compute dtype here: the batched forward casts one batch at a
        time, so that predict never holds a second full copy of X.
        """
        check_is_fitted(self)
        X, sample_shape = _flatten_nd(X)
        # The finiteness check on our threads; scikit-learn's own only to word the
        # error when something is not finite.
        X = validate_data(self, X, dtype=(np.float64, np.float32), reset=False,
                          ensure_all_finite=False)
        if not all_finite(X, self.n_jobs):
            assert_all_finite(X, input_name="X", estimator_name=type(self).__name__)
        self._check_sample_shape(sample_shape)
        X = np.ascontiguousarray(X)
        return X.reshape((X.shape[0],) + tuple(self.image_shape_))

    # ---------------------------------------------------------------------------------
    # fit and partial_fit
    # ---------------------------------------------------------------------------------
    def _fit(self, X, y, sample_weight=None, incremental=False):
        first_pass = not hasattr(self, "_network") or (
            not self.warm_start and not incremental
        )
        try:
            return self._fit_checked(X, y, sample_weight, incremental, first_pass)
        except Exception:
            if first_pass:
                # Half-set attributes (n_features_in_, classes_, ...) of a fit that
                # failed must not make the estimator look fitted.
                self._forget_fit()
            raise

    def _fit_checked(self, X, y, sample_weight, incremental, first_pass):
        X, y = self._validate_fit_data(X, y, reset=first_pass)
        targets, n_outputs = self._encode_targets(y, incremental, first_pass)
        if not first_pass and n_outputs != self._network.output_shape[0]:
            # The targets' own checks name the mismatch; this is the last guard.
            raise ValueError(
                f"y needs {n_outputs} network outputs, but the fitted network has "
                f"{self._network.output_shape[0]}")

        if sample_weight is not None:
            sample_weight = _check_sample_weight(
                sample_weight, X.reshape(X.shape[0], -1), dtype=np.float64,
                ensure_non_negative=True,
            )
            with np.errstate(over="ignore"):  # a sum that overflows is refused below
                positive_total = sample_weight.sum() > 0
            if not positive_total:
                raise ValueError(
                    "Sample weights must contain at least one non-zero number.")
        weights = self._combined_weights(targets, sample_weight, incremental)
        if weights is not None:
            with np.errstate(over="ignore"):
                total = weights.sum()
            if not np.isfinite(total):
                raise ValueError(
                    f"the sample weights (sample_weight times class_weight) sum to "
                    f"{total}, beyond float64's range: scale them down (scaling alpha "
                    f"by the same factor gives the same model)"
                )
        if not incremental:
            self._check_learnable(targets, weights)

        new_stream = first_pass or not incremental or not hasattr(self, "_random_state")
        if new_stream:
            self._random_state = check_random_state(self.random_state)
        # else: partial_fit continues the random stream of the previous calls, so
        # that successive epochs are shuffled differently.
        if first_pass:
            self.input_scale_ = self._input_scale(X, weights)
            self._build_network(n_outputs)
        if new_stream and self._network.draws_in_training:
            # The dropout masks get a stream of their own, seeded once from the
            # estimator's: the shuffles draw as many numbers as there are rows, so on
            # a shared stream a sample of weight 2 and the sample twice would see
            # different masks.
            self._network.use_random_state(np.random.RandomState(
                self._random_state.randint(np.iinfo(np.int32).max)))
        if first_pass:
            self._init_outputs(targets, weights)
            self._best_state = None
            self._init_training_state()
        elif self.early_stopping and self.validation_scores_ is None:
            # Warm start after a fit without early stopping.
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_, self._best_state = None, None
        elif not self.early_stopping and self.best_loss_ is None:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf
        # The callbacks see the labels as given (a scorer compares them with predict)
        # and the caller's sample_weight, not the class-weighted one.
        report = FitReport(
            self, 1 if incremental else self._epoch_plan(self._n_train(X.shape[0]))[0],
            X, y, sample_weight)
        self._fit_stochastic(X, targets, weights, incremental, first_pass, report)
        report.end_fit(self._fitted_copy_attributes)
        return self

    # ---------------------------------------------------------------------------------
    # Network and optimizer
    # ---------------------------------------------------------------------------------
    def _input_scale(self, X, weights):
        """What the network divides its input by: with ``input_scaling='max_abs'``
        the largest absolute value of the training rows of positive weight (a row
        of weight 0 trains as its absence does), 1 when it is 0 or off.

        'auto' resolves here, where the weights are known: 'max_abs' of the table
        applies to non-negative rows only (intensities, counts), None otherwise, and
        ``auto_options_`` records which.
        """
        if self._option("input_scaling") != "max_abs":
            return 1.0  # without a pass over X
        if weights is not None and not np.all(weights > 0):
            X = X[weights > 0]
        smallest = float(X.min()) if X.size else 0.0
        largest = max(float(X.max()), -smallest) if X.size else 0.0
        if _is_auto(self.input_scaling) and smallest < 0:
            # Centred or standardized data: its scale is the user's already, and
            # an outlier would shrink all of it (StandardScaler'd digits, 10 epochs:
            # 0.73 training accuracy, above 0.9 without the division).
            self._auto_resolved = {**self._auto_resolved, "input_scaling": None}
            self.auto_options_["input_scaling"] = None
            return 1.0
        return largest if largest > 0 else 1.0

    def _build_network(self, n_outputs):
        network = build_lenet5(
            self.image_shape_,
            n_outputs,
            filters=self._option("filters"),
            kernel_size=self._option("kernel_size"),
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            activation=self.activation,
            pooling=self.pooling,
            pool_size=self.pool_size,
            pool_stride=self.pool_stride,
            hidden_layer_sizes=self.hidden_layer_sizes,
            batch_norm=self._option("batch_norm"),
            batch_norm_position=self._option("batch_norm_position"),
            spatial_dropout=self.spatial_dropout,
            dropout=self.dropout,
            head=self._option("head"),
            augment_shift=self._option("augment_shift"),
            augment_flip=self.augment_flip,
            augment_scale=self.augment_scale,
            augment_noise=self.augment_noise,
            input_divisor=self.input_scale_,
        )
        network.initialize(self.image_shape_, self._random_state, self._dtype)
        self._network = network
        self._expose_weights()

    def _expose_weights(self):
        # The public lists hold the very arrays the network trains (updated in
        # place by the optimizers and by set_state), so they are always current;
        # pickling keeps the sharing.
        for name, arrays in self._weight_lists(self._network).items():
            setattr(self, name, arrays)

    @staticmethod
    def _weight_lists(network):
        """The public weight attributes of ``network``, by name (its own arrays)."""
        conv = network.params_of("conv")
        dense = network.params_of("dense")
        return {"conv_weights_": [w for w, _ in conv],
                "conv_biases_": [b for _, b in conv],
                "coefs_": [w for w, _ in dense],
                "intercepts_": [b for _, b in dense]}

    def _fitted_copy_attributes(self):
        """What a copy of the estimator needs to be the model as it is now, whatever
        training does next (the callbacks' ``fitted_estimator``).

        The copy (``copy.copy`` of the estimator, then these attributes) has the
        current counters; the weights, the optimizer, the random state (and a
        ``random_state`` instance, which a new fit of the copy would draw from) and
        the lists that training appends to are copied here, so that the copy neither
        changes with the training nor changes it, even when it is trained itself.
        """
        # One deepcopy, so that the copied optimizer updates the copied weights.
        network, optimizer, rng, random_state = copy.deepcopy(
            (self._network, self._optimizer, self._random_state, self.random_state))
        attributes = self._weight_lists(network)
        attributes.update(
            _network=network, _optimizer=optimizer, _random_state=rng,
            random_state=random_state, loss_curve_=list(self.loss_curve_),
            validation_scores_=(None if self.validation_scores_ is None
                                else list(self.validation_scores_)))
        return attributes

    # The exposed weight lists and the optimizer hold the network's own arrays.
    # pickle keeps that sharing, but joblib's pickler writes every occurrence of an
    # array separately, so after joblib.load the optimizer would update copies. The
    # state therefore stores each array once (in the network) and the references
    # are rebuilt on load.
    _SHARED_WEIGHT_LISTS = ("conv_weights_", "conv_biases_", "coefs_", "intercepts_")

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in self._SHARED_WEIGHT_LISTS:
            state.pop(name, None)
        optimizer = state.get("_optimizer")
        if optimizer is not None:
            optimizer = copy.copy(optimizer)
            optimizer.params = None
            state["_optimizer"] = optimizer
        # The compute dtype by name: skops trusts strings but no numpy dtype object.
        if state.get("_dtype") is not None:
            state["_dtype"] = np.dtype(state["_dtype"]).name
        return state

    #: Parameters newer than some pickled models, with the values those were fitted
    #: with (the options off; 'auto' trained in X's dtype then, as on up to
    #: AUTO_FLOAT32_SAMPLES samples now).
    _LATER_PARAMETERS = dict(batch_norm=False, batch_norm_position="before_pool",
                             dropout=0.0, spatial_dropout=0.0,
                             head="flatten", augment_shift=0.0, augment_flip=False,
                             augment_scale=0.0, augment_noise=0.0,
                             input_scaling=None,
                             learning_rate="constant", power_t=0.5,
                             min_updates=0, compute_dtype="auto")

    def __setstate__(self, state):
        # Pickles made before the dtype was stored by name hold the dtype itself.
        if state.get("_dtype") is not None:
            state["_dtype"] = np.dtype(state["_dtype"])
        for name, value in self._LATER_PARAMETERS.items():
            state.setdefault(name, value)
        if state.get("_network") is not None:
            state.setdefault("input_scale_", 1.0)  # fitted before input_scaling
        super().__setstate__(state)
        if getattr(self, "_network", None) is not None:
            self._expose_weights()
            if getattr(self, "_optimizer", None) is not None:
                self._optimizer.params = self._network.params

    def _make_optimizer(self, n_epochs):
        """The solver's optimizer; ``n_epochs``: the cosine schedule's cycle."""
        params = self._network.params
        schedule = dict(lr_schedule=self._option("learning_rate"),
                        power_t=self.power_t, n_epochs=n_epochs)
        if self.solver == "sgd":
            return SGD(params, learning_rate=self._option("learning_rate_init"),
                       momentum=self.momentum, nesterov=self.nesterovs_momentum,
                       **schedule)
        # Adam divides by sqrt(v) + epsilon in the compute dtype: an epsilon that
        # rounds to 0 there makes 0 / 0 of every parameter whose gradient is 0 (a
        # dead relu), one that rounds to inf freezes every parameter.
        with np.errstate(over="ignore", under="ignore"):
            epsilon = self._dtype.type(self.epsilon)
        if not (0 < epsilon < np.inf):
            raise ValueError(
                f"epsilon={self.epsilon!r} is {epsilon} in {self._dtype}, the compute "
                f"dtype (compute_dtype={self.compute_dtype!r}): Adam divides by "
                f"sqrt(v) + epsilon. Use an epsilon representable in {self._dtype} "
                f"(at least {float(np.finfo(self._dtype).smallest_normal):.3g}, e.g. "
                f"the default 1e-8)"
            )
        return Adam(params, learning_rate=self._option("learning_rate_init"),
                    beta_1=self.beta_1, beta_2=self.beta_2, epsilon=self.epsilon,
                    **schedule)

    def _n_train(self, n_samples):
        """Training rows of ``n_samples``: all but early stopping's validation part
        (``train_test_split``'s ``ceil(validation_fraction * n_samples)``)."""
        if not self.early_stopping:
            return n_samples
        return n_samples - math.ceil(self.validation_fraction * n_samples)

    def _epoch_plan(self, n_train, min_updates=None):
        """``(n_epochs, min_epochs, n_minibatches)`` of a fit on ``n_train`` rows.

        ``min_epochs = ceil(min_updates / n_minibatches)`` epochs run whatever the
        stopping rule says; ``n_epochs = max(max_iter, min_epochs)`` is the most a
        fit runs (the cosine schedule's cycle). ``min_updates``: the fit's option
        when None.
        """
        if min_updates is None:
            min_updates = self._option("min_updates")
        n_minibatches = math.ceil(n_train / min(self.batch_size, n_train))
        min_epochs = math.ceil(min_updates / n_minibatches)
        return max(self.max_iter, min_epochs), min_epochs, n_minibatches

    def _snapshot(self):
        """Copies of the weights and optimizer state (the last finished epoch)."""
        return self._network.get_state(), self._optimizer.state()

    def _restore(self, snapshot):
        weights, optimizer_state = snapshot
        self._network.set_state(weights)
        self._optimizer.load_state(optimizer_state)

    def _init_training_state(self):
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf

    def __sklearn_is_fitted__(self):
        # Not "any attribute ending in _": validate_data sets n_features_in_ before
        # a fit may still fail.
        return getattr(self, "_network", None) is not None

    def _forget_fit(self):
        """Leave the estimator unfitted (a first fit that failed)."""
        for name in list(vars(self)):
            if name.endswith("_") and not name.startswith("__") or name in (
                "_network", "_optimizer", "_best_state", "_fit_sample_shape",
                "_dtype", "_label_encoder", "_last_epoch", "_y_ndim", "_multilabel",
                "_auto_resolved",
            ):
                delattr(self, name)

    # ---------------------------------------------------------------------------------
    # Forward in batches
    # ---------------------------------------------------------------------------------
    def _forward(self, X, n_threads=None, upto=None, dtype=np.float64):
        """Network outputs of ``X`` (n_samples, *image_shape_), PREDICT_BATCH_SIZE at a
        time: the logits, or with ``upto`` the output of that layer.

        Returns
        -------
        ndarray of shape (n_samples, n_outputs), ``dtype``
        """
        if n_threads is None:
            n_threads = effective_n_threads(self.n_jobs)
        if upto is None and dtype == np.float64:
            return self._network.predict(X, n_threads, batch_size=PREDICT_BATCH_SIZE)
        return self._network.predict(X, n_threads, batch_size=PREDICT_BATCH_SIZE,
                                     upto=upto, dtype=dtype)

    # ---------------------------------------------------------------------------------
    # Training loop
    # ---------------------------------------------------------------------------------
    def _fit_stochastic(self, X, y, sample_weight, incremental, first_pass, report):
        """Epochs of minibatch training on validated data.

        Parameters
        ----------
        X : ndarray of shape (n_samples, *image_shape_), compute dtype
        y : ndarray of shape (n_samples, ...)
            Targets in the form ``_loss_and_grad`` takes.
        sample_weight : ndarray of shape (n_samples,) or None
            The weights of ``_combined_weights`` (e.g. sample times class weights),
            float64.
        incremental : bool
            partial_fit: exactly one epoch.
        first_pass : bool
            The network was built by this call (a failure then unfits).
        report : FitReport
            Tells the callbacks about each epoch and minibatch; a callback may stop
            training at the end of an epoch.
        """
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        network = self._network
        n_threads = effective_n_threads(self.n_jobs)
        fit_start = time.perf_counter()  # for verbose's elapsed time

        early_stopping = self.early_stopping
        if early_stopping:
            X, X_val, y, y_val, sample_weight, sw_val, train_rows = (
                self._split_validation(X, y, sample_weight))
            report.restrict_epochs_to(train_rows)
            if not hasattr(self, "_best_state") or self._best_state is None:
                self._best_state = network.get_state()
        else:
            X_val = y_val = sw_val = None

        n_samples = X.shape[0]
        batch_size = min(self.batch_size, n_samples)
        n_epochs, min_epochs, n_minibatches = self._epoch_plan(n_samples)
        if not incremental or not hasattr(self, "_optimizer"):
            # partial_fit's calls are the epochs of the plan of its first call.
            self._optimizer = self._make_optimizer(n_epochs)
        optimizer = self._optimizer
        sample_idx = np.arange(n_samples)
        if not incremental:
            self.n_iter_ = 0
        rng = self._random_state
        # The last finished epoch, for KeyboardInterrupt and a diverging loss.
        self._last_epoch = self._snapshot()
        try:
            # Overflow shows up as a non-finite loss or weights, which stop fit with
            # a clear error; numpy's RuntimeWarnings on the way would only add noise.
            with np.errstate(over="ignore", invalid="ignore"):
                for _ in range(1 if incremental else n_epochs):
                    epoch_start = time.perf_counter()
                    report.begin_epoch(n_minibatches)
                    if self.shuffle:
                        sample_idx = shuffle(sample_idx, random_state=rng)
                    self._run_epoch(X, y, sample_weight, sample_idx, batch_size,
                                    n_threads, first_pass, report)
                    epoch_time = time.perf_counter() - epoch_start
                    self.t_ += n_samples
                    self.loss_curve_.append(self.loss_)
                    self._update_no_improvement_count(early_stopping, X_val, y_val,
                                                      sw_val, n_threads)
                    if self.verbose:
                        # One line per epoch, from numbers already at hand: the
                        # validation score is the one early stopping computed.
                        # images/s counts the training pass only (not validation).
                        score = (f", validation score = "
                                 f"{self.validation_scores_[-1]:f}"
                                 if early_stopping else "")
                        print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}"
                              f"{score}, time = {epoch_time:.2f} s, elapsed = "
                              f"{time.perf_counter() - fit_start:.2f} s, "
                              f"{n_samples / max(epoch_time, 1e-9):.0f} images/s",
                              flush=True)
                    optimizer.iteration_ends(self.t_)
                    self._last_epoch = self._snapshot()

                    if report.end_epoch(self._fitted_copy_attributes):
                        if self.verbose:
                            print("Training stopped by a callback.", flush=True)
                        break
                    # Before min_updates, a stall may lower the rate ('adaptive')
                    # but not stop training.
                    if self._no_improvement_count > self.n_iter_no_change and (
                            self.n_iter_ >= min_epochs
                            or optimizer.lowers_rate_on_plateau):
                        what = ("Validation score" if early_stopping
                                else "Training loss")
                        msg = (f"{what} did not improve more than tol={self.tol:f} "
                               f"for {self.n_iter_no_change} consecutive epochs.")
                        if optimizer.trigger_stopping(msg, self.verbose):
                            break
                        self._no_improvement_count = 0
                    if incremental:
                        break
                    if self.n_iter_ == n_epochs:
                        min_updates = self._option("min_updates")
                        budget = ("" if n_epochs == self.max_iter else
                                  f", the epochs that min_updates={min_updates} "
                                  f"takes at {n_minibatches} minibatches per epoch")
                        warnings.warn(
                            f"Stochastic Optimizer: Maximum iterations "
                            f"({n_epochs}{budget}) reached and the optimization "
                            "hasn't converged yet.",
                            ConvergenceWarning,
                        )
        except KeyboardInterrupt:
            # Mid-epoch weights are a half-applied epoch: go back to the last
            # finished one, whose counters and loss_curve_ are already recorded.
            self._restore(self._last_epoch)
            report.interrupted()
            warnings.warn(
                f"Training interrupted by user; keeping the model of the last "
                f"finished epoch (n_iter_={self.n_iter_}).",
                UserWarning,
            )
        finally:
            self._last_epoch = None  # a copy of every weight: don't keep (or pickle) it
        if early_stopping:
            network.set_state(self._best_state)

    def _run_epoch(self, X, y, sample_weight, sample_idx, batch_size, n_threads,
                   first_pass, report):
        """One pass over the (shuffled) training data; sets loss_ and n_iter_."""
        minibatch_begin, minibatch_end = report.minibatch_hooks()
        try:
            loss = run_epoch(self._network, self._optimizer, X, y, sample_weight,
                             sample_idx, batch_size=batch_size, alpha=self.alpha,
                             loss=self._loss_and_grad, n_threads=n_threads,
                             minibatch_begin=minibatch_begin,
                             minibatch_end=minibatch_end)
        except VanishingBatchWeight as exc:
            self._non_finite(
                exc.what, first_pass,
                cause=f"{exc.cause}. Scale sample_weight (and class_weight) up: "
                      f"multiplying them and alpha by the same factor gives the same "
                      f"model.")
        except NonFiniteTraining as exc:
            self._non_finite(exc.what, first_pass)
        self.n_iter_ += 1
        self.loss_ = loss

    def _non_finite(self, what, first_pass, cause=None):
        """Stop fit with a ValueError: ``what`` failed; ``cause`` says why (by
        default: the optimization diverged)."""
        epoch = self.n_iter_ + 1
        if first_pass:
            self._forget_fit()
            state = "The estimator is left unfitted."
        else:
            self._restore(self._last_epoch)
            self._last_epoch = None
            state = (f"The estimator keeps the model of its last finished epoch "
                     f"(n_iter_={self.n_iter_}).")
        if cause is None:
            rate = self._option("learning_rate_init")
            cause = (
                f"the optimization diverged. Try a smaller learning_rate_init (now "
                f"{rate!r}), and scale X to about [0, 1] or standardize it (e.g. "
                f"with StandardScaler).")
        raise ValueError(f"The training {what} epoch {epoch}: {cause} {state}")

    def _split_validation(self, X, y, sample_weight):
        from sklearn.model_selection import train_test_split

        # The row numbers too: the callbacks see the training part of fit's data.
        arrays = [X, y, np.arange(X.shape[0])] + (
            [] if sample_weight is None else [sample_weight])
        try:
            parts = train_test_split(
                *arrays, random_state=self._random_state,
                test_size=self.validation_fraction, stratify=self._stratify(y),
            )
        except ValueError as exc:
            raise ValueError(
                f"early_stopping could not split off a validation set "
                f"(validation_fraction={self.validation_fraction}): {exc}"
            ) from None
        X_train, X_val, y_train, y_val, train_rows, _ = parts[:6]
        sw_train, sw_val = parts[6:] if sample_weight is not None else (None, None)
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' "
                "or the size of your dataset."
            )
        return X_train, X_val, y_train, y_val, sw_train, sw_val, train_rows

    def _stratify(self, y):
        return None

    def _update_no_improvement_count(self, early_stopping, X_val, y_val, sw_val,
                                     n_threads):
        # scikit-learn's MLP rule, unchanged.
        if early_stopping:
            score = self._validation_score(X_val, y_val, sw_val, n_threads)
            self.validation_scores_.append(score)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_state = self._network.get_state()
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if self.loss_curve_[-1] < self.best_loss_:
                self.best_loss_ = self.loss_curve_[-1]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.three_d_array = True
        return tags
