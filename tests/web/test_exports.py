"""jwtkit.web's public names: exactly these, sorted, each importable, and the layer never imports FastAPI."""

from __future__ import annotations

import subprocess
import sys

import pytest

import jwtkit.web

PUBLIC = ["AuthError", "AuthMode", "BearerScheme", "CookiePolicy", "DPoPAuth", "JWTAuthMiddleware",
          "TokenLocation", "app_from_env", "auth_error_handler", "auth_router", "check_roles", "check_scopes",
          "create_app", "default_on_error", "offline_docs", "optional_principal", "require_principal",
          "require_roles", "require_scopes", "serve"]


def test_all_is_exactly_the_public_names_sorted() -> None:
    assert jwtkit.web.__all__ == PUBLIC
    assert sorted(jwtkit.web.__all__) == jwtkit.web.__all__
    for name in PUBLIC:
        assert getattr(jwtkit.web, name) is not None


def test_importing_the_web_layer_loads_neither_fastapi_nor_uvicorn() -> None:
    code = ("import sys, jwtkit.web; "
            "print(sorted(m for m in ('fastapi', 'uvicorn') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "[]"


HEAVY = ("jinja2", "argon2", "smtplib", "sqlite3", "uvicorn", "jwtkit.web._app", "jwtkit.service._auth")


@pytest.mark.parametrize("statement", [
    "from jwtkit.web import JWTAuthMiddleware",
    "from jwtkit.web import require_principal, optional_principal",
    "from jwtkit.web import require_scopes, require_roles, check_scopes, auth_error_handler, BearerScheme",
    "from jwtkit.service import AccessPolicy, Principal",
])
def test_what_apps_embed_loads_no_templates_hashing_mail_or_server(statement: str) -> None:
    code = (f"import sys; {statement}; "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules), len(sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    loaded, count = result.stdout.rsplit(" ", 1)
    assert loaded == "[]"
    assert int(count) < 330  # 341 before the split; starlette and cryptography are most of what is left


def test_the_fastapi_router_and_docs_load_on_first_use() -> None:
    code = ("import sys, jwtkit.web; before = 'fastapi' in sys.modules; jwtkit.web.auth_router; "
            "print(before, 'fastapi' in sys.modules, jwtkit.web.offline_docs.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "False True jwtkit.web"


def test_the_server_still_loads_on_first_use() -> None:
    code = "import sys, jwtkit.web; jwtkit.web.create_app; print('jinja2' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                            check=True)
    assert result.stdout.strip() == "True"
