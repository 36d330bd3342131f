"""``jwtkit secret``, ``keygen``, ``encode``, ``verify`` and ``decode --json``, run as real subprocesses."""

from __future__ import annotations

import base64
import json
import os
import stat
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from cli_support import SECRET, Runner, assert_one_line_error
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from jwtkit import Key, encode


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


# --- help and exit codes -----------------------------------------------------------------------------------


def test_help_documents_the_exit_codes(jwtkit: Runner) -> None:
    proc = jwtkit("--help")
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    assert "Exit codes: 0 ok; 1 token invalid or verification failed; 2 usage error or bad input" in text
    assert "3 store unavailable" in text
    assert "5 the port is already in use (jwtkit serve)" in text
    for command in ("secret", "keygen", "encode", "decode", "verify", "serve", "user", "sessions", "keys"):
        assert f"  {command} " in proc.stdout or f"  {command}\n" in proc.stdout


def test_unknown_command_is_one_line_usage_error(jwtkit: Runner) -> None:
    assert_one_line_error(jwtkit("frobnicate"), 2, "usage")


# --- secret ------------------------------------------------------------------------------------------------


def test_secret_defaults_to_32_random_bytes_in_hex(jwtkit: Runner) -> None:
    first, second = jwtkit("secret"), jwtkit("secret")
    assert first.returncode == 0
    value = first.stdout.strip()
    assert len(bytes.fromhex(value)) == 32
    assert value != second.stdout.strip()


def test_secret_base64url_and_json(jwtkit: Runner) -> None:
    proc = jwtkit("secret", "--bytes", "48", "--encoding", "base64url", "--json")
    assert proc.returncode == 0
    data = json.loads(proc.stdout)
    assert data["bytes"] == 48 and data["encoding"] == "base64url"
    assert "=" not in data["secret"] and "+" not in data["secret"] and "/" not in data["secret"]
    assert len(base64.urlsafe_b64decode(data["secret"] + "==")) == 48


def test_secret_refuses_too_few_bytes(jwtkit: Runner) -> None:
    assert_one_line_error(jwtkit("secret", "--bytes", "8"), 2, "usage")


# --- keygen ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["ES256", "RS256", "PS256", "EdDSA"])
def test_keygen_writes_a_0600_private_jwk_and_prints_the_public_one(
    jwtkit: Runner, tmp_path: Path, alg: str
) -> None:
    proc = jwtkit("keygen", "--alg", alg, "--out", "key.jwk")
    assert proc.returncode == 0, proc.stderr
    path = tmp_path / "key.jwk"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    private = json.loads(path.read_text())
    public = json.loads(proc.stdout)
    assert "d" in private and "d" not in public
    assert public["alg"] == alg == private["alg"]
    key = Key.from_jwk(private)
    assert key.is_private and public["kid"] == private["kid"] == key.thumbprint()
    assert "key.jwk" in proc.stderr and "0600" in proc.stderr


def test_keygen_refuses_to_overwrite_without_force(jwtkit: Runner, tmp_path: Path) -> None:
    (tmp_path / "key.jwk").write_text("precious")
    assert_one_line_error(jwtkit("keygen", "--out", "key.jwk"), 2, "file")
    assert (tmp_path / "key.jwk").read_text() == "precious"
    proc = jwtkit("keygen", "--out", "key.jwk", "--force", "--kid", "k1")
    assert proc.returncode == 0
    assert json.loads((tmp_path / "key.jwk").read_text())["kid"] == "k1"
    assert stat.S_IMODE((tmp_path / "key.jwk").stat().st_mode) == 0o600


def test_keygen_pem_and_hmac(jwtkit: Runner, tmp_path: Path) -> None:
    proc = jwtkit("keygen", "--alg", "ES256", "--format", "pem", "--out", "ec.pem", "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["format"] == "pem" and data["public_jwk"]["crv"] == "P-256"
    pem = (tmp_path / "ec.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert stat.S_IMODE((tmp_path / "ec.pem").stat().st_mode) == 0o600
    assert Key.from_pem(pem, "ES256").public().to_jwk()["x"] == data["public_jwk"]["x"]

    hmac = jwtkit("keygen", "--alg", "HS256", "--out", "hs.jwk")
    assert hmac.returncode == 0 and hmac.stdout == ""  # a secret has no public half to print
    assert json.loads((tmp_path / "hs.jwk").read_text())["kty"] == "oct"
    assert_one_line_error(jwtkit("keygen", "--alg", "HS256", "--format", "pem", "--out", "x.pem"), 2, "usage")
    assert_one_line_error(jwtkit("keygen", "--alg", "HS1", "--out", "x.jwk"), 2, "usage")


@pytest.mark.parametrize("alg", ["ML-DSA-44", "ML-DSA-65", "ML-DSA-87"])
def test_keygen_ml_dsa_jwk_and_pem(jwtkit: Runner, tmp_path: Path, alg: str) -> None:
    # RFC 9964: an AKP JWK (kty, alg, pub; priv is the 32-byte seed), kid its thumbprint over alg, kty, pub;
    # the PEM is PKCS#8 in its seed form (RFC 9881), the same 32 bytes.
    proc = jwtkit("keygen", "--alg", alg, "--out", "pq.jwk")
    assert proc.returncode == 0, proc.stderr
    private = json.loads((tmp_path / "pq.jwk").read_text())
    public = json.loads(proc.stdout)
    assert stat.S_IMODE((tmp_path / "pq.jwk").stat().st_mode) == 0o600
    assert set(private) == {"kty", "alg", "pub", "priv", "kid"}
    assert set(public) == {"kty", "alg", "pub", "kid"}
    assert (public["kty"], public["alg"]) == ("AKP", alg)
    assert len(base64.urlsafe_b64decode(private["priv"] + "=")) == 32
    assert public["kid"] == private["kid"] == Key.from_jwk(public).thumbprint()

    env = {"KEY_PASSWORD": "pem password"}
    made = jwtkit("keygen", "--alg", alg, "--format", "pem", "--out", "pq.pem",
                  "--password-env", "KEY_PASSWORD", "--json", env=env)
    assert made.returncode == 0, made.stderr
    pem = (tmp_path / "pq.pem").read_bytes()
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    loaded = Key.from_pem(pem, alg, password=b"pem password")
    assert loaded.public().to_jwk()["pub"] == json.loads(made.stdout)["public_jwk"]["pub"]
    plain = jwtkit("keygen", "--alg", alg, "--format", "pem", "--out", "plain.pem", "--json")
    seed_form = (tmp_path / "plain.pem").read_bytes()
    assert plain.returncode == 0 and seed_form.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert len(seed_form) < 200  # the 32-byte seed, not the 2560-4896 byte expanded key


def test_encode_and_verify_ml_dsa_65_with_pem_jwk_and_jwks(jwtkit: Runner, tmp_path: Path) -> None:
    assert jwtkit("keygen", "--alg", "ML-DSA-65", "--format", "pem", "--out", "pq.pem").returncode == 0
    public = jwtkit("keygen", "--alg", "ML-DSA-65", "--out", "pq.jwk").stdout
    (tmp_path / "pq.pub.jwk").write_text(public)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [json.loads(public)]}))

    by_pem = jwtkit("encode", "--key", "pq.pem", "--alg", "ML-DSA-65", "--exp", "5m", "sub=pem").stdout
    by_pem = by_pem.strip()
    checked = jwtkit("verify", by_pem, "--key", "pq.pem", "--alg", "ML-DSA-65", "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["header"] == {"alg": "ML-DSA-65", "typ": "JWT"}
    assert_one_line_error(jwtkit("verify", by_pem, "--key", "pq.pem"), 2, "key")  # a PEM names no alg
    # the key is bound to its parameter set: the PEM read as ML-DSA-44, or as EdDSA, is refused
    assert_one_line_error(jwtkit("verify", by_pem, "--key", "pq.pem", "--alg", "ML-DSA-44"), 2, "key")
    assert_one_line_error(jwtkit("verify", by_pem, "--key", "pq.pem", "--alg", "EdDSA"), 2, "key")

    by_jwk = jwtkit("encode", "--key", "pq.jwk", "--exp", "5m", "sub=jwk").stdout.strip()
    assert jwtkit("verify", by_jwk, "--key", "pq.pub.jwk").returncode == 0
    assert jwtkit("verify", by_jwk, "--jwks", "jwks.json").returncode == 0
    assert_one_line_error(jwtkit("verify", by_jwk, "--key", "pq.pub.jwk", "--alg", "ML-DSA-87"), 2, "key")
    assert_one_line_error(jwtkit("verify", by_pem, "--key", "pq.pub.jwk"), 1, "signature")  # another key
    # signing needs the private half
    assert_one_line_error(jwtkit("encode", "--key", "pq.pub.jwk", "sub=x"), 2, "key")


# --- encode and verify -------------------------------------------------------------------------------------


def test_encode_then_verify_with_a_secret(jwtkit: Runner) -> None:
    proc = jwtkit(
        "encode",
        "--secret-env",
        "JWT_TEST_SECRET",
        "--exp",
        "15m",
        "--sub",
        "alice",
        "--iss",
        "me",
        "name=Alice",
        "admin:=true",
        "level:=3",
        "zip=02134",
    )
    assert proc.returncode == 0, proc.stderr
    token = proc.stdout.strip()
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], issuer="me")  # another implementation agrees
    assert claims["sub"] == "alice" and claims["admin"] is True and claims["level"] == 3
    assert claims["zip"] == "02134"  # name=text stays a string
    assert 899 <= claims["exp"] - claims["iat"] <= 901

    verified = jwtkit("verify", token, "--secret-env", "JWT_TEST_SECRET", "--iss", "me", "--json")
    assert verified.returncode == 0, verified.stderr
    data = json.loads(verified.stdout)
    assert data["valid"] is True and data["claims"] == claims and data["header"]["alg"] == "HS256"

    human = jwtkit("verify", token, "--secret-env", "JWT_TEST_SECRET", "--iss", "me")
    assert human.returncode == 0 and human.stdout.startswith("valid (HS256)")
    assert '"sub": "alice"' in human.stdout


def test_verify_reads_the_token_from_stdin(jwtkit: Runner) -> None:
    token = pyjwt.encode({"sub": "s", "exp": int(time.time()) + 60}, SECRET, algorithm="HS256")
    proc = jwtkit("verify", "-", "--secret-env", "JWT_TEST_SECRET", stdin=f"Bearer {token}\n")
    assert proc.returncode == 0, proc.stderr


def test_encode_claims_from_file_and_stdin(jwtkit: Runner, tmp_path: Path) -> None:
    (tmp_path / "claims.json").write_text('{"sub": "from-file", "roles": ["a", "b"]}')
    from_file = jwtkit("encode", "--claims", "claims.json", "--secret-env", "JWT_TEST_SECRET", "--exp", "1h")
    assert pyjwt.decode(from_file.stdout.strip(), SECRET, algorithms=["HS256"])["roles"] == ["a", "b"]
    from_stdin = jwtkit(
        "encode",
        "--claims",
        "-",
        "--secret-env",
        "JWT_TEST_SECRET",
        "--exp",
        "1h",
        stdin='{"sub": "from-stdin"}',
    )
    assert pyjwt.decode(from_stdin.stdout.strip(), SECRET, algorithms=["HS256"])["sub"] == "from-stdin"


def test_encode_without_exp_warns(jwtkit: Runner) -> None:
    proc = jwtkit("encode", "--secret-env", "JWT_TEST_SECRET", "sub=x")
    assert proc.returncode == 0
    assert "no exp" in proc.stderr
    assert "exp" not in pyjwt.decode(
        proc.stdout.strip(), SECRET, algorithms=["HS256"], options={"require": []}
    )


def test_verify_failures_exit_1_with_the_code(jwtkit: Runner) -> None:
    now = int(time.time())
    good = pyjwt.encode({"sub": "s", "exp": now + 600, "iss": "me"}, SECRET, algorithm="HS256")
    expired = pyjwt.encode({"sub": "s", "exp": now - 172800}, SECRET, algorithm="HS256")
    other = pyjwt.encode({"sub": "s", "exp": now + 600}, SECRET + "!", algorithm="HS256")
    assert_one_line_error(jwtkit("verify", other, "--secret-env", "JWT_TEST_SECRET"), 1, "signature")
    assert_one_line_error(jwtkit("verify", expired, "--secret-env", "JWT_TEST_SECRET"), 1, "expired")
    assert_one_line_error(
        jwtkit("verify", good, "--secret-env", "JWT_TEST_SECRET", "--iss", "you"), 1, "claim"
    )
    assert jwtkit("verify", expired, "--secret-env", "JWT_TEST_SECRET", "--leeway", "100").returncode == 1
    assert jwtkit("verify", good, "--secret-env", "JWT_TEST_SECRET", "--iss", "me").returncode == 0
    json_error = jwtkit("--json", "verify", other, "--secret-env", "JWT_TEST_SECRET")
    assert json_error.returncode == 1 and json_error.stdout == ""
    assert json.loads(json_error.stderr)["error"] == "signature"


def test_verify_with_pem_jwk_and_jwks_as_keygen_writes_them(jwtkit: Runner, tmp_path: Path) -> None:
    assert jwtkit("keygen", "--alg", "ES256", "--format", "pem", "--out", "ec.pem").returncode == 0
    public = jwtkit("keygen", "--alg", "RS256", "--out", "rsa.jwk").stdout
    (tmp_path / "rsa.pub.jwk").write_text(public)
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [json.loads(public)]}))

    es = jwtkit("encode", "--key", "ec.pem", "--alg", "ES256", "--exp", "5m", "sub=pem").stdout.strip()
    assert jwtkit("verify", es, "--key", "ec.pem", "--alg", "ES256").returncode == 0
    # A PEM names no algorithm, so one must be given (RFC 8725 §3.1: the verifier fixes alg).
    assert_one_line_error(jwtkit("verify", es, "--key", "ec.pem"), 2, "key")

    rs = jwtkit("encode", "--key", "rsa.jwk", "--exp", "5m", "sub=jwk").stdout.strip()
    assert jwtkit("verify", rs, "--key", "rsa.pub.jwk").returncode == 0
    assert jwtkit("verify", rs, "--jwks", "jwks.json").returncode == 0
    assert_one_line_error(jwtkit("verify", es, "--key", "rsa.pub.jwk"), 1, "algorithm")
    # Signing needs the private half.
    assert_one_line_error(jwtkit("encode", "--key", "rsa.pub.jwk", "sub=x"), 2, "key")


def test_verify_interoperates_with_pyjwt_es256(jwtkit: Runner, tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (tmp_path / "pub.pem").write_bytes(public_pem)
    token = pyjwt.encode({"sub": "interop", "exp": int(time.time()) + 60}, private, algorithm="ES256")
    proc = jwtkit("verify", token, "--key", "pub.pem", "--alg", "ES256", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["claims"]["sub"] == "interop"


def test_jwks_url_must_be_https(jwtkit: Runner) -> None:
    token = pyjwt.encode({"sub": "s"}, SECRET, algorithm="HS256")
    assert_one_line_error(jwtkit("verify", token, "--jwks", "http://127.0.0.1:9/jwks.json"), 2, "jwks")


def test_exactly_one_key_source(jwtkit: Runner) -> None:
    token = pyjwt.encode({"sub": "s"}, SECRET, algorithm="HS256")
    assert_one_line_error(jwtkit("verify", token), 2, "usage")
    assert_one_line_error(
        jwtkit("verify", token, "--secret-env", "JWT_TEST_SECRET", "--jwks", "x"), 2, "usage"
    )


# --- bad input: one line, never a traceback ----------------------------------------------------------------


def test_bad_input_gets_one_clear_line(jwtkit: Runner, tmp_path: Path) -> None:
    assert_one_line_error(jwtkit("verify", "a.b", "--secret-env", "JWT_TEST_SECRET"), 1, "malformed")
    assert_one_line_error(jwtkit("decode", "abc.def"), 1, "malformed")
    assert_one_line_error(jwtkit("decode", "a.b.c.d.e"), 1, "malformed")
    assert_one_line_error(jwtkit("decode", "-", stdin="\xff\n"), 1, "malformed")
    assert_one_line_error(jwtkit("verify", "x.y.z", "--key", "missing.jwk"), 2, "file")
    (tmp_path / "garbage.jwk").write_text("{not json")
    assert_one_line_error(jwtkit("verify", "x.y.z", "--key", "garbage.jwk"), 2, "json")
    (tmp_path / "weird.key").write_text("hello")
    assert_one_line_error(jwtkit("verify", "x.y.z", "--key", "weird.key", "--alg", "ES256"), 2, "key")
    (tmp_path / "bad.json").write_text("[1, 2")
    assert_one_line_error(
        jwtkit("encode", "--claims", "bad.json", "--secret-env", "JWT_TEST_SECRET"), 2, "json"
    )
    assert_one_line_error(
        jwtkit("encode", "--claims", "-", "--secret-env", "JWT_TEST_SECRET", stdin="[]"), 2, "json"
    )
    assert_one_line_error(jwtkit("encode", "n:={oops", "--secret-env", "JWT_TEST_SECRET"), 2, "json")
    assert_one_line_error(jwtkit("encode", "noequals", "--secret-env", "JWT_TEST_SECRET"), 2, "usage")
    assert_one_line_error(jwtkit("encode", "--exp", "soon", "--secret-env", "JWT_TEST_SECRET"), 2, "usage")
    assert_one_line_error(jwtkit("encode", "--secret-env", "UNSET_VARIABLE_X"), 2, "env")
    assert_one_line_error(jwtkit("encode", "--secret-env", "SHORT", env={"SHORT": "tiny"}), 2, "key")


def test_wrong_or_missing_key_password(jwtkit: Runner, tmp_path: Path) -> None:
    env = {"KEY_PASSWORD": "right horse battery", "WRONG_PASSWORD": "wrong"}
    made = jwtkit(
        "keygen",
        "--alg",
        "ES256",
        "--format",
        "pem",
        "--password-env",
        "KEY_PASSWORD",
        "--out",
        "enc.pem",
        env=env,
    )
    assert made.returncode == 0, made.stderr
    assert b"ENCRYPTED" in (tmp_path / "enc.pem").read_bytes()
    ok = jwtkit(
        "encode", "--key", "enc.pem", "--alg", "ES256", "--password-env", "KEY_PASSWORD", "sub=x", env=env
    )
    assert ok.returncode == 0, ok.stderr
    wrong = jwtkit(
        "encode", "--key", "enc.pem", "--alg", "ES256", "--password-env", "WRONG_PASSWORD", "sub=x", env=env
    )
    assert_one_line_error(wrong, 2, "key")
    assert "wrong password" in wrong.stderr
    assert_one_line_error(jwtkit("encode", "--key", "enc.pem", "--alg", "ES256", "sub=x"), 2, "key")
    assert "right horse" not in wrong.stderr  # never echo secrets


def test_unreadable_key_file(jwtkit: Runner, tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root reads mode-000 files; a directory in place of the file is unreadable for everyone.
        (tmp_path / "locked.pem").mkdir()
    else:
        (tmp_path / "locked.pem").write_text("x")
        (tmp_path / "locked.pem").chmod(0)
    assert_one_line_error(jwtkit("verify", "x.y.z", "--key", "locked.pem", "--alg", "ES256"), 2, "file")


# --- decode --json -----------------------------------------------------------------------------------------


def test_decode_json_reports_dates_and_warnings(jwtkit: Runner) -> None:
    now = int(time.time())
    token = pyjwt.encode({"sub": "s", "iat": now, "exp": now + 14 * 60 + 30}, SECRET, algorithm="HS256")
    data = json.loads(jwtkit("decode", token, "--json").stdout)
    assert data["verified"] is False
    assert data["header"] == {"alg": "HS256", "typ": "JWT"}
    assert data["claims"]["sub"] == "s"
    assert data["dates"]["exp"]["relative"] == "expires in 14 min"
    assert data["dates"]["exp"]["utc"].endswith(" UTC")
    assert data["dates"]["iat"]["relative"] in ("issued 0 s ago", "issued 1 s ago", "issued 2 s ago")
    assert data["warnings"] == []
    assert data["signature"] == token.split(".")[2]


def test_decode_warnings(jwtkit: Runner) -> None:
    now = int(time.time())
    old = pyjwt.encode(
        {"iat": now - 3 * 86400, "exp": now - 2 * 86400 - 100, "password": "hunter2", "card_number": "4111"},
        SECRET,
        algorithm="HS256",
    )
    data = json.loads(jwtkit("decode", old, "--json").stdout)
    assert data["dates"]["exp"]["relative"] == "expired 2 days ago"
    warnings = " | ".join(data["warnings"])
    assert "expired 2 days ago" in warnings
    assert "'password' looks sensitive" in warnings and "'card_number' looks sensitive" in warnings

    long_lived = pyjwt.encode({"iat": now, "exp": now + 30 * 86400}, SECRET, algorithm="HS256")
    assert any(
        "long lifetime" in w for w in json.loads(jwtkit("decode", long_lived, "--json").stdout)["warnings"]
    )

    never = pyjwt.encode({"sub": "x"}, SECRET, algorithm="HS256")
    assert (
        "no exp claim: this token never expires"
        in json.loads(jwtkit("decode", never, "--json").stdout)["warnings"]
    )


def test_alg_none_is_shown_but_never_verifies(jwtkit: Runner) -> None:
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64({'sub': 'admin', 'exp': 9999999999})}."
    shown = jwtkit("decode", unsigned, "--json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["claims"] == {"sub": "admin", "exp": 9999999999} and data["signature"] == ""
    assert any("empty signature" in w for w in data["warnings"])
    assert any('"none"' in w for w in data["warnings"])
    assert_one_line_error(jwtkit("verify", unsigned, "--secret-env", "JWT_TEST_SECRET"), 1, "malformed")
    faked = f"{_b64({'alg': 'none'})}.{_b64({'sub': 'admin'})}.c2ln"
    assert any('"none"' in w for w in json.loads(jwtkit("decode", faked, "--json").stdout)["warnings"])
    proc = jwtkit("verify", faked, "--secret-env", "JWT_TEST_SECRET")
    assert_one_line_error(proc, 1, "algorithm")


@pytest.mark.parametrize("exp", [True, "1900000000", 1e308, -1e308, [1], {"a": 1}, None])
def test_decode_survives_odd_date_values(jwtkit: Runner, exp: object) -> None:
    token = f"{_b64({'alg': 'HS256'})}.{_b64({'sub': 's', 'exp': exp, 'iat': 'yesterday'})}.c2ln"
    proc = jwtkit("decode", token, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert "iat is not a valid NumericDate (a JSON number of seconds): verification fails" in data["warnings"]
    if not isinstance(exp, int | float) or isinstance(exp, bool) or abs(exp) > 1e300:
        assert "exp" not in data["dates"]
        assert any(w.startswith("exp is not a valid NumericDate") for w in data["warnings"])
    human = jwtkit("decode", token)
    assert human.returncode == 0 and "Traceback" not in human.stderr


def test_token_text_cannot_drive_the_terminal(jwtkit: Runner) -> None:
    evil = "\x1b]0;pwned\x07 \x9b31m \x7f [bold]markup[/bold]"
    token = f"{_b64({'alg': 'HS256', 'kid': evil})}.{_b64({'sub': evil, evil: 1})}.c2ln"
    for args in (["decode", token], ["decode", token, "--json"]):
        proc = jwtkit(*args)
        assert proc.returncode == 0, proc.stderr
        for control in ("\x1b", "\x07", "\x9b", "\x7f"):
            assert control not in proc.stdout and control not in proc.stderr
    human = jwtkit("decode", token).stdout
    assert "[bold]markup[/bold]" in human  # shown as text, not interpreted as rich markup
    assert json.loads(jwtkit("decode", token, "--json").stdout)["claims"]["sub"] == evil  # JSON stays exact


@pytest.mark.parametrize("hidden", ["\u202e", "\u2066", "\u200b", "\u200f", "\ufeff", "\u2028", "\U000e0041"])
def test_decode_shows_bidi_and_zero_width_characters_escaped(jwtkit: Runner, hidden: str) -> None:
    # Trojan Source (CVE-2021-42574): "admin" with a right-to-left override or a zero-width space must not
    # look like "admin" in a terminal
    token = encode({"sub": f"ad{hidden}min", "role": f"user{hidden}"}, Key.from_secret(SECRET.encode()))
    for args in (("decode", token), ("decode", token, "--json")):
        proc = jwtkit(*args)
        assert proc.returncode == 0, proc.stderr
        assert hidden not in proc.stdout
        escaped = json.dumps(hidden)[1:-1]  # as JSON writes it: \\u202e, or a surrogate pair
        assert f"ad{escaped}min" in proc.stdout
    data = json.loads(jwtkit("decode", token, "--json").stdout)
    assert data["claims"]["sub"] == f"ad{hidden}min"  # the JSON still holds the exact value


def test_a_private_key_file_others_can_read_is_named_in_a_warning(jwtkit: Runner, tmp_path: Path) -> None:
    made = jwtkit("keygen", "--alg", "ES256", "--out", "key.jwk")
    assert made.returncode == 0
    token = jwtkit("encode", "--key", "key.jwk", "--exp", "5m", "--sub", "alice")
    assert token.returncode == 0 and "warning" not in token.stderr  # 0600, as keygen writes it
    (tmp_path / "key.jwk").chmod(0o644)
    warning = ("jwtkit: warning: key.jwk holds a private key and has mode 0644: other local users can read "
               "it (chmod 600 key.jwk)")
    for args in (("encode", "--key", "key.jwk", "--exp", "5m"),
                 ("verify", token.stdout.strip(), "--key", "key.jwk")):
        proc = jwtkit(*args)
        assert proc.returncode == 0, proc.stderr
        assert warning in proc.stderr
    public = tmp_path / "public.jwk"
    public.write_text(made.stdout)  # keygen prints the public key
    public.chmod(0o644)  # which anyone may read
    proc = jwtkit("verify", token.stdout.strip(), "--key", "public.jwk")
    assert proc.returncode == 0 and "warning" not in proc.stderr
