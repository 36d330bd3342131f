"""Layering: walk every import in src/jwtkit and fail on an upward edge.

jose imports no other jwtkit package; store may import jose; service never imports starlette or web; web never
imports sqlite3/redis/plyvel directly; cli sits on top.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "jwtkit"
LAYERS = ["jose", "store", "service", "web", "cli"]
# Which jwtkit layers each layer may import (its own included).
ALLOWED = {
    "jose": {"jose"},
    "store": {"jose", "store"},
    "service": {"jose", "store", "service"},
    "web": {"jose", "store", "service", "web"},
    "cli": {"jose", "store", "service", "web", "cli"},
}
FORBIDDEN_THIRD_PARTY = {
    "jose": {
        "starlette",
        "fastapi",
        "uvicorn",
        "httpx",
        "redis",
        "sqlite3",
        "plyvel",
        "requests",
        "urllib",
        "socket",
    },
    "service": {"starlette", "fastapi", "uvicorn"},
    "web": {"sqlite3", "redis", "plyvel"},
}
# Root-level modules that are thin public façades over the core.
ROOT_FACADES = {"__init__": "jose", "jwa": "jose"}


def layer_of(path: Path) -> str | None:
    relative = path.relative_to(SRC)
    first = relative.parts[0].removesuffix(".py")
    if first in LAYERS:
        return first
    if first in ("_cli", "__main__"):
        return "cli"
    if len(relative.parts) == 1 and first in ROOT_FACADES:
        return ROOT_FACADES[first]
    return None


def imported_modules(path: Path, package: str | None = None) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    if package is None:
        package = ".".join(("jwtkit", *path.relative_to(SRC).with_suffix("").parts[:-1]))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            if module == "jwtkit":
                found += [(node.lineno, f"jwtkit.{alias.name}") for alias in node.names]
    return found


def target_layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "jwtkit" or len(parts) == 1:
        return None
    name = parts[1]
    if name in LAYERS:
        return name
    if name == "_cli":
        return "cli"
    if name in ROOT_FACADES:
        return ROOT_FACADES[name]
    return None


def edges() -> list[tuple[str, str, int, str]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        layer = layer_of(path)
        if layer is None:
            continue
        for line, module in imported_modules(path):
            found.append((str(path.relative_to(SRC)), layer, line, module))
    return found


def test_there_is_something_to_walk() -> None:
    assert any(layer == "jose" for _, layer, _, _ in edges())


def violation(layer: str, module: str) -> str | None:
    """Why importing ``module`` from ``layer`` breaks the layering, or None."""
    target = target_layer(module)
    if target is not None and target not in ALLOWED[layer]:
        return f"{layer} imports {module} ({target} is above it)"
    if module.split(".")[0] in FORBIDDEN_THIRD_PARTY.get(layer, set()):
        return f"{layer} imports {module}"
    return None


def test_no_upward_or_forbidden_imports() -> None:
    bad = []
    for where, layer, line, module in edges():
        reason = violation(layer, module)
        if reason:
            bad.append(f"{where}:{line}: {reason}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    ("source", "layer", "expected"),
    [
        ("from jwtkit.web import app", "service", True),
        ("import starlette.routing", "service", True),
        ("from jwtkit import web", "store", True),
        ("import sqlite3", "web", True),
        ("from redis.asyncio import Redis", "web", True),
        ("from jwtkit.store import open_store", "jose", True),
        ("from jwtkit.jose import Key", "store", False),
        ("from jwtkit import Key", "service", False),
        ("from jwtkit.service import AuthService", "cli", False),
    ],
)
def test_the_walker_catches_upward_edges(tmp_path: Path, source: str, layer: str, expected: bool) -> None:
    probe = SRC / "store" / "probe.py"  # only used for its package; the file is written under tmp_path
    path = tmp_path / "probe.py"
    path.write_text(source + "\n")
    modules = [
        module
        for _, module in imported_modules(path, package=".".join(probe.parent.relative_to(SRC.parent).parts))
    ]
    assert any(violation(layer, module) for module in modules) is expected
