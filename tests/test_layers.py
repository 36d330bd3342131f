"""Layering: walk every import in src/jwtkit and fail on an upward edge, or on a cycle inside the core.

The core is ``jwtkit`` itself (``jwtkit/__init__.py``), ``jwtkit.jwa`` and the private ``jwtkit._jose``; it
imports no other jwtkit package. store may import the core; service never imports starlette or web; web never
imports sqlite3/redis/plyvel directly; cli sits on top.
"""

from __future__ import annotations

import ast
import itertools
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src" / "jwtkit"
LAYERS = ["core", "store", "service", "web", "cli"]
# Which jwtkit layers each layer may import (its own included).
ALLOWED = {
    "core": {"core"},
    "store": {"core", "store"},
    "service": {"core", "store", "service"},
    "web": {"core", "store", "service", "web"},
    "cli": {"core", "store", "service", "web", "cli"},
}
# The first name under jwtkit of each layer's modules (jwtkit/__init__.py is the core too).
PACKAGES = {
    "_jose": "core",
    "jwa": "core",
    "store": "store",
    "service": "service",
    "web": "web",
    "_cli": "cli",
    "cli": "cli",
    "__main__": "cli",
}
FORBIDDEN_THIRD_PARTY = {
    "core": {
        "starlette",
        "fastapi",
        "uvicorn",
        "httpx",
        "redis",
        "sqlite3",
        "plyvel",
        "asyncpg",
        "requests",
        "urllib",
        "socket",
    },
    "service": {"starlette", "fastapi", "uvicorn"},
    "web": {"sqlite3", "redis", "plyvel", "asyncpg"},
}


def layer_of(path: Path) -> str | None:
    relative = path.relative_to(SRC)
    first = relative.parts[0].removesuffix(".py")
    if relative.parts == ("__init__.py",):
        return "core"
    return PACKAGES.get(first)


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
    if parts[0] != "jwtkit":
        return None
    if len(parts) == 1:
        return "core"  # `import jwtkit`, `from jwtkit import X`
    # Anything else under jwtkit is the core: jwtkit._jose, jwtkit.jwa, or a name of jwtkit itself
    # (`from jwtkit import Key` is recorded as jwtkit.Key too).
    return PACKAGES.get(parts[1], "core")


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
    layers = {layer for _, layer, _, _ in edges()}
    assert layers == set(LAYERS)
    assert len(core_graph()) >= 10


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
        ("from jwtkit.store import open_store", "core", True),
        ("from jwtkit import store", "core", True),
        ("from jwtkit._cli import _tokens", "web", True),
        ("from jwtkit._jose.jws import normalize_typ", "store", False),
        ("from jwtkit import Key", "service", False),
        ("from jwtkit import jwa", "store", False),
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


# --- no import cycle inside the core ---------------------------------------------------------------------

CORE_FILES = [SRC / "__init__.py", SRC / "jwa.py", *sorted((SRC / "_jose").glob("*.py"))]


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_graph() -> dict[str, set[str]]:
    """Each core module's imports of other core modules: every import statement, at any depth (functions and
    ``if TYPE_CHECKING:`` blocks included), with ``from package import module`` resolved to the module."""
    names = {module_name(path): path for path in CORE_FILES}
    graph: dict[str, set[str]] = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets: set[str] = set()
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join([*base, node.module] if node.module else base)
                else:
                    module = node.module or ""
                targets.add(module)
                targets |= {f"{module}.{alias.name}" for alias in node.names}
        graph[name] = {target for target in targets if target in names and target != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path: list[str] = []
        on_path: set[str] = set()
        stack: list[tuple[str, list[str]]] = [(start, sorted(graph[start]))]
        path.append(start)
        on_path.add(start)
        while stack:
            node, pending = stack[-1]
            if not pending:
                stack.pop()
                path.pop()
                on_path.discard(node)
                done.add(node)
                continue
            nxt = pending.pop()
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                stack.append((nxt, sorted(graph[nxt])))
                path.append(nxt)
                on_path.add(nxt)
    return None


def test_the_core_has_no_import_cycle() -> None:
    cycle = find_cycle(core_graph())
    assert cycle is None, "import cycle in the core: " + " -> ".join(cycle or [])


def test_the_algorithm_table_knows_nothing_of_keys() -> None:
    graph = core_graph()
    assert graph["jwtkit._jose.algorithms"] == {"jwtkit._jose.errors"}
    assert "jwtkit._jose.algorithms" in graph["jwtkit._jose.keys"]
    tree = ast.parse((SRC / "_jose" / "algorithms.py").read_text())
    assert not [node.lineno for node in ast.walk(tree) if isinstance(node, ast.Name) and node.id == "Key"]


def test_the_private_core_never_imports_its_public_face() -> None:
    graph = core_graph()
    for name, targets in graph.items():
        if name.startswith("jwtkit._jose"):
            assert not targets & {"jwtkit", "jwtkit.jwa"}, name


@pytest.mark.parametrize(
    ("graph", "cyclic"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, False),
        ({"a": {"b"}, "b": {"a"}}, True),
        ({"a": {"b", "c"}, "b": {"c"}, "c": {"d"}, "d": {"b"}}, True),
        ({"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set()}, False),
    ],
)
def test_the_cycle_finder(graph: dict[str, set[str]], cyclic: bool) -> None:
    cycle = find_cycle(graph)
    assert (cycle is not None) is cyclic
    if cycle is not None:
        assert cycle[0] == cycle[-1]
        assert all(b in graph[a] for a, b in itertools.pairwise(cycle))
