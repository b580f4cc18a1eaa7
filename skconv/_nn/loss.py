"""The losses the engine trains with, and the outputs they imply.

The classifier's is the softmax cross-entropy on the network's logits; its
probabilities are their softmax. Both are ops (:mod:`skconv._ops.loss`); this module
is where the estimators find them, so that they never reach below the engine.
"""

from .._ops.loss import softmax, softmax_cross_entropy

__all__ = ["softmax", "softmax_cross_entropy"]
