"""Run the jwtkit server under granian (ASGI with lifespan, uvloop, HTTP/1.1, no access log): what
``jwtkit serve`` calls.

This process binds the socket itself (so that a taken port fails here, with a :class:`ListenError` that says
why, and port 0 gets a real port to announce) and starts granian's main process as a child with
``{**os.environ, **server.to_env()}`` as its environment and the bound socket as an inherited descriptor.
granian's workers, one or several, are forked from that child and share the socket; each builds the app from
its own environment with :func:`app_from_env`, runs the app's lifespan start-up, and then listens. Once the
socket listens, this process prints ``jwtkit serving on http://HOST:PORT``, lets go of its copy, forwards stop
signals to the child and waits for it. This process's ``os.environ`` is never changed.
"""

from __future__ import annotations

import errno
import gc
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

from jwtkit.service import Settings
from jwtkit.service._build import prepare_keys
from jwtkit.service._config import ServerSettings

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["ListenError", "app_from_env", "serve"]

_FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)  # SIGHUP: granian respawns its workers
_LISTEN_POLL = 0.01  # seconds between looks at whether a granian worker has started listening
_STOP_GRACE = 30.0  # seconds granian's main process gets to stop once this process is told to stop
_WORKER_KILL_TIMEOUT = 20  # seconds a worker gets to finish its requests before granian kills it

# granian's settings, chosen to match what jwtkit ran under uvicorn (see docs/cli.md):
BACKLOG = 2048  # uvicorn's default; granian also caps each worker's concurrent requests at backlog / workers
# A request's head must arrive within 5 s; hyper also applies it to an idle keep-alive connection waiting for
# its next request (uvicorn's 5 s idle limit).
HEADER_READ_TIMEOUT_MS = 5_000
# hyper's read buffer per connection: a request head up to about this size reaches the app, whose edge answers
# 431 above 16 KiB; a larger one gets hyper's own 431.
MAX_BUFFER_SIZE = 32 * 1024


class ListenError(OSError):
    """Raised by :func:`serve` when its address cannot be bound, before granian starts. ``code`` says why:
    ``port_in_use`` (EADDRINUSE: something listens there), ``permission_denied`` (EACCES: a port below 1024
    without the privilege), ``address_unavailable`` (EADDRNOTAVAIL, or a host name that does not resolve: no
    address of this machine), or ``cannot_listen``. ``host`` and ``port`` are the address asked for, ``errno``
    the bind's; ``str()`` is one line that names the address."""

    def __init__(self, code: str, message: str, *, host: str, port: int, error: int | None) -> None:
        super().__init__(error, message)
        self.code = code
        self.message = message
        self.host = host
        self.port = port

    def __str__(self) -> str:
        return self.message


def app_from_env() -> Starlette:
    """The app factory each granian worker calls (``jwtkit.web.server:app_from_env``, factory mode): one app
    per worker process, from :meth:`ServerSettings.from_env` (``JWT_SECRET`` and the ``JWTKIT_*``
    variables)."""
    from jwtkit.web import create_app

    server = ServerSettings.from_env()
    app = create_app(settings=server.settings, secure_cookies=server.secure_cookies,
                     allow_query_token=server.allow_query_token, max_concurrency=server.max_concurrency,
                     forwarded_allow_ips=server.forwarded_allow_ips)
    # The app and its modules live as long as the worker: keep them out of the collector's generations so
    # that full collections stay short under load (measured: p99 at 32 connections fell about threefold).
    gc.freeze()
    return app


def serve(server: ServerSettings | Settings | None = None, **options: Any) -> None:
    """Serve until interrupted; prints ``jwtkit serving on http://HOST:PORT`` once the socket listens, that
    is once a worker has built the app and run its start-up (with the real port when port 0 was asked:
    this process binds the socket before granian starts).

    ``server`` is a :class:`ServerSettings`; keyword ``options`` (``host``, ``port``, ``workers``,
    ``secure_cookies``, ``allow_query_token``, or any other field) replace its fields. A plain
    :class:`Settings` is served with those options; None reads :meth:`ServerSettings.from_env` with
    ``options`` as overrides.

    granian runs in a child process whose environment carries :meth:`ServerSettings.to_env`; its
    ``workers`` worker processes build the app with :func:`app_from_env`.

    Raises:
        ServiceConfigError (also ``ValueError``): an option is out of range (``workers`` below 1, ``port``
            above 65535, ...).
        ListenError (an ``OSError``): the address cannot be bound (``.code`` ``port_in_use``,
            ``permission_denied``, ``address_unavailable`` or ``cannot_listen``); nothing was started.
        SystemExit: granian stopped with an error (its status).
    """
    settings = _server_settings(server, options)
    # Create the key file once, before any worker could race to create it (0600, never a built-in secret);
    # or load the ring of a shared store, so that a missing or wrong key-encryption key is one line now.
    prepare_keys(settings.settings)
    with _bind(settings) as sock:
        child = subprocess.Popen(_supervisor_command(sock.fileno()), env={**os.environ, **settings.to_env()},
                                 pass_fds=(sock.fileno(),))
        previous = _forward_signals(child)
        try:
            if _wait_until_listening(sock, child):
                _announce(settings.host, sock)
            sock.close()  # granian holds the socket now: once it has stopped, the port is free
            code = child.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            _stop(child)
    if code != 0:
        sys.exit(code if code > 0 else 128 - code)  # a negative code is the signal that ended the child


def _server_settings(server: ServerSettings | Settings | None, options: dict[str, Any]) -> ServerSettings:
    if server is None:
        return ServerSettings.from_env(**options)
    if isinstance(server, Settings):
        return ServerSettings.from_env({}, settings=server, **options)
    if not isinstance(server, ServerSettings):
        raise TypeError("serve() takes ServerSettings, Settings or None")
    return ServerSettings.from_env(server.to_env(), **options) if options else server


def _bind(server: ServerSettings) -> socket.socket:
    """A TCP socket bound to the server's address (granian's first worker to start serving makes it listen),
    or :class:`ListenError`.

    No SO_REUSEPORT (granian sets it when it binds by itself, which would let a second server share a port
    that is in use): the bind fails when anything listens there."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a restart need not wait for TIME_WAIT
        sock.bind((server.host, server.port))
    except OSError as exc:
        sock.close()
        raise _listen_error(server.host, server.port, exc) from None
    return sock


def _listen_error(host: str, port: int, exc: OSError) -> ListenError:
    """The :class:`ListenError` for a failed bind: the reason a person can act on, in one line."""
    address = f"{_shown(host)}:{port}"
    if isinstance(exc, socket.gaierror):
        code, message = "address_unavailable", f"cannot listen on {address}: the host name does not resolve"
    elif exc.errno == errno.EADDRINUSE:
        code, message = "port_in_use", f"{address} is already in use"
    elif exc.errno == errno.EACCES:
        low = " (ports below 1024 need privileges)" if 0 < port < 1024 else ""
        code, message = "permission_denied", f"cannot listen on {address}: permission denied{low}"
    elif exc.errno == errno.EADDRNOTAVAIL:
        code, message = "address_unavailable", f"cannot listen on {address}: not an address of this machine"
    else:
        code, message = "cannot_listen", f"cannot listen on {address}: {(exc.strerror or str(exc)).lower()}"
    return ListenError(code, message, host=host, port=port, error=exc.errno)


def _supervisor_command(fd: int) -> list[str]:
    """granian's main process: it reads its settings from its environment, like the workers."""
    return [sys.executable, "-c", f"from jwtkit.web._server import _supervise; _supervise({fd})"]


def _forward_signals(child: subprocess.Popen[bytes]) -> dict[signal.Signals, Any]:
    """Send SIGINT, SIGTERM and SIGHUP on to ``child``; returns the handlers to put back."""
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in _FORWARDED:
            previous[sig] = signal.signal(sig, lambda signum, _frame: child.send_signal(signum))
    return previous


def _wait_until_listening(sock: socket.socket, child: subprocess.Popen[bytes]) -> bool:
    """True once the socket listens (a worker has built the app, run its lifespan start-up and called
    listen() on the shared socket); False if granian exited first."""
    while not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        if child.poll() is not None:
            return False
        time.sleep(_LISTEN_POLL)
    return True


def _stop(child: subprocess.Popen[bytes]) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(_STOP_GRACE)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _supervise(fd: int) -> None:
    """The child of :func:`serve`: run granian over the inherited bound socket ``fd``."""
    server = ServerSettings.from_env()
    _granian(server, socket.socket(fileno=fd)).serve()


def _granian(server: ServerSettings, listener: socket.socket) -> Any:
    """A granian server for jwtkit's app factory, serving on ``listener`` instead of binding by itself."""
    from granian import Granian
    from granian._granian import SocketHolder
    from granian.constants import HTTPModes, Interfaces, Loops
    from granian.http import HTTP1Settings
    from granian.log import LogLevels

    base: Any = Granian
    holder: Any = SocketHolder  # its stub lists no arguments; it takes (fd, is_uds, backlog)

    class OnListener(base):  # type: ignore[misc]
        """granian's server on a socket bound beforehand. granian binds with SO_REUSEPORT and, on Linux, in
        each worker; here its main process hands the one socket to its workers, as it does on other
        systems (and as uvicorn's supervisor did)."""

        def _init_shared_socket(self) -> None:
            self._ssp = None
            self._shd = holder(listener.fileno(), False, BACKLOG)
            self._sfd = listener.fileno()
            self._sso = listener

    return OnListener(
        f"{__name__}:{app_from_env.__name__}",
        factory=True,
        address=server.host,
        port=listener.getsockname()[1],
        interface=Interfaces.ASGI,  # with lifespan: the app opens the service at start-up, closes it at exit
        workers=server.workers,
        loop=Loops.uvloop,
        http=HTTPModes.http1,  # what uvicorn served: no cleartext HTTP/2
        websockets=False,
        backlog=BACKLOG,
        http1_settings=HTTP1Settings(header_read_timeout=HEADER_READ_TIMEOUT_MS, keep_alive=True,
                                     max_buffer_size=MAX_BUFFER_SIZE),
        log_level=LogLevels.warning,
        log_access=False,
        respawn_failed_workers=True,  # as uvicorn's supervisor did; granian stops on a crash loop
        workers_kill_timeout=_WORKER_KILL_TIMEOUT,
    )


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _announce(host: str, sock: socket.socket) -> None:
    print(f"jwtkit serving on http://{_shown(host)}:{sock.getsockname()[1]}", flush=True)
