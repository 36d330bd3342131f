"""Peer: Starlette + PyJWT served by granian: a plain route, jwt.decode, one Redis GET.

Configuration from the environment: PEER_SECRET (HS256 key), PEER_ISSUER, PEER_REDIS_URL. A session is
active while the key ``peer:session:<sid>`` holds the token's ``sub``.
Run: granian --interface asgi --loop uvloop --workers 1 benchmarks.peers.starlette_pyjwt:app
"""

from __future__ import annotations

import os
from typing import Any

import jwt
import redis.asyncio as redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

SECRET = os.environ.get("PEER_SECRET", "")
ISSUER = os.environ.get("PEER_ISSUER", "jwtkit")
client = redis.Redis.from_url(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))

_UNAUTHORIZED = {"WWW-Authenticate": "Bearer"}


async def private(request: Request) -> Response:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return JSONResponse({"error": "missing_token"}, 401, headers=_UNAUTHORIZED)
    try:
        claims: dict[str, Any] = jwt.decode(token, SECRET, algorithms=["HS256"], issuer=ISSUER,
                                            options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        return JSONResponse({"error": "invalid_token"}, 401, headers=_UNAUTHORIZED)
    owner = await client.get(f"peer:session:{claims.get('sid')}")
    if owner is None or owner.decode() != claims["sub"]:
        return JSONResponse({"error": "invalid_token"}, 401, headers=_UNAUTHORIZED)
    return JSONResponse({"message": "This is private", "user_id": claims["sub"],
                         "session_id": claims.get("sid"),
                         "expires": claims["exp"]})


app = Starlette(routes=[Route("/private", private)])
