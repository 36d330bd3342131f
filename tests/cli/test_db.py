"""``jwtkit db upgrade`` and ``--db`` over a real PostgreSQL (a throwaway cluster of the test session)."""

from __future__ import annotations

import asyncio
import json

import pytest
from cli_support import Runner

pytestmark = pytest.mark.postgresql
PASSWORD = "correct horse battery staple"


async def _tables(url: str) -> dict[str, int]:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetch("SELECT 'store' AS what, version FROM jwtkit_store_schema UNION ALL "
                                "SELECT name, version FROM jwtkit_users_schema")
        return {row["what"]: row["version"] for row in rows}
    finally:
        await conn.close()


def test_db_upgrade_creates_both_schemas_once_and_hides_the_password(jwtkit: Runner,
                                                                    postgres_url: str) -> None:
    url = postgres_url.replace("postgres@", "postgres:not-a-real-secret@", 1)  # trust auth ignores it
    first = jwtkit("db", "upgrade", "--store", url)
    assert first.returncode == 0, first.stderr
    assert "not-a-real-secret" not in first.stdout + first.stderr
    assert first.stdout.startswith("schemas are up to date: store postgresql://postgres:")
    again = jwtkit("--json", "db", "upgrade", "--store", url)  # idempotent
    assert json.loads(again.stdout)["upgraded"] is True
    versions = asyncio.run(_tables(postgres_url))
    assert versions["users"] == 2 and versions["store"] >= 1


def test_accounts_in_postgresql_with_db(jwtkit: Runner, postgres_url: str) -> None:
    added = jwtkit("user", "add", "alice", "--db", postgres_url, "--password-stdin", stdin=PASSWORD + "\n")
    assert added.returncode == 0, added.stderr
    listed = json.loads(jwtkit("user", "list", "--db", postgres_url, "--json").stdout)
    assert [user["username"] for user in listed] == ["alice"]
    assert json.loads(jwtkit("user", "list", "--json").stdout) == []  # the local SQLite file has no one
