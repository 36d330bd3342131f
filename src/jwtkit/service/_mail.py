"""Outgoing mail: the :class:`Mailer` protocol, :class:`Message`, the local :class:`OutboxMailer` (``.eml``
and readable ``.txt`` files, and each link on the console) and :class:`SMTPMailer` (smtplib with STARTTLS,
in a worker thread)."""

from __future__ import annotations

import asyncio
import collections
import email.message
import email.utils
import logging
import os
import re
import secrets
import smtplib
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

__all__ = ["Mailer", "MemoryMailer", "Message", "OutboxMailer", "SMTPMailer"]

logger = logging.getLogger("jwtkit.service._mail")

_LINK = re.compile(r"https?://[^\s<>\"']+")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # control characters (ANSI escapes included)


@dataclass(frozen=True, slots=True)
class Message:
    """One plain-text mail."""

    to: str
    subject: str
    body: str

    def to_email(self, sender: str) -> email.message.EmailMessage:
        msg = email.message.EmailMessage()
        msg["From"] = sender
        msg["To"] = self.to
        msg["Subject"] = self.subject
        msg["Date"] = email.utils.formatdate(localtime=False)
        msg["Message-ID"] = email.utils.make_msgid(domain=sender.rpartition("@")[2] or "localhost")
        msg.set_content(self.body)
        return msg


@runtime_checkable
class Mailer(Protocol):
    """Sends a :class:`Message`. Raises ``OSError`` (or a subclass) when it cannot."""

    async def send(self, message: Message) -> None:
        """Deliver or queue the message."""


class OutboxMailer:
    """The local, development mailer: each message becomes two files in ``path`` (created with mode 0700,
    since mails carry single-use tokens), both mode 0600 with the same stem: ``.eml``, the mail as it would be
    sent, and ``.txt``, its recipient, subject and body as plain UTF-8 text, so that a link can be opened or
    copied as it stands (the ``.eml`` body is quoted-printable, which breaks long lines).

    With ``console`` (the default; ``jwtkit serve`` keeps it on), each mail also prints one line to stderr
    with its recipient, subject and links, for example
    ``jwtkit: mail to bob@example.org "Reset your password": http://…/password/reset?token=…  (also in
    outbox/….txt)``. The console then holds the tokens, as the folder does: this mailer is for development.
    The log gets one INFO line without the body, as from every mailer; :class:`SMTPMailer` prints nothing.

    ``sent`` keeps the last 100 messages in memory, for tests and the demo.

    Example:
        >>> import asyncio, tempfile
        >>> box = OutboxMailer(tempfile.mkdtemp(), console=False)
        >>> asyncio.run(box.send(Message("bob@example.org", "Hi", "Hello Bob")))
        >>> box.sent[-1].subject
        'Hi'
    """

    def __init__(self, path: str | os.PathLike[str], *, sender: str = "jwtkit@localhost",
                 console: bool = True) -> None:
        self.path = Path(path)
        self.sender = sender
        self.console = console
        self.sent: collections.deque[Message] = collections.deque(maxlen=100)

    def __repr__(self) -> str:
        return f"OutboxMailer(path={str(self.path)!r}, console={self.console})"

    async def send(self, message: Message) -> None:
        eml, text = await asyncio.to_thread(self._write, message)
        self.sent.append(message)
        # The body holds the link with the token: it goes to the files and the console, never to the log.
        logger.info("mail to %s (%r) written to %s and %s", message.to, message.subject, eml, text.name)

    def _write(self, message: Message) -> tuple[Path, Path]:
        """Write the ``.eml`` and the ``.txt`` files, then the console line; returns both paths."""
        self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
        stem = f"{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{secrets.token_hex(4)}"
        eml, text = self.path / f"{stem}.eml", self.path / f"{stem}.txt"
        _write_private(eml, message.to_email(self.sender).as_bytes())
        _write_private(text, _plain_text(message).encode())
        if self.console:
            links = " ".join(_LINK.findall(message.body)) or "(no link)"
            print(f'jwtkit: mail to {_shown(message.to)} "{_shown(message.subject)}": {_shown(links)}  '
                  f"(also in {_shown(str(text))})", file=sys.stderr, flush=True)
        return eml, text


def _plain_text(message: Message) -> str:
    """The ``.txt`` of a mail: ``To:`` and ``Subject:`` lines, a blank line, and the body as it is (ending
    with one newline)."""
    body = message.body.rstrip("\n")
    return f"To: {message.to}\nSubject: {message.subject}\n\n{body}\n"


def _write_private(file: Path, data: bytes) -> None:
    """Create ``file`` (it must not exist) with mode 0600 and write ``data``."""
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _shown(value: str) -> str:
    """``value`` fit for a terminal: control characters (escape sequences) as ``\\xNN``."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", value)


class SMTPMailer:
    """Sends through an SMTP submission server with STARTTLS (RFC 3207), certificate verified, in a worker
    thread. Refuses to send (and so to log in) when the server does not offer STARTTLS.

    Args:
        host, port: the submission server (587 by default).
        username, password: for AUTH after STARTTLS, when both are given.
        sender: the ``From`` address.
        timeout: socket timeout in seconds.
        ssl_context: defaults to ``ssl.create_default_context()`` (verifies the certificate and host name).
    """

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        username: str | None = None,
        password: str | None = None,
        sender: str = "jwtkit@localhost",
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.username = username
        self._password = password
        self.sender = sender
        self.timeout = timeout
        self.ssl_context = ssl_context if ssl_context is not None else ssl.create_default_context()

    def __repr__(self) -> str:
        return f"SMTPMailer(host={self.host!r}, port={self.port}, username={self.username!r})"

    async def send(self, message: Message) -> None:
        await asyncio.to_thread(self._send, message)
        logger.info("mail to %s (%r) sent through %s:%d", message.to, message.subject, self.host, self.port)

    def _send(self, message: Message) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
            smtp.ehlo()
            if not smtp.has_extn("starttls"):
                # Never send credentials or tokens in clear text.
                raise smtplib.SMTPNotSupportedError(f"{self.host}:{self.port} does not offer STARTTLS")
            smtp.starttls(context=self.ssl_context)
            smtp.ehlo()
            if self.username is not None and self._password is not None:
                smtp.login(self.username, self._password)
            smtp.send_message(message.to_email(self.sender))


class MemoryMailer:
    """Keeps messages in memory (``sent``, the last 1000) and logs one INFO line each: for tests, and the
    default of an :class:`~jwtkit.service.AuthService` built without a mailer."""

    def __init__(self) -> None:
        self.sent: collections.deque[Message] = collections.deque(maxlen=1000)

    def __repr__(self) -> str:
        return f"MemoryMailer(sent={len(self.sent)})"

    async def send(self, message: Message) -> None:
        self.sent.append(message)
        logger.info("mail to %s (%r) kept in memory", message.to, message.subject)
