"""Two ``jwtkit serve`` nodes, each in its own working directory with no shared files, on shared backends:
one PostgreSQL for accounts, sessions and keys; and accounts in PostgreSQL beside sessions and the key ring
in Redis (the expected large deployment). The walk:
register and log in on A, use the token on B; log out on B and be refused on A; reuse a refresh token on A
and see the family die on B; ``jwtkit keys rotate`` against the shared store and see both nodes sign with the
new key and still verify old tokens, with no restart."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import ServeProcess, start_serve, stop_serve

from jwtkit import decode_unverified
from jwtkit.service import make_dpop_proof
from jwtkit.web import DPoPAuth
from waiting import status_within

PASSWORD = "correct horse battery staple"
pytestmark = pytest.mark.postgresql


def call(node: ServeProcess, method: str, path: str, body: dict[str, Any] | None = None,
         token: str | None = None) -> tuple[int, dict[str, Any]]:
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{node.url}{path}", method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read()
            return answer.status, json.loads(raw) if raw else {}
    except urllib.error.HTTPError as error:
        raw = error.read()
        return error.code, json.loads(raw) if raw else {}


@pytest.fixture(params=["postgresql", pytest.param("redis sessions", marks=pytest.mark.redis)])
def shared_env(request: pytest.FixtureRequest, postgres_url: str) -> dict[str, str]:
    env = {"JWTKIT_KEY_ENCRYPTION_KEY": secrets.token_hex(32),
           "JWTKIT_DPOP_NONCE_SECRET": secrets.token_hex(32),  # DPoP nonces that either node accepts
           "JWTKIT_REFRESH_RACE_WINDOW": "0"}  # a second use of a refresh token is reuse at once
    if request.param == "postgresql":
        return {**env, "JWTKIT_STORE": postgres_url}  # accounts default to the same database
    return {**env, "JWTKIT_STORE": request.getfixturevalue("redis_url"), "JWTKIT_DB": postgres_url}


@pytest.fixture
def nodes(tmp_path: Path, shared_env: dict[str, str]) -> Iterator[tuple[ServeProcess, ServeProcess]]:
    started = []
    try:
        for name in ("a", "b"):
            workdir = tmp_path / name
            workdir.mkdir()
            started.append(start_serve(workdir, env=shared_env))
        yield started[0], started[1]
    finally:
        for node in started:
            stop_serve(node)
        for node in started:
            assert not (node.workdir / "jwtkit.key").exists()  # the keys live in the store, not per node
            assert not (node.workdir / "jwtkit.db").exists()  # and the accounts in PostgreSQL


def kid_of(token: str) -> str:
    kid: str = decode_unverified(token)[0]["kid"]
    return kid


def test_the_walk_across_two_nodes(nodes: tuple[ServeProcess, ServeProcess], tmp_path: Path,
                                   shared_env: dict[str, str]) -> None:
    a, b = nodes
    assert call(a, "POST", "/register", {"username": "alice", "password": PASSWORD})[0] == 201
    status, first = call(a, "POST", "/auth", {"username": "alice", "password": PASSWORD})
    assert status == 200
    assert call(b, "GET", "/private", token=first["access_token"])[0] == 200  # the token works on B
    # log out on B: refused on B at once, and on A within mirror_max_lag (its mirror hears of it)
    assert call(b, "POST", "/logout", token=first["access_token"])[0] == 204
    assert call(b, "GET", "/private", token=first["access_token"])[0] == 401
    status_within(lambda: call(a, "GET", "/private", token=first["access_token"])[0], 401)
    status, refused = call(a, "GET", "/private", token=first["access_token"])
    assert (status, refused["error"]) == (401, "invalid_token")
    # reuse a refresh token on A: the family dies on B
    _, second = call(a, "POST", "/auth", {"username": "alice", "password": PASSWORD})
    status, rotated = call(a, "POST", "/refresh", {"refresh_token": second["refresh_token"]})
    assert status == 200
    status, reused = call(a, "POST", "/refresh", {"refresh_token": second["refresh_token"]})
    assert (status, reused["error"]) == (401, "refresh_reused")
    status_within(lambda: call(b, "GET", "/private", token=rotated["access_token"])[0], 401)
    assert call(b, "POST", "/refresh", {"refresh_token": rotated["refresh_token"]})[0] == 401
    # one key ring: both nodes sign with the same key
    _, on_a = call(a, "POST", "/auth", {"username": "alice", "password": PASSWORD})
    _, on_b = call(b, "POST", "/auth", {"username": "alice", "password": PASSWORD})
    old_kid = kid_of(on_a["access_token"])
    assert kid_of(on_b["access_token"]) == old_kid
    # rotate from a third place, against the shared store: both nodes pick it up without a restart
    admin = tmp_path / "admin"
    admin.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    env["JWTKIT_KEY_ENCRYPTION_KEY"] = shared_env["JWTKIT_KEY_ENCRYPTION_KEY"]
    rotate = subprocess.run([str(Path(sys.executable).parent / "jwtkit"), "keys", "rotate", "--now",
                             "--store", shared_env["JWTKIT_STORE"]],
                            cwd=admin, capture_output=True, text=True, env=env, timeout=60)
    assert rotate.returncode == 0, rotate.stderr
    for node in (a, b):
        deadline = time.monotonic() + 15  # the documented bound is 2 s; polling, not a fixed wait
        while True:
            _, pair = call(node, "POST", "/auth", {"username": "alice", "password": PASSWORD})
            if kid_of(pair["access_token"]) != old_kid:
                break
            assert time.monotonic() < deadline, f"{node.url} still signs with {old_kid}"
            time.sleep(0.1)
        # the new key's tokens verify on the other node, and the old tokens still verify on both
        other = b if node is a else a
        assert call(other, "GET", "/private", token=pair["access_token"])[0] == 200
        for token in (on_a["access_token"], on_b["access_token"]):
            assert call(node, "GET", "/private", token=token)[0] == 200


def test_a_dpop_proof_replayed_on_the_other_node_is_refused(nodes: tuple[ServeProcess, ServeProcess]) -> None:
    a, b = nodes
    assert call(a, "POST", "/register", {"username": "dora", "password": PASSWORD})[0] == 201
    auth = DPoPAuth()
    seen: list[httpx.Request] = []
    hooks = {"request": [seen.append]}
    options: dict[str, Any] = {"auth": auth, "headers": {"Accept": "application/json"}, "event_hooks": hooks,
                               "timeout": 10}
    with httpx.Client(base_url=a.url, **options) as on_a, httpx.Client(base_url=b.url, **options) as on_b:
        signed_in = on_a.post("/auth", json={"username": "dora", "password": PASSWORD})
        assert signed_in.status_code == 200, signed_in.text
        assert len(seen) == 2  # A asked for its nonce first (use_dpop_nonce), the helper retried once
        auth.access_token = signed_in.json()["access_token"]
        assert on_a.get("/private").status_code == 200
        assert len(seen) == 3  # the nonce it kept was good
        nonce = auth.nonces[a.url.lower()]
        jti_used_on_a = decode_unverified(seen[-1].headers["DPoP"])[1]["jti"]

        # behind one load balancer both nodes have one URL; here each has its own port, so the proofs for
        # B are made for B's URL, with the nonce A handed out: B accepts it (stateless nonces)
        def to_b(jti: str | None = None) -> httpx.Response:
            proof = make_dpop_proof(auth.key, htm="GET", htu=f"{b.url}/private",
                                    access_token=auth.access_token, nonce=nonce, jti=jti)
            return on_b.get("/private", auth=None, headers={"Authorization": f"DPoP {auth.access_token}",
                                                            "DPoP": proof})

        assert to_b().status_code == 200
        # a proof whose jti A already accepted: refused by B, since the replay cache is the shared store's
        replayed = to_b(jti=jti_used_on_a)
        assert (replayed.status_code, replayed.json()["reason"]) == (401, "replay")
        without_key = httpx.get(f"{b.url}/private", timeout=10, headers={
            "Accept": "application/json", "Authorization": f"Bearer {auth.access_token}"})
        assert (without_key.status_code, without_key.json()["reason"]) == (401, "bound")


def test_two_nodes_started_at_the_same_moment_on_an_empty_database_agree(tmp_path: Path,
                                                                         postgres_url: str) -> None:
    env = {"JWTKIT_STORE": postgres_url, "JWTKIT_KEY_ENCRYPTION_KEY": secrets.token_hex(32)}
    workdirs = [tmp_path / "a", tmp_path / "b"]
    for workdir in workdirs:
        workdir.mkdir()
    with ThreadPoolExecutor(2) as pool:  # both create the schema and the key ring, racing
        started = list(pool.map(lambda workdir: start_serve(workdir, env=env), workdirs))
    try:
        a, b = started
        assert call(a, "POST", "/register", {"username": "alice", "password": PASSWORD})[0] == 201
        kids = {kid_of(call(node, "POST", "/auth", {"username": "alice", "password": PASSWORD})[1]
                       ["access_token"]) for node in (a, b)}
        assert len(kids) == 1  # one ring, one active key: both nodes sign with it
        assert call(b, "GET", "/private", token=call(a, "POST", "/auth", {
            "username": "alice", "password": PASSWORD})[1]["access_token"])[0] == 200
    finally:
        for node in started:
            stop_serve(node)
