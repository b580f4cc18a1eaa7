"""Loading models pickled before the package was laid out in layers (0.1.0.dev0).

Such pickles name the old flat modules (``skconv._classifier``, ``skconv._network``,
``skconv._layers``...). A meta-path finder maps each old name to its module in the new
layout, so ``pickle.load`` finds the classes; the classes' ``__setstate__`` methods
rename the few attributes that changed. Nothing else imports the old names.
"""

import importlib
import importlib.abc
import importlib.util
import sys

#: Old module name -> the module that now holds its classes and functions.
LEGACY_MODULES = {
    "skconv._classifier": "skconv._estimators.classifier",
    "skconv._base": "skconv._estimators.base",
    "skconv._network": "skconv._nn.network",
    "skconv._layers": "skconv._nn.layers",
    "skconv._optimizers": "skconv._nn.optimizers",
    "skconv._activations": "skconv._nn.activations",
    "skconv._loss": "skconv._ops.loss",
}


class _LegacyModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Finds an old module name and loads it as the new module (the same object)."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in LEGACY_MODULES:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        return importlib.import_module(LEGACY_MODULES[spec.name])

    def exec_module(self, module):
        # The module is the new one, already executed; only its old name is added
        # (by the import system, to sys.modules).
        pass


def install_legacy_module_aliases():
    """Put the finder on ``sys.meta_path`` once."""
    if not any(isinstance(f, _LegacyModuleFinder) for f in sys.meta_path):
        sys.meta_path.append(_LegacyModuleFinder())
