"""End to end against a real ``jwtkit serve`` process (granian), with plain HTTP clients as curl would be."""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from _support import JSON, PASSWORD, ServeProcess, add_user, start_serve, stop_serve

from waiting import status_within


def test_serve_prints_its_url_and_keeps_a_0600_key(serve_plain: ServeProcess) -> None:
    assert f"jwtkit serving on http://127.0.0.1:{serve_plain.port}" in serve_plain.log()
    key = serve_plain.workdir / "jwtkit.key"
    assert key.exists()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (serve_plain.workdir / "jwtkit.db").exists()


def test_login_private_logout_with_curl_like_requests(serve_plain: ServeProcess) -> None:
    add_user(serve_plain, "alice")
    with httpx.Client(base_url=serve_plain.url, headers=JSON, timeout=30) as client:
        login = client.post("/auth", json={"username": "alice", "password": PASSWORD})
        assert login.status_code == 200
        token = login.json()["access_token"]
        assert login.headers["authorization"] == f"Bearer {token}"
        assert client.get("/private", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert client.get("/private",
                          headers={"Authorization": token}).status_code == 200  # the tutorial's way
        missing = client.get("/private")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.post("/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
        revoked = client.get("/private", headers={"Authorization": f"Bearer {token}"})
        assert revoked.status_code == 401
        assert revoked.json()["reason"] == "revoked"
        assert client.post("/logout", headers={"Authorization": f"Bearer {token}"}).status_code == 204
        wrong = client.post("/auth", json={"username": "alice", "password": "nope nope nope"})
        assert wrong.status_code == 401
        assert wrong.json()["error"] == "invalid_credentials"


def test_form_login_sets_plain_cookies(serve_plain: ServeProcess) -> None:
    add_user(serve_plain, "bob")
    with httpx.Client(base_url=serve_plain.url, headers={"Accept": "text/html"}, timeout=30) as browser:
        response = browser.post("/auth", data={"username": "bob", "password": PASSWORD})
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith("jwtkit="))
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
        private = browser.get("/private")
        assert private.status_code == 200
        assert "this is private" in private.text
        assert private.headers["cache-control"] == "no-store"


def test_machine_endpoints_and_bad_requests(serve_plain: ServeProcess) -> None:
    with httpx.Client(base_url=serve_plain.url, headers=JSON, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok", "store": "ok", "mirror": "off"}  # SQLite
        assert client.get("/.well-known/jwks.json").json() == {"keys": []}
        assert client.get("/openapi.json").json()["openapi"] == "3.1.0"
        assert client.post("/auth", content=b"x" * 20000,
                           headers={"Content-Type": "application/json"}).status_code == 413
        assert client.post("/auth", content=b"a=b", headers={"Content-Type": "text/plain"}).status_code == 415
        assert client.post("/auth", json={"username": "x"}).status_code == 400
        assert client.get("/private", headers={"Authorization": "Bearer not-a-jwt"}).status_code == 401
        assert client.get("/private", headers={"X-Big": "b" * 20000}).status_code == 431
        register = client.post("/register", json={"username": "carol", "password": PASSWORD})
        assert register.status_code == 201
        assert client.post("/register", json={"username": "carol", "password": PASSWORD}).status_code == 409


def test_raw_garbage_on_the_socket_does_not_kill_the_server(serve_plain: ServeProcess) -> None:
    for payload in (b"\x00\xff garbage\r\n\r\n",
                    b"GET /private HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
                    b"POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n"):
        with socket.create_connection(("127.0.0.1", serve_plain.port), timeout=5) as sock:
            sock.sendall(payload)
            with contextlib.suppress(OSError):
                sock.recv(4096)
    with httpx.Client(base_url=serve_plain.url, timeout=30) as client:
        assert client.get("/healthz").status_code == 200
    assert serve_plain.proc.poll() is None


@pytest.mark.redis
def test_redis_store_outage_503_then_recovery(tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    process = start_serve(tmp_path, "--no-secure-cookies", "--store", redis_server.url,
                          env={"JWTKIT_KEY_ENCRYPTION_KEY": "ab" * 32})  # the keys live in the store
    try:
        add_user(process, "dan")
        with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
            token = client.post("/auth", json={"username": "dan",
                                               "password": PASSWORD}).json()["access_token"]
            bearer = {"Authorization": f"Bearer {token}"}
            assert client.get("/private", headers=bearer).status_code == 200
            redis_server.kill()
            # the server's mirror answers until it sees the feed broke: 503 within mirror_max_lag
            status_within(lambda: client.get("/private", headers=bearer).status_code, 503)
            assert client.get("/healthz").status_code == 503
            redis_server.start()
            deadline = time.monotonic() + 10
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert client.get("/healthz").status_code == 200
            again = client.post("/auth", json={"username": "dan", "password": PASSWORD})
            assert again.status_code == 200
            assert client.get("/private", headers={"Authorization": f"Bearer {again.json()['access_token']}"}
                              ).status_code == 200
    finally:
        stop_serve(process)


def test_two_workers_share_the_key_and_the_store(tmp_path: Path) -> None:
    process = start_serve(tmp_path, "--no-secure-cookies", "--workers", "2")
    try:
        assert f"jwtkit serving on http://127.0.0.1:{process.port}" in process.log()
        add_user(process, "eve")
        tokens = []
        for _ in range(6):  # new connections land on either worker
            with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
                answer = client.post("/auth", json={"username": "eve", "password": PASSWORD})
                assert answer.status_code == 200, (answer.status_code, answer.text, process.log())
                tokens.append(answer.json()["access_token"])
        for token in tokens:
            with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
                assert client.get("/private", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        stop_serve(process)


def test_a_taken_port_fails_without_claiming_to_serve(serve_plain: ServeProcess, tmp_path: Path) -> None:
    from _support import serve_command

    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    other = tmp_path / "other"
    other.mkdir()
    result = subprocess.run(serve_command(serve_plain.port, "--no-secure-cookies"), cwd=other, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 5
    assert result.stdout == ""
    assert result.stderr == (f"jwtkit: port_in_use: 127.0.0.1:{serve_plain.port} is already in use; "
                             "choose another with --port or JWTKIT_PORT\n")


def test_the_tutorials_curl_commands(serve_plain: ServeProcess, tmp_path: Path) -> None:
    import shutil

    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    add_user(serve_plain, "fred")
    login = subprocess.run([curl, "-s", "-i", "-X", "POST", f"{serve_plain.url}/auth",
                            "-d", "username=fred", "-d", f"password={PASSWORD}"],
                           capture_output=True, text=True, timeout=30)
    head, _, body = login.stdout.partition("\n\n")  # text mode turned CRLF into LF
    assert head.startswith("HTTP/1.1 200")
    token = next(line.split(" ",
                            2)[2] for line in head.splitlines() if line.lower().startswith("authorization:"))
    private = subprocess.run([curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H",
                              f"Authorization: {token}",
                              f"{serve_plain.url}/private"], capture_output=True, text=True, timeout=30)
    assert private.stdout == "200"
    assert token in body


@pytest.mark.redis
def test_started_while_redis_is_down_it_answers_503_then_opens_by_itself(
        tmp_path: Path, redis_server) -> None:  # type: ignore[no-untyped-def]
    redis_server.kill()
    process = start_serve(tmp_path, "--no-secure-cookies", "--store", redis_server.url,
                          env={"JWTKIT_KEY_ENCRYPTION_KEY": "ab" * 32})  # the keys live in the store
    try:
        add_user(process, "gil")  # the user repository (SQLite) does not need the store
        with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
            assert client.get("/healthz").status_code == 503
            down = client.post("/auth", json={"username": "gil", "password": PASSWORD})
            assert down.status_code == 503
            assert down.json()["error"] == "store_unavailable"
            assert client.post("/register", json={"username": "hal", "password": PASSWORD}).status_code == 503
            assert client.get("/openapi.json").status_code == 200
            redis_server.start()
            deadline = time.monotonic() + 15
            while client.get("/healthz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            login = client.post("/auth", json={"username": "gil", "password": PASSWORD})
            assert login.status_code == 200
            bearer = {"Authorization": f"Bearer {login.json()['access_token']}"}
            assert client.get("/private", headers=bearer).status_code == 200
    finally:
        stop_serve(process)
