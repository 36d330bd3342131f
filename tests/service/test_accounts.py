"""Registration rules (username normalisation, password policy, email), and the user repositories."""

from __future__ import annotations

import asyncio
import dataclasses
import sqlite3
import stat
import string
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwtkit.service import (
    AuthService,
    InvalidEmail,
    InvalidUsername,
    MemoryUserRepository,
    SQLiteUserRepository,
    User,
    UsernameTaken,
    UserNotFound,
    UserRepository,
    WeakPassword,
    normalize_email,
    normalize_username,
)
from jwtkit.store import StoreUnavailable

from .conftest import BACKENDS, PASSWORD, CountingHasher, FakeClock, make_users

# normalisation ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("Alice", "alice"),
    ("ＡＬＩＣＥ", "alice"),  # fullwidth (NFKC)
    ("STRASSE", "strasse"),
    ("Straße", "strasse"),  # casefold, not lower()
    ("ﬁnn", "finn"),  # ligature (NFKC)
    ("bob.smith-jr_2", "bob.smith-jr_2"),
    ("Zoë", "zoë"),
    ("Zoe\u0308", "zoë"),  # combining diaeresis composes (NFKC)
    ("ユーザー", "ユーザー"),
    ("abc", "abc"),
    ("a" * 64, "a" * 64),
])
def test_normalize_username(raw: str, expected: str) -> None:
    assert normalize_username(raw) == expected


@pytest.mark.parametrize("raw", [
    "ab", "a" * 65, "", "al ice", " alice", "alice\n", "al\tice", "ali\x00ce", "ali\u200bce", "ali\u202ece",
    "al@ice", "al/ice", "al:ice", "al'ice", "<alice>", "al\u3000ice", "\u0301abc",
])
def test_invalid_usernames(raw: str) -> None:
    with pytest.raises(InvalidUsername) as info:
        normalize_username(raw)
    assert info.value.code == "invalid_username"


@given(st.text(max_size=80))
def test_property_normalisation_is_idempotent(raw: str) -> None:
    try:
        name = normalize_username(raw)
    except InvalidUsername:
        return
    assert normalize_username(name) == name
    assert name == unicodedata.normalize("NFKC", name)
    assert name.casefold() == name
    assert 3 <= len(name) <= 64
    assert not any(ch.isspace() for ch in name)


@given(st.text(alphabet=string.ascii_letters + string.digits + "._-", min_size=3, max_size=64))
def test_property_ascii_case_variants_collide(raw: str) -> None:
    name = normalize_username(raw)
    assert normalize_username(raw.upper()) == normalize_username(raw.lower()) == name


@given(st.text(max_size=40))
def test_property_nfkc_and_casefold_variants_collide(raw: str) -> None:
    try:
        name = normalize_username(raw)
    except InvalidUsername:
        return
    assert normalize_username(unicodedata.normalize("NFKD", raw)) == name
    assert normalize_username(raw.casefold()) == name


@pytest.mark.parametrize(("raw", "expected"), [
    ("bob@example.org", "bob@example.org"),
    ("  Bob@Example.ORG ", "Bob@example.org"),
    ("a.b+tag@sub.example.co.uk", "a.b+tag@sub.example.co.uk"),
])
def test_normalize_email(raw: str, expected: str) -> None:
    assert normalize_email(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "bob", "bob@", "@example.org", "bob@localhost", "bob@@example.org", "bo b@example.org",
    "bob@example..org", "bob@-example.org", "Bob <bob@example.org>", "bob@exam\nple.org",
    "b\x00b@example.org",    "x" * 65 + "@example.org", "b@" + "x" * 250 + ".org",
])
def test_invalid_emails(raw: str) -> None:
    with pytest.raises(InvalidEmail):
        normalize_email(raw)


# registration -------------------------------------------------------------------------------------------


async def test_register(service: AuthService, clock: FakeClock) -> None:
    user = await service.register("Ｂob", PASSWORD, email=" Bob@Example.org ")
    assert user.username == "bob"
    assert user.email == "Bob@example.org"
    assert user.verified is False
    assert user.disabled is False
    assert user.created == clock.now
    assert user.password_hash.startswith("$argon2id$")
    assert PASSWORD not in repr(user)
    assert user.password_hash not in repr(user)
    assert await service.get_user(user.id) == user
    assert await service.find_user("BOB") == user
    assert await service.find_user("b o b") is None
    assert await service.list_users() == [user]


async def test_register_refuses_duplicates_after_normalisation(service: AuthService) -> None:
    await service.register("alice", PASSWORD)
    for spelling in ("alice", "ALICE", "Ａｌｉｃｅ"):
        with pytest.raises(UsernameTaken) as info:
            await service.register(spelling, PASSWORD)
        assert info.value.code == "username_taken"
    assert len(await service.list_users()) == 1


async def test_register_checks_everything_before_hashing(
    service: AuthService, hasher: CountingHasher
) -> None:
    before = hasher.hash_calls  # the dummy hash made at open()
    with pytest.raises(InvalidUsername):
        await service.register("a b", PASSWORD)
    with pytest.raises(WeakPassword):
        await service.register("alice", "short")
    with pytest.raises(InvalidEmail):
        await service.register("alice", PASSWORD, email="not-an-address")
    assert hasher.hash_calls == before
    assert await service.register("alice", PASSWORD, email="  ") is not None  # blank: no address


async def test_register_verified_flag(service: AuthService) -> None:
    user = await service.register("alice", PASSWORD, verified=True)
    assert user.verified is True


# repositories -------------------------------------------------------------------------------------------


@pytest.fixture(params=[*BACKENDS, pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> UserRepository:
    if request.param == "postgresql":
        from jwtkit.service._accounts_postgres import PostgresUserRepository

        repository: UserRepository = PostgresUserRepository(request.getfixturevalue("postgres_url"))
    else:
        repository = make_users(request.param, tmp_path)
    await repository.open()
    yield repository  # type: ignore[misc]
    await repository.close()


def user(user_id: str, name: str, *, email: str | None = None, created: float = 1.0) -> User:
    return User(id=user_id, username=name, email=email, verified=False, disabled=False, created=created,
                password_hash="$argon2id$x")


async def test_repository_contract(repo: UserRepository) -> None:
    assert isinstance(repo, UserRepository)
    a = user("1", "alice", email="Alice@example.org", created=2.0)
    b = user("2", "bob", email="alice@example.org", created=1.0)
    await repo.add(a)
    await repo.add(b)
    with pytest.raises(UsernameTaken):
        await repo.add(user("3", "alice"))
    assert await repo.get("1") == a
    assert await repo.get("nope") is None
    assert await repo.get_by_username("bob") == b
    assert await repo.get_by_username("BOB") is None  # callers pass normalised names
    assert await repo.find_by_email("ALICE@example.org") == [b, a]  # casefolded, oldest first
    assert await repo.find_by_email("carol@example.org") == []
    assert await repo.list_users() == [b, a]
    changed = User(id="1", username="alicia", email=None, verified=True, disabled=True, created=2.0,
                   password_hash="$argon2id$y")
    await repo.update(changed)
    assert await repo.get("1") == changed
    assert await repo.get_by_username("alice") is None
    assert await repo.get_by_username("alicia") == changed
    with pytest.raises(UsernameTaken):
        await repo.update(User(**{**_fields(changed), "username": "bob"}))
    with pytest.raises(UserNotFound):
        await repo.update(user("9", "zed"))


async def test_repository_delete(repo: UserRepository) -> None:
    a = user("1", "alice", email="alice@example.org", created=1.0)
    b = user("2", "bob", created=2.0)
    await repo.add(a)
    await repo.add(b)
    await repo.delete("1")
    assert await repo.get("1") is None
    assert await repo.get_by_username("alice") is None
    assert await repo.find_by_email("alice@example.org") == []
    assert await repo.list_users() == [b]
    with pytest.raises(UserNotFound):
        await repo.delete("1")
    with pytest.raises(UserNotFound):
        await repo.delete("nope")
    with pytest.raises(UserNotFound):
        await repo.update(a)
    again = user("3", "alice", created=3.0)
    await repo.add(again)  # the name is free again, under a new id
    assert await repo.get_by_username("alice") == again
    assert await repo.list_users() == [b, again]


def _fields(u: User) -> dict[str, object]:
    return {f: getattr(u, f) for f in ("id", "username", "email", "verified", "disabled", "created",
                                       "password_hash")}


async def test_sqlite_repository_persists_and_shares_the_store_file(tmp_path: Path) -> None:
    from jwtkit.store import open_store

    path = tmp_path / "jwtkit.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    repo = SQLiteUserRepository(path)
    await repo.open()
    await repo.add(user("1", "alice"))
    await repo.close()
    await store.close()
    again = SQLiteUserRepository(path)
    await again.open()
    assert await again.get_by_username("alice") == user("1", "alice")
    await again.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert "users" in tables


async def test_sqlite_repository_faults_are_store_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "jwtkit.db"
    repo = SQLiteUserRepository(path, timeout=0.05)
    await repo.open()
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StoreUnavailable):
            await repo.add(user("1", "alice"))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    await repo.add(user("1", "alice"))
    await repo.close()


async def test_sqlite_repository_unopenable_path(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StoreUnavailable):
        await SQLiteUserRepository(tmp_path / "dir.db").open()


async def test_repository_must_be_opened(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="not open"):
        await SQLiteUserRepository(tmp_path / "x.db").get("1")


def test_memory_repository_repr() -> None:
    assert repr(MemoryUserRepository()) == "MemoryUserRepository(users=0)"


async def test_users_database_file_is_private(tmp_path: Path) -> None:
    """The users table holds password hashes: the file is created readable by its owner only."""
    path = tmp_path / "users.db"
    repo = SQLiteUserRepository(str(path))
    await repo.open()
    await repo.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.postgresql
async def test_postgres_users_with_roles_two_nodes_and_one_schema(postgres_url: str) -> None:
    from jwtkit.service._accounts_postgres import PostgresUserRepository

    nodes = [PostgresUserRepository(postgres_url) for _ in range(2)]
    await asyncio.gather(*(node.open() for node in nodes))  # two nodes on an empty database at once
    try:
        a, b = nodes
        alice = User(id="1", username="alice", email=None, verified=True, disabled=False, created=1.0,
                     password_hash="$argon2id$x", roles=("admin", "editor"))
        results = await asyncio.gather(a.add(alice), b.add(dataclasses.replace(alice, id="2")),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "UsernameTaken"]
        stored = await b.get_by_username("alice")
        assert stored is not None and stored.roles == ("admin", "editor")
        conn = await asyncpg_connect(postgres_url)
        try:
            assert await conn.fetch("SELECT name, version FROM jwtkit_users_schema") == [("users", 2)]
        finally:
            await conn.close()
    finally:
        for node in nodes:
            await node.close()


async def asyncpg_connect(url: str) -> Any:
    import asyncpg

    return await asyncpg.connect(url)


@pytest.mark.postgresql
async def test_postgres_users_database_down_is_store_unavailable(own_postgres_cluster: Any) -> None:
    from jwtkit.service._accounts_postgres import PostgresUserRepository

    repo = PostgresUserRepository(own_postgres_cluster.url + "?command_timeout=1&connect_timeout=1")
    await repo.open()
    try:
        await repo.add(user("1", "alice"))
        own_postgres_cluster.stop()
        with pytest.raises(StoreUnavailable):
            await repo.get("1")
        own_postgres_cluster.start()
        for _ in range(50):  # the pool reconnects by itself once the server is back
            try:
                found = await repo.get("1")
                break
            except StoreUnavailable:
                await asyncio.sleep(0.1)
        assert found is not None and found.username == "alice"
    finally:
        await repo.close()
