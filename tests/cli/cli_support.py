"""Helpers for the CLI tests: run the real ``jwtkit`` command in a subprocess, as a user's shell would."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

SECRET = "tutorial-secret-that-is-long-enough-for-hs256"  # 45 bytes (RFC 7518 §3.2 needs >= 32)

Runner = Callable[..., subprocess.CompletedProcess[str]]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The parent's environment without anything that changes jwtkit's, rich's or httpx's behaviour."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("JWTKIT_", "JWT_SECRET", "FORCE_COLOR", "NO_COLOR", "CLICOLOR", "COLUMNS", "TTY_", "SSL_CERT_")
        )
        and not k.lower().endswith("_proxy")
    }
    env["JWT_TEST_SECRET"] = SECRET
    env.update(extra or {})
    return env


def run_jwtkit(
    cwd: Path, *args: str, stdin: str | None = None, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m jwtkit ARGS`` in ``cwd`` with a clean environment; returns the finished process."""
    return subprocess.run(
        [sys.executable, "-m", "jwtkit", *args],
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        cwd=cwd,
        env=clean_env(env),
        timeout=timeout,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess[str], code: int, error: str) -> None:
    """Exit ``code``, nothing on stdout, and exactly one ``jwtkit: <error>: ...`` line on stderr."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"jwtkit: {error}: "), lines[0]
    assert "Traceback" not in proc.stderr
