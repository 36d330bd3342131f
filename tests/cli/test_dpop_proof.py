"""``jwtkit dpop proof``: proofs a curl user can send, accepted by the server for exactly their request."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from argon2 import PasswordHasher
from cli_support import Runner, assert_one_line_error

from jwtkit import Key, decode_unverified
from jwtkit.service import AuthService, KeyRing, MemoryUserRepository
from jwtkit.store import open_store
from jwtkit.web import create_app

PASSWORD = "correct horse battery staple"
BASE = "http://testserver"


def proof(jwtkit: Runner, method: str, path: str, token: str | None = None) -> str:
    args = ["dpop", "proof", "--key", "client.jwk", "--method", method, "--url", BASE + path]
    env = None
    if token is not None:
        args += ["--token-env", "ACCESS_TOKEN"]
        env = {"ACCESS_TOKEN": token}
    done = jwtkit(*args, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


async def test_proofs_from_the_cli_sign_in_and_call_private(jwtkit: Runner, tmp_path: Path) -> None:
    assert jwtkit("keygen", "--alg", "ES256", "--out", "client.jwk").returncode == 0
    client_key = Key.from_jwk(json.loads((tmp_path / "client.jwk").read_text()))
    service = AuthService(store=open_store("memory://"), users=MemoryUserRepository(),
                          keys=KeyRing.generate(),
                          hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    async with service:
        await service.register("alice", PASSWORD)
        transport = httpx.ASGITransport(app=create_app(service, secure_cookies=False))
        async with httpx.AsyncClient(transport=transport, base_url=BASE,
                                     headers={"Accept": "application/json"}) as client:
            answer = await client.post("/auth", json={"username": "alice", "password": PASSWORD},
                                       headers={"DPoP": proof(jwtkit, "POST", "/auth")})
            assert answer.status_code == 200, answer.text
            token = answer.json()["access_token"]
            assert decode_unverified(token)[1]["cnf"] == {"jkt": client_key.thumbprint()}
            private = proof(jwtkit, "GET", "/private", token)
            headers = {"Authorization": f"DPoP {token}", "DPoP": private}
            assert (await client.get("/private", headers=headers)).status_code == 200
            again = await client.get("/private", headers=headers)
            assert (again.status_code, again.json()["reason"]) == (401, "replay")
            no_ath = await client.get("/private", headers={"Authorization": f"DPoP {token}",
                                                           "DPoP": proof(jwtkit, "GET", "/private")})
            assert (no_ath.status_code, no_ath.json()["reason"]) == (401, "ath")


def test_the_json_output_and_the_refusals(jwtkit: Runner) -> None:
    assert jwtkit("keygen", "--alg", "EdDSA", "--out", "client.jwk").returncode == 0
    done = jwtkit("--json", "dpop", "proof", "--key", "client.jwk", "--method", "put", "--url",
                  "https://api.example/items/7?x=1")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    header, claims = decode_unverified(shown["proof"])
    assert header["typ"] == "dpop+jwt" and header["alg"] == "EdDSA" and "d" not in header["jwk"]
    assert (claims["htm"], claims["htu"]) == ("PUT", "https://api.example/items/7")
    assert shown["jkt"] == Key.from_jwk(header["jwk"]).thumbprint()
    assert_one_line_error(jwtkit("dpop", "proof", "--key", "client.jwk", "--method", "GET", "--url", "/x"), 2,
                          "usage")
    assert_one_line_error(jwtkit("dpop", "proof", "--key", "client.jwk", "--method", "GET", "--url",
                                 "https://a/", "--token-env", "UNSET_VARIABLE"), 2, "usage")
    assert jwtkit("keygen", "--alg", "HS256", "--out", "hs.jwk").returncode == 0
    assert_one_line_error(jwtkit("dpop", "proof", "--key", "hs.jwk", "--method", "GET", "--url",
                                 "https://a/"), 2, "key")
