"""ML-DSA (RFC 9964) through the server: ``jwtkit keys rotate --alg ML-DSA-65`` before ``jwtkit serve``,
then a sign-in, ``/private``, the published JWKS (an AKP key, its public part only), and ``jwtkit verify``
with that JWKS fetched from the running server and with the key as a file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from _support import JSON, PASSWORD, add_user, start_serve, stop_serve

from jwtkit import Key, KeySet, decode, decode_unverified


def jwtkit_command(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "jwtkit"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("JWTKIT_") and k != "JWT_SECRET" and not k.lower().endswith("_proxy")}
    return subprocess.run([str(cli), *args], capture_output=True, text=True, cwd=workdir, env=env, timeout=60)


def test_an_ml_dsa_65_server_signs_publishes_and_its_tokens_verify_with_jwtkit_verify(tmp_path: Path) -> None:
    rotated = jwtkit_command(tmp_path, "keys", "rotate", "--alg", "ML-DSA-65", "--json")
    assert rotated.returncode == 0, rotated.stderr
    kid = json.loads(rotated.stdout)["kid"]
    process = start_serve(tmp_path, "--no-secure-cookies")
    try:
        add_user(process, "alice")
        with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
            signed_in = client.post("/auth", json={"username": "alice", "password": PASSWORD})
            assert signed_in.status_code == 200, signed_in.text
            pair: dict[str, Any] = signed_in.json()
            access = pair["access_token"]
            header, claims = decode_unverified(access)
            assert header == {"alg": "ML-DSA-65", "kid": kid, "typ": "at+jwt"}
            assert len(access.rpartition(".")[2]) == 4412  # 3309 signature bytes, base64url (R10)

            private = client.get("/private", headers={"Authorization": f"Bearer {access}"})
            assert private.status_code == 200, private.text
            # a 4.7 KB refresh token in a JSON body rotates (fields take the core's longest token)
            rotated_pair = client.post("/refresh", json={"refresh_token": pair["refresh_token"]})
            assert rotated_pair.status_code == 200, rotated_pair.text
            assert client.post("/logout", headers={
                "Authorization": f"Bearer {rotated_pair.json()['access_token']}"}).status_code == 204

            published = client.get("/.well-known/jwks.json")
            assert published.status_code == 200
            jwks = published.json()
        assert [sorted(entry) for entry in jwks["keys"]] == [["alg", "kid", "kty", "pub"]]  # no priv
        entry = jwks["keys"][0]
        assert (entry["kty"], entry["alg"], entry["kid"]) == ("AKP", "ML-DSA-65", kid)
        public = Key.from_jwk(entry)
        assert not public.is_private and public.thumbprint() == kid  # RFC 7638 over alg, kty, pub
        assert decode(access, KeySet.from_jwks(jwks), typ="at+jwt", issuer="jwtkit") == claims

        # jwtkit verify: the JWKS fetched from the running server, then the same public key from a file
        by_url = jwtkit_command(tmp_path, "verify", access, "--jwks", f"{process.url}/.well-known/jwks.json",
                                "--json")
        assert by_url.returncode == 0, by_url.stderr
        assert json.loads(by_url.stdout) == {"valid": True, "header": header, "claims": claims}
        (tmp_path / "server.jwk").write_text(json.dumps(entry))
        by_file = jwtkit_command(tmp_path, "verify", access, "--key", "server.jwk", "--alg", "ML-DSA-65",
                                 "--json")
        assert by_file.returncode == 0, by_file.stderr
        assert json.loads(by_file.stdout)["claims"] == claims

        # the key is bound to ML-DSA-65: the same public key named as ML-DSA-44 is refused
        wrong = jwtkit_command(tmp_path, "verify", access, "--key", "server.jwk", "--alg", "ML-DSA-44")
        assert wrong.returncode == 2 and wrong.stderr.startswith("jwtkit: key: "), wrong.stderr
    finally:
        stop_serve(process)
