"""``jwtkit user``, ``sessions``, ``keys`` and ``serve`` as subprocesses over real SQLite files.

Sessions are created by logging in through the service in this process, on the same files the command uses,
so each assertion checks what the command changed in the shared store.
"""

from __future__ import annotations

import asyncio
import json
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from cli_support import Runner, assert_one_line_error, clean_env

from jwtkit.service import SessionRevoked, Settings, TokenPair, build_service
from processes import free_port

PASSWORD = "correct horse battery staple"


def _settings(tmp_path: Path) -> Settings:
    # The same files the command opens from its working directory (sqlite:///jwtkit.db, jwtkit.key).
    return Settings.from_env(
        {}, store_url=f"sqlite:///{tmp_path}/jwtkit.db", key_path=str(tmp_path / "jwtkit.key")
    )


def _login(tmp_path: Path, agent: str) -> TokenPair:
    async def go() -> TokenPair:
        async with build_service(_settings(tmp_path)) as service:
            return await service.login("alice", PASSWORD, ip="192.0.2.7", user_agent=agent)

    return asyncio.run(go())


def _authenticate(tmp_path: Path, token: str) -> str:
    """'ok' or the service error code for this access token."""

    async def go() -> str:
        async with build_service(_settings(tmp_path)) as service:
            try:
                await service.authenticate(token)
            except SessionRevoked as exc:
                return exc.code
            return "ok"

    return asyncio.run(go())


def _add_alice(jwtkit: Runner) -> None:
    proc = jwtkit(
        "user", "add", "alice", "--email", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("created user alice (id ")


def test_user_add_list_disable(jwtkit: Runner, tmp_path: Path) -> None:
    _add_alice(jwtkit)
    assert (tmp_path / "jwtkit.db").exists()
    users = json.loads(jwtkit("user", "list", "--json").stdout)
    assert [(u["username"], u["email"], u["verified"], u["disabled"]) for u in users] == [
        ("alice", "alice@example.com", False, False)
    ]
    verified = jwtkit("--json", "user", "add", "bob", "--verified", "--password-stdin", stdin=PASSWORD)
    assert verified.returncode == 0 and json.loads(verified.stdout)["verified"] is True

    assert_one_line_error(
        jwtkit("user", "add", "alice", "--password-stdin", stdin=PASSWORD), 4, "username_taken"
    )
    look_alike = jwtkit("user", "add", "\u0430lice", "--password-stdin", stdin=PASSWORD)  # Cyrillic а
    assert_one_line_error(look_alike, 4, "username_taken")
    assert "looks like one that is taken" in look_alike.stderr
    assert_one_line_error(
        jwtkit("user", "add", "carol", "--password-stdin", stdin="password\n"), 4, "weak_password"
    )
    assert_one_line_error(jwtkit("user", "add", "dave", "--password-stdin", stdin=""), 2, "usage")
    assert_one_line_error(jwtkit("user", "add", "erin"), 2, "usage")  # no tty to ask, and no --password-stdin

    disabled = jwtkit("user", "disable", "alice")
    assert disabled.returncode == 0 and disabled.stdout == "disabled user alice\n"
    users = {u["username"]: u for u in json.loads(jwtkit("user", "list", "--json").stdout)}
    assert users["alice"]["disabled"] is True and users["bob"]["disabled"] is False
    assert_one_line_error(jwtkit("user", "disable", "nobody"), 4, "user_not_found")
    human = jwtkit("user", "list")
    assert "alice" in human.stdout and "bob" in human.stdout


def test_sessions_list_revoke_and_revoke_all(jwtkit: Runner, tmp_path: Path) -> None:
    _add_alice(jwtkit)
    phone = _login(tmp_path, "phone")
    laptop = _login(tmp_path, "laptop")
    tablet = _login(tmp_path, "tablet")

    listed = json.loads(jwtkit("sessions", "list", "alice", "--json").stdout)
    assert {s["sid"] for s in listed} == {phone.session.sid, laptop.session.sid, tablet.session.sid}
    assert {s["user_agent"] for s in listed} == {"phone", "laptop", "tablet"}
    assert {s["ip"] for s in listed} == {"192.0.2.7"}

    revoked = jwtkit("sessions", "revoke", "--", phone.session.sid)
    assert revoked.returncode == 0 and revoked.stdout == f"revoked session {phone.session.sid}\n"
    assert _authenticate(tmp_path, phone.access_token) == "session_revoked"
    assert _authenticate(tmp_path, laptop.access_token) == "ok"
    assert_one_line_error(jwtkit("sessions", "revoke", "--", phone.session.sid), 4, "session_not_found")
    assert_one_line_error(jwtkit("sessions", "revoke", "no-such-sid"), 4, "session_not_found")

    assert jwtkit("sessions", "revoke-all", "alice").returncode == 0
    assert _authenticate(tmp_path, laptop.access_token) == "session_revoked"
    assert _authenticate(tmp_path, tablet.access_token) == "session_revoked"
    assert json.loads(jwtkit("sessions", "list", "alice", "--json").stdout) == []
    assert_one_line_error(jwtkit("sessions", "list", "nobody"), 4, "user_not_found")


def test_session_listing_shows_client_text_inertly(jwtkit: Runner, tmp_path: Path) -> None:
    _add_alice(jwtkit)
    _login(tmp_path, "evil\x1b]0;owned\x07 \x9b2J [red]agent[/red]")
    human = jwtkit("sessions", "list", "alice", env={"COLUMNS": "300"})
    assert human.returncode == 0
    assert "\x1b" not in human.stdout and "\x9b" not in human.stdout and "\x07" not in human.stdout
    assert "[red]agent[/red]" in human.stdout  # not rich markup
    listed = json.loads(jwtkit("sessions", "list", "alice", "--json").stdout)
    assert listed[0]["user_agent"] == "evil\x1b]0;owned\x07 \x9b2J [red]agent[/red]"


def test_keys_rotate(jwtkit: Runner, tmp_path: Path) -> None:
    first = jwtkit("keys", "rotate", "--json")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "jwtkit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    second = json.loads(jwtkit("keys", "rotate", "--alg", "ES256", "--json").stdout)
    assert second["kid"] != json.loads(first.stdout)["kid"] and second["alg"] == "ES256"
    assert [k["kid"] for k in second["jwks"]["keys"]] == [second["kid"]]  # HMAC keys are never published
    human = jwtkit("keys", "rotate")
    assert human.returncode == 0 and human.stdout.startswith("new key ")
    assert_one_line_error(jwtkit("keys", "rotate", env={"JWT_SECRET": "x" * 40}), 2, "usage")
    assert_one_line_error(jwtkit("keys", "rotate", "--alg", "none"), 2, "usage")
    other = jwtkit("keys", "rotate", "--key-file", "other.key", "--json")
    assert other.returncode == 0 and json.loads(other.stdout)["file"] == "other.key"
    assert stat.S_IMODE((tmp_path / "other.key").stat().st_mode) == 0o600


def test_keys_rotate_publishes_before_signing_and_says_when_servers_use_it(jwtkit: Runner,
                                                                         tmp_path: Path) -> None:
    from jwtkit.service import KeyRing
    from jwtkit.service._keyring import CHECK_EVERY, PUBLISH_AHEAD

    first = jwtkit("keys", "rotate", "--alg", "EdDSA")  # no file yet: nothing was published, it signs now
    assert first.returncode == 0, first.stderr
    assert f"it signs now: running servers use it within {CHECK_EVERY:g} s" in first.stdout
    before = time.time()
    second = jwtkit("keys", "rotate")
    lines = second.stdout.splitlines()
    assert lines[1].startswith("published now: running servers verify it")
    assert f"within {CHECK_EVERY:g} s" in lines[1]
    assert lines[2].startswith("it signs from ") and f"(in {PUBLISH_AHEAD:.0f} s)" in lines[2]
    assert lines[3].startswith("the key it succeeds, ") and " verifies until " in lines[3]
    listed = json.loads(jwtkit("keys", "list", "--json").stdout)
    assert [key["state"] for key in listed] == ["next", "active"]
    upcoming, current = listed
    assert upcoming["published"] is True and upcoming["active_from"] >= before + PUBLISH_AHEAD
    assert current["retired_at"] == upcoming["active_from"]
    assert current["verify_until"] == current["retired_at"] + 14 * 86400  # the refresh-token lifetime
    table = jwtkit("keys", "list", env={"COLUMNS": "250"}).stdout
    assert upcoming["kid"] in table and " next " in table and " active " in table

    # at once, and no retire window: the keys it succeeds verify nothing from now on, so they are dropped
    now = json.loads(jwtkit("keys", "rotate", "--now", "--retire-after", "0", "--json").stdout)
    assert now["active_from"] <= time.time() and now["seen_within"] == CHECK_EVERY
    assert [key["kid"] for key in json.loads(jwtkit("keys", "list", "--json").stdout)] == [now["kid"]]
    # a rotation whose retire window has ended since: listed as retired until prune drops it
    KeyRing.rotate(tmp_path / "jwtkit.key", retire_after=50.0, now=time.time() - 100)
    states = {key["kid"]: key["state"] for key in json.loads(jwtkit("keys", "list", "--json").stdout)}
    assert states[now["kid"]] == "retired" and list(states.values()).count("active") == 1
    pruned = json.loads(jwtkit("keys", "prune", "--json").stdout)
    assert pruned["dropped"] == [now["kid"]]
    assert jwtkit("keys", "prune").stdout == "no retired key in jwtkit.key\n"
    assert_one_line_error(jwtkit("keys", "rotate", "--now", "--activate-in", "5"), 2, "usage")
    assert_one_line_error(jwtkit("keys", "list", env={"JWT_SECRET": "x" * 40}), 2, "usage")
    assert_one_line_error(jwtkit("keys", "list", "--key-file", "missing.key"), 2, "service_config")


def test_store_unavailable_exits_3(jwtkit: Runner) -> None:
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = jwtkit("sessions", "revoke", "some-sid", "--store", f"redis://127.0.0.1:{port}/0")
    assert_one_line_error(proc, 3, "store_unavailable")


def test_bad_store_url_is_a_usage_error(jwtkit: Runner) -> None:
    assert_one_line_error(jwtkit("user", "list", "--store", "ftp://nowhere"), 2, "store_config")


def _serve(tmp_path: Path, args: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "jwtkit", "serve", *args],
        cwd=tmp_path,
        env=clean_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line


@pytest.mark.parametrize("via", ["env", "options"])
def test_serve_reads_options_and_jwtkit_env_vars(tmp_path: Path, via: str) -> None:
    port = free_port()
    if via == "env":
        env = {
            "JWTKIT_PORT": str(port),
            "JWTKIT_STORE": "memory://",
            "JWT_SECRET": "s" * 40,
            "JWTKIT_SECURE_COOKIES": "false",
            "JWTKIT_ISSUER": "env-issuer",
        }
        args: list[str] = []
    else:
        env = {"JWTKIT_PORT": "1", "JWT_SECRET": "s" * 40}  # options win over the environment
        args = ["--port", str(port), "--store", "memory://", "--no-secure-cookies", "--issuer", "opt-issuer"]
    proc, line = _serve(tmp_path, args, env)
    try:
        assert line.strip() == f"jwtkit serving on http://127.0.0.1:{port}", line
        deadline = time.monotonic() + 15
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert response.status_code == 200
        register = httpx.post(
            f"http://127.0.0.1:{port}/register", json={"username": "zed", "password": PASSWORD}
        )
        assert register.status_code == 201
        login = httpx.post(f"http://127.0.0.1:{port}/auth", json={"username": "zed", "password": PASSWORD})
        assert login.status_code == 200
        token = login.json()["access_token"]
        claims = json.loads(
            subprocess.run(
                [sys.executable, "-m", "jwtkit", "decode", "--json", token],
                capture_output=True,
                text=True,
                env=clean_env(),
            ).stdout
        )["claims"]
        assert claims["iss"] == ("env-issuer" if via == "env" else "opt-issuer")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_refuses_a_bad_port(jwtkit: Runner) -> None:
    bad_variable = jwtkit("serve", env={"JWTKIT_PORT": "eighty"})
    assert_one_line_error(bad_variable, 2, "service_config")  # read by ServerSettings.from_env, not by typer
    assert "JWTKIT_PORT must be an integer, not 'eighty'" in bad_variable.stderr
    assert_one_line_error(jwtkit("serve", "--port", "70000"), 2, "usage")


def test_cli_and_running_server_share_users_and_sessions(jwtkit: Runner, tmp_path: Path) -> None:
    """The admin flow: add a user, log in over HTTP, see the session in the CLI, revoke it, get a 401."""
    _add_alice(jwtkit)
    port = free_port()
    proc, line = _serve(tmp_path, ["--port", str(port), "--no-secure-cookies"], {})
    try:
        assert line.strip() == f"jwtkit serving on http://127.0.0.1:{port}", line
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                login = httpx.post(
                    f"{base}/auth", json={"username": "alice", "password": PASSWORD}, timeout=5
                )
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        assert login.status_code == 200, login.text
        bearer = {"Authorization": f"Bearer {login.json()['access_token']}", "Accept": "application/json"}
        assert httpx.get(f"{base}/private", headers=bearer).status_code == 200

        (session,) = json.loads(jwtkit("sessions", "list", "alice", "--json").stdout)
        assert jwtkit("sessions", "revoke", "--", session["sid"]).returncode == 0
        refused = httpx.get(f"{base}/private", headers=bearer)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert (tmp_path / "jwtkit.key").exists()  # no JWT_SECRET: the key made on first run, never a default
        assert stat.S_IMODE((tmp_path / "jwtkit.key").stat().st_mode) == 0o600
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
