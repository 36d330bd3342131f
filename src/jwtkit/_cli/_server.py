"""Server commands: ``serve``, ``user``, ``sessions`` and ``keys``. Thin shells over :mod:`jwtkit.service`.

``jwtkit.service`` and ``jwtkit.web`` are imported inside the commands, so the token commands keep working
in a build (or a moment of development) where the layers above the core are missing.
"""

from __future__ import annotations

import asyncio
import getpass
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.table import Table
from rich.text import Text

from ._output import EXIT_INVALID, EXIT_PORT_IN_USE, EXIT_REFUSED, EXIT_USAGE, CLIError, out, terminal_safe
from ._tokens import JsonFlag, check_alg

if TYPE_CHECKING:
    from jwtkit.service import AuthService, Settings, User
    from jwtkit.service._config import ServerSettings
    from jwtkit.store import Session
    from jwtkit.web._server import ListenError

__all__ = ["register"]

T = TypeVar("T")

StoreOption = Annotated[
    str | None,
    typer.Option("--store", help="Store URL: sqlite:///jwtkit.db, leveldb:///dir, redis://..."),
]
DbOption = Annotated[
    str | None,
    typer.Option("--db", help="Accounts database: a SQLite file, or postgresql://... (default: beside the "
                              "store: its SQLite file, or the same PostgreSQL database)."),
]
PASSWORD_MAX_BYTES = 4096


def _settings(store: str | None, **overrides: Any) -> Settings:
    """Settings from the environment (as ``make run`` sees it, read by Settings.from_env); options win."""
    from jwtkit.service import Settings

    given = {name: value for name, value in overrides.items() if value is not None}
    if store:
        given["store_url"] = store
    return Settings.from_env(**given)


def _run(settings: Settings, work: Callable[[AuthService], Awaitable[T]]) -> T:
    """Open the service, run one piece of work, close it. The work issues no token, so a key ring kept in a
    shared store (and its key-encryption key) is not needed for it."""
    from jwtkit.service._build import assemble

    async def go() -> T:
        service = assemble(settings, signs=False)
        await service.open()
        try:
            return await work(service)
        finally:
            await service.close()

    return asyncio.run(go())


async def _user(service: AuthService, username: str) -> User:
    user = await service.find_user(username)
    if user is None:
        raise CLIError("user_not_found", f"no user named {username!r}", EXIT_REFUSED)
    return user


def _cell(value: str) -> Text:
    """A table cell shown as plain text: no rich markup, no terminal control sequences (user agents and
    names come from clients)."""
    return Text(terminal_safe(value))


def _table(*headers: str) -> Table:
    """A table whose long values wrap instead of being cut off (ids and user agents must stay whole)."""
    table = Table()
    for header in headers:
        table.add_column(header, overflow="fold")
    return table


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _user_json(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "email": user.email,
        "verified": user.verified,
        "disabled": user.disabled,
        "created": user.created,
        "roles": list(user.roles),
    }


def _session_json(session: Session) -> dict[str, Any]:
    return {
        "sid": session.sid,
        "user_id": session.user_id,
        "created": session.created,
        "last_used": session.last_used,
        "expires": session.expires,
        "ip": session.ip,
        "user_agent": session.user_agent,
    }


# --- serve -----------------------------------------------------------------------------------------------


def serve_command(
    host: Annotated[
        str | None, typer.Option("--host", help="Interface to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="TCP port (default 8000).")
    ] = None,
    store: StoreOption = None,
    db: DbOption = None,
    workers: Annotated[
        int | None, typer.Option("--workers", min=1, max=64, help="Worker processes (default 1).")
    ] = None,
    issuer: Annotated[str | None, typer.Option("--issuer", help="iss of tokens (default jwtkit).")] = None,
    audience: Annotated[str | None, typer.Option("--audience", help="aud of tokens.")] = None,
    secure_cookies: Annotated[
        bool | None,
        typer.Option(
            "--secure-cookies/--no-secure-cookies",
            help="Secure, __Host- cookies (default; turn off only for plain-http localhost).",
            show_default=False,
        ),
    ] = None,
    allow_query_token: Annotated[
        bool | None,
        typer.Option(
            "--allow-query-token/--no-allow-query-token",
            help="Also accept ?token= on /private (as the tutorial does; leaks into logs). Default: off.",
            show_default=False,
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None,
        typer.Option("--max-concurrency", min=1, max=100_000,
                     help="Requests in flight per worker past which the server answers 503 (default 256)."),
    ] = None,
    forwarded_allow_ips: Annotated[
        str | None,
        typer.Option("--forwarded-allow-ips",
                     help="Comma-separated proxy addresses or networks whose X-Forwarded-For is believed "
                          "(default none: the TCP peer is the client)."),
    ] = None,
    json_output: JsonFlag = False,
) -> None:
    """Run the example server (JWT_SECRET, or a 0600 key file made on first run).

    Each option given wins over its environment variable (see docs/cli.md).
    """
    out.use_json(json_output)
    server = _server_settings(
        host=host,
        port=port,
        store_url=store or None,
        users_path=db or None,
        workers=workers,
        issuer=issuer,
        audience=audience or None,
        secure_cookies=secure_cookies,
        allow_query_token=allow_query_token,
        max_concurrency=max_concurrency,
        forwarded_allow_ips=_proxy_list(forwarded_allow_ips),
    )
    try:
        from jwtkit import web
        from jwtkit.web._server import ListenError
    except ImportError as exc:
        raise CLIError("unavailable", f"the web layer cannot be imported: {exc}") from None
    try:
        # web.serve prints "jwtkit serving on URL" once it is listening.
        web.serve(server)
    except ListenError as exc:
        raise _listen_failure(exc) from None


def _proxy_list(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _listen_failure(exc: ListenError) -> CLIError:
    """The one line for an address ``serve`` cannot bind, with the option and variable that change it. A port
    in use has an exit code of its own (5); the others are usage errors (2)."""
    if exc.code == "port_in_use":
        hint = f"choose another with --port or {_variable('port')}"
        return CLIError(exc.code, f"{exc}; {hint}", EXIT_PORT_IN_USE)
    if exc.code == "permission_denied":
        which = "a port above 1023" if exc.port < 1024 else "another"
        hint = f"choose {which} with --port or {_variable('port')}"
    else:
        hint = f"choose another with --host or {_variable('host')}"
    return CLIError(exc.code, f"{exc}; {hint}", EXIT_USAGE)


def _variable(field: str) -> str:
    """The environment variable of a setting, from the settings' one codec (the CLI names none itself)."""
    from jwtkit.service._config import _ENVIRONMENT

    return next(var.name for var in _ENVIRONMENT if var.field == field)


def _server_settings(**options: Any) -> ServerSettings:
    """The server's settings from the environment, with the options the user gave (not None) winning."""
    from jwtkit.service._config import ServerSettings

    return ServerSettings.from_env(**{name: value for name, value in options.items() if value is not None})


# --- user ------------------------------------------------------------------------------------------------

user_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        data = sys.stdin.buffer.read(PASSWORD_MAX_BYTES + 1)
        if len(data) > PASSWORD_MAX_BYTES:
            raise CLIError("usage", "the password on stdin is too long")
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CLIError("usage", "the password on stdin is not UTF-8") from None
        return text.splitlines()[0] if text.strip("\r\n") else ""
    if not sys.stdin.isatty():
        raise CLIError("usage", "no terminal to ask for the password: pass --password-stdin")
    first = getpass.getpass("Password: ")
    if first != getpass.getpass("Again: "):
        raise CLIError("usage", "the two passwords differ")
    return first


@user_app.command("add")
def user_add(
    name: Annotated[str, typer.Argument(help="User name.")],
    email: Annotated[str | None, typer.Option("--email", help="Email address.")] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (first line).")
    ] = False,
    verified: Annotated[bool, typer.Option("--verified", help="Mark the email as verified.")] = False,
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Create an account."""
    out.use_json(json_output)
    password = _read_password(password_stdin)
    if not password:
        raise CLIError("usage", "the password is empty")

    async def work(service: AuthService) -> User:
        return await service.register(name, password, email=email, verified=verified)

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json(_user_json(user))
    else:
        sys.stdout.write(terminal_safe(f"created user {user.username} (id {user.id})") + "\n")


@user_app.command("list")
def user_list(store: StoreOption = None, db: DbOption = None, json_output: JsonFlag = False) -> None:
    """List accounts."""
    out.use_json(json_output)

    async def work(service: AuthService) -> list[User]:
        return await service.list_users()

    users = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json([_user_json(user) for user in users])
        return
    table = _table("username", "email", "verified", "disabled", "roles", "created", "id")
    for user in users:
        table.add_row(
            _cell(user.username),
            _cell(user.email or ""),
            "yes" if user.verified else "no",
            "yes" if user.disabled else "no",
            _cell(" ".join(user.roles)),
            _when(user.created),
            _cell(user.id),
        )
    out.console.print(table)


@user_app.command("roles")
def user_roles(
    name: Annotated[str, typer.Argument(help="User name.")],
    action: Annotated[str | None, typer.Argument(help="add or remove (none: show the roles).",
                                                 show_default=False)] = None,
    roles: Annotated[list[str] | None, typer.Argument(help="Role names.", show_default=False)] = None,
    end_sessions: Annotated[bool, typer.Option(
        "--end-sessions", help="End every session of the user now, instead of at each session's next "
                               "refresh (within the access-token lifetime).")] = False,
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Show, add or remove an account's roles; jwtkit serve puts them in its access tokens (claim roles)."""
    out.use_json(json_output)
    if action not in (None, "add", "remove"):
        raise CLIError("usage", f"the action is add or remove, not {action!r}")
    if action is not None and not roles:
        raise CLIError("usage", f"name at least one role to {action}")
    if action is None and (roles or end_sessions):
        raise CLIError("usage", "roles and --end-sessions go with add or remove")

    async def work(service: AuthService) -> tuple[User, int]:
        user = await _user(service, name)
        if action is None:
            return user, service.config.access_ttl
        from jwtkit.service import normalize_role

        current = set(user.roles)
        try:
            changed = {normalize_role(role) for role in roles or ()}
        except ValueError as exc:
            raise CLIError("invalid_role", str(exc)) from None
        wanted = current | changed if action == "add" else current - changed
        return await service.set_roles(user.id, sorted(wanted), end_sessions=end_sessions), \
            service.config.access_ttl

    user, access_ttl = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json(_user_json(user))
        return
    shown = " ".join(user.roles) or "(none)"
    sys.stdout.write(terminal_safe(f"roles of {user.username}: {shown}") + "\n")
    if action is not None:
        when = "now: every session of the user ended" if end_sessions else (
            f"at each session's next refresh, within {access_ttl} s (the access-token lifetime); "
            "--end-sessions signs the user out now")
        sys.stderr.write(f"new tokens carry them {when}\n")


def _set_disabled(name: str, disabled: bool, store: str | None, db: str | None) -> None:
    async def work(service: AuthService) -> User:
        user = await _user(service, name)
        return await service.set_disabled(user.id, disabled)

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json(_user_json(user))
    else:
        sys.stdout.write(
            terminal_safe(f"{'disabled' if user.disabled else 'enabled'} user {user.username}") + "\n"
        )


@user_app.command("disable")
def user_disable(
    name: Annotated[str, typer.Argument(help="User name.")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Disable an account: it can no longer log in, and every session of it ends at once."""
    out.use_json(json_output)
    _set_disabled(name, True, store, db)


@user_app.command("enable")
def user_enable(
    name: Annotated[str, typer.Argument(help="User name.")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Enable a disabled account again (the sessions that disabling ended stay ended)."""
    out.use_json(json_output)
    _set_disabled(name, False, store, db)


def _confirm(question: str) -> bool:
    """Ask on stderr (stdout stays for results), read the answer from the terminal on stdin; only y or yes
    (any case) says yes, and the end of input says no."""
    sys.stderr.write(terminal_safe(question) + " [y/N]: ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


@user_app.command("delete")
def user_delete(
    name: Annotated[str, typer.Argument(help="User name.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Delete an account: every session of the user ends, then the account is removed."""
    out.use_json(json_output)
    if not yes and not sys.stdin.isatty():
        raise CLIError("usage", f"deleting {name} needs confirmation: pass --yes (stdin is not a terminal)")

    async def work(service: AuthService) -> User:
        user = await _user(service, name)
        if not yes and not _confirm(f"Delete user {user.username} and end every session of theirs?"):
            raise CLIError("aborted", f"user {user.username} was not deleted", EXIT_INVALID)
        return await service.delete_user(user.id)

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json({"user": user.username, "id": user.id, "deleted": True})
    else:
        sys.stdout.write(terminal_safe(f"deleted user {user.username} and ended their sessions") + "\n")


@user_app.command("passwd")
def user_passwd(
    name: Annotated[str, typer.Argument(help="User name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the new password from stdin (first line).")
    ] = False,
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Set a new password for a user; every session of the user ends (a password reset)."""
    out.use_json(json_output)
    if not password_stdin and not sys.stdin.isatty():
        raise CLIError("usage", "no terminal to ask for the password: pass --password-stdin")

    async def work(service: AuthService) -> User:
        user = await _user(service, name)  # before asking: no password typed for a user that is not there
        password = _read_password(password_stdin)
        if not password:
            raise CLIError("usage", "the password is empty")
        return await service.set_password(user.id, password)

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json({**_user_json(user), "sessions_ended": True})
    else:
        sys.stdout.write(
            terminal_safe(f"set a new password for {user.username} and ended their sessions") + "\n"
        )


@user_app.command("verify")
def user_verify(
    name: Annotated[str, typer.Argument(help="User name.")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Mark a user's email address as verified (the user needs one)."""
    out.use_json(json_output)

    async def work(service: AuthService) -> User:
        user = await _user(service, name)
        return await service.mark_verified(user.id)

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json(_user_json(user))
    else:
        sys.stdout.write(terminal_safe(f"marked the email address of {user.username} verified") + "\n")


# --- sessions --------------------------------------------------------------------------------------------

sessions_app = typer.Typer(help="List and revoke login sessions.", no_args_is_help=True)


@sessions_app.command("list")
def sessions_list(
    name: Annotated[str, typer.Argument(help="User name.")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """A user's active sessions, newest first."""
    out.use_json(json_output)

    async def work(service: AuthService) -> list[Session]:
        user = await _user(service, name)
        return await service.list_sessions(user.id)

    sessions = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json([_session_json(session) for session in sessions])
        return
    table = _table("sid", "created", "last used", "expires", "ip", "user agent")
    for session in sessions:
        table.add_row(
            _cell(session.sid),
            _when(session.created),
            _when(session.last_used),
            _when(session.expires),
            _cell(session.ip),
            _cell(session.user_agent),
        )
    out.console.print(table)


@sessions_app.command("revoke")
def sessions_revoke(
    sid: Annotated[str, typer.Argument(help="Session id (see sessions list).")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Revoke one session: its access and refresh tokens stop working at once."""
    out.use_json(json_output)

    async def work(service: AuthService) -> bool:
        session = await service.store.get_session(sid)
        if session is None or session.revoked:
            return False
        return await service.revoke_session(session.user_id, sid)

    revoked = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json({"sid": sid, "revoked": revoked})
    elif revoked:
        sys.stdout.write(f"revoked session {sid}\n")
    else:
        raise CLIError("session_not_found", f"no active session {sid}", EXIT_REFUSED)


@sessions_app.command("revoke-all")
def sessions_revoke_all(
    name: Annotated[str, typer.Argument(help="User name.")],
    store: StoreOption = None,
    db: DbOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Log a user out everywhere: every session ends."""
    out.use_json(json_output)

    async def work(service: AuthService) -> User:
        user = await _user(service, name)
        await service.logout_all(user.id)
        return user

    user = _run(_settings(store, users_path=db), work)
    if out.json:
        out.emit_json({"user": user.username, "revoked_all": True})
    else:
        sys.stdout.write(terminal_safe(f"revoked every session of {user.username}") + "\n")


# --- keys ------------------------------------------------------------------------------------------------

keys_app = typer.Typer(help="Signing keys of the server.", no_args_is_help=True)


KeyFileOption = Annotated[str | None, typer.Option("--key-file", help="The server's key file.")]
RetireAfterOption = Annotated[float | None, typer.Option(
    "--retire-after", min=0, show_default=False,
    help="Seconds a key keeps verifying once it stops signing (default: the refresh-token lifetime, "
         "the longest-lived token it signed).")]


def _key_file(key_file: str | None, what: str) -> tuple[Settings, Path]:
    settings = _settings(None, key_path=key_file)
    if settings.secret is not None:
        raise CLIError("usage",
                       f"JWT_SECRET is set: the server signs with it, so there is no key file to {what}")
    return settings, Path(settings.key_path)


def _stored_ring(store: str | None, key_file: str | None, what: str) -> Settings | None:
    """The settings when the keys live in the shared store (``--store`` or the environment), else None (the
    key file). A ring in the store without its key-encryption key is the service's one-line error."""
    from jwtkit.service._build import key_source

    settings = _settings(store, key_path=key_file)
    if settings.secret is not None:
        raise CLIError("usage",
                       f"JWT_SECRET is set: the server signs with it, so there is no key ring to {what}")
    if key_source(settings) != "store":
        return None
    if key_file is not None:
        raise CLIError("usage", f"the keys live in the store {settings.store_url}: give --store or "
                                "--key-file, not both")
    return settings


def _in_store(settings: Settings, work: Callable[[Any, bytes], Awaitable[T]]) -> T:
    """Run ``work(store, key_encryption_key)`` on the opened shared store."""
    from jwtkit.store import open_store

    kek = settings.key_encryption_key
    assert kek is not None  # key_source said "store"

    async def go() -> T:
        async with open_store(settings.store_url) as opened:
            return await work(opened, kek)

    return asyncio.run(go())


def _when_or_dash(timestamp: float | None) -> str:
    return "-" if timestamp is None else _when(timestamp)


@keys_app.command("rotate")
def keys_rotate(
    alg: Annotated[
        str | None, typer.Option("--alg", help="Algorithm of the new key (default: the current).")
    ] = None,
    activate_in: Annotated[float | None, typer.Option(
        "--activate-in", min=0, show_default=False,
        help="Seconds until the new key signs; until then it is published and verifies (default: a little "
             "longer than others may cache the server's JWKS).")] = None,
    now: Annotated[bool, typer.Option(
        "--now", help="Sign with the new key at once: no server runs yet, or nobody caches its JWKS.",
    )] = False,
    retire_after: RetireAfterOption = None,
    key_file: KeyFileOption = None,
    store: StoreOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Add a new signing key, published before it signs; older keys keep verifying until their tokens have
    expired. Running servers follow the key file, or the ring in a shared store: no restart."""
    out.use_json(json_output)
    from jwtkit.service._keyring import PUBLISH_AHEAD, KeyRing

    check_alg(alg)
    if now and activate_in is not None:
        raise CLIError("usage", "give --now or --activate-in, not both")
    shared = _stored_ring(store, key_file, "rotate")
    if shared is not None:
        _rotate_in_store(shared, alg, activate_in, now, retire_after)
        return
    settings, path = _key_file(key_file, "rotate")
    # A file that does not exist yet was never published: its first key can sign at once.
    delay = 0.0 if now or not path.exists() else (PUBLISH_AHEAD if activate_in is None else activate_in)
    retire = float(settings.config.refresh_ttl) if retire_after is None else retire_after
    when = time.time()
    ring = KeyRing.rotate(path, alg=alg, retire_after=retire, activate_in=delay, now=when)
    active = ring.active
    listed = KeyRing.list_keys(path, now=when)
    new = next(info for info in listed if info.kid == active.kid)
    starts = when if new.active_from is None else new.active_from
    before = KeyRing.load(path, now=starts - 0.001).active.kid  # the key that signs until then
    previous = next((info for info in listed if info.kid == before and info is not new), None)
    place = str(settings.key_path)
    _report_rotation(ring, {"file": place}, f"in {place}", starts, when, previous)


def _rotate_in_store(settings: Settings, alg: str | None, activate_in: float | None, now: bool,
                     retire_after: float | None) -> None:
    from jwtkit.service._keyring import PUBLISH_AHEAD
    from jwtkit.service._keyring_store import list_stored_keys, rotate_stored_ring

    retire = float(settings.config.refresh_ttl) if retire_after is None else retire_after
    when = time.time()

    async def work(store: Any, kek: bytes) -> tuple[Any, list[Any], bool]:
        existed = bool(await list_stored_keys(store, kek, now=when))
        delay = 0.0 if now or not existed else (PUBLISH_AHEAD if activate_in is None else activate_in)
        ring = await rotate_stored_ring(store, kek, alg=alg, retire_after=retire, activate_in=delay, now=when)
        return ring, await list_stored_keys(store, kek, now=when), existed

    ring, listed, _ = _in_store(settings, work)
    active = ring.active
    new = next(info for info in listed if info.kid == active.kid)
    starts = when if new.active_from is None else new.active_from
    previous = next((info for info in listed if info.state == "active" and info is not new), None)
    if previous is None and starts <= when:
        previous = next((info for info in listed if info.retired_at == starts and info is not new), None)
    where = settings.store_url
    _report_rotation(ring, {"store": where}, f"in the key ring of {where}", starts, when, previous)


def _report_rotation(ring: Any, place: dict[str, str], where: str, starts: float, when: float,
                     previous: Any) -> None:
    """What ``keys rotate`` says about the new key (``ring.active``), for a key file and a store's ring alike:
    when it signs, and until when the key it succeeds still verifies."""
    from jwtkit.service._keyring import CHECK_EVERY

    active = ring.active
    if out.json:
        out.emit_json({
            "kid": active.kid, "alg": active.alg, **place, "jwks": ring.jwks(),
            "active_from": starts, "seen_within": CHECK_EVERY,
            "previous": None if previous is None else {"kid": previous.kid,
                                                        "verify_until": previous.verify_until},
        })
        return
    lines = [f"new key {active.kid} ({active.alg}) {where}"]
    if starts <= when:
        lines.append(f"it signs now: running servers use it within {CHECK_EVERY:g} s")
    else:
        lines.append(f"published now: running servers verify it (and list it in /.well-known/jwks.json when "
                     f"it is a public key) within {CHECK_EVERY:g} s")
        lines.append(f"it signs from {_when(starts)} (in {starts - when:.0f} s): running servers use it from "
                     "then on, without a restart")
    if previous is not None and previous.verify_until is not None:
        lines.append(f"the key it succeeds, {previous.kid}, verifies until {_when(previous.verify_until)}")
    sys.stdout.write(terminal_safe("\n".join(lines)) + "\n")


@keys_app.command("list")
def keys_list(
    key_file: KeyFileOption = None, store: StoreOption = None, json_output: JsonFlag = False
) -> None:
    """The keys of the key file (or of the shared store's ring), newest first: what each does now (next,
    active, retiring, retired)."""
    out.use_json(json_output)
    from jwtkit.service._keyring import KeyRing
    from jwtkit.service._keyring_store import list_stored_keys

    shared = _stored_ring(store, key_file, "list")
    if shared is not None:
        listed = _in_store(shared, lambda opened, kek: list_stored_keys(opened, kek))
    else:
        _, path = _key_file(key_file, "list")
        listed = KeyRing.list_keys(path)
    if out.json:
        out.emit_json([{"kid": info.kid, "alg": info.alg, "state": info.state, "published": info.published,
                        "created_at": info.created_at, "active_from": info.active_from,
                        "retired_at": info.retired_at, "verify_until": info.verify_until}
                       for info in listed])
        return
    table = _table("kid", "alg", "state", "in JWKS", "created", "signs from", "retired", "verifies until")
    for info in listed:
        table.add_row(
            _cell(info.kid or ""), info.alg, info.state,
            "yes" if info.published and info.state != "retired" else "no",
            _when_or_dash(info.created_at), _when_or_dash(info.active_from), _when_or_dash(info.retired_at),
            _when_or_dash(info.verify_until),
        )
    out.console.print(table)


@keys_app.command("prune")
def keys_prune(
    retire_after: RetireAfterOption = None, key_file: KeyFileOption = None, store: StoreOption = None,
    json_output: JsonFlag = False,
) -> None:
    """Drop the retired keys (their retire window has ended) from the key file or the shared store's ring."""
    out.use_json(json_output)
    from jwtkit.service._keyring import KeyRing
    from jwtkit.service._keyring_store import prune_stored_ring

    shared = _stored_ring(store, key_file, "prune")
    if shared is not None:
        retire = float(shared.config.refresh_ttl) if retire_after is None else retire_after
        dropped = _in_store(shared, lambda opened, kek: prune_stored_ring(opened, kek, retire_after=retire))
        where = f"the key ring of {shared.store_url}"
        if out.json:
            out.emit_json({"store": shared.store_url, "dropped": dropped})
        elif dropped:
            sys.stdout.write(terminal_safe(f"dropped {len(dropped)} retired keys from {where}: "
                                           f"{', '.join(dropped)}") + "\n")
        else:
            sys.stdout.write(terminal_safe(f"no retired key in {where}") + "\n")
        return
    settings, path = _key_file(key_file, "prune")
    retire = float(settings.config.refresh_ttl) if retire_after is None else retire_after
    dropped = KeyRing.prune(path, retire_after=retire)
    if out.json:
        out.emit_json({"file": str(settings.key_path), "dropped": dropped})
    elif dropped:
        sys.stdout.write(terminal_safe(f"dropped {len(dropped)} retired keys from {settings.key_path}: "
                                       f"{', '.join(dropped)}") + "\n")
    else:
        sys.stdout.write(terminal_safe(f"no retired key in {settings.key_path}") + "\n")


@keys_app.command("import")
def keys_import(
    key_file: KeyFileOption = None, store: StoreOption = None, json_output: JsonFlag = False
) -> None:
    """Move the key file's keys, with their schedule, into the shared store's key ring (an empty store only):
    every node then signs and verifies with them, and tokens they signed stay valid."""
    out.use_json(json_output)
    from jwtkit.service._keyring_store import import_key_file

    settings = _settings(store)
    shared = _stored_ring(store, None, "import into")
    if shared is None:
        raise CLIError("usage", f"the store {settings.store_url} holds no shared key ring: give --store "
                                "redis://... or postgresql://...")
    path = Path(key_file) if key_file is not None else Path(settings.key_path)
    listed = _in_store(shared, lambda opened, kek: import_key_file(opened, kek, path))
    if out.json:
        out.emit_json({"file": str(path), "store": shared.store_url, "kids": [info.kid for info in listed]})
        return
    sys.stdout.write(terminal_safe(f"imported {len(listed)} keys from {path} into the key ring of "
                                   f"{shared.store_url}; the file is no longer read") + "\n")


# --- db --------------------------------------------------------------------------------------------------

db_app = typer.Typer(help="The databases' schemas.", no_args_is_help=True)


@db_app.command("upgrade")
def db_upgrade(store: StoreOption = None, db: DbOption = None, json_output: JsonFlag = False) -> None:
    """Bring the store's and the accounts database's schemas up to this jwtkit, and stop.

    Servers do the same when they open (idempotent, one node at a time under a lock); this command is for
    operators who apply schema changes themselves, before starting the new release. A schema newer than
    this jwtkit is refused, never rewritten.
    """
    out.use_json(json_output)
    settings = _settings(store, users_path=db)

    async def work(service: AuthService) -> None:
        return None  # opening the service applied both schemas

    from jwtkit.store._common import redact_url

    _run(settings, work)
    shown = {"store": redact_url(settings.store_url), "accounts": redact_url(settings.users_path)}
    if out.json:
        out.emit_json({**shown, "upgraded": True})
        return
    sys.stdout.write(terminal_safe(f"schemas are up to date: store {shown['store']}, accounts "
                                   f"{shown['accounts']}") + "\n")


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)
    app.add_typer(user_app, name="user")
    app.add_typer(sessions_app, name="sessions")
    app.add_typer(keys_app, name="keys")
    app.add_typer(db_app, name="db")
