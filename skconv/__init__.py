"""skconv: Cython + OpenMP convolutional networks for scikit-learn.

The package is built in layers, one folder each, and data flows down one way:
estimators (``_estimators``) -> network engine (``_nn``) -> ops (``_ops``, published as
:mod:`skconv.ops`) -> compiled kernels (``_kernels``). :mod:`skconv.plot`,
:mod:`skconv.datasets` and the demo (``python -m skconv``) sit on top.
"""

from . import _compat, datasets, ops
from ._estimators.classifier import ConvNetClassifier
from ._estimators.regressor import ConvNetRegressor
from ._estimators.transformer import ConvNetTransformer
from ._ops.threads import openmp_enabled

__version__ = "0.1.0.dev0"

__all__ = ["ConvNetClassifier", "ConvNetRegressor", "ConvNetTransformer", "datasets",
           "ops", "openmp_enabled", "__version__"]

_compat.install_legacy_module_aliases()
