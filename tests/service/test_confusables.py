"""Confusable usernames (issue 14: ``аlice`` with a Cyrillic ``а`` registered next to ``alice``): UTS #39
skeletons over Unicode's data, kept under a unique index by every repository, and migrated in."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import sqlite3
import unicodedata
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jwtkit.service import (
    AuthConfig,
    AuthService,
    InvalidCredentials,
    KeyRing,
    SQLiteUserRepository,
    User,
    UsernameTaken,
    UserRepository,
)
from jwtkit.service._accounts import LOOK_ALIKE
from jwtkit.service._confusables import _prototypes, confusables_version, skeleton
from jwtkit.store import open_store

from .conftest import PASSWORD, CountingHasher, make_users

CYRILLIC_A = "\u0430"  # а
CYRILLIC_E = "\u0435"  # е
# Unicode 17.0.0's confusables.txt (https://www.unicode.org/Public/security/17.0.0/confusables.txt, header
# "Date: 2025-07-22, 05:49:37 GMT"), byte for byte
CONFUSABLES_SHA256 = "ec88ecebcf89f63f813d460842b0cf8322744b40a0b2c06f88a2cea48c0351ea"


# the data ---------------------------------------------------------------------------------------------------


def test_the_bundled_data_is_unicode_17_confusables_unchanged() -> None:
    raw = resources.files("jwtkit.service").joinpath("confusables.txt").read_bytes()
    assert hashlib.sha256(raw).hexdigest() == CONFUSABLES_SHA256
    assert confusables_version() == "17.0.0"
    total = next(line for line in raw.decode("utf-8-sig").splitlines() if line.startswith("# total:"))
    assert len(_prototypes()) == int(total.split(":")[1]) == 6565


@pytest.mark.parametrize(("one", "other"), [
    (f"{CYRILLIC_A}lice", "alice"),  # the case
    (f"{CYRILLIC_A}li{CYRILLIC_E}", "alie"),
    ("paypa1", "paypal"),  # digit one and small l
    ("rn", "m"),  # one source character to two
    ("\u0455cott", "scott"),  # Cyrillic dze
    ("\u03bfscar", "oscar"),  # Greek omicron
    ("ﬁnn", "finn"),  # the ligature
    ("zoe\u0308", "zoë"),  # decomposed and composed
])
def test_confusable_pairs_share_a_skeleton(one: str, other: str) -> None:
    assert one != other
    assert skeleton(one) == skeleton(other)


@pytest.mark.parametrize(("one", "other"), [
    ("alice", "alicia"), ("bob", "rob"), ("alice", "alice2"), ("ivan", "ivana"),
])
def test_different_names_have_different_skeletons(one: str, other: str) -> None:
    assert skeleton(one) != skeleton(other)


@given(st.text(max_size=40))
def test_property_skeleton_ignores_canonical_equivalence_and_is_nfd(text: str) -> None:
    key = skeleton(text)
    assert skeleton(unicodedata.normalize("NFC", text)) == skeleton(unicodedata.normalize("NFD", text)) == key
    assert unicodedata.normalize("NFD", key) == key


def test_every_look_alike_of_an_ascii_letter_or_digit_maps_onto_it() -> None:
    # the 1,520 mappings an attacker imitating a Latin name draws on, each checked through the whole algorithm
    # (skeleton is not idempotent in general: 13 prototypes, such as U+01C6's "dž", change under NFD again)
    latin = [(source, target) for source, target in _prototypes().items()
             if target.isascii() and target.isalnum()]
    assert len(latin) == 1520
    for source, target in latin:
        assert skeleton(chr(source)) == skeleton(target), hex(source)


# the repositories -------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)])
async def repo(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    repository: UserRepository
    if request.param == "postgresql":
        from jwtkit.service._accounts_postgres import PostgresUserRepository

        repository = PostgresUserRepository(request.getfixturevalue("postgres_url"))
    else:
        repository = make_users(request.param, tmp_path)
    await repository.open()
    yield repository
    await repository.close()


def user(user_id: str, name: str, *, created: float = 1.0) -> User:
    return User(id=user_id, username=name, email=None, verified=False, disabled=False, created=created,
                password_hash="$argon2id$x")


async def test_a_look_alike_is_refused_by_the_repository(repo: UserRepository) -> None:
    alice = user("1", "alice")
    await repo.add(alice)
    assert await repo.find_look_alike(f"{CYRILLIC_A}lice") == alice
    assert await repo.find_look_alike("alice") == alice
    assert await repo.find_look_alike("alicia") is None
    with pytest.raises(UsernameTaken) as info:
        await repo.add(user("2", f"{CYRILLIC_A}lice"))
    assert info.value.code == "username_taken"
    assert info.value.message == LOOK_ALIKE
    with pytest.raises(UsernameTaken) as plain:
        await repo.add(user("3", "alice"))
    assert plain.value.message == "this username is taken"
    assert await repo.list_users() == [alice]


async def test_renames_keep_skeletons_unique_and_a_delete_frees_one(repo: UserRepository) -> None:
    alice, bob = user("1", "alice"), user("2", "bob", created=2.0)
    await repo.add(alice)
    await repo.add(bob)
    with pytest.raises(UsernameTaken) as info:
        await repo.update(dataclasses.replace(bob, username=f"{CYRILLIC_A}lice"))
    assert info.value.message == LOOK_ALIKE
    # a user may take a look-alike of their own name, and changes that keep the name keep working
    renamed = dataclasses.replace(alice, username=f"{CYRILLIC_A}lice")
    await repo.update(renamed)
    await repo.update(dataclasses.replace(renamed, password_hash="$argon2id$y"))
    assert await repo.find_look_alike("alice") == dataclasses.replace(renamed, password_hash="$argon2id$y")
    await repo.update(dataclasses.replace(renamed, username="alicia"))
    assert await repo.find_look_alike("alice") is None  # the old skeleton went with the old name
    await repo.delete("1")
    assert await repo.find_look_alike("alicia") is None
    await repo.add(user("3", "a1icia"))  # free again


async def test_two_look_alikes_registered_at_once_on_one_sqlite_file_make_one_account(tmp_path: Path) -> None:
    nodes = [SQLiteUserRepository(tmp_path / "jwtkit.db") for _ in range(2)]
    for node in nodes:
        await node.open()
    try:
        results = await asyncio.gather(nodes[0].add(user("1", "alice")),
                                       nodes[1].add(user("2", f"{CYRILLIC_A}lice")), return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "UsernameTaken"]
        assert len(await nodes[0].list_users()) == 1
    finally:
        for node in nodes:
            await node.close()


@pytest.mark.postgresql
async def test_two_postgres_nodes_registering_look_alikes_at_once_make_one_account(postgres_url: str) -> None:
    from jwtkit.service._accounts_postgres import PostgresUserRepository

    nodes = [PostgresUserRepository(postgres_url) for _ in range(2)]
    await asyncio.gather(*(node.open() for node in nodes))
    try:
        # neither finds the other's name first: both inserts race, the unique index decides
        results = await asyncio.gather(nodes[0].add(user("1", "paypal")), nodes[1].add(user("2", "paypa1")),
                                       return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["NoneType", "UsernameTaken"]
        taken = next(r for r in results if isinstance(r, UsernameTaken))
        assert taken.message == LOOK_ALIKE
        assert len(await nodes[1].list_users()) == 1
    finally:
        for node in nodes:
            await node.close()


# the service ------------------------------------------------------------------------------------------------


async def test_register_refuses_a_look_alike_before_hashing(service: AuthService,
                                                            hasher: CountingHasher) -> None:
    await service.register("alice", PASSWORD)
    before = hasher.hash_calls
    for spelling in (f"{CYRILLIC_A}lice", f"{CYRILLIC_A.upper()}LICE", "al\u0456ce"):  # Cyrillic і
        with pytest.raises(UsernameTaken) as info:
            await service.register(spelling, PASSWORD)
        assert info.value.message == LOOK_ALIKE
    assert hasher.hash_calls == before
    assert [u.username for u in await service.list_users()] == ["alice"]


# migration --------------------------------------------------------------------------------------------------

_SCHEMA_1 = """
CREATE TABLE users (id TEXT PRIMARY KEY, username TEXT NOT NULL UNIQUE, email TEXT, email_key TEXT,
    verified INTEGER NOT NULL, disabled INTEGER NOT NULL, created REAL NOT NULL, password_hash TEXT NOT NULL,
    roles TEXT NOT NULL DEFAULT '[]');
CREATE TABLE users_schema (name TEXT PRIMARY KEY, version INTEGER NOT NULL);
INSERT INTO users_schema VALUES ('users', 1);
"""


def _old_row(user_id: str, name: str, created: float, password_hash: str) -> tuple[object, ...]:
    return (user_id, name, None, None, 1, 0, created, password_hash, "[]")


async def test_sqlite_schema_1_migrates_and_the_older_of_two_look_alikes_holds_the_skeleton(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, hasher: CountingHasher
) -> None:
    path = tmp_path / "jwtkit.db"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_1)
    phash = hasher.hash(PASSWORD)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        _old_row("young", f"{CYRILLIC_A}lice", 20.0, phash), _old_row("old", "alice", 10.0, phash),
        _old_row("bob", "bob", 30.0, phash)])
    conn.commit()
    conn.close()
    repo = SQLiteUserRepository(path)
    with caplog.at_level(logging.WARNING, logger="jwtkit.service"):
        await repo.open()
    try:
        assert [r.getMessage() for r in caplog.records if "confusable" in r.getMessage()] == [
            "user young has a name confusable with an older account's; it keeps working, but consider "
            "renaming it"]
        raw = sqlite3.connect(path)
        assert dict(raw.execute("SELECT id, skeleton FROM users").fetchall()) == {
            "old": "alice", "young": None, "bob": "bob"}
        assert raw.execute("SELECT version FROM users_schema").fetchall() == [(2,)]
        raw.close()
        young = await repo.get("young")
        assert young is not None
        await repo.update(dataclasses.replace(young, password_hash="$argon2id$new"))  # still works
        with pytest.raises(UsernameTaken):
            await repo.add(user("new", f"alic{CYRILLIC_E}"))
    finally:
        await repo.close()
    again = SQLiteUserRepository(path)  # idempotent
    await again.open()
    await again.close()


async def test_a_migrated_look_alike_can_still_sign_in(tmp_path: Path, hasher: CountingHasher,
                                                       keys: KeyRing) -> None:
    path = tmp_path / "jwtkit.db"
    conn = sqlite3.connect(path)
    conn.executescript(_SCHEMA_1)
    phash = hasher.hash(PASSWORD)
    conn.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", [
        _old_row("old", "alice", 10.0, phash), _old_row("young", f"{CYRILLIC_A}lice", 20.0, phash)])
    conn.commit()
    conn.close()
    async with AuthService(store=open_store("memory://"), users=SQLiteUserRepository(path), keys=keys,
                           config=AuthConfig(), hasher=hasher) as service:
        pair = await service.login(f"{CYRILLIC_A}lice", PASSWORD)
        assert (await service.authenticate(pair.access_token)).user_id == "young"
        with pytest.raises(InvalidCredentials):
            await service.login(f"{CYRILLIC_A}lice", PASSWORD + "x")


@pytest.mark.postgresql
async def test_postgres_schema_1_migrates_with_the_same_rule(postgres_url: str) -> None:
    import asyncpg

    from jwtkit.service._accounts_postgres import PostgresUserRepository

    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("""
            CREATE TABLE jwtkit_users_schema (name text PRIMARY KEY, version integer NOT NULL);
            CREATE TABLE jwtkit_users (id text PRIMARY KEY, username text NOT NULL UNIQUE, email text,
                email_key text, verified boolean NOT NULL, disabled boolean NOT NULL,
                created double precision NOT NULL, password_hash text NOT NULL,
                roles text[] NOT NULL DEFAULT '{}');
            INSERT INTO jwtkit_users_schema VALUES ('users', 1);
            INSERT INTO jwtkit_users (id, username, verified, disabled, created, password_hash) VALUES
                ('young', 'paypa1', true, false, 20, 'h'), ('old', 'paypal', true, false, 10, 'h');
        """)
        nodes = [PostgresUserRepository(postgres_url) for _ in range(2)]
        await asyncio.gather(*(node.open() for node in nodes))  # two nodes migrate at once: one does it
        try:
            rows = await conn.fetch("SELECT id, skeleton FROM jwtkit_users ORDER BY id")
            assert [(r["id"], r["skeleton"]) for r in rows] == [("old", "paypal"), ("young", None)]
            assert await conn.fetchval("SELECT version FROM jwtkit_users_schema") == 2
            young = await nodes[0].get("young")
            assert young is not None
            await nodes[1].update(dataclasses.replace(young, disabled=True))
            with pytest.raises(UsernameTaken):
                await nodes[0].add(user("new", f"p{CYRILLIC_A}ypal"))
        finally:
            for node in nodes:
                await node.close()
    finally:
        await conn.close()
