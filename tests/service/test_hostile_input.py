"""Bad input never crashes: wrong types and junk reach every entry point and come back as typed errors."""

from __future__ import annotations

from typing import Any

import pytest

from jwtkit.service import (
    AuthService,
    InvalidCredentials,
    InvalidEmail,
    InvalidToken,
    InvalidUsername,
    ServiceError,
    User,
    WeakPassword,
)

from .conftest import PASSWORD

JUNK: list[Any] = [None, 0, 1.5, b"bytes", ["list"], {"a": 1}, "", "\x00", "a" * 100_000, "\ud800"]


async def test_register_with_junk(service: AuthService) -> None:
    for value in JUNK:
        with pytest.raises((InvalidUsername, WeakPassword)):
            await service.register(value, PASSWORD)
        with pytest.raises(WeakPassword):
            await service.register("alice", value)
        if value not in (None, ""):
            with pytest.raises(InvalidEmail):
                await service.register("alice", PASSWORD, email=value)


async def test_login_with_junk(service: AuthService, alice: User) -> None:
    for value in JUNK:
        with pytest.raises(InvalidCredentials):
            await service.login(value, PASSWORD)
        with pytest.raises((InvalidCredentials, ServiceError)):
            await service.login("alice", value)
        await service.throttle.success(service.throttle.keys("alice", "")[0])


async def test_token_entry_points_with_junk(service: AuthService, alice: User) -> None:
    for value in [*JUNK, "a.b.c", "e30.e30.e30", "x.y"]:
        with pytest.raises(InvalidToken):
            await service.authenticate(value)
        with pytest.raises(InvalidToken):
            await service.refresh(value)
        with pytest.raises(InvalidToken):
            await service.verify_email(value)
        with pytest.raises(InvalidToken):
            await service.reset_password(value, "a brand new passphrase")


async def test_account_entry_points_with_junk(service: AuthService, alice: User) -> None:
    for value in JUNK:
        assert await service.forgot_password(value) is None
        assert await service.find_user(value) is None
        with pytest.raises((InvalidCredentials, WeakPassword)):
            await service.change_password(alice.id, value, "a brand new passphrase")
        await service.throttle.success(service.throttle.keys("alice", "")[0])
