"""What the plots (and other tools above the estimators) may ask of a fitted estimator.

The estimators keep their network and validation private; this module is the one
place that hands them out: the fitted skconv estimator inside a Pipeline (and the
steps before it), its network (whose public surface - ``params_of``,
``block_outputs``, ``layers``, ``describe`` - the caller then uses), the layer a
transformer's features come from, and one sample validated as ``predict`` validates
it.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .base import BaseConvNet

__all__ = ["feature_layer_of", "fitted_estimator", "network_of", "steps_before",
           "validated_sample"]


def fitted_estimator(estimator, caller):
    """The fitted skconv estimator inside ``estimator``: itself, or the last skconv
    step of a Pipeline (its final step, or e.g. a ``ConvNetTransformer`` before a
    ``LogisticRegression``).

    Parameters
    ----------
    estimator : skconv estimator or Pipeline with one
    caller : str
        Named in the errors.

    Raises
    ------
    NotFittedError
        When it is not fitted.
    TypeError
        For other estimators.
    """
    final = estimator
    position = _skconv_step(estimator)
    if position is not None:
        final = estimator[position]
    if not isinstance(final, BaseConvNet):
        raise TypeError(
            f"{caller} needs a skconv estimator (ConvNetClassifier, ConvNetRegressor or "
            f"ConvNetTransformer) or a Pipeline with one, got {type(final).__name__}"
        )
    check_is_fitted(estimator)
    check_is_fitted(final)
    return final


def steps_before(estimator):
    """The Pipeline steps before the skconv step that :func:`fitted_estimator` returns
    (a Pipeline slice, to transform a sample with), or None when there are none."""
    position = _skconv_step(estimator)
    return estimator[:position] if position else None


def _skconv_step(estimator):
    """Index of the last skconv step of a Pipeline (its last step when it has none);
    None for anything but a Pipeline."""
    from sklearn.pipeline import Pipeline

    if not isinstance(estimator, Pipeline):
        return None
    steps = [i for i, (_, step) in enumerate(estimator.steps)
             if isinstance(step, BaseConvNet)]
    return steps[-1] if steps else len(estimator) - 1


def network_of(estimator):
    """The network of a fitted skconv estimator (see :func:`fitted_estimator`)."""
    return estimator._network


def feature_layer_of(transformer):
    """The index of the network layer whose output a fitted ``ConvNetTransformer``'s
    ``transform`` returns (flattened), for its current ``feature_layer``: an index
    into ``network_of(transformer).layers`` and its ``describe()``.

    Raises
    ------
    ValueError
        When ``feature_layer`` names no layer of the network (as ``transform``).
    """
    check_is_fitted(transformer)
    return transformer._feature_end()


def validated_sample(estimator, x):
    """One sample ``x`` validated as ``predict`` would: an array of shape
    ``(1, *image_shape_)``.

    Parameters
    ----------
    estimator : fitted skconv estimator
    x : array-like
        A row of X as given to ``predict`` (``n_features_in_`` values) or an array of
        shape ``image_shape_`` (or the shape of the samples ``fit`` saw).
    """
    x = np.asarray(x)
    n_features = estimator.n_features_in_
    shape = tuple(estimator.image_shape_)
    sample_shapes = {shape, getattr(estimator, "_fit_sample_shape", None)}
    if shape[0] == 1:
        sample_shapes.add(shape[1:])  # (H, W) for one channel
    if x.ndim == 1 or (x.ndim == 2 and x.shape[0] == 1 and x.shape[1] == n_features):
        X = x.reshape(1, -1)
    elif x.shape in sample_shapes:
        X = x.reshape(1, -1)
    else:
        raise ValueError(
            f"x must be one sample: a 1-D array of n_features_in_={n_features} "
            f"values (one row of X) or an array of shape {shape}; got an array of "
            f"shape {x.shape}"
        )
    return estimator._validate_predict_data(X)
