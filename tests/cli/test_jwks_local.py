"""``jwtkit verify --jwks http://...``: plain http only from this machine (localhost, 127.0.0.0/8, ::1), as
from a local ``jwtkit serve``; any other http URL is refused before any network call. The other JWKS rules
(no redirects, a size cap) hold for the local fetch too. Also the hint when a JWKS cannot hold the token's
key (an HMAC token, an empty set)."""

from __future__ import annotations

import http.server
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import SECRET, Runner, assert_one_line_error

from jwtkit import Key, KeySet, encode
from jwtkit.cli import main
from jwtkit.service import KeyRing

SIGNER = Key.generate("EdDSA", kid="local-test")
JWKS = json.dumps(KeySet([SIGNER.public()]).to_jwks()).encode()
LEAKED = Key.generate("EdDSA", kid="leaked").to_jwk(private=True)
MIXED = json.dumps({"keys": [LEAKED, SIGNER.public().to_jwk()]}).encode()
REFUSED = ("jwtkit: jwks: refusing http:// for a JWKS from another machine: only https URLs are fetched "
           "(plain http only from localhost, 127.0.0.0/8 or ::1)\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/jwks.json":
            body = JWKS
        elif self.path == "/empty.json":
            body = b'{"keys": []}'
        elif self.path == "/mixed.json":
            body = MIXED
        elif self.path == "/private.json":
            body = json.dumps({"keys": [LEAKED]}).encode()
        elif self.path == "/big.json":
            body = b'{"keys": [], "pad": "' + b"x" * (300 * 1024) + b'"}'
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/jwks.json")
            self.end_headers()
            return
        else:
            self.send_response(404)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


class _IPv6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _start(server: http.server.ThreadingHTTPServer) -> Iterator[int]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A plain http server on a free 127.0.0.1 port."""
    yield from _start(http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler))


@pytest.fixture(scope="module")
def http6_port() -> Iterator[int]:
    try:
        server = _IPv6Server(("::1", 0), _Handler)
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    yield from _start(server)


def _token(**claims: Any) -> str:
    return encode({"sub": "local", "exp": int(time.time()) + 60, **claims}, SIGNER)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST"])
def test_loopback_http_jwks_verifies(jwtkit: Runner, http_port: int, host: str) -> None:
    proc = jwtkit("verify", _token(), "--jwks", f"http://{host}:{http_port}/jwks.json", "--json",
                  env={"HTTP_PROXY": "http://192.0.2.1:9", "http_proxy": "http://192.0.2.1:9"})
    assert proc.returncode == 0, proc.stderr  # and through no proxy, or it would have failed
    assert json.loads(proc.stdout)["claims"]["sub"] == "local"


def test_ipv6_loopback_http_jwks_verifies(jwtkit: Runner, http6_port: int) -> None:
    proc = jwtkit("verify", _token(), "--jwks", f"http://[::1]:{http6_port}/jwks.json", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["claims"]["sub"] == "local"


def test_loopback_http_keeps_the_other_rules(jwtkit: Runner, http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    moved = jwtkit("verify", _token(), "--jwks", f"{base}/moved")
    assert_one_line_error(moved, 2, "jwks")
    assert moved.stderr == f"jwtkit: jwks: GET {base}/moved answered 302\n"  # not followed
    big = jwtkit("verify", _token(), "--jwks", f"{base}/big.json")
    assert big.stderr == f"jwtkit: jwks: the JWKS at {base}/big.json is larger than {256 * 1024} bytes\n"
    assert_one_line_error(big, 2, "jwks")
    assert_one_line_error(jwtkit("verify", _token(), "--jwks", f"{base}/missing"), 2, "jwks")


def test_a_key_the_remote_set_cannot_use_is_dropped_with_a_note(jwtkit: Runner, http_port: int) -> None:
    base = f"http://127.0.0.1:{http_port}"
    proc = jwtkit("verify", _token(), "--jwks", f"{base}/mixed.json")
    assert proc.returncode == 0, proc.stderr  # the rest of the set still counts
    assert proc.stderr.splitlines() == [
        f"jwtkit: warning: JWKS {base}/mixed.json: dropped kid 'leaked': a private key; a published set "
        "carries public keys only"]
    assert LEAKED["d"] not in proc.stderr
    only = jwtkit("verify", _token(), "--jwks", f"{base}/private.json")
    assert_one_line_error(only, 2, "jwks")
    assert only.stderr.startswith(f"jwtkit: jwks: the JWKS at {base}/private.json has no usable key (kid ")


@pytest.mark.parametrize("url", [
    "http://example.org/jwks.json",
    "http://127.0.0.1.example.org/jwks.json",  # a name, not the loopback address
    "http://localhost.example.org/jwks.json",
    "http://10.0.0.1/jwks.json",
    "http://0.0.0.0/jwks.json",
    "http://[::ffff:127.0.0.1]/jwks.json",  # only 127.0.0.0/8 and ::1 themselves
    "http:///jwks.json",
    "HTTP://example.org/jwks.json",
])
def test_other_http_urls_are_refused(jwtkit: Runner, url: str) -> None:
    proc = jwtkit("verify", _token(), "--jwks", url)
    assert_one_line_error(proc, 2, "jwks")
    assert proc.stderr == REFUSED


def test_a_refused_url_makes_no_network_call(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    calls: list[object] = []

    def forbidden(*args: object, **kwargs: object) -> Any:
        calls.append(args)
        raise AssertionError("no network call may be made")

    monkeypatch.setattr(socket, "getaddrinfo", forbidden)
    monkeypatch.setattr(socket, "create_connection", forbidden)
    monkeypatch.setattr(httpx, "Client", forbidden)
    assert main(["verify", _token(), "--jwks", "http://example.org/.well-known/jwks.json"]) == 2
    assert capsys.readouterr() == ("", REFUSED)
    assert calls == []


def test_other_schemes_stay_refused(jwtkit: Runner) -> None:
    proc = jwtkit("verify", _token(), "--jwks", "ftp://127.0.0.1/jwks.json")
    assert proc.stderr == "jwtkit: jwks: refusing ftp:// for a JWKS: only https URLs are fetched\n"
    assert_one_line_error(proc, 2, "jwks")


# --- the hint when the key set cannot hold the token's key ---------------------------------------------


def _hs256_token(kid: str | None = None) -> str:
    """A token as jwtkit serve signs it with JWT_SECRET: HS256, kid = the secret's RFC 7638 thumbprint."""
    secret = KeyRing.from_secret(SECRET.encode()).active
    if kid is not None:
        secret = Key.from_secret(SECRET.encode(), "HS256", kid=kid)
    return encode({"sub": "local", "exp": int(time.time()) + 60}, secret, typ="at+jwt")


HMAC_HINT = ("the token is HS256, signed with an HMAC secret, and secrets are never published in a JWKS: "
             "verify it with --secret-env VAR (the secret) or --key FILE")


def test_an_hmac_token_against_an_empty_jwks_says_why(jwtkit: Runner, http_port: int) -> None:
    proc = jwtkit("verify", _hs256_token(), "--jwks", f"http://127.0.0.1:{http_port}/empty.json")
    assert_one_line_error(proc, 1, "key")
    assert proc.stderr == f"jwtkit: key: no key with the token's kid; {HMAC_HINT}\n"
    # the hint's advice works: the secret's thumbprint is the kid the server's tokens carry
    fixed = jwtkit("verify", _hs256_token(), "--secret-env", "JWT_TEST_SECRET", "--json")
    assert fixed.returncode == 0, fixed.stderr
    assert json.loads(fixed.stdout)["claims"]["sub"] == "local"


def test_a_secret_still_refuses_a_kid_that_names_another_key(jwtkit: Runner) -> None:
    proc = jwtkit("verify", _hs256_token(kid="another-key"), "--secret-env", "JWT_TEST_SECRET")
    assert_one_line_error(proc, 1, "key")
    assert proc.stderr == "jwtkit: key: no key with the token's kid\n"  # R9; no JWKS, so no hint


def test_an_hmac_token_against_a_jwks_of_public_keys_says_why(jwtkit: Runner, tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_bytes(JWKS)
    proc = jwtkit("verify", _hs256_token(), "--jwks", "jwks.json", "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert json.loads(proc.stderr) == {"error": "key", "message": f"no key with the token's kid; {HMAC_HINT}"}


def test_an_asymmetric_token_against_an_empty_jwks(jwtkit: Runner, http_port: int) -> None:
    proc = jwtkit("verify", _token(), "--jwks", f"http://127.0.0.1:{http_port}/empty.json")
    assert_one_line_error(proc, 1, "key")
    assert proc.stderr == "jwtkit: key: no key with the token's kid; the JWKS has no keys\n"


def test_no_hint_when_the_jwks_has_keys_but_not_this_one(jwtkit: Runner, tmp_path: Path) -> None:
    (tmp_path / "jwks.json").write_bytes(JWKS)
    other = Key.generate("EdDSA", kid="another")
    token = encode({"sub": "x", "exp": int(time.time()) + 60}, other)
    proc = jwtkit("verify", token, "--jwks", "jwks.json")
    assert_one_line_error(proc, 1, "key")
    assert proc.stderr == "jwtkit: key: no key with the token's kid\n"
