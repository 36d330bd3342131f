"""The limits of the real server (``jwtkit serve`` on granian, loopback, a free port): oversized request heads
get 431 without hurting the server, and a client that stops sending is disconnected within the header-read
timeout."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _support import ServeProcess, start_serve, stop_serve

from jwtkit.web._server import HEADER_READ_TIMEOUT_MS, MAX_BUFFER_SIZE

TIMEOUT = HEADER_READ_TIMEOUT_MS / 1000
MARGIN = 5.0  # seconds of slack on a loaded machine


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = start_serve(Path(tmp_path_factory.mktemp("limits")), "--no-secure-cookies", "--store",
                          "memory://")
    try:
        yield process
    finally:
        stop_serve(process)


def _head(process: ServeProcess, header_bytes: int) -> bytes:
    """Send one GET with an ``X-Big`` header of ``header_bytes`` bytes; what the server answers, up to 64 KiB
    or its closing the connection."""
    request = (b"GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\nX-Big: "
               + b"b" * header_bytes + b"\r\n\r\n")
    with socket.create_connection(("127.0.0.1", process.port), timeout=10) as sock:
        with contextlib.suppress(OSError):  # the server may answer and close before it has read everything
            sock.sendall(request)
        answer = b""
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                answer += chunk
                if b"\r\n\r\n" in answer and len(answer) > 4096:
                    break
        return answer


def test_headers_over_the_limit_get_431_and_the_server_keeps_serving(served: ServeProcess) -> None:
    over_the_apps_limit = _head(served, 20_000)  # jwtkit's edge: 16 KiB of headers at most
    assert over_the_apps_limit.startswith(b"HTTP/1.1 431 "), over_the_apps_limit[:200]
    assert b'"error":"headers_too_large"' in over_the_apps_limit.replace(b" ", b"")
    far_over = _head(served, 4 * MAX_BUFFER_SIZE)  # granian's own read buffer: it answers by itself
    assert far_over.startswith(b"HTTP/1.1 431 "), far_over[:200]
    with httpx.Client(base_url=served.url, timeout=30) as client:
        healthy = client.get("/healthz")
        assert healthy.status_code == 200
        assert healthy.headers.get("server") == "granian"  # granian always adds it (no option to drop it)
        assert client.get("/private", headers={"X-Big": "b" * 20_000}).status_code == 431
    assert served.proc.poll() is None


def _closed_within(sock: socket.socket, seconds: float) -> float:
    """Seconds until the server closes ``sock`` (EOF or reset); fails if it is open after ``seconds``."""
    start = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass  # a response (or hyper's 408) before the close is fine
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept a stalled connection open for more than {seconds} s")
    return time.monotonic() - start


def test_a_client_that_stops_mid_request_line_is_disconnected(served: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as stalled, \
            socket.create_connection(("127.0.0.1", served.port), timeout=10) as idle:
        stalled.sendall(b"GET /priv")  # half a request line, then nothing
        idle.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200 ")  # then an idle keep-alive connection
        assert _closed_within(stalled, TIMEOUT + MARGIN) >= TIMEOUT - 1.0
        assert _closed_within(idle, MARGIN) < MARGIN  # its own 5 s ran alongside the first one's
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
    assert served.proc.poll() is None
