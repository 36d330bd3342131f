"""``jwtkit verify --jwks https://...`` against a local TLS server (self-signed, trusted via SSL_CERT_FILE).

Checks R20 of docs/token-rules.md: https only, no redirects followed, a size cap, and an untrusted certificate
refused.
"""

from __future__ import annotations

import http.server
import json
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import Runner, assert_one_line_error

from jwtkit import Key, KeySet, encode
from processes import self_signed_certificate

SIGNER = Key.generate("ES256", kid="tls-test")
JWKS = json.dumps(KeySet([SIGNER.public()]).to_jwks()).encode()


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path == "/jwks.json":
            body = JWKS
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

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass


@pytest.fixture(scope="module")
def https_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}", cert
    finally:
        server.shutdown()
        server.server_close()


def _token() -> str:
    return encode({"sub": "over-tls", "exp": int(time.time()) + 60}, SIGNER)


def test_jwks_over_https_verifies(jwtkit: Runner, https_server: tuple[str, Path]) -> None:
    url, cert = https_server
    proc = jwtkit(
        "verify", _token(), "--jwks", f"{url}/jwks.json", "--json", env={"SSL_CERT_FILE": str(cert)}
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["claims"]["sub"] == "over-tls"


def test_jwks_limits(jwtkit: Runner, https_server: tuple[str, Path]) -> None:
    url, cert = https_server
    trusted = {"SSL_CERT_FILE": str(cert)}
    big = jwtkit("verify", _token(), "--jwks", f"{url}/big.json", env=trusted)
    assert_one_line_error(big, 2, "jwks")
    assert "larger than" in big.stderr
    moved = jwtkit("verify", _token(), "--jwks", f"{url}/moved", env=trusted)
    assert_one_line_error(moved, 2, "jwks")
    assert "302" in moved.stderr  # redirects are not followed
    assert_one_line_error(jwtkit("verify", _token(), "--jwks", f"{url}/missing", env=trusted), 2, "jwks")
    # Without trusting the self-signed certificate the fetch fails: TLS is verified.
    assert_one_line_error(jwtkit("verify", _token(), "--jwks", f"{url}/jwks.json"), 2, "jwks")
