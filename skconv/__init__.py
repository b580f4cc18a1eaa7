"""skconv: Cython + OpenMP convolutional networks for scikit-learn."""

from . import ops
from ._threads import openmp_enabled

__version__ = "0.1.0.dev0"

__all__ = ["ops", "openmp_enabled", "__version__"]
