"""The examples in the service's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jwtkit.service

MODULES = sorted(name for _, name, _ in pkgutil.iter_modules(jwtkit.service.__path__, "jwtkit.service."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_examples_exist() -> None:
    found = sum(doctest.testmod(importlib.import_module(name)).attempted for name in MODULES)
    assert found >= 10
