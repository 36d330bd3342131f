"""Peer: FastAPI + PyJWT on uvicorn, the usual way: an HTTPBearer dependency, jwt.decode, one Redis GET.

Configuration from the environment: PEER_SECRET (HS256 key), PEER_ISSUER, PEER_REDIS_URL. A session is
active while the key ``peer:session:<sid>`` holds the token's ``sub``.
Run: uvicorn benchmarks.peers.fastapi_pyjwt:app --loop uvloop --http httptools --no-access-log
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import jwt
import redis.asyncio as redis
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

SECRET = os.environ.get("PEER_SECRET", "")
ISSUER = os.environ.get("PEER_ISSUER", "jwtkit")
client = redis.Redis.from_url(os.environ.get("PEER_REDIS_URL", "redis://127.0.0.1:6379/0"))
bearer = HTTPBearer()
app = FastAPI()


async def current_claims(credentials: Annotated[HTTPAuthorizationCredentials,
                                                Depends(bearer)]) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(credentials.credentials, SECRET, algorithms=["HS256"],
                                            issuer=ISSUER,
                                            options={"require": ["exp", "sub"]})
    except jwt.PyJWTError:
        raise HTTPException(401, "invalid_token", headers={"WWW-Authenticate": "Bearer"}) from None
    owner = await client.get(f"peer:session:{claims.get('sid')}")
    if owner is None or owner.decode() != claims["sub"]:
        raise HTTPException(401, "revoked", headers={"WWW-Authenticate": "Bearer"})
    return claims


@app.get("/private")
async def private(claims: Annotated[dict[str, Any], Depends(current_claims)]) -> dict[str, Any]:
    return {"message": "This is private", "user_id": claims["sub"], "session_id": claims.get("sid"),
            "expires": claims["exp"]}
