"""The losses the engine trains with, and the outputs they imply.

Every network ends in a linear layer; the loss gives its outputs their meaning:

- one class per sample: the softmax cross-entropy, probabilities by :func:`softmax`;
- independent binary labels (multilabel): the sigmoid cross-entropy, probabilities by
  :func:`sigmoid`;
- regression: the squared error or the Huber loss on the outputs as they are.

All are ops (:mod:`skconv._ops.loss`); this module is where the estimators find them,
so that they never reach below the engine.
"""

from .._ops.loss import (
    huber,
    sigmoid,
    sigmoid_cross_entropy,
    softmax,
    softmax_cross_entropy,
    squared_error,
)

__all__ = ["REGRESSION_LOSSES", "huber", "sigmoid", "sigmoid_cross_entropy", "softmax",
           "softmax_cross_entropy", "squared_error"]

#: Regression losses by the name the estimators' ``loss`` parameter takes.
REGRESSION_LOSSES = {"squared_error": squared_error, "huber": huber}
