"""The examples in the public modules' docstrings run and print what they show, and
the estimators' docstrings document every parameter."""

import doctest
import inspect
import re

import numpy as np
import pytest

import skconv
import skconv._ops.conv
import skconv._ops.pool
import skconv.datasets
import skconv.plot

# skconv.ops publishes the functions of the ops modules; doctest finds a function's
# examples in the module that defines it.
OPS_MODULES = [skconv._ops.conv, skconv._ops.pool]


@pytest.mark.parametrize("module", OPS_MODULES + [skconv.datasets, skconv.plot, skconv],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE,
                                 extraglobs={"np": np})
    assert result.failed == 0


def test_ops_docstrings_have_examples():
    # Guards the test above against silently running nothing.
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for module in OPS_MODULES for t in finder.find(module))
    assert examples >= 5


def _documented_parameters(doc):
    """The names of a numpydoc ``Parameters`` section, in order."""
    doc = inspect.cleandoc(doc)
    section = re.search(r"^Parameters\n-+\n(.*?)^\w[\w ]*\n-+\n", doc, flags=re.S | re.M)
    assert section, "no Parameters section"
    return re.findall(r"^(\w+) :", section.group(1), flags=re.M)


@pytest.mark.parametrize("estimator_class", [skconv.ConvNetClassifier,
                                             skconv.ConvNetRegressor,
                                             skconv.ConvNetTransformer],
                         ids=lambda c: c.__name__)
def test_estimator_docstrings_document_every_parameter_in_order(estimator_class):
    # The shared pieces (skconv/_estimators/docstrings.py) and each class's own
    # entries together give one entry per constructor parameter, in its order, each
    # with a constraint.
    params = list(estimator_class().get_params())
    signature_order = list(inspect.signature(estimator_class).parameters)
    assert _documented_parameters(estimator_class.__doc__) == signature_order
    assert sorted(params) == sorted(signature_order)
    assert set(estimator_class._parameter_constraints) == set(params)
