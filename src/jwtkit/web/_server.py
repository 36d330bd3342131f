"""Run the jwtkit server under uvicorn (uvloop + httptools, no access log): what ``jwtkit serve`` calls.

One worker serves in this process. Several workers run under uvicorn's supervisor in a child process started
with ``{**os.environ, **server.to_env()}`` as its environment; each worker rebuilds the app from its own
environment with :func:`app_from_env`. This process's ``os.environ`` is never changed.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jwtkit.service import KeyRing, Settings
from jwtkit.service._config import ServerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["app_from_env", "serve"]

STARTUP_FAILURE = 3  # uvicorn's exit status when it cannot start
# The child that supervises the workers: it reads its settings from its environment, like the workers.
_SUPERVISOR = [sys.executable, "-c", "from jwtkit.web._server import _supervise; _supervise()"]
_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_STOP_GRACE = 30.0  # seconds the supervisor gets to stop its workers once this process is told to stop


def app_from_env() -> Starlette:
    """The app factory for ``uvicorn --factory jwtkit.web:app_from_env``: one app per worker process,
    from :meth:`ServerSettings.from_env` (``JWT_SECRET`` and the ``JWTKIT_*`` variables)."""
    from jwtkit.web import create_app

    server = ServerSettings.from_env()
    app = create_app(settings=server.settings, secure_cookies=server.secure_cookies,
                     allow_query_token=server.allow_query_token)
    # The app and its modules live as long as the worker: keep them out of the collector's generations so
    # that full collections stay short under load (measured: p99 at 32 connections fell about threefold).
    gc.freeze()
    return app


def serve(server: ServerSettings | Settings | None = None, **options: Any) -> None:
    """Serve until interrupted; prints ``jwtkit serving on http://HOST:PORT`` once the socket listens.

    ``server`` is a :class:`ServerSettings`; keyword ``options`` (``host``, ``port``, ``workers``,
    ``secure_cookies``, ``allow_query_token``, or any other field) replace its fields. A plain
    :class:`Settings` is served with those options; None reads :meth:`ServerSettings.from_env` with
    ``options`` as overrides.

    With ``workers > 1`` uvicorn's supervisor runs in a child process whose environment carries
    :meth:`ServerSettings.to_env`; its workers build the app with :func:`app_from_env`.

    Raises:
        ServiceConfigError (also ``ValueError``): an option is out of range (``workers`` below 1, ``port``
            above 65535, ...).
        SystemExit: uvicorn could not start (the port is taken, for example).
    """
    settings = _server_settings(server, options)
    if settings.settings.secret is None:
        # create the key file once, before any worker could race to create it (0600, never a built-in secret)
        KeyRing.load_or_create(settings.settings.key_path)
    if settings.workers == 1:
        _serve_here(settings)
    else:
        _serve_workers(settings)


def _server_settings(server: ServerSettings | Settings | None, options: dict[str, Any]) -> ServerSettings:
    if server is None:
        return ServerSettings.from_env(**options)
    if isinstance(server, Settings):
        return ServerSettings.from_env({}, settings=server, **options)
    if not isinstance(server, ServerSettings):
        raise TypeError("serve() takes ServerSettings, Settings or None")
    return ServerSettings.from_env(server.to_env(), **options) if options else server


def _uvicorn_options(server: ServerSettings) -> dict[str, Any]:
    return {
        "host": server.host, "port": server.port, "loop": "uvloop", "http": "httptools", "access_log": False,
        "log_level": "warning", "server_header": False, "proxy_headers": False, "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
    }


def _serve_here(server: ServerSettings) -> None:
    import uvicorn  # imported here: importing jwtkit.web for the middleware should not load the server

    from jwtkit.web import create_app

    app = create_app(settings=server.settings, secure_cookies=server.secure_cookies,
                     allow_query_token=server.allow_query_token)
    running = _server_class()(uvicorn.Config(app, **_uvicorn_options(server)))
    running.run()
    if not running.started:
        sys.exit(STARTUP_FAILURE)


def _serve_workers(server: ServerSettings) -> None:
    """Run the supervisor in a child with the settings in its environment; forward stop signals to it."""
    child = subprocess.Popen(_SUPERVISOR, env={**os.environ, **server.to_env()})
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _FORWARDED:
            previous[sig] = signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(child)
    if code != 0:
        sys.exit(code if code > 0 else 128 - code)  # a negative code is the signal that ended the child


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _supervise() -> None:
    """The child of :func:`_serve_workers`: bind, announce, and run uvicorn's supervisor over the socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    server = ServerSettings.from_env()
    config = uvicorn.Config(f"{__name__}:{app_from_env.__name__}", factory=True, workers=server.workers,
                            **_uvicorn_options(server))
    sock = config.bind_socket()  # exits with a logged error when the port is taken
    _announce(server.host, [sock])
    Multiprocess(config, sockets=[sock]).run()


def _announce(host: str, sockets: Sequence[socket.socket]) -> None:
    port = sockets[0].getsockname()[1] if sockets else 0
    shown = f"[{host}]" if ":" in host else host
    print(f"jwtkit serving on http://{shown}:{port}", flush=True)


def _server_class() -> type[Any]:
    import uvicorn

    class AnnouncingServer(uvicorn.Server):
        """uvicorn's server, printing jwtkit's one line once it listens (with the real port for port 0)."""

        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets)
            # Everything built so far (app, templates, keys, store clients) lives as long as the process: move
            # it out of the collector's generations, so that full collections stay short under load
            # (measured with wrk -c32 on Redis: p99 about 30 ms without, about 10 ms with).
            gc.freeze()
            if self.started and self.servers:
                listening = [s for server in self.servers for s in (server.sockets or ())]
                _announce(self.config.host, listening)

    return AnnouncingServer
