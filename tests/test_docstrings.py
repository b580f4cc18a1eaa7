"""The examples in the public modules' docstrings run and print what they show."""

import doctest

import numpy as np
import pytest

import skconv
import skconv.datasets
import skconv.ops
import skconv.plot


@pytest.mark.parametrize("module", [skconv.ops, skconv.datasets, skconv.plot, skconv],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
    with np.printoptions(legacy=False):
        result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE,
                                 extraglobs={"np": np})
    assert result.failed == 0


def test_ops_docstrings_have_examples():
    # Guards the test above against silently running nothing.
    finder = doctest.DocTestFinder()
    examples = sum(len(t.examples) for t in finder.find(skconv.ops))
    assert examples >= 5
