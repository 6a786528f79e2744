"""The usage examples in the docstrings of the geometry/comparison modules are correct (hand-worked values)."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["geometry", "similarity", "robustness", "records", "metrics", "comparison"])
def test_docstring_examples(name):
    module = importlib.import_module(f"onnx_geom.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0  # examples marked +SKIP are not attempted
