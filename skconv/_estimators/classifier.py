"""ConvNetClassifier: a configurable LeNet-5 with the scikit-learn API."""

import numpy as np
from sklearn.base import ClassifierMixin, _fit_context
from sklearn.metrics import accuracy_score
from sklearn.preprocessing import LabelEncoder
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import (
    _check_partial_fit_first_call,
    check_classification_targets,
)
from sklearn.utils.validation import _check_sample_weight, check_is_fitted

from .base import BaseConvNet
from .._nn.loss import softmax, softmax_cross_entropy

__all__ = ["ConvNetClassifier"]


class ConvNetClassifier(ClassifierMixin, BaseConvNet):
    """Convolutional neural network classifier: a configurable LeNet-5.

    The network is ``[conv -> activation -> pool] * len(filters)``, flatten,
    ``[dense -> activation] * len(hidden_layer_sizes)``, dense output with a softmax,
    trained by minibatch Adam or SGD on the softmax cross-entropy plus an L2 penalty.
    With the defaults this is LeNet-5 (LeCun et al., 1998) with relu and max pooling:
    conv 6@5x5 -> pool 2 -> conv 16@5x5 -> pool 2 -> 120 -> 84 -> n_classes.

    The same estimator handles 1-D signals, 2-D images (gray or multi-channel, e.g.
    RGB) and 3-D volumes: the number of spatial axes of ``image_shape_`` picks 1-D,
    2-D or 3-D convolution and pooling.

    **Input.** The standard ``X`` is 2-D, ``(n_samples, n_features)``, each row one
    sample flattened in C order from ``(C, *spatial)`` (channels first: an RGB image
    stored as ``(H, W, 3)`` must be transposed to ``(3, H, W)`` before flattening).
    This is what pipelines, scalers and cross-validation pass around. N-d ``X`` of
    shape ``(n_samples, C, *spatial)`` is accepted too (e.g. ``(n, 3, 32, 32)``
    RGB images or ``(n, 1, 16, 16, 16)`` volumes); it is flattened on entry, so
    ``n_features_in_`` is always the number of values per sample,
    ``prod(image_shape_)``, and predict accepts either form. Note that a 3-D ``X``
    ``(n, H, W)`` is read as ``(n, C, L)`` (multi-channel signals) unless
    ``image_shape`` says otherwise, e.g. ``image_shape=(H, W)``.

    **Scaling.** Scale the inputs to about [0, 1] (e.g. pixel values / 255) or
    standardize them (``StandardScaler`` in a pipeline). The initialisation
    (He-uniform for relu) and the Adam step size assume inputs of order one; raw
    pixel values in [0, 255] train poorly and may diverge.

    **dtype.** float32 ``X`` is trained and predicted in float32 (weights, activations
    and gradients); float64 ``X`` - numpy's default - and every other numeric dtype
    in float64, the rule of scikit-learn's ``MLPClassifier``. Why not always float32:
    float32 results change in the last bits with the order of the sums, so a sample
    weight of 2 and a duplicated sample give models that agree only to about 1e-6,
    and scikit-learn's estimator checks (rightly) ask for more. For speed on large
    data pass ``X.astype(np.float32)``: it trains faster (README, "Performance") in
    half the memory, for the same accuracy. Probabilities are float64 either way.

    Read more in the scikit-learn user guide on neural networks
    (``MLPClassifier``), whose conventions this estimator follows.

    Parameters
    ----------
    image_shape : tuple of int, default=None
        Shape of one sample. ``(L,)``: a 1-D signal, one channel. ``(H, W)``: a
        gray image. ``(C, H, W)``: an image with C channels (``(3, H, W)`` for
        RGB). ``(C, D, H, W)``: a volume with C channels. (So a 1-D signal with
        several channels, ``(C, L)``, or a one-channel volume ``(1, D, H, W)``, must
        be given with its channel axis: ``(C, L)`` is read as an image, hence pass
        multi-channel signals as N-d ``X`` ``(n, C, L)``.) Its product must equal
        the number of values per sample. None: inferred - from N-d ``X`` its
        ``X.shape[1:]``; from 2-D ``X`` a perfect square ``n_features = s * s``
        (s >= 2) becomes the image ``(1, s, s)`` and anything else the 1-D signal
        ``(1, n_features)``.

    filters : int or tuple of int, default=(6, 16)
        Number of kernels (output channels) of each conv layer; its length is the
        number of conv (and pool) layers.

    kernel_size : int or tuple, default=5
        Kernel size of the conv layers. Rule for every conv/pool parameter
        (``kernel_size``, ``stride``, ``padding``, ``dilation``, ``pooling``,
        ``pool_size``, ``pool_stride``): a scalar applies to every layer and every
        spatial axis; a tuple with one entry per conv layer gives per-layer
        values, and each entry may itself be a per-axis tuple, e.g.
        ``kernel_size=((5, 3), (3, 3))``; a tuple of ints with one entry per
        spatial axis (and a length different from the number of layers) applies
        per axis to every layer. When the length equals both (e.g. ``(5, 3)`` with
        two conv layers on images), it is read per layer.

    stride : int or tuple, default=1
        Stride of the conv layers (same rule).

    padding : int, tuple, 'same' or 'valid', default='same'
        Zero padding of the conv layers (same rule). 'same' keeps
        ``out = ceil(in / stride)`` (TensorFlow's rule, the extra cell at the end);
        'valid' pads nothing. 'same' (LeNet-5 used 'valid' on 32x32 inputs) keeps
        7x7 maps on 28x28 images and lets tiny inputs through. A configuration that
        cannot give a valid network (a 'valid' 5x5 kernel on a 2x2 map) raises a
        ValueError naming the layer and the shapes.

    dilation : int or tuple, default=1
        Dilation of the conv kernels (same rule).

    activation : {'relu', 'tanh', 'logistic', 'identity', 'leaky_relu'}, \
            default='relu'
        Activation after every conv and hidden dense layer. Weights feeding relu
        and leaky relu units get He-uniform initialisation, the others (and the
        output layer) Glorot-uniform; biases start at zero.

    pooling : {'max', 'avg', 'min'} or tuple of them, default='max'
        Pooling after each conv layer (one value, or one per layer).

    pool_size : int or tuple, default=2
        Pooling window (same rule as ``kernel_size``). Pooling never shrinks an
        axis below 1: on an axis smaller than the window, the window is clipped to
        the axis, so an axis of size 1 passes through unchanged and an axis of 3
        with window 2 gives 1 cell. Tiny inputs, such as 2 features, train.

    pool_stride : None, int or tuple, default=None
        Pooling stride (same rule); None means the (unclipped) window.

    hidden_layer_sizes : tuple of int, default=(120, 84)
        Units of the dense layers between the last pool and the output layer. The
        size feeding the first one is computed at fit time from ``image_shape_``.

    solver : {'adam', 'sgd'}, default='adam'
        'adam' (Kingma and Ba) or 'sgd' with momentum, as in ``MLPClassifier``.

    learning_rate_init : float, default=1e-3
        Step size (constant). 1e-3 is Adam's published default; for 'sgd' try
        0.01-0.1.

    alpha : float, default=1e-4
        L2 penalty ``0.5 * alpha * sum ||W||^2 / batch_weight`` on the weights (not
        the biases), scaled by the minibatch's total sample weight as in
        ``MLPClassifier``.

    batch_size : int, default=64
        Minibatch size, clipped to the number of training samples. 64 is the
        usual LeNet/MNIST batch.

    max_iter : int, default=100
        Maximum number of epochs (passes over the training data). Training usually
        stops earlier, when the training loss (or, with ``early_stopping``, the
        validation accuracy) has not improved by ``tol`` for ``n_iter_no_change``
        epochs; hitting ``max_iter`` gives a ``ConvergenceWarning``. 100 rather than
        ``MLPClassifier``'s 200: LeNet-5 reaches its accuracy on MNIST-size data in
        about 10 epochs, while small data sets need many epochs for enough updates
        (``load_digits``: about 90).

    tol : float, default=1e-4
        Tolerance of the stopping rule above.

    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` before stopping.

    early_stopping : bool, default=False
        Hold out ``validation_fraction`` of the training data (stratified), stop
        when its accuracy stops improving and keep the weights of the best epoch.
        Not available in ``partial_fit``.

    validation_fraction : float, default=0.1
        Share of the training data held out for early stopping (in (0, 1)).

    shuffle : bool, default=True
        Shuffle the training data before each epoch.

    momentum : float, default=0.9
        Momentum of 'sgd'.

    nesterovs_momentum : bool, default=True
        Nesterov momentum for 'sgd'.

    beta_1 : float, default=0.9
        Adam's decay rate of the first moment.

    beta_2 : float, default=0.999
        Adam's decay rate of the second moment.

    epsilon : float, default=1e-8
        Adam's numerical-stability term. It must stay non-zero and finite in the
        compute dtype (float32 for float32 ``X``, where e.g. 1e-50 is 0).

    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes, multiplying ``sample_weight``: ``{label: weight}``
        with finite, non-negative weights, or 'balanced' for
        ``n_samples / (n_classes * np.bincount(y))``. 'balanced' is not available in
        ``partial_fit`` (the classes of one batch are not those of the data).

    random_state : int, RandomState instance or None, default=None
        The one source of randomness: weight initialisation, shuffling and the
        validation split. An int gives identical results on every fit, whatever
        ``n_jobs`` is.

    warm_start : bool, default=False
        Reuse the network of the previous fit as the starting point (the
        architecture parameters of that fit stay in force) with a fresh
        optimizer; otherwise start again.

    verbose : bool, default=False
        Print the loss (and validation score) after every epoch.

    n_jobs : int, default=None
        OpenMP threads of the convolution and pooling kernels, decided once per
        call to fit / predict. None or -1: all usable cores, as limited by
        ``OMP_NUM_THREADS`` and threadpoolctl, so that inside a parallel
        ``GridSearchCV`` (whose workers are given a share of the cores) nothing is
        oversubscribed; a positive int: that many, at most the usable cores.
        Results do not depend on it.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.

    n_features_in_ : int
        Values per sample seen during fit, ``prod(image_shape_)`` (also for N-d X).

    feature_names_in_ : ndarray of shape (n_features_in_,)
        Feature names, when X was a data frame with string column names.

    image_shape_ : tuple of int
        Shape of one sample as the network sees it, ``(C, *spatial)``.

    conv_weights_ : list of ndarray
        Kernels of the conv layers; entry i has shape
        ``(filters[i], C_i, *kernel_size_i)`` where ``C_0 = image_shape_[0]`` and
        ``C_i = filters[i - 1]``.

    conv_biases_ : list of ndarray
        Biases of the conv layers; entry i has shape ``(filters[i],)``.

    coefs_ : list of ndarray
        Weights of the dense layers, hidden then output; entry i has shape
        ``(n_in_i, n_out_i)``, with ``n_in_0`` the size of the flattened last pool
        output and ``n_out_last = n_classes``.

    intercepts_ : list of ndarray
        Biases of the dense layers; entry i has shape ``(n_out_i,)``.

    loss_ : float
        Training loss (cross-entropy plus L2, weighted mean over the epoch) of the
        last epoch.

    loss_curve_ : list of float
        Training loss of every epoch.

    validation_scores_ : list of float or None
        Accuracy on the held-out set after every epoch (``early_stopping`` only).

    best_validation_score_ : float or None
        Best of ``validation_scores_``; its weights are the ones kept.

    best_loss_ : float or None
        Lowest training loss (None with ``early_stopping``).

    n_iter_ : int
        Epochs run by the last ``fit`` (``partial_fit`` adds one per call).

    t_ : int
        Training samples seen by the optimizer (summed over fits when warm
        starting and over ``partial_fit`` calls).

    See Also
    --------
    sklearn.neural_network.MLPClassifier : Multi-layer perceptron classifier.

    Notes
    -----
    The weights are float32 or float64 like the training data (see dtype above).
    Prediction runs 512 samples at a time, so its memory does not grow with
    ``n_samples`` beyond the output (and the validated input: lists and
    non-float arrays are converted once, float arrays are used as they are).

    A ``KeyboardInterrupt`` during fit stops training with a warning and keeps the
    model of the last finished epoch. A loss that becomes non-finite stops fit
    with a ValueError suggesting a smaller ``learning_rate_init``.

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
    """

    _parameter_constraints: dict = {
        **BaseConvNet._parameter_constraints,
        "class_weight": [dict, StrOptions({"balanced"}), None],
    }

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
        solver="adam",
        learning_rate_init=1e-3,
        alpha=1e-4,
        batch_size=64,
        max_iter=100,
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
        self.solver = solver
        self.learning_rate_init = learning_rate_init
        self.alpha = alpha
        self.batch_size = batch_size
        self.max_iter = max_iter
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

        y : array-like of shape (n_samples,)
            Class labels (at least two classes).

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

        y : array-like of shape (n_samples,)
            Class labels, all in ``classes``.

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights.

        classes : array-like of shape (n_classes,), default=None
            Every class of the whole data set: required on the first call, ignored
            later. ``y`` of one call need not contain them all.

        Returns
        -------
        self : ConvNetClassifier
            The updated estimator.
        """
        if _check_partial_fit_first_call(self, classes):
            self._label_encoder = LabelEncoder().fit(self.classes_)
            self.classes_ = self._label_encoder.classes_
        return self._fit(X, y, sample_weight=sample_weight, incremental=True)

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
        check_classification_targets(y)
        y_index = self._encode_targets(y, incremental, first_pass)
        n_classes = len(self.classes_)

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
        weights = self._combined_weights(y, y_index, sample_weight, incremental)
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
            self._check_two_classes(y_index, weights)

        if first_pass or not incremental or not hasattr(self, "_random_state"):
            self._random_state = check_random_state(self.random_state)
        # else: partial_fit continues the random stream of the previous calls, so
        # that successive epochs are shuffled differently.
        if first_pass:
            self._build_network(n_classes)
            self._best_state = None
            self._init_training_state()
        elif self.early_stopping and self.validation_scores_ is None:
            # Warm start after a fit without early stopping.
            self.validation_scores_, self.best_validation_score_ = [], -np.inf
            self.best_loss_, self._best_state = None, None
        elif not self.early_stopping and self.best_loss_ is None:
            self.validation_scores_ = self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self._fit_stochastic(X, y_index, weights, incremental, first_pass)
        return self

    def _encode_targets(self, y, incremental, first_pass):
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
        return self._label_encoder.transform(y).astype(np.intp, copy=False)

    def _combined_weights(self, y, y_index, sample_weight, incremental):
        """sample_weight times class_weight (None when both are None)."""
        if self.class_weight is None:
            return sample_weight
        if incremental and self.class_weight == "balanced":
            raise ValueError(
                "class_weight='balanced' is not supported for partial_fit: the "
                "class frequencies of one batch are not those of the data. Pass a "
                "dict computed with sklearn.utils.class_weight.compute_class_weight."
            )
        per_class = compute_class_weight(self.class_weight, classes=self.classes_,
                                         y=y)
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
        weights = per_class[y_index]
        with np.errstate(over="ignore"):  # an overflow is reported by _fit_checked
            if sample_weight is not None:
                weights = weights * sample_weight
            positive_total = weights.sum() > 0
        if not positive_total:
            raise ValueError(
                "class_weight and sample_weight give every sample a zero weight.")
        return weights

    def _check_two_classes(self, y_index, weights):
        present = np.unique(y_index if weights is None else y_index[weights > 0])
        if len(present) < 2:
            label = self.classes_[present[0]] if len(present) else None
            with_weights = "" if weights is None else " with non-zero weight"
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes"
                f"{with_weights} in the data, but the data contains only one "
                f"class: {label}"
            )

    def _stratify(self, y):
        return y

    def _loss_and_grad(self, logits, y, sample_weight):
        return softmax_cross_entropy(logits, y, sample_weight)

    def _validation_score(self, X, y, sample_weight, n_threads):
        y_pred = np.argmax(self._forward(X, n_threads), axis=1)
        return accuracy_score(y, y_pred, sample_weight=sample_weight)

    # ---------------------------------------------------------------------------------
    # Prediction
    # ---------------------------------------------------------------------------------
    def predict(self, X):
        """Predict class labels.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Predicted labels, from ``classes_``.
        """
        check_is_fitted(self)
        logits = self._forward(self._validate_predict_data(X))
        return self.classes_[np.argmax(logits, axis=1)]

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's output).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; rows sum to 1.
        """
        check_is_fitted(self)
        return softmax(self._forward(self._validate_predict_data(X)))

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
        return tags
