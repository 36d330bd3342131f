"""Helpers for the web tests: a real AuthService (memory store, memory users, cheap argon2, pinned clock)
behind the real app, driven through httpx's ASGI transport; and a real ``jwtkit serve`` process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from argon2 import PasswordHasher

from jwtkit.service import AuthConfig, AuthService, KeyRing, MemoryMailer, MemoryUserRepository
from jwtkit.store import open_store
from jwtkit.web import create_app
from processes import free_port, wait_for_port

PASSWORD = "correct horse battery"
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml"}
SECRET = b"web-tests-secret-" + b"x" * 32


class Clock:
    """A clock the test moves by hand (the service and the web layer read the same one)."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Server:
    """An app under test: its service, clock, mailer and an httpx client factory."""

    service: AuthService
    clock: Clock
    mailer: MemoryMailer
    app: Any
    base_url: str
    clients: list[httpx.AsyncClient] = field(default_factory=list)

    def client(self, **headers: str) -> httpx.AsyncClient:
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app, client=("203.0.113.7", 5555)),
                                   base_url=self.base_url, headers=headers or None)
        self.clients.append(client)
        return client

    def json_client(self) -> httpx.AsyncClient:
        return self.client(**JSON)

    def browser(self) -> httpx.AsyncClient:
        return self.client(**HTML, **{"User-Agent": "Mozilla/5.0 test"})

    async def user(self, name: str = "alice", password: str = PASSWORD, email: str | None = None) -> str:
        user = await self.service.register(name, password, email=email)
        return user.id

    async def login(self, name: str = "alice", password: str = PASSWORD) -> dict[str, Any]:
        response = await self.json_client().post("/auth", json={"username": name, "password": password})
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data


def make_service(store_url: str = "memory://", *, clock: Clock | None = None,
                 config: AuthConfig | None = None, keys: KeyRing | None = None) -> AuthService:
    return AuthService(store=open_store(store_url), users=MemoryUserRepository(),
                       keys=keys or KeyRing.from_secret(SECRET),
                       config=config or AuthConfig(throttle_threshold=3),
                       mailer=MemoryMailer(), clock=clock or time.time,
                       hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


async def start(*, secure: bool = True, allow_query_token: bool = False, config: AuthConfig | None = None,
                keys: KeyRing | None = None, **app_options: Any) -> Server:
    clock = Clock()
    service = make_service(clock=clock, config=config, keys=keys)
    await service.open()
    app = create_app(service, secure_cookies=secure, allow_query_token=allow_query_token, **app_options)
    mailer = service.mailer
    assert isinstance(mailer, MemoryMailer)
    return Server(service, clock, mailer, app, "https://testserver" if secure else "http://testserver")


async def stop(server: Server) -> None:
    for client in server.clients:
        await client.aclose()
    await server.service.close()




def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


# --- a real `jwtkit serve` process ----------------------------------------------------------------------
# (free_port / wait_for_port as in tests/conftest.py, which is not importable as a module: no __init__.py)

@dataclass
class ServeProcess:
    url: str
    port: int
    workdir: Path
    proc: subprocess.Popen[bytes]
    output: Path

    def log(self) -> str:
        return self.output.read_text(errors="replace")


def serve_command(port: int, *extra: str) -> list[str]:
    """``jwtkit serve`` when the CLI has it, else ``jwtkit.web.serve`` in a subprocess."""
    cli = Path(sys.executable).parent / "jwtkit"
    if cli.exists() and shutil.which(str(cli)):
        return [str(cli), "serve", "--host", "127.0.0.1", "--port", str(port), *extra]
    secure = "--no-secure-cookies" not in extra
    code = ("from jwtkit.service import Settings; from jwtkit.web import serve; "
            f"serve(Settings.from_env(), port={port}, secure_cookies={secure})")
    return [sys.executable, "-c", code]


def start_serve(workdir: Path, *extra: str, env: dict[str, str] | None = None) -> ServeProcess:
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    environ.update(env or {})
    output = workdir / "serve.log"
    with open(output, "wb") as out:
        proc = subprocess.Popen(serve_command(port, *extra), cwd=workdir, env=environ, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30, proc=proc)
    except RuntimeError:
        proc.kill()
        proc.wait()
        raise RuntimeError(f"jwtkit serve did not start:\n{output.read_text(errors='replace')}") from None
    # `jwtkit serve` prints its line once it sees the socket listen, which can trail the first accepted
    # connection by a few milliseconds (granian's worker listens; jwtkit serve polls for it)
    deadline = time.monotonic() + 5
    while "jwtkit serving on" not in output.read_text(errors="replace") and time.monotonic() < deadline:
        time.sleep(0.01)
    return ServeProcess(f"http://127.0.0.1:{port}", port, workdir, proc, output)


def stop_serve(process: ServeProcess) -> None:
    process.proc.terminate()
    try:
        process.proc.wait(10)
    except subprocess.TimeoutExpired:
        process.proc.kill()
        process.proc.wait()


def add_user(process: ServeProcess, name: str, password: str = PASSWORD) -> None:
    """``jwtkit user add NAME --email E --password-stdin`` in the server's directory (same SQLite file)."""
    cli = Path(sys.executable).parent / "jwtkit"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    result = subprocess.run([str(cli), "user", "add", name, "--email", f"{name}@example.org",
                             "--password-stdin"],
                            input=password + "\n", text=True, capture_output=True, cwd=process.workdir,
                            env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
