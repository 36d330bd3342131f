"""``jwtkit user roles NAME [add|remove ROLE...]`` as a subprocess over real SQLite files, and the roles in
the access tokens of the service ``jwtkit serve`` builds."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from cli_support import Runner, assert_one_line_error

from jwtkit.service import Settings, build_service

PASSWORD = "correct horse battery staple"


def _login_claims(tmp_path: Path) -> dict[str, object]:
    async def go() -> dict[str, object]:
        settings = Settings.from_env({}, store_url=f"sqlite:///{tmp_path}/jwtkit.db",
                                     key_path=str(tmp_path / "jwtkit.key"))
        async with build_service(settings) as service:
            pair = await service.login("alice", PASSWORD)
            return dict((await service.authenticate(pair.access_token)).claims)

    return asyncio.run(go())


def test_roles_added_and_removed_reach_the_tokens_and_the_list(jwtkit: Runner, tmp_path: Path) -> None:
    assert jwtkit("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert "roles" not in _login_claims(tmp_path)
    added = jwtkit("user", "roles", "alice", "add", "Admin", "billing:read")
    assert added.returncode == 0, added.stderr
    assert added.stdout == "roles of alice: admin billing:read\n"
    assert "at each session's next refresh, within 900 s" in added.stderr
    assert _login_claims(tmp_path)["roles"] == ["admin", "billing:read"]
    listed = json.loads(jwtkit("user", "list", "--json").stdout)
    assert listed[0]["roles"] == ["admin", "billing:read"]
    removed = jwtkit("--json", "user", "roles", "alice", "remove", "admin")
    assert json.loads(removed.stdout)["roles"] == ["billing:read"]
    assert _login_claims(tmp_path)["roles"] == ["billing:read"]
    shown = jwtkit("user", "roles", "alice")
    assert shown.stdout == "roles of alice: billing:read\n"


def test_end_sessions_signs_the_user_out_now(jwtkit: Runner, tmp_path: Path) -> None:
    assert jwtkit("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0

    async def session_count() -> int:
        settings = Settings.from_env({}, store_url=f"sqlite:///{tmp_path}/jwtkit.db",
                                     key_path=str(tmp_path / "jwtkit.key"))
        async with build_service(settings) as service:
            user = await service.find_user("alice")
            assert user is not None
            return len(await service.list_sessions(user.id))

    _login_claims(tmp_path)
    assert asyncio.run(session_count()) == 1
    ended = jwtkit("user", "roles", "alice", "add", "admin", "--end-sessions")
    assert ended.returncode == 0, ended.stderr
    assert "every session of the user ended" in ended.stderr
    assert asyncio.run(session_count()) == 0


def test_bad_roles_and_actions_are_one_line_errors(jwtkit: Runner) -> None:
    assert jwtkit("user", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n").returncode == 0
    assert_one_line_error(jwtkit("user", "roles", "alice", "add", "has space"), 2, "invalid_role")
    assert_one_line_error(jwtkit("user", "roles", "alice", "grant", "admin"), 2, "usage")
    assert_one_line_error(jwtkit("user", "roles", "alice", "add"), 2, "usage")
    assert_one_line_error(jwtkit("user", "roles", "nobody"), 4, "user_not_found")
