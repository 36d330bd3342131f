"""The token debugger page in Chromium: decoding, WebCrypto verification, CSP, and that nothing leaks.

The page is served by a real ``jwtkit serve`` process. Tokens are signed with PyJWT and ``cryptography``
(another implementation than the page's), so a pass means the page interoperates, not that it agrees with
itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from processes import free_port, wait_for_port

pytestmark = pytest.mark.browser

SECRET = "correct-horse-battery-staple-2026-debugger!"  # 43 bytes: long enough for HS256 (RFC 7518 §3.2)
CLAIMS = {
    "sub": "alice-42",
    "iss": "https://issuer.example",
    "iat": 1_900_000_000,
    "exp": 1_900_000_900,
    "jti": "jti-debugger-1",
}
HEADER_RGB = "rgb(251, 1, 91)"
PAYLOAD_RGB = "rgb(214, 58, 255)"
SIGNATURE_RGB = "rgb(0, 185, 241)"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``jwtkit serve`` on a free port, in a scratch directory."""
    workdir = tmp_path_factory.mktemp("debugger-server")
    port = free_port()
    env = {**os.environ, "JWT_SECRET": "s" * 40, "JWTKIT_STORE": "memory://"}
    env.pop("JWTKIT_PORT", None)
    log = open(workdir / "server.log", "wb")  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        [sys.executable, "-m", "jwtkit", "serve", "--port", str(port), "--no-secure-cookies"],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    log.close()
    try:
        try:
            wait_for_port(port, proc=proc, timeout=20)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; server log: {(workdir / 'server.log').read_text()[-2000:]}") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Recorder:
    """Every request the page makes (URL, headers, body) and every console message."""

    def __init__(self, page: Any) -> None:
        self.requests: list[dict[str, Any]] = []
        self.console: list[str] = []
        self.responses: list[dict[str, Any]] = []
        page.on("request", self._request)
        page.on(
            "response",
            lambda response: self.responses.append({"url": response.url, "status": response.status}),
        )
        page.on("console", lambda message: self.console.append(f"{message.type}: {message.text}"))
        page.on("pageerror", lambda error: self.console.append(f"pageerror: {error}"))

    def _request(self, request: Any) -> None:
        self.requests.append(
            {
                "method": request.method,
                "url": request.url,
                "headers": dict(request.headers),
                "post": request.post_data or "",
            }
        )

    def assert_nothing_carries(self, *secrets: str) -> None:
        assert self.requests, "the recorder saw no request at all, so it would not see a leak either"
        for request in self.requests:
            blob = json.dumps(request)
            for secret in secrets:
                for fragment in _fragments(secret):
                    assert fragment not in blob, f"a request carries part of a token or key: {request['url']}"

    def assert_no_csp_violation(self) -> None:
        failed = [r["url"] for r in self.responses if r["status"] >= 400]
        assert failed == []
        bad = [
            line
            for line in self.console
            if "Content Security Policy" in line
            or "Refused to" in line
            or line.startswith("pageerror")
            or line.startswith("error")
        ]
        assert bad == []


def _fragments(secret: str) -> list[str]:
    """The secret itself and, for long ones, slices of it: a leak of a part counts too."""
    pieces = [line.strip() for line in secret.splitlines() if len(line.strip()) >= 16]
    if len(secret) >= 16:
        pieces.append(secret)
    return [p for p in pieces if not p.startswith("-----")]


def _open(page: Any, server: str, recorder: Recorder) -> None:
    response = page.goto(f"{server}/debugger")
    assert response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    page.wait_for_function("() => document.getElementById('token') !== null")


def _verify(page: Any, key: str, key_type: str = "auto") -> tuple[str, str]:
    page.select_option("#key-type", key_type)
    page.fill("#key", key)
    page.click("#verify")
    page.wait_for_function(
        "() => ['valid', 'invalid', 'error'].includes(document.getElementById('verify-result').dataset.state)"
    )
    state = page.get_attribute("#verify-result", "data-state") or ""
    return state, page.inner_text("#verify-result")


def _public_jwk(private: Any, alg: str) -> str:
    algorithm = pyjwt.get_algorithm_by_name(alg)
    jwk = json.loads(algorithm.to_jwk(private.public_key()))
    jwk["alg"] = alg
    return json.dumps(jwk)


def test_hs256_token_is_decoded_coloured_and_verified(browser_page: Any, server: str) -> None:
    page = browser_page
    recorder = Recorder(page)
    _open(page, server, recorder)
    token = pyjwt.encode(CLAIMS, SECRET, algorithm="HS256")
    page.fill("#token", token)

    header_b64, payload_b64, signature_b64 = token.split(".")
    assert page.inner_text("#encoded .part-header") == header_b64
    assert page.inner_text("#encoded .part-payload") == payload_b64
    assert page.inner_text("#encoded .part-signature") == signature_b64
    colours = [
        page.eval_on_selector(f"#encoded .part-{part}", "e => getComputedStyle(e).color")
        for part in ("header", "payload", "signature")
    ]
    assert colours == [HEADER_RGB, PAYLOAD_RGB, SIGNATURE_RGB]

    assert json.loads(page.inner_text("#header-json")) == {"alg": "HS256", "typ": "JWT"}
    assert json.loads(page.inner_text("#claims-json")) == CLAIMS
    assert page.inner_text("#claims-table tr[data-claim='sub'] td.value") == '"alice-42"'
    assert "subject" in page.inner_text("#claims-table tr[data-claim='sub'] td.meaning")
    assert "issuer" in page.inner_text("#claims-table tr[data-claim='iss'] td.meaning")
    exp_text = page.inner_text("#claims-table tr[data-claim='exp'] td.meaning")
    assert "local time" in exp_text and "expires in" in exp_text
    # The page renders dates in the browser's local time zone, exactly as JavaScript formats them.
    expected = page.evaluate("() => new Date(1900000900 * 1000).toLocaleString()")
    assert expected in exp_text
    assert "algorithm" in page.inner_text("#header-table tr[data-claim='alg'] td.meaning")

    assert _verify(page, SECRET) == ("valid", "Signature verified")
    wrong = SECRET[:-1] + "?"
    assert _verify(page, wrong) == ("invalid", "Invalid signature")
    assert _verify(page, SECRET, "secret") == ("valid", "Signature verified")

    assert page.inner_text("#verify-note") == ""

    expired = pyjwt.encode({**CLAIMS, "exp": 1_000_000_000}, SECRET, algorithm="HS256")
    page.fill("#token", expired)
    assert _verify(page, SECRET) == ("valid", "Signature verified")
    assert "expired" in page.inner_text("#verify-note")
    assert "expired" in page.inner_text("#claims-table tr[data-claim='exp'] td.meaning")

    assert page.url == f"{server}/debugger"  # nothing went into the address bar
    recorder.assert_nothing_carries(token, signature_b64, payload_b64, SECRET, wrong, expired)
    recorder.assert_no_csp_violation()
    assert {r["method"] for r in recorder.requests} == {"GET"}


def test_es256_with_jwk_and_rs256_with_pem(browser_page: Any, server: str) -> None:
    page = browser_page
    recorder = Recorder(page)
    _open(page, server, recorder)

    ec_key = ec.generate_private_key(ec.SECP256R1())
    es_token = pyjwt.encode(CLAIMS, ec_key, algorithm="ES256", headers={"kid": "ec-1"})
    es_jwk = _public_jwk(ec_key, "ES256")
    page.fill("#token", es_token)
    assert _verify(page, es_jwk) == ("valid", "Signature verified")
    other_jwk = _public_jwk(ec.generate_private_key(ec.SECP256R1()), "ES256")
    assert _verify(page, other_jwk) == ("invalid", "Invalid signature")
    jwks = json.dumps({"keys": [{**json.loads(es_jwk), "kid": "ec-1"}]})
    assert _verify(page, jwks, "jwk") == ("valid", "Signature verified")

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rs_token = pyjwt.encode(CLAIMS, rsa_key, algorithm="RS256")
    rs_pem = (
        rsa_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    page.fill("#token", rs_token)
    assert _verify(page, rs_pem) == ("valid", "Signature verified")
    assert _verify(page, rs_pem, "pem") == ("valid", "Signature verified")
    # A key bound to another algorithm is refused (RFC 8725 §3.1), whatever the signature.
    state, text = _verify(page, _public_jwk(rsa_key, "PS256"))
    assert state == "invalid" and "bound to PS256" in text

    ps_token = pyjwt.encode(CLAIMS, rsa_key, algorithm="PS256")
    page.fill("#token", ps_token)
    assert _verify(page, _public_jwk(rsa_key, "PS256")) == ("valid", "Signature verified")

    ed_key = ed25519.Ed25519PrivateKey.generate()
    ed_token = pyjwt.encode(CLAIMS, ed_key, algorithm="EdDSA")
    ed_pem = (
        ed_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    page.fill("#token", ed_token)
    state, text = _verify(page, ed_pem)
    print("Ed25519 in this Chromium:", state, text)
    if "does not support" not in text:  # Ed25519 in WebCrypto: "where the browser supports it"
        assert (state, text) == ("valid", "Signature verified")

    private_pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    page.fill("#token", rs_token)
    assert _verify(page, private_pem) == ("valid", "Signature verified")

    recorder.assert_nothing_carries(
        es_token,
        rs_token,
        ps_token,
        ed_token,
        es_jwk,
        other_jwk,
        rs_pem,
        ed_pem,
        private_pem,
        es_token.split(".")[2],
        rs_token.split(".")[2],
    )
    recorder.assert_no_csp_violation()


def test_keys_as_jwtkit_keygen_writes_them(browser_page: Any, server: str) -> None:
    """Private JWKs as ``jwtkit keygen`` writes them (HMAC ``oct``, EC, EdDSA) verify jwtkit tokens."""
    from jwtkit import Key, encode

    page = browser_page
    recorder = Recorder(page)
    _open(page, server, recorder)
    pasted: list[str] = []
    for alg in ("HS256", "ES384", "EdDSA"):
        key = Key.generate(alg, kid=f"{alg}-1")
        token = encode({"sub": "k", "exp": 1_900_000_000}, key)
        private_jwk = json.dumps(key.to_jwk(private=True))
        page.fill("#token", token)
        state, text = _verify(page, private_jwk, "jwk")
        if alg == "EdDSA" and "does not support" in text:
            continue
        assert (state, text) == ("valid", "Signature verified"), alg
        other = json.dumps(Key.generate(alg, kid=f"{alg}-1").to_jwk(private=True))
        assert _verify(page, other, "jwk") == ("invalid", "Invalid signature"), alg
        pasted += [token, private_jwk, other]
    recorder.assert_nothing_carries(*pasted)
    recorder.assert_no_csp_violation()


def test_bad_input_and_alg_none_are_explained(browser_page: Any, server: str) -> None:
    page = browser_page
    recorder = Recorder(page)
    _open(page, server, recorder)
    page.fill("#token", "abc.def")
    assert "exactly three parts" in page.inner_text("#decode-error")
    assert page.is_hidden("#decoded")

    none_token = pyjwt.encode({"sub": "x", "password": "hunter2"}, None, algorithm="none")
    page.fill("#token", none_token)
    warnings = page.inner_text("#warnings")
    assert '"none"' in warnings and "never expires" in warnings and "password" in warnings
    state, text = _verify(page, SECRET)
    assert state == "invalid" and "never verified" in text
    recorder.assert_no_csp_violation()
