"""Exit codes, the CLI's one error type, and where output goes (rich for people, JSON for scripts).

Every command raises :class:`CLIError` (or lets a jwtkit error through); :func:`jwtkit.cli.main` is the one
boundary that turns them into a single line on stderr and an exit code, so no input can print a traceback.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Mapping
from typing import Any

from rich.console import Console

__all__ = [
    "EXIT_CODES_HELP",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_PORT_IN_USE",
    "EXIT_REFUSED",
    "EXIT_SOFTWARE",
    "EXIT_STORE",
    "EXIT_USAGE",
    "CLIError",
    "Output",
    "out",
    "terminal_safe",
]

EXIT_OK = 0
EXIT_INVALID = 1  # the token is invalid, or its verification failed
EXIT_USAGE = 2  # a usage error or bad input: unreadable file, bad key, bad JSON, bad option value
EXIT_STORE = 3  # the session store (or user database) cannot answer
EXIT_REFUSED = 4  # the service refused: unknown user, name taken, weak password, ...
EXIT_PORT_IN_USE = 5  # jwtkit serve: something already listens on the port (the one thing a retry may fix)
EXIT_SOFTWARE = 70  # a bug in jwtkit (sysexits EX_SOFTWARE); still one line, never a traceback

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 token invalid or verification failed; 2 usage error or bad input "
    "(unreadable file, bad key or password, bad JSON); 3 store unavailable; 4 refused by the service "
    "(unknown user, name taken, weak password); 5 the port is already in use (jwtkit serve); 70 internal "
    "error."
)


# C0 controls except tab and newline, DEL, and C1 controls (0x9b is an 8-bit CSI on some terminals); then the
# invisible characters that make a terminal show other text than the bytes hold (Trojan Source,
# CVE-2021-42574): bidi embeddings, overrides, isolates and marks, zero-width characters, line and paragraph
# separators, the soft hyphen, the BOM, interlinear annotations and tag characters.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                     "\u2060-\u2069\ufeff\ufff9-\ufffb\U000e0000-\U000e007f]")


def terminal_safe(text: str) -> str:
    """Control and invisible characters written as ``\\uXXXX``: text from tokens, stores, files or the network
    must never drive the terminal (ANSI and OSC escape injection) nor hide or reorder what it shows (bidi and
    zero-width characters). Inside JSON strings the result is still valid JSON."""
    return _UNSAFE.sub(_escaped, text)


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code > 0xFFFF:  # a JSON escape is a UTF-16 unit: a surrogate pair (RFC 8259 §7)
        code -= 0x10000
        return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
    return f"\\u{code:04x}"


class CLIError(Exception):
    """A failure the user can act on: printed as ``jwtkit: <code>: <message>`` on stderr, then exit."""

    def __init__(self, code: str, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.exit_code = exit_code


class Output:
    """Where a command writes. ``json`` is switched on by the global or the per-command ``--json``."""

    def __init__(self) -> None:
        self.json = False
        self._stdout: Console | None = None
        self._stderr: Console | None = None

    @property
    def console(self) -> Console:
        """Rich console on stdout; it drops colour by itself when stdout is not a terminal."""
        if self._stdout is None:
            self._stdout = Console(highlight=False, soft_wrap=True)
        return self._stdout

    @property
    def err_console(self) -> Console:
        if self._stderr is None:
            self._stderr = Console(stderr=True, highlight=False, soft_wrap=True)
        return self._stderr

    def use_json(self, flag: bool) -> None:
        if flag:
            self.json = True

    def emit_json(self, data: Mapping[str, Any] | list[Any]) -> None:
        """One JSON document on stdout, never coloured."""
        sys.stdout.write(terminal_safe(json.dumps(data, indent=2, ensure_ascii=False)) + "\n")
        sys.stdout.flush()

    def note(self, message: str) -> None:
        """A human remark on stderr (kept off stdout so that pipes get only the result)."""
        if not self.json:
            self.err_console.print(terminal_safe(message), markup=False)

    def error(self, code: str, message: str) -> None:
        """The one error line, on stderr: JSON when ``--json`` is on."""
        line = terminal_safe(" ".join(message.split()))  # one line, whatever the message held
        if self.json:
            sys.stderr.write(
                terminal_safe(json.dumps({"error": code, "message": line}, ensure_ascii=False)) + "\n"
            )
        else:
            sys.stderr.write(f"jwtkit: {code}: {line}\n")
        sys.stderr.flush()


out = Output()
