"""DPoP (RFC 9449) through the server: the httpx helper signs in, calls /private and refreshes; the token
without its key, a replayed proof, a proof for another URL and a thief's refresh are refused with the right
challenge; nonces are asked for and the helper retries once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from _support import JSON, PASSWORD, SECRET, Clock, Server, start, stop
from argon2 import PasswordHasher

from jwtkit import Key, decode_unverified
from jwtkit.service import AuthConfig, AuthService, DPoPNonces, DPoPVerifier, KeyRing, SQLiteUserRepository
from jwtkit.service import make_dpop_proof as proof_for
from jwtkit.store import open_store
from jwtkit.web import DPoPAuth, create_app


def client_with(server_app: Any, base_url: str, auth: httpx.Auth | None = None,
                seen: list[httpx.Request] | None = None) -> httpx.AsyncClient:
    async def keep(request: httpx.Request) -> None:
        if seen is not None:
            seen.append(request)

    return httpx.AsyncClient(transport=httpx.ASGITransport(app=server_app, client=("203.0.113.7", 5555)),
                             base_url=base_url, headers=JSON, auth=auth, event_hooks={"request": [keep]})


async def sign_in(client: httpx.AsyncClient, auth: DPoPAuth) -> dict[str, Any]:
    answer = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
    assert answer.status_code == 200, answer.text
    pair: dict[str, Any] = answer.json()
    auth.access_token = pair["access_token"]
    return pair


@pytest.fixture
async def dpop_server() -> AsyncIterator[Server]:
    server = await start(secure=False)
    await server.user()
    yield server
    await stop(server)


async def test_the_helper_signs_in_calls_private_and_refreshes(dpop_server: Server) -> None:
    auth = DPoPAuth()
    seen: list[httpx.Request] = []
    async with client_with(dpop_server.app, dpop_server.base_url, auth, seen) as client:
        answer = await client.post("/auth", json={"username": "alice", "password": PASSWORD})
        pair = answer.json()
        assert (answer.status_code, pair["token_type"]) == (200, "DPoP")
        assert answer.headers["Authorization"] == f"DPoP {pair['access_token']}"
        assert decode_unverified(pair["access_token"])[1]["cnf"] == {"jkt": auth.key.thumbprint()}
        auth.access_token = pair["access_token"]
        private = await client.get("/private")
        assert private.status_code == 200, private.text
        assert seen[-1].headers["Authorization"].startswith("DPoP ")
        # the helper sends the access token to /refresh too: its proof is checked once, not seen as a replay
        refreshed = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["token_type"] == "DPoP"
        auth.access_token = refreshed.json()["access_token"]
        assert (await client.get("/private")).status_code == 200
        assert (await client.get("/sessions")).status_code == 200


async def test_a_stolen_token_replayed_proof_or_other_url_is_refused(dpop_server: Server) -> None:
    auth = DPoPAuth()
    seen: list[httpx.Request] = []
    async with client_with(dpop_server.app, dpop_server.base_url, auth, seen) as client, \
            client_with(dpop_server.app, dpop_server.base_url) as thief:
        pair = await sign_in(client, auth)
        assert (await client.get("/private")).status_code == 200
        stolen = dict(seen[-1].headers)

        as_bearer = await thief.get("/private", headers={"Authorization": f"Bearer {pair['access_token']}"})
        assert as_bearer.status_code == 401
        assert as_bearer.json()["reason"] == "bound"
        assert as_bearer.headers["WWW-Authenticate"].startswith('DPoP error="invalid_token"')

        replayed = await thief.get("/private", headers={"Authorization": stolen["authorization"],
                                                         "DPoP": stolen["dpop"]})
        assert replayed.status_code == 401
        assert replayed.json() == {"error": "invalid_token", "reason": "replay",
                                   "error_description": "This DPoP proof was used before"}
        challenge = replayed.headers["WWW-Authenticate"]
        assert challenge.startswith('DPoP error="invalid_dpop_proof"') and 'algs="ES256 ' in challenge

        fresh = proof_for(Key.generate("ES256"), htm="GET", htu=f"{dpop_server.base_url}/private",
                          access_token=pair["access_token"])
        other_key = await thief.get("/private", headers={"Authorization": stolen["authorization"],
                                                          "DPoP": fresh})
        assert (other_key.status_code, other_key.json()["reason"]) == (401, "jkt")

        for_private = proof_for(auth.key, htm="GET", htu=f"{dpop_server.base_url}/private",
                                access_token=pair["access_token"])
        elsewhere = await thief.get("/sessions", headers={"Authorization": stolen["authorization"],
                                                          "DPoP": for_private})
        assert (elsewhere.status_code, elsewhere.json()["reason"]) == (401, "htu")

        no_proof = await thief.get("/private", headers={"Authorization": stolen["authorization"]})
        assert (no_proof.status_code, no_proof.json()["reason"]) == (401, "missing")
        two = await thief.get("/private", headers=[("Authorization", stolen["authorization"]),
                                                   ("DPoP", for_private), ("DPoP", for_private)])
        assert (two.status_code, two.json()["reason"]) == (401, "count")
        # none of it touched the owner's session
        assert (await client.get("/private")).status_code == 200


async def test_the_token_endpoints_answer_400_for_a_bad_proof(dpop_server: Server) -> None:
    auth = DPoPAuth()
    async with client_with(dpop_server.app, dpop_server.base_url, auth) as client, \
            client_with(dpop_server.app, dpop_server.base_url) as plain:
        bad = await plain.post("/auth", json={"username": "alice", "password": PASSWORD},
                               headers={"DPoP": "not.a.proof"})
        assert bad.status_code == 400
        assert bad.json()["error"] == "invalid_dpop_proof" and bad.json()["reason"] == "malformed"
        pair = await sign_in(client, auth)
        thief_proof = proof_for(Key.generate("ES256"), htm="POST", htu=f"{dpop_server.base_url}/refresh")
        stolen = await plain.post("/refresh", json={"refresh_token": pair["refresh_token"]},
                                  headers={"DPoP": thief_proof})
        assert (stolen.status_code, stolen.json()["reason"]) == (400, "jkt")
        without = await plain.post("/refresh", json={"refresh_token": pair["refresh_token"]})
        assert (without.status_code, without.json()["reason"]) == (400, "bound")
        # the owner's refresh token was not spent by the refused attempts
        owner = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
        assert owner.status_code == 200


async def test_bearer_clients_are_unchanged(dpop_server: Server) -> None:
    pair = await dpop_server.login()
    assert pair["token_type"] == "Bearer"
    client = dpop_server.json_client()
    bearer = {"Authorization": f"Bearer {pair['access_token']}"}
    assert (await client.get("/private", headers=bearer)).status_code == 200
    as_dpop = await client.get("/private", headers={"Authorization": f"DPoP {pair['access_token']}"})
    assert (as_dpop.status_code, as_dpop.json()["reason"]) == (401, "not_bound")


async def test_nonces_are_asked_for_and_the_helper_retries_once(tmp_path: Path) -> None:
    clock = Clock()
    store = open_store(f"sqlite:///{tmp_path / 'jwtkit.db'}", clock=clock)
    nonces = DPoPNonces(b"n" * 32, clock=clock)
    service = AuthService(store=store, users=SQLiteUserRepository(tmp_path / "jwtkit.db"),
                          keys=KeyRing.from_secret(SECRET), config=AuthConfig(), clock=clock,
                          hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1),
                          dpop=DPoPVerifier(store, nonces=nonces, clock=clock))
    async with service:
        await service.register("alice", PASSWORD)
        app = create_app(service, secure_cookies=False)
        auth = DPoPAuth(clock=clock)
        seen: list[httpx.Request] = []
        async with client_with(app, "http://testserver", auth, seen) as client:
            pair = await sign_in(client, auth)
            assert len(seen) == 2  # 400 use_dpop_nonce, then the retry with the nonce
            assert decode_unverified(seen[1].headers["DPoP"])[1]["nonce"] == nonces.current()
            assert (await client.get("/private")).status_code == 200
            assert len(seen) == 3  # the nonce it kept was good
            clock.advance(700)  # two steps on: that nonce is too old
            assert (await client.get("/private")).status_code == 200
            assert len(seen) == 5  # 401 use_dpop_nonce, then the retry
            async with client_with(app, "http://testserver") as plain:
                without = await plain.get("/private", headers={
                    "Authorization": f"DPoP {auth.access_token}",
                    "DPoP": proof_for(auth.key, htm="GET", htu="http://testserver/private",
                                      access_token=auth.access_token, now=clock())})
                assert without.status_code == 401
                assert without.headers["DPoP-Nonce"] == nonces.current()
                assert without.headers["WWW-Authenticate"].startswith('DPoP error="use_dpop_nonce"')
            assert pair["token_type"] == "DPoP"


async def test_require_dpop_refuses_bearer_logins(tmp_path: Path) -> None:
    server = await start(secure=False, config=AuthConfig(require_dpop=True))
    try:
        await server.user()
        answer = await server.json_client().post("/auth", json={"username": "alice", "password": PASSWORD})
        assert (answer.status_code, answer.json()["reason"]) == (400, "required")
        auth = DPoPAuth()
        async with client_with(server.app, server.base_url, auth) as client:
            await sign_in(client, auth)
            assert (await client.get("/private")).status_code == 200
    finally:
        await stop(server)


async def test_behind_a_trusted_proxy_htu_is_the_url_the_client_used() -> None:
    """TLS ends at the proxy: the app sees http, the client signed https. The trusted X-Forwarded-Proto
    gives the URL back; from an untrusted peer the same header changes nothing."""
    for trusted, expected in ((("203.0.113.0/24",), 200), (("10.0.0.0/8",), 401)):
        server = await start(secure=False, forwarded_allow_ips=trusted)
        try:
            await server.user()
            auth = DPoPAuth()
            async with client_with(server.app, "http://testserver", auth) as client:
                await sign_in(client, auth)
                token = auth.access_token
                assert token is not None
                signed_for_https = proof_for(auth.key, htm="GET", htu="https://testserver/private",
                                             access_token=token)
                via_proxy = await client.get("/private", auth=None, headers={
                    "X-Forwarded-Proto": "https", "Authorization": f"DPoP {token}", "DPoP": signed_for_https})
            assert via_proxy.status_code == expected, via_proxy.text
            if expected == 401:
                assert via_proxy.json()["reason"] == "htu"
        finally:
            await stop(server)


async def test_an_expired_bound_token_ends_its_session_at_logout_only_with_its_proof(
    dpop_server: Server
) -> None:
    auth = DPoPAuth(clock=dpop_server.clock)
    async with client_with(dpop_server.app, dpop_server.base_url, auth) as client, \
            client_with(dpop_server.app, dpop_server.base_url) as thief:
        pair = await sign_in(client, auth)
        dpop_server.clock.advance(901)  # the access token expired; the session lives on
        other_key = proof_for(Key.generate("ES256"), htm="POST", htu=f"{dpop_server.base_url}/logout",
                              access_token=pair["access_token"], now=dpop_server.clock())
        for headers in ({"Authorization": f"Bearer {pair['access_token']}"},
                        {"Authorization": f"DPoP {pair['access_token']}"},
                        {"Authorization": f"DPoP {pair['access_token']}", "DPoP": other_key}):
            assert (await thief.post("/logout", headers=headers)).status_code == 204  # idempotent, as ever
        rotated = await client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
        assert rotated.status_code == 200, rotated.text  # the thief ended nothing
        auth.access_token = rotated.json()["access_token"]
        dpop_server.clock.advance(901)
        assert (await client.post("/logout")).status_code == 204  # the owner's proof, by the token's key
        ended = await client.post("/refresh", json={"refresh_token": rotated.json()["refresh_token"]})
        assert ended.status_code == 401 and ended.json()["error"] == "session_revoked"
