"""skconv: Cython + OpenMP convolutional networks for scikit-learn."""

from . import datasets, ops
from ._classifier import ConvNetClassifier
from ._threads import openmp_enabled

__version__ = "0.1.0.dev0"

__all__ = ["ConvNetClassifier", "datasets", "ops", "openmp_enabled", "__version__"]
