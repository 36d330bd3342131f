"""jwtkit.web's public names: exactly these, sorted, each importable, and the layer never imports FastAPI."""

from __future__ import annotations

import subprocess
import sys

import jwtkit.web

PUBLIC = ["AuthError", "AuthMode", "JWTAuthMiddleware", "TokenLocation", "app_from_env",
          "create_app", "default_on_error", "optional_principal", "require_principal", "serve"]


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
