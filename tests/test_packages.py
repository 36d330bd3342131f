"""Every layer package: implementation modules are private (``_`` names), the package's sorted ``__all__`` is
its one public path (ruff keeps it sorted), and public objects show that path (``__module__``), as httpx
does."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

PACKAGES = ["jwtkit.store", "jwtkit.service", "jwtkit.web"]


@pytest.mark.parametrize("package", PACKAGES)
def test_implementation_modules_are_private(package: str) -> None:
    module = importlib.import_module(package)
    public = sorted(name for _, name, _ in pkgutil.iter_modules(module.__path__) if not name.startswith("_"))
    assert public == []


@pytest.mark.parametrize("package", PACKAGES)
def test_public_objects_show_the_package_path(package: str) -> None:
    module = importlib.import_module(package)
    for name in module.__all__:
        value = getattr(module, name)
        if hasattr(value, "__module__") and isinstance(value, type | type(len) | type(test_packages_exist)):
            assert value.__module__ == package, name


def test_packages_exist() -> None:
    assert all(importlib.import_module(name) for name in PACKAGES)
