"""Shared fixtures: real binaries (redis-server, PostgreSQL, Chromium), free ports, and the CI rule for
missing binaries.

A test that needs a binary the machine lacks is skipped with a printed reason, except under ``CI=true``,
where a missing binary fails the run: CI must prove what a newcomer gets.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from processes import (
    LocalRedisCluster,
    PostgresCluster,
    free_port,
    postgres_bindir,
    require_binary,
    wait_for_port,
)

CHROMIUM = "/usr/bin/chromium"
# One rule that stops every DNS lookup Chromium makes on its own (see shared/test-recipes.md).
CHROMIUM_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"]


class RedisServer:
    """A real redis-server on a free loopback port, which a test may kill and start again on the same port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.password: str | None = None
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)]
        if self.password:
            args += ["--requirepass", self.password]
        log = open(self.workdir / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(self.port, proc=self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for this test (``.url``, ``.kill()``, ``.start()``, ``.restart()``)."""
    server = RedisServer(require_binary("redis-server"), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def _redis_cluster() -> Iterator[LocalRedisCluster]:
    server, cli = require_binary("redis-server"), require_binary("redis-cli")
    with tempfile.TemporaryDirectory(prefix="jwtkit-redis-cluster-") as workdir:
        cluster = LocalRedisCluster(server, cli, Path(workdir))
        cluster.start()
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalRedisCluster]:
    """One Redis Cluster of three primaries for the whole test session (``.url`` is its
    ``redis+cluster://`` URL; tests keep apart by key prefix). Tests that kill a node take
    ``own_redis_cluster`` instead."""
    yield from _redis_cluster()


@pytest.fixture
def own_redis_cluster() -> Iterator[LocalRedisCluster]:
    """A Redis Cluster for this test alone (fault tests kill a primary, stop it, start it again)."""
    yield from _redis_cluster()


def _postgres_cluster() -> Iterator[PostgresCluster]:
    bindir = postgres_bindir()
    with tempfile.TemporaryDirectory(prefix="jwtkit-pg-") as workdir:
        cluster = PostgresCluster(bindir, Path(workdir))
        cluster.init()
        cluster.start()
        try:
            yield cluster
        finally:
            if cluster.running():
                cluster.thaw()  # harmless unless a test left it frozen
                cluster.stop()


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole test session (``.url`` is its ``postgres`` database).
    Tests that stop or freeze a server take ``own_postgres_cluster`` instead."""
    yield from _postgres_cluster()


@pytest.fixture
def own_postgres_cluster() -> Iterator[PostgresCluster]:
    """A throwaway cluster for this test alone (fault tests stop it, freeze it, start it again)."""
    yield from _postgres_cluster()


_databases = itertools.count()


def create_database(cluster: PostgresCluster) -> str:
    """A new empty database in ``cluster``; its URL."""
    name = f"jwtkit_test_{os.getpid()}_{next(_databases)}"
    psql = os.path.join(cluster.bindir, "psql")
    subprocess.run([psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port),
                    "-U", "postgres", "-d", "postgres", "-c", f'CREATE DATABASE "{name}"'],
                   check=True, capture_output=True, timeout=60)
    return cluster.database_url(name)


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> str:
    """A fresh, empty database for this test on the session's cluster: tests never see each other's rows."""
    return create_database(postgres_cluster)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return require_binary(CHROMIUM)


@pytest.fixture
def browser_page(chromium_path: str) -> Iterator[object]:
    """A Playwright sync page in Debian's Chromium. Browser tests are marked ``browser`` and run in their own
    pytest process (``make browser``), because the sync API keeps an event loop on the main thread."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            page = context.new_page()
            yield page
            context.close()
        finally:
            browser.close()
