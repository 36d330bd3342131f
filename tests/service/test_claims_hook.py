"""The app's claims hook: called with the user at login and at every refresh, its result in the access
token; reserved names, wrong shapes and oversized results refused as configuration errors. And the roles
that ``jwtkit serve`` puts in tokens (``user_roles_claims``), kept in the users table."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from jwtkit import decode_unverified
from jwtkit.service import (
    AuthService,
    KeyRing,
    MemoryMailer,
    ServiceConfigError,
    SQLiteUserRepository,
    User,
    normalize_role,
    user_roles_claims,
)
from jwtkit.service._claims import MAX_APP_CLAIMS_BYTES, RESERVED_CLAIMS, check_app_claims
from jwtkit.store import open_store

from .conftest import PASSWORD, REUSE_AFTER, CountingHasher, FakeClock, make_users, store_url_for


def build(tmp_path: Path, clock: FakeClock, backend: str, claims: Any) -> AuthService:
    return AuthService(store=open_store(store_url_for(backend, tmp_path), clock=clock),
                       users=make_users(backend, tmp_path), keys=KeyRing.generate(), mailer=MemoryMailer(),
                       clock=clock, hasher=CountingHasher(), claims=claims)


def access_claims_of(token: str) -> dict[str, Any]:
    return decode_unverified(token)[1]


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
@pytest.mark.parametrize("asynchronous", [False, True])
async def test_the_hook_runs_at_login_and_every_refresh(tmp_path: Path, clock: FakeClock, backend: str,
                                                       asynchronous: bool) -> None:
    seen: list[str] = []
    plan = {"scope": "read"}

    def sync_hook(user: User) -> dict[str, Any]:
        seen.append(user.username)
        return {"scope": plan["scope"], "tenant": "acme"}

    async def async_hook(user: User) -> dict[str, Any]:
        return sync_hook(user)

    async with build(tmp_path, clock, backend, async_hook if asynchronous else sync_hook) as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        claims = access_claims_of(pair.access_token)
        assert (claims["scope"], claims["tenant"]) == ("read", "acme")
        assert (await service.authenticate(pair.access_token)).scopes == {"read"}
        assert "scope" not in access_claims_of(pair.refresh_token)  # the refresh token carries no app claims
        plan["scope"] = "read write"
        clock.advance(REUSE_AFTER)
        renewed = await service.refresh(pair.refresh_token)
        assert access_claims_of(renewed.access_token)["scope"] == "read write"
        assert seen == ["alice", "alice"]


@pytest.mark.parametrize("reserved", sorted(RESERVED_CLAIMS))
async def test_reserved_names_are_refused_and_no_session_is_left(tmp_path: Path, clock: FakeClock,
                                                                 reserved: str) -> None:
    async with build(tmp_path, clock, "memory", lambda user: {reserved: "x"}) as service:
        user = await service.register("alice", PASSWORD)
        with pytest.raises(ServiceConfigError, match=reserved):
            await service.login("alice", PASSWORD)
        assert await service.list_sessions(user.id) == []


async def test_a_failing_hook_at_refresh_does_not_spend_the_refresh_token(tmp_path: Path,
                                                                          clock: FakeClock) -> None:
    broken = {"now": False}

    def hook(user: User) -> dict[str, Any]:
        return {"exp": 1} if broken["now"] else {}

    async with build(tmp_path, clock, "memory", hook) as service:
        await service.register("alice", PASSWORD)
        pair = await service.login("alice", PASSWORD)
        broken["now"] = True
        with pytest.raises(ServiceConfigError):
            await service.refresh(pair.refresh_token)
        broken["now"] = False
        clock.advance(REUSE_AFTER)
        await service.refresh(pair.refresh_token)  # still the current one: not reuse


@pytest.mark.parametrize(("result", "message"), [
    (["roles"], "must return a mapping"),
    ({1: "x"}, "not text"),
    ({"scope": "read  write"}, "single spaces"),
    ({"scope": ""}, "single spaces"),
    ({"scope": ["read"]}, "single spaces"),
    ({"roles": "admin"}, "list of non-empty strings"),
    ({"roles": ["admin", ""]}, "list of non-empty strings"),
    ({"when": object()}, "not JSON"),
    ({"ratio": float("nan")}, "not JSON"),
    ({"blob": "x" * MAX_APP_CLAIMS_BYTES}, f"at most {MAX_APP_CLAIMS_BYTES}"),
])
def test_results_that_break_a_rule(result: object, message: str) -> None:
    with pytest.raises(ServiceConfigError, match=message):
        check_app_claims(result)


def test_results_that_pass() -> None:
    assert check_app_claims({}) == {}
    assert check_app_claims({"roles": ("a", "b"), "scope": "x y", "n": 1.5, "nested": {"k": [1, None]}}) == {
        "roles": ["a", "b"], "scope": "x y", "n": 1.5, "nested": {"k": [1, None]}}


def test_a_hook_that_is_not_callable_is_refused(tmp_path: Path, clock: FakeClock) -> None:
    with pytest.raises(TypeError, match="claims must be a callable"):
        build(tmp_path, clock, "memory", {"roles": []})


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_roles_are_stored_and_reach_tokens_at_the_next_refresh(tmp_path: Path, clock: FakeClock,
                                                                    backend: str) -> None:
    async with build(tmp_path, clock, backend, user_roles_claims) as service:
        user = await service.register("alice", PASSWORD)
        first = await service.login("alice", PASSWORD)
        assert "roles" not in access_claims_of(first.access_token)
        updated = await service.set_roles(user.id, ["Editor", "admin", "editor"])
        assert updated.roles == ("admin", "editor")
        assert (await service.get_user(user.id)).roles == ("admin", "editor")  # type: ignore[union-attr]
        clock.advance(REUSE_AFTER)
        second = await service.refresh(first.refresh_token)
        assert (await service.authenticate(second.access_token)).roles == {"admin", "editor"}
        await service.set_roles(user.id, [], end_sessions=True)
        assert await service.list_sessions(user.id) == []
        third = await service.login("alice", PASSWORD)
        assert "roles" not in access_claims_of(third.access_token)


@pytest.mark.parametrize("bad", ["", "has space", "a" * 65, "-lead", "é"])
def test_role_names(bad: str) -> None:
    with pytest.raises(ValueError, match="a role is"):
        normalize_role(bad)
    assert normalize_role(" Admin ") == "admin"
    assert normalize_role("billing:read") == "billing:read"


async def test_a_users_table_from_before_roles_is_migrated_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the table as jwtkit wrote it before roles existed
        conn.execute("CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, "
                     "email_key TEXT, verified INTEGER NOT NULL, disabled INTEGER NOT NULL, "
                     "created REAL NOT NULL, password_hash TEXT NOT NULL)")
        conn.execute("INSERT INTO users VALUES ('u1', 'alice', NULL, NULL, 1, 0, 1.0, 'hash')")
    conn.close()
    for _ in range(2):  # idempotent
        repo = SQLiteUserRepository(path)
        await repo.open()
        user = await repo.get("u1")
        assert user is not None and user.username == "alice" and user.roles == ()
        await repo.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM users_schema WHERE name = 'users'").fetchone() == (2,)
        conn.execute("UPDATE users_schema SET version = 99")
    conn.close()
    newer = SQLiteUserRepository(path)
    with pytest.raises(Exception, match="newer than this jwtkit"):
        await newer.open()
