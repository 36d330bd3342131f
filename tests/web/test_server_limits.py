"""The limits of the real server (``jwtkit serve`` on granian, loopback, a free port): oversized request heads
get 431 without hurting the server or growing its memory, a client that stops sending (or drips its head, or
its body) is disconnected or answered within the timeouts, and requests past the concurrency limit get 503 at
once (docs/cli.md, "Limits")."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from _support import ServeProcess, start_serve, stop_serve

from jwtkit.web._edge import BODY_TIMEOUT
from jwtkit.web._server import HEADER_READ_TIMEOUT_MS, MAX_BUFFER_SIZE

TIMEOUT = HEADER_READ_TIMEOUT_MS / 1000
MARGIN = 5.0  # seconds of slack on a loaded machine
CONCURRENCY = 4  # the served process's --max-concurrency


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    process = start_serve(Path(tmp_path_factory.mktemp("limits")), "--no-secure-cookies", "--store",
                          "memory://", "--max-concurrency", str(CONCURRENCY))
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


def test_a_head_dripped_a_line_at_a_time_is_cut_off_at_the_header_read_timeout(served: ServeProcess) -> None:
    # The slowloris: one header line every few seconds kept connections open for 40 s. The timeout
    # covers the whole head, not the gap between bytes.
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as drip:
        drip.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        start = time.monotonic()
        closed = False
        while time.monotonic() - start < TIMEOUT + MARGIN:
            try:
                drip.sendall(b"X-Drip: 1\r\n")
            except OSError:
                closed = True
                break
            drip.settimeout(1.0)
            try:
                if drip.recv(4096) == b"":
                    closed = True
                    break
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
        assert closed, f"a dripping head was still open after {TIMEOUT + MARGIN} s"
        assert time.monotonic() - start < TIMEOUT + MARGIN


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (granian's main process and workers)."""
    total = 0
    pending = [pid]
    while pending:
        current = pending.pop()
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending.extend(int(child) for child in children)
    return total


def _flood(port: int, size: int) -> int:
    """Send up to ``size`` bytes of one unterminated header as fast as the server takes them; how many it
    took before it answered or closed the connection."""
    sent = 0
    chunk = b"b" * 65536
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /private HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Flood: ")
        with contextlib.suppress(OSError):  # reset or broken pipe: the server gave up on us
            while sent < size:
                sent += sock.send(chunk)
    return sent


def test_an_unterminated_header_flood_does_not_grow_the_servers_memory(served: ServeProcess) -> None:
    # The issue: three connections each sending an unterminated 128 MiB header took the server from 163 MB
    # to 552 MB. Here three send 64 MiB each, one after the other so that each is measured.
    before = _rss(served.proc.pid)
    took = [_flood(served.port, 64 * 1024 * 1024) for _ in range(3)]
    grown = _rss(served.proc.pid) - before
    assert all(sent < 8 * 1024 * 1024 for sent in took), took  # cut off near the buffer, not after 64 MiB
    assert grown < 16 * 1024 * 1024, f"RSS grew {grown / 2**20:.1f} MiB"
    with httpx.Client(base_url=served.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200


def test_a_body_that_does_not_arrive_gets_408_at_the_body_timeout(served: ServeProcess) -> None:
    with socket.create_connection(("127.0.0.1", served.port), timeout=BODY_TIMEOUT + MARGIN) as slow:
        slow.sendall(b"POST /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                     b"Content-Length: 1000\r\n\r\n{\"username\": ")
        start = time.monotonic()
        answer = slow.recv(65536)
        waited = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"error":"request_timeout"' in answer.replace(b" ", b"")
    assert BODY_TIMEOUT - 1.0 <= waited <= BODY_TIMEOUT + MARGIN


def test_requests_past_the_concurrency_limit_get_503_at_once(served: ServeProcess) -> None:
    # CONCURRENCY requests whose bodies never come hold every slot; the next request is refused at once
    # rather than queued, and once the holders leave, requests are served again.
    holders = []
    try:
        for _ in range(CONCURRENCY):
            holder = socket.create_connection(("127.0.0.1", served.port), timeout=10)
            holders.append(holder)
            holder.sendall(b"POST /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Content-Length: 100\r\n\r\n{")
        with httpx.Client(base_url=served.url, timeout=30) as client:
            deadline = time.monotonic() + MARGIN
            refused = client.get("/healthz")  # the holders' heads may still be on their way to the app
            while refused.status_code == 200 and time.monotonic() < deadline:
                refused = client.get("/healthz")
            assert refused.status_code == 503, refused.text
            assert refused.json()["error"] == "overloaded"
            assert refused.headers["retry-after"] == "1"
    finally:
        for holder in holders:
            holder.close()
    with httpx.Client(base_url=served.url, timeout=30) as client:
        deadline = time.monotonic() + MARGIN
        status = client.get("/healthz").status_code
        while status != 200 and time.monotonic() < deadline:
            status = client.get("/healthz").status_code
        assert status == 200
    assert "unhandled error" not in served.log()  # a client leaving mid-body is not a bug to log
