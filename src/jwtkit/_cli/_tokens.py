"""Token commands: ``secret``, ``keygen``, ``encode``, ``decode`` and ``verify``. They need only the core."""

from __future__ import annotations

import base64
import json
import re
import secrets
import sys
import time
from typing import Annotated, Any

import typer
from rich.text import Text

from jwtkit import JWTError, Key, KeySet, decode, decode_unverified, encode

from ._inspect import CLAIM_NOTES, inspect_token
from ._keyfiles import (
    jwk_to_pem,
    load_jwks,
    load_key_file,
    password_from_env,
    read_limited,
    secret_from_env,
    write_private_file,
)
from ._output import EXIT_INVALID, CLIError, out, terminal_safe

__all__ = ["JsonFlag", "check_alg", "register"]

JsonFlag = Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")]

ALGORITHMS = (
    "HS256",
    "HS384",
    "HS512",
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
    "Ed25519",
    "ML-DSA-44",
    "ML-DSA-65",
    "ML-DSA-87",
)
KEYGEN_ALGORITHMS = (
    "ES256",
    "ES384",
    "ES512",
    "RS256",
    "PS256",
    "EdDSA",
    "Ed25519",
    "ML-DSA-44",
    "ML-DSA-65",
    "ML-DSA-87",
    "HS256",
    "HS384",
    "HS512",
)
TOKEN_MAX_BYTES = 64 * 1024  # far above decode's 8 KiB default, so the core's own too_large check speaks
CLAIMS_MAX_BYTES = 1024 * 1024

# The colours of the tutorial's picture (and jwt.io): header red, payload purple, signature blue.
HEADER_STYLE = "red"
PAYLOAD_STYLE = "magenta"
SIGNATURE_STYLE = "cyan"

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """``90``, ``90s``, ``15m``, ``2h``, ``7d`` as seconds."""
    match = _DURATION.match(text.strip())
    if match is None or int(match.group(1)) == 0:
        raise CLIError("usage", f"bad duration {text!r}: use a positive number with s, m, h or d (e.g. 15m)")
    return int(match.group(1)) * _UNITS[match.group(2)]


def check_alg(alg: str | None) -> str | None:
    if alg is not None and alg not in ALGORITHMS:
        raise CLIError("usage", f"unknown algorithm {alg!r}; one of {', '.join(ALGORITHMS)}")
    return alg


def read_token(token: str | None) -> str:
    """The token from the argument, or from stdin for ``-`` or nothing; ``Bearer `` is dropped."""
    if token is None or token == "-":
        if sys.stdin.isatty():
            raise CLIError("usage", "no token given: pass it as an argument or on stdin")
        data = sys.stdin.buffer.read(TOKEN_MAX_BYTES + 1)
        if len(data) > TOKEN_MAX_BYTES:
            raise CLIError(
                "too_large", f"the token on stdin is longer than {TOKEN_MAX_BYTES} bytes", EXIT_INVALID
            )
        try:
            token = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CLIError("malformed", "the token on stdin is not UTF-8 text", EXIT_INVALID) from None
    token = token.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    if not token:
        raise CLIError("usage", "the token is empty")
    return token


def _json_text(value: Any) -> str:
    """Pretty JSON for a terminal; strings from the token cannot smuggle in control sequences."""
    return terminal_safe(json.dumps(value, indent=2, ensure_ascii=False))


def _token_error(exc: JWTError) -> CLIError:
    return CLIError(exc.code, str(exc), EXIT_INVALID)


# --- secret ----------------------------------------------------------------------------------------------


def secret_command(
    nbytes: Annotated[int, typer.Option("--bytes", min=16, max=1024, help="How many random bytes.")] = 32,
    encoding: Annotated[str, typer.Option("--encoding", help="hex or base64url.")] = "hex",
    json_output: JsonFlag = False,
) -> None:
    """Print a new random secret (for JWT_SECRET; 32 bytes suit HS256, 64 suit HS512)."""
    out.use_json(json_output)
    raw = secrets.token_bytes(nbytes)
    if encoding == "hex":
        value = raw.hex()
    elif encoding == "base64url":
        value = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
    else:
        raise CLIError("usage", f"unknown encoding {encoding!r}: hex or base64url")
    if out.json:
        out.emit_json({"secret": value, "bytes": nbytes, "encoding": encoding})
    else:
        sys.stdout.write(value + "\n")


# --- keygen ----------------------------------------------------------------------------------------------


def keygen_command(
    alg: Annotated[
        str, typer.Option("--alg", help="ES256, RS256, PS256, EdDSA, ML-DSA-65 or HS256 (and kin).")
    ] = "ES256",
    kid: Annotated[
        str | None, typer.Option("--kid", help="Key id; default: the RFC 7638 thumbprint.")
    ] = None,
    key_format: Annotated[str, typer.Option("--format", help="jwk or pem (pem: not for HS*).")] = "jwk",
    out_path: Annotated[
        str | None, typer.Option("--out", help="Private key file (mode 0600); default jwtkit-key.jwk/.pem.")
    ] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="Encrypt the PEM with the password in this variable.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    json_output: JsonFlag = False,
) -> None:
    """Generate a key pair: write the private key to a 0600 file and print the public JWK."""
    out.use_json(json_output)
    if alg not in KEYGEN_ALGORITHMS:
        raise CLIError("usage", f"keygen supports {', '.join(KEYGEN_ALGORITHMS)}, not {alg!r}")
    if key_format not in ("jwk", "pem"):
        raise CLIError("usage", f"unknown format {key_format!r}: jwk or pem")
    if key_format == "pem" and alg.startswith("HS"):
        raise CLIError("usage", "an HMAC secret has no PEM form: use --format jwk")
    if password_env is not None and key_format != "pem":
        raise CLIError("usage", "--password-env applies to --format pem only")
    password = password_from_env(password_env)
    path = out_path or f"jwtkit-key.{key_format}"

    key = Key.generate(alg, kid=kid)
    private_jwk = dict(key.to_jwk(private=True))
    if kid is None:
        # RFC 7638 thumbprint as the kid: stable, and derived from the public part only.
        private_jwk["kid"] = key.thumbprint()
        key = Key.from_jwk(private_jwk)
        private_jwk = dict(key.to_jwk(private=True))
    if key_format == "pem":
        data = jwk_to_pem(private_jwk, password)
    else:
        data = (json.dumps(private_jwk, indent=2) + "\n").encode()
    write_private_file(path, data, force=force)

    public_jwk = None if alg.startswith("HS") else dict(key.public().to_jwk())
    if out.json:
        out.emit_json(
            {"alg": key.alg, "kid": key.kid, "file": path, "format": key_format, "public_jwk": public_jwk}
        )
        return
    out.note(f"wrote the private key to {path} (mode 0600)")
    if public_jwk is None:
        out.note(f"{alg} is symmetric: there is no public key; keep {path} secret")
    else:
        sys.stdout.write(json.dumps(public_jwk, indent=2) + "\n")


# --- encode ----------------------------------------------------------------------------------------------


def _claims_from_pairs(pairs: list[str]) -> dict[str, Any]:
    """``name=text`` sets a string; ``name:=json`` a JSON value (numbers, lists, true), as httpie does."""
    claims: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise CLIError("usage", f"bad claim {pair!r}: use name=text or name:=json")
        if name.endswith(":"):
            name = name[:-1]
            try:
                claims[name] = json.loads(raw)
            except (ValueError, RecursionError):
                raise CLIError("json", f"claim {name}: {raw!r} is not valid JSON") from None
        else:
            claims[name] = raw
        if not name:
            raise CLIError("usage", f"bad claim {pair!r}: empty name")
    return claims


def _claims_from_file(source: str) -> dict[str, Any]:
    if source == "-":
        data = sys.stdin.buffer.read(CLAIMS_MAX_BYTES + 1)
        what = "the claims on stdin"
        if len(data) > CLAIMS_MAX_BYTES:
            raise CLIError("json", f"{what} are larger than {CLAIMS_MAX_BYTES} bytes")
    else:
        data = read_limited(source, CLAIMS_MAX_BYTES, "claims file")
        what = f"claims file {source}"
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise CLIError("json", f"{what}: not valid JSON") from None
    if not isinstance(value, dict):
        raise CLIError("json", f"{what}: must be a JSON object")
    return value


def _signing_key(
    key_file: str | None, secret_env: str | None, alg: str | None, password_env: str | None
) -> Key:
    if (key_file is None) == (secret_env is None):
        raise CLIError("usage", "give exactly one of --key FILE or --secret-env VAR")
    if key_file is None:
        return secret_from_env(secret_env or "", alg)
    loaded = load_key_file(key_file, alg=alg, password=password_from_env(password_env))
    if isinstance(loaded, KeySet):
        raise CLIError("key", f"{key_file} is a key set: give one private key to sign with")
    if not loaded.is_private:
        raise CLIError("key", f"{key_file} holds a public key: signing needs the private key")
    if alg is not None and loaded.alg != alg:
        raise CLIError("key", f"{key_file} is bound to {loaded.alg}, not {alg}")
    return loaded


def encode_command(
    pairs: Annotated[
        list[str] | None, typer.Argument(help="Claims as name=text or name:=json (numbers, lists, true).")
    ] = None,
    claims_file: Annotated[
        str | None, typer.Option("--claims", help="A JSON file of claims, or - for stdin.")
    ] = None,
    key_file: Annotated[str | None, typer.Option("--key", help="Private key file: PEM or JWK.")] = None,
    secret_env: Annotated[
        str | None, typer.Option("--secret-env", help="HMAC secret from this env var.")
    ] = None,
    alg: Annotated[
        str | None, typer.Option("--alg", help="Algorithm (needed for PEM; HS256 for secrets).")
    ] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="PEM password from this env var.")
    ] = None,
    exp: Annotated[str | None, typer.Option("--exp", help="Lifetime, e.g. 15m, 1h, 7d: sets exp.")] = None,
    iss: Annotated[str | None, typer.Option("--iss", help="Issuer claim.")] = None,
    aud: Annotated[str | None, typer.Option("--aud", help="Audience claim.")] = None,
    sub: Annotated[str | None, typer.Option("--sub", help="Subject claim.")] = None,
    typ: Annotated[str, typer.Option("--typ", help="The header's typ.")] = "JWT",
    json_output: JsonFlag = False,
) -> None:
    """Sign claims into a token (adds iat; warns when there is no exp)."""
    out.use_json(json_output)
    check_alg(alg)
    claims: dict[str, Any] = {}
    if claims_file is not None:
        claims.update(_claims_from_file(claims_file))
    claims.update(_claims_from_pairs(pairs or []))
    now = int(time.time())
    claims.setdefault("iat", now)
    if exp is not None:
        claims["exp"] = now + parse_duration(exp)
    for name, value in (("iss", iss), ("aud", aud), ("sub", sub)):
        if value is not None:
            claims[name] = value
    key = _signing_key(key_file, secret_env, alg, password_env)
    try:
        token = encode(claims, key, typ=typ or None)
    except JWTError as exc:
        raise CLIError(exc.code, str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise CLIError("json", f"the claims cannot be encoded as JSON ({type(exc).__name__})") from None
    if "exp" not in claims:
        out.note("warning: no exp: this token never expires (pass --exp 15m)")
    if out.json:
        out.emit_json(
            {"token": token, "header": {"alg": key.alg, "typ": typ, "kid": key.kid}, "claims": claims}
        )
    else:
        sys.stdout.write(token + "\n")


# --- decode ----------------------------------------------------------------------------------------------


def decode_command(
    token: Annotated[str | None, typer.Argument(help="The token, or - (default) to read stdin.")] = None,
    json_output: JsonFlag = False,
) -> None:
    """Show a token like a debugger, WITHOUT verifying it: parts, header, claims, dates, warnings."""
    out.use_json(json_output)
    text = read_token(token)
    parts = text.split(".")
    unsecured = len(parts) == 3 and parts[0] != "" and parts[2] == ""
    try:
        # An unsecured JWS (RFC 7515 §A.5, alg "none") has an empty signature, which the core refuses even
        # unverified. A debugger should still show what such a token claims, so the parts are read with a
        # one-byte stand-in signature; the token is reported as unsigned and can never verify.
        header, claims = decode_unverified(f"{parts[0]}.{parts[1]}.AA" if unsecured else text)
    except JWTError as exc:
        raise _token_error(exc) from None
    now = time.time()
    report = inspect_token(header, claims, now=now)
    if unsecured:
        report.warnings.insert(0, "empty signature: an unsigned token, which nothing should accept")
    if out.json:
        out.emit_json(
            {
                "verified": False,
                "header": header,
                "claims": claims,
                "signature": parts[2],
                "dates": {
                    d.claim: {"value": d.value, "utc": d.utc, "relative": d.relative} for d in report.dates
                },
                "warnings": report.warnings,
            }
        )
        return

    console = out.console
    console.print(Text("Token (not verified; use jwtkit verify to check it)", style="bold"))
    coloured = Text()
    coloured.append(parts[0], style=HEADER_STYLE)
    coloured.append(".")
    coloured.append(parts[1], style=PAYLOAD_STYLE)
    coloured.append(".")
    coloured.append(parts[2], style=SIGNATURE_STYLE)
    console.print(coloured)
    console.print()
    console.print(Text("Header", style=f"bold {HEADER_STYLE}"))
    console.print(Text(_json_text(header), style=HEADER_STYLE))
    console.print(Text("Claims", style=f"bold {PAYLOAD_STYLE}"))
    console.print(Text(_json_text(claims), style=PAYLOAD_STYLE))
    explained = [name for name in claims if name in CLAIM_NOTES]
    if explained:
        console.print()
        for name in explained:
            console.print(Text(f"  {name:4} {CLAIM_NOTES[name]}"))
    if report.dates:
        console.print()
        console.print(Text("Dates", style="bold"))
        for date in report.dates:
            console.print(Text(f"  {date.claim:4} {date.utc}  ({date.relative})"))
    console.print()
    signature = parts[2]
    console.print(
        Text(f"Signature: {len(signature)} base64url characters, not verified", style=SIGNATURE_STYLE)
    )
    if report.warnings:
        console.print()
        for warning in report.warnings:
            console.print(Text(f"warning: {terminal_safe(warning)}", style="yellow"))


# --- verify ----------------------------------------------------------------------------------------------


def verify_command(
    token: Annotated[str | None, typer.Argument(help="The token, or - (default) to read stdin.")] = None,
    key_file: Annotated[
        str | None, typer.Option("--key", help="Key file: PEM (with --alg) or JWK/JWKS.")
    ] = None,
    secret_env: Annotated[
        str | None, typer.Option("--secret-env", help="HMAC secret from this env var.")
    ] = None,
    jwks: Annotated[str | None, typer.Option("--jwks", help="JWKS from an https URL or a file.")] = None,
    alg: Annotated[
        str | None, typer.Option("--alg", help="Algorithm: needed for PEM keys; narrows others.")
    ] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="PEM password from this env var.")
    ] = None,
    iss: Annotated[str | None, typer.Option("--iss", help="Required issuer (exact match).")] = None,
    aud: Annotated[str | None, typer.Option("--aud", help="Required audience.")] = None,
    leeway: Annotated[
        int, typer.Option("--leeway", min=0, max=3600, help="Clock skew allowed, seconds.")
    ] = 0,
    json_output: JsonFlag = False,
) -> None:
    """Verify a token's signature and claims; exit 0 and print the claims, or exit 1 with the reason."""
    out.use_json(json_output)
    check_alg(alg)
    if sum(source is not None for source in (key_file, secret_env, jwks)) != 1:
        raise CLIError("usage", "give exactly one of --key FILE, --secret-env VAR or --jwks URL_OR_FILE")
    key: Key | KeySet
    if secret_env is not None:
        key = secret_from_env(secret_env, alg, thumbprint_kid=True)
    elif jwks is not None:
        key = load_jwks(jwks)
    else:
        key = load_key_file(key_file or "", alg=alg, password=password_from_env(password_env))
        if isinstance(key, Key) and key.is_private and not key.alg.startswith("HS"):
            key = key.public()
    text = read_token(token)
    try:
        claims = decode(text, key, algorithms=[alg] if alg else None, issuer=iss, audience=aud, leeway=leeway)
        header, _ = decode_unverified(text)  # already verified above; only to show the header
    except JWTError as exc:
        raise _verify_error(exc, text, key) from None
    if out.json:
        out.emit_json({"valid": True, "header": header, "claims": claims})
        return
    out.console.print(Text("valid", style="bold green"), Text(f"({header.get('alg')})"))
    out.console.print(Text(_json_text(claims), style=PAYLOAD_STYLE))


def _verify_error(exc: JWTError, token: str, key: Key | KeySet) -> CLIError:
    """The error line of a failed verify, with a hint when a key set cannot have the token's key: an HMAC
    token checked against a JWKS (which never holds secrets), or an empty JWKS (an HS256 server's)."""
    error = _token_error(exc)
    if not isinstance(key, KeySet) or exc.code not in ("key", "algorithm"):
        return error
    if any(member.is_symmetric for member in key):
        return error  # a private key set of the user's own, which may hold secrets
    try:
        token_alg = decode_unverified(token)[0].get("alg")
    except JWTError:
        return error
    if isinstance(token_alg, str) and token_alg.startswith("HS"):
        hint = (f"the token is {token_alg}, signed with an HMAC secret, and secrets are never published in "
                "a JWKS: verify it with --secret-env VAR (the secret) or --key FILE")
    elif len(key) == 0:
        hint = "the JWKS has no keys"
    else:
        return error
    return CLIError(error.code, f"{error.message}; {hint}", EXIT_INVALID)


def register(app: typer.Typer) -> None:
    app.command("secret")(secret_command)
    app.command("keygen")(keygen_command)
    app.command("encode")(encode_command)
    app.command("decode")(decode_command)
    app.command("verify")(verify_command)
