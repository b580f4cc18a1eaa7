"""The examples in the public modules' docstrings run and print what they show."""

import doctest

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
