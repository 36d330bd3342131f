"""``jwtkit serve`` on an address it cannot bind: one line on stderr, nothing on stdout, no granian started.

A port in use exits 5 (its own code, ``port_in_use``); an address or port the machine will not give exits 2.
The real command runs in a subprocess against a port this test holds.
"""

from __future__ import annotations

import errno
import json
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from cli_support import Runner

from jwtkit.cli import main

SECRET_ENV = {"JWT_SECRET": "s" * 40, "JWTKIT_STORE": "memory://"}


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port on 127.0.0.1 that a socket of this test is listening on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _only_stderr(proc: Any, code: int) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    return str(proc.stderr)


def test_a_port_in_use_exits_5_with_one_line(jwtkit: Runner, taken_port: int) -> None:
    proc = jwtkit("serve", "--port", str(taken_port), env=SECRET_ENV)
    assert _only_stderr(proc, 5) == (
        f"jwtkit: port_in_use: 127.0.0.1:{taken_port} is already in use; "
        "choose another with --port or JWTKIT_PORT\n"
    )


def test_a_port_in_use_from_the_variable_and_without_a_secret(jwtkit: Runner, taken_port: int) -> None:
    proc = jwtkit("serve", env={"JWTKIT_PORT": str(taken_port)})
    assert _only_stderr(proc, 5) == (
        f"jwtkit: port_in_use: 127.0.0.1:{taken_port} is already in use; "
        "choose another with --port or JWTKIT_PORT\n"
    )


@pytest.mark.parametrize("where", ["before", "after"])
def test_a_port_in_use_with_json_is_the_json_error_line(jwtkit: Runner, taken_port: int, where: str) -> None:
    args = ["serve", "--port", str(taken_port)]
    args = ["--json", *args] if where == "before" else [*args, "--json"]
    stderr = _only_stderr(jwtkit(*args, env=SECRET_ENV), 5)
    assert stderr.endswith("\n") and stderr.count("\n") == 1
    assert json.loads(stderr) == {
        "error": "port_in_use",
        "message": f"127.0.0.1:{taken_port} is already in use; choose another with --port or JWTKIT_PORT",
    }


def test_an_address_of_another_machine_is_a_usage_error(jwtkit: Runner) -> None:
    proc = jwtkit("serve", "--host", "192.0.2.1", "--port", "8000", env=SECRET_ENV)  # TEST-NET-1
    assert _only_stderr(proc, 2) == (
        "jwtkit: address_unavailable: cannot listen on 192.0.2.1:8000: not an address of this machine; "
        "choose another with --host or JWTKIT_HOST\n"
    )


def test_a_host_name_that_does_not_resolve_is_a_usage_error(jwtkit: Runner) -> None:
    proc = jwtkit("serve", "--host", "no-such-host.invalid", "--port", "8000", env=SECRET_ENV)
    assert _only_stderr(proc, 2) == (
        "jwtkit: address_unavailable: cannot listen on no-such-host.invalid:8000: the host name does not "
        "resolve; choose another with --host or JWTKIT_HOST\n"
    )


class _Refused(socket.socket):
    """A socket whose bind fails as an unprivileged bind to a low port does (this test may run as root)."""

    def bind(self, address: Any) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")


@pytest.mark.parametrize(("port", "hint"), [("80", "a port above 1023"), ("8080", "another")])
def test_permission_denied_is_a_usage_error(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], tmp_path: Any, port: str,
                                            hint: str) -> None:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket, "socket", _Refused)
    assert main(["serve", "--port", port]) == 2
    low = " (ports below 1024 need privileges)" if port == "80" else ""
    assert capsys.readouterr() == ("", (
        f"jwtkit: permission_denied: cannot listen on 127.0.0.1:{port}: permission denied{low}; "
        f"choose {hint} with --port or JWTKIT_PORT\n"
    ))
