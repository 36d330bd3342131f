"""Workers get their settings in their own environment: ``serve`` binds the socket, then starts granian's main
process as a child with ``{**os.environ, **server.to_env()}`` and the socket, for one worker as for several,
and never changes this process's ``os.environ``."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest

import jwtkit.web._server as web_server
from jwtkit.service import AuthConfig, Settings
from jwtkit.service._config import ServerSettings
from processes import free_port

SECRET = b"\x00\xfe" * 20  # not text: it travels as JWTKIT_SECRET_HEX


class FakeChild:
    """Stands in for granian's main process: records how it was started, exits 0 at once."""

    started: ClassVar[list[FakeChild]] = []

    def __init__(self, args: list[str], *, env: dict[str, str], pass_fds: tuple[int, ...] = (),
                 **_: Any) -> None:
        self.args = args
        self.env = env
        self.pass_fds = pass_fds
        self.listening = [_listen_on(fd) for fd in pass_fds]
        self.environ_at_start = dict(os.environ)
        self.returncode = 0
        FakeChild.started.append(self)

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode

    def poll(self) -> int:
        return self.returncode

    def send_signal(self, signum: int) -> None:
        raise AssertionError("no signal expected")


def _listen_on(fd: int) -> int:
    """What a granian worker does with the socket it was given: listen on it. Returns its port."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0  # bound, not yet listening
        sock.listen()
        port: int = sock.getsockname()[1]
        return port


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_leaves_os_environ_alone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, workers: int,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JWTKIT_ISSUER", "the-parent's")  # the child's settings must win over it
    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    FakeChild.started.clear()
    port = free_port()
    server = ServerSettings(settings=Settings(store_url="memory://", users_path=":memory:", secret=SECRET,
                                              config=AuthConfig(issuer="child", audience=None)),
                            host="127.0.0.1", port=port, workers=workers, secure_cookies=False)
    before = dict(os.environ)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}

    web_server.serve(server)

    assert dict(os.environ) == before
    [child] = FakeChild.started
    assert child.environ_at_start == before  # not even for the moment the child starts
    assert child.env == {**before, **server.to_env()}
    assert ServerSettings.from_env(child.env) == server
    assert child.args[0] == sys.executable and "_supervise" in child.args[-1]
    assert child.listening == [port]  # the socket was bound before granian started, and handed to it
    assert f"_supervise({child.pass_fds[0]})" in child.args[-1]
    assert capsys.readouterr().out == f"jwtkit serving on http://127.0.0.1:{port}\n"
    assert {sig: signal.getsignal(sig) for sig in handlers} == handlers  # forwarding handlers removed
    assert _bindable(port)  # this process let go of the socket once the child had it


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_port_zero_announces_the_real_port(monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    FakeChild.started.clear()
    web_server.serve(ServerSettings(settings=Settings(store_url="memory://", secret=SECRET), port=0))
    [child] = FakeChild.started
    [port] = child.listening
    assert port != 0
    assert capsys.readouterr().out == f"jwtkit serving on http://127.0.0.1:{port}\n"


def test_a_taken_port_raises_before_starting_granian(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    FakeChild.started.clear()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(web_server.ListenError) as info:
            web_server.serve(ServerSettings(settings=Settings(store_url="memory://", secret=SECRET),
                                            port=port))
    assert (info.value.code, info.value.errno, info.value.host, info.value.port) == (
        "port_in_use", errno.EADDRINUSE, "127.0.0.1", port)
    assert str(info.value) == f"127.0.0.1:{port} is already in use"
    assert isinstance(info.value, OSError)
    assert FakeChild.started == []
    assert capsys.readouterr() == ("", "")  # serve() prints nothing; the CLI prints the one line


def test_granian_exiting_before_it_listens_announces_nothing(monkeypatch: pytest.MonkeyPatch,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    class NeverListens(FakeChild):
        def __init__(self, args: list[str], *, env: dict[str, str], **_: Any) -> None:
            super().__init__(args, env=env)
            self.returncode = 1

    monkeypatch.setattr(subprocess, "Popen", NeverListens)
    with pytest.raises(SystemExit) as info:
        web_server.serve(ServerSettings(settings=Settings(store_url="memory://", secret=SECRET), port=0))
    assert info.value.code == 1
    assert capsys.readouterr().out == ""


def test_a_failing_granian_is_the_exit_status(monkeypatch: pytest.MonkeyPatch) -> None:
    class Failing(FakeChild):
        def wait(self, timeout: float | None = None) -> int:
            self.returncode = 1
            return 1

    monkeypatch.setattr(subprocess, "Popen", Failing)
    with pytest.raises(SystemExit) as info:
        web_server.serve(ServerSettings(settings=Settings(store_url="memory://", secret=SECRET), port=0,
                                        workers=2))
    assert info.value.code == 1


def test_serve_still_takes_settings_and_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "Popen", FakeChild)
    FakeChild.started.clear()
    settings = Settings(store_url="memory://", secret=SECRET)
    port = free_port()
    web_server.serve(settings, port=port, secure_cookies=False)
    web_server.serve(ServerSettings(settings=settings), port=0, workers=3)
    served = [ServerSettings.from_env(child.env) for child in FakeChild.started]
    assert served == [ServerSettings(settings=settings, port=port, secure_cookies=False),
                      ServerSettings(settings=settings, port=0, workers=3)]


def test_app_from_env_builds_the_app_from_its_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import jwtkit.web

    built: list[dict[str, Any]] = []
    def create_app(**kwargs: Any) -> str:
        built.append(kwargs)
        return "app"

    monkeypatch.setattr(jwtkit.web, "create_app", create_app, raising=False)
    monkeypatch.setattr(gc, "freeze", lambda: built.append({"frozen": True}))
    server = ServerSettings(settings=Settings(store_url="memory://", secret=SECRET), secure_cookies=False,
                            allow_query_token=True)
    for name, value in server.to_env().items():
        monkeypatch.setenv(name, value)
    assert web_server.app_from_env() == "app"  # type: ignore[comparison-overlap]
    assert built == [{"settings": server.settings, "secure_cookies": False, "allow_query_token": True,
                      "max_concurrency": 256, "forwarded_allow_ips": ()},
                     {"frozen": True}]  # gc.freeze() once the app is built


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWTKIT_", "JWT_SECRET"))}
    env.update(extra)
    return env


def _wait_for_health(url: str, proc: subprocess.Popen[str], timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(f"{url}/healthz", timeout=2)
        except httpx.TransportError:
            assert proc.poll() is None, f"jwtkit serve exited with {proc.returncode}"
            assert time.monotonic() < deadline, f"nothing answered on {url} within {timeout} s"
            time.sleep(0.1)


def _refused(port: int) -> bool:
    try:
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
    except httpx.TransportError:
        return True
    return False


@pytest.mark.parametrize(("workers", "stop"), [(2, signal.SIGTERM), (1, signal.SIGINT)])
def test_real_workers_answer_and_stop_with_the_command(tmp_path: Path, workers: int,
                                                       stop: signal.Signals) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "jwtkit", "serve", "--workers", str(workers), "--no-secure-cookies"],
        cwd=tmp_path, env=_clean_env(JWTKIT_PORT=str(port), JWTKIT_HOST="127.0.0.1", JWTKIT_STORE="memory://",
                                     JWT_SECRET="s" * 40),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        response = _wait_for_health(f"http://127.0.0.1:{port}", proc, timeout=60)
        assert response.status_code == 200, response.text
        proc.send_signal(stop)  # to `jwtkit serve` alone: it must stop granian's main process and workers
        output, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, output
        assert output.startswith(f"jwtkit serving on http://127.0.0.1:{port}\n"), output
        deadline = time.monotonic() + 10
        while not _refused(port):
            assert time.monotonic() < deadline, "a worker outlived jwtkit serve"
            time.sleep(0.1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the whole tree: jwtkit serve, granian, the workers
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            proc.communicate(timeout=10)
