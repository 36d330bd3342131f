"""The service's export list, error codes, and the layering rule (no starlette, no web)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import jwtkit.service as service
from jwtkit.service import _errors as errors

ARCHITECTURE_NAMES = {
    "AuthService", "AuthConfig", "Settings", "build_service",
    "User", "UserRepository", "SQLiteUserRepository", "MemoryUserRepository",
    "KeyRing", "Mailer", "OutboxMailer", "SMTPMailer", "Message",
    "TokenPair", "Principal",
    "ServiceError", "InvalidCredentials", "Throttled", "AccountDisabled", "AccountUnverified",
    "InvalidToken", "TokenExpired", "SessionRevoked", "RefreshReused",
    "UsernameTaken", "InvalidUsername", "WeakPassword", "InvalidEmail", "UserNotFound",
}


def test_all_is_sorted_complete_and_covers_the_architecture() -> None:
    assert service.__all__ == sorted(service.__all__)
    assert len(set(service.__all__)) == len(service.__all__)
    assert set(service.__all__) >= ARCHITECTURE_NAMES
    for name in service.__all__:
        assert hasattr(service, name), name


def test_every_error_is_exported_with_a_unique_code() -> None:
    classes = [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
               if issubclass(obj, errors.ServiceError)]
    assert {cls.__name__ for cls in classes} <= set(service.__all__)
    codes = [cls.code for cls in classes]
    assert len(codes) == len(set(codes))
    assert {cls.__name__: cls.code for cls in classes}.items() >= {
        "InvalidCredentials": "invalid_credentials", "Throttled": "throttled",
        "AccountDisabled": "account_disabled", "AccountUnverified": "account_unverified",
        "InvalidToken": "invalid_token", "TokenExpired": "token_expired", "SessionRevoked": "session_revoked",
        "RefreshReused": "refresh_reused", "UsernameTaken": "username_taken",
        "InvalidUsername": "invalid_username", "WeakPassword": "weak_password",
        "InvalidEmail": "invalid_email", "UserNotFound": "user_not_found",
    }.items()
    for cls in (errors.TokenExpired, errors.SessionRevoked, errors.RefreshReused):
        assert issubclass(cls, errors.InvalidToken)


def test_error_attributes() -> None:
    assert errors.Throttled(2.5).retry_after == 2.5
    assert errors.InvalidToken("signature").reason == "signature"
    assert errors.TokenExpired().reason == "expired"
    assert str(errors.WeakPassword("why")) == "why"


def test_service_never_imports_the_web_layer() -> None:
    root = Path(service.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert not name.startswith(("starlette", "fastapi", "uvicorn", "jwtkit.web", "jwtkit.cli")), (
                    path.name, name)
