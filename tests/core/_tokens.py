"""Helpers that build tokens byte by byte, so a test controls exactly which rule a token breaks."""

from __future__ import annotations

import base64
import json
from typing import Any

from jwtkit import Key, jwa

SECRET = b"0123456789abcdef0123456789abcdef"
NOW = 1_700_000_000
EXP = NOW + 3600


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value: dict[str, Any] | bytes | str) -> str:
    if isinstance(value, dict):
        return b64(json.dumps(value, separators=(",", ":")).encode())
    if isinstance(value, str):
        return b64(value.encode())
    return b64(value)


def forge(
    header: dict[str, Any] | bytes | str,
    payload: dict[str, Any] | bytes | str,
    key: Key | None = None,
    *,
    alg: str | None = None,
    signature: bytes | None = None,
) -> str:
    """A compact token with exactly this header and payload, signed by ``key`` (bound to ``alg``)."""
    signing_input = f"{segment(header)}.{segment(payload)}"
    if signature is None:
        assert key is not None
        signature = jwa.sign(alg or key.alg, key, signing_input.encode())
    return f"{signing_input}.{b64(signature)}"


def hs_key(kid: str | None = None, alg: str = "HS256", secret: bytes = SECRET) -> Key:
    return Key.from_secret(secret, alg=alg, kid=kid)
