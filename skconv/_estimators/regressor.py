"""ConvNetRegressor: the LeNet-5 of :mod:`.classifier` with a linear output layer,
for one or several real-valued targets."""

from numbers import Real

import numpy as np
from scipy import sparse
from sklearn.base import RegressorMixin, _fit_context
from sklearn.metrics import r2_score
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import docstrings
from .base import BaseConvNet
from .._nn.loss import REGRESSION_LOSSES

__all__ = ["ConvNetRegressor"]


class ConvNetRegressor(RegressorMixin, BaseConvNet):
    __doc__ = docstrings.fill("""Convolutional network regressor: a configurable LeNet-5.

    The network of :class:`ConvNetClassifier` - ``[conv -> activation -> pool] *
    len(filters)``, flatten, ``[dense -> activation] * len(hidden_layer_sizes)`` -
    ending in a linear dense layer with one unit per target, trained by minibatch
    Adam or SGD on the half squared error plus an L2 penalty, the objective of
    ``MLPRegressor``. ``y`` is 1-D (one target) or ``(n_samples, n_targets)``;
    ``predict`` returns the shape ``y`` had at fit, and ``score`` is R² (averaged
    over the targets).
    The options of :class:`ConvNetClassifier` (``batch_norm``, ``dropout``,
    ``spatial_dropout``, ``head``, ``augment_shift``, ``learning_rate``,
    ``min_updates``) apply alike; only ``dropout`` has another default (0.2).

    **Targets.** The output layer starts near 0 and the step size is the same for
    every target, so targets of order one (standardized, or a few units) train
    best; ``TransformedTargetRegressor(regressor=..., transformer=StandardScaler())``
    standardizes them and maps the predictions back.

    {input}

    Predictions are returned in float64 whatever the dtype.

    Read more in the scikit-learn user guide on neural networks
    (``MLPRegressor``), whose conventions this estimator follows.

    Parameters
    ----------
    {architecture_and_solver}

    loss : {'squared_error', 'huber'}, default='squared_error'
        'squared_error': ``0.5 * (y - p)^2`` per target, summed over the targets and
        averaged over the samples (with their weights); its gradient is the one
        ``MLPRegressor`` descends. 'huber': the same near the target and
        ``huber_delta * (|y - p| - 0.5 * huber_delta)`` beyond ``huber_delta``, so
        that a far-off target (an outlier) pulls with a bounded gradient.

    huber_delta : float, default=1.0
        Where the Huber loss turns from quadratic to linear, in the units of ``y``
        (only used with ``loss='huber'``). 1.0 is the usual default (PyTorch's
        ``HuberLoss``, Keras' ``Huber``) and suits standardized targets: scale it
        with the spread of ``y`` otherwise.

    {run}

    Attributes
    ----------
    n_outputs_ : int
        Number of targets.

    out_activation_ : str
        'identity' (a linear output layer), as ``MLPRegressor`` names it.

    {input_attributes}

    loss_ : float
        Training loss (the ``loss`` plus L2, weighted mean over the epoch) of the
        last epoch. With several targets it is the sum over the targets, the
        function the gradient belongs to; ``MLPRegressor`` descends the same one
        but reports the mean over the targets.

    validation_scores_ : list of float or None
        R² on the held-out set after every epoch (``early_stopping`` only; the
        split is not stratified).

    {training_attributes}

    See Also
    --------
    ConvNetClassifier : The same network for classification.
    sklearn.neural_network.MLPRegressor : Multi-layer perceptron regressor.

    Notes
    -----
    {notes}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skconv import ConvNetRegressor
    >>> X, y = load_digits(return_X_y=True)  # regress the digit's value
    >>> X_train, X_test, y_train, y_test = train_test_split(
    ...     X / 16, y, stratify=y, random_state=0)
    >>> reg = ConvNetRegressor(random_state=0).fit(X_train, y_train)
    >>> reg.predict(X_test).shape
    (450,)
    >>> reg.score(X_test, y_test) > 0.9
    True
    """, defaults={"dropout": ("0.2", (
        "The regressor's default is 0.2, the classifier's 0: without dropout the "
        "regressor fits its training images almost exactly and predicts new ones "
        "worse; 0.2 was chosen on held-out splits of the digits regression "
        "(the README's regression section gives the measurement)."))})

    _parameter_constraints: dict = {
        **BaseConvNet._parameter_constraints,
        "loss": [StrOptions(set(REGRESSION_LOSSES))],
        "huber_delta": [Interval(Real, 0, None, closed="neither")],
    }

    _y_numeric = True

    def __init__(
        self,
        image_shape=None,
        filters=(6, 16),
        kernel_size=5,
        stride=1,
        padding="same",
        dilation=1,
        activation="relu",
        pooling="max",
        pool_size=2,
        pool_stride=None,
        hidden_layer_sizes=(120, 84),
        batch_norm=False,
        batch_norm_position="auto",
        dropout=0.2,
        spatial_dropout=0.0,
        head="flatten",
        augment_shift=0.0,
        augment_flip=False,
        augment_scale=0.0,
        augment_noise=0.0,
        input_scaling=None,
        solver="adam",
        learning_rate="constant",
        learning_rate_init=1e-3,
        power_t=0.5,
        alpha=1e-4,
        batch_size=64,
        max_iter=100,
        min_updates=0,
        tol=1e-4,
        n_iter_no_change=10,
        early_stopping=False,
        validation_fraction=0.1,
        shuffle=True,
        momentum=0.9,
        nesterovs_momentum=True,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        loss="squared_error",
        huber_delta=1.0,
        random_state=None,
        warm_start=False,
        verbose=False,
        compute_dtype="auto",
        n_jobs=None,
    ):
        self.image_shape = image_shape
        self.filters = filters
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.dilation = dilation
        self.activation = activation
        self.pooling = pooling
        self.pool_size = pool_size
        self.pool_stride = pool_stride
        self.hidden_layer_sizes = hidden_layer_sizes
        self.batch_norm = batch_norm
        self.batch_norm_position = batch_norm_position
        self.dropout = dropout
        self.spatial_dropout = spatial_dropout
        self.head = head
        self.augment_shift = augment_shift
        self.augment_flip = augment_flip
        self.augment_scale = augment_scale
        self.augment_noise = augment_noise
        self.input_scaling = input_scaling
        self.solver = solver
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.min_updates = min_updates
        self.tol = tol
        self.n_iter_no_change = n_iter_no_change
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.shuffle = shuffle
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.loss = loss
        self.huber_delta = huber_delta
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.compute_dtype = compute_dtype
        self.n_jobs = n_jobs

    # ---------------------------------------------------------------------------------
    # Fitting
    # ---------------------------------------------------------------------------------
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Fit the network to images (or signals, or volumes) X and targets y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Training data, scaled to about [0, 1] or standardized. Rows are samples
            flattened in C order from ``image_shape_`` (channels first).

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of 2 counts like a duplicated sample.

        Returns
        -------
        self : ConvNetRegressor
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None):
        """Run one epoch over (X, y), building the network on the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values, with the number of targets of the first call.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        Returns
        -------
        self : ConvNetRegressor
            The updated estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    def _encode_targets(self, y, incremental, first_pass):
        if sparse.issparse(y):
            y = y.toarray()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (n_samples,) or (n_samples, n_targets), "
                             f"got shape {y.shape}")
        targets = y.reshape(y.shape[0], -1)
        n_targets = targets.shape[1]
        if first_pass:
            self.n_outputs_ = n_targets
            self._y_ndim = y.ndim
        elif n_targets != self.n_outputs_:
            raise ValueError(
                f"y has {n_targets} target{'s' if n_targets != 1 else ''}, but "
                f"{type(self).__name__} was fitted with {self.n_outputs_}")
        return targets, n_targets

    def _init_outputs(self, targets, weights):
        # The output biases start at the best constant prediction - the targets'
        # (weighted) mean for the squared error, their median for Huber, which the
        # outliers Huber is for would not drag - and the weights learn the deviations
        # from it: from zero biases, Adam's steps of about learning_rate_init would
        # take thousands of updates to carry the output to targets far from 0.
        if self.loss == "huber":
            start = _weighted_median(targets, weights)
        else:
            start = np.average(targets, axis=0, weights=weights)
        self.intercepts_[-1][...] = start

    def _loss_and_grad(self, pred, y, sample_weight):
        if self.loss == "huber":
            return REGRESSION_LOSSES["huber"](pred, y, sample_weight,
                                              delta=self.huber_delta)
        return REGRESSION_LOSSES["squared_error"](pred, y, sample_weight)

    def _validation_score(self, X, y, sample_weight, n_threads):
        return r2_score(y, self._forward(X, n_threads), sample_weight=sample_weight)

    # ---------------------------------------------------------------------------------
    # Prediction
    # ---------------------------------------------------------------------------------
    def predict(self, X):
        """Predict the targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_targets), float64
            1-D when ``y`` was 1-D at fit, 2-D otherwise (also for one target given
            as a column, as ``LinearRegression`` does).
        """
        check_is_fitted(self)
        pred = self._forward(self._validate_predict_data(X))
        return pred.ravel() if self._y_ndim == 1 else pred

    @property
    def out_activation_(self):
        """'identity': the fitted network's output is linear (``MLPRegressor``'s
        attribute)."""
        check_is_fitted(self)
        return "identity"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _weighted_median(values, weights):
    """Per column of ``values`` (n, k): the value where the cumulated weight of the
    sorted values first reaches half the total (the lower median)."""
    if weights is None:
        weights = np.ones(values.shape[0])
    order = np.argsort(values, axis=0, kind="stable")
    cumulated = np.cumsum(weights[order], axis=0)
    first = np.argmax(cumulated >= 0.5 * cumulated[-1], axis=0)
    columns = np.arange(values.shape[1])
    return values[order[first, columns], columns]
