"""ConvNetClassifier: a configurable LeNet-5 with the scikit-learn API; and the
classification machinery it shares with ConvNetTransformer.

:class:`BaseClassificationNet` holds what any estimator trained on class labels needs:
the targets (one label per sample, or a binary indicator matrix for multilabel
problems), ``classes_``, class weights, the loss (softmax or sigmoid cross-entropy)
and the validation accuracy. :class:`ConvNetClassifier` adds ``partial_fit`` and the
prediction methods, ``ConvNetTransformer`` (:mod:`.transformer`) ``transform``.
"""

import numpy as np
from scipy import sparse
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
    type_of_target,
)
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import docstrings
from .base import BaseConvNet
from .._nn.loss import sigmoid, sigmoid_cross_entropy, softmax, softmax_cross_entropy

__all__ = ["BaseClassificationNet", "ConvNetClassifier"]


class BaseClassificationNet(BaseConvNet):
    """Training on class labels, for the classifier and the transformer.

    Two kinds of targets:

    - 1-D ``y`` of labels (at least two classes): one softmax over ``n_classes``
      outputs, trained on the softmax cross-entropy;
    - a 2-D binary indicator matrix ``y`` of shape ``(n_samples, n_labels)``
      (multilabel, as ``MLPClassifier`` takes it): ``n_labels`` independent sigmoid
      outputs, trained on the binary cross-entropy summed over the labels;
      ``classes_`` is then ``arange(n_labels)``, as ``MLPClassifier`` sets it.

    A column vector ``(n_samples, 1)`` is read as 1-D labels, with a
    ``DataConversionWarning``. Not for direct use.
    """

    _parameter_constraints: dict = {
        **BaseConvNet._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

    #: Multilabel targets; set by fit (the class value is for models pickled before
    #: multilabel support, which are all single-label).
    _multilabel = False

    # ---------------------------------------------------------------------------------
    # Targets and weights
    # ---------------------------------------------------------------------------------
    def _encode_targets(self, y, incremental, first_pass):
        y, multilabel = self._check_targets(y)
        if first_pass:
            self._multilabel = multilabel
        elif multilabel != self._multilabel:
            fitted = "a multilabel indicator matrix" if self._multilabel else "labels"
            raise ValueError(
                f"y must be {fitted}, as in the first call to fit or partial_fit, "
                f"got {'an indicator matrix' if multilabel else 'labels'}")
        if multilabel:
            return self._encode_indicator(y, first_pass)
        return self._encode_labels(y, incremental, first_pass)

    def _check_targets(self, y):
        """``(y, multilabel)``: 1-D labels, or a 2-D indicator matrix as an array."""
        if sparse.issparse(y):
            y = y.toarray()
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if y.ndim == 1:
            check_classification_targets(y)
            return y, False
        y_type = type_of_target(y, input_name="y")
        if y_type != "multilabel-indicator":
            raise ValueError(
                f"{type(self).__name__} takes 1-D class labels or a 2-D binary "
                f"indicator matrix (multilabel); got y of shape {y.shape} and type "
                f"{y_type!r}")
        return y, True

    def _encode_indicator(self, y, first_pass):
        n_labels = y.shape[1]
        if first_pass:
            self.classes_ = np.arange(n_labels)
            self._label_encoder = None
        elif n_labels != len(self.classes_):
            raise ValueError(
                f"y has {n_labels} labels, but {type(self).__name__} was fitted with "
                f"{len(self.classes_)}")
        return y.astype(np.float64), n_labels

    def _encode_labels(self, y, incremental, first_pass):
        if incremental:
            # classes_ was set by partial_fit from `classes`.
            unknown = np.setdiff1d(np.unique(y), self.classes_)
            if len(unknown):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {np.unique(y)}."
                )
        elif first_pass:
            self._label_encoder = LabelEncoder().fit(y)
            self.classes_ = self._label_encoder.classes_
        else:  # warm start
            classes = np.unique(y)
            if set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as "
                    f"in the previous call to fit. Previously got {self.classes_}, "
                    f"`y` has {classes}"
                )
        y_index = self._label_encoder.transform(y).astype(np.intp, copy=False)
        return y_index, len(self.classes_)

    def _combined_weights(self, targets, sample_weight, incremental):
        """sample_weight times class_weight (None when both are None)."""
        if self.class_weight is None:
            return sample_weight
        if self._multilabel:
            raise ValueError(
                "class_weight is not supported for multilabel targets: weight the "
                "samples with sample_weight instead.")
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: the "
                "class frequencies of one batch are not those of the data. Pass a "
                "dict computed with sklearn.utils.class_weight.compute_class_weight."
            )
        per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                         y=self.classes_[targets])
        # A negative weight would turn the loss of its class upside down (the model
        # then avoids that class), NaN and inf poison every sum: refuse them here,
        # where the message can name the classes.
        bad = ~np.isfinite(per_class) | (per_class < 0)
        if bad.any():
            given = ", ".join(f"{label!r}: {weight!r}" for label, weight in
                              zip(self.classes_[bad].tolist(), per_class[bad].tolist()))
            raise ValueError(
                f"class_weight must give every class a finite, non-negative weight, "
                f"got {{{given}}}"
            )
        weights = per_class[targets]
        with np.errstate(over="ignore"):  # an overflow is reported by _fit_checked
            if sample_weight is not None:
                weights = weights * sample_weight
            positive_total = weights.sum() > 0
        if not positive_total:
            raise ValueError(
                "class_weight and sample_weight give every sample a zero weight.")
        return weights

    def _check_learnable(self, targets, weights):
        if self._multilabel:
            return  # a label that is always (or never) on is learnable too
        present = np.unique(targets if weights is None else targets[weights > 0])
        if len(present) < 2:
            label = self.classes_[present[0]] if len(present) else None
            with_weights = "" if weights is None else " with non-zero weight"
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes"
                f"{with_weights} in the data, but the data contains only one "
                f"class: {label}"
            )

    def _stratify(self, y):
        # scikit-learn's MLP does not stratify multilabel targets either.
        return None if self._multilabel else y

    # ---------------------------------------------------------------------------------
    # Loss, validation, probabilities
    # ---------------------------------------------------------------------------------
    def _loss_and_grad(self, logits, y, sample_weight):
        if self._multilabel:
            return sigmoid_cross_entropy(logits, y, sample_weight)
        return softmax_cross_entropy(logits, y, sample_weight)

    def _validation_score(self, X, y, sample_weight, n_threads):
        logits = self._forward(X, n_threads)
        if self._multilabel:  # subset accuracy, as MLPClassifier's
            return accuracy_score(y.astype(int), self._indicator(logits),
                                  sample_weight=sample_weight)
        return accuracy_score(y, np.argmax(logits, axis=1), sample_weight=sample_weight)

    def _proba(self, logits):
        """Probabilities from logits: softmax rows, or per-label sigmoids."""
        return sigmoid(logits) if self._multilabel else softmax(logits)

    def _indicator(self, logits):
        """The predicted indicator matrix: probability above 0.5 (MLPClassifier's
        threshold), as ints like ``MLPClassifier.predict``."""
        return (sigmoid(logits) > 0.5).astype(int)

    @property
    def out_activation_(self):
        """'softmax' (one label per sample) or 'logistic' (multilabel): the output
        function of the fitted network, named as ``MLPClassifier`` names it."""
        check_is_fitted(self)
        return "logistic" if self._multilabel else "softmax"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


_AUTO_WHY = ("The classifier's default is 'auto' (see ``auto_options_``): on held-out "
             "UCR/UEA time series the signals' options raise the mean test accuracy "
             "from 0.667 to 0.872 (README, 'Learning options'); on images with a long "
             "budget, batch norm after the pooling with a five times higher rate and "
             "one-pixel shifts raise 10 Fashion-MNIST epochs from 0.910 to 0.923, "
             "while on short budgets (scikit-learn's digits) batch norm costs "
             "accuracy and two wider blocks of 3x3 kernels gain it instead (digits "
             "0.980 to 0.987).")


class ConvNetClassifier(ClassifierMixin, BaseClassificationNet):
    __doc__ = docstrings.fill("""Convolutional network classifier: a configurable LeNet-5.

    The network is ``[conv -> activation -> pool] * len(filters)``, flatten,
    ``[dense -> activation] * len(hidden_layer_sizes)``, dense output with a softmax,
    trained by minibatch Adam or SGD on the softmax cross-entropy plus an L2 penalty.
    With ``filters=(6, 16), kernel_size=5`` this is LeNet-5 (LeCun et al., 1998) with
    relu and max pooling: conv 6@5x5 -> pool 2 -> conv 16@5x5 -> pool 2 -> 120 -> 84
    -> n_classes.
    Batch normalisation, dropout, a global-pooling head (``batch_norm``,
    ``dropout``, ``spatial_dropout``, ``head``), augmentation (``augment_shift``,
    ``augment_flip``, ``augment_scale``, ``augment_noise``), learning-rate schedules
    (``learning_rate``) and an update budget for small data (``min_updates``) are
    options. Their defaults keep this
    LeNet-5 for volumes and flat tabular ``X``; images on short budgets (below
    4,000 planned updates, such as scikit-learn's digits) train its topology with
    two wider blocks, conv 16@3x3 -> pool 2 -> conv 32@3x3 -> pool 2; signals
    declared as such
    (N-d ``X`` of shape ``(n_samples, C, L)``) train three wider conv blocks
    (16, 32 and 64 kernels of 7 taps) with batch norm, a global average pooling
    head, random delays, a cosine schedule and at least 2,000 updates, what
    convolutional networks for time series use (``auto_options_``). Every
    kind of input gets a cosine schedule on a long budget (``learning_rate``),
    images on such a budget (from 4,000 planned updates, e.g. 10 epochs of
    60,000 images) also batch norm after each pooling, ``learning_rate_init=5e-3``
    and one-pixel random shifts, and non-negative images and tabular ``X`` are divided by their largest
    value (``input_scaling``), so that raw 0-255 pixels train as ``X / 255``.

    **Multilabel.** A 2-D binary indicator ``y`` of shape ``(n_samples, n_labels)``
    trains ``n_labels`` independent sigmoid outputs on the binary cross-entropy
    (summed over the labels), as ``MLPClassifier`` does: ``predict`` returns the
    indicator matrix (a label is on when its probability is above 0.5),
    ``predict_proba`` the per-label probabilities, ``score`` the subset accuracy,
    and ``classes_`` is ``arange(n_labels)``.

    {input}

    Probabilities are returned in float64 whatever the dtype.

    Read more in the scikit-learn user guide on neural networks
    (``MLPClassifier``), whose conventions this estimator follows.

    Parameters
    ----------
    {architecture_and_solver}

    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplying ``sample_weight``: ``{label: weight}``
        with finite, non-negative weights, or 'balanced' for
        ``n_samples / (n_classes * np.bincount(y))``. 'balanced' is not available in
        ``partial_fit`` (the classes of one batch are not those of the data), nor is
        ``class_weight`` for multilabel ``y``.

    {run}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels; ``arange(n_labels)`` for multilabel ``y``.

    out_activation_ : str
        'softmax' for 1-D labels, 'logistic' (independent sigmoids) for multilabel
        ``y``; ``MLPClassifier``'s attribute.

    {input_attributes}

    loss_ : float
        Training loss (cross-entropy plus L2, weighted mean over the epoch) of the
        last epoch.

    validation_scores_ : list of float or None
        Accuracy on the held-out set after every epoch (``early_stopping`` only;
        stratified split for 1-D ``y``, subset accuracy for multilabel ``y``).

    {training_attributes}

    See Also
    --------
    ConvNetRegressor : The same network for regression.
    ConvNetTransformer : The same network, trained on labels, as a feature extractor.
    sklearn.neural_network.MLPClassifier : Multi-layer perceptron classifier.

    Notes
    -----
    {notes}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.model_selection import train_test_split
    >>> from skconv import ConvNetClassifier
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(
    ...     X / 16, y, stratify=y, random_state=0)
    >>> clf = ConvNetClassifier(random_state=0).fit(X_train, y_train)
    >>> clf.image_shape_
    (1, 8, 8)
    >>> clf.score(X_test, y_test) > 0.98
    True
    """, defaults={"batch_norm": ("'auto'", _AUTO_WHY), **{
        name: ("'auto'", "The classifier's default: see ``auto_options_``.")
        for name in ("filters", "kernel_size", "head", "augment_shift",
                     "input_scaling", "learning_rate", "learning_rate_init",
                     "min_updates")}})

    def __init__(
        self,
        image_shape=None,
        filters="auto",
        kernel_size="auto",
        stride=1,
        padding="same",
        dilation=1,
        activation="relu",
        pooling="max",
        pool_size=2,
        pool_stride=None,
        hidden_layer_sizes=(120, 84),
        batch_norm="auto",
        batch_norm_position="auto",
        dropout=0.0,
        spatial_dropout=0.0,
        head="auto",
        augment_shift="auto",
        augment_flip=False,
        augment_scale=0.0,
        augment_noise=0.0,
        input_scaling="auto",
        solver="adam",
        learning_rate="auto",
        learning_rate_init="auto",
        power_t=0.5,
        alpha=1e-4,
        batch_size=64,
        max_iter=100,
        min_updates="auto",
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
        class_weight=None,
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
        self.class_weight = class_weight
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
        """Fit the network to images (or signals, or volumes) X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Training data, scaled to about [0, 1] or standardized. Rows are samples
            flattened in C order from ``image_shape_`` (channels first).

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels (at least two classes), or a binary indicator matrix
            (multilabel).

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of 2 counts like a duplicated sample.
            Multiplied by ``class_weight``.

        Returns
        -------
        self : ConvNetClassifier
            The fitted estimator.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    @_fit_context(prefer_skip_nested_validation=True)
    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """Run one epoch over (X, y), building the network on the first call.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Training data.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels, all in ``classes``; or a binary indicator matrix
            (multilabel) with the columns of the first call.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data set: required on the first call, ignored
            later. ``y`` of one call need not contain them all. For multilabel
            ``y``, ``classes_`` becomes ``arange(n_labels)`` whatever is given here
            (``MLPClassifier``'s rule).

        Returns
        -------
        self : ConvNetClassifier
            The updated estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_encoder = LabelEncoder().fit(self.classes_)
            self.classes_ = self._label_encoder.classes_
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

    # ---------------------------------------------------------------------------------
    # Prediction
    # ---------------------------------------------------------------------------------
    def predict(self, X):
        """Predict class labels (or, for multilabel, the indicator matrix).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        y : ndarray of shape (n_samples,) or (n_samples, n_labels)
            Predicted labels, from ``classes_``; for multilabel ``y``, the int
            indicator matrix (1 where the label's probability is above 0.5).
        """
        check_is_fitted(self)
        logits = self._forward(self._validate_predict_data(X))
        if self._multilabel:
            return self._indicator(logits)
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's output), or for multilabel
        ``y`` each label's probability (its sigmoid).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; rows sum to 1 (multilabel: each
            entry is one label's probability, the rows need not sum to 1).
        """
        check_is_fitted(self)
        return self._proba(self._forward(self._validate_predict_data(X)))

    def predict_log_proba(self, X):
        """Log of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float64
            ``log(predict_proba(X))``; -inf only for a probability below ~1e-308.
        """
        proba = self.predict_proba(X)
        with np.errstate(divide="ignore"):
            return np.log(proba, out=proba)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = True
        tags.classifier_tags.multi_label = True
        return tags
