"""Run the jwtkit server under uvicorn (uvloop + httptools, no access log): what ``jwtkit serve`` calls."""

from __future__ import annotations

import os
import sys

from jwtkit.service import KeyRing, Settings
from jwtkit.web.app import app_from_env, create_app, settings_to_env

__all__ = ["serve"]


def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          secure_cookies: bool = True, allow_query_token: bool = False) -> None:
    """Serve until interrupted; prints ``jwtkit serving on http://HOST:PORT`` once listening is set up.

    With ``workers > 1`` uvicorn spawns processes that import :func:`jwtkit.web.app.app_from_env`; the
    settings reach them through environment variables.

    Raises:
        ValueError: ``workers`` is below 1 or ``port`` out of range.
    """
    import uvicorn  # here: importing jwtkit.web for the middleware should not load the server

    if workers < 1:
        raise ValueError("workers must be at least 1")
    if not 0 <= port <= 65535:
        raise ValueError("port must be between 0 and 65535")
    if settings.secret is None:
        # create the key file once, before any worker races to create it (0600, never a built-in secret)
        KeyRing.load_or_create(settings.key_path)
    options = {"host": host, "port": port, "loop": "uvloop", "http": "httptools", "access_log": False,
               "log_level": "warning", "server_header": False, "proxy_headers": False,
               "limit_concurrency": 2048, "timeout_keep_alive": 5, "h11_max_incomplete_event_size": 16 * 1024}
    display_host = f"[{host}]" if ":" in host else host
    print(f"jwtkit serving on http://{display_host}:{port}", flush=True)
    if workers == 1:
        app = create_app(settings=settings, secure_cookies=secure_cookies,
                         allow_query_token=allow_query_token)
        uvicorn.run(app, **options)  # type: ignore[arg-type]
        return
    os.environ.update(settings_to_env(settings, secure_cookies=secure_cookies,
                                      allow_query_token=allow_query_token))
    uvicorn.run(f"{app_from_env.__module__}:{app_from_env.__name__}", factory=True, workers=workers,
                **options)  # type: ignore[arg-type]
    sys.stdout.flush()
