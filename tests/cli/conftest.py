"""Fixtures for the CLI tests: ``jwtkit(*args, stdin=None, env=None)`` runs the real command in tmp_path."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from cli_support import Runner, run_jwtkit


@pytest.fixture
def jwtkit(tmp_path: Path) -> Runner:
    return functools.partial(run_jwtkit, tmp_path)
