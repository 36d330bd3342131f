"""``jwtkit dpop proof``: a DPoP proof (RFC 9449) for one request, to call a DPoP-bound API with curl.

Example (docs/http.md has the whole walk)::

    jwtkit keygen --alg ES256 --out client.jwk
    curl -H "DPoP: $(jwtkit dpop proof --key client.jwk --method POST --url http://127.0.0.1:8000/auth)" \\
         -d username=alice -d password=... -H 'Accept: application/json' http://127.0.0.1:8000/auth
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from jwtkit import Key, KeySet
from jwtkit._cli._keyfiles import load_key_file, password_from_env
from jwtkit._cli._output import CLIError, out

__all__ = ["register"]

dpop_app = typer.Typer(help="DPoP (RFC 9449): proofs of possession for DPoP-bound tokens.",
                       no_args_is_help=True, rich_markup_mode=None)


@dpop_app.command("proof")
def proof_command(
    key_file: Annotated[str, typer.Option("--key", help="The client's private key: JWK, or PEM with --alg.")],
    method: Annotated[str, typer.Option("--method", help="The request's method (htm).")],
    url: Annotated[str, typer.Option("--url", help="The request's URL (htu; query and fragment dropped).")],
    token_env: Annotated[str | None, typer.Option(
        "--token-env", help="The DPoP-bound access token the request sends, from this env var (sets ath).")
    ] = None,
    nonce: Annotated[str | None, typer.Option("--nonce", help="The server's DPoP-Nonce, if it asks.")] = None,
    alg: Annotated[str | None, typer.Option("--alg", help="The algorithm of a PEM key.")] = None,
    password_env: Annotated[
        str | None, typer.Option("--password-env", help="PEM password from this env var.")
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON output.")] = False,
) -> None:
    """Print a DPoP proof for one request: the value of its DPoP header. Each proof is good once, for about
    a minute, for that method and URL (and that access token, with --token-env)."""
    from jwtkit.service._dpop import make_dpop_proof, normalize_htu

    out.use_json(json_output)
    loaded = load_key_file(key_file, alg=alg, password=password_from_env(password_env))
    key = _single(loaded, key_file)
    if key.is_symmetric or not key.can_sign:
        raise CLIError("key", f"{key_file} must hold a private asymmetric key (jwtkit keygen --alg ES256)")
    try:
        normalize_htu(url)
    except ValueError:
        raise CLIError("usage", f"--url must be an absolute http(s) URL, not {url!r}") from None
    method = method.upper()
    if not method.isalpha():
        raise CLIError("usage", f"--method must be an HTTP method, not {method!r}")
    token: str | None = None
    if token_env is not None:
        token = (os.environ.get(token_env) or "").strip()
        if not token:
            raise CLIError("usage", f"--token-env {token_env}: that variable is not set or empty")
    proof = make_dpop_proof(key, htm=method, htu=url, access_token=token, nonce=nonce)
    if out.json:
        out.emit_json({"proof": proof, "jkt": key.thumbprint(), "htm": method, "htu": url})
    else:
        sys.stdout.write(proof + "\n")


def _single(loaded: Key | KeySet, path: str) -> Key:
    if isinstance(loaded, Key):
        return loaded
    keys = [key for key in loaded if key.is_private]
    if len(keys) != 1:
        raise CLIError("key", f"{path} holds several keys: give a file with the one private key")
    return keys[0]


def register(app: typer.Typer) -> None:
    app.add_typer(dpop_app, name="dpop")
