"""The CLI never reads the environment itself: ``jwtkit serve`` hands the options the user gave to
``ServerSettings.from_env`` as overrides, and the settings read the ``JWTKIT_*`` variables.

These run ``jwtkit.cli.main`` in this process with ``jwtkit.web.serve`` replaced, to see the exact
:class:`ServerSettings` the command would serve.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path
from typing import Any

import pytest

import jwtkit.cli
import jwtkit.web
from jwtkit.cli import main
from jwtkit.service._config import ServerSettings

CLI_SOURCES = [Path(jwtkit.cli.__file__), *sorted(Path(jwtkit.cli.__file__).with_name("_cli").glob("*.py"))]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[ServerSettings]:
    """What ``jwtkit serve`` would serve, in a clean environment (no JWTKIT_*, no JWT_SECRET)."""
    for name in list(os.environ):
        if name.startswith(("JWTKIT_", "JWT_SECRET")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    calls: list[ServerSettings] = []
    monkeypatch.setattr(jwtkit.web, "serve", calls.append, raising=False)
    return calls


def test_jwtkit_port_still_sets_the_port(served: list[ServerSettings],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTKIT_PORT", "9000")
    assert main(["serve"]) == 0
    [server] = served
    assert server == ServerSettings.from_env({"JWTKIT_PORT": "9000"})
    assert server.port == 9000
    assert server.settings.config.base_url == "http://127.0.0.1:9000"  # mailed links follow the port


def test_every_serve_variable_is_read(served: list[ServerSettings], monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"JWTKIT_HOST": "0.0.0.0", "JWTKIT_PORT": "9000", "JWTKIT_STORE": "memory://",
           "JWTKIT_WORKERS": "3", "JWTKIT_ISSUER": "env-issuer", "JWTKIT_AUDIENCE": "env-aud",
           "JWTKIT_SECURE_COOKIES": "false", "JWTKIT_ALLOW_QUERY_TOKEN": "true",
           "JWTKIT_BASE_URL": "https://auth.example.org", "JWT_SECRET": "s" * 40}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 0
    [server] = served
    assert server == ServerSettings.from_env(env)
    assert (server.host, server.port, server.workers, server.secure_cookies, server.allow_query_token) == (
        "0.0.0.0", 9000, 3, False, True)
    config = server.settings.config
    assert (config.issuer, config.audience, config.base_url) == ("env-issuer", "env-aud",
                                                                 "https://auth.example.org")
    assert server.settings.store_url == "memory://" and server.settings.secret == b"s" * 40


def test_options_win_and_only_given_options_override(served: list[ServerSettings],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JWTKIT_PORT", "1")
    monkeypatch.setenv("JWTKIT_WORKERS", "4")
    monkeypatch.setenv("JWTKIT_SECURE_COOKIES", "false")
    monkeypatch.setenv("JWTKIT_ISSUER", "env-issuer")
    args = ["serve", "--port", "9000", "--store", "memory://", "--issuer", "opt-issuer", "--secure-cookies",
            "--allow-query-token", "--host", "::1"]
    assert main(args) == 0
    [server] = served
    assert (server.port, server.host, server.secure_cookies, server.allow_query_token) == (9000, "::1", True,
                                                                                           True)
    assert server.workers == 4  # not given: the environment's
    assert server.settings.config.issuer == "opt-issuer"
    assert server.settings.config.base_url == "http://[::1]:9000"
    assert server.settings.store_url == "memory://" and server.settings.users_path == ":memory:"
    assert main(["serve", "--no-secure-cookies", "--workers", "2"]) == 0
    assert (served[1].secure_cookies, served[1].workers, served[1].port) == (False, 2, 1)


def test_no_options_and_no_environment_is_the_default(served: list[ServerSettings]) -> None:
    assert main(["serve"]) == 0
    assert served == [ServerSettings()]


def test_a_bad_variable_is_refused_by_name(served: list[ServerSettings], monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWTKIT_WORKERS", "100")
    assert main(["serve"]) == 2
    assert capsys.readouterr().err == (
        "jwtkit: service_config: JWTKIT_WORKERS must be an integer between 1 and 64, not 100\n")
    assert main(["serve", "--workers", "2"]) == 0  # the option wins; the variable is not even read
    assert served[0].workers == 2


def test_the_cli_reads_no_jwtkit_variable_itself() -> None:
    """No ``JWTKIT_`` name, no typer ``envvar=``, and no ``os.environ``/``os.getenv`` read of a literal name
    in the CLI: the one codec in ``jwtkit.service._config`` reads the environment."""
    assert len(CLI_SOURCES) > 3  # cli.py and the _cli package were found
    found = [offence for path in CLI_SOURCES for offence in _offences(path.name, path.read_text("utf-8"))]
    assert found == []


def test_the_check_itself_finds_each_kind_of_read() -> None:
    sample = (
        'import os\nfrom os import environ, getenv\n'
        'a = os.environ.get("X")\nb = os.environ["Y"]\nc = getenv("Z")\nd = "W" in environ\n'
        'e = typer.Option("--port", envvar="PORT")\nf = "JWTKIT_PORT"\n'
        'ok = os.environ.get(var)\n'
    )
    assert [line.split(":")[1] for line in _offences("sample.py", sample)] == [
        "7", "8", "3", "4", "5", "6"]


def _offences(name: str, text: str) -> list[str]:
    found: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if "JWTKIT_" in line or "envvar" in line:
            found.append(f"{name}:{number}: {line.strip()}")
    for node in ast.walk(ast.parse(text)):
        literal_read = (
            # os.environ["X"], os.environ.get("X"), os.getenv("X") / getenv("X"), "X" in os.environ
            (isinstance(node, ast.Subscript) and _is_environ(node.value)
             and isinstance(node.slice, ast.Constant))
            or (isinstance(node, ast.Call) and _is_env_call(node.func)
                and any(isinstance(arg, ast.Constant) for arg in node.args))
            or (isinstance(node, ast.Compare) and any(_is_environ(c) for c in node.comparators)
                and isinstance(node.left, ast.Constant))
        )
        if literal_read:
            found.append(f"{name}:{getattr(node, 'lineno', '?')}: {ast.unparse(node)}")
    return found


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb")) or (
        isinstance(node, ast.Name) and node.id in ("environ", "environb"))


def _is_env_call(func: ast.expr) -> bool:
    if isinstance(func, ast.Attribute):
        return _is_environ(func.value) or func.attr in ("getenv", "getenvb")
    return isinstance(func, ast.Name) and func.id in ("getenv", "getenvb")


# --- docs/cli.md -------------------------------------------------------------------------------------------

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def _variables_table() -> list[tuple[str, str, str]]:
    rows = []
    for line in DOCS.read_text("utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| `JWT") and len(cells) == 3:
            rows.append((cells[0].strip("`"), cells[1], cells[2]))
    return rows


def _options(command: Any) -> set[str]:
    names = {opt for param in getattr(command, "params", []) for opt in (*param.opts, *param.secondary_opts)}
    for sub in getattr(command, "commands", {}).values():
        names |= _options(sub)
    return names


def test_the_docs_table_lists_every_variable_with_its_option_and_default() -> None:
    import typer.main

    from jwtkit.service._config import _ENVIRONMENT

    rows = _variables_table()
    assert [name for name, _, _ in rows] == [var.name for var in _ENVIRONMENT]
    defaults = ServerSettings().to_env()
    every_option = _options(typer.main.get_command(jwtkit.cli.app))
    serve_options = _options(typer.main.get_command(jwtkit.cli.app).commands["serve"])  # type: ignore[attr-defined]
    documented = set()
    for name, option, default in rows:
        code = re.match(r"`([^`]*)`", default)
        if defaults[name]:
            assert code is not None and code.group(1) == defaults[name], (name, default, defaults[name])
        else:
            assert default.startswith("none"), (name, default)
        for flag in re.findall(r"--[a-z-]+", option):
            assert flag in every_option, (name, flag)
            documented.add(flag)
    assert serve_options - {"--json", "--help"} <= documented
