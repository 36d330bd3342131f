"""Keys rotate live: ``jwtkit keys rotate`` beside a running ``jwtkit serve`` (two workers, an EdDSA ring).
The new key is published first and signs at its time, with no restart; tokens of the old key keep working,
and no request fails across the rotation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from _support import JSON, PASSWORD, ServeProcess, add_user, start_serve, stop_serve

from jwtkit import decode_unverified

ACTIVATE_IN = 5  # seconds from `keys rotate` to the new key's first signature (the default is PUBLISH_AHEAD)


def keys_command(workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cli = Path(sys.executable).parent / "jwtkit"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWTKIT_") and k != "JWT_SECRET"}
    result = subprocess.run([str(cli), "keys", *args], capture_output=True, text=True, cwd=workdir, env=env,
                            timeout=60)
    assert result.returncode == 0, result.stderr + result.stdout
    return result


def kid_of(token: str) -> str:
    kid = decode_unverified(token)[0]["kid"]
    assert isinstance(kid, str)
    return kid


def login(client: httpx.Client) -> dict[str, Any]:
    response = client.post("/auth", json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()
    return data


def jwks_kids(client: httpx.Client) -> list[str]:
    # a connection of its own each time, so that the requests spread over the workers
    response = client.get("/.well-known/jwks.json", headers={"Connection": "close"})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"
    return [key["kid"] for key in response.json()["keys"]]


class Traffic:
    """Authenticated requests in a loop on another thread, each token of ``tokens`` in turn."""

    def __init__(self, url: str, tokens: list[str]) -> None:
        self.url = url
        self.tokens = tokens
        self.statuses: list[tuple[int, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)

    def run(self) -> None:
        with httpx.Client(base_url=self.url, headers=JSON, timeout=30) as client:
            while not self.stop.is_set():
                for token in list(self.tokens):
                    response = client.get("/private", headers={"Authorization": f"Bearer {token}",
                                                               "Connection": "close"})  # any worker
                    self.statuses.append((response.status_code, kid_of(token)))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def poll(condition: Any, *, timeout: float = 10.0, every: float = 0.1) -> Any:
    """Ask ``condition()`` until it gives something truthy (bounded); polling a condition, not a sleep."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(every)


def test_a_rotation_reaches_a_running_server_without_a_restart_or_a_failed_request(tmp_path: Path) -> None:
    first = keys_command(tmp_path, "rotate", "--alg", "EdDSA")  # before the server: no file yet, signs now
    assert "it signs now" in first.stdout
    process: ServeProcess = start_serve(tmp_path, "--no-secure-cookies", "--workers", "2")
    try:
        add_user(process, "alice")
        with httpx.Client(base_url=process.url, headers=JSON, timeout=30) as client:
            before = login(client)
            old_kid = kid_of(before["access_token"])
            assert jwks_kids(client) == [old_kid]
            tokens = [before["access_token"]]
            with Traffic(process.url, tokens) as traffic:
                poll(lambda: len(traffic.statuses) >= 5)
                rotated = keys_command(tmp_path, "rotate", "--activate-in", str(ACTIVATE_IN), "--json")
                started = time.monotonic()
                new_kid = json.loads(rotated.stdout)["kid"]
                assert new_kid != old_kid

                # published first: every worker lists (and verifies) the new key before it signs
                published = poll(lambda: all(set(jwks_kids(client)) == {old_kid, new_kid} for _ in range(6)))
                assert published, jwks_kids(client)
                if time.monotonic() - started < ACTIVATE_IN - 1:
                    assert kid_of(login(client)["access_token"]) == old_kid  # not signing yet

                # then it signs, on its time, in every worker, with no restart
                def signed_by_new_key() -> dict[str, Any] | None:
                    pair = login(client)
                    return pair if kid_of(pair["access_token"]) == new_kid else None

                after = poll(signed_by_new_key, timeout=ACTIVATE_IN + 5, every=0.2)
                assert after, "no token signed by the new key within the bound"
                assert time.monotonic() - started >= ACTIVATE_IN - 1  # not before its time (clock skew aside)
                assert kid_of(after["refresh_token"]) == new_kid
                tokens.append(after["access_token"])
                poll(lambda: sum(kid == new_kid for _, kid in traffic.statuses) >= 5)

            assert traffic.statuses, "the traffic loop made no request"
            failed = [entry for entry in traffic.statuses if entry[0] != 200]
            assert failed == [], f"{len(failed)} of {len(traffic.statuses)} requests failed: {failed[:5]}"
            # tokens of the old key still work; both keys are published; the old refresh token still rotates
            bearer = {"Authorization": f"Bearer {before['access_token']}"}
            assert client.get("/private", headers=bearer).status_code == 200
            assert set(jwks_kids(client)) == {old_kid, new_kid}
            refreshed = client.post("/refresh", json={"refresh_token": before["refresh_token"]})
            assert refreshed.status_code == 200, refreshed.text
            assert kid_of(refreshed.json()["access_token"]) == new_kid
        listed = keys_command(tmp_path, "list", "--json").stdout
        states = {key["kid"]: key["state"] for key in json.loads(listed)}
        assert states == {new_kid: "active", old_kid: "retiring"}
    finally:
        stop_serve(process)
    assert "Traceback" not in process.log()
