"""Mailers: the outbox folder (files, modes, log lines) and SMTP with STARTTLS against a real local server
(a small threaded SMTP server with a self-signed certificate, made here)."""

from __future__ import annotations

import base64
import contextlib
import email
import logging
import smtplib
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from jwtkit.service import AuthService, Mailer, MemoryMailer, Message, OutboxMailer, SMTPMailer, User
from processes import self_signed_certificate

from .conftest import PASSWORD, ServiceFactory


async def test_outbox_writes_eml_and_txt_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    box = OutboxMailer(tmp_path / "outbox", sender="auth@example.org", console=False)
    assert isinstance(box, Mailer)
    caplog.set_level(logging.INFO, logger="jwtkit.service._mail")
    await box.send(Message("bob@example.org", "Reset your password", "open https://x/?token=SECRET-TOKEN"))
    await box.send(Message("bob@example.org", "Second", "body two"))
    files = sorted((tmp_path / "outbox").iterdir())
    assert len(files) == 4
    assert stat.S_IMODE((tmp_path / "outbox").stat().st_mode) == 0o700
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in files)
    emls = [f for f in files if f.suffix == ".eml"]
    assert sorted(f.with_suffix(".txt") for f in emls) == [f for f in files if f.suffix == ".txt"]
    parsed = [email.message_from_bytes(f.read_bytes()) for f in emls]
    first = next(m for m in parsed if m["Subject"] == "Reset your password")
    assert first["To"] == "bob@example.org"
    assert first["From"] == "auth@example.org"
    assert first["Message-ID"]
    assert "SECRET-TOKEN" in first.get_payload(decode=True).decode()
    # the log names recipient, subject and files, never the token
    assert any("bob@example.org" in r.getMessage() and ".eml" in r.getMessage() and ".txt" in r.getMessage()
               for r in caplog.records)
    assert not any("SECRET-TOKEN" in r.getMessage() for r in caplog.records)
    assert [m.subject for m in box.sent] == ["Reset your password", "Second"]


LONG_LINK = "http://127.0.0.1:8000/password/reset?token=" + "eyJhbGciOiJIUzI1NiJ9." * 12 + "sig-_nature"


async def test_outbox_txt_holds_the_unbroken_link_and_the_console_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = OutboxMailer(tmp_path / "outbox")
    body = f"Hello bob,\n\nset a new password by opening this link:\n\n{LONG_LINK}\n\nBye.\n"
    await box.send(Message("bob@example.org", "Reset your password", body))
    [eml] = (tmp_path / "outbox").glob("*.eml")
    text = eml.with_suffix(".txt")
    assert LONG_LINK not in eml.read_text()  # quoted-printable: soft line breaks and =3D, not clickable
    assert text.read_text(encoding="utf-8") == f"To: bob@example.org\nSubject: Reset your password\n\n{body}"
    err = capsys.readouterr().err
    assert err == f'jwtkit: mail to bob@example.org "Reset your password": {LONG_LINK}  (also in {text})\n'


async def test_outbox_console_line_can_be_turned_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = OutboxMailer(tmp_path / "outbox", console=False)
    await box.send(Message("bob@example.org", "Confirm", f"open {LONG_LINK}"))
    assert capsys.readouterr().err == ""
    [text] = (tmp_path / "outbox").glob("*.txt")
    assert LONG_LINK in text.read_text()


async def test_outbox_console_line_escapes_control_characters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    box = OutboxMailer(tmp_path / "outbox")
    await box.send(Message("bob@example.org", "Hi \x1b[2J", "no link here"))
    [text] = (tmp_path / "outbox").glob("*.txt")
    expected = f'jwtkit: mail to bob@example.org "Hi \\x1b[2J": (no link)  (also in {text})\n'
    assert capsys.readouterr().err == expected


async def test_memory_mailer() -> None:
    mailer = MemoryMailer()
    await mailer.send(Message("a@example.org", "s", "b"))
    assert list(mailer.sent) == [Message("a@example.org", "s", "b")]


async def test_service_mails_reach_the_outbox(make_service: ServiceFactory, tmp_path: Path) -> None:
    service: AuthService = make_service()
    box = OutboxMailer(tmp_path / "box")
    service.mailer = box
    async with service:
        user: User = await service.register("alice", PASSWORD, email="alice@example.org")
        await service.send_verification(user.id)
        await service.forgot_password("alice")
    bodies = [f.read_text() for f in (tmp_path / "box").iterdir()]
    assert any("http://127.0.0.1:8000/verify?token=" in b for b in bodies)
    assert any("http://127.0.0.1:8000/password/reset?token=" in b for b in bodies)


async def test_the_link_in_the_txt_resets_the_password(
    make_service: ServiceFactory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    service: AuthService = make_service()
    service.mailer = OutboxMailer(tmp_path / "box")
    async with service:
        await service.register("alice", PASSWORD, email="alice@example.org")
        await service.forgot_password("alice@example.org")
        [text] = (tmp_path / "box").glob("*.txt")
        lines = text.read_text(encoding="utf-8").splitlines()
        assert lines[:3] == ["To: alice@example.org", "Subject: Reset your password", ""]
        [link] = [line for line in lines if "token=" in line]
        assert link.startswith("http://127.0.0.1:8000/password/reset?token=")
        assert capsys.readouterr().err.startswith(f'jwtkit: mail to alice@example.org "Reset your password": '
                                                  f"{link}  (also in ")
        token = parse_qs(urlsplit(link).query)["token"][0]
        await service.reset_password(token, "a brand new long passphrase")
        await service.login("alice", "a brand new long passphrase")


# SMTP -------------------------------------------------------------------------------------------------------


class SMTPServer:
    """Just enough ESMTP (RFC 5321) with STARTTLS (RFC 3207) and AUTH PLAIN to receive one mail per
    connection and record what the client did."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self.context = context  # None: STARTTLS is not offered
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.commands: list[str] = []
        self.auth: list[str] = []
        self.messages: list[bytes] = []
        self.tls_commands: list[str] = []
        self.sock.settimeout(0.05)  # accept() wakes up to notice close()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(5)
            with conn, contextlib.suppress(OSError, ssl.SSLError):
                self._session(conn)

    def _session(self, conn: socket.socket) -> None:
        tls = False
        reader = conn.makefile("rb")
        conn.sendall(b"220 test ESMTP\r\n")
        while True:
            line = reader.readline()
            if not line:
                return
            command = line.decode().rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            (self.tls_commands if tls else self.commands).append(verb)
            if verb in ("EHLO", "HELO"):
                extensions = []
                if self.context is not None and not tls:
                    extensions.append("STARTTLS")
                if tls:
                    extensions.append("AUTH PLAIN")
                lines = ["test", *extensions]
                reply = "".join(f"250-{x}\r\n" for x in lines[:-1]) + f"250 {lines[-1]}\r\n"
                conn.sendall(reply.encode())
            elif verb == "STARTTLS" and self.context is not None:
                conn.sendall(b"220 ready\r\n")
                conn = self.context.wrap_socket(conn, server_side=True)
                reader = conn.makefile("rb")
                tls = True
            elif verb == "AUTH":
                self.auth.append(base64.b64decode(command.split()[2]).decode())
                conn.sendall(b"235 ok\r\n")
            elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                conn.sendall(b"250 ok\r\n")
            elif verb == "DATA":
                conn.sendall(b"354 go\r\n")
                data = b""
                while not data.endswith(b"\r\n.\r\n"):
                    chunk = reader.readline()
                    if not chunk:
                        return
                    data += chunk
                self.messages.append(data)
                conn.sendall(b"250 queued\r\n")
            elif verb == "QUIT":
                conn.sendall(b"221 bye\r\n")
                return
            else:
                conn.sendall(b"502 no\r\n")


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return self_signed_certificate(tmp_path)


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[SMTPServer]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    server = SMTPServer(context)
    yield server
    server.close()


@pytest.fixture
def plain_server() -> Iterator[SMTPServer]:
    server = SMTPServer(None)
    yield server
    server.close()


async def test_smtp_starttls_then_auth_then_send(
    tls_server: SMTPServer, certificate: tuple[Path, Path]
) -> None:
    client_context = ssl.create_default_context(cafile=str(certificate[0]))
    mailer = SMTPMailer("127.0.0.1", tls_server.port, username="mailer", password="hunter2",
                        sender="auth@example.org", ssl_context=client_context, timeout=5)
    assert "hunter2" not in repr(mailer)
    await mailer.send(Message("bob@example.org", "Confirm", "open http://x/verify?token=abc"))
    assert tls_server.commands == ["EHLO", "STARTTLS"]  # nothing else in clear text
    assert tls_server.tls_commands[:2] == ["EHLO", "AUTH"]
    assert tls_server.auth == ["\0mailer\0hunter2"]
    [raw] = tls_server.messages
    parsed = email.message_from_bytes(raw[: -len(b".\r\n")])
    assert parsed["To"] == "bob@example.org"
    assert parsed["Subject"] == "Confirm"


async def test_smtp_verifies_the_certificate(tls_server: SMTPServer) -> None:
    mailer = SMTPMailer("127.0.0.1", tls_server.port, username="mailer", password="hunter2", timeout=5)
    with pytest.raises(ssl.SSLCertVerificationError):
        await mailer.send(Message("bob@example.org", "Confirm", "body"))
    assert tls_server.auth == []
    assert tls_server.messages == []


async def test_smtp_refuses_a_server_without_starttls(plain_server: SMTPServer) -> None:
    mailer = SMTPMailer("127.0.0.1", plain_server.port, username="mailer", password="hunter2", timeout=5)
    with pytest.raises(smtplib.SMTPNotSupportedError, match="STARTTLS"):
        await mailer.send(Message("bob@example.org", "Confirm", "body with token"))
    assert "AUTH" not in plain_server.commands
    assert plain_server.messages == []


async def test_smtp_unreachable_raises_oserror() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    mailer = SMTPMailer("127.0.0.1", port, timeout=2)
    with pytest.raises(OSError):
        await mailer.send(Message("bob@example.org", "s", "b"))
