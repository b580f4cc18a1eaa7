"""ConvNetTransformer: a LeNet-5 trained on class labels, whose hidden activations are
the features it gives a pipeline's next step."""

import math
from numbers import Integral

from sklearn.base import ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.validation import check_is_fitted

from . import docstrings
from .classifier import BaseClassificationNet

__all__ = ["ConvNetTransformer"]


class ConvNetTransformer(ClassNamePrefixFeaturesOutMixin, TransformerMixin,
                         BaseClassificationNet):
    __doc__ = docstrings.fill("""Convolutional features learned on labels: a LeNet-5 as a
    pipeline step.

    ``fit(X, y)`` trains the network of :class:`ConvNetClassifier` on the labels
    ``y`` (the same targets: classes, or a multilabel indicator matrix; the same
    loss, parameters and stopping rules). ``transform(X)`` then returns the
    activations of one of its layers - by default the last hidden dense layer (84
    features with the defaults) - for another model to use, as in
    ``make_pipeline(ConvNetTransformer(), LogisticRegression())``. The features are
    the values the trained network computes on the way to its output, bit for bit.

    The feature names are ``convnettransformer0``, ``convnettransformer1``, ...
    (scikit-learn's rule for transformers whose outputs are not input columns), and
    ``set_output(transform="pandas")`` gives data frames.

    {input}

    The features keep the compute dtype: float32 for float32 ``X``, float64
    otherwise (as scikit-learn's transformers preserve float32).

    Parameters
    ----------
    {architecture_and_solver}

    class_weight : dict, 'balanced' or None, default=None
        Weights of the classes in training, multiplying ``sample_weight``:
        ``{label: weight}``, or 'balanced' for ``n_samples / (n_classes *
        np.bincount(y))``; as in :class:`ConvNetClassifier`.

    feature_layer : int or 'conv', default=-1
        The layer whose activations ``transform`` returns. An int indexes the
        hidden dense layers (``hidden_layer_sizes``): 0 is the first, -1 the last,
        which holds the most task-specific features and the fewest of them.
        'conv': the output of the last conv block, flattened (e.g. 16 * 2 * 2 = 64
        features on 8x8 images) or, with a global pooling ``head``, pooled (16
        features), the most generic ones. Read at ``transform``
        time, so it can be changed after ``fit`` without training again (the
        network does not depend on it).

    {run}

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels of the training targets; ``arange(n_labels)`` for multilabel
        ``y``.

    out_activation_ : str
        The output function of the network in training: 'softmax' for 1-D labels,
        'logistic' for multilabel ``y``.

    {input_attributes}

    loss_ : float
        Training loss (cross-entropy plus L2, weighted mean over the epoch) of the
        last epoch.

    validation_scores_ : list of float or None
        Accuracy of the network's own predictions on the held-out set after every
        epoch (``early_stopping`` only).

    {training_attributes}

    See Also
    --------
    ConvNetClassifier : The same network, predicting the labels itself.

    Notes
    -----
    {notes}

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.model_selection import train_test_split
    >>> from sklearn.pipeline import make_pipeline
    >>> from skconv import ConvNetTransformer
    >>> X, y = load_digits(return_X_y=True)
    >>> X_train, X_test, y_train, y_test = train_test_split(
    ...     X / 16, y, stratify=y, random_state=0)
    >>> pipe = make_pipeline(ConvNetTransformer(random_state=0),
    ...                      LogisticRegression(max_iter=1000))
    >>> pipe.fit(X_train, y_train).score(X_test, y_test) > 0.97
    True
    >>> pipe[0].get_feature_names_out()[:2]
    array(['convnettransformer0', 'convnettransformer1'], dtype=object)
    """)

    _parameter_constraints: dict = {
        **BaseClassificationNet._parameter_constraints,
        "feature_layer": [Integral, StrOptions({"conv"})],
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
        batch_norm=False,
        batch_norm_position="auto",
        dropout=0.0,
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
        class_weight=None,
        feature_layer=-1,
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
        self.feature_layer = feature_layer
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.compute_dtype = compute_dtype
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on images (or signals, or volumes) X and labels y.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Training data, scaled to about [0, 1] or standardized.

        y : array-like of shape (n_samples,) or (n_samples, n_labels)
            Class labels (at least two classes), or a binary indicator matrix
            (multilabel).

        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; a weight of 2 counts like a duplicated sample.

        Returns
        -------
        self : ConvNetTransformer
            The fitted transformer.
        """
        return self._fit(X, y, sample_weight=sample_weight, incremental=False)

    def transform(self, X):
        """The activations of layer ``feature_layer`` for each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or (n_samples, C, *spatial)
            Samples, scaled like the training data.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_features_out)
            float32 when the network computes in float32 (float32 training data),
            float64 otherwise.
        """
        check_is_fitted(self)
        X = self._validate_predict_data(X)
        return self._forward(X, upto=self._feature_end(), dtype=self._network.dtype)

    def _feature_end(self):
        """The network layer whose output is the features (see ``feature_layer``)."""
        ends = self._network.feature_ends()
        if self.feature_layer == "conv":
            return ends[0]
        hidden = ends[1:]
        index = self.feature_layer
        if isinstance(index, bool) or not isinstance(index, Integral) or not (
                -len(hidden) <= index < len(hidden)):
            valid = (f"0 to {len(hidden) - 1} (or negative from the end)" if hidden
                     else "none: it has none (hidden_layer_sizes=()); use 'conv'")
            raise ValueError(
                f"feature_layer={index!r} is not a hidden dense layer index: the "
                f"network has {len(hidden)} hidden dense layer"
                f"{'s' if len(hidden) != 1 else ''}, valid indices are {valid}")
        return hidden[index]

    @property
    def _n_features_out(self):
        """Number of features ``transform`` returns (for ``get_feature_names_out``)."""
        return math.prod(self._network.layers[self._feature_end()].output_shape)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
