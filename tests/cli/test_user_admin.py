"""``jwtkit user delete | passwd | verify`` as subprocesses over real SQLite files.

Sessions are made by logging in through the service in this process, on the files the command opens, so each
assertion checks what the command changed. The confirmation and password prompts are answered on a
pseudo-terminal given as the command's stdin.
"""

from __future__ import annotations

import asyncio
import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_support import Runner, assert_one_line_error, clean_env

from jwtkit.service import InvalidCredentials, InvalidToken, Settings, TokenPair, build_service

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a brand new passphrase for alice"


def _settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {}, store_url=f"sqlite:///{tmp_path}/jwtkit.db", key_path=str(tmp_path / "jwtkit.key")
    )


def _login(tmp_path: Path, password: str = PASSWORD) -> TokenPair:
    async def go() -> TokenPair:
        async with build_service(_settings(tmp_path)) as service:
            return await service.login("alice", password)

    return asyncio.run(go())


def _can_log_in(tmp_path: Path, password: str) -> bool:
    try:
        _login(tmp_path, password)
    except InvalidCredentials:
        return False
    return True


def _authenticate(tmp_path: Path, token: str) -> str:
    """'ok', or the reason the service refuses this access token."""

    async def go() -> str:
        async with build_service(_settings(tmp_path)) as service:
            try:
                await service.authenticate(token)
            except InvalidToken as exc:
                return exc.reason
            return "ok"

    return asyncio.run(go())


def _users(jwtkit: Runner) -> dict[str, dict[str, object]]:
    proc = jwtkit("user", "list", "--json")
    assert proc.returncode == 0, proc.stderr
    return {user["username"]: user for user in json.loads(proc.stdout)}


def _add(jwtkit: Runner, name: str, *extra: str) -> None:
    proc = jwtkit("user", "add", name, *extra, "--password-stdin", stdin=PASSWORD + "\n")
    assert proc.returncode == 0, proc.stderr


def _on_terminal(cwd: Path, args: list[str], dialogue: list[tuple[str, str]]) -> tuple[int, str, str]:
    """Run the command with a pseudo-terminal as stdin (and no controlling terminal, so that getpass reads
    that stdin); for each (prompt, answer), wait for the prompt on stderr and type the answer. Returns
    (exit code, stdout, stderr)."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "jwtkit", *args], stdin=follower, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=cwd, env=clean_env(), start_new_session=True)
    os.close(follower)
    assert proc.stderr is not None and proc.stdout is not None
    stderr = b""
    try:
        for prompt, answer in dialogue:
            deadline = time.monotonic() + 30
            while prompt.encode() not in stderr:
                assert time.monotonic() < deadline, stderr
                ready, _, _ = select.select([proc.stderr], [], [], 0.5)
                if ready:
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    assert chunk, f"the command ended before asking {prompt!r}: {stderr!r}"
                    stderr += chunk
            stderr = stderr.replace(prompt.encode(), b"", 1)
            os.write(leader, answer.encode() + b"\n")
        stdout, rest = proc.communicate(timeout=60)
    finally:
        os.close(leader)
    return proc.returncode, stdout.decode(), (stderr + rest).decode()


# --- user delete -------------------------------------------------------------------------------------------


def test_delete_with_yes_ends_the_sessions_and_removes_the_account(jwtkit: Runner, tmp_path: Path) -> None:
    _add(jwtkit, "alice", "--email", "alice@example.com")
    _add(jwtkit, "bob")
    phone, laptop = _login(tmp_path), _login(tmp_path)
    assert _authenticate(tmp_path, phone.access_token) == "ok"

    proc = jwtkit("user", "delete", "alice", "--yes")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, "deleted user alice and ended their sessions\n", "")
    assert _authenticate(tmp_path, phone.access_token) == "revoked"
    assert _authenticate(tmp_path, laptop.access_token) == "revoked"
    assert list(_users(jwtkit)) == ["bob"]  # user list keeps working
    assert "alice" not in jwtkit("user", "list").stdout
    assert not _can_log_in(tmp_path, PASSWORD)
    assert_one_line_error(jwtkit("sessions", "list", "alice"), 4, "user_not_found")
    assert_one_line_error(jwtkit("user", "delete", "alice", "--yes"), 4, "user_not_found")
    _add(jwtkit, "alice")  # the name is free again


def test_delete_json(jwtkit: Runner) -> None:
    _add(jwtkit, "alice")
    alice_id = _users(jwtkit)["alice"]["id"]
    proc = jwtkit("--json", "user", "delete", "alice", "-y")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"user": "alice", "id": alice_id, "deleted": True}


def test_delete_without_yes_and_without_a_terminal_is_refused(jwtkit: Runner) -> None:
    _add(jwtkit, "alice")
    proc = jwtkit("user", "delete", "alice")
    assert_one_line_error(proc, 2, "usage")
    assert proc.stderr == (
        "jwtkit: usage: deleting alice needs confirmation: pass --yes (stdin is not a terminal)\n")
    assert list(_users(jwtkit)) == ["alice"]


QUESTION = "Delete user alice and end every session of theirs? [y/N]: "


@pytest.mark.parametrize("answer", ["n", ""])
def test_delete_on_a_terminal_asks_and_no_keeps_the_account(jwtkit: Runner, tmp_path: Path,
                                                            answer: str) -> None:
    _add(jwtkit, "alice")
    pair = _login(tmp_path)
    code, stdout, stderr = _on_terminal(tmp_path, ["user", "delete", "alice"], [(QUESTION, answer)])
    assert (code, stdout, stderr) == (1, "", "jwtkit: aborted: user alice was not deleted\n")
    assert list(_users(jwtkit)) == ["alice"]
    assert _authenticate(tmp_path, pair.access_token) == "ok"


def test_delete_on_a_terminal_yes_deletes(jwtkit: Runner, tmp_path: Path) -> None:
    _add(jwtkit, "alice")
    pair = _login(tmp_path)
    code, stdout, stderr = _on_terminal(tmp_path, ["user", "delete", "alice"], [(QUESTION, "y")])
    assert (code, stdout, stderr) == (0, "deleted user alice and ended their sessions\n", "")
    assert _users(jwtkit) == {}
    assert _authenticate(tmp_path, pair.access_token) == "revoked"


# --- user passwd -------------------------------------------------------------------------------------------


def test_passwd_from_stdin_sets_the_password_and_ends_every_session(jwtkit: Runner, tmp_path: Path) -> None:
    _add(jwtkit, "alice")
    pair = _login(tmp_path)
    proc = jwtkit("user", "passwd", "alice", "--password-stdin", stdin=NEW_PASSWORD + "\n")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, "set a new password for alice and ended their sessions\n", "")
    assert _authenticate(tmp_path, pair.access_token) == "revoked"
    assert not _can_log_in(tmp_path, PASSWORD)
    assert _can_log_in(tmp_path, NEW_PASSWORD)


def test_passwd_json(jwtkit: Runner) -> None:
    _add(jwtkit, "alice")
    proc = jwtkit("user", "passwd", "alice", "--password-stdin", "--json", stdin=NEW_PASSWORD)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["username"], data["sessions_ended"]) == ("alice", True)
    assert "password_hash" not in data


def test_passwd_refusals(jwtkit: Runner, tmp_path: Path) -> None:
    _add(jwtkit, "alice")
    pair = _login(tmp_path)
    weak = jwtkit("user", "passwd", "alice", "--password-stdin", stdin="password\n")
    assert_one_line_error(weak, 4, "weak_password")
    assert weak.stderr == "jwtkit: weak_password: this password is too common: choose another one\n"
    assert_one_line_error(jwtkit("user", "passwd", "alice", "--password-stdin", stdin="\n"), 2, "usage")
    no_terminal = jwtkit("user", "passwd", "alice")
    assert no_terminal.stderr == "jwtkit: usage: no terminal to ask for the password: pass --password-stdin\n"
    assert_one_line_error(no_terminal, 2, "usage")
    assert_one_line_error(
        jwtkit("user", "passwd", "nobody", "--password-stdin", stdin=NEW_PASSWORD), 4, "user_not_found"
    )
    # nothing changed: the old password and the session still work
    assert _authenticate(tmp_path, pair.access_token) == "ok"
    assert _can_log_in(tmp_path, PASSWORD)


def test_passwd_on_a_terminal_asks_twice(jwtkit: Runner, tmp_path: Path) -> None:
    _add(jwtkit, "alice")
    code, stdout, stderr = _on_terminal(tmp_path, ["user", "passwd", "alice"],
                                        [("Password: ", NEW_PASSWORD), ("Again: ", NEW_PASSWORD)])
    assert (code, stdout) == (0, "set a new password for alice and ended their sessions\n"), stderr
    assert _can_log_in(tmp_path, NEW_PASSWORD)
    code, stdout, stderr = _on_terminal(tmp_path, ["user", "passwd", "alice"],
                                        [("Password: ", PASSWORD), ("Again: ", "something else entirely")])
    assert (code, stdout) == (2, "")
    assert stderr.splitlines()[-1] == "jwtkit: usage: the two passwords differ"
    assert _can_log_in(tmp_path, NEW_PASSWORD)


# --- user verify -------------------------------------------------------------------------------------------


def test_verify_marks_the_email_verified(jwtkit: Runner) -> None:
    _add(jwtkit, "alice", "--email", "alice@example.com")
    assert _users(jwtkit)["alice"]["verified"] is False
    proc = jwtkit("user", "verify", "alice")
    assert (proc.returncode, proc.stdout, proc.stderr) == (
        0, "marked the email address of alice verified\n", "")
    assert _users(jwtkit)["alice"]["verified"] is True
    again = jwtkit("user", "verify", "alice", "--json")  # idempotent
    assert again.returncode == 0 and json.loads(again.stdout)["verified"] is True


def test_verify_refusals(jwtkit: Runner) -> None:
    _add(jwtkit, "bob")
    no_email = jwtkit("user", "verify", "bob")
    assert_one_line_error(no_email, 4, "invalid_email")
    assert no_email.stderr == "jwtkit: invalid_email: this account has no email address\n"
    assert _users(jwtkit)["bob"]["verified"] is False
    assert_one_line_error(jwtkit("user", "verify", "nobody"), 4, "user_not_found")
