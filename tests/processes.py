"""Real binaries and loopback ports for tests that start real servers (redis-server, Chromium, jwtkit serve).

A test that needs a binary the machine lacks is skipped with a printed reason, except under ``CI=true``,
where a missing binary fails the run. The folder ``tests/`` is on ``sys.path`` (the root conftest lives
there), so any test module can ``from processes import free_port, require_binary, wait_for_port``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def require_binary(name: str) -> str:
    """The binary's path; skip the test when it is missing, or fail under CI=true."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if path and os.access(path, os.X_OK):
        return path
    reason = f"{name} is not installed"
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)
