"""``jwtkit decode`` in a pseudo-terminal: three parts in three colours; piped or --json: plain text."""

from __future__ import annotations

import errno
import os
import pty
import re
import subprocess
import sys
import time
from pathlib import Path

import jwt as pyjwt
from cli_support import SECRET, clean_env

SGR = re.compile(r"\x1b\[([0-9;]*)m")


def _token() -> str:
    now = int(time.time())
    return pyjwt.encode({"sub": "alice", "iat": now, "exp": now + 14 * 60 + 30}, SECRET, algorithm="HS256")


def _run_in_pty(args: list[str], cwd: Path) -> tuple[int, str]:
    """Run the command with stdout and stderr on a pseudo-terminal; return (exit code, all it wrote)."""
    leader, follower = pty.openpty()
    env = clean_env({"TERM": "xterm-256color", "COLUMNS": "400"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "jwtkit", *args],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        cwd=cwd,
        env=env,
    )
    os.close(follower)
    chunks: list[bytes] = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:  # EIO once the child side is closed (Linux)
            if exc.errno != errno.EIO:
                raise
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return proc.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def _style_before(output: str, text: str) -> str:
    """The SGR parameters in force right where ``text`` starts in ``output``."""
    index = output.index(text)
    codes = SGR.findall(output[:index])
    assert codes, f"no colour before {text[:12]}..."
    return codes[-1]


def test_decode_in_a_terminal_colours_the_three_parts_differently(tmp_path: Path) -> None:
    token = _token()
    header, payload, signature = token.split(".")
    code, output = _run_in_pty(["decode", token], tmp_path)
    assert code == 0, output
    assert "\x1b[" in output
    styles = [_style_before(output, part) for part in (header, payload, signature)]
    assert all(style not in ("", "0") for style in styles), styles
    assert len(set(styles)) == 3, styles  # header, payload and signature each in its own colour
    plain = SGR.sub("", output)
    assert f"{header}.{payload}.{signature}" in plain
    assert "expires in 14 min" in plain and " UTC" in plain
    assert '"sub": "alice"' in plain


def test_decode_piped_has_no_escape_codes(tmp_path: Path) -> None:
    token = _token()
    proc = subprocess.run(
        [sys.executable, "-m", "jwtkit", "decode", token],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env({"TERM": "xterm-256color"}),
        timeout=30,
    )
    assert proc.returncode == 0
    assert "\x1b" not in proc.stdout and "\x1b" not in proc.stderr
    assert token in proc.stdout and "expires in 14 min" in proc.stdout


def test_decode_json_in_a_terminal_has_no_escape_codes(tmp_path: Path) -> None:
    code, output = _run_in_pty(["decode", "--json", _token()], tmp_path)
    assert code == 0
    assert "\x1b" not in output
    assert '"relative": "expires in 14 min"' in output
