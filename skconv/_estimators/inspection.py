"""What the plots (and other tools above the estimators) may ask of a fitted estimator.

The estimators keep their network and validation private; this module is the one
place that hands them out: the fitted skconv estimator inside a Pipeline, its
network (whose public surface - ``params_of``, ``block_outputs``, ``layers`` - the
caller then uses) and one sample validated as ``predict`` validates it.
"""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from .base import BaseConvNet

__all__ = ["fitted_estimator", "network_of", "validated_sample"]


def fitted_estimator(estimator, caller):
    """The fitted skconv estimator inside ``estimator`` (itself or a Pipeline's last
    step).

    Parameters
    ----------
    estimator : skconv estimator or Pipeline ending in one
    caller : str
        Named in the errors.

    Raises
    ------
    NotFittedError
        When it is not fitted.
    TypeError
        For other estimators.
    """
    from sklearn.pipeline import Pipeline

    final = estimator[-1] if isinstance(estimator, Pipeline) else estimator
    if not isinstance(final, BaseConvNet):
        raise TypeError(
            f"{caller} needs a skconv estimator (e.g. ConvNetClassifier) or a "
            f"Pipeline ending in one, got {type(final).__name__}"
        )
    check_is_fitted(estimator)
    check_is_fitted(final)
    return final


def network_of(estimator):
    """The network of a fitted skconv estimator (see :func:`fitted_estimator`)."""
    return estimator._network


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
