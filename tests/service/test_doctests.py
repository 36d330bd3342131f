"""The examples in the service's docstrings run."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import jwtkit.service

# The public objects say __module__ == "jwtkit.service", so doctest finds their examples through the package
# (once every lazy name is loaded) and the rest through the private modules.
MODULES = ["jwtkit.service",
           *sorted(name for _, name, _ in pkgutil.iter_modules(jwtkit.service.__path__, "jwtkit.service."))]


def _module(name: str) -> object:
    module = importlib.import_module(name)
    if name == "jwtkit.service":
        for public in jwtkit.service.__all__:
            getattr(jwtkit.service, public)
    return module


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(_module(name), optionflags=doctest.ELLIPSIS)  # type: ignore[arg-type]
    assert result.failed == 0


def test_examples_exist() -> None:
    found = sum(doctest.testmod(_module(name)).attempted for name in MODULES)  # type: ignore[arg-type]
    assert found >= 10
